"""What a simulated record is: its stream, key and bytes, and the verdict the engine owes it."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from ..events import REASONS, Kind, Stream


class Intent(StrEnum):
    """What the engine must do with a record: count it, or dead-letter it and why."""

    VALID = "valid"
    DUPLICATE = "duplicate"  # the same bytes again: dead-lettered as ``duplicate``
    LATE = "late"  # older than the district watermark minus the grace: ``too_late``
    MALFORMED = "malformed"  # rejected by the validator; ``reason`` says which check


class SimRecord(NamedTuple):
    """One record ready to produce, with the truth a test needs about it."""

    at: float  # simulated publish time (POSIX seconds); non-decreasing along a stream
    stream: Stream
    key: bytes  # the district code (or the unknown code of an ``unknown_district``)
    value: bytes
    intent: Intent
    reason: str | None  # the rejection reason the engine must give; None when valid
    kind: Kind | None  # the event kind the value claims, when it has one
    ts: float | None  # the event time in the value, when it has a valid one


STREAM_NAMES: dict[Stream, str] = {
    Stream.INCIDENTS: "incidents",
    Stream.DISPUTES: "disputes",
    Stream.PATROLS: "patrols",
}
STREAM_OF_NAME: dict[str, Stream] = {v: k for k, v in STREAM_NAMES.items()}

# Every reason the validator (not the engine's state) gives.
MALFORMED_REASONS: tuple[str, ...] = tuple(
    r for r in REASONS if r not in ("duplicate", "too_late", "internal_error", "wrong_partition")
)
# A good event the producing loop sends to another partition than its district's: the
# worker forwards it (counted), or dead-letters it when WATCHFLOOR_FORWARD_MISROUTED is off.
# Asked for by name only.
MISROUTED = "wrong_partition"

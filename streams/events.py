"""The events Watchfloor counts: their kinds, topics, and the validated form the engine reads."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from . import native
from .categories import canonical

# CloudEvents Kafka binding, structured mode: the whole event is the value.
CONTENT_TYPE = ("content-type", b"application/cloudevents+json; charset=utf-8")


class Kind(IntEnum):
    """One lifecycle transition. Values are stable: they are stored in state journals."""

    CASE_FILED = 1
    CASE_CLEARED = 2
    DISPUTE_REPORTED = 3
    DISPUTE_MEDIATION_STARTED = 4
    DISPUTE_RESOLVED = 5
    DISPUTE_ESCALATED = 6
    PATROL_COMPLETED = 7
    HAZARD_FOUND = 8
    HAZARD_RECTIFIED = 9
    HAZARD_VERIFIED = 10
    ACCIDENT_REPORTED = 11


TYPE_OF_KIND: dict[Kind, str] = {
    Kind.CASE_FILED: "watchfloor.incident.case_filed.v1",
    Kind.CASE_CLEARED: "watchfloor.incident.case_cleared.v1",
    Kind.DISPUTE_REPORTED: "watchfloor.dispute.reported.v1",
    Kind.DISPUTE_MEDIATION_STARTED: "watchfloor.dispute.mediation_started.v1",
    Kind.DISPUTE_RESOLVED: "watchfloor.dispute.resolved.v1",
    Kind.DISPUTE_ESCALATED: "watchfloor.dispute.escalated.v1",
    Kind.PATROL_COMPLETED: "watchfloor.patrol.completed.v1",
    Kind.HAZARD_FOUND: "watchfloor.hazard.found.v1",
    Kind.HAZARD_RECTIFIED: "watchfloor.hazard.rectified.v1",
    Kind.HAZARD_VERIFIED: "watchfloor.hazard.verified.v1",
    Kind.ACCIDENT_REPORTED: "watchfloor.incident.accident_reported.v1",
}
KIND_OF_TYPE: dict[str, Kind] = {t: k for k, t in TYPE_OF_KIND.items()}


class Stream(IntEnum):
    """The three source topics, by role (their names come from settings)."""

    INCIDENTS = 1
    DISPUTES = 2
    PATROLS = 3


STREAM_OF_KIND: dict[Kind, Stream] = {
    Kind.CASE_FILED: Stream.INCIDENTS,
    Kind.CASE_CLEARED: Stream.INCIDENTS,
    Kind.DISPUTE_REPORTED: Stream.DISPUTES,
    Kind.DISPUTE_MEDIATION_STARTED: Stream.DISPUTES,
    Kind.DISPUTE_RESOLVED: Stream.DISPUTES,
    Kind.DISPUTE_ESCALATED: Stream.DISPUTES,
    Kind.PATROL_COMPLETED: Stream.PATROLS,
    Kind.HAZARD_FOUND: Stream.PATROLS,
    Kind.HAZARD_RECTIFIED: Stream.PATROLS,
    Kind.HAZARD_VERIFIED: Stream.PATROLS,
    Kind.ACCIDENT_REPORTED: Stream.INCIDENTS,
}

# Rejection reasons: a bounded set, used as metric labels and dead-letter headers.
REASONS: tuple[str, ...] = (
    "empty",
    "too_large",
    "not_utf8",
    "malformed_json",
    "schema",
    "unknown_type",
    "wrong_topic",
    "unknown_district",
    "naive_time",
    "time_out_of_range",
    "deadline_before_found",
    "wrong_partition",
    "duplicate",
    "too_late",
    "internal_error",
)


def event_identity(source: str, id: str) -> int:
    """A stable 64-bit number for an event's CloudEvents identity (``source``, ``id``).

    Stable across processes (Python's ``hash`` of a str is not), so it can be journaled.
    """
    if _C_IDENTITY is not None:
        return _C_IDENTITY(source, id)
    return py_digest64(f"{source}\x00{id}")


def digest64(text: str) -> int:
    """A stable 64-bit digest of ``text``, 1 .. 2**64 - 1 (0 means "no identity")."""
    if _C_DIGEST64 is not None:
        return _C_DIGEST64(text)
    return py_digest64(text)


def py_digest64(text: str) -> int:
    """``digest64`` through hashlib: the fallback without a compiler, and the definition
    (BLAKE2b, 8 bytes, read big-endian) that journaled identities depend on."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


# The C digests (``streams/_digests.c``) where built; hashlib's otherwise.
_DIGESTS = native.extension("_digests")
_C_DIGEST64: Callable[[str], int] | None = None if _DIGESTS is None else _DIGESTS.digest64
_C_IDENTITY: Callable[[str, str], int] | None = None if _DIGESTS is None else _DIGESTS.identity


# Event's fields in the order of its constructor: what equality compares and repr shows
# (tests compare events; neither is on the counting path).
_EVENT_FIELDS = (
    "kind", "id", "source", "district", "subject", "ts", "category", "deadline", "major",
    "confirmed", "ended", "identity", "community", "unit", "figures",
)  # fmt: skip


class Event:
    """A validated event, reduced to what the counting logic needs; read-only by contract.

    Not a dataclass: mypyc compiles a dataclass's class but not the ``__init__`` the
    decorator writes, an interpreted call once per event (a frozen one also set each
    field through ``object.__setattr__``: 2.2 us a build against 0.5).

    ``ts`` is the event time as POSIX seconds: bucket arithmetic runs on it because
    datetime arithmetic per event costs several times more. ``time`` gives the aware
    datetime back for anything a person reads.
    """

    __slots__ = (
        "category",
        "community",
        "confirmed",
        "deadline",
        "district",
        "ended",
        "figures",
        "id",
        "identity",
        "kind",
        "major",
        "source",
        "subject",
        "ts",
        "unit",
    )

    def __init__(
        self,
        kind: Kind,
        id: str,
        source: str,
        district: str,
        subject: str,
        ts: float,
        category: str | None = None,
        deadline: float | None = None,
        major: bool = False,
        confirmed: bool = True,
        ended: float | None = None,
        identity: int = 0,
        community: str | None = None,
        unit: str | None = None,
        figures: tuple[int, int, int] | None = None,
    ) -> None:
        self.kind = kind
        self.id = id
        self.source = source
        self.district = district
        self.subject = subject
        self.ts = ts
        self.category = category
        # Hazards: rectification deadline (found; new deadline on a failed look-back visit).
        self.deadline = deadline
        self.major = major
        # Look-back visit: True when the rectification was confirmed.
        self.confirmed = confirmed
        # Patrols: end of the patrol.
        self.ended = ended
        # event_identity(source, id); 0 for events rebuilt from journals of before it existed.
        self.identity = identity
        self.community = community
        # The responsible unit (hazards found, disputes reported or mediated).
        self.unit = unit
        # Work-safety accidents: (deaths, serious injuries, direct loss in yuan).
        self.figures = figures

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in _EVENT_FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass was

    def __repr__(self) -> str:
        return "Event(" + ", ".join(
            f"{n}={v!r}" for n, v in zip(_EVENT_FIELDS, self._fields(), strict=True)
        ) + ")"

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.ts, UTC)

    def to_journal(self, outcome: int, forwarded: bool = False) -> list[Any]:
        """The compact form stored in state journals, with what applying it did."""
        return [
            int(self.kind),
            self.subject,
            self.ts,
            self.category,
            self.deadline,
            self.major,
            self.confirmed,
            self.ended,
            self.identity,
            self.community,
            self.unit,
            outcome,
            self.figures,
            forwarded,
        ]

    @classmethod
    def from_journal(cls, district: str, row: list[Any]) -> tuple[Event, int, bool]:
        """The event of a journal row, the outcome it had (0, counted, for old rows), and
        whether it came forwarded."""
        if len(row) == 8:  # rows written before identities and outcomes were journaled
            row = [*row, 0, None, None, 0]
        kind, subject, ts, category, deadline, major, confirmed, ended = row[:8]
        identity, community, unit, outcome = row[8:12]
        figures = tuple(row[12]) if len(row) > 12 and row[12] is not None else None
        forwarded = bool(row[13]) if len(row) > 13 else False
        return cls(
            kind=Kind(kind),
            id="",
            source="",
            district=district,
            subject=subject,
            ts=ts,
            category=None if category is None else canonical(category),
            deadline=deadline,
            major=major,
            confirmed=confirmed,
            ended=ended,
            identity=identity,
            community=None if community is None else sys.intern(community),
            unit=None if unit is None else sys.intern(unit),
            figures=figures,
        ), outcome, forwarded

"""Helpers shared by unit and integration tests: a Kafka record stand-in, CloudEvents, epochs."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from streams import deadletter

TZ = ZoneInfo("Asia/Shanghai")
# A fixed epoch for counting tests: a Sunday noon in the reference city's time zone.
EPOCH = datetime(2026, 4, 12, 12, 0, tzinfo=TZ)
# A fixed epoch for validation and ingest tests (the validator rejects times too far ahead).
EPOCH_UTC = datetime(2026, 6, 1, tzinfo=UTC)
REJECTED_AT = datetime(2026, 4, 12, 9, 30, 1, 250000, tzinfo=UTC)

TYPES: dict[str, str] = {
    "case_filed": "watchfloor.incident.case_filed.v1",
    "case_cleared": "watchfloor.incident.case_cleared.v1",
    "dispute_reported": "watchfloor.dispute.reported.v1",
    "mediation_started": "watchfloor.dispute.mediation_started.v1",
    "dispute_resolved": "watchfloor.dispute.resolved.v1",
    "dispute_escalated": "watchfloor.dispute.escalated.v1",
    "patrol_completed": "watchfloor.patrol.completed.v1",
    "hazard_found": "watchfloor.hazard.found.v1",
    "hazard_rectified": "watchfloor.hazard.rectified.v1",
    "hazard_verified": "watchfloor.hazard.verified.v1",
    "accident_reported": "watchfloor.incident.accident_reported.v1",
}
# The envelope attributes the design requires of every event, and the optional ones.
ENVELOPE_REQUIRED = frozenset(
    {"specversion", "id", "source", "type", "time", "subject", "district", "data"}
)
ENVELOPE = ENVELOPE_REQUIRED | {"datacontenttype", "dataschema"}


@dataclass
class Record:
    """What the engine and the consumer read of a Kafka record (aiokafka's ConsumerRecord)."""

    offset: int
    value: bytes | None = b"v"
    key: bytes | None = None
    timestamp: int | None = 1_776_000_000_000
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def event(
    kind: str,
    district: str,
    subject: str,
    when: datetime,
    data: Mapping[str, Any] | None = None,
    *,
    id: str | None = None,
    source: str = "/tests",
) -> dict[str, Any]:
    """A CloudEvents document of one Watchfloor type (``kind`` is a key of TYPES)."""
    return {
        "specversion": "1.0",
        "id": id or f"{subject}-{kind}-{uuid.uuid4().hex[:8]}",
        "source": source,
        "type": TYPES[kind],
        "time": when.isoformat(),
        "subject": subject,
        "datacontenttype": "application/json",
        "district": district,
        "data": dict(data or {}),
    }


def case_filed(subject: str, when: datetime, district: str = "jinshui", **over: Any) -> bytes:
    """A valid case-filed record value, with top-level attributes overridden by ``over``."""
    doc = event(
        "case_filed", district, subject, when, {"category": "theft", "severity": "minor"},
        id=f"{subject}-filed",
    )
    doc.update(over)
    return orjson.dumps(doc)


def dead_letter(
    *,
    reason: str = "unknown_district",
    topic: str = "watchfloor.patrols",
    partition: int | str = 2,
    offset: int | str = 1543,
    key: bytes | None = b"jinshui",
    value: bytes | None = b'{"id": "x"}',
    headers: list[tuple[str, bytes | None]] | None = None,
) -> deadletter.DeadLetter:
    """A dead letter as a worker writes it, for tests of the format and the tools."""
    return deadletter.build_dead_letter(
        key=key,
        value=value,
        headers=headers,
        reason=reason,
        error=f"{reason} sentence.",
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        source_timestamp_ms=1775957400123,
        rejected_at=REJECTED_AT,
        worker="http://10.0.0.5:6066",
    )

"""The counting engine: records in; district states, journals and rejections out."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import orjson

from .clock import Clock
from .errors import InvalidEvent
from .events import STREAM_OF_KIND, Event, Stream
from .partitioning import district_partition
from .reference import Reference
from .state import DistrictState, Limits, Outcome

log = logging.getLogger(__name__)


# Stamped on a forwarded record: "<topic>/<partition>/<offset>" where it was first read.
FORWARDED_FROM = "wf-forwarded-from"


class RecordLike(Protocol):
    """What the engine reads of a Kafka record (aiokafka's ConsumerRecord has it)."""

    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None
    headers: Sequence[tuple[str, bytes]]


class Validator(Protocol):
    def validate(self, raw: bytes | None, stream: Stream | None = None) -> Event: ...


@dataclass(slots=True)
class Rejection:
    """A record that is not counted; it goes to the dead-letter topic as it came."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    reason: str
    message: str
    district: str | None = None


@dataclass(slots=True)
class _Source:
    """One topic-partition of a batch, and what its records are counted into."""

    topic: str
    partition: int
    stream: Stream | None  # None: the forward topic, which carries every stream
    key: str = ""
    times: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = f"{self.topic}:{self.partition}"


@dataclass(slots=True)
class Forward:
    """A valid record read outside its district's partition: it goes, once, through the
    forward topic to the partition that owns the district (as Kafka Streams repartitions)."""

    topic: str
    partition: int
    offset: int
    district: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]

    def forward_headers(self) -> list[tuple[str, bytes]]:
        """The original headers, with where the record was first read (a forged header of
        the same name is dropped: only this worker's stamp counts)."""
        kept = [(k, v) for k, v in self.headers if k != FORWARDED_FROM]
        stamp = f"{self.topic}/{self.partition}/{self.offset}".encode()
        return [*kept, (FORWARDED_FROM, stamp)]


class Journal:
    """What one batch changed in one district: replaying it rebuilds the change."""

    # Not a dataclass: mypyc compiles a dataclass's class but not the ``__init__`` the
    # decorator writes, and a batch makes a journal for each district it touches (about
    # 1,000 per batch under a steady load, each an interpreted call).
    __slots__ = ("dup", "late", "rows")

    def __init__(self, rows: list[bytes] | None = None, late: int = 0, dup: int = 0) -> None:
        # The events that changed the state (counted, or closed a lifecycle late), in order,
        # each as the JSON of its journal row (``Event.to_journal``). Encoded as the event
        # is applied, while the row's parts are in the cache: encoded together when the
        # journal was written, a second or more later, orjson took 4.5 % of the worker's
        # CPU under 50,000 events/s (perf), most of it waiting on memory.
        self.rows: list[bytes] = [] if rows is None else rows
        self.late = late  # too late and changed nothing
        self.dup = dup

    def __repr__(self) -> str:
        return f"Journal(rows={self.rows!r}, late={self.late}, dup={self.dup})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Journal):
            return NotImplemented
        return (self.rows, self.late, self.dup) == (other.rows, other.late, other.dup)


def dump(value: Any) -> bytes:
    """JSON bytes of exactly their own size.

    orjson's output keeps the over-sized buffer it was written into (about 4 KiB for a
    small document); the state table keeps thousands of these for the worker's lifetime
    and held journals a second of rows, so each is copied into a bytes object of its
    exact length (200 MB saved at 1,000 districts).
    """
    return bytes(memoryview(orjson.dumps(value)))


def _row(ev: Event, outcome: int, forwarded: bool) -> bytes:
    # Held journals keep a second of rows: each of its own length (``dump``).
    return dump(ev.to_journal(outcome, forwarded))


@dataclass
class BatchResult:
    received: dict[str, int] = field(default_factory=dict)
    counted: dict[str, int] = field(default_factory=dict)
    # topic -> event times of the counted events (for the latency histogram)
    event_times: dict[str, list[float]] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    journals: dict[str, Journal] = field(default_factory=dict)
    forwards: list[Forward] = field(default_factory=list)
    replayed: int = 0  # already applied before a restart (or forwarded twice): skipped


class Engine:
    """Routes each record to its district's state, exactly once per offset.

    The engine owns the district states of the partitions assigned to this worker. A
    record whose offset is at or below the district's evidence for its topic-partition
    was applied before a crash and is skipped; that is what keeps counts exact under
    at-least-once delivery.
    """

    def __init__(
        self,
        *,
        reference: Reference,
        validator: Validator,
        topics: dict[str, Stream],
        partitions: int,
        limits: Limits,
        clock: Clock,
        tz: ZoneInfo | None = None,
        forward_topic: str | None = None,
    ) -> None:
        self.reference = reference
        self.tz = tz or reference.timezone
        self.validator = validator
        self.topics: dict[str, Stream | None] = dict(topics)
        # Where records read outside their district's partition go (None: dead-letter
        # them as wrong_partition instead).
        self.forward_topic = forward_topic
        if forward_topic is not None:
            self.topics[forward_topic] = None
        self.partitions = partitions
        self.limits = limits
        self.clock = clock
        self.states: dict[str, DistrictState] = {}
        self._partition_of = {d: district_partition(d, partitions) for d in reference.districts}

    def partition_of(self, district: str) -> int:
        p = self._partition_of.get(district)
        if p is None:
            p = self._partition_of[district] = district_partition(district, self.partitions)
        return p

    def new_state(self, district: str) -> DistrictState:
        return DistrictState(district, self.tz, self.limits)

    def process(self, batch: Iterable[tuple[str, int, Sequence[RecordLike]]]) -> BatchResult:
        """Validate and count the records of one batch, grouped by topic-partition.

        Records are validated in fetch order, then applied district by district (in
        offset order within each): a district's buckets and lifecycles stay in the CPU
        cache for its whole run, which halves the cost of counting with many districts.
        """
        result = BatchResult()
        # The offset is read with the value, while the record is in the CPU cache: read
        # again when its district's turn comes, it was a cache miss (3 % of the path).
        by_district: dict[str, list[tuple[Event, int, RecordLike, _Source]]] = {}
        for topic, partition, records in batch:
            src = _Source(topic, partition, self.topics[topic])
            src.times = result.event_times.setdefault(topic, [])
            result.received[topic] = result.received.get(topic, 0) + len(records)
            result.counted.setdefault(topic, 0)
            for rec in records:
                try:
                    ev = self._route(result, src, rec)
                except Exception as exc:  # a bug must not lose the record or stop the worker
                    self._fault(result, src, rec, exc)
                    continue
                if ev is not None:
                    group = by_district.get(ev.district)
                    if group is None:
                        group = by_district[ev.district] = []
                    group.append((ev, rec.offset, rec, src))
        for district, items in by_district.items():
            st = self.states.get(district)
            if st is None:
                st = self.states[district] = self.new_state(district)
            for ev, offset, rec, src in items:
                try:
                    self._apply(result, st, ev, offset, rec, src)
                except Exception as exc:
                    self._fault(result, src, rec, exc)
        return result

    def _fault(self, result: BatchResult, src: _Source, rec: RecordLike, exc: Exception) -> None:
        log.error("Engine failed on %s[%d]@%d", src.topic, src.partition, rec.offset, exc_info=exc)
        result.rejections.append(
            _reject(
                src.topic,
                src.partition,
                rec,
                "internal_error",
                f"Watchfloor failed on this record: {exc!r}"[:500],
            )
        )

    def _route(self, result: BatchResult, src: _Source, rec: RecordLike) -> Event | None:
        """Validate one record and check its partition; None when it was rejected."""
        try:
            ev = self.validator.validate(rec.value, src.stream)
        except InvalidEvent as exc:
            result.rejections.append(
                _reject(src.topic, src.partition, rec, exc.reason, exc.message)
            )
            return None
        expected = self.partition_of(ev.district)
        if expected != src.partition and self.forward_topic not in (None, src.topic):
            result.forwards.append(
                Forward(
                    src.topic,
                    src.partition,
                    rec.offset,
                    ev.district,
                    rec.key,
                    rec.value,
                    list(rec.headers or ()),
                )
            )
            return None
        if expected != src.partition:
            result.rejections.append(
                _reject(
                    src.topic,
                    src.partition,
                    rec,
                    "wrong_partition",
                    f"The record is in partition {src.partition} but district "
                    f"{ev.district!r} belongs in partition {expected}: key records by their "
                    "district code.",
                    ev.district,
                )
            )
            return None
        return ev

    def _apply(
        self,
        result: BatchResult,
        st: DistrictState,
        ev: Event,
        offset: int,
        rec: RecordLike,
        src: _Source,
    ) -> None:
        if offset <= st.evidence.get(src.key, -1):
            result.replayed += 1
            return
        st.evidence[src.key] = offset
        if src.stream is None:
            # Forwarded: a second copy of the same original (a worker that forwarded it
            # died before committing) is skipped like a replay.
            origin = _forwarded_from(rec)
            if origin is not None:
                key, offset = origin
                if offset <= st.evidence.get(key, -1):
                    result.replayed += 1
                    return
                st.evidence[key] = offset
        district = st.district
        journal = result.journals.get(district)
        if journal is None:
            journal = result.journals[district] = Journal()
        forwarded = src.stream is None
        outcome = st.apply(ev, forwarded)
        if outcome is Outcome.COUNTED:
            journal.rows.append(_row(ev, outcome, forwarded))
            src.times.append(ev.ts)
            result.counted[src.topic] += 1
            return
        if outcome is Outcome.DUPLICATE:
            journal.dup += 1
            message = (
                f"Subject {ev.subject!r} already had this transition "
                f"({ev.kind.name.lower()}), or this very event (the same source and id) "
                "was applied before; it is counted once."
            )
            result.rejections.append(
                _reject(src.topic, src.partition, rec, "duplicate", message, district)
            )
            return
        message = (
            f"time {ev.time.isoformat()} is more than {self.limits.grace / 3600:g} h before "
            f"the latest {STREAM_OF_KIND[ev.kind].name.lower()} event of district {district!r}; "
            "it is counted as too late"
        )
        if outcome is Outcome.LATE_CLOSED:
            # It closed its lifecycle in the current state: the replay must see it again.
            journal.rows.append(_row(ev, outcome, forwarded))
            message += (
                " and closes its lifecycle now (open and overdue figures), without changing "
                "the event-time windows."
            )
        else:
            journal.late += 1
            message += "."
        result.rejections.append(
            _reject(src.topic, src.partition, rec, "too_late", message, district)
        )

    def tick(self) -> int:
        """Move hazards past their deadline into the overdue sets; return how many moved."""
        now = self.clock.time()
        return sum(st.tick(now) for st in self.states.values())

    def own(self, partitions: set[int]) -> None:
        """Hold a state for every reference district of ``partitions``, events or none, so
        that a district with nothing to report is listed with zeros, not left out."""
        for district in self.reference.districts:
            if district not in self.states and self.partition_of(district) in partitions:
                self.states[district] = self.new_state(district)

    def keep_partitions(self, partitions: set[int]) -> list[str]:
        """Forget the districts of partitions this worker no longer owns; return them."""
        gone = [d for d in self.states if self.partition_of(d) not in partitions]
        for d in gone:
            del self.states[d]
        return gone


def _reject(
    topic: str,
    partition: int,
    rec: RecordLike,
    reason: str,
    message: str,
    district: str | None = None,
) -> Rejection:
    return Rejection(
        topic=topic,
        partition=partition,
        offset=rec.offset,
        timestamp_ms=rec.timestamp,
        key=rec.key,
        value=rec.value,
        headers=list(rec.headers or ()),
        reason=reason,
        message=message,
        district=district,
    )


def _forwarded_from(rec: RecordLike) -> tuple[str, int] | None:
    """("fwd|<topic>:<partition>", offset) of the original of a forwarded record."""
    stamp = None
    for name, value in rec.headers or ():
        if name == FORWARDED_FROM:
            stamp = value
    if not stamp:
        return None
    try:
        topic, partition, offset = stamp.decode().rsplit("/", 2)
        return f"fwd|{topic}:{int(partition)}", int(offset)
    except (UnicodeDecodeError, ValueError):
        return None

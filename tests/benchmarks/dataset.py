"""The benchmark's data: simulator records preloaded into topics, and the truth of every offset.

The records come from the simulator (``streams.simulator.generator.generate_events``) for a
synthetic city: a week of all ten event types in ``districts`` districts, with a few %
duplicate, late and malformed records. One process produces them in generation order,
so the n-th record of a partition is at offset n; the truth is kept per offset, which
lets a consumer that stopped half-way (the naive agent, time-boxed) be checked exactly
on the prefix it read.

Only the malformed kinds that the benchmark's simple counting job also catches are
produced (see ``tests/benchmarks/job.py``); schema, deadline and partition faults need
Watchfloor's full validation and would make the job's truth differ for other reasons.

A data set is cached in the work directory under a name derived from its parameters
and reused while its topics are intact (``--fresh`` produces it again).
"""

from __future__ import annotations

import asyncio
import hashlib
import pickle
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from streams.events import TYPE_OF_KIND, Kind, Stream
from streams.kafka import client_kwargs, create_topics
from streams.partitioning import district_partition
from streams.settings import Settings
from streams.simulator.config import SimConfig
from streams.simulator.files import load_city, write_reference
from streams.simulator.generator import generate_events
from streams.simulator.produce import produce_records
from streams.simulator.records import MALFORMED_REASONS, Intent, SimRecord

# Malformed reasons the counting job rejects on its own (envelope faults).
JOB_REASONS: tuple[str, ...] = (
    "empty",
    "too_large",
    "not_utf8",
    "malformed_json",
    "unknown_type",
    "wrong_topic",
    "unknown_district",
    "naive_time",
    "time_out_of_range",
)
UNDECODABLE = frozenset({"empty", "not_utf8", "malformed_json"})

# Fate of a record, as the generator means it: valid, duplicate, late, or malformed
# with the reason at MALFORMED_REASONS[fate - FATE_MALFORMED].
FATE_VALID, FATE_DUPLICATE, FATE_LATE, FATE_MALFORMED = 0, 1, 2, 3
NO_DISTRICT = 0xFFFF
ROLES: dict[Stream, str] = {
    Stream.INCIDENTS: "incidents",
    Stream.DISPUTES: "disputes",
    Stream.PATROLS: "patrols",
}
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DatasetSpec:
    """What to preload; equal specs give equal records (the end time aside)."""

    events: int = 1_000_000
    districts: int = 1000
    partitions: int = 4
    seed: int = 7
    days: float = 7.0
    late_share: float = 0.02
    duplicate_share: float = 0.02
    malformed_share: float = 0.005

    def key(self, bootstrap: str) -> str:
        raw = repr((FORMAT_VERSION, bootstrap, self)).encode()
        return hashlib.sha1(raw).hexdigest()[:10]


@dataclass
class Truth:
    """What a consumer of (a prefix of) the data set must have counted."""

    records: int = 0
    decodable: int = 0
    received: Counter[str] = field(default_factory=Counter)  # records per topic
    # The counting job: events per (district, type); valid and late records count.
    job: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Watchfloor: valid events per (district, kind), per topic, and rejections.
    counted: Counter[tuple[str, Kind]] = field(default_factory=Counter)
    processed: Counter[str] = field(default_factory=Counter)
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    late: Counter[str] = field(default_factory=Counter)

    def add(self, other: Truth) -> None:
        self.records += other.records
        self.decodable += other.decodable
        for mine, theirs in (
            (self.received, other.received),
            (self.job, other.job),
            (self.counted, other.counted),
            (self.processed, other.processed),
            (self.rejected, other.rejected),
            (self.duplicates, other.duplicates),
            (self.late, other.late),
        ):
            mine.update(theirs)  # type: ignore[arg-type]

    def intents(self) -> dict[str, int]:
        dup = sum(self.duplicates.values())
        late = sum(self.late.values())
        valid = sum(self.processed.values())
        return {
            "valid": valid,
            "duplicate": dup,
            "late": late,
            "malformed": self.records - valid - dup - late,
        }


@dataclass
class PartitionTruth:
    """Per offset of one partition: district index, event kind (0: none), fate."""

    district: array[int] = field(default_factory=lambda: array("H"))
    kind: array[int] = field(default_factory=lambda: array("B"))
    fate: array[int] = field(default_factory=lambda: array("B"))

    def __len__(self) -> int:
        return len(self.fate)


@dataclass
class Dataset:
    """A preloaded topic set and the truth of each of its records."""

    spec: DatasetSpec
    bootstrap: str
    name: str
    reference_file: str
    codes: list[str]  # every district of the reference file; index = district index
    load_districts: int  # the first ones carry the load; the next one is the marker's
    parts: dict[str, list[PartitionTruth]]  # topic -> per partition
    created_at: float = 0.0
    preload_seconds: float = 0.0
    preload_rate: float = 0.0

    @property
    def topics(self) -> dict[Stream, str]:
        return {stream: f"{self.name}.{role}" for stream, role in ROLES.items()}

    @property
    def marker_district(self) -> str:
        return self.codes[self.load_districts]

    @property
    def events(self) -> int:
        return sum(len(p) for parts in self.parts.values() for p in parts)

    def end_offsets(self) -> dict[tuple[str, int], int]:
        return {
            (topic, i): len(p) for topic, parts in self.parts.items() for i, p in enumerate(parts)
        }

    def settings(self, **overrides: Any) -> Settings:
        topics = self.topics
        return Settings(
            bootstrap_servers=self.bootstrap,
            topic_incidents=topics[Stream.INCIDENTS],
            topic_disputes=topics[Stream.DISPUTES],
            topic_patrols=topics[Stream.PATROLS],
            topic_deadletter=f"{self.name}.deadletter",
            partitions=self.spec.partitions,
            reference_file=self.reference_file,
        ).replace(**overrides)

    def truth(self, upto: dict[tuple[str, int], int] | None = None) -> Truth:
        """The truth of every record, or of offsets below ``upto[(topic, partition)]``."""
        out = Truth()
        codes = self.codes
        for topic, parts in self.parts.items():
            for i, p in enumerate(parts):
                n = len(p) if upto is None else min(len(p), upto.get((topic, i), 0))
                combos = Counter(zip(p.district[:n], p.kind[:n], p.fate[:n], strict=True))
                for (d, k, fate), count in combos.items():
                    _tally(out, topic, codes[d] if d != NO_DISTRICT else None, k, fate, count)
        return out


def _tally(out: Truth, topic: str, district: str | None, kind: int, fate: int, n: int) -> None:
    out.records += n
    out.received[topic] += n
    reason = MALFORMED_REASONS[fate - FATE_MALFORMED] if fate >= FATE_MALFORMED else None
    if reason not in UNDECODABLE:
        out.decodable += n
    if fate in (FATE_VALID, FATE_LATE):
        assert district is not None and kind
        out.job[(district, TYPE_OF_KIND[Kind(kind)])] += n
    if fate == FATE_VALID:
        assert district is not None
        out.counted[(district, Kind(kind))] += n
        out.processed[topic] += n
    elif fate == FATE_DUPLICATE:
        assert district is not None
        out.rejected[(topic, "duplicate")] += n
        out.duplicates[district] += n
    elif fate == FATE_LATE:
        assert district is not None
        out.rejected[(topic, "too_late")] += n
        out.late[district] += n
    else:
        out.rejected[(topic, str(reason))] += n


def truth_of_records(
    records: list[SimRecord], topics: dict[Stream, str], districts: frozenset[str]
) -> Truth:
    """The truth of records that are produced without offsets noted (the live load)."""
    combos = Counter(
        (
            topics[r.stream],
            r.key.decode() if r.key.decode() in districts else None,
            int(r.kind) if r.kind is not None else 0,
            _fate(r),
        )
        for r in records
    )
    out = Truth()
    for (topic, district, kind, fate), n in combos.items():
        _tally(out, topic, district, kind, fate, n)
    return out


def _fate(rec: SimRecord) -> int:
    if rec.intent is Intent.VALID:
        return FATE_VALID
    if rec.intent is Intent.DUPLICATE:
        return FATE_DUPLICATE
    if rec.intent is Intent.LATE:
        return FATE_LATE
    return FATE_MALFORMED + MALFORMED_REASONS.index(str(rec.reason))


def write_city(work_dir: Path, districts: int) -> Path:
    """A synthetic city of ``districts`` load districts plus one for latency markers."""
    path = work_dir / f"city-{districts + 1}" / "city.json"
    if not path.exists():
        write_reference(path, districts + 1)
    return path


def sim_config(spec: DatasetSpec, end: datetime, tag: str) -> SimConfig:
    span = timedelta(days=spec.days)
    return SimConfig(
        start=end - span,
        end=end,
        # Lifecycles need days to flow from an empty start; ask for more and cut at N.
        rate=2.0 * spec.events / span.total_seconds(),
        seed=spec.seed,
        late_share=spec.late_share,
        duplicate_share=spec.duplicate_share,
        malformed_share=spec.malformed_share,
        malformed_reasons=JOB_REASONS,
        tag=tag,
        max_records=spec.events,
    )


class TruthRecorder:
    """Passes records through to the producer and notes the truth of each offset."""

    def __init__(self, codes: list[str], topics: dict[Stream, str], partitions: int) -> None:
        self.index = {code: i for i, code in enumerate(codes)}
        self.topics = topics
        self.partitions = partitions
        self.parts: dict[str, list[PartitionTruth]] = {
            t: [PartitionTruth() for _ in range(partitions)] for t in topics.values()
        }
        self._partition_of: dict[bytes, int] = {}

    def watch(self, records: Any) -> Any:
        index, parts, topics = self.index, self.parts, self.topics
        for rec in records:
            assert rec.reason != "wrong_partition"
            part = self._partition_of.get(rec.key)
            if part is None:
                part = self._partition_of[rec.key] = district_partition(
                    rec.key.decode(), self.partitions
                )
            p = parts[topics[rec.stream]][part]
            p.district.append(index.get(rec.key.decode(), NO_DISTRICT))
            p.kind.append(int(rec.kind) if rec.kind is not None else 0)
            p.fate.append(_fate(rec))
            yield rec


Offsets = dict[tuple[str, int], tuple[int, int]]


async def topic_offsets(bootstrap: str, topics: list[str]) -> Offsets:
    """(first, end) offsets of every partition of ``topics`` that exists."""
    return await asyncio.to_thread(topic_offsets_sync, bootstrap, topics)


def topic_offsets_sync(bootstrap: str, topics: list[str]) -> Offsets:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        existing = consumer.topics()
        tps = [
            TopicPartition(t, p)
            for t in topics
            if t in existing
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        if not tps:
            return {}
        first = consumer.beginning_offsets(tps)
        last = consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): (first[tp], last[tp]) for tp in tps}
    finally:
        consumer.close()


async def delete_topics(bootstrap: str, topics: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [t for t in topics if t in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


async def intact(ds: Dataset) -> bool:
    """True when the topics still hold exactly the records the truth describes."""
    got = await topic_offsets(ds.bootstrap, list(ds.topics.values()))
    want = ds.end_offsets()
    return set(got) == set(want) and all(got[tp] == (0, n) for tp, n in want.items())


def _check_client(bootstrap: str) -> None:
    client_kwargs(Settings(bootstrap_servers=bootstrap))  # raises on a bad address


async def preload(
    spec: DatasetSpec, bootstrap: str, work_dir: Path, *, fresh: bool = False, log: Any = print
) -> Dataset:
    """The data set of ``spec`` on the broker: reused from the cache or produced now."""
    _check_client(bootstrap)
    work_dir.mkdir(parents=True, exist_ok=True)
    key = spec.key(bootstrap)
    cache = work_dir / f"dataset-{key}.pickle"
    name = f"bench-{key}"
    if cache.exists() and not fresh:
        ds: Dataset = pickle.loads(cache.read_bytes())
        if await intact(ds):
            log(f"preload: reusing {ds.events} records in {name}.* (cached {cache.name})")
            return ds
        log(f"preload: {name}.* no longer match the cache; producing them again")
    city_file = write_city(work_dir, spec.districts)
    city_all = load_city(city_file)
    codes = [d.code for d in city_all.districts]
    city = city_all.subset(spec.districts)
    ds = Dataset(
        spec=spec,
        bootstrap=bootstrap,
        name=name,
        reference_file=str(city_file),
        codes=codes,
        load_districts=spec.districts,
        parts={},
    )
    topics = list(ds.topics.values())
    await delete_topics(bootstrap, [*topics, f"{name}.deadletter"])
    for _ in range(100):  # deletion is asynchronous on the broker
        if not await topic_offsets(bootstrap, topics):
            break
        await asyncio.sleep(0.2)
    settings = ds.settings()
    await create_topics(settings, [*topics, settings.topic_deadletter])
    # Whole minutes, so the times look like a device's; the week ends now.
    end = datetime.fromtimestamp(int(time.time() // 60 * 60), UTC)
    recorder = TruthRecorder(codes, ds.topics, spec.partitions)
    log(f"preload: generating and producing {spec.events} records for {spec.districts} districts")
    t0 = time.monotonic()
    summary = await produce_records(
        recorder.watch(generate_events(city, sim_config(spec, end, key))), settings
    )
    ds.preload_seconds = time.monotonic() - t0
    ds.preload_rate = summary.delivered / ds.preload_seconds
    ds.parts = recorder.parts
    ds.created_at = time.time()
    if summary.delivered != ds.events:
        raise RuntimeError(f"Kafka confirmed {summary.delivered} of {ds.events} records.")
    if not await intact(ds):
        raise RuntimeError(
            "The topics' offsets do not match the records produced (another producer?)."
        )
    cache.write_bytes(pickle.dumps(ds))
    log(
        f"preload: {ds.events} records in {ds.preload_seconds:.1f}s "
        f"({ds.preload_rate:,.0f}/s), topics {name}.*"
    )
    return ds

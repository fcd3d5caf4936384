"""The simulator's I/O: generated, replayed or scenario records to Kafka or to JSON lines."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import queue
import re
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from .clock import Clock, SystemClock
from .errors import BrokerError, SettingsError, WatchfloorError
from .events import Stream
from .kafka import client_kwargs
from .partitioning import district_partition
from .reference import load_reference
from .settings import PROJECT_ROOT, Settings
from .simulation import (
    MALFORMED_REASONS,
    SCENARIOS,
    SimCity,
    SimConfig,
    SimRecord,
    Tally,
    build_scenario,
    city_from_reference,
    format_utc,
    generate_events,
    record_from_line,
    record_to_line,
    shard,
    shift_record,
    synthetic_city_document,
)

SCENARIO_DIR = PROJECT_ROOT / "seeds" / "scenarios"
SCENARIO_EVENTS = "events.jsonl"
# Scenario files above this size are kept gzipped (deterministically: mtime 0).
SCENARIO_GZIP_ABOVE = 512 * 1024

# The demo (``watchfloor demo`` and ``simulate run`` without options): three weeks of
# history at once, then a live stream; a few hazards with deadlines minutes away so
# that the overdue alert fires while people watch. Three weeks, not one: lifecycles
# take days (a hazard's deadline, a dispute's mediation), and a history that starts
# empty shows low clearance and resolution ratios until they have run their course;
# with three weeks the 24 h and 7 d windows see lifecycles in full flow, and the 28 d
# window is mostly filled.
DEMO_RATE = 20.0  # live records/s for ten districts
DEMO_BACKFILL = timedelta(days=21)
# The backfill holds about this many records whatever the live rate (0.17/s over three
# weeks: read by the engine in seconds). Follow-ups of the live stream then take hours
# to days to thicken to the live rate, so ratios over 1 h and 24 h read low at first
# when the live rate is far above the history's.
DEMO_HISTORY_RECORDS = 300_000
DEMO_OVERDUE_DRILL = 6
DEMO_LATE_SHARE = 0.002
DEMO_DUPLICATE_SHARE = 0.002
DEMO_MALFORMED_SHARE = 0.002

# Batches of up to 512 KiB: a few thousand records per produce request. The broker's
# default message.max.bytes is 1 MiB.
MAX_BATCH_BYTES = 512 * 1024
# Unconfirmed batches in flight before the loop waits for the oldest.
MAX_INFLIGHT = 64


# --------------------------------------------------------------------------------------
# Reference data
# --------------------------------------------------------------------------------------


def load_city(city_file: str | Path, districts: int | None = None) -> SimCity:
    """The simulator's view of a reference file (the engine's, so every district is known)."""
    path = Path(city_file)
    reference = load_reference(path)
    try:
        document = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:  # load_reference read it a moment ago
        raise SettingsError(f"Cannot read {path}: {exc}.") from None
    city = city_from_reference(reference, document)
    return city.subset(districts) if districts is not None else city


def write_reference(path: str | Path, districts: int) -> Path:
    """Write a synthetic city of ``districts`` districts, and categories.json beside it."""
    out = Path(path)
    if out.suffix != ".json":
        out = out / "city.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = synthetic_city_document(districts)
    out.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    categories = PROJECT_ROOT / "seeds" / "reference" / "categories.json"
    beside = out.with_name("categories.json")
    if beside.resolve() != categories.resolve():
        beside.write_bytes(categories.read_bytes())
    load_reference(out)  # what the engine will do with it
    return out


# --------------------------------------------------------------------------------------
# JSON lines
# --------------------------------------------------------------------------------------


def _open(path: str | Path, mode: str) -> IO[bytes]:
    if str(path) == "-":
        return sys.stdout.buffer if "w" in mode else sys.stdin.buffer
    p = Path(path)
    if p.suffix == ".gz":
        # mtime 0: the same records give the same bytes.
        return gzip.GzipFile(p, mode, mtime=0)  # type: ignore[return-value]
    return open(p, mode)


def write_records(records: Iterable[SimRecord], path: str | Path) -> Tally:
    """Write records as JSON lines (``-``: standard output; ``.gz``: compressed)."""
    tally = Tally()
    out = _open(path, "wb")
    try:
        for rec in records:
            out.write(record_to_line(rec) + b"\n")
            tally.add(rec)
    finally:
        if str(path) == "-":
            out.flush()
        else:
            out.close()
    return tally


def read_records(path: str | Path) -> Iterator[SimRecord]:
    """Read JSON lines written by :func:`write_records` (blank lines are skipped)."""
    try:
        f = _open(path, "rb")
    except FileNotFoundError:
        raise SettingsError(f"There is no records file {path}.") from None
    with contextlib.closing(f) if str(path) != "-" else contextlib.nullcontext(f):
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield record_from_line(line)
            except WatchfloorError as exc:
                raise WatchfloorError(f"{path}, line {n}: {exc}") from None


def shifted(records: Iterable[SimRecord], first_at: float) -> Iterator[SimRecord]:
    """The records moved in time so that the first one is at ``first_at`` (whole seconds)."""
    delta: int | None = None
    for rec in records:
        if delta is None:
            delta = round(first_at - rec.at)
        yield shift_record(rec, delta) if delta else rec


# --------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------


def _events_file(folder: Path) -> Path | None:
    for candidate in (folder / SCENARIO_EVENTS, folder / (SCENARIO_EVENTS + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def scenario_names(directory: Path = SCENARIO_DIR) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and _events_file(p))


def scenario_file(name: str, directory: Path = SCENARIO_DIR) -> Path:
    """The events of a scenario: ``events.jsonl`` or ``events.jsonl.gz``."""
    path = _events_file(directory / name)
    if path is None:
        known = ", ".join(scenario_names(directory)) or "none"
        raise SettingsError(f"There is no scenario {name!r} (known: {known}).")
    return path


def write_scenario(name: str, city: SimCity, directory: Path = SCENARIO_DIR) -> Path:
    """(Re)write a scenario's ``events.jsonl`` and ``expected.json`` from its builder."""
    scenario = build_scenario(name, city)
    folder = directory / name
    folder.mkdir(parents=True, exist_ok=True)
    size = sum(len(record_to_line(r)) + 1 for r in scenario.records)
    plain, packed = folder / SCENARIO_EVENTS, folder / (SCENARIO_EVENTS + ".gz")
    target, other = (packed, plain) if size > SCENARIO_GZIP_ABOVE else (plain, packed)
    write_records(scenario.records, target)
    other.unlink(missing_ok=True)
    expected = orjson.dumps(scenario.expected, option=orjson.OPT_INDENT_2) + b"\n"
    (folder / "expected.json").write_bytes(expected)
    return target


def load_expected(name: str, directory: Path = SCENARIO_DIR) -> dict[str, Any]:
    path = directory / name / "expected.json"
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise WatchfloorError(f"{path} must hold a JSON object.")
    return data


# --------------------------------------------------------------------------------------
# Pacing
# --------------------------------------------------------------------------------------


class Pacer:
    """Maps simulated publish times onto the wall clock (``speed`` 0: no waiting)."""

    def __init__(self, sim_origin: float, wall_origin: float, speed: float) -> None:
        if speed < 0:
            raise SettingsError(f"The speed factor cannot be negative, not {speed}.")
        self.sim_origin = sim_origin
        self.wall_origin = wall_origin
        self.speed = speed

    def due(self, at: float) -> float:
        """Wall time (same clock as ``wall_origin``) at which a record is due."""
        if self.speed == 0:
            return -float("inf")
        return self.wall_origin + (at - self.sim_origin) / self.speed


# --------------------------------------------------------------------------------------
# Producing
# --------------------------------------------------------------------------------------


@dataclass
class ProduceSummary:
    """What a producing run delivered (confirmed by the broker)."""

    topics: dict[str, int] = field(default_factory=dict)  # delivered records per topic
    tally: Tally = field(default_factory=Tally)  # what was sent, by stream, intent, reason
    failed: int = 0
    seconds: float = 0.0
    first_at: float | None = None
    last_at: float | None = None

    @property
    def delivered(self) -> int:
        return sum(self.topics.values())

    def __str__(self) -> str:
        topics = ", ".join(f"{t} {n:,}" for t, n in sorted(self.topics.items()))
        intents = ", ".join(f"{i} {n:,}" for i, n in self.tally.by_intent.items())
        failed = f"; {self.failed:,} NOT confirmed" if self.failed else ""
        return (
            f"{self.delivered:,} records confirmed in {self.seconds:.0f} s "
            f"({self.rate:,.0f}/s): {topics}; {intents}{failed}"
        )

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.rate, 1),
            "topics": dict(sorted(self.topics.items())),
            "first_at": format_utc(self.first_at) if self.first_at is not None else None,
            "last_at": format_utc(self.last_at) if self.last_at is not None else None,
            **{k: v for k, v in self.tally.as_dict().items() if k != "total"},
        }


def topic_names(settings: Settings) -> dict[Stream, str]:
    return {
        Stream.INCIDENTS: settings.topic_incidents,
        Stream.DISPUTES: settings.topic_disputes,
        Stream.PATROLS: settings.topic_patrols,
    }


async def ensure_topics(settings: Settings, topics: Iterable[str]) -> dict[str, int]:
    """Create missing topics with ``settings.partitions``; return each topic's partition count.

    The broker would auto-create a missing topic with its own default (one partition),
    which would put every district in the same partition.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError, TopicAlreadyExistsError

    wanted = list(dict.fromkeys(topics))
    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=15000)
    try:
        await admin.start()
    except KafkaError as exc:
        raise BrokerError(f"Cannot reach Kafka at {settings.bootstrap_servers}: {exc}.") from None
    try:
        counts = await _partition_counts(admin, wanted)
        missing = [t for t in wanted if t not in counts]
        if missing:
            new = [NewTopic(t, settings.partitions, settings.replication_factor) for t in missing]
            with contextlib.suppress(TopicAlreadyExistsError):  # made by someone meanwhile
                await admin.create_topics(new)
            for _ in range(50):
                counts = await _partition_counts(admin, wanted)
                if all(t in counts for t in wanted):
                    break
                await asyncio.sleep(0.1)
            else:
                raise BrokerError(f"Kafka did not create topics {', '.join(missing)}.")
        return counts
    except KafkaError as exc:
        raise BrokerError(f"Kafka refused to list or create topics: {exc}.") from None
    finally:
        await admin.close()


async def _partition_counts(admin: Any, topics: list[str]) -> dict[str, int]:
    # Ask for every topic: a metadata request that names a missing topic makes a broker
    # with auto.create.topics.enable create it, with one partition.
    described = await admin.describe_topics(None)
    counts = {}
    for entry in described:
        if entry["topic"] in topics and entry.get("error_code", 0) == 0 and entry.get("partitions"):
            counts[entry["topic"]] = len(entry["partitions"])
    return counts


class RecordProducer:
    """Sends records in batches built per partition, keyed by district, and keeps receipts.

    Partitions are chosen here with Kafka's default (murmur2) partitioner, as the
    engine expects; a ``wrong_partition`` record goes to the next partition instead.
    Batches are built with aiokafka's batch API, which costs a fraction of ``send``
    per record.
    """

    def __init__(self, settings: Settings, *, acks: str | int = "all") -> None:
        self.settings = settings
        self.topics = topic_names(settings)
        self.acks = acks
        self.partitions: dict[str, int] = {}
        self._producer: Any = None
        self._builders: dict[tuple[str, int], Any] = {}
        self._full: list[tuple[str, int, Any]] = []
        self._inflight: list[tuple[asyncio.Future[Any], str, int]] = []
        # Per stream: topic, its partition count, and the partition of each key seen.
        self._routes: dict[Stream, tuple[str, int, dict[bytes, int]]] = {}
        self._last: SimRecord | None = None
        self.summary = ProduceSummary()

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        self.partitions = await ensure_topics(self.settings, self.topics.values())
        self._routes = {
            stream: (topic, self.partitions[topic], {}) for stream, topic in self.topics.items()
        }
        self._producer = AIOKafkaProducer(
            **client_kwargs(self.settings),
            acks=self.acks,
            max_batch_size=MAX_BATCH_BYTES,
            max_request_size=2 * MAX_BATCH_BYTES,
            linger_ms=5,
            request_timeout_ms=30000,
        )
        try:
            await self._producer.start()
        except KafkaError as exc:
            raise BrokerError(
                f"Cannot reach Kafka at {self.settings.bootstrap_servers}: {exc}."
            ) from None

    def add(self, rec: SimRecord) -> bool:
        """Append a record to its partition's batch; True when a batch is full and must
        be sent (await :meth:`send_full`) before more records are added."""
        topic, n, partition_of = self._routes[rec.stream]
        part = partition_of.get(rec.key)
        if part is None:
            part = partition_of[rec.key] = district_partition(rec.key.decode(), n)
        if rec.reason == "wrong_partition" and n > 1:
            part = (part + 1) % n
        tp = (topic, part)
        builder = self._builders.get(tp)
        if builder is None:
            builder = self._builders[tp] = self._producer.create_batch()
        if builder.append(timestamp=None, key=rec.key, value=rec.value) is None:
            self._full.append((topic, part, builder))
            builder = self._builders[tp] = self._producer.create_batch()
            if builder.append(timestamp=None, key=rec.key, value=rec.value) is None:
                raise BrokerError(
                    f"A record of {len(rec.value)} bytes does not fit in a batch of "
                    f"{MAX_BATCH_BYTES} bytes."
                )
        self.summary.tally.add(rec)
        self._last = rec
        return bool(self._full)

    async def send_full(self) -> None:
        full, self._full = self._full, []
        for topic, part, builder in full:
            await self._send(topic, part, builder)

    async def flush(self) -> None:
        """Send every open batch (a live record must not wait for its batch to fill)."""
        await self.send_full()
        builders, self._builders = self._builders, {}
        for (topic, part), builder in builders.items():
            if builder.record_count():
                await self._send(topic, part, builder)

    async def _send(self, topic: str, part: int, builder: Any) -> None:
        from aiokafka.errors import KafkaError

        builder.close()
        count = builder.record_count()
        try:
            future = await self._producer.send_batch(builder, topic, partition=part)
        except KafkaError as exc:
            raise BrokerError(f"Kafka refused a batch for {topic}[{part}]: {exc}.") from None
        self._inflight.append((future, topic, count))
        if len(self._inflight) >= MAX_INFLIGHT:
            await self._settle(keep=MAX_INFLIGHT // 2)

    async def _settle(self, keep: int = 0) -> None:
        """Wait for receipts until at most ``keep`` batches are unconfirmed."""
        from aiokafka.errors import KafkaError

        while len(self._inflight) > keep:
            future, topic, count = self._inflight.pop(0)
            try:
                await future
            except KafkaError:
                self.summary.failed += count
                continue
            self.summary.topics[topic] = self.summary.topics.get(topic, 0) + count

    async def close(self) -> ProduceSummary:
        """Send what is open, wait for every receipt, stop the client."""
        if self._last is not None:
            self.summary.last_at = self._last.at
        try:
            if self._producer is not None:
                await self.flush()
                await self._settle()
        finally:
            if self._producer is not None:
                await self._producer.stop()
        return self.summary


async def produce_records(
    records: Iterable[SimRecord],
    settings: Settings,
    *,
    pacer: Pacer | None = None,
    stop_event: asyncio.Event | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    progress: Callable[[ProduceSummary], None] | None = None,
    progress_every: float = 10.0,
) -> ProduceSummary:
    """Produce records to the source topics by stream role, keyed by district.

    With a pacer, each record is sent when the wall clock reaches its due time (records
    already due, such as a backfill, go at once). Returns when the records run out or
    ``stop_event`` is set, after every batch is confirmed by the broker.
    """
    stop = stop_event or asyncio.Event()
    producer = RecordProducer(settings)
    await producer.start()
    started = monotonic()
    next_progress = started + progress_every
    try:
        for n, rec in enumerate(records, 1):
            if pacer is not None and pacer.speed:
                wait = pacer.due(rec.at) - monotonic()
                if wait > 0.001:
                    await producer.flush()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), wait)
            if stop.is_set():
                break
            if n == 1:
                producer.summary.first_at = rec.at
            if producer.add(rec):
                await producer.send_full()
            if n % 4096 == 0:
                await asyncio.sleep(0)  # let the client's sender run
                if progress is not None and monotonic() >= next_progress:
                    producer.summary.seconds = monotonic() - started
                    progress(producer.summary)
                    next_progress += progress_every
    finally:
        summary = await producer.close()
        summary.seconds = monotonic() - started
    if summary.failed:
        raise BrokerError(f"Kafka did not confirm {summary.failed} records; see the log.")
    return summary


def merge_summaries(parts: Iterable[ProduceSummary]) -> ProduceSummary:
    out = ProduceSummary()
    for part in parts:
        for topic, n in part.topics.items():
            out.topics[topic] = out.topics.get(topic, 0) + n
        for key, n in part.tally.counts.items():
            out.tally.counts[key] = out.tally.counts.get(key, 0) + n
        out.tally.total += part.tally.total
        out.failed += part.failed
        out.seconds = max(out.seconds, part.seconds)
        if part.first_at is not None:
            out.first_at = (
                part.first_at if out.first_at is None else min(out.first_at, part.first_at)
            )
        if part.last_at is not None:
            out.last_at = part.last_at if out.last_at is None else max(out.last_at, part.last_at)
    return out


def _worker(
    city: SimCity,
    config: SimConfig,
    index: int,
    count: int,
    settings: Settings,
    origin: tuple[float, float] | None,
    stop_flag: Any,
    results: Any,
) -> None:
    # The parent handles Ctrl-C and tells the workers through ``stop_flag``.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    part_city, part_config = shard(city, config, index, count)

    async def main() -> ProduceSummary:
        stop = asyncio.Event()

        async def watch() -> None:
            while not stop_flag.is_set():
                await asyncio.sleep(0.2)
            stop.set()

        watcher = asyncio.create_task(watch())
        # CLOCK_MONOTONIC is shared by the processes of a machine.
        pacer = Pacer(origin[0], origin[1], 1.0) if origin is not None else None
        try:
            return await produce_records(
                generate_events(part_city, part_config), settings, pacer=pacer, stop_event=stop
            )
        finally:
            watcher.cancel()

    try:
        results.put((index, asyncio.run(main()), None))
    except Exception as exc:
        results.put((index, None, f"{type(exc).__name__}: {exc}"))


def produce_in_workers(
    city: SimCity,
    config: SimConfig,
    settings: Settings,
    workers: int,
    *,
    live_from: datetime | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> ProduceSummary:
    """Generate and produce from ``workers`` processes, each with a share of the districts.

    One Python process generates some tens of thousands of records a second; this
    spreads the districts over processes (see :func:`streams.simulation.shard`). With
    ``live_from``, records after that simulated time are paced in real time.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    stop_flag = ctx.Event()
    results = ctx.Queue()
    origin = (live_from.timestamp(), time.monotonic()) if live_from is not None else None
    procs = [
        ctx.Process(
            target=_worker,
            args=(city, config, i, workers, settings, origin, stop_flag, results),
            name=f"watchfloor-simulate-{i}",
        )
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    got: dict[int, ProduceSummary] = {}
    errors: list[str] = []
    try:
        while len(got) + len(errors) < workers:
            if stop():
                stop_flag.set()
            try:
                index, summary, error = results.get(timeout=0.2)
            except queue.Empty:
                if not any(p.is_alive() for p in procs) and results.empty():
                    errors.append("a worker died without a word")
                    break
                continue
            if error is not None:
                errors.append(f"worker {index}: {error}")
                stop_flag.set()
            else:
                got[index] = summary
    except KeyboardInterrupt:
        stop_flag.set()
        raise
    finally:
        for proc in procs:
            proc.join(timeout=60)
    if errors:
        raise BrokerError("; ".join(errors))
    return merge_summaries(got[i] for i in sorted(got))


# --------------------------------------------------------------------------------------
# The demo stream
# --------------------------------------------------------------------------------------


def run_tag(now: datetime) -> str:
    """A short tag from the start time, so that runs (same seed or not) never share ids."""
    n = int(now.timestamp())
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


def live_config(
    now: datetime,
    *,
    rate: float = DEMO_RATE,
    seed: int = 0,
    backfill: timedelta = DEMO_BACKFILL,
    duration: timedelta | None = None,
    late_share: float = DEMO_LATE_SHARE,
    duplicate_share: float = DEMO_DUPLICATE_SHARE,
    malformed_share: float = DEMO_MALFORMED_SHARE,
    overdue_drill: int = DEMO_OVERDUE_DRILL,
    partitions: int = 2,
    tag: str | None = None,
    max_records: int | None = None,
    history_records: int = DEMO_HISTORY_RECORDS,
) -> SimConfig:
    """The configuration of a live run that starts ``backfill`` before ``now``.

    The backfill's rate is capped so that it holds about ``history_records`` records.
    """
    reasons = tuple(r for r in MALFORMED_REASONS if partitions > 1 or r != "wrong_partition")
    seconds = backfill.total_seconds()
    history_rate = min(rate, history_records / seconds) if seconds > 0 else rate
    return SimConfig(
        start=now - backfill,
        end=now + duration if duration is not None else None,
        rate=rate,
        seed=seed,
        late_share=late_share,
        duplicate_share=duplicate_share,
        malformed_share=malformed_share,
        malformed_reasons=reasons,
        overdue_drill=overdue_drill,
        drill_at=now,
        tag=run_tag(now) if tag is None else tag,
        max_records=max_records,
        live_from=now,
        history_rate=history_rate,
    )


async def run_demo_stream(
    settings: Settings,
    *,
    rate: float = DEMO_RATE,
    seed: int = 0,
    stop_event: asyncio.Event | None = None,
    backfill: timedelta = DEMO_BACKFILL,
    duration: timedelta | None = None,
    districts: int | None = None,
    clock: Clock | None = None,
    progress: Callable[[ProduceSummary], None] | None = None,
) -> ProduceSummary:
    """Produce recent history at once (``backfill``, three weeks), then a live stream until
    ``stop_event`` is set.

    The figures of every district have data as soon as the engine has read the
    backfill; a few hazards go overdue in the first minutes (see ``DEMO_OVERDUE_DRILL``).
    """
    clock = clock or SystemClock()
    city = load_city(settings.reference_file, districts)
    now = clock.now()
    config = live_config(
        now,
        rate=rate,
        seed=seed,
        backfill=backfill,
        duration=duration,
        partitions=settings.partitions,
    )
    pacer = Pacer(now.timestamp(), time.monotonic(), 1.0)
    return await produce_records(
        generate_events(city, config), settings, pacer=pacer, stop_event=stop_event,
        progress=progress,
    )  # fmt: skip


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``2h``, ``7d``, ``1w``."""
    m = _DURATION.match(text.lower())
    if not m:
        raise SettingsError(f"{text!r} is not a duration (examples: 90s, 15m, 2h, 7d).")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def parse_when(text: str, now: datetime) -> datetime:
    """``now``, ``now-7d``, ``now+5m`` or an RFC 3339 time with an offset."""
    t = text.strip().lower()
    if t.startswith("now"):
        rest = t[3:].strip()
        if not rest:
            return now
        if rest[0] in "+-":
            delta = parse_duration(rest[1:])
            return now + delta if rest[0] == "+" else now - delta
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise SettingsError(
            f"{text!r} is not a time: use now, now-7d or an RFC 3339 time with an offset."
        )
    return when


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 0.5:
        raise argparse.ArgumentTypeError(f"a share is between 0 and 0.5, not {text}")
    return value


def register_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sim = subparsers.add_parser(
        "simulate",
        help="produce realistic, replayed or scenario events to Kafka (or JSON lines)",
        description="Simulated police and community systems: a live city, a recorded file, "
        "or one of the seed document's scenarios.",
    )
    sub = sim.add_subparsers(dest="simulate_command", metavar="WHAT")
    sub.required = True

    run = sub.add_parser("run", help="a live city: backfill of recent history, then paced events")
    run.add_argument(
        "--rate",
        type=float,
        default=DEMO_RATE,
        help=f"live records/s once lifecycles flow (default {DEMO_RATE}); a live stream "
        "starts at a tenth to a half of it (clearances, rectifications, patrol ends follow "
        "hours to days later) and reaches it over days",
    )
    run.add_argument(
        "--districts", type=int, default=None, help="the first N districts of the reference"
    )
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--duration", type=parse_duration, default=None, help="e.g. 10m (default: forever)"
    )
    run.add_argument(
        "--backfill", type=parse_duration, default=DEMO_BACKFILL,
        help="history produced at once before the live stream (default 21d; 0 for none)",
    )  # fmt: skip
    run.add_argument("--late-share", type=_share, default=DEMO_LATE_SHARE)
    run.add_argument("--duplicate-share", type=_share, default=DEMO_DUPLICATE_SHARE)
    run.add_argument("--malformed-share", type=_share, default=DEMO_MALFORMED_SHARE)
    run.add_argument("--overdue-drill", type=int, default=DEMO_OVERDUE_DRILL,
                     help="hazards that go overdue in the first minutes")  # fmt: skip
    run.add_argument("--max-records", type=int, default=None)
    run.add_argument(
        "--start", default="now", help="simulated start of the live part (with --output)"
    )
    run.add_argument("--tag", default=None, help="id tag (default: from the start time)")
    run.add_argument("--output", default=None, help="write JSON lines here instead of producing")
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="producing processes, each with a share of the districts (for high rates)",
    )
    run.set_defaults(func=_cmd_run)

    rep = sub.add_parser("replay", help="replay a JSON-lines file")
    rep.add_argument("file")
    rep.add_argument(
        "--speed", type=float, default=1.0, help="speed factor; 0: as fast as possible"
    )
    rep.add_argument("--shift-to", default=None, help="move every time so the first event is at "
                     "this time: now, now-7d or RFC 3339")  # fmt: skip
    rep.add_argument("--output", default=None, help="write JSON lines here instead of producing")
    rep.set_defaults(func=_cmd_replay)

    sc = sub.add_parser("scenario", help="produce or write one of seeds/scenarios")
    sc.add_argument("name", help="scenario name, or 'list'")
    sc.add_argument("--speed", type=float, default=0.0, help="speed factor; 0 (default): at once")
    sc.add_argument(
        "--shift-to", default=None, help="now, now-7d or RFC 3339 (default: as recorded)"
    )
    sc.add_argument("--output", default=None, help="write JSON lines here instead of producing")
    sc.add_argument(
        "--rebuild",
        action="store_true",
        help="rewrite seeds/scenarios/NAME/ (events and expected figures) from the builder",
    )
    sc.set_defaults(func=_cmd_scenario)

    ref = sub.add_parser("reference", help="write a synthetic city for benchmarks")
    ref.add_argument("--districts", type=int, required=True)
    ref.add_argument("--output", required=True, help="city.json path (categories.json goes beside)")
    ref.set_defaults(func=_cmd_reference)


def _print_summary(label: str, data: Mapping[str, Any]) -> None:
    print(orjson.dumps({"simulate": label, **data}).decode(), file=sys.stderr)


def _progress(summary: ProduceSummary) -> None:
    print(
        f"simulate: {summary.tally.total} sent, {summary.delivered} confirmed, "
        f"{summary.tally.total / max(summary.seconds, 1e-9):.0f}/s",
        file=sys.stderr,
    )


def _produce_cli(
    records: Iterable[SimRecord], settings: Settings, pacer: Pacer | None, label: str
) -> int:
    async def main() -> ProduceSummary:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        return await produce_records(
            records, settings, pacer=pacer, stop_event=stop, progress=_progress
        )

    summary = asyncio.run(main())
    _print_summary(label, summary.as_dict())
    return 0


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    city = load_city(settings.reference_file, args.districts)
    clock_now = SystemClock().now()
    now = parse_when(args.start, clock_now)
    if args.output is not None and args.duration is None and args.max_records is None:
        raise SettingsError("Writing to a file needs --duration or --max-records.")
    config = live_config(
        now,
        rate=args.rate,
        seed=args.seed,
        backfill=args.backfill,
        duration=args.duration,
        late_share=args.late_share,
        duplicate_share=args.duplicate_share,
        malformed_share=args.malformed_share,
        overdue_drill=args.overdue_drill,
        partitions=settings.partitions,
        tag=args.tag,
        max_records=args.max_records,
    )
    records = generate_events(city, config)
    if args.output is not None:
        _print_summary("run", write_records(records, args.output).as_dict())
        return 0
    if now != clock_now:
        raise SettingsError("--start is for --output; a live run starts now.")
    if args.workers > 1:
        stopping = {"now": False}

        def on_signal(signum: int, frame: object) -> None:
            stopping["now"] = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        summary = produce_in_workers(
            city, config, settings, args.workers, live_from=now, stop=lambda: stopping["now"]
        )
        _print_summary("run", summary.as_dict())
        return 0
    pacer = Pacer(now.timestamp(), time.monotonic(), 1.0)
    return _produce_cli(records, settings, pacer, "run")


def _replay_records(path: Path | str, shift_to: str | None) -> Iterator[SimRecord]:
    records: Iterator[SimRecord] = read_records(path)
    if shift_to is not None:
        first = parse_when(shift_to, SystemClock().now()).timestamp()
        records = shifted(records, first)
    return records


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    records = _replay_records(args.file, args.shift_to)
    if args.output is not None:
        _print_summary("replay", write_records(records, args.output).as_dict())
        return 0
    return _produce_paced(records, settings, args.speed, "replay")


def _produce_paced(
    records: Iterator[SimRecord], settings: Settings, speed: float, label: str
) -> int:
    first = next(records, None)
    if first is None:
        raise SettingsError("There are no records to produce.")
    pacer = Pacer(first.at, time.monotonic(), speed)

    def chain() -> Iterator[SimRecord]:
        yield first
        yield from records

    return _produce_cli(chain(), settings, pacer, label)


def _cmd_scenario(args: argparse.Namespace, settings: Settings) -> int:
    if args.name == "list":
        for name in scenario_names():
            print(name)
        return 0
    if args.rebuild:
        city = load_city(PROJECT_ROOT / "seeds" / "reference" / "city.json")
        names = list(SCENARIOS) if args.name == "all" else [args.name]
        for name in names:
            print(f"simulate: wrote {write_scenario(name, city)}", file=sys.stderr)
        return 0
    records = _replay_records(scenario_file(args.name), args.shift_to)
    if args.output is not None:
        _print_summary("scenario", write_records(records, args.output).as_dict())
        return 0
    return _produce_paced(records, settings, args.speed, f"scenario {args.name}")


def _cmd_reference(args: argparse.Namespace, settings: Settings) -> int:
    path = write_reference(args.output, args.districts)
    print(f"simulate: wrote {args.districts} districts to {path}", file=sys.stderr)
    return 0

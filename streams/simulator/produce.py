"""Everything that talks to Kafka: topics, batched producing, pacing, producing processes."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import BrokerError, SettingsError
from ..events import Stream
from ..kafka import client_kwargs, create_topics
from ..partitioning import district_partition
from ..settings import Settings
from .city import SimCity
from .config import SimConfig
from .generator import generate_events
from .lines import format_utc
from .records import SimRecord
from .shard import shard
from .tally import Tally

# Batches of up to 512 KiB: a few thousand records per produce request. The broker's
# default message.max.bytes is 1 MiB.
MAX_BATCH_BYTES = 512 * 1024
# Unconfirmed batches in flight before the loop waits for the oldest.
MAX_INFLIGHT = 64


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.rate, 1),
            "topics": dict(sorted(self.topics.items())),
            "first_at": format_utc(self.first_at) if self.first_at is not None else None,
            "last_at": format_utc(self.last_at) if self.last_at is not None else None,
            **{k: v for k, v in self.tally.to_dict().items() if k != "total"},
        }


class RecordProducer:
    """Sends records in batches built per partition, keyed by district, and keeps receipts.

    Partitions are chosen here with Kafka's default (murmur2) partitioner, as the
    engine expects; a ``wrong_partition`` record goes to the next partition instead.
    Batches are built with aiokafka's batch API, which costs a fraction of ``send``
    per record.
    """

    def __init__(self, settings: Settings, *, acks: str | int = "all") -> None:
        self.settings = settings
        self.topics = settings.topic_by_stream
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

        self.partitions = await create_topics(self.settings, self.topics.values())
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
    spreads the districts over processes (see :func:`streams.simulator.shard.shard`). With
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

"""One worker's parts from settings: Faust app, state table, engine, metrics, batch handling."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast
from zoneinfo import ZoneInfo

import faust
from faust.tables import TableManager
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from prometheus_client import CollectorRegistry
from yarl import URL

from . import memory
from .clock import Clock, SystemClock
from .consumer import Batch, BatchTransport, batch_consumer, offset_runs
from .deadletter import DeadLetterWriter, build_dead_letter
from .engine import BatchResult, Engine
from .errors import SettingsError
from .events import Stream
from .exposition import DistrictCollector
from .kafka import delivery_problem, faust_credentials, install_aiokafka_fixes, install_fetch_path
from .metrics import Metrics
from .partitioning import district_of_key, district_partitioner
from .reference import load_reference
from .restore import BulkRestoredStore
from .settings import Settings
from .state_journal import StateStore, Utf8Keys

if TYPE_CHECKING:
    from .ingest import IngestService

log = logging.getLogger(__name__)

STATE_TABLE = "state"
# How long one check of the producer's path to Kafka may take (agents.py runs it).
KAFKA_CHECK_TIMEOUT_SECONDS = 3.0
# A batch is not begun while Faust's producer buffer holds more messages than this, for
# at most PRODUCER_EBB_SECONDS. Table writes (journals, snapshot chunks) only queue there,
# and a busy loop gave its sending task so few turns that a catch-up ended with about
# 5,000 of them waiting (26 MB of values, once more in aiokafka's batches). A send waits
# whenever aiokafka's batch for its partition is full, until a produce round trip that
# needs the loop: waits of up to a second took the 50,000 events/s phase's p99 from 0.5
# to 1.5 s; 20 ms kept it under 0.7 s and the catch-up's peak as low.
PRODUCER_EBB_MESSAGES = 200
PRODUCER_EBB_SECONDS = 0.02


async def _wait_while(holds: Callable[[], bool], woken: asyncio.Event, deadline: float) -> None:
    """Wait while ``holds()``, looking again each time ``woken`` is set, until the loop's
    clock reaches ``deadline``."""
    loop = asyncio.get_running_loop()
    while holds():
        delay = deadline - loop.time()
        if delay <= 0:
            return
        woken.clear()
        try:
            await asyncio.wait_for(woken.wait(), delay)
        except TimeoutError:
            return


def _text(key: bytes | str) -> str:
    return key.decode() if isinstance(key, bytes) else key


class WatchfloorApp(faust.App):
    """A Faust app whose consumer delivers source topics a fetch at a time."""

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)

    def on_rebalance_start(self) -> None:
        super().on_rebalance_start()
        batch_consumer(self).recovering(True)

    def on_rebalance_end(self) -> None:
        super().on_rebalance_end()
        batch_consumer(self).recovering(False)


class PromptTableManager(TableManager):
    """Faust's table manager without its one-second nap before the changelogs are read."""

    async def on_start(self) -> None:
        # Faust sleeps 1 s here so that tables declared late (at import of agents found
        # by autodiscovery) are in before the changelog channels are made. The worker
        # makes its one table before the app starts, so the nap only delayed every
        # restart by a second.
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class StateWriteGuard(faust.Sensor):
    """Stops the worker when Kafka gives up on a state write, before anything commits past it.

    A journal the producer could not deliver (Kafka away longer than
    ``WATCHFLOOR_PRODUCER_TIMEOUT``) is lost from the changelog while the district state
    in memory still has it; committing the records it came from would lose their counts
    at the next recovery. So the first such failure stops commits (``commit_allowed``)
    and crashes the app: the next start rebuilds from the changelog and reads those
    records again.
    """

    def __init__(self, wf: Watchfloor) -> None:
        super().__init__()
        self.wf = wf

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> Any:
        return topic

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        if state == self.wf.changelog_topic:
            self.wf.state_write_failed(exc)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("Rendering the exposition ahead of a scrape failed: %r", task.exception())


class StateTable(faust.Table[bytes, bytes]):
    """The state table; tells the worker when recovery of its partitions is complete, and
    when its writes have reached Kafka."""

    watchfloor: Watchfloor | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._undelivered: set[asyncio.Future[Any]] = set()

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> Any:
        fut = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        if not fut.done():
            self._undelivered.add(fut)
            fut.add_done_callback(self._undelivered.discard)
        return fut

    async def writes_delivered(self, timeout: float) -> bool:
        """Wait until every write made so far was delivered (or failed); False on timeout."""
        pending = list(self._undelivered)
        if not pending:
            return True
        _, not_done = await asyncio.wait(pending, timeout=timeout)
        return not not_done

    def _new_store_by_url(self, url: str | URL) -> Any:
        scheme = URL(str(url)).scheme
        if scheme == "memory" and self.watchfloor is not None:
            return BulkRestoredStore(
                url, self.app, self, settings=self.watchfloor.settings, **self._store_options()
            )
        if scheme != "rocksdb":
            return super()._new_store_by_url(url)
        from .rocksdb_store import DistrictRocksDBStore

        return DistrictRocksDBStore(
            url,
            self.app,
            self,
            partitions=self.partitions or self.app.conf.topic_partitions,
            **self._store_options(),
        )

    def _store_options(self) -> dict[str, Any]:
        """What Faust's own ``_new_store_by_url`` gives every store."""
        return {
            "table_name": self.name,
            "key_type": self.key_type,
            "key_serializer": self.key_serializer,
            "value_serializer": self.value_serializer,
            "value_type": self.value_type,
            "options": self.options,
        }

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        if self.watchfloor is not None:
            self.watchfloor.on_recovered({tp.partition for tp in active_tps})


class Watchfloor:
    """One worker: holds the engine's district states for the partitions it owns."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.reference = load_reference(settings.reference_file)
        self.tz = ZoneInfo(settings.timezone) if settings.timezone else self.reference.timezone
        self.limits = settings.limits
        self.validator = settings.validator(self.reference, self.clock)
        self.topics: dict[str, Stream] = settings.stream_by_topic
        self.engine = Engine(
            reference=self.reference,
            validator=self.validator,
            topics=self.topics,
            partitions=settings.partitions,
            limits=self.limits,
            clock=self.clock,
            tz=self.tz,
            forward_topic=settings.topic_forward if settings.forward_misrouted else None,
        )
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry, list(self.engine.topics))
        # Not registered: /metrics renders it with its own fast writer (exposition.exposition).
        self.districts_collector = DistrictCollector(
            lambda: self.engine.states,
            self.clock.time,
            self.reference.work_safety,
            topics=self.topics,
            partition_of=self.engine.partition_of,
        )
        self.ready = False
        # Why the producer cannot deliver now (None: it can), and whether SIGTERM came.
        self.kafka_problem: str | None = None
        self._kafka_lost_at: float | None = None
        self.draining = False
        self.ingest: IngestService | None = None  # HTTP ingest, set by streams/web.py
        self.commits_blocked = False
        self._crashing: asyncio.Future[Any] | None = None
        self.assigned: set[int] = set()
        self._recovery_started: float | None = None
        self._warming: asyncio.Task[list[bytes]] | None = None
        self._last_offset: dict[TP, int] = {}
        # Held while a batch is between counting and journaling (see checkpoint()).
        self._batch_lock = asyncio.Lock()
        self._stopped_counting = False
        # The batches counted whose journals are held (StateStore.stage), oldest first:
        # (mark, when counted, offset runs per partition), acked once every journal
        # holding their rows is written. Offsets, not records: a second of input at
        # 40,000 events/s is 20-30 MB of records.
        self._unflushed: deque[tuple[int, float, list[tuple[TP, list[tuple[int, int]]]]]] = deque()
        self._batch_mark = 0
        # Journals owed to the rolling flush (_flush_share) and when it last ran.
        self._flush_credit = 0.0
        self._flush_checked = 0.0
        install_aiokafka_fixes()
        install_fetch_path()
        self.app = self._make_app()
        self.table = self._make_table()
        self.changelog_topic = self.table.changelog_topic.get_topic_name()
        self.app.sensors.add(StateWriteGuard(self))
        data = self.table.data
        self.store = StateStore(
            Utf8Keys(self.table),
            self.tz,
            self.limits,
            local=data.data if isinstance(data, BulkRestoredStore) else None,
        )
        self.deadletter = self.app.topic(
            settings.topic_deadletter,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        )
        # The source topics and the forward topic: all co-partitioned, so one worker owns
        # partition p of each, and with it the districts that hash to p.
        self.source_topics = {
            name: self.app.topic(
                name, key_serializer="raw", value_serializer="raw", partitions=settings.partitions
            )
            for name in self.engine.topics
        }
        # The in-memory channel the consumer feeds; a small queue so a busy agent
        # slows the fetches down instead of piling batches up in memory.
        self.batches = self.app.channel(maxsize=2)
        self._waiting_batch: Batch | None = None  # the newest batch sent to the channel
        self._batch_grew = asyncio.Event()
        self.subscribe_sources()

    # -- readiness ------------------------------------------------------------------

    @property
    def serving(self) -> bool:
        """What ``/ready`` says: state recovered, Kafka reachable, not shutting down."""
        return self.ready and self.kafka_problem is None and not self.draining

    def not_ready_reason(self) -> str | None:
        if self.draining:
            return "The worker is shutting down."
        if not self.ready:
            return "The worker is recovering its state."
        if self.kafka_problem is not None:
            return f"The worker cannot deliver to Kafka: {self.kafka_problem}."
        return None

    def begin_drain(self) -> None:
        """SIGTERM: answer /ready with 503 from now on, so traffic goes elsewhere."""
        self.draining = True

    async def check_kafka(self) -> None:
        """Whether the producer can deliver to every partition it writes; logs changes."""
        producer = getattr(self.app.producer, "_producer", None)  # Faust's aiokafka producer
        if producer is None or self.app.should_stop:
            return
        topics = [*self.engine.topics, self.settings.topic_deadletter, self.changelog_topic]
        problem = await delivery_problem(producer.client, topics, KAFKA_CHECK_TIMEOUT_SECONDS)
        self.set_kafka_problem(problem)

    def set_kafka_problem(self, problem: str | None) -> None:
        now = time.monotonic()
        if problem is not None and self.kafka_problem is None:
            self._kafka_lost_at = now
            log.warning(
                "Kafka cannot take this worker's writes (%s): /ready and HTTP ingest answer "
                "503 until it can.",
                problem,
            )
        elif problem is None and self.kafka_problem is not None:
            since = now - (self._kafka_lost_at or now)
            log.info("Kafka takes this worker's writes again, after %.0fs.", since)
        self.kafka_problem = problem
        self.metrics.kafka_available.set(0 if problem else 1)

    def state_write_failed(self, exc: BaseException) -> None:
        """A journal or snapshot did not reach the changelog: stop without committing."""
        if self.commits_blocked:
            return
        self.commits_blocked = True
        self.ready = False
        self.metrics.ready.set(0)
        log.error(
            "Kafka did not take a state write within WATCHFLOOR_PRODUCER_TIMEOUT (%gs): %s. "
            "Stopping without committing; the next start reads the uncommitted records again.",
            self.settings.producer_timeout,
            str(exc) or type(exc).__name__,
        )
        self._crashing = asyncio.ensure_future(self.app.crash(exc))

    def commit_allowed(self) -> bool:
        return not self.commits_blocked

    # -- construction ---------------------------------------------------------------

    def _make_app(self) -> WatchfloorApp:
        s = self.settings
        if s.store.startswith("rocksdb://"):
            try:
                import rocksdict  # noqa: F401
            except ImportError:
                raise SettingsError(
                    "WATCHFLOOR_STORE=rocksdb:// needs RocksDB bindings: "
                    "pip install 'watchfloor[rocksdb]' (rocksdict)."
                ) from None
        app = WatchfloorApp(
            s.app_id,
            # Faust would read its own plain variables (WEB_PORT, APP_DATADIR,
            # BROKER_SESSION_TIMEOUT, ...) over what is passed here; a Watchfloor process
            # is configured by WATCHFLOOR_* alone (streams/settings.py).
            env={},
            broker=[f"kafka://{server}" for server in s.bootstrap_list],
            broker_credentials=faust_credentials(s),
            store=s.store,
            datadir=s.data_dir,
            autodiscover=False,
            topic_partitions=s.partitions,
            topic_replication_factor=s.replication_factor,
            table_standby_replicas=s.standby_replicas,
            producer_partitioner=district_partitioner,
            key_serializer="raw",
            value_serializer="raw",
            processing_guarantee="at_least_once",
            TableManager=PromptTableManager,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=s.commit_interval,
            broker_session_timeout=s.session_timeout,
            consumer_group_instance_id=s.group_instance_id or None,
            broker_heartbeat_interval=max(0.5, s.session_timeout / 5),
            broker_max_poll_records=s.batch_max_events,
            consumer_max_fetch_size=s.fetch_partition_bytes,
            producer_linger_ms=5,
            producer_max_batch_size=512 * 1024,
            producer_max_request_size=4 * 1024 * 1024,
            # Faust's default is 1,200 s: a record, a POST and a shutdown would wait that
            # long for a broker that is gone.
            producer_request_timeout=s.producer_timeout,
            web_enabled=True,
            web_transport="tcp://",
            web_bind=s.web_host,
            web_host=s.web_host,
            web_port=s.web_port,
            canonical_url=s.web_url,
            web_in_thread=False,
            # Faust's own views (/router, /table with its key lookups, /stats, /graph) would
            # serve internal state without authentication; the worker's API routes
            # between workers in-process (app.router), without them.
            web_router_enabled=False,
            web_tables_enabled=False,
            web_stats_enabled=False,
            web_graph_enabled=False,
            web_metrics_enabled=False,
            # HTTP ingest inflates compressed bodies itself, bounded and only for a known
            # token (streams/web.py); aiohttp would inflate on the event loop first.
            web_application_options={"handler_args": {"auto_decompress": False}},
        )
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)
        return app

    def _make_table(self) -> StateTable:
        s = self.settings
        table = StateTable(
            self.app,
            name=STATE_TABLE,
            default=None,
            beacon=self.app.tables.beacon,
            partitions=s.partitions,
            key_type=bytes,
            value_type=bytes,
            # The producer's partitioner places each key by its district, so writes
            # need no current event and land in the district's partition.
            use_partitioner=True,
            help="Watchfloor district state: journals and snapshots",
            extra_topic_configs={
                # Keys are overwritten in place; let the log cleaner drop old values
                # soon, so a restart reads little more than the live records.
                "segment.ms": str(15 * 60 * 1000),
                "min.cleanable.dirty.ratio": "0.1",
                "delete.retention.ms": str(6 * 3600 * 1000),
                "max.message.bytes": str(4 * 1024 * 1024),
            },
        )
        table.watchfloor = self
        self.app.tables.add(table)
        return table

    # -- rebalances -----------------------------------------------------------------

    async def _on_revoked(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Faust revokes everything at each rebalance: stop serving figures at once, so
        # a district is never exported by two workers.
        self.ready = False
        self.metrics.ready.set(0)
        self.metrics.rebalances.inc()
        gone = self.engine.keep_partitions(set())
        self.store.forget(gone)
        # Faust committed before this signal, without the held batches: the partitions'
        # next owner (maybe this worker, after a seek to the committed offsets) reads
        # them again, and rebuilds the states from the journals written before them.
        self._discard_unflushed()
        self.metrics.owned_districts.set(0)
        # Lag of partitions this worker may no longer own must not linger as a series.
        self.metrics.consumer_lag.clear()
        self._last_offset.clear()

    async def _on_assigned(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned: set[TP] = args[0]
        self.assigned = {tp.partition for tp in assigned if tp.topic in self.topics}
        self.metrics.assigned_partitions.set(len(self.assigned))
        self._recovery_started = time.monotonic()
        self.metrics.recovery_in_progress.set(1)
        self.metrics.recovery_started.set(self.clock.time())

    def on_recovered(self, partitions: set[int]) -> None:
        """Rebuild the district states of the partitions this worker now owns."""
        t0 = time.monotonic()
        gone = self.engine.keep_partitions(set())
        self.store.forget(gone)
        self._purge_foreign_keys(partitions)
        keys = [
            k
            for k in self.store.table
            if self.engine.partition_of(district_of_key(k)) in partitions
        ]
        # The changelog's read leaves about 50 MB in reference cycles after a
        # 1,000,000-event catch-up; the periodic full collection frees it. Collected
        # here, before the rebuild, a restart took 0.1 s longer (runs alternated).
        # The rebuild makes the whole state at once: see memory.collector_paused.
        with memory.collector_paused(), batch_consumer(self.app).fetching_paused():
            self.engine.states = self.store.load(keys)
        if isinstance(self.table.data, BulkRestoredStore):
            self.table.data.release()
        self.engine.own(partitions)
        self.engine.tick()
        now = time.monotonic()
        started = self._recovery_started if self._recovery_started is not None else t0
        self.metrics.last_recovery_duration.set(now - started)
        self.metrics.recovery_in_progress.set(0)
        self.metrics.owned_districts.set(len(self.engine.states))
        self.ready = True
        self.metrics.ready.set(1)
        self._warm_exposition()
        log.info(
            "Recovered %d districts of partitions %s in %.2fs (rebuild %.2fs)",
            len(self.engine.states),
            sorted(partitions),
            now - started,
            now - t0,
        )

    def _warm_exposition(self) -> None:
        # The first scrape after a rebuild renders every district (0.2 s at 1,000). Begun
        # now, in slices, it mostly fills the time Faust still waits on the broker before
        # the worker is ready, and the first scrape finds the districts rendered.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: nothing will scrape before the next render
            return
        self._warming = loop.create_task(self.districts_collector.render_parts())
        self._warming.add_done_callback(_log_failure)

    def _purge_foreign_keys(self, partitions: set[int]) -> None:
        # Keys this worker wrote for partitions it no longer owns would linger in the
        # in-memory store and turn stale; the changelog has the truth for the owner.
        raw = getattr(self.table.data, "data", None)  # the memory store's dict
        if not isinstance(raw, dict):
            return
        for key in [
            k for k in raw if self.engine.partition_of(district_of_key(_text(k))) not in partitions
        ]:
            del raw[key]

    # -- processing -----------------------------------------------------------------

    async def checkpoint(self) -> int:
        """Clean stop: snapshot every district with journals since its last snapshot.

        The next start then loads snapshots and replays no journal. Taken between two
        batches (a snapshot of a state whose batch is counted but not yet journaled would
        count that batch twice on replay); batches fetched afterwards are left unacked
        for the next start to read again.
        """
        async with self._batch_lock:
            self._stopped_counting = True
            if not self.ready or self.commits_blocked or self.kafka_problem is not None:
                return 0  # nothing complete to snapshot, or no broker to take it
            t0 = time.monotonic()
            before = self.store.records_written
            n = self.store.checkpoint(self.engine.states)
            self._ack_unflushed()
            self.metrics.changelog_records.inc(self.store.records_written - before)
            log.info(
                "Snapshot of %d districts for the next start in %.2fs", n, time.monotonic() - t0
            )
            return n

    async def process_batch(self, batch: Batch) -> BatchResult | None:
        """Count one fetch, write its dead letters, then hold its journals; the batch is
        acked when they are written (``WATCHFLOOR_STATE_FLUSH_MS``, ``_flush``).

        Dead letters are confirmed before the journals that carry the offset evidence
        are written: a crash in between re-reads the records (a dead letter may be
        written twice, never lost). Everything else runs without awaiting, so a
        rebalance cannot cut a batch in half.
        """
        await self._producer_ebb()
        await self._linger(batch)
        # A scrape in progress goes first (DistrictCollector.scraping); later fetches
        # may still join the batch meanwhile.
        await self.districts_collector.scrape_done()
        batch.taken = True  # before any other await: no fetch may join it from here on
        async with self._batch_lock:
            if self._stopped_counting:
                return None
            return await self._process_batch(batch)

    async def _producer_ebb(self) -> None:
        """Wait, at most PRODUCER_EBB_SECONDS, until Faust's producer buffer holds no more
        than PRODUCER_EBB_MESSAGES; never while Kafka is known to be away (nothing drains)."""
        # The concrete buffer: its event for a message sent (set by the buffer's task after
        # each one) is not in Faust's interface.
        buf = cast(ProducerBuffer, self.app.producer.buffer)
        if buf.size <= PRODUCER_EBB_MESSAGES or self.kafka_problem is not None:
            return
        deadline = asyncio.get_running_loop().time() + PRODUCER_EBB_SECONDS
        await _wait_while(lambda: buf.size > PRODUCER_EBB_MESSAGES, buf.message_sent, deadline)

    async def _linger(self, batch: Batch) -> None:
        """Let later fetches join a small batch, for at most the linger from its fetch."""
        s = self.settings
        if s.batch_linger_ms <= 0:
            return
        await _wait_while(
            lambda: len(batch) < s.batch_min_events
            and batch is self._waiting_batch
            and not self._stopped_counting,
            self._batch_grew,
            batch.fetched_at + s.batch_linger_ms / 1000.0,
        )

    async def _process_batch(self, batch: Batch) -> BatchResult | None:
        consumer = batch_consumer(self.app)
        if not self._owns(batch):
            # Fetched before a rebalance: the partitions' new owner (maybe us again,
            # after a seek to the committed offsets) reads these records again.
            if batch.generation == self.app.consumer_generation_id and consumer.is_current(batch):
                await consumer.rewind(batch.parts)  # no seek is coming to bring them back
            return None
        if not consumer.is_current(batch):
            # A seek came after this fetch and brings these records again, in order.
            return None
        t0 = time.perf_counter()
        self.metrics.batch_wait.observe(
            max(0.0, asyncio.get_running_loop().time() - batch.fetched_at)
        )
        self.metrics.batch_records.observe(len(batch))
        with memory.counting():
            result = self.engine.process(
                (tp.topic, tp.partition, records) for tp, records in batch.parts
            )
        if result.forwards:
            # Confirmed before the batch is acked: a crash before the commit forwards them
            # again, and the district's evidence skips the second copy.
            await self._forward(result)
            if not self._owns(batch):
                return None
        if result.rejections:
            await self._dead_letter(result)
            if not self._owns(batch):
                return None  # revoked meanwhile; the states were dropped with it
        self._batch_mark += 1
        self.store.stage(result.journals, self._batch_mark)
        now = time.monotonic()
        if not self._unflushed:
            self._flush_checked = now
        offsets = [(tp, offset_runs(records)) for tp, records in batch.parts]
        self._unflushed.append((self._batch_mark, now, offsets))
        with memory.counting():
            self._flush_share(now)
        for tp, records in batch.parts:
            self._last_offset[tp] = records[-1].offset
        # Hazards found already past their deadline (a backlog) are overdue once counted,
        # not only at the next tick of the overdue timer.
        self.engine.tick()
        self._observe(result)
        self.metrics.owned_districts.set(len(self.engine.states))
        self.metrics.batch_duration.observe(time.perf_counter() - t0)
        memory.after_batch()
        return result

    async def flush_if_due(self) -> None:
        """The timer's flush: held journals are written within the flush interval even
        when no batch follows them."""
        if not self._unflushed:
            return
        async with self._batch_lock:
            if not self._stopped_counting and self._unflushed:
                self._flush_share(time.monotonic())

    def _flush_share(self, now: float) -> None:
        """Write the journals held longest, then ack the batches they complete.

        Written: every journal holding rows of a batch counted an interval ago or more,
        and at least the share of the held ones that the time since the last call makes
        (held / interval per second). Under a steady load every district holds a
        journal; written all at once, they (and the snapshots they make due) made one
        batch a second about 175 ms longer at 20,000 events/s, and every event behind it
        waited as long. A share per batch writes as many journals, each held about an
        interval, with no batch paying for all of them.
        """
        store = self.store
        interval = self.settings.state_flush_ms / 1000.0
        # A journal is one Kafka record: held rows stay within what one batch makes.
        if interval <= 0 or store.staged_rows_max >= self.settings.batch_max_events:
            self._flush_credit = 0.0
            self._flush(None)
            return
        due = 0
        for mark, counted_at, _ in self._unflushed:
            if now - counted_at < interval:
                break
            due = mark
        held = store.staged
        elapsed = max(0.0, now - self._flush_checked)
        self._flush_checked = now
        credit = min(float(held), self._flush_credit + held * min(1.0, elapsed / interval))
        n = max(store.held_through(due) if due else 0, int(credit))
        self._flush_credit = max(0.0, credit - n)
        self._flush(n)

    def _flush(self, oldest: int | None) -> None:
        """Write the ``oldest`` held journals (all: None), then ack the batches whose
        journals are all written (Faust commits acked offsets)."""
        if oldest is None or oldest > 0:
            before = self.store.records_written
            self.store.flush(self.engine.states, oldest)
            self.metrics.changelog_records.inc(self.store.records_written - before)
        self._ack_unflushed(self.store.held_since())

    def _ack_unflushed(self, below: int | None = None) -> None:
        """Ack the batches marked below ``below``; all of them when None."""
        consumer = batch_consumer(self.app)
        pending = self._unflushed
        while pending and (below is None or pending[0][0] < below):
            for tp, offsets in pending.popleft()[2]:
                consumer.ack_runs(tp, offsets)

    def _discard_unflushed(self) -> None:
        self.store.discard()
        self._unflushed.clear()
        self._flush_credit = 0.0

    def _owns(self, batch: Batch) -> bool:
        return self.ready and batch.generation == self.app.consumer_generation_id

    async def _forward(self, result: BatchResult) -> None:
        topic = self.source_topics[self.settings.topic_forward]
        pending = []
        for fwd in result.forwards:
            pending.append(
                await topic.send(
                    key=fwd.district.encode(), value=fwd.value, headers=fwd.forward_headers()
                )
            )
            self.metrics.forwarded[fwd.topic].inc()
        await asyncio.gather(*pending)

    async def _dead_letter(self, result: BatchResult) -> None:
        worker = self.settings.web_url
        rejected = self.metrics.rejected
        letters = []
        for rej in result.rejections:
            letter = build_dead_letter(
                key=rej.key,
                value=rej.value,
                headers=rej.headers,
                reason=rej.reason,
                error=rej.message,
                source_topic=rej.topic,
                source_partition=rej.partition,
                source_offset=rej.offset,
                source_timestamp_ms=rej.timestamp_ms,
                worker=worker,
                rejected_at=self.clock.now(),
            )
            letters.append(letter)
            rejected[(rej.topic, rej.reason)].inc()
        try:
            producer: Any = self.app.producer  # Faust's aiokafka driver
            writer = DeadLetterWriter(
                producer._ensure_producer(),  # aiokafka's, once Faust's is started
                self.settings.topic_deadletter,
                producer.partitioner,  # where Faust's own sends would have put them
            )
            await writer.write_many(letters)
        except Exception:
            self.metrics.dead_letter_errors.inc()
            raise

    def _observe(self, result: BatchResult) -> None:
        m = self.metrics
        now = self.clock.time()
        for topic, n in result.received.items():
            m.received[topic].inc(n)
            m.last_event_by_topic[topic].set(now)
        for topic, n in result.counted.items():
            if n:
                m.processed[topic].inc(n)
        for topic, times in result.event_times.items():
            if times:
                m.latency.observe_many(topic, (max(0.0, now - t) for t in times))

    def next_offset(self, tp: TP) -> int | None:
        """The next offset of ``tp`` this worker counts: after its last batch, or its
        consumer group's committed offset before the first (None: neither known)."""
        last = self._last_offset.get(tp)
        consumer: Any = self.app.consumer  # Faust's books of the group's commits
        committed: int | None = consumer._committed_offset.get(tp)
        if last is None:
            return committed
        return max(last + 1, committed or 0)

    def sample_lag(self) -> None:
        consumer = self.app.consumer
        for tp, last in list(self._last_offset.items()):
            if tp.partition not in self.assigned:
                continue
            high = consumer.highwater(tp)
            if high is not None:
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                    max(0, high - last - 1)
                )

    def subscribe_sources(self) -> None:
        """Subscribe the source topics and route their fetches to the batch channel."""
        for topic in self.source_topics.values():
            self.app.topics.add(topic)
        consumer = batch_consumer(self.app)
        consumer.configure_batches(frozenset(self.engine.topics), self._deliver)
        consumer.fetch_max_wait_ms = self.settings.fetch_max_wait_ms
        consumer.fetch_max_bytes = self.settings.fetch_max_bytes
        consumer.on_refetch = self.metrics.refetched_records.inc
        consumer.on_fetch_error = self.metrics.fetch_errors.inc
        consumer.commit_allowed = self.commit_allowed
        consumer.state_writes_delivered = self.table.writes_delivered

    async def _deliver(self, batch: Batch) -> None:
        # A fetch joins the batch still waiting in the channel when it can: under a
        # steady load the agent then always takes everything fetched while it counted,
        # and a record's wait is one batch, not the channel's whole queue (issue #16,
        # event-to-metric latency). During a catch-up batches are full and queue.
        waiting = self._waiting_batch
        absorbed = waiting is not None and waiting.absorb(batch, self.settings.batch_max_events)
        # Wakes a lingering batch: it has grown, or a batch now queues behind it.
        self._batch_grew.set()
        if absorbed:
            return
        self._waiting_batch = batch
        await self.batches.send(value=batch)

    def other_workers(self) -> list[str]:
        """The web URLs of the group's other workers, by the table's routing metadata."""
        me = self.settings.web_url.rstrip("/")
        urls: set[str] = set()
        try:
            for url in self.app.router.tables_metadata():
                if str(url).rstrip("/") != me:
                    urls.add(str(url).rstrip("/"))
        except KeyError:  # no assignment yet
            pass
        return sorted(urls)

    def districts(self) -> Iterable[str]:
        return self.engine.states.keys()

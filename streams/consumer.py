"""A Faust consumer that hands the source topics to the counting agent a fetch at a time.

Faust's stock fetch loop delivers every record on its own: two asyncio tasks and an
event object per record cap a worker at about 11,000 records/s on two cores, whatever
the agent does. Watchfloor's agent works on batches anyway (so that state writes scale
with districts, not events), so for the source topics this consumer skips the
per-record path: each fetch becomes one :class:`Batch` on an in-memory channel that
the agent iterates. Every other topic (table changelogs during recovery, Faust's own
topics) still goes through Faust's per-record path.

Acknowledgement and commits are Faust's own: the agent acks a batch's offsets after
its state is written, and Faust's commit loop flushes the producer (the state
changelog) before it commits them.

Order is the invariant everything rests on. The engine skips a record whose offset is
at or below what a district has already counted, so a record that reaches it after a
later one of its partition is lost for good. Three rules keep every partition in order:

* fetches and seeks never overlap (one lock), so a fetch's records are either all
  from before a seek or all from after it;
* each seek gives the partition a new *position epoch*; records fetched under an
  older epoch are dropped, and the seek makes the broker send them again in order;
* a source partition is counted only once a seek in the current assignment has
  positioned it (Faust seeks every partition to its committed offset after recovery;
  this consumer also positions those that have no committed offset yet, which aiokafka
  would leave wherever an earlier fetch left them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

if TYPE_CHECKING:
    from .engine import RecordLike

log = logging.getLogger(__name__)

#: Longest a rewind may wait for the broker; Faust bounds its own seeks the same way.
SEEK_TIMEOUT_SECONDS = 30.0
# A commit waits at most this long for Kafka (normally it takes milliseconds).
COMMIT_TIMEOUT_SECONDS = 10.0
#: Pause after an unexpected error in the fetch loop, so a persistent one cannot spin.
ERROR_PAUSE_SECONDS = 1.0


@dataclass(slots=True)
class Batch:
    """Records of one fetch, per topic-partition, tagged with where they came from.

    ``generation`` is the consumer group generation and ``epochs`` the position epoch of
    each part at fetch time: the batch may be counted only while both are current.
    """

    generation: int
    parts: list[tuple[TP, Sequence[RecordLike]]]
    fetched_at: float
    epochs: list[int] = field(default_factory=list)
    # Set by the agent the moment it starts counting: from then on nothing joins it.
    taken: bool = False
    # Parts whose record list this batch made itself (grown in place by later fetches).
    _grown: set[int] = field(default_factory=set)

    def __len__(self) -> int:
        return sum(len(records) for _, records in self.parts)

    def absorb(self, later: Batch, max_events: int) -> bool:
        """Append the records of a later fetch, if this batch still waits for the agent.

        While the agent counts one batch, the fetches that arrive join the next one
        instead of queueing behind it as batches of their own: the agent then takes
        everything fetched so far in one go, and a record waits for at most the batch
        in progress, not for a queue of them. False (and nothing changed) when the
        batch was taken, would grow past ``max_events``, or a part of ``later`` could
        not follow this batch's records of its partition in offset order under the
        same position epoch; the caller then queues ``later`` on its own.
        """
        if self.taken or later.generation != self.generation:
            return False
        if len(self) + len(later) > max_events:
            return False
        where = {tp: i for i, (tp, _) in enumerate(self.parts)}
        for (tp, records), epoch in zip(later.parts, later.epochs, strict=True):
            i = where.get(tp)
            if i is None:
                continue
            mine = self.parts[i][1]
            if self.epochs[i] != epoch or (mine and records[0].offset <= mine[-1].offset):
                return False
        for (tp, records), epoch in zip(later.parts, later.epochs, strict=True):
            i = where.get(tp)
            if i is None:
                where[tp] = len(self.parts)
                self.parts.append((tp, records))
                self.epochs.append(epoch)
            elif i in self._grown:
                cast(list[Any], self.parts[i][1]).extend(records)
            else:
                # Copied once, then extended: many small fetches must not cost a copy each.
                self.parts[i] = (tp, [*self.parts[i][1], *records])
                self._grown.add(i)
        return True


def _ignore(_: int) -> None:
    pass


def _no_op() -> None:
    pass


def _yes() -> bool:
    return True


async def _delivered(_: float) -> bool:
    return True


def _tp(tp: Any) -> TP:
    return tp if isinstance(tp, TP) else TP(tp.topic, tp.partition)


def awaits_position(subscriptions: Any, tp: TP) -> bool:
    """Whether aiokafka has no position yet for ``tp`` (or no longer has it assigned)."""
    subscription = subscriptions.subscription
    assignment = subscription.assignment if subscription is not None else None
    if assignment is None:
        return True
    state = assignment.state_value(TopicPartition(tp.topic, tp.partition))
    return state is None or not state.has_valid_position


class AckedOffsets:
    """The acked, not yet committed offsets of one partition, as sorted runs.

    Faust keeps each acked offset in a list and in a set until a commit takes it off.
    During a catch-up a commit waits for the state writes before it, so they piled up:
    700,000 offsets at the end of the benchmark's, each an int object, a list slot and
    a set entry, about 60 MB of the worker's peak. Records are acked a batch at a time,
    in order, so a partition's are a run or a few: a few ints.

    One object serves as both ``_acked[tp]`` and ``_acked_index[tp]``: Faust's per-record
    path (the other topics' agents) asks ``offset in``, then calls ``add`` and ``append``
    with the same offset, and both add it once.
    """

    __slots__ = ("_ends", "_starts")

    def __init__(self) -> None:
        # Disjoint runs [start, end), sorted, none adjacent to the next (merged).
        self._starts: list[int] = []
        self._ends: list[int] = []

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __len__(self) -> int:
        return sum(e - s for s, e in zip(self._starts, self._ends, strict=True))

    def __iter__(self) -> Iterator[int]:
        for s, e in zip(self._starts, self._ends, strict=True):
            yield from range(s, e)

    def __contains__(self, offset: object) -> bool:
        if not isinstance(offset, int):
            return False
        i = bisect_right(self._starts, offset) - 1
        return i >= 0 and offset < self._ends[i]

    def __repr__(self) -> str:
        runs = ", ".join(f"{s}-{e - 1}" for s, e in zip(self._starts, self._ends, strict=True))
        return f"AckedOffsets({runs})"

    def runs(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    @property
    def first(self) -> int:
        return self._starts[0]

    @property
    def end(self) -> int:
        """One past the highest acked offset."""
        return self._ends[-1]

    def add_range(self, start: int, end: int) -> int:
        """Ack offsets ``start`` to ``end - 1``; returns how many were not acked yet."""
        if start >= end:
            return 0
        starts, ends = self._starts, self._ends
        if not starts or start > ends[-1]:  # the usual case: after everything acked
            starts.append(start)
            ends.append(end)
            return end - start
        # Runs i..j-1 overlap [start, end) or touch it: they merge with it.
        i = bisect_left(ends, start)
        j = bisect_right(starts, end)
        if i == j:
            starts.insert(i, start)
            ends.insert(i, end)
            return end - start
        covered = sum(
            max(0, min(ends[k], end) - max(starts[k], start)) for k in range(i, j)
        )
        starts[i:j] = [min(start, starts[i])]
        ends[i:j] = [max(end, ends[j - 1])]
        return end - start - covered

    def add(self, offset: int) -> None:
        self.add_range(offset, offset + 1)

    append = add

    def pop_first(self) -> tuple[int, int]:
        return self._starts.pop(0), self._ends.pop(0)


def offset_runs(records: Sequence[RecordLike]) -> list[tuple[int, int]]:
    """The offsets of a partition's records (ascending) as runs ``[start, end)``."""
    if not records:
        return []
    first, last = records[0].offset, records[-1].offset
    if last - first + 1 == len(records):  # no jump: one run, without a pass
        return [(first, last + 1)]
    runs: list[tuple[int, int]] = []
    start = prev = first
    rest = iter(records)
    next(rest)
    for rec in rest:
        offset = rec.offset
        if offset != prev + 1:
            runs.append((start, prev + 1))
            start = offset
        prev = offset
    runs.append((start, prev + 1))
    return runs


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, its aiokafka consumer told how long a fetch may wait and
    how much it may bring."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        owner = cast(BatchConsumer, self.consumer)
        # Faust passes a fixed 1,500 ms and leaves the response's cap at aiokafka's
        # 50 MiB; aiokafka reads both when the consumer starts.
        consumer._fetch_max_wait_ms = owner.fetch_wait_now()
        consumer._fetch_max_bytes = owner.fetch_max_bytes
        return consumer

    # None where a partition was never committed, as aiokafka's own (Faust's type omits it).
    async def seek_to_committed(self) -> Mapping[TP, int | None]:  # type: ignore[override]
        return cast(
            Mapping[TP, int | None], await self.call_thread(self._seek_to_committed_at_once)
        )

    async def _seek_to_committed_at_once(self) -> dict[Any, int | None]:
        return await seek_to_committed_at_once(self._ensure_consumer())


async def seek_to_committed_at_once(consumer: Any) -> dict[Any, int | None]:
    """aiokafka's ``seek_to_committed`` of every assigned partition, in one request.

    aiokafka asks the broker once per partition, one after the other: about 20 round
    trips for a worker's sources, changelog and forward topic, 0.17-0.19 s of every
    restart. One request for all of them gives the same offsets (measured: 6-7 ms).
    """
    partitions = consumer.assignment()
    found = await consumer._coordinator.fetch_committed_offsets(partitions)
    committed: dict[Any, int | None] = {}
    for tp in partitions:
        meta = found.get(tp)
        offset = None if meta is None or meta.offset < 0 else meta.offset
        committed[tp] = offset
        if offset:  # as aiokafka: partitions at 0 or never committed are left alone
            consumer.seek(tp, offset)
    return committed


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with an ordered batch path for ``batch_topics``."""

    batch_topics: frozenset[str] = frozenset()
    deliver_batch: Callable[[Batch], Awaitable[None]] | None = None
    fetch_max_wait_ms: int = 1500  # Faust's own value; the worker sets its setting
    fetch_max_bytes: int = 50 * 1024 * 1024  # aiokafka's; the worker sets its setting
    # While a rebalance recovers, Faust asks the broker for offsets (changelog highwaters,
    # where to start reading, the committed offsets), and a request waits behind the
    # fetch the broker holds on the same connection: two or three fetch waits of every
    # restart (0.19 s at 100 ms). Nothing is counted then, so a fetch is held briefly.
    recovery_fetch_max_wait_ms: int = 10

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_positions()
        self._init_acks()

    def _init_acks(self) -> None:
        acked: defaultdict[TP, AckedOffsets] = defaultdict(AckedOffsets)
        self._acked = acked  # type: ignore[assignment]
        self._acked_index = acked  # type: ignore[assignment]
        self._n_acked = 0

    def _init_positions(self) -> None:
        self._fetch_lock = asyncio.Lock()
        self._epochs: dict[TP, int] = {}
        self._epoch_serial = 0
        self._fetch_epochs: dict[TP, int | None] = {}
        self.on_refetch: Callable[[int], None] = _ignore
        self.on_fetch_error: Callable[[], None] = _no_op
        # False once a state write was lost (streams/app.py, StateWriteGuard).
        self.commit_allowed: Callable[[], bool] = _yes
        # Whether every state write made so far reached Kafka, waiting at most the given
        # seconds (streams/app.py, StateTable.writes_delivered).
        self.state_writes_delivered: Callable[[float], Awaitable[bool]] = _delivered
        # Offsets a commit declined or Kafka refused, per partition, for the next commit.
        self._retry_offsets: dict[TP, int] = {}
        self._recovering = True  # a worker starts with a rebalance

    def fetch_wait_now(self) -> int:
        """How long the broker may hold a fetch that finds nothing new, in ms, just now."""
        return self.recovery_fetch_max_wait_ms if self._recovering else self.fetch_max_wait_ms

    def recovering(self, now: bool) -> None:
        """A rebalance began (fetches held briefly) or ended (held as the setting says)."""
        self._recovering = now
        wait = self.fetch_wait_now()
        aio = getattr(self._thread, "_consumer", None)
        if aio is None:  # not started: the consumer takes it when it is created
            return
        # aiokafka's fetcher reads its copy at every request it builds, so an int set
        # here (from the consumer's thread at a rebalance's start, from the worker's at
        # its end) holds from the next fetch on.
        aio._fetch_max_wait_ms = wait
        fetcher = getattr(aio, "_fetcher", None)
        if fetcher is not None:
            fetcher._fetch_max_wait_ms = wait

    @contextlib.contextmanager
    def fetching_paused(self) -> Iterator[None]:
        """No fetch while the worker rebuilds its states after a rebalance.

        Faust leaves some partitions fetched meanwhile (the forward topic's, the
        changelog's, its assignor's), all empty. Fetched every 10 ms (``recovering``),
        they took the interpreter lock from the rebuild: a restart's CPU to ``/ready``
        rose by about 0.1 s (docs/performance.md, the fourteenth step). Paused, nothing
        competes with the rebuild; resumed after it, they are fetched as before.
        """
        aio = getattr(self._thread, "_consumer", None)
        if aio is None:  # not started: nothing is fetched
            yield
            return
        quieted = set(aio.assignment()) - set(aio.paused())
        aio.pause(*quieted)
        try:
            yield
        finally:
            # Only those this pause took, and still assigned (a rebalance may have come).
            aio.resume(*(quieted & set(aio.assignment())))

    def configure_batches(
        self, topics: frozenset[str], deliver: Callable[[Batch], Awaitable[None]]
    ) -> None:
        """Send fetches of ``topics`` to ``deliver`` (which blocks while the agent is busy)."""
        self.batch_topics = topics
        self.deliver_batch = deliver

    # -- positions ------------------------------------------------------------------

    def _positioned(self, tps: Iterable[Any]) -> None:
        for tp in tps:
            self._epoch_serial += 1
            self._epochs[_tp(tp)] = self._epoch_serial

    def is_current(self, batch: Batch) -> bool:
        """Whether no seek has moved any of the batch's partitions since it was fetched."""
        epochs = self._epochs
        return all(
            epochs.get(tp) == e for (tp, _), e in zip(batch.parts, batch.epochs, strict=True)
        )

    def verify_event_path(self, now: float, tp: TP) -> None:
        # Faust's livelock check (every 2.5 commit intervals) reads aiokafka's position,
        # which asserts while a partition awaits its reset: just assigned by a rebalance,
        # or an empty partition with no committed offset (the forward topic's, usually).
        # The assertion crashed the worker; such a partition is not stuck, only not
        # positioned yet, so the check passes it by until it is.
        consumer = getattr(self._thread, "_consumer", None)
        if consumer is None or awaits_position(consumer._subscription, tp):
            return None
        return super().verify_event_path(now, tp)

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
        async with self._fetch_lock:
            records = await super()._getmany(active_partitions, timeout)
            # Read under the lock: no seek can have happened since the broker's answer.
            epochs = self._epochs
            self._fetch_epochs = {tp: epochs.get(tp) for tp in map(_tp, records)}
            return records

    async def seek(self, partition: TP, offset: int) -> None:
        async with self._fetch_lock:
            await super().seek(partition, offset)
            self._positioned([partition])

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        async with self._fetch_lock:
            await super().seek_wait(partitions)
            self._positioned(partitions)

    async def perform_seek(self) -> None:
        async with self._fetch_lock:
            committed = await self.seek_to_committed()
            read_offset = self._read_offset
            source: dict[TP, int | None] = {}
            for raw_tp, offset in committed.items():
                tp = _tp(raw_tp)
                valid = offset if offset is not None and offset >= 0 else None
                read_offset[tp] = valid
                if offset is not None:
                    self._committed_offset[tp] = offset if offset else None
                if tp.topic in self.batch_topics:
                    source[tp] = valid
            # aiokafka seeks only partitions with a committed offset above zero; the rest
            # would go on from wherever the last fetch stopped, past records dropped then.
            # A partition never committed goes to offset 0 as well, not through
            # seek_to_beginning: that one asks the broker, behind the fetch in flight (40-110
            # ms of every restart, for the forward topic's empty partitions). Where
            # retention has deleted offset 0, the fetch finds it out of range and aiokafka
            # moves to the first record kept (auto_offset_reset is "earliest"): the same
            # place.
            thread = self._thread
            for tp, start in source.items():
                if not start:
                    thread.seek(tp, 0)
            self._positioned(source)

    def _filter_committable_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        # Faust takes acked offsets off its list and marks them committed whether or not
        # the commit succeeded; after a declined commit a partition that gets no new
        # record was never committed again (seen under a 50,000 events/s load: quiet
        # topics stayed 50,000 records behind for minutes). Declined offsets therefore
        # ride along with every later commit until one succeeds.
        tps = list(tps)
        offsets: dict[TP, int] = super()._filter_committable_offsets(tps)
        retry = self._retry_offsets
        if retry:
            for tp in tps:
                offset = retry.get(tp)
                if offset is not None and offset > offsets.get(tp, -1):
                    offsets[tp] = offset
        return offsets

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        done = await self._commit_once(offsets)
        retry = self._retry_offsets
        for raw_tp, offset in offsets.items():
            tp = _tp(raw_tp)
            if not done and offset > retry.get(tp, -1):
                retry[tp] = offset
            elif done and retry.get(tp, offset + 1) <= offset:
                del retry[tp]
        return done

    async def _commit_once(self, offsets: Mapping[TP, int]) -> bool:
        # Faust flushed the producer just before, but its flush gives up on its send
        # buffer after 0.1 s without a send (a busy event loop is enough), so state writes
        # of the batches being committed may not have left yet: a kill then lost their
        # counts for good, the records being past the committed offset. So wait for every
        # state write made so far, let the callbacks of failed deliveries run, and commit
        # only if none was lost.
        if not await self.state_writes_delivered(COMMIT_TIMEOUT_SECONDS):
            log.warning(
                "Not committing offsets: state writes were not delivered within %gs; they "
                "are committed with the next ones, or read again after a restart.",
                COMMIT_TIMEOUT_SECONDS,
            )
            return False
        await asyncio.sleep(0)
        if not self.commit_allowed():
            return False
        # aiokafka waits for a group coordinator for as long as Kafka is away, and Faust
        # lets every later commit, and the stop, wait behind that one. A commit given up
        # loses nothing: records after the last commit are read again (and skipped by the
        # state's evidence) by whoever owns their partitions next.
        try:
            return bool(await asyncio.wait_for(super()._commit(offsets), COMMIT_TIMEOUT_SECONDS))
        except TimeoutError:
            log.warning(
                "Could not commit offsets: Kafka did not answer in %gs; they are committed "
                "with the next ones, or read again after a restart.",
                COMMIT_TIMEOUT_SECONDS,
            )
            return False

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._epochs.pop(_tp(tp), None)
            self._retry_offsets.pop(_tp(tp), None)  # its next owner starts from Kafka's
        await super().on_partitions_revoked(revoked)

    async def rewind(self, parts: Iterable[tuple[TP, Sequence[RecordLike]]]) -> None:
        """Seek partitions back to the first of their records that were not counted.

        For records dropped while their partition is still positioned: without the
        seek, the broker would go on after them and the engine never see them.
        """
        for tp, records in parts:
            if not records or tp not in self._epochs:
                continue
            try:
                await asyncio.wait_for(self.seek(tp, records[0].offset), SEEK_TIMEOUT_SECONDS)
            except Exception as exc:
                # Only a rebalance takes a partition away under a seek; its new owner
                # starts from the committed offset, so nothing is lost.
                self._epochs.pop(tp, None)
                log.warning("Could not rewind %s to %d: %r", tp, records[0].offset, exc)

    # -- the fetch loop -------------------------------------------------------------

    async def _drain_messages(self, fetcher: Any) -> None:
        deliver = self.deliver_batch
        if deliver is None:  # not configured: Faust's own loop
            await super()._drain_messages(fetcher)
            return
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        while not (consumer_should_stop() or fetcher_should_stop()):
            pending: list[tuple[TP, Sequence[RecordLike]]] = []
            try:
                await self._drain_once(deliver, pending)
            except self.consumer_stopped_errors:
                if self.transport.app.should_stop:
                    return
                raise
            except asyncio.CancelledError:
                if self.transport.app.should_stop:
                    return
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                # Something this loop awaited was cancelled, not the loop itself.
                await self._recover_from(pending, "a cancelled wait")
            except Exception as exc:
                log.exception("The fetch loop failed: %r", exc)
                await self._recover_from(pending, repr(exc))
                await asyncio.sleep(ERROR_PAUSE_SECONDS)

    async def _recover_from(
        self, pending: list[tuple[TP, Sequence[RecordLike]]], why: str
    ) -> None:
        # The loop must never end while the worker runs: a worker whose fetch loop is
        # gone stays up and ready while it counts nothing and recovers nothing.
        self.on_fetch_error()
        log.warning("Fetching again after %s (%d records rewound).", why, len(pending))
        await self.rewind(pending)

    async def _drain_once(
        self,
        deliver: Callable[[Batch], Awaitable[None]],
        pending: list[tuple[TP, Sequence[RecordLike]]],
    ) -> None:
        records, active = await self._wait_next_records(1.0)
        if not records or self.should_stop:
            return
        fetch_epochs = self._fetch_epochs
        if not self.flow_active:
            # Fetched while a rebalance paused the flow. Its revocation already took the
            # positions away; the seeks of the new assignment bring these records again.
            self.on_refetch(sum(len(recs) for recs in records.values()))
            return
        generation = self.app.consumer_generation_id
        epochs = self._epochs
        batch_topics = self.batch_topics
        read_offset = self._read_offset
        parts: list[tuple[TP, Sequence[RecordLike]]] = []
        part_epochs: list[int] = []
        others: list[tuple[TP, Sequence[Any]]] = []
        for raw_tp, recs in records.items():
            tp = _tp(raw_tp)
            if not recs:
                continue
            epoch = fetch_epochs.get(tp)
            is_source = tp.topic in batch_topics
            if (
                epochs.get(tp) != epoch  # a seek came after this fetch
                or (is_source and epoch is None)  # not positioned in this assignment yet
                or (is_source and active is not None and tp not in active)  # paused
            ):
                # In each case a seek follows (or came) that brings them again, in order.
                self.on_refetch(len(recs))
                continue
            if is_source:
                assert epoch is not None
                parts.append((tp, recs))
                part_epochs.append(epoch)
            else:
                if active is not None and tp not in active and tp not in self._buffered_partitions:
                    continue
                r_offset = read_offset[tp]
                if r_offset is not None and recs[0].offset < r_offset:
                    recs = [r for r in recs if r.offset >= r_offset]
                if recs:
                    others.append((tp, recs))
        pending.extend(parts)
        batch = None
        if parts:
            for tp, part in parts:
                self._note_gaps(tp, read_offset[tp], part)
                read_offset[tp] = part[-1].offset + 1
            batch = Batch(generation, parts, asyncio.get_running_loop().time(), part_epochs)
        # Changelog records first: table recovery waits for them, while the batch may
        # wait for a rebalance (and so that recovery) to end.
        callback = self.callback
        to_message = self._to_message
        for tp, other in others:
            for rec in other:
                if not self.flow_active or self.app.consumer_generation_id != generation:
                    # A rebalance began: recovery seeks the changelogs anew. The batch
                    # is stale too; rewinding keeps its partitions in order regardless.
                    await self.rewind(pending)
                    pending.clear()
                    return
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                await callback(to_message(tp, rec))
                read_offset[tp] = rec.offset
        if (
            batch is not None
            and not await self._deliver_batch(deliver, batch)
            and self.is_current(batch)
        ):
            await self.rewind(batch.parts)
        pending.clear()

    @staticmethod
    async def _deliver_batch(deliver: Callable[[Batch], Awaitable[None]], batch: Batch) -> bool:
        """Hand ``batch`` to the agent; False if a cleared queue dropped it on the way.

        The agent's queue is cleared at each rebalance, which cancels a put waiting on
        it. In a task of its own, that cancels only the put, not this fetch loop (as
        Faust does for full queues).
        """
        put = asyncio.ensure_future(deliver(batch))
        try:
            await asyncio.wait([put])
        except asyncio.CancelledError:
            put.cancel()
            raise
        if put.cancelled():
            return False
        put.result()
        return True

    def _note_gaps(self, tp: TP, r_offset: int | None, recs: Sequence[RecordLike]) -> None:
        # Offsets can jump (compaction, transaction markers); Faust commits across a
        # jump only if it was told about it, as its own loop does record by record.
        first = recs[0].offset
        if (r_offset is None or first == r_offset) and recs[-1].offset - first + 1 == len(recs):
            return  # the usual fetch: no jump, and no pass over its records
        committed = self._committed_offset[tp]
        gaps = self._gap[tp]
        prev = r_offset - 1 if r_offset is not None else None
        for rec in recs:
            if prev is not None and rec.offset - prev > 1:
                start = prev + 1 if committed is None else max(prev + 1, committed + 1)
                if start < rec.offset:
                    gaps.addi(start, rec.offset)
                    gaps.merge_overlaps()
            prev = rec.offset

    def ack_batch(self, tp: TP, records: Sequence[RecordLike]) -> None:
        """Mark a batch's offsets processed, as Faust's ``ack`` does record by record."""
        self.ack_runs(tp, offset_runs(records))

    def ack_runs(self, tp: TP, runs: Iterable[tuple[int, int]]) -> None:
        """``ack_batch`` of the records at these offsets (runs ``[start, end)``)."""
        committed = self._committed_offset[tp]
        acked = cast(AckedOffsets, self._acked[tp])
        n = 0
        for start, end in runs:
            n += acked.add_range(start if committed is None else max(start, committed), end)
        self._n_acked += n

    def acked_end(self, tp: TP) -> int | None:
        """One past the highest offset acked since the last commit; None if none was."""
        acked = cast("AckedOffsets | None", self._acked.get(tp))
        return acked.end if acked else None

    def _new_offset(self, tp: TP) -> int | None:
        # Faust's rule on runs instead of a sorted list of every offset: known gaps below
        # the highest acked offset count as acked; a hole of more than one offset after
        # the committed one means nothing to commit; otherwise the first run is taken off
        # and committed up to its end.
        acked = cast(AckedOffsets, self._acked[tp])
        if not acked:
            return None
        gaps = self._gap[tp]
        if gaps:
            top = acked.end - 1
            found = gaps.overlap(0, top)
            if found:
                for gap in found:
                    acked.add_range(gap.begin, gap.end)
                gaps.chop(0, max(top + 1, max(gap.end for gap in found)))
        committed = self._committed_offset[tp]
        if committed and acked.first - committed > 1:
            return None
        return acked.pop_first()[1]


class DeclaringProducer(faust_aiokafka.Producer):
    """Faust's producer, asking whether a topic exists before declaring it."""

    async def create_topic(
        self, topic: str, partitions: int, replication: int, **kwargs: Any
    ) -> None:
        """Declare ``topic`` as Faust does, unless a metadata request naming it finds it.

        Faust declares its changelog and assignor topics at every start, twice each: a
        CreateTopics request answered "exists", then a metadata update of every topic
        the cluster holds (faust-streaming#499), 0.06-0.08 s each on a broker of 2,476
        topics, a quarter of a second of every restart. An existing topic is left as
        it is either way (CreateTopics changes nothing of it). ``ensure_created`` asks
        for an error when it exists, so that is left to Faust.

        Faust's metadata update after a declaration is also how its producer learns the
        partitions of a changelog, which it needs before the first changelog write
        (``send_soon`` partitions at once and fails on a topic it does not know): an
        existing topic's partitions are fetched for the producer here instead.
        """
        if not kwargs.get("ensure_created") and self.app.conf.topic_allow_declare:
            from .kafka import partition_counts

            producer = self._ensure_producer()
            with contextlib.suppress(Exception):  # any doubt: Faust's own declaration
                if await partition_counts(producer.client, [topic]):
                    await producer.partitions_for(topic)
                    return
        await super().create_topic(topic, partitions, replication, **kwargs)


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer
    Producer = DeclaringProducer


def batch_consumer(app: Any) -> BatchConsumer:
    return cast(BatchConsumer, app.consumer)

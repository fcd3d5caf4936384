"""A Faust consumer that hands the source topics to the counting agent a fetch at a time.

Faust's stock fetch loop delivers every record on its own: two asyncio tasks and an
event object per record cap a worker at about 11,000 records/s on two cores, whatever
the agent does. Watchfloor's agent works on batches anyway (so that state writes scale
with districts, not events), so for the source topics this consumer skips the
per-record path: each fetch becomes one :class:`Batch` on an in-memory channel that
the agent iterates. Every other topic (table changelogs during recovery, Faust's own
topics) still goes through Faust's per-record path untouched.

Acknowledgement and commits are Faust's own: the agent acks a batch's offsets after
its state is written, and Faust's commit loop flushes the producer (the state
changelog) before it commits them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

if TYPE_CHECKING:
    from .engine import RecordLike

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Batch:
    """Records of one fetch, per topic-partition, tagged with the consumer generation."""

    generation: int
    parts: list[tuple[TP, Sequence[RecordLike]]]
    fetched_at: float

    def __len__(self) -> int:
        return sum(len(records) for _, records in self.parts)


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with a batch path for the topics in ``batch_topics``."""

    batch_topics: frozenset[str] = frozenset()
    deliver_batch: Callable[[Batch], Awaitable[None]] | None = None

    def configure_batches(
        self, topics: frozenset[str], deliver: Callable[[Batch], Awaitable[None]]
    ) -> None:
        """Send fetches of ``topics`` to ``deliver`` (which blocks while the agent is busy)."""
        self.batch_topics = topics
        self.deliver_batch = deliver

    async def _drain_messages(self, fetcher: Any) -> None:
        deliver = self.deliver_batch
        if deliver is None:  # not configured: Faust's own loop
            await super()._drain_messages(fetcher)
            return
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        callback = self.callback
        to_message = self._to_message
        read_offset = self._read_offset
        batch_topics = self.batch_topics
        loop = asyncio.get_running_loop()
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                records, active = await self._wait_next_records(1.0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    await self._rewind()
                    continue
                generation = self.app.consumer_generation_id
                parts: list[tuple[TP, Sequence[RecordLike]]] = []
                others: list[tuple[TP, Sequence[Any]]] = []
                for tp, recs in records.items():
                    if (
                        active is not None
                        and tp not in active
                        and tp not in (self._buffered_partitions)
                    ):
                        continue
                    r_offset = read_offset[tp]
                    if r_offset is not None and recs and recs[0].offset < r_offset:
                        recs = [r for r in recs if r.offset >= r_offset]
                    if recs:
                        (parts if tp.topic in batch_topics else others).append((tp, recs))
                if parts:
                    # No await since the fetch: rebalance callbacks run on this loop, so
                    # the generation read above still holds and no seek can be undone here.
                    for tp, part in parts:
                        self._note_gaps(tp, read_offset[tp], part)
                        read_offset[tp] = part[-1].offset + 1
                    batch = Batch(generation, parts, loop.time())
                else:
                    batch = None
                # Changelog records first: table recovery waits for them, while the batch
                # may wait for a rebalance (and so that recovery) to end.
                for tp, other in others:
                    for rec in other:
                        self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                        await callback(to_message(tp, rec))
                        read_offset[tp] = rec.offset
                if batch is not None:
                    await self._deliver_batch(deliver, batch)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            log.exception("Drain messages raised: %r", exc)
            raise

    async def _rewind(self) -> None:
        # Fetched while a rebalance paused the flow: seek back, as Faust does. The
        # assignment may change under the seek ("no current assignment for
        # partition"); that must not end the fetch loop, or the worker would stay up
        # and ready while counting nothing. The rebalance's own seek follows anyway.
        try:
            await self.perform_seek()
        except Exception as exc:
            log.warning("Seek while the flow is paused failed: %r", exc)

    @staticmethod
    async def _deliver_batch(
        deliver: Callable[[Batch], Awaitable[None]], batch: Batch
    ) -> None:
        # The agent's queue is cleared at each rebalance, which cancels a put waiting on
        # it. In a task of its own, that cancels only the put, not this fetch loop (as
        # Faust does for full queues): the batch is dropped unacked and read again after
        # the rebalance's seek to the committed offsets.
        put = asyncio.ensure_future(deliver(batch))
        try:
            await asyncio.wait([put])
        except asyncio.CancelledError:
            put.cancel()
            raise
        if not put.cancelled():
            put.result()

    def _note_gaps(self, tp: TP, r_offset: int | None, recs: Sequence[RecordLike]) -> None:
        # Offsets can jump (compaction, transaction markers); Faust commits across a
        # jump only if it was told about it, as its own loop does record by record.
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
        committed = self._committed_offset[tp]
        index = self._acked_index[tp]
        acked = self._acked[tp]
        n = 0
        for rec in records:
            offset = rec.offset
            if (committed is None or offset >= committed) and offset not in index:
                index.add(offset)
                acked.append(offset)
                n += 1
        self._n_acked += n


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer


def batch_consumer(app: Any) -> BatchConsumer:
    return cast(BatchConsumer, app.consumer)

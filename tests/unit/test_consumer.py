"""The batch consumer keeps each source partition in offset order, and its fetch loop alive.

The consumer runs here on a stand-in for aiokafka (the only broker-free way to force
the interleavings of a rebalance); tests/integration runs it on Kafka.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.structs import TopicPartition
from faust.types import TP
from intervaltree import IntervalTree
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from streams import consumer as consumer_module
from streams.consumer import Batch, BatchConsumer
from tests.support import Record

SRC = TP("src", 0)
LOG = TP("app-state-changelog", 0)


def recs(*offsets: int) -> list[Record]:
    return [Record(o) for o in offsets]


class FakeThread:
    """What the consumer asks of Faust's aiokafka thread, answered from a script."""

    def __init__(self) -> None:
        self.answers: list[dict[TP, list[Record]]] = []
        self.hold: asyncio.Event | None = None
        self.in_fetch = False
        self.seeks: list[tuple[TP, int]] = []
        self.to_beginning: list[TopicPartition] = []
        self.committed: dict[TopicPartition, int | None] = {}

    async def getmany(self, active: Any, timeout: float) -> dict[TP, list[Record]]:
        self.in_fetch = True
        try:
            if self.hold is not None:
                await self.hold.wait()
            return self.answers.pop(0) if self.answers else {}
        finally:
            self.in_fetch = False

    def seek(self, tp: TP, offset: int) -> None:
        assert not self.in_fetch, "a seek ran while a fetch was in flight"
        self.seeks.append((TP(tp.topic, tp.partition), offset))

    async def seek_to_committed(self) -> dict[TopicPartition, int | None]:
        return dict(self.committed)

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.to_beginning.extend(tps)


class Stand:
    """A BatchConsumer without Faust's services: the parts its fetch path touches."""

    def __init__(self) -> None:
        c = object.__new__(BatchConsumer)
        c._init_positions()
        c._init_acks()
        c.batch_topics = frozenset({SRC.topic})
        c._thread = self.thread = FakeThread()
        c._read_offset = defaultdict(lambda: None)
        c._committed_offset = defaultdict(lambda: None)
        c._gap = defaultdict(IntervalTree)
        c._buffered_partitions = set()
        c.flow_active = True
        c.log = SimpleNamespace(dev=lambda *args, **kwargs: None)
        c._stopped = asyncio.Event()
        c._crashed = asyncio.Event()
        self.app = SimpleNamespace(
            consumer_generation_id=1,
            should_stop=False,
            monitor=SimpleNamespace(track_tp_end_offset=lambda tp, offset: None),
        )
        c.app = self.app
        c.transport = SimpleNamespace(app=self.app)
        self.messages: list[tuple[TP, int]] = []

        async def callback(message: tuple[TP, int]) -> None:
            self.messages.append(message)

        c.callback = callback
        c._to_message = lambda tp, rec: (tp, rec.offset)
        c.highwater = lambda tp: 0
        self.active: set[TP] = {SRC, LOG}

        async def wait_next(timeout: float) -> tuple[Any, set[TP]]:
            return await c._getmany(self.active, timeout), self.active

        c._wait_next_records = wait_next
        self.refetched: list[int] = []
        self.errors = 0
        c.on_refetch = self.refetched.append

        def on_error() -> None:
            self.errors += 1

        c.on_fetch_error = on_error
        self.c = c
        self.batches: list[Batch] = []

    async def deliver(self, batch: Batch) -> None:
        self.batches.append(batch)

    async def drain_once(self) -> None:
        await self.c._drain_once(self.deliver, [])


def test_a_source_partition_is_not_counted_before_a_seek_positions_it() -> None:
    s = Stand()
    s.thread.answers = [{SRC: recs(7, 8)}]
    asyncio.run(s.drain_once())
    assert s.batches == []
    assert s.refetched == [2]


def test_a_positioned_partition_becomes_a_batch_tagged_with_its_epoch() -> None:
    s = Stand()

    async def main() -> None:
        await s.c.seek(SRC, 7)
        s.thread.answers = [{SRC: recs(7, 8, 9)}]
        await s.drain_once()

    asyncio.run(main())
    [batch] = s.batches
    assert [r.offset for _, part in batch.parts for r in part] == [7, 8, 9]
    assert s.c.is_current(batch)
    assert s.c._read_offset[SRC] == 10


def test_a_seek_waits_for_the_fetch_in_flight_and_outdates_its_records() -> None:
    # The lost-records race: a fetch answered from before a seek, counted after it,
    # would put later records ahead of the ones the seek brings back.
    s = Stand()

    async def main() -> None:
        await s.c.seek(SRC, 0)
        s.thread.hold = asyncio.Event()
        s.thread.answers = [{SRC: recs(40, 41)}]
        fetch = asyncio.ensure_future(s.drain_once())
        await asyncio.sleep(0.01)
        seek = asyncio.ensure_future(s.c.seek(SRC, 10))
        await asyncio.sleep(0.01)
        assert s.thread.in_fetch and not seek.done()  # FakeThread.seek asserts it too
        s.thread.hold.set()
        await asyncio.gather(fetch, seek)

    asyncio.run(main())
    assert s.thread.seeks == [(SRC, 0), (SRC, 10)]
    # Either dropped at once, or handed over and refused by the agent as not current.
    assert all(not s.c.is_current(b) for b in s.batches)


def test_records_fetched_under_an_older_epoch_are_dropped() -> None:
    s = Stand()

    async def main() -> None:
        await s.c.seek(SRC, 0)
        s.thread.answers = [{SRC: recs(0, 1)}]
        getmany = s.c._getmany

        async def then_seek(active: Any, timeout: float) -> Any:
            answer = await getmany(active, timeout)
            await s.c.seek(SRC, 0)  # lands between the answer and its handling
            return answer

        s.c._getmany = then_seek
        await s.drain_once()

    asyncio.run(main())
    assert s.batches == []
    assert s.refetched == [2]


def test_perform_seek_positions_partitions_aiokafka_would_leave_where_they_were() -> None:
    s = Stand()
    s.thread.committed = {
        # Nothing committed: from offset 0, or the first record kept where retention
        # deleted it (aiokafka's reset, tests/integration/test_consumer_seek.py); no
        # request to the broker.
        TopicPartition("src", 0): None,
        TopicPartition("src", 1): 0,  # committed 0: aiokafka does not seek it
        TopicPartition("src", 2): 7,  # aiokafka seeks this one itself
        TopicPartition(LOG.topic, 0): None,  # changelogs are recovery's business
    }
    asyncio.run(s.c.perform_seek())
    assert s.thread.to_beginning == []
    assert sorted(s.thread.seeks) == [(TP("src", 0), 0), (TP("src", 1), 0)]
    assert set(s.c._epochs) == {TP("src", 0), TP("src", 1), TP("src", 2)}
    assert s.c._read_offset[TP("src", 2)] == 7
    assert s.c._committed_offset[TP("src", 2)] == 7


def test_a_batch_the_agent_queue_dropped_is_fetched_again() -> None:
    s = Stand()

    async def cleared(batch: Batch) -> None:
        raise asyncio.CancelledError  # what a queue cleared under the put does to it

    async def main() -> None:
        await s.c.seek(SRC, 3)
        s.thread.answers = [{SRC: recs(3, 4)}]
        await s.c._drain_once(cleared, [])

    asyncio.run(main())
    assert s.thread.seeks == [(SRC, 3), (SRC, 3)]


def test_changelog_records_stop_at_a_new_generation_and_the_batch_is_rewound() -> None:
    s = Stand()

    async def main() -> None:
        await s.c.seek(SRC, 5)
        s.thread.answers = [{LOG: recs(0, 1, 2), SRC: recs(5, 6)}]

        async def callback(message: tuple[TP, int]) -> None:
            s.messages.append(message)
            s.app.consumer_generation_id = 2  # a rebalance starts after the first one

        s.c.callback = callback
        await s.drain_once()

    asyncio.run(main())
    assert s.messages == [(LOG, 0)]
    assert s.batches == []
    assert s.thread.seeks == [(SRC, 5), (SRC, 5)]


def test_an_error_in_the_fetch_loop_rewinds_and_fetches_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(consumer_module, "ERROR_PAUSE_SECONDS", 0.0)
    s = Stand()
    stopped = asyncio.Event
    calls: list[int] = []

    async def main() -> None:
        s.c._stopped = stopped()
        fetcher = SimpleNamespace(_stopped=stopped())
        await s.c.seek(SRC, 0)

        async def drain_once(deliver: Any, pending: list[Any]) -> None:
            calls.append(1)
            if len(calls) == 1:
                pending.append((SRC, recs(0, 1)))
                raise RuntimeError("No current assignment for partition")
            fetcher._stopped.set()

        s.c._drain_once = drain_once
        await asyncio.wait_for(s.c._drain_messages(fetcher), 5)

    s.c.deliver_batch = s.deliver
    with caplog.at_level("WARNING"):
        asyncio.run(main())
    assert len(calls) == 2
    assert s.errors == 1
    assert s.thread.seeks == [(SRC, 0), (SRC, 0)]
    assert "No current assignment" in caplog.text


def test_a_cancelled_wait_inside_the_loop_does_not_end_it_but_a_cancelled_loop_ends() -> None:
    s = Stand()
    s.c.deliver_batch = s.deliver
    calls: list[int] = []

    async def main() -> None:
        s.c._stopped = asyncio.Event()
        fetcher = SimpleNamespace(_stopped=asyncio.Event())

        async def drain_once(deliver: Any, pending: list[Any]) -> None:
            calls.append(1)
            if len(calls) == 1:
                inner = asyncio.get_running_loop().create_future()
                inner.cancel()
                await inner  # CancelledError, though nobody cancelled the loop
            await asyncio.sleep(10)

        s.c._drain_once = drain_once
        loop_task = asyncio.ensure_future(s.c._drain_messages(fetcher))
        await asyncio.sleep(0.05)
        assert len(calls) == 2 and not loop_task.done()
        loop_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop_task

    asyncio.run(main())
    assert s.errors == 1


def batch() -> Batch:
    return Batch(1, [(TP("t", 0), [])], 0.0)


def test_a_put_cancelled_by_a_cleared_queue_drops_the_batch_quietly() -> None:
    async def main() -> bool:
        flow = FlowControlEvent()
        flow.resume()  # running normally; the rebalance comes below
        queue: ThrowableQueue[Batch] = ThrowableQueue(
            maxsize=1, flow_control=flow, clear_on_resume=True
        )
        queue.put_nowait(batch())  # the agent is busy: the queue is full
        handing = asyncio.ensure_future(BatchConsumer._deliver_batch(queue.put, batch()))
        await asyncio.sleep(0.01)
        assert not handing.done()
        queue.clear()  # what Faust's flow control does at a rebalance
        return await asyncio.wait_for(handing, 1)  # returns: the fetch loop goes on

    assert asyncio.run(main()) is False


def test_the_hand_over_itself_can_still_be_cancelled() -> None:
    async def main() -> None:
        queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=1)
        queue.put_nowait(batch())
        loop_task = asyncio.ensure_future(BatchConsumer._deliver_batch(queue.put, batch()))
        await asyncio.sleep(0.01)
        loop_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop_task

    asyncio.run(main())


def test_other_errors_of_the_hand_over_surface() -> None:
    async def failing(_: Batch) -> None:
        raise RuntimeError("agent gone")

    with pytest.raises(RuntimeError, match="agent gone"):
        asyncio.run(BatchConsumer._deliver_batch(failing, batch()))


def test_a_cancelled_loop_returns_quietly_while_the_worker_stops() -> None:
    # Faust's fetcher treats a CancelledError escaping here as a crash (exit status 1).
    s = Stand()
    s.c.deliver_batch = s.deliver

    async def main() -> None:
        fetcher = SimpleNamespace(_stopped=asyncio.Event())

        async def drain_once(deliver: Any, pending: list[Any]) -> None:
            await asyncio.sleep(10)

        s.c._drain_once = drain_once
        loop_task = asyncio.ensure_future(s.c._drain_messages(fetcher))
        await asyncio.sleep(0.01)
        s.app.should_stop = True
        loop_task.cancel()
        await loop_task  # no CancelledError

    asyncio.run(main())
    assert s.errors == 0


def test_livelock_check_passes_by_a_partition_that_awaits_its_position() -> None:
    # aiokafka's own subscription state: a partition just assigned has no position, and
    # reading it asserts (the crash a worker met when Faust's livelock check ran during a
    # rebalance, with its forward topic's empty partitions).
    from aiokafka.consumer.subscription_state import SubscriptionState

    from streams.consumer import awaits_position

    async def run() -> None:
        subs = SubscriptionState()
        fresh, seeked = TopicPartition("src", 0), TopicPartition("src", 1)
        assert awaits_position(subs, TP("src", 0))  # nothing assigned yet
        subs.assign_from_user({fresh, seeked})
        subs.seek(seeked, 12)
        with pytest.raises(AssertionError):
            _ = subs.subscription.assignment.state_value(fresh).position
        assert awaits_position(subs, TP("src", 0))
        assert not awaits_position(subs, TP("src", 1))
        assert awaits_position(subs, TP("other", 0))  # not assigned to this consumer

    asyncio.run(run())


def offsets_of(b: Batch) -> dict[TP, list[int]]:
    return {tp: [r.offset for r in records] for tp, records in b.parts}


def test_a_waiting_batch_absorbs_later_fetches_in_partition_order() -> None:
    a, b = TP("t", 0), TP("t", 1)
    waiting = Batch(3, [(a, recs(0, 1))], 0.0, [7])
    assert waiting.absorb(Batch(3, [(a, recs(2, 3)), (b, recs(10))], 1.0, [7, 8]), 100)
    assert waiting.absorb(Batch(3, [(b, recs(11))], 2.0, [8]), 100)
    assert offsets_of(waiting) == {a: [0, 1, 2, 3], b: [10, 11]}
    assert waiting.epochs == [7, 8]
    assert waiting.fetched_at == 0.0  # its wait counts from its oldest fetch
    assert len(waiting) == 6


@pytest.mark.parametrize(
    "later, max_events, why",
    [
        (Batch(4, [(TP("t", 0), recs(2))], 1.0, [7]), 100, "another generation"),
        (Batch(3, [(TP("t", 0), recs(2))], 1.0, [9]), 100, "a seek came in between"),
        (Batch(3, [(TP("t", 0), recs(1))], 1.0, [7]), 100, "not after its records"),
        (Batch(3, [(TP("t", 1), recs(5)), (TP("t", 0), recs(2))], 1.0, [2, 7]), 3, "too big"),
        (Batch(3, [(TP("t", 1), recs(5)), (TP("t", 0), recs(0))], 1.0, [2, 7]), 100,
         "its second part cannot follow"),
    ],
)
def test_a_batch_absorbs_nothing_it_cannot_take_whole(
    later: Batch, max_events: int, why: str
) -> None:
    waiting = Batch(3, [(TP("t", 0), recs(0, 1))], 0.0, [7])
    assert not waiting.absorb(later, max_events), why
    assert offsets_of(waiting) == {TP("t", 0): [0, 1]} and waiting.epochs == [7]


def test_a_batch_the_agent_took_absorbs_nothing() -> None:
    waiting = Batch(3, [(TP("t", 0), recs(0))], 0.0, [7])
    waiting.taken = True
    assert not waiting.absorb(Batch(3, [(TP("t", 0), recs(1))], 1.0, [7]), 100)
    assert offsets_of(waiting) == {TP("t", 0): [0]}


class PausingConsumer:
    """aiokafka's pause bookkeeping: assignment, paused set, pause and resume."""

    def __init__(self, assigned: set[str], paused: set[str]) -> None:
        self.assigned, self.paused_now = set(assigned), set(paused)

    def assignment(self) -> set[str]:
        return set(self.assigned)

    def paused(self) -> set[str]:
        return set(self.paused_now)

    def pause(self, *tps: str) -> None:
        self.paused_now |= set(tps)

    def resume(self, *tps: str) -> None:
        self.paused_now -= set(tps)


def test_nothing_is_fetched_during_a_rebuild_and_only_what_the_pause_took_resumes() -> None:
    s = Stand()
    aio = PausingConsumer({"src-0", "fwd-0", "log-0", "log-1"}, paused={"src-0", "log-1"})
    s.thread._consumer = aio  # type: ignore[attr-defined]
    with s.c.fetching_paused():
        assert aio.paused_now == {"src-0", "fwd-0", "log-0", "log-1"}
        aio.assigned.discard("log-0")  # a rebalance took it meanwhile
        aio.paused_now.discard("log-0")
    # Faust's own pauses stand (it resumes the sources itself after the seek).
    assert aio.paused_now == {"src-0", "log-1"}
    with pytest.raises(RuntimeError), s.c.fetching_paused():
        raise RuntimeError("a rebuild that fails")
    assert aio.paused_now == {"src-0", "log-1"}


def test_a_consumer_not_started_has_nothing_to_pause() -> None:
    s = Stand()
    with s.c.fetching_paused():
        pass

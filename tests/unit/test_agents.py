"""The counting agent under Faust's test_context(): a batch in, counts, journals and acks out."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry

from streams.app import Watchfloor
from streams.clock import FixedClock
from streams.consumer import Batch, batch_consumer
from streams.partitioning import district_partition
from streams.settings import Settings
from streams.state_journal import StateStore
from streams.worker import build_worker
from tests.support import Record

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 4, 12, 12, 0, tzinfo=TZ)


def filed(i: int) -> bytes:
    return orjson.dumps({
        "specversion": "1.0", "id": f"e{i}", "source": "/t",
        "type": "watchfloor.incident.case_filed.v1", "time": NOW.isoformat(),
        "subject": f"c{i}", "district": "jinshui",
        "data": {"category": "theft", "severity": "minor"},
    })


@pytest.fixture
def wf() -> Watchfloor:
    # Journals written and batches acked at each batch; held ones: test_held_* below.
    w = build_worker(Settings(app_id="unit-agents", state_flush_ms=0), clock=FixedClock(NOW),
                     registry=CollectorRegistry())
    # Unit scope: the Kafka-backed table needs a running producer; the store works on any
    # mapping, and tests/integration runs it on the real changelog.
    w.store.table = {}
    w.ready = True
    return w


def put(wf: Watchfloor, batch: Batch) -> None:
    async def run() -> None:
        agent = wf.app.agents["watchfloor.count"]
        async with agent.test_context() as ag:
            await ag.put(batch)

    asyncio.run(run())


def jinshui_tp(wf: Watchfloor) -> TP:
    """The incidents partition that holds jinshui."""
    return TP(wf.settings.topic_incidents, district_partition("jinshui", wf.settings.partitions))


def fetched(wf: Watchfloor, tp: TP, records: list[Record], generation: int | None = None) -> Batch:
    """A batch as the fetch loop makes it: the partition positioned, its epoch attached."""
    consumer = batch_consumer(wf.app)
    if tp not in consumer._epochs:
        consumer._positioned([tp])
    gen = wf.app.consumer_generation_id if generation is None else generation
    return Batch(gen, [(tp, records)], 0.0, [consumer._epochs[tp]])


def test_agent_counts_a_batch_writes_journals_and_acks(wf: Watchfloor) -> None:
    p = district_partition("jinshui", wf.settings.partitions)
    tp = TP(wf.settings.topic_incidents, p)
    batch = fetched(wf, tp, [Record(i, filed(i)) for i in range(3)])
    put(wf, batch)
    st = wf.engine.states["jinshui"]
    assert st.totals[0] == 3
    assert st.evidence == {f"{tp.topic}:{p}": 2}
    assert any(k.startswith("jinshui\x1fj\x1f") for k in wf.store.table)
    consumer = batch_consumer(wf.app)
    assert sorted(consumer._acked[tp]) == [0, 1, 2]
    assert wf.metrics.processed[tp.topic]._value.get() == 3


def test_a_batch_from_an_old_generation_is_left_for_the_new_owner(wf: Watchfloor) -> None:
    tp = jinshui_tp(wf)
    stale = fetched(wf, tp, [Record(0, filed(0))], generation=wf.app.consumer_generation_id - 1)
    put(wf, stale)
    assert "jinshui" not in wf.engine.states
    assert not batch_consumer(wf.app)._acked[tp]


def test_a_batch_fetched_before_a_seek_of_its_partition_is_not_counted(wf: Watchfloor) -> None:
    # Counting it would put its records ahead of the ones the seek brings back, and the
    # engine skips a record older than one it has counted: those would be lost.
    tp = jinshui_tp(wf)
    before = fetched(wf, tp, [Record(5, filed(5))])
    batch_consumer(wf.app)._positioned([tp])  # a seek to the committed offset, say
    put(wf, before)
    assert "jinshui" not in wf.engine.states
    assert not batch_consumer(wf.app)._acked[tp]
    put(wf, fetched(wf, tp, [Record(i, filed(i)) for i in range(6)]))
    assert wf.engine.states["jinshui"].totals[0] == 6


def test_fetches_join_the_batch_waiting_for_the_agent_and_count_once(wf: Watchfloor) -> None:
    p = district_partition("jinshui", wf.settings.partitions)
    tp = TP(wf.settings.topic_incidents, p)

    async def run() -> list[Batch]:
        agent_side = wf.batches.clone(is_iterator=True)  # what the agent's stream reads
        wf.app.flow_control.resume()  # as in a running worker between rebalances
        first = fetched(wf, tp, [Record(0, filed(0)), Record(1, filed(1))])
        await wf._deliver(first)
        await wf._deliver(fetched(wf, tp, [Record(2, filed(2))]))  # the agent is busy
        assert agent_side.queue.qsize() == 1
        first.taken = True  # what the agent does when it starts counting
        await wf._deliver(fetched(wf, tp, [Record(3, filed(3))]))
        queued = []
        while not agent_side.queue.empty():
            queued.append(agent_side.queue.get_nowait().value)
        for batch in queued:
            batch.taken = False  # as fetched: the agent marks them itself
            await wf.process_batch(batch)
        return queued

    queued = asyncio.run(run())
    assert [[r.offset for _, rs in b.parts for r in rs] for b in queued] == [[0, 1, 2], [3]]
    assert wf.engine.states["jinshui"].totals[0] == 4
    assert sorted(batch_consumer(wf.app)._acked[tp]) == [0, 1, 2, 3]


def lingering(linger_ms: int, min_events: int, max_events: int = 20000) -> Watchfloor:
    w = build_worker(Settings(app_id="unit-linger", batch_linger_ms=linger_ms,
                              batch_min_events=min_events, batch_max_events=max_events),
                     clock=FixedClock(NOW), registry=CollectorRegistry())
    w.store.table = {}
    w.ready = True
    return w


async def first_fetch(wf: Watchfloor, tp: TP, records: list[Record]) -> Batch:
    """A fetch just made, handed to the channel of a worker between rebalances."""
    wf.batches.clone(is_iterator=True)  # what the agent's stream reads
    wf.app.flow_control.resume()
    batch = fetched(wf, tp, records)
    batch.fetched_at = asyncio.get_running_loop().time()
    await wf._deliver(batch)
    return batch


def test_a_small_batch_waits_for_later_fetches_to_join_it() -> None:
    wf = lingering(linger_ms=10_000, min_events=3)
    tp = jinshui_tp(wf)

    async def run() -> tuple[Batch, float]:
        loop = asyncio.get_running_loop()
        first = await first_fetch(wf, tp, [Record(0, filed(0))])
        counting = asyncio.ensure_future(wf.process_batch(first))
        for i in (1, 2):
            await asyncio.sleep(0.01)
            assert not counting.done() and not first.taken, "counted before the linger ended"
            await wf._deliver(fetched(wf, tp, [Record(i, filed(i))]))
        await asyncio.wait_for(counting, 1.0)  # the third record filled it: no 10 s wait
        return first, loop.time() - first.fetched_at

    batch, waited = asyncio.run(run())
    assert [r.offset for _, rs in batch.parts for r in rs] == [0, 1, 2]
    assert waited < 1.0
    assert wf.engine.states["jinshui"].totals[0] == 3


def test_a_small_batch_waits_no_longer_than_the_linger() -> None:
    wf = lingering(linger_ms=50, min_events=1000)
    tp = jinshui_tp(wf)

    async def run() -> float:
        loop = asyncio.get_running_loop()
        batch = await first_fetch(wf, tp, [Record(0, filed(0))])
        await asyncio.wait_for(wf.process_batch(batch), 2.0)
        return loop.time() - batch.fetched_at

    waited = asyncio.run(run())
    assert 0.04 <= waited < 1.0
    assert wf.engine.states["jinshui"].totals[0] == 1


def test_a_lingering_batch_is_taken_at_once_when_another_queues_behind_it() -> None:
    # A batch too full to absorb the next fetch goes to the channel on its own; the first
    # must not keep it waiting for the rest of its linger.
    wf = lingering(linger_ms=10_000, min_events=3, max_events=2)
    tp = jinshui_tp(wf)

    async def run() -> None:
        first = await first_fetch(wf, tp, [Record(0, filed(0)), Record(1, filed(1))])
        counting = asyncio.ensure_future(wf.process_batch(first))
        await asyncio.sleep(0.01)
        assert not counting.done()
        await wf._deliver(fetched(wf, tp, [Record(2, filed(2))]))  # cannot join: max 2
        await asyncio.wait_for(counting, 1.0)

    asyncio.run(run())
    assert wf.engine.states["jinshui"].totals[0] == 2


def test_a_rebuild_renders_the_districts_before_the_first_scrape(wf: Watchfloor) -> None:
    p = district_partition("jinshui", wf.settings.partitions)
    tp = TP(wf.settings.topic_incidents, p)
    put(wf, fetched(wf, tp, [Record(i, filed(i)) for i in range(3)]))
    collector = wf.districts_collector
    assert collector._texts == {}  # nothing scraped yet

    async def restart() -> None:
        wf.on_recovered({p})  # rebuilds jinshui from the journals in the table
        assert wf._warming is not None
        await wf._warming

    asyncio.run(restart())
    st = wf.engine.states["jinshui"]
    assert st.totals[0] == 3
    text = collector._texts["jinshui"]
    assert text.state is st and text.key[0] == st.version  # rendered from the rebuilt state


def holding(flush_ms: int, max_events: int = 20000) -> Watchfloor:
    w = build_worker(Settings(app_id="unit-hold", state_flush_ms=flush_ms,
                              batch_max_events=max_events),
                     clock=FixedClock(NOW), registry=CollectorRegistry())
    w.store.table = {}
    w.ready = True
    return w


def journal_keys(wf: Watchfloor) -> list[str]:
    return sorted(k for k in wf.store.table if k.startswith("jinshui\x1fj\x1f"))


def rebuilt_cases(wf: Watchfloor) -> int:
    """Cases filed in jinshui as a fresh store rebuilds them from the table."""
    fresh = StateStore(wf.store.table, wf.tz, wf.limits).load(list(wf.store.table))
    return fresh["jinshui"].totals[0] if "jinshui" in fresh else 0


def test_held_journals_are_written_and_their_batches_acked_at_the_flush() -> None:
    wf = holding(flush_ms=50)
    tp = jinshui_tp(wf)
    consumer = batch_consumer(wf.app)

    async def run() -> None:
        await wf.process_batch(fetched(wf, tp, [Record(i, filed(i)) for i in range(3)]))
        await wf.process_batch(fetched(wf, tp, [Record(i, filed(i)) for i in range(3, 5)]))
        # Counted at once (the figures do not wait), written and acked only later.
        assert wf.engine.states["jinshui"].totals[0] == 5
        assert journal_keys(wf) == [] and not consumer._acked[tp]
        await wf.flush_if_due()  # not due yet
        assert journal_keys(wf) == [] and not consumer._acked[tp]
        await asyncio.sleep(0.06)
        await wf.flush_if_due()

    asyncio.run(run())
    assert journal_keys(wf) == ["jinshui\x1fj\x1f1"]  # one journal for both batches
    assert sorted(consumer._acked[tp]) == [0, 1, 2, 3, 4]
    assert rebuilt_cases(wf) == 5


def test_the_rolling_flush_writes_the_longest_held_share_and_acks_only_batches_complete() -> None:
    # Interval 1 s: jinshui's batch, 0.6 s later erqi's. At erqi's batch 0.6 s of the
    # interval passed for two held districts, a share of one: the longest held.
    wf = holding(flush_ms=1000)
    tp_j = jinshui_tp(wf)
    tp_e = TP(wf.settings.topic_incidents, district_partition("erqi", wf.settings.partitions))
    assert tp_e != tp_j
    consumer = batch_consumer(wf.app)

    def erqi(i: int) -> bytes:
        return filed(i).replace(b'"jinshui"', b'"erqi"')

    async def run() -> None:
        await wf.process_batch(fetched(wf, tp_j, [Record(i, filed(i)) for i in range(3)]))
        await asyncio.sleep(0.6)
        await wf.process_batch(fetched(wf, tp_e, [Record(i, erqi(i)) for i in range(2)]))
        assert journal_keys(wf) == ["jinshui\x1fj\x1f1"]
        assert not any(k.startswith("erqi\x1fj") for k in wf.store.table)
        assert sorted(consumer._acked[tp_j]) == [0, 1, 2] and not consumer._acked[tp_e]
        await wf.flush_if_due()  # erqi held 0 s of its interval: not yet
        assert not consumer._acked[tp_e]
        await asyncio.sleep(1.0)
        await wf.flush_if_due()  # its batch was counted an interval ago: due

    asyncio.run(run())
    assert "erqi\x1fj\x1f1" in wf.store.table
    assert sorted(consumer._acked[tp_e]) == [0, 1]
    assert wf.store.staged == 0


def test_a_district_holding_a_batchs_worth_of_rows_is_flushed_at_once() -> None:
    # A journal is one Kafka record: held rows must not outgrow what one batch writes.
    wf = holding(flush_ms=60_000, max_events=4)
    tp = jinshui_tp(wf)
    consumer = batch_consumer(wf.app)

    async def run() -> None:
        await wf.process_batch(fetched(wf, tp, [Record(i, filed(i)) for i in range(3)]))
        assert journal_keys(wf) == []
        await wf.process_batch(fetched(wf, tp, [Record(3, filed(3))]))

    asyncio.run(run())
    assert journal_keys(wf) == ["jinshui\x1fj\x1f1"]
    assert sorted(consumer._acked[tp]) == [0, 1, 2, 3]


def test_a_rebalance_drops_held_journals_and_leaves_their_batches_unacked() -> None:
    wf = holding(flush_ms=60_000)
    tp = jinshui_tp(wf)
    consumer = batch_consumer(wf.app)

    async def run() -> None:
        await wf.process_batch(fetched(wf, tp, [Record(i, filed(i)) for i in range(3)]))
        await wf._on_revoked(wf.app, {tp}, signal=None)
        assert "jinshui" not in wf.engine.states and wf.store.staged == 0
        wf.on_recovered({tp.partition})  # the partition comes back: rebuilt from the table
        await wf.checkpoint()  # a clean stop acks what it snapshots, and only that

    asyncio.run(run())
    assert wf.engine.states["jinshui"].totals[0] == 0 and journal_keys(wf) == []
    assert not consumer._acked[tp]  # read again from the committed offset, counted once


def test_a_clean_stop_snapshots_held_journals_and_acks_their_batches() -> None:
    wf = holding(flush_ms=60_000)
    tp = jinshui_tp(wf)
    consumer = batch_consumer(wf.app)

    async def run() -> int:
        await wf.process_batch(fetched(wf, tp, [Record(i, filed(i)) for i in range(3)]))
        return await wf.checkpoint()

    assert asyncio.run(run()) == 1
    assert "jinshui\x1fm" in wf.store.table and journal_keys(wf) == []
    assert sorted(consumer._acked[tp]) == [0, 1, 2]
    assert rebuilt_cases(wf) == 3


def test_a_batch_not_begun_waits_for_the_scrape_in_progress(wf: Watchfloor) -> None:
    # Batches counted in a scrape's pauses made it take two or three of them under load.
    tp = jinshui_tp(wf)
    collector = wf.districts_collector

    async def scraped() -> bytes:
        async with collector.scraping():
            body = b"".join(await collector.render_parts(0.0))
            await asyncio.sleep(0)  # as the answer is written
            return body

    async def run() -> list[str]:
        wf.on_recovered(set(range(wf.settings.partitions)))  # every district: much to render
        assert wf._warming is not None
        await wf._warming  # the render after a rebuild holds no batch back
        assert len(wf.engine.states) >= 5
        collector._texts.clear()  # as under load: every district changed since the last
        done: list[str] = []
        scrape = asyncio.ensure_future(scraped())
        scrape.add_done_callback(lambda _: done.append("scrape"))
        await asyncio.sleep(0)  # it renders a district, then pauses
        assert not scrape.done()
        counting = asyncio.ensure_future(
            wf.process_batch(fetched(wf, tp, [Record(i, filed(i)) for i in range(3)]))
        )
        counting.add_done_callback(lambda _: done.append("batch"))
        await asyncio.gather(scrape, counting)
        await collector.scrape_done()  # none in progress: returns at once
        return done

    assert asyncio.run(run()) == ["scrape", "batch"]
    assert wf.engine.states["jinshui"].totals[0] == 3


def test_a_scrape_answer_is_sent_before_a_batch_waiting_for_it(
    wf: Watchfloor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/metrics holds batches back from its render until its answer is written: an
    answer larger than the socket's send buffer otherwise waited for the next batch."""
    from aiohttp.test_utils import TestClient

    from streams import web
    from tests.unit.test_web import served

    tp = jinshui_tp(wf)
    collector = wf.districts_collector
    order: list[str] = []
    counting: list[asyncio.Future[Any]] = []
    render = collector.render_parts
    send = web.send_now

    async def render_then_batch(slice_seconds: float = 0.0) -> list[bytes]:
        # A batch fetched as the scrape begins: it may not begin before the answer leaves.
        batch = fetched(wf, tp, [Record(i, filed(i)) for i in range(3)])
        task = asyncio.ensure_future(wf.process_batch(batch))
        task.add_done_callback(lambda _: order.append("batch"))
        counting.append(task)
        return await render(0.0)

    async def sent(*args: Any) -> None:
        await asyncio.sleep(0.01)  # as a socket that takes the answer in two writes
        await send(*args)
        order.append("sent")

    async def check(client: TestClient) -> None:
        wf.on_recovered(set(range(wf.settings.partitions)))
        assert wf._warming is not None
        await wf._warming
        collector._texts.clear()
        monkeypatch.setattr(collector, "render_parts", render_then_batch)
        monkeypatch.setattr(web, "send_now", sent)
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert b"watchfloor_open_cases" in await resp.read()
        await asyncio.gather(*counting)

    served(wf, check)
    assert order == ["sent", "batch"]
    assert wf.engine.states["jinshui"].totals[0] == 3


def test_a_batch_waits_for_the_producer_buffer_to_ebb_before_it_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Journals only queue in Faust's producer buffer; a batch begun while it is full
    # waits for its sending task to bring it down to PRODUCER_EBB_MESSAGES.
    from streams import app as app_module

    monkeypatch.setattr(app_module, "PRODUCER_EBB_SECONDS", 2.0)  # room for a slow machine
    wf = lingering(linger_ms=0, min_events=1)
    tp = jinshui_tp(wf)
    buf = wf.app.producer.buffer
    limit = app_module.PRODUCER_EBB_MESSAGES
    seen: list[tuple[int, bool]] = []  # (buffer size, counted yet) at each drain step

    async def drain() -> None:  # what the buffer's own task does, ten at a time
        while buf.size:
            await asyncio.sleep(0.002)
            seen.append((buf.size, "jinshui" in wf.engine.states))
            for _ in range(min(10, buf.size)):
                buf.pending.get_nowait()
            buf.message_sent.set()

    async def run() -> None:
        for i in range(limit + 50):
            buf.pending.put_nowait(i)
        batch = await first_fetch(wf, tp, [Record(0, filed(0))])
        drainer = asyncio.ensure_future(drain())
        await asyncio.wait_for(wf.process_batch(batch), 5.0)
        await drainer

    asyncio.run(run())
    waiting = [size for size, counted in seen if not counted]
    counted = [size for size, counted in seen if counted]
    assert waiting[0] == limit + 50 and min(waiting) > limit  # not counted while above
    assert counted and counted[0] > limit - 20  # counted as soon as it ebbed, not at empty
    assert wf.engine.states["jinshui"].totals[0] == 1


def test_a_batch_waits_for_the_producer_buffer_no_longer_than_the_ebb_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams import app as app_module

    monkeypatch.setattr(app_module, "PRODUCER_EBB_SECONDS", 0.05)
    wf = lingering(linger_ms=0, min_events=1)
    tp = jinshui_tp(wf)
    buf = wf.app.producer.buffer

    async def run(problem: str | None) -> float:
        loop = asyncio.get_running_loop()
        wf.kafka_problem = problem
        t0 = loop.time()
        batch = await first_fetch(wf, tp, [Record(0, filed(0))])
        await asyncio.wait_for(wf.process_batch(batch), 2.0)
        return loop.time() - t0

    async def both() -> tuple[float, float]:
        for i in range(app_module.PRODUCER_EBB_MESSAGES + 1):
            buf.pending.put_nowait(i)  # nothing drains them
        return await run(None), await run("the broker is away")

    stuck, away = asyncio.run(both())
    assert 0.04 <= stuck < 1.0  # waited its limit, then counted
    assert away < 0.04  # Kafka away: nothing can drain, no wait at all
    assert wf.engine.states["jinshui"].totals[0] == 1  # the same record twice: counted once

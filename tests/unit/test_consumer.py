"""The batch consumer's hand-over: a rebalance that clears the agent's queue must not kill it."""

from __future__ import annotations

import asyncio

import pytest
from faust.types import TP
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from streams.consumer import Batch, BatchConsumer


def batch() -> Batch:
    return Batch(1, [(TP("t", 0), [])], 0.0)


def test_a_put_cancelled_by_a_cleared_queue_drops_the_batch_quietly() -> None:
    async def main() -> None:
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
        await asyncio.wait_for(handing, 1)  # returns: the fetch loop goes on
        assert handing.exception() is None

    asyncio.run(main())


def test_the_fetch_loop_itself_can_still_be_stopped() -> None:
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


def test_a_failed_seek_during_a_rebalance_does_not_end_the_fetch_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = object.__new__(BatchConsumer)  # no broker: only the rewind is exercised
    seeks: list[int] = []

    async def perform_seek() -> None:
        seeks.append(1)
        raise RuntimeError("No current assignment for partition TP(topic='t', partition=0)")

    consumer.perform_seek = perform_seek  # type: ignore[method-assign]
    with caplog.at_level("WARNING"):
        asyncio.run(consumer._rewind())
    assert seeks == [1]
    assert "No current assignment" in caplog.text

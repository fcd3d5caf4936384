"""One worker's parts without Kafka: readiness, the state-write guard, Faust's settings."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from streams.consumer import batch_consumer
from streams.settings import Settings
from streams.worker import build_worker


def worker(tmp_path: Path, **overrides: Any) -> Any:
    return build_worker(Settings(data_dir=str(tmp_path), **overrides))


def test_a_lost_state_write_stops_commits_and_the_worker(tmp_path: Path) -> None:
    wf = worker(tmp_path)
    wf.ready = True
    crashed: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        crashed.append(exc)

    wf.app.crash = crash
    guard = next(s for s in wf.app.sensors if type(s).__name__ == "StateWriteGuard")
    consumer = batch_consumer(wf.app)

    async def main() -> bool:
        # A dead letter or an ingested event that fails is handled where it is awaited.
        guard.on_send_error(None, TimeoutError("x"), guard.on_send_initiated(
            None, wf.settings.topic_deadletter, None, 0, 0))
        assert wf.commit_allowed() and wf.ready
        state = guard.on_send_initiated(None, wf.changelog_topic, None, 0, 0)
        guard.on_send_error(None, TimeoutError("no leader"), state)
        await asyncio.sleep(0)
        return bool(await consumer._commit({}))  # refused before reaching Kafka

    assert asyncio.run(main()) is False
    assert not wf.commit_allowed() and not wf.ready and not wf.serving
    assert [str(e) for e in crashed] == ["no leader"]


def test_fausts_settings_come_from_watchfloors_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"WEB_PORT": "7777", "APP_DATADIR": "/nowhere",
                        "BROKER_SESSION_TIMEOUT": "1", "PRODUCER_REQUEST_TIMEOUT": "5",
                        "APP_WEB_ROUTER_ENABLED": "true", "TOPIC_PARTITIONS": "1"}.items():
        monkeypatch.setenv(name, value)
    wf = worker(tmp_path, web_port=6123, producer_timeout=42.0, partitions=4)
    conf = wf.app.conf
    assert conf.web_port == 6123 and str(conf.datadir).startswith(str(tmp_path))
    assert conf.broker_session_timeout == wf.settings.session_timeout
    assert conf.producer_request_timeout == 42.0
    assert conf.topic_partitions == 4
    assert conf.web_router_enabled is False and conf.web_tables_enabled is False


def test_serving_needs_recovery_kafka_and_no_drain(tmp_path: Path) -> None:
    wf = worker(tmp_path)
    assert not wf.serving and wf.not_ready_reason() == "The worker is recovering its state."
    wf.ready = True
    assert wf.serving and wf.not_ready_reason() is None
    wf.set_kafka_problem("partition 2 of x has no leader")
    assert not wf.serving and "partition 2 of x has no leader" in str(wf.not_ready_reason())
    wf.set_kafka_problem(None)
    wf.begin_drain()
    assert not wf.serving and wf.not_ready_reason() == "The worker is shutting down."


def test_offsets_wait_for_the_state_writes_made_before_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Faust's own flush before a commit gives up on its send buffer after 0.1 s without a
    # send: the commit must still not pass a state write that has not reached Kafka.
    import streams.consumer as consumer_module

    monkeypatch.setattr(consumer_module, "COMMIT_TIMEOUT_SECONDS", 0.05)
    wf = worker(tmp_path)
    consumer = batch_consumer(wf.app)

    async def main() -> None:
        assert await wf.table.writes_delivered(0.01)  # nothing written yet
        # A journal into Faust's send buffer, its partition given (no producer runs here).
        wf.table.send_changelog(1, b"jinshui|j|0", b"journal")
        [write] = list(wf.table._undelivered)
        assert not await wf.table.writes_delivered(0.01)
        assert await consumer._commit({}) is False  # refused before reaching Kafka
        write.set_result(None)  # what Faust does once Kafka acknowledged it
        assert await wf.table.writes_delivered(0.01)
        assert not wf.table._undelivered

    asyncio.run(main())


def test_a_declined_commit_is_retried_without_new_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Faust marks offsets committed even when the commit failed; a partition that gets no
    # new record must still have its offsets committed by a later commit.
    from faust.transport.drivers import aiokafka as faust_aiokafka
    from faust.types import TP

    committed: list[dict[TP, int]] = []

    async def kafka_commit(self: Any, offsets: Any) -> bool:
        committed.append(dict(offsets))
        return True

    monkeypatch.setattr(faust_aiokafka.Consumer, "_commit", kafka_commit)
    wf = worker(tmp_path)
    consumer = batch_consumer(wf.app)
    quiet, busy = TP("incidents", 0), TP("patrols", 0)
    monkeypatch.setattr(consumer, "assignment", lambda: {quiet, busy})

    async def no_flush() -> None:
        pass

    monkeypatch.setattr(wf.app.producer, "flush", no_flush)
    delivered = [False]

    async def writes_delivered(timeout: float) -> bool:
        return delivered[0]

    consumer.state_writes_delivered = writes_delivered

    async def main() -> None:
        consumer.ack_batch(quiet, [SimpleRecord(o) for o in range(3)])
        consumer.ack_batch(busy, [SimpleRecord(o) for o in range(5)])
        assert await consumer._commit_tps([quiet, busy], start_new_transaction=False) is False
        assert committed == []  # declined: the state writes had not reached Kafka
        delivered[0] = True
        consumer.ack_batch(busy, [SimpleRecord(5)])  # only one partition gets a record
        assert await consumer._commit_tps([quiet, busy], start_new_transaction=False)
        assert committed == [{quiet: 3, busy: 6}]
        # Once committed, nothing is retried again.
        assert await consumer._commit_tps([quiet, busy], start_new_transaction=False) is False
        assert committed == [{quiet: 3, busy: 6}]

    asyncio.run(main())


class SimpleRecord:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def test_the_aiokafka_consumer_gets_the_fetch_wait_setting(tmp_path: Path) -> None:
    # Faust hard-codes 1,500 ms; a held fetch of quiet partitions then held back every
    # busy one (docs/performance.md, "What each change of issue #16 bought").
    wf = worker(tmp_path, fetch_max_wait_ms=40)
    consumer = batch_consumer(wf.app)

    async def main() -> list[int]:
        aio = consumer._thread._create_worker_consumer(wf.app.transport)
        waits = [int(aio._fetch_max_wait_ms)]  # a worker starts with a rebalance
        consumer._thread._consumer = aio
        aio._fetcher = SimpleNamespace(_fetch_max_wait_ms=waits[0])  # as start() makes it
        wf.app.on_rebalance_start()
        wf.app.on_rebalance_end()
        waits += [int(aio._fetch_max_wait_ms), int(aio._fetcher._fetch_max_wait_ms)]
        wf.app.on_rebalance_start()  # the next rebalance: offsets asked again
        waits += [int(aio._fetch_max_wait_ms), int(aio._fetcher._fetch_max_wait_ms)]
        return waits

    # While a rebalance recovers, Faust's offset requests wait behind a held fetch: it is
    # held 10 ms then, and as the setting says once the worker is ready.
    assert asyncio.run(main()) == [10, 40, 40, 10, 10]
    assert Settings().fetch_max_wait_ms == 100


def test_the_aiokafka_consumer_gets_the_fetch_size_settings(tmp_path: Path) -> None:
    # aiokafka holds a fetched response until its last record is read: these two bound
    # what a catch-up keeps buffered (docs/performance.md, the fourteenth step).
    wf = worker(tmp_path, fetch_partition_bytes=300_000, fetch_max_bytes=2_000_000)
    consumer = batch_consumer(wf.app)

    async def main() -> tuple[int, int]:
        aio = consumer._thread._create_worker_consumer(wf.app.transport)
        return int(aio._max_partition_fetch_bytes), int(aio._fetch_max_bytes)

    assert asyncio.run(main()) == (300_000, 2_000_000)

"""The bulk changelog read that restores the state table, on Kafka."""

from __future__ import annotations

import asyncio
import random

from aiokafka import AIOKafkaProducer
from faust.types import TP

from streams.restore import read_changelog
from streams.settings import Settings
from tests.integration.harness import new_topic

PARTITIONS = 3
Records = list[tuple[int, bytes, bytes | None]]  # partition, key, value (None: delete)


async def _produce(bootstrap: str, topic: str, records: Records) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition, key, value in records:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


def _records(rng: random.Random, n: int, tag: str) -> Records:
    """Keys written over and over, some deleted (a null value), some written again."""
    out: Records = []
    for i in range(n):
        p = rng.randrange(PARTITIONS)
        key = b"k%d-%d" % (p, rng.randrange(40))
        value = None if rng.random() < 0.15 else f"{tag}{i}".encode()
        out.append((p, key, value))
    return out


def _latest(records: Records) -> dict[bytes, bytes]:
    truth: dict[bytes, bytes] = {}
    for _, key, value in records:
        if value is None:
            truth.pop(key, None)
        else:
            truth[key] = value
    return truth


def test_the_bulk_read_leaves_the_latest_value_of_every_key(kafka_bootstrap: str) -> None:
    topic = new_topic(kafka_bootstrap, "test-restore", PARTITIONS)
    rng = random.Random(7)
    first = _records(rng, 600, "a")
    asyncio.run(_produce(kafka_bootstrap, topic, first))
    settings = Settings(bootstrap_servers=kafka_bootstrap)
    tps = [TP(topic, p) for p in range(PARTITIONS)]
    counts = [sum(1 for p, _, _ in first if p == q) for q in range(PARTITIONS)]

    data: dict[bytes, bytes] = {}
    read_to = asyncio.run(read_changelog(settings, tps, data, {}))
    assert data == _latest(first)
    assert read_to == {TP(topic, p): counts[p] - 1 for p in range(PARTITIONS)}

    # Later records only, from where the first read stopped: a key the first read holds
    # is deleted or overwritten by them, and nothing before them is read again.
    second = _records(rng, 300, "b")
    asyncio.run(_produce(kafka_bootstrap, topic, second))
    marker = b"not re-read"
    untouched = next(k for k in data if k not in {key for _, key, _ in second})
    data[untouched] = marker
    again = asyncio.run(read_changelog(settings, tps, data, read_to))
    expected = _latest(first + second)
    expected[untouched] = marker
    assert data == expected
    assert again == {
        TP(topic, p): counts[p] + sum(1 for q, _, _ in second if q == p) - 1
        for p in range(PARTITIONS)
    }


def test_an_empty_partition_is_read_up_to_minus_one(kafka_bootstrap: str) -> None:
    topic = new_topic(kafka_bootstrap, "test-restore", PARTITIONS)
    asyncio.run(_produce(kafka_bootstrap, topic, [(0, b"k", b"v")]))
    data: dict[bytes, bytes] = {}
    read_to = asyncio.run(read_changelog(Settings(bootstrap_servers=kafka_bootstrap),
                                         [TP(topic, 0), TP(topic, 1)], data, {}))
    assert data == {b"k": b"v"}
    assert read_to == {TP(topic, 0): 0, TP(topic, 1): -1}

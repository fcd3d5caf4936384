"""Watchfloor's fetch path (CRCs checked and records read in C) on records a real broker
serves, written by aiokafka and kafka-python, plain and compressed: the same records as
aiokafka's own reading, and the plain ones read in C."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from kafka import KafkaProducer

from streams import native
from tests.integration.harness import new_topic

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 2


def _read(bootstrap: str, topic: str, n: int, mode: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "tests.integration.fetch_read", bootstrap, topic,
         str(PARTITIONS), str(n), mode],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )
    return dict(json.loads(out.stdout))


async def _produce_aiokafka(bootstrap: str, topic: str, compression: str | None) -> int:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, compression_type=compression, linger_ms=20
    )
    await producer.start()
    sent = 0
    try:
        futures = []
        for i in range(300):
            headers = [("wf-h", b"x" * (i % 5)), ("nul", None)] if i % 4 == 0 else []
            key = None if i % 9 == 0 else b"d%03d" % (i % 17)
            value = None if i % 50 == 7 else b'{"n": %d, "pad": "%s"}' % (i, b"p" * (i % 200))
            if key is None and value is None:
                key = b"tombstone"  # aiokafka sends a record with one of them at least
            futures.append(await producer.send(
                topic, value, key=key, partition=i % PARTITIONS, headers=headers or None
            ))
            sent += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


def _produce_kafka_python(bootstrap: str, topic: str) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    try:
        for i in range(200):
            producer.send(
                topic, value=b"kp-%d" % i, key=b"k%d" % (i % 3), partition=i % PARTITIONS,
                headers=[("src", b"kafka-python")] if i % 2 else [],
            )
        producer.flush()
    finally:
        producer.close()
    return 200


def test_plain_batches_are_read_in_c_as_aiokafka_reads_them(kafka_bootstrap: str) -> None:
    topic = new_topic(kafka_bootstrap, "test-fetch-plain", PARTITIONS)
    n = asyncio.run(_produce_aiokafka(kafka_bootstrap, topic, None))
    n += _produce_kafka_python(kafka_bootstrap, topic)
    truth = _read(kafka_bootstrap, topic, n, "aiokafka")
    ours = _read(kafka_bootstrap, topic, n, "watchfloor")
    assert len(truth["rows"]) == n, "aiokafka read every record"
    assert truth["in_c"] == 0
    assert ours["rows"] == truth["rows"]
    pure = os.environ.get("WATCHFLOOR_TEST_PURE") == "1"
    if not pure and native.extension("_crc32c") is not None and native.extension("_records"):
        assert ours["installed"]["records"], "the reader was installed"
    if ours["installed"]["records"]:
        assert ours["in_c"] == n, "every record of a plain batch is read in C"
    else:
        assert ours["in_c"] == 0


def test_compressed_batches_are_left_to_aiokafka(kafka_bootstrap: str) -> None:
    topic = new_topic(kafka_bootstrap, "test-fetch-gzip", PARTITIONS)
    n = asyncio.run(_produce_aiokafka(kafka_bootstrap, topic, "gzip"))
    truth = _read(kafka_bootstrap, topic, n, "aiokafka")
    ours = _read(kafka_bootstrap, topic, n, "watchfloor")
    assert len(truth["rows"]) == n
    assert ours["rows"] == truth["rows"]
    assert ours["in_c"] == 0

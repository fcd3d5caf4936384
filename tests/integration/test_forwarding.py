"""Publishers with any Kafka client: records in the wrong partition are forwarded, counted once.

librdkafka-based clients (confluent-kafka, kcat, the Go and .NET clients) hash keys with
CRC32 by default, and the CloudEvents SDK's Kafka binding sends no key at all: their
records land outside their district's partition. The worker forwards each valid one,
once, through its forward topic to the district's owner — through SIGKILLs.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from collections import Counter
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from streams.partitioning import district_partition
from tests.conftest import need

from .harness import (
    Cluster,
    WorkerProcess,
    confluent_kafka_module,
    role_of,
    sample,
    scripted_stream,
    wait_for,
)
from .test_crash_exactness import assert_figures, counted_total

TZ = ZoneInfo("Asia/Shanghai")
DISTRICTS = ["jinshui", "erqi", "zhongyuan", "gaoxin", "huiji", "baihe"]


def confluent_producer(cluster: Cluster) -> Any:
    confluent_kafka = confluent_kafka_module()
    # librdkafka's defaults: partitioner consistent_random (CRC32 of the key).
    return confluent_kafka.Producer({"bootstrap.servers": cluster.bootstrap, "linger.ms": 5})


def publish_confluent(cluster: Cluster, docs: list[dict[str, Any]], keyed: bool) -> list[int]:
    producer = confluent_producer(cluster)
    landed: list[int] = []
    errors: list[Any] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(err)
        else:
            landed.append(msg.partition())

    for doc in docs:
        key = str(doc["district"]).encode() if keyed else None
        producer.produce(cluster.topic(role_of(doc)), orjson.dumps(doc), key=key,
                         on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(60) == 0 and not errors, errors
    return landed


def publish_kcat(cluster: Cluster, docs: list[dict[str, Any]]) -> None:
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    need(kcat is not None, "kcat is not installed (deploy/local/setup.sh installs it)")
    assert kcat is not None
    by_topic: dict[str, list[bytes]] = {}
    for doc in docs:
        line = str(doc["district"]).encode() + b"\t" + orjson.dumps(doc)
        by_topic.setdefault(cluster.topic(role_of(doc)), []).append(line)
    for topic, lines in by_topic.items():
        # kcat at its defaults, as a publisher would run it: only the key delimiter given.
        subprocess.run([kcat, "-P", "-b", cluster.bootstrap, "-t", topic, "-K", "\t"],
                       input=b"\n".join(lines) + b"\n", check=True, timeout=120)


@pytest.mark.slow
def test_records_from_librdkafka_kcat_and_keyless_clients_count_once_through_kills(
    cluster: Cluster, workers: Any
) -> None:
    rng = random.Random(20261204)
    docs, truth = scripted_stream(DISTRICTS, per_district=600, now=datetime.now(TZ), seed=11)
    # Each client publishes whole districts, so a district's records keep their order
    # within a client (a publisher's own order) while the clients interleave.
    clients = {d: ("keyed", "keyless", "kcat")[i % 3] for i, d in enumerate(DISTRICTS)}
    parts: dict[str, list[dict[str, Any]]] = {"keyed": [], "keyless": [], "kcat": []}
    for doc in docs:
        parts[clients[str(doc["district"])]].append(doc)
    landed = publish_confluent(cluster, parts["keyed"][:200], keyed=True)
    misplaced = sum(
        1 for doc, p in zip(parts["keyed"][:200], landed, strict=False)
        if p != district_partition(str(doc["district"]), cluster.partitions)
    )
    assert misplaced > 20, "librdkafka's default partitioner must misplace many records"
    w: WorkerProcess = workers(WATCHFLOOR_GROUP_INSTANCE_ID="fwd-w1")
    w.wait_ready()
    steps = [
        lambda: publish_confluent(cluster, parts["keyed"][200:], keyed=True),
        lambda: publish_confluent(cluster, parts["keyless"], keyed=False),
        lambda: publish_kcat(cluster, parts["kcat"]),
    ]
    kills = 0
    for i, step in enumerate(steps):
        step()
        if i < 2:  # killed while forwarding and counting what was just published
            time.sleep(rng.uniform(0.3, 1.5))
            w.kill()
            kills += 1
            w.start()
            w.wait_ready()
    assert kills == 2
    expected = truth.total()
    wait_for(lambda: counted_total(w) >= expected, timeout=180, what=f"{expected} counted")
    time.sleep(3)  # a record counted twice would show up now
    assert counted_total(w) == expected
    assert_figures(w, truth)
    forwarded = sum(
        v for (name, _), v in w.metrics().items() if name == "watchfloor_forwarded_records_total"
    )
    # Forwarded counters restart with the process; it forwarded at least the last part.
    assert forwarded > 0
    letters = cluster.read_all("deadletter")
    reasons = {dict(r.headers)["wf-reason"] for r in letters}
    assert b"wrong_partition" not in reasons, "nothing valid is refused for its partition"
    # Every repeated event has a dead letter, and only repeated events have one. Its copies
    # may sit on different partitions (a keyless client's), and which copy is counted
    # first can change when a kill makes the worker read both again: then each copy
    # may have a letter of its own, never more letters than copies.
    copies = Counter(str(doc["id"]) for doc in docs)
    assert sum(n - 1 for n in copies.values()) == sum(truth.duplicates.values())
    lettered: dict[str, set[tuple[bytes, bytes, bytes]]] = {}
    for r in letters:
        h = dict(r.headers)
        if h["wf-reason"] == b"duplicate":
            coords = (h["wf-source-topic"], h["wf-source-partition"], h["wf-source-offset"])
            lettered.setdefault(str(orjson.loads(r.value)["id"]), set()).add(coords)
    assert set(lettered) == {i for i, n in copies.items() if n > 1}
    assert all(len(coords) <= copies[i] for i, coords in lettered.items())
    assert sample(w.metrics(), "watchfloor_ready") == 1

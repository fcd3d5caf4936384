"""Publishing and dead letters against a real Kafka broker: what lands where, byte for byte."""

from __future__ import annotations

import argparse
import asyncio
import copy
import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams import deadletter, dlq, kafka, publish
from streams.errors import BrokerError
from streams.events import KIND_OF_TYPE
from streams.kafka import client_kwargs
from streams.partitioning import district_partition
from streams.settings import Settings
from streams.validation import load_schemas

from .harness import confluent_kafka_module, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

PARTITIONS = 4


def own_settings(kafka_bootstrap: str, unique: str, **overrides: Any) -> Settings:
    """Settings whose topics are this test's own (``it-<unique>.*``)."""
    fields: dict[str, Any] = {
        "topic_incidents": f"it-{unique}.incidents",
        "topic_disputes": f"it-{unique}.disputes",
        "topic_patrols": f"it-{unique}.patrols",
        "topic_deadletter": f"it-{unique}.deadletter",
        "partitions": PARTITIONS,
    }
    return Settings(bootstrap_servers=kafka_bootstrap, **{**fields, **overrides})


@pytest.fixture
def settings(kafka_bootstrap: str, unique: str) -> Iterator[Settings]:
    s = own_settings(kafka_bootstrap, unique)
    asyncio.run(create_topics(s, [*s.source_topics, s.topic_deadletter]))
    # The broker lists a new topic a moment after creating it (longer on a broker busy
    # loading its logs); the publish tests look for their topics first.
    ours = {*s.source_topics, s.topic_deadletter}
    wait_for(lambda: ours <= asyncio.run(kafka.existing_topics(s)), timeout=30,
             what="the new topics listed")
    yield s


async def create_topics(settings: Settings, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=PARTITIONS, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


async def read_all(settings: Settings, topic: str) -> list[Any]:
    """Every record of a topic, up to its end now, without a consumer group."""
    # auto_offset_reset must agree with seek_to_beginning: with the default "latest", a
    # reset started by assign() can land after the seek and skip everything.
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        while True:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            batch = await consumer.getmany(timeout_ms=1000)
            for recs in batch.values():
                records.extend(recs)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


def examples() -> list[dict[str, Any]]:
    files = load_schemas()
    return [copy.deepcopy(e) for s in files.by_type.values() for e in s["examples"]]


def topic_of_doc(settings: Settings, doc: dict[str, Any]) -> str:
    return settings.topic_for_kind(KIND_OF_TYPE[doc["type"]])


# --- publish ----------------------------------------------------------------------------


def test_publish_sends_the_good_lines_and_only_them(settings: Settings, tmp_path: Path) -> None:
    good = examples()
    naive = copy.deepcopy(good[0])
    naive["time"] = "2026-04-12T09:30:00"
    wrong = copy.deepcopy(good[1])
    wrong["district"] = "atlantis"
    lines = [orjson.dumps(d) for d in good]
    lines[3:3] = [b"{not json", orjson.dumps(naive), b"", orjson.dumps(wrong)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")

    parser = argparse.ArgumentParser()
    publish.register_cli(parser.add_subparsers())
    args = parser.parse_args(["publish", str(path)])
    assert args.func(args, settings) == 1, "some lines were rejected"

    landed: dict[str, list[Any]] = {
        t: asyncio.run(read_all(settings, t)) for t in settings.source_topics
    }
    assert sum(len(v) for v in landed.values()) == len(good)
    by_id = {orjson.loads(r.value)["id"]: (t, r) for t, recs in landed.items() for r in recs}
    assert set(by_id) == {d["id"] for d in good}
    for doc in good:
        topic, record = by_id[doc["id"]]
        assert topic == topic_of_doc(settings, doc)
        assert record.value == orjson.dumps(doc), "the line's bytes, untouched"
        assert record.key == doc["district"].encode()
        assert record.partition == district_partition(doc["district"], PARTITIONS)
        assert ("content-type", b"application/cloudevents+json; charset=utf-8") in record.headers


def test_publish_report_lists_rejections(settings: Settings) -> None:
    good = examples()[:3]
    bad = copy.deepcopy(good[0])
    del bad["data"]
    stream = io.BytesIO(
        b"\n".join([orjson.dumps(good[0]), orjson.dumps(bad), *map(orjson.dumps, good[1:])])
    )
    report = asyncio.run(publish.publish_stream(stream, settings))
    assert report.sent == 3 and not report.failed
    assert [(r.line, r.reason, r.field) for r in report.rejected] == [(2, "schema", "data")]


def test_ensure_topics_creates_only_the_missing_and_no_metadata_request_creates_one(
    kafka_bootstrap: str, unique: str
) -> None:
    """What every worker start runs: the missing topics are created with the configured
    partitions, the others are left as they are, and asking which exist creates nothing
    (this broker has auto.create.topics.enable=true, as kafkactl configures it)."""
    # Its own forward topic too: it-<unique>-forward.
    s = own_settings(kafka_bootstrap, unique, app_id=f"it-{unique}")
    asyncio.run(create_topics(s, [s.topic_incidents]))
    wanted = [*s.source_topics, s.topic_deadletter]
    if s.forward_misrouted:
        wanted.append(s.topic_forward)
    absent = f"it-{unique}.never"

    async def counts(names: list[str]) -> dict[str, int]:
        async with kafka.admin_client(s) as admin:
            return await kafka.admin_partition_counts(admin, names)

    for _ in range(100):  # a topic is listed once its partitions have leaders
        if asyncio.run(counts([s.topic_incidents])):
            break
        time.sleep(0.1)
    assert asyncio.run(counts([*wanted, absent])) == {s.topic_incidents: PARTITIONS}
    created = kafka.ensure_topics(s)
    assert sorted(created) == sorted(t for t in wanted if t != s.topic_incidents)
    assert asyncio.run(counts([*wanted, absent])) == dict.fromkeys(wanted, PARTITIONS)
    assert kafka.ensure_topics(s) == []
    assert absent not in asyncio.run(kafka.existing_topics(s)), "never auto-created"


def test_the_delivery_check_names_its_topics_and_creates_none(
    settings: Settings, unique: str
) -> None:
    """What the worker asks every two seconds (``/ready``, ingest): a leader for every
    partition of its topics. A missing one is said by name and not created, though
    this broker auto-creates topics a metadata request names."""
    from aiokafka import AIOKafkaClient

    absent = f"it-{unique}.absent"

    async def check(topics: list[str]) -> str | None:
        client = AIOKafkaClient(**client_kwargs(settings))
        await client.bootstrap()
        try:
            return await kafka.delivery_problem(client, topics, 5.0)
        finally:
            await client.close()

    ours = [*settings.source_topics, settings.topic_deadletter]
    for _ in range(100):  # created by the fixture: listed once their partitions have leaders
        if asyncio.run(check(ours)) is None:
            break
        time.sleep(0.1)
    assert asyncio.run(check(ours)) is None
    assert asyncio.run(check([*ours, absent])) == f"topic {absent} is missing"
    assert absent not in asyncio.run(kafka.existing_topics(settings)), "never auto-created"


def test_ensure_topics_refuses_a_source_topic_of_another_partition_count(
    kafka_bootstrap: str, unique: str
) -> None:
    s = own_settings(kafka_bootstrap, unique, partitions=PARTITIONS + 2)
    asyncio.run(create_topics(s, [s.topic_disputes]))  # PARTITIONS, not PARTITIONS + 2
    with pytest.raises(BrokerError, match=f"Topic it-{unique}.disputes has {PARTITIONS} "
                       f"partitions but WATCHFLOOR_PARTITIONS is {PARTITIONS + 2}"):
        kafka.ensure_topics(s)


def test_publish_refuses_missing_topics(kafka_bootstrap: str, unique: str) -> None:
    s = Settings(bootstrap_servers=kafka_bootstrap, topic_incidents=f"absent-{unique}")
    with pytest.raises(BrokerError, match=f"absent-{unique}"):
        asyncio.run(publish.publish_stream(io.BytesIO(orjson.dumps(examples()[0])), s))
    assert f"absent-{unique}" not in asyncio.run(kafka.existing_topics(s)), "never auto-created"


# --- dead letters: write, list, replay --------------------------------------------------

REJECTED_AT = datetime(2026, 4, 12, 2, 0, tzinfo=UTC)


def letter_for(
    settings: Settings, doc: dict[str, Any], reason: str, offset: int, topic: str | None = None
) -> deadletter.DeadLetter:
    source = topic or topic_of_doc(settings, doc)
    return deadletter.build_dead_letter(
        key=doc["district"].encode(),
        value=orjson.dumps(doc),
        headers=[
            ("content-type", b"application/cloudevents+json"),
            ("traceparent", b"00-aa-bb-01"),
        ],
        reason=reason,
        error=f"{reason}: a sentence naming the field.",
        source_topic=source,
        source_partition=district_partition(doc["district"], PARTITIONS),
        source_offset=offset,
        source_timestamp_ms=1775959200000,
        rejected_at=REJECTED_AT,
        worker="http://127.0.0.1:6066",
    )


async def write_letters(
    settings: Settings, letters: list[deadletter.DeadLetter]
) -> list[tuple[int, int]]:
    async with kafka.kafka_producer(settings) as producer:
        writer = deadletter.DeadLetterWriter(producer, settings.topic_deadletter)
        return [await writer.write(x) for x in letters]


def run_dlq(
    settings: Settings, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, Any]:
    parser = argparse.ArgumentParser()
    dlq.register_cli(parser.add_subparsers())
    args = parser.parse_args(["dlq", *argv])
    code = args.func(args, settings)
    out = capsys.readouterr().out
    return code, json.loads(out) if "--json" in argv else out


def test_letters_written_in_batches_land_whole_in_kafkas_partition_of_their_key(
    settings: Settings,
) -> None:
    # The worker's writer: one batch per partition, batches that fill up handed over and
    # started again, a letter larger than a batch alone. Read back from Kafka, every
    # letter is there once, byte for byte, in order within its partition, in the
    # partition kafka-python's own murmur2 partitioner gives its key.
    from kafka.partitioner.default import murmur2

    when = datetime(2026, 4, 12, 4, 0, tzinfo=UTC)
    letters = []
    for i in range(120):
        key = None if i % 10 == 9 else f"district-{i % 7}".encode()
        size = 60_000 if i == 50 else 3_000 + i  # aiokafka's batches hold 16 KB
        letters.append(deadletter.build_dead_letter(
            key=key, value=b"v%d:" % i + b"x" * size, headers=[("origin", b"%d" % i)],
            reason="malformed_json", error=f"letter {i}", source_topic="t",
            source_partition=i % PARTITIONS, source_offset=i, source_timestamp_ms=None,
            rejected_at=when, worker="w"))

    async def write() -> None:
        async with kafka.kafka_producer(settings) as producer:
            await deadletter.DeadLetterWriter(producer, settings.topic_deadletter).write_many(
                letters)

    asyncio.run(write())
    landed = asyncio.run(read_all(settings, settings.topic_deadletter))
    assert len(landed) == len(letters)
    sent = {letter.value: letter for letter in letters}
    assert {r.value for r in landed} == set(sent)
    for r in landed:
        letter = sent[r.value]
        assert r.key == letter.key and list(r.headers) == list(letter.headers)
        if r.key is not None:
            assert r.partition == (murmur2(r.key) & 0x7FFFFFFF) % PARTITIONS
    for p in range(PARTITIONS):
        order = [int(r.value.split(b":")[0][1:]) for r in landed if r.partition == p]
        assert order == sorted(order)


def test_dlq_list_and_replay_round_trip(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = examples()
    hazard = next(d for d in docs if d["type"] == "watchfloor.hazard.found.v1")
    filed = next(d for d in docs if d["type"] == "watchfloor.incident.case_filed.v1")
    posted = next(d for d in docs if d["type"] == "watchfloor.dispute.escalated.v1")
    first = letter_for(settings, hazard, "unknown_district", 41)
    letters = [
        first,
        letter_for(settings, filed, "schema", 7),
        first,  # the same dead letter written twice (a worker crashed before committing)
        letter_for(settings, posted, "unknown_district", 0, topic=deadletter.HTTP_SOURCE),
    ]
    written = asyncio.run(write_letters(settings, letters))
    assert len(written) == 4

    # Written untouched, with every wf-* header.
    stored = asyncio.run(read_all(settings, settings.topic_deadletter))
    assert len(stored) == 4
    sample = next(r for r in stored if r.value == orjson.dumps(filed))
    assert sample.key == filed["district"].encode()
    names = [k for k, _ in sample.headers]
    assert names[:2] == ["content-type", "traceparent"]
    assert {
        "wf-reason",
        "wf-error",
        "wf-source-topic",
        "wf-source-partition",
        "wf-source-offset",
        "wf-source-timestamp",
        "wf-rejected-at",
        "wf-worker",
    } <= set(names)

    code, summary = run_dlq(settings, ["list", "--json"], capsys)
    assert code == 0
    assert (summary["records"], summary["dead_letters"], summary["duplicates"]) == (4, 3, 1)
    assert summary["by_reason"] == {"schema": 1, "unknown_district": 2}
    assert summary["by_source_topic"] == {
        settings.topic_patrols: 1,
        settings.topic_incidents: 1,
        "http": 1,
    }

    code, summary = run_dlq(settings, ["list", "--reason", "schema", "--json"], capsys)
    assert summary["dead_letters"] == 1 and summary["latest"][0]["reason"] == "schema"

    # A dry run sends nothing.
    code, plan = run_dlq(
        settings, ["replay", "--reason", "unknown_district", "--dry-run", "--json"], capsys
    )
    assert code == 0 and plan["replayed_count"] == 2
    assert asyncio.run(read_all(settings, settings.topic_patrols)) == []

    code, report = run_dlq(settings, ["replay", "--reason", "unknown_district", "--json"], capsys)
    assert code == 0 and report["replayed_count"] == 2, "the letter written twice is replayed once"
    patrols = asyncio.run(read_all(settings, settings.topic_patrols))
    disputes = asyncio.run(read_all(settings, settings.topic_disputes))
    assert len(patrols) == 1 and len(disputes) == 1  # the HTTP one goes by its type
    copy_ = patrols[0]
    assert copy_.value == orjson.dumps(hazard) and copy_.key == b"jinshui"
    assert copy_.partition == district_partition("jinshui", PARTITIONS)
    headers = dict(copy_.headers)
    assert headers["content-type"] == b"application/cloudevents+json"
    assert headers["traceparent"] == b"00-aa-bb-01"
    assert not set(headers) & deadletter.DEAD_LETTER_HEADERS
    assert headers["wf-replayed-from"] == (
        f"{settings.topic_patrols}/{district_partition('jinshui', PARTITIONS)}/41".encode()
    )
    assert headers["wf-replay-count"] == b"1"
    assert asyncio.run(read_all(settings, settings.topic_incidents)) == [], "schema was not chosen"

    # Replaying again does nothing: the markers say it was done.
    code, again = run_dlq(settings, ["replay", "--reason", "unknown_district", "--json"], capsys)
    assert again["replayed_count"] == 0 and again["already_replayed"] == 2
    assert len(asyncio.run(read_all(settings, settings.topic_patrols))) == 1

    # The replayed copy fails again; the worker dead-letters it with its headers kept.
    second = deadletter.build_dead_letter(
        key=copy_.key,
        value=copy_.value,
        headers=copy_.headers,
        reason="unknown_district",
        error="district jinshui is not a district in the reference data.",
        source_topic=settings.topic_patrols,
        source_partition=copy_.partition,
        source_offset=copy_.offset,
        source_timestamp_ms=copy_.timestamp,
        rejected_at=datetime.now(UTC),
        worker="http://127.0.0.1:6066",
    )
    asyncio.run(write_letters(settings, [second]))
    code, summary = run_dlq(settings, ["list", "--json"], capsys)
    assert summary["dead_letters"] == 4 and summary["replayed"] == 2
    assert summary["second_failures"] == 1
    assert summary["latest"][0]["second_failure_of"] == headers["wf-replayed-from"].decode()
    code, text = run_dlq(settings, ["list"], capsys)
    assert "failed again" in text and "unknown_district" in text

    # --include-replayed redoes them, and the new copy counts its replays.
    code, report = run_dlq(
        settings, ["replay", "--reason", "unknown_district", "--include-replayed", "--json"], capsys
    )
    assert report["replayed_count"] == 3
    patrols = asyncio.run(read_all(settings, settings.topic_patrols))
    counts = sorted(dict(r.headers)["wf-replay-count"] for r in patrols)
    assert counts == [b"1", b"1", b"2"]


def test_marker_headers_a_publisher_sets_fool_neither_list_nor_replay(
    cluster: Any, workers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12, item 4: a publisher writes the tools' own headers on its records."""
    from kafka import KafkaProducer

    from tests.integration.harness import wait_for

    w = workers()
    w.wait_ready()
    topic = cluster.topic("incidents")
    filed = next(d for d in examples() if d["type"] == "watchfloor.incident.case_filed.v1")
    bad = {**filed, "district": "atlantis"}
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap)
    genuine = producer.send(topic, key=b"atlantis", value=orjson.dumps(bad)).get(30)
    identity = f"{topic}/{genuine.partition}/{genuine.offset}"
    forged_headers = [
        ("wf-marker", b"replayed"),
        ("wf-marked", identity.encode()),  # "the genuine one was replayed"
        ("wf-replayed-to", identity.encode()),
        ("wf-replayed-from", identity.encode()),  # "I am a copy that failed again"
        ("wf-replay-count", b"9"),
    ]
    producer.send(topic, key=b"atlantis", value=b"{not json", headers=forged_headers).get(30)
    producer.close()
    wait_for(lambda: len(cluster.read_all("deadletter")) == 2, what="two dead letters")

    settings = cluster.settings()
    code, summary = run_dlq(settings, ["list", "--json"], capsys)
    assert code == 0
    assert (summary["dead_letters"], summary["replayed"], summary["second_failures"]) == (2, 0, 0)
    assert summary["by_reason"] == {"malformed_json": 1, "unknown_district": 1}
    assert all(r["second_failure_of"] is None and not r["replayed"] for r in summary["latest"])

    code, plan = run_dlq(settings, ["replay", "--all", "--dry-run", "--json"], capsys)
    assert (plan["replayed_count"], plan["already_replayed"]) == (2, 0), plan
    # A real replay marks them; only then does list say so.
    code, report = run_dlq(settings, ["replay", "--all", "--json"], capsys)
    assert report["replayed_count"] == 2
    code, summary = run_dlq(settings, ["list", "--json"], capsys)
    assert summary["replayed"] == 2


def test_dlq_list_of_a_missing_topic_is_empty(
    kafka_bootstrap: str, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Settings(bootstrap_servers=kafka_bootstrap, topic_deadletter=f"nothing-{unique}")
    code, summary = run_dlq(s, ["list", "--json"], capsys)
    assert code == 0 and summary["records"] == 0 and summary["dead_letters"] == 0


# --- HTTP ingest logic over a real producer -------------------------------------------


def test_ingest_sends_and_dead_letters_through_kafka(settings: Settings) -> None:
    from streams import ingest
    from streams.clock import SystemClock
    from streams.reference import load_reference
    from streams.settings import Secret
    from streams.validation import EventValidator

    token = ingest.new_token()
    entry = {
        "name": "grid",
        "sha256": ingest.hash_token(token),
        "districts": ["*"],
        "types": ["watchfloor.hazard.*"],
    }
    s = settings.replace(ingest_tokens=Secret(json.dumps([entry])))
    docs = [d for d in examples() if d["type"].startswith("watchfloor.hazard.")]
    bad = copy.deepcopy(docs[0])
    bad["data"]["deadline"] = bad["time"]

    async def post() -> ingest.IngestResponse:
        validator = EventValidator(load_reference(s.reference_file), clock=SystemClock())
        async with kafka.kafka_producer(s) as producer:
            writer = deadletter.DeadLetterWriter(producer, s.topic_deadletter)
            svc = ingest.IngestService(
                validator,
                ingest.IngestTokens.from_settings(s),
                s,
                publish.producer_send(producer),
                dead_letter=writer.write,
            )
            return await svc.handle(f"Bearer {token}", orjson.dumps([*docs, bad]))

    resp = asyncio.run(post())
    assert resp.status == 400 and resp.body["accepted"] == [d["id"] for d in docs]
    landed = asyncio.run(read_all(s, s.topic_patrols))
    assert sorted(orjson.loads(r.value)["id"] for r in landed) == sorted(d["id"] for d in docs)
    for r in landed:
        assert r.partition == district_partition(orjson.loads(r.value)["district"], PARTITIONS)
    [letter] = asyncio.run(read_all(s, s.topic_deadletter))
    headers = dict(letter.headers)
    assert headers["wf-reason"] == b"deadline_before_found"
    assert headers["wf-source-topic"] == b"http" and headers["wf-publisher"] == b"grid"
    assert orjson.loads(letter.value) == bad


def test_librdkafka_needs_murmur2_random_to_match_the_district_partition(
    settings: Settings,
) -> None:
    """docs/publishing.md tells librdkafka users to set partitioner=murmur2_random: check it."""
    confluent_kafka = confluent_kafka_module()
    from streams.reference import load_reference

    districts = sorted(load_reference(settings.reference_file).district_codes)
    landed: dict[str, dict[str, int]] = {}
    for partitioner in ("murmur2_random", "consistent_random"):
        producer = confluent_kafka.Producer(
            {"bootstrap.servers": settings.bootstrap_servers, "partitioner": partitioner}
        )
        got: dict[str, int] = {}

        def delivered(err: Any, msg: Any, got: dict[str, int] = got) -> None:
            assert err is None, err
            got[msg.key().decode()] = msg.partition()

        for d in districts:
            producer.produce(settings.topic_disputes, b"{}", key=d.encode(), on_delivery=delivered)
        assert producer.flush(30) == 0
        landed[partitioner] = got
    expected = {d: district_partition(d, PARTITIONS) for d in districts}
    assert landed["murmur2_random"] == expected
    assert landed["consistent_random"] != expected, "librdkafka's default would mis-place them"


def test_replay_never_creates_a_missing_topic(
    settings: Settings, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = examples()[0]
    gone = f"gone-{unique}"
    asyncio.run(
        write_letters(settings, [letter_for(settings, doc, "wrong_partition", 3, topic=gone)])
    )
    code, report = run_dlq(settings, ["replay", "--all", "--json"], capsys)
    assert code == 1 and report["replayed_count"] == 0
    assert report["skipped"] == [
        {
            "identity": f"{gone}/{district_partition(doc['district'], PARTITIONS)}/3",
            "why": f"topic {gone} does not exist",
        }
    ]
    assert gone not in asyncio.run(kafka.existing_topics(settings))

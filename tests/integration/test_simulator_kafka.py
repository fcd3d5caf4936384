"""The producing loop against a real Kafka broker: what the generator yields is what arrives."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.events import Kind
from streams.kafka import client_kwargs
from streams.partitioning import district_partition
from streams.settings import PROJECT_ROOT, Settings
from streams.simulator.config import SimConfig
from streams.simulator.files import load_city, read_records, scenario_file
from streams.simulator.generator import generate_events
from streams.simulator.lines import describe_value
from streams.simulator.live import run_demo_stream
from streams.simulator.produce import Pacer, produce_records
from streams.simulator.records import MALFORMED_REASONS, STREAM_NAMES

pytestmark = pytest.mark.broker

CITY_FILE = PROJECT_ROOT / "seeds" / "reference" / "city.json"
EPOCH = datetime(2026, 3, 2, tzinfo=UTC)


def settings_for(bootstrap: str, unique: str, partitions: int = 4) -> Settings:
    return Settings(
        bootstrap_servers=bootstrap,
        topic_incidents=f"sim-{unique}.incidents",
        topic_disputes=f"sim-{unique}.disputes",
        topic_patrols=f"sim-{unique}.patrols",
        partitions=partitions,
    )


async def consume_all(settings: Settings, expected: int, timeout: float = 60.0) -> list[object]:
    """Every record of the three topics, read from the beginning."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        parts = []
        for topic in settings.source_topics:
            for p in sorted(
                consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
            ):
                parts.append(TopicPartition(topic, p))
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        out: list[object] = []
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=20000)
            for records in batch.values():
                out.extend(records)
        # Nothing more than expected arrives.
        extra = await consumer.getmany(timeout_ms=500)
        out.extend(r for records in extra.values() for r in records)
        return out
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


def test_delivers_exactly_what_the_generator_yields(kafka_bootstrap: str, unique: str) -> None:
    settings = settings_for(kafka_bootstrap, unique)
    city = load_city(CITY_FILE)
    config = SimConfig(
        start=EPOCH,
        end=EPOCH + timedelta(days=2),
        rate=0.3,
        seed=42,
        late_share=0.02,
        duplicate_share=0.02,
        malformed_share=0.04,
        # Misrouted records are only sent when asked for by name.
        malformed_reasons=(*MALFORMED_REASONS, "wrong_partition"),
    )
    records = list(generate_events(city, config))
    assert 20_000 < len(records) < 200_000

    summary = asyncio.run(produce_records(records, settings))
    assert summary.failed == 0
    per_stream = Counter(r.stream for r in records)
    assert summary.topics == {settings.topic_of(s): n for s, n in per_stream.items()}
    assert summary.tally.by_stream == {STREAM_NAMES[s]: n for s, n in per_stream.items()}

    got = asyncio.run(consume_all(settings, len(records)))
    assert len(got) == len(records)
    # The same (topic, key, value) multiset, record for record.
    sent = Counter((settings.topic_of(r.stream), r.key, r.value) for r in records)
    received = Counter((m.topic, m.key, m.value or b"") for m in got)  # type: ignore[attr-defined]
    assert received == sent
    # Keys go to their district's partition (Kafka's murmur2); wrong_partition records
    # go elsewhere, on purpose.
    misrouted = {r.value for r in records if r.reason == "wrong_partition"}
    assert misrouted
    for m in got:
        home = district_partition(m.key.decode(), 4)  # type: ignore[attr-defined]
        if m.value in misrouted:  # type: ignore[attr-defined]
            assert m.partition != home  # type: ignore[attr-defined]
        else:
            assert m.partition == home  # type: ignore[attr-defined]
    # Within a partition, records arrive in the order the generator yielded them.
    order = {}
    for i, r in enumerate(records):
        order.setdefault((settings.topic_of(r.stream), r.key, r.value), i)
    by_partition: dict[tuple[str, int], list[int]] = {}
    for m in sorted(got, key=lambda m: (m.topic, m.partition, m.offset)):  # type: ignore[attr-defined]
        idx = order[(m.topic, m.key, m.value or b"")]  # type: ignore[attr-defined]
        by_partition.setdefault((m.topic, m.partition), []).append(idx)  # type: ignore[attr-defined]
    for indexes in by_partition.values():
        # A duplicate maps to its original's index; drop repeats before comparing.
        deduped = list(dict.fromkeys(indexes))
        assert deduped == sorted(deduped)


def test_a_scenario_replays_byte_for_byte(kafka_bootstrap: str, unique: str) -> None:
    settings = settings_for(kafka_bootstrap, unique)
    records = list(read_records(scenario_file("disputes-2025")))
    summary = asyncio.run(produce_records(records, settings))
    assert summary.delivered == len(records) == 122
    got = asyncio.run(consume_all(settings, len(records)))
    assert [(m.topic, m.value) for m in sorted(got, key=lambda m: m.offset)] == [  # type: ignore[attr-defined]
        (settings.topic_disputes, r.value) for r in records
    ]
    assert {m.partition for m in got} == {district_partition("zhongyuan", 4)}  # type: ignore[attr-defined]


def test_paced_records_are_not_sent_before_they_are_due(kafka_bootstrap: str, unique: str) -> None:
    settings = settings_for(kafka_bootstrap, unique, partitions=2)
    city = load_city(CITY_FILE)
    # A fixed daytime epoch: the simulator follows a day/night rhythm, so "now" at night
    # once gave too few records. Pacing maps simulated onto wall time whatever the epoch.
    now = datetime(2026, 4, 14, 2, 0, tzinfo=UTC)  # 10:00 in the city
    # Ten seconds simulated at 20x: a record due at publish time `at` must not leave
    # before wall time now + (at - start) / 20.
    config = SimConfig(start=now, end=now + timedelta(seconds=200), rate=5.0, seed=3)
    records = list(generate_events(city, config))
    assert len(records) > 100
    origin = time.monotonic()
    wall0 = time.time()
    pacer = Pacer(now.timestamp(), origin, 20.0)
    summary = asyncio.run(produce_records(records, settings, pacer=pacer))
    elapsed = time.monotonic() - origin
    assert summary.delivered == len(records)
    assert 9.0 <= elapsed < 60.0, elapsed
    got = asyncio.run(consume_all(settings, len(records)))
    due = {r.value: wall0 + (r.at - now.timestamp()) / 20.0 for r in records}
    early = [m for m in got if m.timestamp / 1000 < due[m.value] - 0.05]  # type: ignore[attr-defined]
    assert not early, [(m.timestamp / 1000 - due[m.value], m.value[:60]) for m in early[:5]]


def test_demo_stream_backfills_then_goes_live_with_an_overdue_drill(
    kafka_bootstrap: str, unique: str
) -> None:
    settings = settings_for(kafka_bootstrap, unique)

    async def main() -> tuple[object, float]:
        stop = asyncio.Event()
        started = time.time()
        task = asyncio.create_task(
            run_demo_stream(
                settings, rate=3.0, seed=9, stop_event=stop, backfill=timedelta(hours=6)
            )
        )
        # Six hours, not two: the day/night rhythm gives a 2-hour backfill at 02:00-05:00
        # Shanghai time only about 1,200 records, so the 0.2 % shares of late, duplicate
        # and malformed records came to 2-4 each and a run once drew no duplicate at all.
        # Six hours give 15,000 to 49,000 records (30 or more of each) at any hour. They go
        # out in a few seconds on a quiet machine; the margin is for a loaded CI machine,
        # where a 12 s wait once saw no live record at all.
        await asyncio.sleep(30)
        stop.set()
        return await task, started

    summary, started = asyncio.run(main())
    assert summary.failed == 0  # type: ignore[attr-defined]
    delivered = summary.delivered  # type: ignore[attr-defined]
    # The day/night rhythm makes the count depend on the hour: about 15,000 at night.
    assert delivered == summary.tally.total > 10_000  # type: ignore[attr-defined]
    intents = summary.tally.by_intent  # type: ignore[attr-defined]
    assert intents["late"] and intents["duplicate"] and intents["malformed"]
    got = asyncio.run(consume_all(settings, delivered))
    assert len(got) == delivered
    seen = [(describe_value(m.value or b""), m.value or b"") for m in got]  # type: ignore[attr-defined]
    times = [ts for (_, ts), _ in seen if ts is not None]
    # History from two hours ago at once, and live records from the last seconds.
    assert any(started - 2 * 3600 - 900 <= t < started - 3600 for t in times)
    assert any(t >= started for t in times)
    # The first drill hazard is found as the live part starts; its deadline is minutes away.
    drill = [kind for (kind, ts), value in seen if b"drill" in value]
    assert drill and set(drill) == {Kind.HAZARD_FOUND}


def test_workers_share_the_districts_and_deliver_everything(
    kafka_bootstrap: str, unique: str
) -> None:
    from streams.simulator.produce import produce_in_workers
    from streams.simulator.shard import shard

    settings = settings_for(kafka_bootstrap, unique)
    city = load_city(CITY_FILE)
    config = SimConfig(start=EPOCH, end=EPOCH + timedelta(days=1), rate=0.3, seed=8)
    summary = produce_in_workers(city, config, settings, 3)
    expected = [r for i in range(3) for r in generate_events(*shard(city, config, i, 3))]
    assert summary.failed == 0 and summary.delivered == len(expected) > 10_000
    got = asyncio.run(consume_all(settings, len(expected)))
    assert Counter((m.topic, m.key, m.value) for m in got) == Counter(  # type: ignore[attr-defined]
        (settings.topic_of(r.stream), r.key, r.value) for r in expected
    )

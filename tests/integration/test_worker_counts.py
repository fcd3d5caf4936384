"""A real worker on the real broker counts a known stream exactly and serves it."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import orjson

from streams.kafka import admin_client

from .harness import Cluster, event, sample, wait_for

TZ = ZoneInfo("Asia/Shanghai")
DISTRICTS = ["jinshui", "erqi", "zhongyuan", "guancheng", "huiji"]


def test_incident_counts_per_district_exact(cluster: Cluster, workers) -> None:
    w = workers()
    w.wait_ready()
    now = datetime.now(TZ)
    docs = []
    expected: Counter[str] = Counter()
    for i in range(300):
        d = DISTRICTS[(i * 7) % len(DISTRICTS)]
        # Three fifths in the last hour, the rest spread over the past day.
        when = now - timedelta(minutes=(i % 50)) if i % 5 < 3 else now - timedelta(hours=2 + i % 20)
        docs.append(event("case_filed", d, f"case-{i}", when,
                          {"category": "theft", "severity": "minor"}))
        expected[d] += 1
    # Some are cleared; a repeated clearance is a duplicate, counted once.
    cleared: Counter[str] = Counter()
    for i in range(0, 300, 9):
        d = DISTRICTS[(i * 7) % len(DISTRICTS)]
        docs.append(event("case_cleared", d, f"case-{i}", now))
        cleared[d] += 1
    docs.append(event("case_cleared", DISTRICTS[0], "case-0", now))
    cluster.publish(docs)

    def counted() -> bool:
        m = w.metrics()
        return sample(m, "watchfloor_events_processed_total",
                      topic=cluster.topic("incidents")) == 300 + sum(cleared.values())
    wait_for(counted, what="every event counted")
    m = w.metrics()
    for d in DISTRICTS:
        assert sample(m, "watchfloor_cases_filed_total", district=d) == expected[d]
        assert sample(m, "watchfloor_rolling_cases_filed", district=d, window="24h") == expected[d]
        assert sample(m, "watchfloor_open_cases", district=d) == expected[d] - cleared[d]
        assert sample(m, "watchfloor_cases_cleared_total", district=d) == cleared[d]
    assert sample(m, "watchfloor_events_rejected_total", topic=cluster.topic("incidents"),
                  reason="duplicate") == 1

    status, body = w.get("/api/v1/districts/jinshui")
    assert status == 200
    assert body["rolling"]["24h"]["cases_filed"] == expected["jinshui"]
    assert body["rolling"]["24h"]["cases_cleared"] == cleared["jinshui"]
    assert body["current"]["open_cases"] == expected["jinshui"] - cleared["jinshui"]
    assert body["rolling"]["24h"]["clearance_rate"] == round(
        cleared["jinshui"] / expected["jinshui"], 6
    )

    # The duplicate is in the dead-letter topic, bytes and reason intact.
    letters = wait_for(lambda: cluster.read_all("deadletter"), what="a dead letter")
    assert len(letters) == 1
    headers = dict(letters[0].headers)
    assert headers["wf-reason"] == b"duplicate"
    assert letters[0].value == orjson.dumps(docs[-1])


def test_a_restart_declares_none_of_the_topics_its_first_start_created(
    cluster: Cluster, workers
) -> None:
    """Faust declares its changelog and assignor topics at every start (a CreateTopics
    request and a metadata update of every topic on the cluster, each time); the
    worker's producer asks whether they exist first. The first start still creates them
    as Faust configures them: the changelog compacted."""
    w = workers()
    w.wait_ready()
    assert w.stop() == 0
    changelog = f"{cluster.app_id}-state-changelog"
    first = w.log_path.read_text(errors="replace")
    assert f"Topic '{changelog}' created." in first

    async def cleanup_policy() -> str:
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        async with admin_client(cluster.settings()) as admin:
            [response] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, changelog)])
        entries = response.to_object()["resources"][0]["config_entries"]
        return next(e["config_value"] for e in entries if e["config_names"] == "cleanup.policy")

    assert asyncio.run(cleanup_policy()) == "compact"
    w.start()
    w.wait_ready()
    # The restarted worker's producer knows the changelog it did not declare: its first
    # journals (written with Faust's send_soon, which partitions at once) go out, and
    # the offsets they complete are committed.
    now = datetime.now(TZ)
    cluster.publish([event("case_filed", d, f"case-r{i}", now,
                           {"category": "theft", "severity": "minor"})
                     for i, d in enumerate(DISTRICTS * 4)])
    wait_for(lambda: sample(w.metrics(), "watchfloor_cases_filed_total", district="erqi") == 4,
             what="the events after the restart counted")
    cluster.wait_committed(["incidents"])
    assert w.alive(), w.log_tail()
    second = w.log_path.read_text(errors="replace")[len(first):]
    assert "==== start 2 ====" in second and "Worker ready" in second
    assert "Creating topic" not in second, second

"""Bulletins on the real broker: the seed scenarios' monthly bulletins, frozen and recomputable."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from streams.bulletins import recompute
from streams.simulator.files import load_expected, read_records, scenario_file
from streams.simulator.produce import produce_records

from .harness import Cluster, WorkerProcess, event, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]

TZ = ZoneInfo("Asia/Shanghai")
MONTHS = ("2025-04", "2025-05", "2025-06")
WEIGHTS = {"rectification_rate": Fraction(4, 10), "clearance_rate": Fraction(3, 10),
           "dispute_resolution_rate": Fraction(3, 10)}
SCENARIOS = ("city-management-2025q2", "cases-2025-jan-sep", "disputes-2025")


def month_of(text: str) -> str:
    return datetime.fromisoformat(text).astimezone(TZ).strftime("%Y-%m")


def cohorts(name: str) -> dict[str, dict[str, tuple[int, int]]]:
    """From the scenario's own records: per month, (opened, closed by the end) of its
    cohort measure. Hazards found/rectified, cases filed/cleared, disputes
    reported/resolved (an escalated dispute is not resolved)."""
    opened: dict[str, tuple[str, str]] = {}
    closed: set[tuple[str, str]] = set()
    pairs = {"hazard.found": ("h", True), "hazard.rectified": ("h", False),
             "incident.case_filed": ("c", True), "incident.case_cleared": ("c", False),
             "dispute.reported": ("d", True), "dispute.resolved": ("d", False)}
    for rec in read_records(scenario_file(name)):
        doc = orjson.loads(rec.value)
        kind = ".".join(doc["type"].split(".")[1:3])
        if kind not in pairs:
            continue
        group, opening = pairs[kind]
        if opening:
            opened[(group, doc["subject"])] = (group, month_of(doc["time"]))
        else:
            closed.add((group, doc["subject"]))
    out: dict[str, dict[str, tuple[int, int]]] = {}
    totals: Counter[tuple[str, str]] = Counter()
    done: Counter[tuple[str, str]] = Counter()
    for key, (group, month) in opened.items():
        totals[(group, month)] += 1
        done[(group, month)] += key in closed
    for (group, month), n in totals.items():
        out.setdefault(group, {})[month] = (n, done[(group, month)])
    return out


@pytest.fixture(scope="module")
def seeded(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Cluster, WorkerProcess]]:
    """One worker that has counted the three seed scenarios (each its own district)."""
    cluster = Cluster(kafka_bootstrap)
    cluster.create_topics()
    worker = WorkerProcess(cluster, tmp_path_factory.mktemp("bulletins"), "b1",
                           WATCHFLOOR_BULLETIN_START_DELAY_SECONDS="3600").start()
    try:
        worker.wait_ready()
        records = [r for name in SCENARIOS for r in read_records(scenario_file(name))]
        summary = asyncio.run(produce_records(records, cluster.settings()))
        assert summary.delivered == len(records)

        wait_for(lambda: processed(worker) == len(records), timeout=120,
                 what="the seed scenarios counted")
        yield cluster, worker
    finally:
        worker.stop()


def post(worker: WorkerProcess, key: str) -> tuple[int, Any]:
    return worker.post(f"/api/v1/bulletins/{key}", b"", timeout=180)


def test_monthly_bulletins_of_the_seed_scenarios(seeded: tuple[Cluster, WorkerProcess]) -> None:
    cluster, worker = seeded
    truth = cohorts("city-management-2025q2")["h"]
    cases = cohorts("cases-2025-jan-sep")["c"]
    disputes = cohorts("disputes-2025")["d"]
    exp = load_expected("city-management-2025q2")
    previous: dict[str, int] | None = None
    for month, golden in zip(MONTHS, exp["months"], strict=True):
        status, b = post(worker, month)
        assert status == 201, b
        assert (b["kind"], b["key"]) == ("monthly", month)
        assert b["cut_off"] == f"{month[:5]}{int(month[5:]) + 1:02d}-01T08:00:00+08:00"
        by = {s["district"]: s for s in b["districts"]}
        assert set(by) == set(load_reference_codes())
        jin = by["jinshui"]["figures"]
        assert (jin["hazards_found"], jin["hazards_rectified"]) == truth[month]
        assert Fraction(jin["hazards_rectified"], jin["hazards_found"]) == Fraction(
            golden["rectification_rate"])
        assert round(jin["rectification_rate"] * 100, 1) == golden["rectification_rate_percent"]
        assert jin["hazards_not_rectified"] == golden["not_rectified"]
        erqi = by["erqi"]["figures"]
        assert (erqi["cases_filed"], erqi["cases_cleared"]) == cases[month]
        zy = by["zhongyuan"]["figures"]
        assert (zy["disputes_reported"], zy["disputes_resolved"]) == disputes.get(month, (0, 0))

        # The ranking the figures imply, by the published formula computed here.
        want: dict[str, Fraction] = {}
        parts = {"jinshui": {"rectification_rate": truth[month]},
                 "erqi": {"clearance_rate": cases[month]},
                 "zhongyuan": {"dispute_resolution_rate": disputes.get(month, (0, 0))}}
        for d, rates in parts.items():
            num = den = Fraction(0)
            for rate, (n, k) in rates.items():
                if n:
                    num += WEIGHTS[rate] * Fraction(k, n)
                    den += WEIGHTS[rate]
            if den:
                want[d] = 100 * num / den
        order = sorted(want, key=lambda d: (-want[d], d))
        assert [r["district"] for r in b["ranking"]] == order
        for r in b["ranking"]:
            assert r["score"] == round(float(want[r["district"]]), 2)
            prev = None if previous is None else previous.get(r["district"])
            assert (r["previous_rank"], r["movement"]) == (
                prev, None if prev is None else prev - r["rank"])
        n = min(3, len(order) // 2)
        assert b["leaders"] == order[:n] and b["laggards"] == order[::-1][:n]
        # Overdue at the cut-off, from the deadlines the scenario gave (none rectified since).
        assert by["jinshui"]["overdue_hazards"] <= by["jinshui"]["open_hazards"]
        previous = {r["district"]: r["rank"] for r in b["ranking"]}
        print(f"{month}: " + ", ".join(
            f"{r['rank']}. {r['district']} {r['score']}" for r in b["ranking"]))

    # Published once: asking again answers the stored bulletin, and the topic holds one
    # record per period.
    status, again = post(worker, MONTHS[0])
    assert status == 200 and again["key"] == MONTHS[0]
    keys = Counter(r.key.decode() for r in read_topic(cluster))
    assert keys == Counter(MONTHS)

    # Every format, with the ranking in it.
    for fmt in ("html", "md", "csv"):
        status, text = worker.get(f"/api/v1/bulletins/2025-04?format={fmt}&lang=zh")
        assert status == 200 and "金水区" in text, (fmt, text[:200])
    status, text = worker.get("/api/v1/bulletins/2025-04?format=md&lang=en")
    assert "Jinshui District" in text and "94.6 %" in text

    # The worker goes on counting after publishing (its state writes still find their
    # topic: the bulletins are written with a producer of their own).
    before = processed(worker)
    now = datetime.now(TZ)
    cluster.publish([event("case_filed", "huiji", f"after-cut-{i}", now,
                           {"category": "theft", "severity": "minor"}) for i in range(5)])
    wait_for(lambda: processed(worker) == before + 5, timeout=30,
             what="records counted after the cuts")
    assert worker.alive()

    # Recomputed from the recorded offsets: the same bytes.
    for month in MONTHS:
        result = asyncio.run(recompute(cluster.settings(), month))
        assert result.differences == []
        assert result.same, month
    # The same from the command line, and the Markdown for a messaging group.
    env = {**os.environ, **cluster.env()}
    done = subprocess.run([sys.executable, "-m", "streams.cli", "bulletin", "recompute",
                           "2025-05"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "the same" in done.stdout, done.stderr
    done = subprocess.run([sys.executable, "-m", "streams.cli", "bulletin", "show", "2025-06",
                           "--lang", "en"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "| 1 | Jinshui District | 88.10 |" in done.stdout


def processed(worker: WorkerProcess) -> float:
    return sum(v for (name, _), v in worker.metrics().items()
               if name == "watchfloor_events_processed_total")


def load_reference_codes() -> list[str]:
    from streams.reference import load_reference
    from streams.settings import Settings

    return sorted(load_reference(Settings().reference_file).districts)


def read_topic(cluster: Cluster) -> list[Any]:
    """Every record of the cluster's bulletins topic."""
    from kafka import KafkaConsumer, TopicPartition

    name = cluster.settings().topic_bulletins
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=1000)
    tp = TopicPartition(name, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    end = consumer.end_offsets([tp])[tp]
    out: list[Any] = []
    while consumer.position(tp) < end:
        for batch in consumer.poll(timeout_ms=500).values():
            out.extend(batch)
    consumer.close()
    return out


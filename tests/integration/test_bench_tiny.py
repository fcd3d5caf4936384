"""The benchmark (issues #7 and #16) at a tiny size against the session broker, so it cannot rot.

It runs every part once (limit, naive, peer, kstreams, the real worker, scrapes, restarts,
a short latency phase, a short "high rate" phase produced in two passes of one pool, and
the RSS plateau over 900 days of event time for 10 districts) on 2,000 simulator records
for 20 districts and asserts that each part completes and counts exactly; neither speed
nor the plateau's verdict is asserted.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.benchmarks import kstreams_run
from tests.conftest import need

EVENTS = 2000
DISTRICTS = 20


@pytest.mark.broker
@pytest.mark.slow
def test_tiny_benchmark_completes_with_exact_counts(kafka_bootstrap: str, tmp_path: Path) -> None:
    need(
        importlib.util.find_spec("quixstreams") is not None,
        "quixstreams is not installed (pip install -e '.[bench]')",
    )
    # The Kafka Streams peer is built with Maven and runs on Java 17 (the broker's needs).
    missing = kstreams_run.missing_tools()
    need(missing is None, str(missing))
    from tests.benchmarks import bench

    out = tmp_path / "bench.json"
    code = bench.main(
        [
            "--bootstrap", kafka_bootstrap,
            "--events", str(EVENTS),
            "--districts", str(DISTRICTS),
            # 2 % of each kind of bad record: with 2,000 records, every kind (and some
            # undecodable ones) is there whatever hour the simulation starts at.
            "--malformed-share", "0.02",
            "--repeat", "1",
            "--naive-seconds", "45",
            "--rate", "400",
            "--latency-seconds", "3",
            # Two passes of a pool of 1,000 records: the second with ids of its own.
            "--high-rate", "1000",
            "--high-seconds", "2",
            "--high-pool-seconds", "1",
            # Past both edges (7 and 800 days) in about 15 s.
            "--plateau-districts", "10",
            "--plateau-days", "900",
            "--plateau-density", "4",
            "--plateau-speed", "60",
            "--scrapes", "3",
            "--work-dir", str(tmp_path / "work"),
            "--json", str(out),
            "--gc-log",
            # A killed worker's partitions move after the session timeout; keep it short.
            "--worker-env", "WATCHFLOOR_SESSION_TIMEOUT=6",
        ]
    )  # fmt: skip
    report = json.loads(out.read_text())

    intents = report["dataset"]["intents"]
    assert sum(intents.values()) == EVENTS
    # All four kinds of record are in the data, so every check below has something to do.
    assert all(intents[k] > 0 for k in ("valid", "duplicate", "late", "malformed")), intents

    for impl in ("limit", "naive", "peer", "kstreams", "watchfloor"):
        (run,) = report["runs"][impl]
        assert run["complete"], f"{impl} did not read everything"
        assert run["events"] == EVENTS, impl
        assert run["exact"], f"{impl}: {run.get('problems') or run.get('figures')}"
        assert run["events_per_second"] > 0
    # The job counts valid and late records (it has no lateness) and nothing else.
    for impl in ("naive", "peer", "kstreams"):
        assert report["runs"][impl][0]["truth_counted"] == intents["valid"] + intents["late"]
    # Kafka Streams kept its state in changelogged stores (their records are checked in
    # bench.evaluate: the seen-* changelogs hold one record per event counted).
    logged = report["runs"]["kstreams"][0]["kstreams"]["changelog_records"]
    assert len(logged) == 6 and all(n > 0 for n in logged.values()), logged
    assert report["runs"]["limit"][0]["truth_counted"] < EVENTS  # undecodable ones exist

    wf = report["watchfloor"]
    # Every district of the city is exported, the latency markers' district included.
    assert report["runs"]["watchfloor"][0]["figures"]["districts_exported"] == DISTRICTS + 1
    # The worker ran under the GC logger; its pauses were summed over the catch-up.
    assert "seconds_total" in report["runs"]["watchfloor"][0]["gc"]
    assert {r["how"] for r in wf["restarts"]} == {"term", "kill"}
    for r in wf["restarts"]:
        assert r["districts"] == DISTRICTS + 1  # the latency markers' district too
        assert r["ready_seconds"] <= r["correct_seconds"]
    assert wf["scrape"]["count"] == 3 and wf["scrape"]["series"] > DISTRICTS
    phase, high = wf["latency"]
    for ph in (phase, high):
        assert ph["markers_sent"] > 0
        assert ph["markers_seen"] == ph["markers_sent"]
        assert ph["exact"], ph["figures"]
    assert phase["produced"]["records"] == 400 * 3
    # Had the second pass kept the first one's ids, its records would be duplicates and
    # the figures (truth: the pool's intents twice) would not be exact.
    assert (high["passes"], high["pool_records"]) == (2, 1000)
    assert high["produced"]["records"] == 2000 and high["target_p99_seconds"] == 1.0

    pl = report["plateau"]
    assert pl["exact"], pl["figures"]
    assert pl["records"] == sum(pl["intents"].values()) > 0
    assert all(pl["intents"][k] > 0 for k in ("valid", "duplicate", "late")), pl["intents"]
    # The worker's event time went past the 800-day retention and was sampled there.
    assert max(day for _, day, _ in pl["samples"]) > 807
    # At 60 days a second the first sample may come after day 7; the edges' must be there.
    points = pl["checkpoints"]
    assert points["day 807 (after the 800-day retention)"]["event_day"] >= 807, points
    assert points["end"]["event_day"] > 899, points
    assert pl["verdict"] in {"flat", "growing"} and pl["trend_after_edges"]["samples"] >= 3
    assert {t["met"] for t in report["targets"]} <= {"yes", "NO", "-"}
    assert code == 0

"""Kill a worker with SIGKILL mid-stream three times: the final figures still equal the truth."""

from __future__ import annotations

import random
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from .harness import Cluster, Truth, WorkerProcess, sample, scripted_stream, wait_for

TZ = ZoneInfo("Asia/Shanghai")
DISTRICTS = ["jinshui", "erqi", "zhongyuan", "guancheng", "huiji", "gaoxin", "jingkai",
             "xinzheng"]


def counted_total(w: WorkerProcess) -> float:
    m = w.metrics()
    names = ("cases_filed", "cases_cleared", "hazards_found", "hazards_rectified",
             "disputes_reported", "disputes_resolved", "patrols_completed")
    return sum(
        v for (name, _), v in m.items()
        if name in {f"watchfloor_{n}_total" for n in names}
    )


def assert_figures(w: WorkerProcess, truth: Truth) -> None:
    m = w.metrics()
    for d in DISTRICTS:
        got = {
            "filed": sample(m, "watchfloor_cases_filed_total", district=d),
            "cleared": sample(m, "watchfloor_cases_cleared_total", district=d),
            "found": sample(m, "watchfloor_hazards_found_total", district=d),
            "rectified": sample(m, "watchfloor_hazards_rectified_total", district=d),
            "reported": sample(m, "watchfloor_disputes_reported_total", district=d),
            "resolved": sample(m, "watchfloor_disputes_resolved_total", district=d),
            "patrols": sample(m, "watchfloor_patrols_completed_total", district=d),
            "open_cases": sample(m, "watchfloor_open_cases", district=d),
            "open_hazards": sample(m, "watchfloor_open_hazards", district=d),
            "duplicates": sample(m, "watchfloor_duplicate_events_total", district=d),
            "24h_found": sample(m, "watchfloor_rolling_hazards_found", district=d, window="24h"),
        }
        want = {
            "filed": truth.filed[d], "cleared": truth.cleared[d], "found": truth.found[d],
            "rectified": truth.rectified[d], "reported": truth.reported[d],
            "resolved": truth.resolved[d], "patrols": truth.patrols[d],
            "open_cases": truth.open_cases(d), "open_hazards": truth.open_hazards(d),
            "duplicates": truth.duplicates[d], "24h_found": truth.found[d],
        }
        assert got == want, f"district {d}"


@pytest.mark.slow
def test_three_sigkills_lose_nothing_and_count_nothing_twice(
    cluster: Cluster, workers
) -> None:
    rng = random.Random(20261128)
    docs, truth = scripted_stream(DISTRICTS, per_district=4000, now=datetime.now(TZ))
    chunks = [docs[i::4] for i in range(4)]
    # Keep each district's events in time order inside a chunk; chunks interleave.
    chunks = [sorted(c, key=lambda d: d["time"]) for c in chunks]
    cluster.publish(chunks[0])
    w = workers()
    kills = 0
    for chunk in chunks[1:]:
        w.wait_ready()
        # Somewhere in the middle of the work: counting, writing state, or committing.
        time.sleep(rng.uniform(0.2, 2.0))
        cluster.publish(chunk[: len(chunk) // 2])
        time.sleep(rng.uniform(0.0, 1.0))
        w.kill()
        kills += 1
        cluster.publish(chunk[len(chunk) // 2 :])
        w.start()
    assert kills == 3
    w.wait_ready()
    expected = truth.total()
    wait_for(lambda: counted_total(w) >= expected, timeout=120, what=f"{expected} counted")
    time.sleep(3)  # anything counted twice would show up now
    assert counted_total(w) == expected
    assert_figures(w, truth)

    # Every duplicate is in the dead-letter topic; a dead letter may be written twice
    # across a crash, but never lost, so count distinct source coordinates.
    letters = cluster.read_all("deadletter")
    coords = {
        (dict(r.headers)["wf-source-topic"], dict(r.headers)["wf-source-partition"],
         dict(r.headers)["wf-source-offset"])
        for r in letters if dict(r.headers)["wf-reason"] == b"duplicate"
    }
    assert len(coords) == sum(truth.duplicates.values())


@pytest.mark.slow
@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_restart_serves_the_same_figures(cluster: Cluster, workers, store: str) -> None:
    """A restart rebuilds the state, figure for figure: from the changelog (memory
    store) or from the local RocksDB files plus the changelog's tail (rocksdb store)."""
    docs, truth = scripted_stream(DISTRICTS[:4], per_district=1500, now=datetime.now(TZ),
                                  seed=5)
    cluster.publish(docs)
    w = workers(WATCHFLOOR_STORE=store)
    w.wait_ready()
    wait_for(lambda: counted_total(w) >= truth.total(), what="everything counted")
    before = w.get("/api/v1/districts/jinshui")[1]
    assert w.stop() == 0, "SIGTERM must stop the worker cleanly"
    # More events while it is down, so the restart must also catch up.
    late_docs, late_truth = scripted_stream(["jinshui"], per_district=200,
                                            now=datetime.now(TZ), seed=6, tag="-later")
    cluster.publish(late_docs)
    w.start()
    took = w.wait_ready()
    wait_for(lambda: counted_total(w) >= truth.total() + late_truth.total(),
             what="the events sent while down counted")
    after = w.get("/api/v1/districts/jinshui")[1]
    grew = {k: after["rolling"]["28d"][k] - before["rolling"]["28d"][k]
            for k in ("cases_filed", "hazards_found", "patrols_completed")}
    assert grew == {"cases_filed": late_truth.filed["jinshui"],
                    "hazards_found": late_truth.found["jinshui"],
                    "patrols_completed": late_truth.patrols["jinshui"]}
    assert counted_total(w) == truth.total() + late_truth.total()
    # Rolling windows end at the current 5-minute slot: compare two reads only when no
    # slot boundary passed between them (on a slow machine a restart can take 30 s); a
    # boundary passes at most once in 300 s, so the second try is in one slot.
    for _ in range(2):
        slot = time.time() // 300
        after = w.get("/api/v1/districts/jinshui")[1]
        w.stop()
        w.start()
        w.wait_ready()
        again = w.get("/api/v1/districts/jinshui")[1]
        if time.time() // 300 == slot:
            break
    assert again["rolling"] == after["rolling"]
    # Ages move with the clock; everything else must be identical.
    clocked = {"hours_since_last_patrol", "oldest_open_dispute_age_seconds"}
    assert {k: v for k, v in again["current"].items() if k not in clocked} == {
        k: v for k, v in after["current"].items() if k not in clocked
    }
    assert again["open_hazards"] == after["open_hazards"]
    assert took < 30

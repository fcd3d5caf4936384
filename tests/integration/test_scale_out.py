"""Three workers share the partitions; after every rebalance each district is exported once."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from .harness import Cluster, Truth, WorkerProcess, scripted_stream, wait_for

TZ = ZoneInfo("Asia/Shanghai")
DISTRICTS = ["jinshui", "erqi", "zhongyuan", "guancheng", "huiji", "gaoxin", "jingkai",
             "xinzheng", "qingshan", "baihe"]


def exported(workers: list[WorkerProcess]) -> dict[str, list[tuple[str, float]]]:
    """district -> [(worker, filed_total)] over the running workers' /metrics."""
    out: dict[str, list[tuple[str, float]]] = {}
    for w in workers:
        if not w.alive():
            continue
        for (name, labels), value in w.metrics().items():
            if name == "watchfloor_cases_filed_total":
                out.setdefault(dict(labels)["district"], []).append((w.name, value))
    return out


def settled(workers: list[WorkerProcess], truth: Truth) -> bool:
    """Every district exported by exactly one worker, with the true count."""
    if not all(w.get("/ready")[0] == 200 for w in workers if w.alive()):
        return False
    ex = exported(workers)
    return set(ex) == set(DISTRICTS) and all(
        len(v) == 1 and v[0][1] == truth.filed[d] for d, v in ex.items()
    )


@pytest.mark.slow
def test_three_workers_leave_and_join(cluster: Cluster, workers) -> None:
    now = datetime.now(TZ)
    docs, truth = scripted_stream(DISTRICTS, per_district=600, now=now, seed=3)
    thirds = [docs[i::3] for i in range(3)]
    cluster.publish(sorted(thirds[0], key=lambda d: d["time"]))
    ws = [workers(f"w{i}") for i in range(1, 4)]
    for w in ws:
        w.wait_ready()
    partial = scripted_truth(thirds[0])
    wait_for(lambda: settled(ws, partial), timeout=120, what="three workers settled")
    owners = {d: v[0][0] for d, v in exported(ws).items()}
    assert len(set(owners.values())) >= 2, "the partitions must be shared"

    # One leaves (clean shutdown); its districts move and are exported once.
    assert ws[1].stop() == 0
    cluster.publish(sorted(thirds[1], key=lambda d: d["time"]))
    partial = scripted_truth(thirds[0] + thirds[1])
    wait_for(lambda: settled(ws, partial), timeout=120, what="two workers settled")
    assert not any(w == "w2" for v in exported(ws).values() for w, _ in v)

    # It joins again; the rest of the stream arrives meanwhile.
    ws[1].start()
    cluster.publish(sorted(thirds[2], key=lambda d: d["time"]))
    wait_for(lambda: settled(ws, truth), timeout=120, what="three workers settled again")

    # Any worker answers for any district, routed to the owner, with the owner's figures.
    for w in ws:
        for d in ("jinshui", "baihe"):
            status, body = w.get(f"/api/v1/districts/{d}")
            assert status == 200, body
            assert body["district"] == d
            assert body["current"]["open_cases"] == truth.open_cases(d)
        status, body = w.get("/api/v1/districts")
        assert status == 200 and "incomplete" not in body
        assert [x["district"] for x in body["districts"]] == sorted(DISTRICTS)
        assert sum(x["rolling"]["24h"]["cases_filed"] for x in body["districts"]) == sum(
            truth.filed.values()
        )


def scripted_truth(docs: list[dict]) -> Truth:
    """The filed-case truth of a part of a scripted stream (repeats carry the same id)."""
    t = Truth()
    seen: set[str] = set()
    for doc in docs:
        if doc["type"].endswith("case_filed.v1") and doc["id"] not in seen:
            t.filed[doc["district"]] += 1
        seen.add(doc["id"])
    return t

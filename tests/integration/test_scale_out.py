"""Three workers share the partitions; after every rebalance each district is exported once."""

from __future__ import annotations

import time
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


class Settled:
    """Every district exported by exactly one worker, with the true count.

    Falsy with a description of what is still off, so a timeout says why.
    """

    def __init__(self, workers: list[WorkerProcess], truth: Truth) -> None:
        self.why: list[str] = []
        not_ready = [w.name for w in workers if w.alive() and w.get("/ready")[0] != 200]
        if not_ready:
            self.why.append(f"not ready: {not_ready}")
            return
        ex = exported(workers)
        for d in DISTRICTS:
            got = ex.get(d, [])
            if len(got) != 1 or got[0][1] != truth.filed[d]:
                self.why.append(f"{d}: want {truth.filed[d]}, exported {got}")

    def __bool__(self) -> bool:
        return not self.why

    def __repr__(self) -> str:
        return "; ".join(self.why) or "settled"


def wait_settled(workers: list[WorkerProcess], truth: Truth, what: str) -> None:
    try:
        wait_for(lambda: Settled(workers, truth), timeout=120, what=what)
    except AssertionError as err:
        for w in workers:
            w.dump_tasks()
        time.sleep(2)
        # The digest comes last: a CI report keeps the end of a long failure.
        logs = "\n".join(f"---- {w.name} ----\n{w.digest()}" for w in workers)
        raise AssertionError(f"{err}\n{logs}") from None


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
    wait_settled(ws, partial, "three workers settled")
    owners = {d: v[0][0] for d, v in exported(ws).items()}
    assert len(set(owners.values())) >= 2, "the partitions must be shared"

    # One leaves (clean shutdown); its districts move and are exported once.
    assert ws[1].stop() == 0
    cluster.publish(sorted(thirds[1], key=lambda d: d["time"]))
    partial = scripted_truth(thirds[0] + thirds[1])
    wait_settled(ws, partial, "two workers settled")
    assert not any(w == "w2" for v in exported(ws).values() for w, _ in v)

    # It joins again; the rest of the stream arrives meanwhile.
    ws[1].start()
    cluster.publish(sorted(thirds[2], key=lambda d: d["time"]))
    wait_settled(ws, truth, "three workers settled again")

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


@pytest.mark.slow
def test_counts_stay_exact_through_rebalances_under_load(cluster: Cluster, workers) -> None:
    # Records arrive while workers come and go, so fetches are in flight at every
    # rebalance and every seek that follows it. Counting any of them out of order (or
    # not at all) shows as a district short of its true figure at the end.
    now = datetime.now(TZ)
    docs, truth = scripted_stream(DISTRICTS, per_district=600, now=now, seed=11)
    slices = [sorted(docs[i::10], key=lambda d: d["time"]) for i in range(10)]
    w1, w2, w3 = workers("w1"), workers("w2"), workers("w3")
    w1.wait_ready()
    for n, part in enumerate(slices):
        cluster.publish(part)
        w = w2 if n % 4 < 2 else w3
        if n % 2 == 0:
            w.stop()
        else:
            w.start()
    w2.wait_ready()
    w3.wait_ready()
    wait_settled([w1, w2, w3], truth, "three workers settled after the churn")


def scripted_truth(docs: list[dict]) -> Truth:
    """The filed-case truth of a part of a scripted stream (repeats carry the same id)."""
    t = Truth()
    seen: set[str] = set()
    for doc in docs:
        if doc["type"].endswith("case_filed.v1") and doc["id"] not in seen:
            t.filed[doc["district"]] += 1
        seen.add(doc["id"])
    return t

"""Three workers come and go: the overdue list is never duplicated, complete when it says so,
and every period's bulletin is published exactly once and recomputes to the same bytes."""

from __future__ import annotations

import asyncio
import http.client
import random
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from streams.bulletin import due, parse_cutoff
from streams.bulletins import recompute

from .harness import Cluster, WorkerProcess, event, wait_for
from .test_bulletins import read_topic

pytestmark = [pytest.mark.broker, pytest.mark.slow]

TZ = ZoneInfo("Asia/Shanghai")
DISTRICTS = ["jinshui", "erqi", "zhongyuan", "guancheng", "huiji", "gaoxin", "jingkai",
             "xinzheng", "qingshan", "baihe"]
ENV = {"WATCHFLOOR_BULLETIN_START_DELAY_SECONDS": "1"}


def hazards(now: datetime) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Per district: 24 hazards found over ten days, due two days later, every fourth
    rectified the next day; 3 found yesterday and due in five days. Returns the events
    (time order per district) and the overdue ones now, by subject."""
    rng = random.Random(5)
    docs: list[dict[str, Any]] = []
    overdue: dict[str, dict[str, Any]] = {}
    for d in DISTRICTS:
        mine: list[tuple[datetime, dict[str, Any]]] = []
        for i in range(27):
            found = now - timedelta(days=10) + timedelta(hours=5 * i + rng.random())
            if i >= 24:
                found = now - timedelta(days=1, hours=i)
            deadline = found + (timedelta(days=5) if i >= 24 else timedelta(days=2))
            sid = f"{d}-hz-{i}"
            unit = f"{d}-{('fire-brigade', 'work-safety-bureau', 'housing-bureau')[i % 3]}"
            data = {"category": ("fire", "gas", "construction")[i % 3], "major": i % 5 == 0,
                    "deadline": deadline.isoformat(), "responsible_unit": unit,
                    "community": f"{d}-s1-c0{1 + i % 2}"}
            mine.append((found, event("hazard_found", d, sid, found, data)))
            if i % 4 == 0 and i < 24:
                mine.append((found + timedelta(days=1),
                             event("hazard_rectified", d, sid, found + timedelta(days=1))))
            elif deadline < now:
                overdue[sid] = {"district": d, "deadline": deadline, "major": i % 5 == 0,
                                "unit": unit}
        # A case and a dispute too, for the bulletin's other figures. (Partitions that never
        # had a record remain: the forward topic's, which streams/consumer.py's livelock
        # guard keeps from crashing a worker during the churn below.)
        t = now - timedelta(days=2)
        mine.append((t, event("case_filed", d, f"{d}-case", t,
                              {"category": "theft", "severity": "minor"})))
        mine.append((t, event("dispute_reported", d, f"{d}-dp", t,
                              {"category": "neighbourhood", "responsible_unit": f"{d}-med"})))
        docs += [doc for _, doc in sorted(mine, key=lambda p: p[0])]
    return docs, overdue


def full_list(w: WorkerProcess, limit: int, query: str = "") -> tuple[list[dict[str, Any]],
                                                                        bool]:
    """Every page of the overdue list from one worker; (items, complete on every page)."""
    items: list[dict[str, Any]] = []
    complete = True
    cursor = ""
    for _ in range(200):
        status, body = w.get(f"/api/v1/overdue?limit={limit}{query}"
                             + (f"&cursor={cursor}" if cursor else ""))
        if status != 200:
            return items, False
        complete &= "incomplete" not in body
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            break
    return items, complete


def coverage(ws: list[WorkerProcess]) -> dict[str, Any]:
    """Which districts each live worker answers for, and how many overdue items of each."""
    out: dict[str, Any] = {}
    for w in ws:
        if w.alive():
            status, body = w.get("/api/v1/overdue?limit=1000&scope=local", timeout=15)
            out[w.name] = (dict(Counter(it["district"] for it in body["items"])),
                           body["districts"]) if status == 200 else status
    return out


def test_overdue_list_and_bulletins_while_workers_come_and_go(
    cluster: Cluster, workers: Any
) -> None:
    now = datetime.now(TZ)
    docs, truth = hazards(now)
    cluster.publish(docs)
    ws = [workers(f"w{i}", **ENV) for i in range(1, 4)]
    for w in ws:
        w.wait_ready()
    want_order = sorted(truth, key=lambda s: (truth[s]["deadline"], truth[s]["district"], s))

    def settled() -> bool:
        for w in ws:
            if w.alive():
                items, complete = full_list(w, 500)
                if not complete or [it["subject"] for it in items] != want_order:
                    return False
        return True

    wait_for(settled, timeout=90, what="every worker lists every overdue hazard")
    # Pages of seven, from each worker, in order; filters any-of.
    for w in ws:
        items, complete = full_list(w, 7)
        assert complete and [it["subject"] for it in items] == want_order
    units = ("jinshui-fire-brigade", "erqi-fire-brigade")
    items, _ = full_list(ws[0], 50, f"&major=true&unit={','.join(units)}")
    assert items and {it["subject"] for it in items} == {
        s for s, t in truth.items() if t["major"] and t["unit"] in units}

    # Churn: while workers leave and join, every answer is free of duplicates and, when
    # it does not say it is incomplete, complete.
    stop = threading.Event()
    seen = Counter[str]()
    problems: list[str] = []
    cuts: list[int] = []

    def poll() -> None:
        while not stop.is_set():
            for w in list(ws):
                if not w.alive():
                    continue
                status, body = w.get("/api/v1/overdue?limit=1000", timeout=15)
                if status != 200:
                    seen["not 200"] += 1
                    continue
                subjects = [it["subject"] for it in body["items"]]
                if len(subjects) != len(set(subjects)):
                    problems.append(f"{w.name}: duplicates {Counter(subjects).most_common(2)}")
                if "incomplete" in body:
                    seen["incomplete"] += 1
                    if not set(subjects) <= set(truth):
                        problems.append(f"{w.name}: unknown items")
                else:
                    seen["complete"] += 1
                    if subjects != want_order:
                        short = Counter(truth[x]["district"] for x in want_order) - Counter(
                            it["district"] for it in body["items"])
                        problems.append(f"{time.strftime('%H:%M:%S')} {w.name}: complete but "
                                        f"{len(subjects)} items, short "
                                        f"{dict(short)}; {coverage(ws)}")
                # Everyone asks for the same period's bulletin at once, now and then.
                if random.random() < 0.2:
                    try:
                        st, _ = w.post("/api/v1/bulletins/2026-01", b"", timeout=150)
                    except (OSError, http.client.HTTPException):
                        st = 0  # the worker went down while answering: churn, not a fault
                    cuts.append(st)
            time.sleep(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        ws[1].stop()
        time.sleep(8)
        ws[1].start()
        ws[2].kill()
        time.sleep(10)
        ws[2].start()
        ws[0].stop()
        time.sleep(4)
        ws[0].start()
        for w in ws:
            w.wait_ready(timeout=120)
        wait_for(settled, timeout=120, what="settled after the churn")
    finally:
        stop.set()
        poller.join(timeout=200)
    print("\n".join(problems))  # whole, with each worker's coverage at the time
    assert not problems, problems[:5]
    assert seen["complete"] > 0, seen
    print(f"overdue answers during churn: {dict(seen)}; cut answers {Counter(cuts)}")

    # Each due period's bulletin, and the one asked for, exactly once in the topic.
    wanted = {p.label for _, p in due(datetime.now(TZ), TZ, parse_cutoff("08:00"))} | {
        "2026-01"}
    keys: Counter[str] = Counter()

    def published() -> bool:
        keys.clear()
        keys.update(r.key.decode() for r in read_topic(cluster))
        return wanted <= set(keys)

    wait_for(published, timeout=120, what=f"bulletins {sorted(wanted)} published")
    assert all(n == 1 for n in keys.values()), keys
    for key in sorted(wanted):
        result = asyncio.run(recompute(cluster.settings(), key))
        assert result.differences == [] and result.same, key
    daily = next(p for kind, p in due(datetime.now(TZ), TZ, parse_cutoff("08:00"))
                 if kind == "daily")
    status, b = ws[0].get(f"/api/v1/bulletins/{daily.label}")
    assert status == 200 and {s["district"] for s in b["districts"]} == set(DISTRICTS)
    found = Counter(doc["district"] for doc in docs if doc["type"].endswith("found.v1")
                    and daily.lo <= datetime.fromisoformat(doc["time"]).timestamp() < daily.hi)
    assert {s["district"]: s["figures"]["hazards_found"] for s in b["districts"]} == {
        d: found[d] for d in DISTRICTS}

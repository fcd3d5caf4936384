"""Figures and dead letters do not depend on fetch sizes, topic interleaving or restarts.

One set of records, three topics, several districts: repeats of the same event, retries
of earlier steps after later ones, events out of order within the grace and past it,
steps before their opening, look-back visits weeks later, and a patrol topic whose event
times run days behind the incident topic. The engine reads them under many schedules —
fetch sizes from 1 to 400 records, the topics interleaved at random, restarts from the
durable state (journals and snapshots) at random points, with the uncommitted tail read
again — and every schedule must end with the same figures and the same dead letters.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
import pytest

from streams.clock import FixedClock
from streams.engine import Engine
from streams.events import Stream
from streams.reference import Reference
from streams.state import DistrictState, Limits
from streams.state_journal import StateStore
from streams.validation import EventValidator
from streams.windows import HOUR_SECONDS
from tests.support import EPOCH, TZ, Record, event

START = EPOCH - timedelta(days=29)
CLOCK = FixedClock(EPOCH + timedelta(days=1))
TOPICS = {"inc": Stream.INCIDENTS, "dis": Stream.DISPUTES, "pat": Stream.PATROLS}
DISTRICTS = ("jinshui", "erqi", "zhongyuan", "gaoxin")
# Short memories, so that forgetting happens inside the 29 days of data and is tested too.
LIMITS = Limits(dedup_horizon=3 * 86400, lifecycle_memory=10 * 86400)
H = timedelta(hours=1)
D = timedelta(days=1)


@dataclass
class Sent:
    topic: str
    arrive: float  # when the publisher sends it: decides the offset order of its topic
    value: bytes


def _doc(kind: str, district: str, subject: str, when: Any, data: dict[str, Any],
         id: str | None = None) -> dict[str, Any]:
    return event(kind, district, subject, when, data,
                 id=id or f"{subject}-{kind}-{when.timestamp():.0f}")


def generate(seed: int, per_district: int = 40) -> dict[str, list[Record]]:
    """The records of each topic, in the order Kafka holds them."""
    rng = random.Random(seed)
    out: list[Sent] = []

    def at(offset: timedelta) -> Any:
        return START + offset

    def emit(topic: str, doc: dict[str, Any], when: Any, lag: timedelta) -> None:
        # Mostly on time; some within the grace out of order; some days late; some twice.
        r = rng.random()
        if r < 0.10:
            delay = timedelta(hours=rng.uniform(1, 20))  # out of order, within the grace
        elif r < 0.16:
            delay = timedelta(days=rng.uniform(2, 6))  # past the grace
        else:
            delay = timedelta(minutes=rng.uniform(0, 30))
        raw = orjson.dumps(doc)
        out.append(Sent(topic, when.timestamp() + (lag + delay).total_seconds(), raw))
        if rng.random() < 0.08:  # the publisher was unsure: the same event again
            out.append(Sent(topic, when.timestamp() + (lag + delay + H).total_seconds(), raw))

    for district in DISTRICTS:
        patrol_lag = 3 * D if district == "erqi" else timedelta(0)  # its patrols run behind
        for i in range(per_district):
            t0 = at(timedelta(hours=rng.uniform(0, 28 * 24)))
            case = f"{district}-c{i}"
            emit("inc", _doc("case_filed", district, case, t0,
                             {"category": rng.choice(["theft", "fight"]), "severity": "minor"}),
                 t0, timedelta(0))
            if rng.random() < 0.6:
                t1 = t0 + timedelta(hours=rng.uniform(1, 200))
                emit("inc", _doc("case_cleared", district, case, t1, {}), t1, timedelta(0))
            dispute = f"{district}-d{i}"
            emit("dis", _doc("dispute_reported", district, dispute, t0 + H,
                             {"category": "neighbourhood", "responsible_unit": "office"}),
                 t0 + H, timedelta(0))
            if rng.random() < 0.5:
                t1 = t0 + timedelta(hours=rng.uniform(2, 100))
                emit("dis", _doc("mediation_started", district, dispute, t1,
                                 {"responsible_unit": "office"}), t1, timedelta(0))
            if rng.random() < 0.6:
                t2 = t0 + timedelta(hours=rng.uniform(100, 300))
                kind = rng.choice(["dispute_resolved", "dispute_resolved", "dispute_escalated"])
                data = {"escalated_to": "city"} if kind == "dispute_escalated" else {}
                emit("dis", _doc(kind, district, dispute, t2, data), t2, timedelta(0))
            patrol = f"{district}-p{i}"
            end = t0 + 2 * H
            emit("pat", _doc("patrol_completed", district, patrol, end,
                             {"team": "t1", "area": "a1", "findings": 1,
                              "started_at": t0.isoformat(), "ended_at": end.isoformat()}),
                 end, patrol_lag)
            hazard = f"{district}-h{i}"
            found_data = {"category": rng.choice(["gas", "fire", "construction"]),
                          "major": rng.random() < 0.2,
                          "deadline": (t0 + timedelta(days=rng.uniform(1, 10))).isoformat(),
                          "responsible_unit": "unit-1", "community": "c-1"}
            emit("pat", _doc("hazard_found", district, hazard, t0, found_data), t0, patrol_lag)
            if rng.random() < 0.7:
                t1 = t0 + timedelta(hours=rng.uniform(2, 240))
                rect = _doc("hazard_rectified", district, hazard, t1, {})
                emit("pat", rect, t1, patrol_lag)
                if rng.random() < 0.5:  # a look-back visit, days or weeks later
                    t2 = t1 + timedelta(days=rng.uniform(2, 30))
                    if rng.random() < 0.4:
                        visit = _doc("hazard_verified", district, hazard, t2, {
                            "result": "not_rectified",
                            "new_deadline": (t2 + timedelta(days=5)).isoformat()})
                    else:
                        visit = _doc("hazard_verified", district, hazard, t2,
                                     {"result": "confirmed"})
                    emit("pat", visit, t2, patrol_lag)
                    if rng.random() < 0.3:  # the earlier rectification retried after it
                        out.append(Sent("pat", t2.timestamp() + 3600, orjson.dumps(rect)))
                    if rng.random() < 0.3:  # a retry with a new id, same step
                        retry = dict(rect, id=rect["id"] + "-retry")
                        out.append(Sent("pat", t2.timestamp() + 7200, orjson.dumps(retry)))
            if rng.random() < 0.05:  # a malformed record now and then
                out.append(Sent(rng.choice(list(TOPICS)), t0.timestamp(), b"{not json"))
    records: dict[str, list[Record]] = {t: [] for t in TOPICS}
    for sent in sorted(out, key=lambda s: s.arrive):
        records[sent.topic].append(
            Record(len(records[sent.topic]), sent.value, key=b"k")
        )
    return records


def new_engine(reference: Reference) -> Engine:
    return Engine(reference=reference, validator=EventValidator(reference, clock=CLOCK),
                  topics=TOPICS, partitions=1, limits=LIMITS, clock=CLOCK, tz=TZ)


def figures(states: dict[str, DistrictState]) -> dict[str, Any]:
    """Everything a reader of the API or /metrics could see, at a fixed time."""
    now = CLOCK.time()
    out: dict[str, Any] = {}
    lo = START.timestamp() - 40 * 86400
    for d, st in sorted(states.items()):
        st.tick(now)
        hours = [
            st.counts(h * HOUR_SECONDS, (h + 1) * HOUR_SECONDS)
            for h in range(int((now - 29 * 86400) // HOUR_SECONDS), int(now // HOUR_SECONDS) + 1)
        ]
        days = [st.counts(t, t + 86400) for t in range(int(lo), int(now) + 86400, 86400)]
        out[d] = {
            "totals": st.totals,
            "rolling": st.buckets.rolling(now),
            "hours": hours,
            "days": days,
            "categories": st.buckets.by_category(lo, now + 86400),
            "open": (st.open_cases, st.open_disputes, st.open_hazards),
            "overdue": sorted(st.overdue),
            "overdue_major": st.overdue_major,
            "open_hazards": sorted(
                (sid, s.deadline, s.round, s.category) for sid, s in st.open_hazard_items()
            ),
            "oldest_dispute": st.oldest_open_dispute(),
            "late_dup": (st.late_total, st.duplicate_total),
            "last_patrol": st.last_patrol_end,
            "watermarks": (st.watermark, list(st.stream_watermarks)),
            # Not shown to a reader, but what a later step finds or starts anew.
            "remembered": [sorted(g) for g in (st.cases, st.disputes, st.hazards, st.accidents)],
            "patrol_runs": st.patrols.by_day(),
        }
    return out


def run(records: dict[str, list[Record]], reference: Reference, schedule: int | None) -> Any:
    """Read every record through the engine; ``schedule`` None reads each topic whole."""
    table: dict[str, bytes] = {}
    engine = new_engine(reference)
    store = StateStore(table, TZ, LIMITS)
    pos = dict.fromkeys(TOPICS, 0)
    committed = dict(pos)
    dead: set[tuple[str, int, str]] = set()
    restarts = 0
    if schedule is None:
        for t in TOPICS:
            res = engine.process([(t, 0, records[t])])
            dead |= {(r.topic, r.offset, r.reason) for r in res.rejections}
            store.write(engine.states, res.journals)
        return figures(engine.states), dead, 0
    rng = random.Random(schedule)
    while any(pos[t] < len(records[t]) for t in TOPICS):
        parts = []
        for t in rng.sample(list(TOPICS), k=rng.randint(1, 3)):
            n = rng.choice([1, 2, 3, 7, 20, 50, 400])
            chunk = records[t][pos[t] : pos[t] + n]
            if chunk:
                parts.append((t, 0, chunk))
        if not parts:
            continue
        res = engine.process(parts)
        dead |= {(r.topic, r.offset, r.reason) for r in res.rejections}
        crash = rng.random() < 0.06
        if crash and rng.random() < 0.5:
            # Killed while writing: some districts' journals reached the changelog.
            written = dict(list(res.journals.items())[: rng.randint(0, len(res.journals))])
            store.write(engine.states, written)
        else:
            store.write(engine.states, res.journals)
        if not crash:
            for t, _, chunk in parts:
                pos[t] = chunk[-1].offset + 1
            if rng.random() < 0.5:
                committed = dict(pos)
            continue
        # Restart: a new process rebuilds the states from the table and reads again from
        # the committed offsets; the evidence skips what the states already hold.
        restarts += 1
        engine = new_engine(reference)
        store = StateStore(table, TZ, LIMITS)
        engine.states = store.load(list(table))
        pos = dict(committed)
    return figures(engine.states), dead, restarts


@pytest.mark.parametrize("snapshot_rows", [None, 8], ids=["journals", "snapshots"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_figures_and_dead_letters_do_not_depend_on_the_schedule(
    seed: int, snapshot_rows: int | None, reference: Reference,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if snapshot_rows is not None:
        # At the default threshold these districts never snapshot, so a restart replays
        # their journals; here they snapshot every few batches, so a restart also goes
        # through what a rebuild derives from a snapshot (memories, open sets, heaps).
        from streams import state_journal

        monkeypatch.setattr(state_journal, "SNAPSHOT_AFTER_ROWS", snapshot_rows)
    records = generate(seed)
    assert sum(map(len, records.values())) > 400
    want, want_dead, _ = run(records, reference, None)
    reasons = {r for _, _, r in want_dead}
    # The data set exercises what it claims to: repeats, late events, malformed records.
    assert {"duplicate", "too_late", "malformed_json"} <= reasons, reasons
    restarts = 0
    for schedule in range(12):
        got, got_dead, n = run(records, reference, seed * 1000 + schedule)
        restarts += n
        assert got_dead == want_dead, f"schedule {schedule}: dead letters differ"
        for d in want:
            assert got[d] == want[d], f"schedule {schedule}: district {d} differs"
    assert restarts >= 5, "the schedules must include restarts"

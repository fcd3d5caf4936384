"""DistrictState: lifecycles, duplicates, late events, overdue transitions, rates, expiry."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from streams.events import Event, Kind
from streams.state import DistrictState, Limits, Outcome
from streams.windows import Measure

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 4, 12, 9, 0, tzinfo=TZ).timestamp()  # a fixed epoch
H = 3600.0
D = 86400.0


def ev(kind: Kind, subject: str, ts: float, **kw: object) -> Event:
    return Event(kind=kind, id=f"{subject}-{kind.name}-{ts}", source="/test", district="jinshui",
                 subject=subject, ts=ts, **kw)  # type: ignore[arg-type]


def found(subject: str, ts: float, deadline: float, major: bool = False,
          category: str = "fire") -> Event:
    return ev(Kind.HAZARD_FOUND, subject, ts, category=category, deadline=deadline, major=major)


def rectified(subject: str, ts: float) -> Event:
    return ev(Kind.HAZARD_RECTIFIED, subject, ts)


@pytest.fixture
def st() -> DistrictState:
    return DistrictState("jinshui", TZ)


def count(st: DistrictState, m: Measure, lo: float, hi: float) -> int:
    return st.counts(lo, hi)[m]


def test_case_lifecycle_counts_and_open_cases(st: DistrictState) -> None:
    assert st.apply(ev(Kind.CASE_FILED, "c1", T0, category="theft")) is Outcome.COUNTED
    assert st.apply(ev(Kind.CASE_FILED, "c2", T0 + 60, category="robbery")) is Outcome.COUNTED
    assert st.open_cases == 2
    assert st.apply(ev(Kind.CASE_CLEARED, "c1", T0 + 120)) is Outcome.COUNTED
    assert st.open_cases == 1
    assert count(st, Measure.CASES_FILED, T0, T0 + H) == 2
    assert count(st, Measure.CASES_CLEARED, T0, T0 + H) == 1
    # The cleared case keeps its category from the filing.
    cats = st.buckets.by_category(T0 - D, T0 + D)
    assert cats[Measure.CASES_CLEARED] == {"theft": 1}


def test_repeated_transition_counts_once(st: DistrictState) -> None:
    assert st.apply(ev(Kind.CASE_FILED, "c1", T0, category="theft")) is Outcome.COUNTED
    assert st.apply(ev(Kind.CASE_FILED, "c1", T0 + 5, category="theft")) is Outcome.DUPLICATE
    assert st.apply(ev(Kind.CASE_CLEARED, "c1", T0 + 10)) is Outcome.COUNTED
    assert st.apply(ev(Kind.CASE_CLEARED, "c1", T0 + 20)) is Outcome.DUPLICATE
    assert st.duplicate_total == 2
    assert st.totals[Measure.CASES_FILED] == 1
    assert st.totals[Measure.CASES_CLEARED] == 1
    assert st.open_cases == 0


def test_out_of_order_rectified_before_found(st: DistrictState) -> None:
    assert st.apply(rectified("h1", T0 + 3 * H)) is Outcome.COUNTED
    assert st.open_hazards == 0
    assert st.apply(found("h1", T0, deadline=T0 + D)) is Outcome.COUNTED
    # Found and already rectified: never open, never overdue, and in the cohort.
    assert st.open_hazards == 0
    st.tick(T0 + 2 * D)
    assert st.overdue == {}
    assert count(st, Measure.HAZARDS_FOUND, T0, T0 + H) == 1
    assert count(st, Measure.HAZARDS_FOUND_RECTIFIED, T0, T0 + H) == 1
    assert count(st, Measure.HAZARDS_RECTIFIED, T0 + 3 * H, T0 + 4 * H) == 1
    # A second rectification is a duplicate, not a second count.
    assert st.apply(rectified("h1", T0 + 4 * H)) is Outcome.DUPLICATE


def test_out_of_order_cleared_before_filed(st: DistrictState) -> None:
    assert st.apply(ev(Kind.CASE_CLEARED, "c9", T0 + 60)) is Outcome.COUNTED
    assert st.apply(ev(Kind.CASE_FILED, "c9", T0, category="fight")) is Outcome.COUNTED
    assert st.open_cases == 0
    assert st.totals[Measure.CASES_FILED] == 1
    assert st.totals[Measure.CASES_CLEARED] == 1


def test_dispute_lifecycle_and_oldest_open(st: DistrictState) -> None:
    st.apply(ev(Kind.DISPUTE_REPORTED, "d1", T0, category="unpaid_wages"))
    st.apply(ev(Kind.DISPUTE_REPORTED, "d2", T0 + H, category="neighbourhood"))
    st.apply(ev(Kind.DISPUTE_MEDIATION_STARTED, "d1", T0 + 2 * H))
    assert st.open_disputes == 2
    assert st.oldest_open_dispute() == T0
    st.apply(ev(Kind.DISPUTE_RESOLVED, "d1", T0 + 3 * H))
    assert st.open_disputes == 1
    assert st.oldest_open_dispute() == T0 + H
    st.apply(ev(Kind.DISPUTE_ESCALATED, "d2", T0 + 4 * H))
    assert st.open_disputes == 0
    assert st.oldest_open_dispute() is None
    # Resolved before reported: counted, never open.
    st.apply(ev(Kind.DISPUTE_RESOLVED, "d3", T0 + 5 * H))
    st.apply(ev(Kind.DISPUTE_REPORTED, "d3", T0 + 4 * H, category="school"))
    assert st.open_disputes == 0
    assert st.totals[Measure.DISPUTES_REPORTED] == 3
    assert st.totals[Measure.DISPUTES_RESOLVED] == 2


def test_overdue_at_the_exact_deadline(st: DistrictState) -> None:
    deadline = T0 + 2 * H
    st.apply(found("h1", T0, deadline=deadline, major=True))
    st.apply(found("h2", T0, deadline=deadline + H))
    assert st.tick(deadline) == 0, "at the deadline itself the hazard is not yet overdue"
    assert st.overdue == {}
    assert st.tick(deadline + 0.001) == 1
    assert set(st.overdue) == {"h1"}
    assert st.overdue_major == 1
    st.tick(deadline + H + 1)
    assert set(st.overdue) == {"h1", "h2"}
    # A rectification takes it out of the overdue set at once, no tick needed.
    st.apply(rectified("h1", T0 + 3 * H))
    assert set(st.overdue) == {"h2"}
    assert st.overdue_major == 0
    assert st.open_hazards == 1


def test_overdue_needs_no_further_event(st: DistrictState) -> None:
    st.apply(found("h1", T0, deadline=T0 + 60))
    assert st.next_deadline() == T0 + 60
    # Only the clock moves.
    assert st.tick(T0 + 61) == 1
    assert st.overdue_by_category() == {"fire": 1}


def test_failed_lookback_reopens_with_new_deadline(st: DistrictState) -> None:
    st.apply(found("h1", T0, deadline=T0 + D))
    st.apply(rectified("h1", T0 + H))
    assert count(st, Measure.HAZARDS_FOUND_RECTIFIED, T0, T0 + H) == 1
    new_deadline = T0 + 3 * D
    assert st.apply(ev(Kind.HAZARD_VERIFIED, "h1", T0 + 2 * D, confirmed=False,
                       deadline=new_deadline)) is Outcome.COUNTED
    assert st.open_hazards == 1
    assert count(st, Measure.HAZARDS_FOUND_RECTIFIED, T0, T0 + H) == 0
    st.tick(T0 + 2.5 * D)
    assert st.overdue == {}, "the old deadline no longer applies"
    st.tick(new_deadline + 1)
    assert set(st.overdue) == {"h1"}
    # The second rectification counts again.
    assert st.apply(rectified("h1", T0 + 2 * D + H)) is Outcome.COUNTED
    assert st.overdue == {}
    assert st.totals[Measure.HAZARDS_RECTIFIED] == 2
    assert st.apply(ev(Kind.HAZARD_VERIFIED, "h1", T0 + 2 * D + 2 * H)) is Outcome.COUNTED
    assert st.totals[Measure.HAZARDS_VERIFIED] == 1


def test_too_late_is_counted_apart_and_changes_nothing(st: DistrictState) -> None:
    st.apply(ev(Kind.CASE_FILED, "c1", T0, category="theft"))
    # 24 h grace: 23 h late lands in its own hour.
    assert st.apply(ev(Kind.CASE_FILED, "c2", T0 - 23 * H, category="theft")) is Outcome.COUNTED
    assert count(st, Measure.CASES_FILED, T0 - 23 * H, T0 - 22 * H) == 1
    assert st.apply(ev(Kind.CASE_FILED, "c3", T0 - 25 * H, category="theft")) is Outcome.TOO_LATE
    assert st.late_total == 1
    assert st.totals[Measure.CASES_FILED] == 2
    assert "c3" not in st.cases


def test_grace_is_configurable() -> None:
    st = DistrictState("jinshui", TZ, Limits(grace=H))
    st.apply(ev(Kind.CASE_FILED, "c1", T0, category="theft"))
    assert st.apply(ev(Kind.CASE_FILED, "c2", T0 - 2 * H, category="theft")) is Outcome.TOO_LATE


def test_cohort_rectification_rate_by_found_month(st: DistrictState) -> None:
    april = datetime(2025, 4, 10, tzinfo=TZ).timestamp()
    may = datetime(2025, 5, 10, tzinfo=TZ).timestamp()
    for i in range(10):
        st.apply(found(f"a{i}", april + i, deadline=april + 30 * D))
    for i in range(7):
        st.apply(rectified(f"a{i}", april + D + i))
    apr_lo = datetime(2025, 4, 1, tzinfo=TZ).timestamp()
    may_lo = datetime(2025, 5, 1, tzinfo=TZ).timestamp()
    jun_lo = datetime(2025, 6, 1, tzinfo=TZ).timestamp()

    def rate() -> float:
        c = st.counts(apr_lo, may_lo)
        return c[Measure.HAZARDS_FOUND_RECTIFIED] / c[Measure.HAZARDS_FOUND]

    assert rate() == pytest.approx(0.7)
    # A rectification in May of an April hazard raises April's rate...
    st.apply(rectified("a7", may))
    assert rate() == pytest.approx(0.8)
    # ...while May's flow figure counts it in May.
    assert st.counts(may_lo, jun_lo)[Measure.HAZARDS_RECTIFIED] == 1
    assert st.counts(may_lo, jun_lo)[Measure.HAZARDS_FOUND] == 0


def test_rolling_windows_at_each_resolution(st: DistrictState) -> None:
    now = T0 + 30 * D
    st.apply(ev(Kind.PATROL_COMPLETED, "p-old", now - 20 * D, ended=now - 20 * D))
    st.apply(ev(Kind.PATROL_COMPLETED, "p-week", now - 5 * D, ended=now - 5 * D))
    st.apply(ev(Kind.PATROL_COMPLETED, "p-day", now - 10 * H, ended=now - 10 * H))
    st.apply(ev(Kind.PATROL_COMPLETED, "p-hour", now - 20 * 60, ended=now - 20 * 60))
    got = {label: count(st, Measure.PATROLS_COMPLETED, now - length, now)
           for label, length in {"1h": H, "24h": D, "7d": 7 * D, "28d": 28 * D}.items()}
    assert got == {"1h": 1, "24h": 2, "7d": 3, "28d": 4}
    assert st.last_patrol_end == now - 20 * 60


def test_buckets_expire_but_days_keep_history(st: DistrictState) -> None:
    st.apply(ev(Kind.CASE_FILED, "c1", T0, category="theft"))
    st.apply(ev(Kind.CASE_FILED, "c2", T0 + 60 * D, category="theft"))
    # Slots and hours of the first case are gone, the day remains.
    assert min(st.buckets.slots.buckets()) * 300 >= T0 + 59 * D
    assert min(st.buckets.hours.buckets()) * 3600 >= T0 + 29 * D
    assert count(st, Measure.CASES_FILED, T0 - D, T0 + D) == 1
    assert count(st, Measure.CASES_FILED, T0 - D, T0 + 61 * D) == 2


def test_a_patrol_run_is_forgotten_by_the_hour_and_then_counts_again() -> None:
    # T0 is 09:00 local; the horizon is 7 days of the patrol stream's own time.
    st = DistrictState("jinshui", TZ, Limits(dedup_horizon=7 * D))
    st.apply(ev(Kind.PATROL_COMPLETED, "p1", T0 + 10 * 60))  # 09:10
    st.apply(ev(Kind.PATROL_COMPLETED, "p2", T0 + H + 50 * 60))  # 10:50
    assert st.apply(ev(Kind.PATROL_COMPLETED, "p1", T0 + 20 * 60)) is Outcome.DUPLICATE
    # Seven days and one hour on: the 09:00 hour has passed the horizon, the 10:00 not.
    st.apply(ev(Kind.PATROL_COMPLETED, "p3", T0 + 7 * D + H + 5 * 60))
    st._expire_stream(2)  # the sweep runs every few hours of stream time; here, now
    assert not st.remembers_patrol("p1") and st.remembers_patrol("p2")
    rebuilt = DistrictState.from_snapshot(st.to_snapshot(), TZ, Limits(dedup_horizon=7 * D))
    assert [x.remembers_patrol(p) for x in (st, rebuilt) for p in ("p1", "p2", "p3")] == [
        False, True, True, False, True, True
    ]
    # Forgotten, a repeat of p1 is new (and on time: the grace is a day of the stream);
    # p2 is still a duplicate.
    for x in (st, rebuilt):
        assert x.apply(ev(Kind.PATROL_COMPLETED, "p2", T0 + 7 * D + H)) is Outcome.DUPLICATE
        assert x.apply(ev(Kind.PATROL_COMPLETED, "p1", T0 + 7 * D + H)) is Outcome.COUNTED
        assert x.totals[Measure.PATROLS_COMPLETED] == 4


def test_patrol_runs_of_a_snapshot_of_subject_rows_are_remembered() -> None:
    st = DistrictState("jinshui", TZ, Limits(dedup_horizon=7 * D))
    st.apply(ev(Kind.PATROL_COMPLETED, "p1", T0))
    snap = st.to_snapshot()
    # As snapshots of before patrol runs were kept by key: subject rows
    # [sid, flags, opened, last, ...] and no hours.
    del snap["patrol_hours"]
    snap["patrols"] = [["p1", 2, T0, T0, None, None, False, 0, None, None, None, None, None, None]]
    old = DistrictState.from_snapshot(snap, TZ, Limits(dedup_horizon=7 * D))
    assert old.remembers_patrol("p1") and not old.remembers_patrol("p2")
    assert old.to_snapshot()["patrol_hours"] == st.to_snapshot()["patrol_hours"]
    assert old.apply(ev(Kind.PATROL_COMPLETED, "p1", T0 + 60)) is Outcome.DUPLICATE


def test_buckets_of_streams_days_apart_rebuild_alike() -> None:
    # Incidents read days ahead of patrols, as a catch-up interleaves topics by batch.
    st = DistrictState("jinshui", TZ)
    st.apply(ev(Kind.PATROL_COMPLETED, "p-first", T0))
    st.apply(ev(Kind.CASE_FILED, "c1", T0 + 10 * D, category="theft"))
    for i in range(48):
        st.apply(ev(Kind.PATROL_COMPLETED, f"p{i}", T0 + i * H))
        st.apply(ev(Kind.CASE_FILED, f"c{i + 2}", T0 + 10 * D + (i + 1) * 7 * H,
                    category="theft"))
    patrols_at = T0 + 47 * H
    rebuilt = DistrictState.from_snapshot(st.to_snapshot(), TZ)
    assert rebuilt.buckets.hours.rows() == st.buckets.hours.rows()
    assert rebuilt.buckets.slots.rows() == st.buckets.slots.rows()
    for x in (st, rebuilt):
        x.apply(ev(Kind.PATROL_COMPLETED, "p-next", patrols_at + H))
    assert rebuilt.buckets.hours.rows() == st.buckets.hours.rows()
    assert sum(row[1][Measure.PATROLS_COMPLETED] for row in st.buckets.hours.rows()) == 50


def test_closed_subjects_expire_after_the_horizon() -> None:
    st = DistrictState("jinshui", TZ, Limits(dedup_horizon=7 * D))
    st.apply(ev(Kind.PATROL_COMPLETED, "p1", T0))
    st.apply(ev(Kind.PATROL_COMPLETED, "p2", T0 + 6 * D))
    assert st.remembers_patrol("p1")
    st.apply(ev(Kind.PATROL_COMPLETED, "p3", T0 + 8 * D))
    assert not st.remembers_patrol("p1") and st.remembers_patrol("p2")
    # Open hazards are kept however old they are (within retention).
    st.apply(found("h1", T0 + 8 * D, deadline=T0 + 9 * D))
    st.apply(ev(Kind.PATROL_COMPLETED, "p4", T0 + 40 * D))
    assert "h1" in st.hazards


def test_snapshot_round_trip_keeps_everything(st: DistrictState) -> None:
    st.apply(found("h1", T0, deadline=T0 + H, major=True))
    st.apply(found("h2", T0 + 1, deadline=T0 + 2 * D))
    st.apply(rectified("h2", T0 + 2))
    st.apply(ev(Kind.DISPUTE_REPORTED, "d1", T0, category="school"))
    st.apply(ev(Kind.CASE_FILED, "c1", T0, category="theft"))
    st.apply(ev(Kind.CASE_FILED, "c1", T0, category="theft"))  # duplicate
    st.evidence["t:0"] = 41
    import orjson

    back = DistrictState.from_snapshot(orjson.loads(orjson.dumps(st.to_snapshot())), TZ)
    assert back.to_snapshot() == st.to_snapshot()
    assert back.open_hazards == 1 and back.open_cases == 1 and back.open_disputes == 1
    assert back.duplicate_total == 1
    # Overdue is rebuilt from the open hazards and the clock.
    back.tick(T0 + 2 * H)
    assert set(back.overdue) == {"h1"} and back.overdue_major == 1


def test_lateness_is_judged_per_stream(st: DistrictState) -> None:
    # Incidents were read up to now; a backlog of patrol events from two days ago is
    # not late, because the patrols topic has its own pace.
    st.apply(ev(Kind.CASE_FILED, "c1", T0 + 2 * D, category="theft"))
    assert st.apply(ev(Kind.PATROL_COMPLETED, "p1", T0, ended=T0)) is Outcome.COUNTED
    assert st.apply(found("h1", T0 + 60, deadline=T0 + D)) is Outcome.COUNTED
    # Within one stream the grace still holds.
    assert st.apply(ev(Kind.CASE_FILED, "c0", T0, category="theft")) is Outcome.TOO_LATE


def test_open_dispute_times_follow_every_dispute_step() -> None:
    """The open disputes' report times move with reports, mediations, resolutions,
    escalations, late closings, steps before their report and disputes forgotten past
    the retention; truth: a scan of the disputes a snapshot of the state holds."""
    import random

    from streams.state import ESCALATED, OPENED, RESOLVED

    rng = random.Random(7)
    state = DistrictState("jinshui", TZ, Limits(retention_days=40))
    t = T0
    kinds = [Kind.DISPUTE_REPORTED, Kind.DISPUTE_REPORTED, Kind.DISPUTE_MEDIATION_STARTED,
             Kind.DISPUTE_RESOLVED, Kind.DISPUTE_ESCALATED, Kind.CASE_FILED]  # fmt: skip
    for i in range(1500):
        t += rng.random() * 3 * H
        if rng.random() < 0.005:  # past the retention: open disputes are forgotten
            t += 41 * 86400
        kind = rng.choice(kinds)
        sid = f"c{i}" if kind is Kind.CASE_FILED else f"d{rng.randrange(300)}"
        at = t - 3 * 86400 if rng.random() < 0.1 else t  # late: closings still close
        extra = {"category": "neighbours"} if kind is Kind.DISPUTE_REPORTED else {}
        if kind is Kind.CASE_FILED:
            extra = {"category": "theft"}
        state.apply(Event(kind, f"e{i}", "/t", "jinshui", sid, at, **extra))  # type: ignore[arg-type]
        fresh = DistrictState.from_snapshot(state.to_snapshot(), TZ)
        truth = sorted(
            s.opened
            for s in fresh.disputes.values()
            if s.flags & OPENED and not s.flags & (RESOLVED | ESCALATED) and s.opened is not None
        )
        assert state.open_dispute_times() == truth, i
        assert state.oldest_open_dispute() == (truth[0] if truth else None)
        assert state.open_disputes == len(truth)
    assert 5 < len(truth) < 300

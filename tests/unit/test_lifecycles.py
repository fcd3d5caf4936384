"""Every cell of the lifecycle tables in docs/design.md, and the order of checks."""

from __future__ import annotations

import orjson
import pytest

from streams.events import Event, Kind
from streams.state import DistrictState, Limits, Outcome
from streams.windows import Measure
from tests.support import EPOCH, TZ

T = EPOCH.timestamp()
H = 3600.0
D = 86400.0
M = Measure
C, DUP, LATE, LC = Outcome.COUNTED, Outcome.DUPLICATE, Outcome.TOO_LATE, Outcome.LATE_CLOSED
_serial = iter(range(10**9))


def ev(kind: Kind, subject: str, t: float, id: str | None = None, **kw: object) -> Event:
    """An event with its own identity unless ``id`` names one (a retry of the same event)."""
    ident = id or f"{subject}-{kind.name}-{next(_serial)}"
    return Event(kind=kind, id=ident, source="/t", district="jinshui", subject=subject, ts=t,
                 identity=hash(ident) & 0xFFFFFFFFFFFF or 1, **kw)  # type: ignore[arg-type]


def found(s: str, t: float, deadline: float | None = None, **kw: object) -> Event:
    return ev(Kind.HAZARD_FOUND, s, t, category="gas", deadline=deadline or t + D, **kw)


def rect(s: str, t: float, **kw: object) -> Event:
    return ev(Kind.HAZARD_RECTIFIED, s, t, **kw)


def confirm(s: str, t: float, **kw: object) -> Event:
    return ev(Kind.HAZARD_VERIFIED, s, t, **kw)


def fail(s: str, t: float, deadline: float | None = None, **kw: object) -> Event:
    return ev(Kind.HAZARD_VERIFIED, s, t, confirmed=False, deadline=deadline or t + 2 * D, **kw)


def filed(s: str, t: float) -> Event:
    return ev(Kind.CASE_FILED, s, t, category="theft")


def cleared(s: str, t: float, **kw: object) -> Event:
    return ev(Kind.CASE_CLEARED, s, t, **kw)


def reported(s: str, t: float) -> Event:
    return ev(Kind.DISPUTE_REPORTED, s, t, category="neighbourhood", unit="street-office")


def step(kind: Kind, s: str, t: float) -> Event:
    return ev(kind, s, t)


@pytest.fixture
def st() -> DistrictState:
    return DistrictState("jinshui", TZ)


def run(st: DistrictState, *events: Event) -> list[Outcome]:
    return [st.apply(e) for e in events]


def total(st: DistrictState, m: Measure) -> int:
    return st.totals[m]


def cohort(st: DistrictState, m: Measure, at: float) -> int:
    """The count of measure ``m`` in the local day holding ``at`` (cohorts land there)."""
    day = st.buckets.day_of(at)
    vec = st.buckets.days.get(day)
    return 0 if vec is None else vec[m]


# -- order of checks -----------------------------------------------------------------------


def test_a_repeat_of_the_same_event_is_a_duplicate_whatever_came_between(
    st: DistrictState,
) -> None:
    first = rect("h", T + H)
    assert run(st, found("h", T), first, fail("h", T + 2 * H)) == [C, C, C]
    # The very same rectification (same source and id) again: it does not close the
    # reopened hazard.
    again = rect("h", T + H, id=first.id)
    assert st.apply(again) is DUP
    assert st.open_hazards == 1


def test_the_same_identity_on_another_subject_is_a_duplicate(st: DistrictState) -> None:
    a = filed("c1", T)
    assert st.apply(a) is C
    assert st.apply(ev(Kind.CASE_FILED, "c2", T + 60, id=a.id, category="theft")) is DUP
    assert total(st, M.CASES_FILED) == 1


def test_a_late_repeat_is_a_duplicate_not_too_late(st: DistrictState) -> None:
    a = filed("c1", T)
    run(st, a, filed("c2", T + 2 * D))
    assert st.apply(ev(Kind.CASE_FILED, "c1", T, id=a.id, category="theft")) is DUP
    # A repeated step with a new id, also late: still a repeat.
    assert st.apply(filed("c1", T + 60)) is DUP
    assert (st.duplicate_total, st.late_total) == (2, 0)


def test_identities_are_forgotten_after_the_horizon(st: DistrictState) -> None:
    a = ev(Kind.PATROL_COMPLETED, "p1", T, ended=T)
    st.apply(a)
    st.apply(ev(Kind.PATROL_COMPLETED, "p2", T + 9 * D, ended=T + 9 * D))
    # Both the identity (7 days) and the patrol run (7 days) are forgotten: the same event
    # nine days later is now judged by its time, and it is far too late.
    assert st.apply(ev(Kind.PATROL_COMPLETED, "p1", T, id=a.id, ended=T)) is LATE


def test_late_opening_changes_nothing(st: DistrictState) -> None:
    run(st, found("h0", T + 3 * D))
    assert st.apply(found("h1", T)) is LATE
    assert "h1" not in st.hazards and st.open_hazards == 1 and st.late_total == 1


# -- cases -------------------------------------------------------------------------------


def test_case_filed_unknown_opens(st: DistrictState) -> None:
    assert st.apply(filed("c", T)) is C
    assert (st.open_cases, total(st, M.CASES_FILED)) == (1, 1)


def test_case_filed_after_clearance_is_never_open_and_joins_the_cohort(st: DistrictState) -> None:
    assert run(st, cleared("c", T + H), filed("c", T)) == [C, C]
    assert st.open_cases == 0
    assert cohort(st, M.CASES_FILED_CLEARED, T) == 1
    # The clearance was counted before the filing told its category: filed under it now.
    cats = st.buckets.by_category(T - D, T + D)
    assert cats[M.CASES_CLEARED] == {"theft": 1}


def test_case_filed_twice_is_a_duplicate(st: DistrictState) -> None:
    assert run(st, filed("c", T), filed("c", T + 60)) == [C, DUP]


def test_case_cleared_open_closes_and_joins_the_cohort(st: DistrictState) -> None:
    assert run(st, filed("c", T), cleared("c", T + 2 * D)) == [C, C]
    assert st.open_cases == 0
    assert cohort(st, M.CASES_FILED_CLEARED, T) == 1
    assert cohort(st, M.CASES_CLEARED, T + 2 * D) == 1


def test_case_cleared_unknown_is_counted_with_its_own_category(st: DistrictState) -> None:
    assert st.apply(cleared("c", T, category="robbery")) is C
    assert st.buckets.by_category(T - D, T + D)[M.CASES_CLEARED] == {"robbery": 1}
    assert st.open_cases == 0


def test_case_cleared_twice_is_a_duplicate(st: DistrictState) -> None:
    assert run(st, filed("c", T), cleared("c", T + H), cleared("c", T + 2 * H)) == [C, C, DUP]


def test_late_clearance_closes_now_and_leaves_the_windows(st: DistrictState) -> None:
    run(st, filed("c", T), filed("other", T + 3 * D))
    before = st.counts(T - D, T + 5 * D)
    assert st.apply(cleared("c", T + H)) is LC
    assert st.open_cases == 1, "only 'other' is open now"
    assert st.counts(T - D, T + 5 * D) == before
    assert total(st, M.CASES_CLEARED) == 0 and st.late_total == 1


# -- disputes ----------------------------------------------------------------------------


def test_dispute_reported_opens(st: DistrictState) -> None:
    assert st.apply(reported("d", T)) is C
    assert st.open_disputes == 1 and st.oldest_open_dispute() == T


def test_dispute_reported_after_resolution_is_closed_and_in_the_cohort(st: DistrictState) -> None:
    assert run(st, step(Kind.DISPUTE_RESOLVED, "d", T + H), reported("d", T)) == [C, C]
    assert st.open_disputes == 0
    assert cohort(st, M.DISPUTES_REPORTED_RESOLVED, T) == 1


def test_dispute_reported_twice_is_a_duplicate(st: DistrictState) -> None:
    assert run(st, reported("d", T), reported("d", T + 1)) == [C, DUP]


def test_mediation_counts_and_stays_open(st: DistrictState) -> None:
    assert run(st, reported("d", T), step(Kind.DISPUTE_MEDIATION_STARTED, "d", T + H)) == [C, C]
    assert st.open_disputes == 1 and total(st, M.DISPUTES_MEDIATED) == 1


def test_resolution_closes_and_joins_the_cohort(st: DistrictState) -> None:
    run(st, reported("d", T), step(Kind.DISPUTE_RESOLVED, "d", T + 3 * D))
    assert st.open_disputes == 0
    assert cohort(st, M.DISPUTES_REPORTED_RESOLVED, T) == 1


def test_escalation_closes_but_is_not_resolution(st: DistrictState) -> None:
    run(st, reported("d", T), step(Kind.DISPUTE_ESCALATED, "d", T + H))
    assert st.open_disputes == 0
    assert cohort(st, M.DISPUTES_REPORTED_RESOLVED, T) == 0
    assert total(st, M.DISPUTES_ESCALATED) == 1


@pytest.mark.parametrize(
    "kind", [Kind.DISPUTE_MEDIATION_STARTED, Kind.DISPUTE_RESOLVED, Kind.DISPUTE_ESCALATED]
)
def test_a_dispute_step_it_has_is_a_duplicate(st: DistrictState, kind: Kind) -> None:
    assert run(st, reported("d", T), step(kind, "d", T + H), step(kind, "d", T + 2 * H)) == [
        C, C, DUP
    ]


def test_late_mediation_changes_nothing_late_resolution_closes(st: DistrictState) -> None:
    run(st, reported("d", T), reported("e", T + 3 * D))
    assert st.apply(step(Kind.DISPUTE_MEDIATION_STARTED, "d", T + H)) is LATE
    assert st.apply(step(Kind.DISPUTE_RESOLVED, "d", T + H)) is LC
    assert st.open_disputes == 1
    assert cohort(st, M.DISPUTES_REPORTED_RESOLVED, T) == 0, "windows unchanged"


# -- hazards -----------------------------------------------------------------------------


def test_found_opens_with_its_deadline(st: DistrictState) -> None:
    assert st.apply(found("h", T, deadline=T + H, major=True)) is C
    st.tick(T + 2 * H)
    assert set(st.overdue) == {"h"} and st.overdue_major == 1


def test_found_after_rectification_is_closed_and_in_the_cohort(st: DistrictState) -> None:
    assert run(st, rect("h", T + H), found("h", T)) == [C, C]
    assert st.open_hazards == 0 and cohort(st, M.HAZARDS_FOUND_RECTIFIED, T) == 1
    assert st.buckets.by_category(T - D, T + D)[M.HAZARDS_RECTIFIED] == {"gas": 1}


def test_found_after_a_failed_visit_keeps_the_visits_deadline(st: DistrictState) -> None:
    run(st, fail("h", T + H, deadline=T + 5 * D), found("h", T, deadline=T + 2 * H))
    assert st.open_hazards == 1 and st.hazards["h"].deadline == T + 5 * D


def test_found_twice_is_a_duplicate(st: DistrictState) -> None:
    assert run(st, found("h", T), found("h", T + 1)) == [C, DUP]


def test_rectification_closes_and_joins_the_cohort(st: DistrictState) -> None:
    run(st, found("h", T, deadline=T + H))
    st.tick(T + 2 * H)
    assert st.apply(rect("h", T + 3 * H)) is C
    assert st.open_hazards == 0 and st.overdue == {}
    assert cohort(st, M.HAZARDS_FOUND_RECTIFIED, T) == 1


def test_rectified_twice_is_a_duplicate(st: DistrictState) -> None:
    assert run(st, found("h", T), rect("h", T + H), rect("h", T + 2 * H)) == [C, C, DUP]


def test_a_rectification_older_than_the_failed_visit_is_outgrown(st: DistrictState) -> None:
    # The retried rectification arrives after the failed look-back: it does not close.
    assert run(st, found("h", T), rect("h", T + H), fail("h", T + 3 * D)) == [C, C, C]
    assert st.apply(rect("h", T + 2 * H)) is DUP
    assert st.open_hazards == 1
    # A rectification after the visit closes the new round, and counts again.
    assert st.apply(rect("h", T + 4 * D)) is C
    assert st.open_hazards == 0 and total(st, M.HAZARDS_RECTIFIED) == 2
    assert cohort(st, M.HAZARDS_FOUND_RECTIFIED, T) == 1


def test_rectification_after_a_confirming_visit_counts_and_stays_closed(
    st: DistrictState,
) -> None:
    assert run(st, found("h", T), confirm("h", T + 2 * H), rect("h", T + H)) == [C, C, C]
    assert st.open_hazards == 0 and total(st, M.HAZARDS_RECTIFIED) == 1
    assert cohort(st, M.HAZARDS_FOUND_RECTIFIED, T) == 1, "in the cohort once"


def test_confirming_visit_closes_an_open_hazard(st: DistrictState) -> None:
    assert run(st, found("h", T), confirm("h", T + H)) == [C, C]
    assert st.open_hazards == 0 and total(st, M.HAZARDS_VERIFIED) == 1
    assert cohort(st, M.HAZARDS_FOUND_RECTIFIED, T) == 1


def test_confirming_visit_after_rectification_counts(st: DistrictState) -> None:
    assert run(st, found("h", T), rect("h", T + H), confirm("h", T + 2 * D)) == [C, C, C]
    assert total(st, M.HAZARDS_VERIFIED) == 1 and cohort(st, M.HAZARDS_FOUND_RECTIFIED, T) == 1


def test_confirming_visit_twice_is_a_duplicate(st: DistrictState) -> None:
    assert run(st, found("h", T), confirm("h", T + H), confirm("h", T + 2 * H)) == [C, C, DUP]


def test_a_confirmation_older_than_the_failed_visit_is_outgrown(st: DistrictState) -> None:
    run(st, found("h", T), rect("h", T + H), fail("h", T + 3 * D))
    assert st.apply(confirm("h", T + 2 * D)) is DUP
    assert st.open_hazards == 1


def test_failed_visit_reopens_a_closed_hazard(st: DistrictState) -> None:
    run(st, found("h", T, deadline=T + H), rect("h", T + 2 * H))
    assert st.apply(fail("h", T + 22 * D, deadline=T + 25 * D)) is C
    assert st.open_hazards == 1 and st.hazards["h"].round == 1
    assert cohort(st, M.HAZARDS_FOUND_RECTIFIED, T) == 0, "left the cohort"
    assert total(st, M.HAZARDS_LOOKBACK_FAILED) == 1
    st.tick(T + 24 * D)
    assert st.overdue == {}
    st.tick(T + 26 * D)
    assert set(st.overdue) == {"h"}


def test_failed_visit_on_an_open_hazard_moves_the_deadline(st: DistrictState) -> None:
    run(st, found("h", T, deadline=T + H))
    st.tick(T + 2 * H)
    assert set(st.overdue) == {"h"}
    assert st.apply(fail("h", T + 3 * H, deadline=T + 5 * D)) is C
    assert st.overdue == {} and st.hazards["h"].deadline == T + 5 * D
    assert st.open_hazards == 1


def test_a_failed_visit_older_than_the_rectification_is_outgrown(st: DistrictState) -> None:
    run(st, found("h", T), rect("h", T + 3 * D))
    assert st.apply(fail("h", T + 2 * D)) is DUP
    assert st.open_hazards == 0


def test_a_failed_visit_not_after_the_latest_one_is_a_duplicate(st: DistrictState) -> None:
    run(st, found("h", T), rect("h", T + H), fail("h", T + 2 * D))
    assert st.apply(fail("h", T + 2 * D)) is DUP
    assert st.apply(fail("h", T + D)) is DUP
    assert st.hazards["h"].round == 1


def test_late_rectification_closes_now_and_leaves_the_windows(st: DistrictState) -> None:
    run(st, found("h", T, deadline=T + H), found("x", T + 3 * D, deadline=T + 30 * D))
    st.tick(T + 3 * D)
    assert set(st.overdue) == {"h"}
    before = st.counts(T - D, T + 5 * D)
    assert st.apply(rect("h", T + 2 * H)) is LC
    assert st.overdue == {} and st.open_hazards == 1
    assert st.counts(T - D, T + 5 * D) == before
    # A failed visit later reopens it; the cohort was never joined, so nothing leaves it.
    assert st.apply(fail("h", T + 4 * D)) is C
    assert cohort(st, M.HAZARDS_FOUND_RECTIFIED, T) == 0 and st.open_hazards == 2


@pytest.mark.parametrize("days_late", [25 / 24, 7, 30])
def test_closings_arbitrarily_late_still_close(days_late: float) -> None:
    st = DistrictState("jinshui", TZ, Limits(lifecycle_memory=60 * D))
    run(st, found("h", T, deadline=T + H), filed("c", T), reported("d", T))
    later = T + days_late * D + H
    run(st, found("h2", later), filed("c2", later), reported("d2", later))
    st.tick(later)
    assert run(st, rect("h", T + 60), cleared("c", T + 60),
               step(Kind.DISPUTE_RESOLVED, "d", T + 60)) == [LC, LC, LC]
    assert (st.open_hazards, st.open_cases, st.open_disputes) == (1, 1, 1)
    assert "h" not in st.overdue


# -- patrols and memory ------------------------------------------------------------------


def test_patrol_counts_once_and_moves_the_last_end(st: DistrictState) -> None:
    assert run(st, ev(Kind.PATROL_COMPLETED, "p", T, ended=T - 60),
               ev(Kind.PATROL_COMPLETED, "p", T + 5, ended=T)) == [C, DUP]
    assert st.last_patrol_end == T - 60 and total(st, M.PATROLS_COMPLETED) == 1


def test_a_look_back_weeks_later_finds_its_hazard() -> None:
    st = DistrictState("jinshui", TZ)
    run(st, found("h", T), rect("h", T + H))
    for day in range(1, 50):  # seven weeks of other patrol-topic events
        st.apply(ev(Kind.PATROL_COMPLETED, f"p{day}", T + day * D, ended=T + day * D))
    assert st.apply(fail("h", T + 50 * D)) is C
    assert st.open_hazards == 1 and st.hazards["h"].opened == T


def test_lifecycle_memory_is_measured_on_the_lifecycles_own_stream() -> None:
    st = DistrictState("jinshui", TZ, Limits(lifecycle_memory=20 * D))
    run(st, found("h", T), rect("h", T + H))
    # Incidents run 90 days ahead: the hazard's own stream has not moved, so it is kept.
    st.apply(filed("c", T + 90 * D))
    assert "h" in st.hazards
    for day in range(1, 30):
        st.apply(ev(Kind.PATROL_COMPLETED, f"p{day}", T + day * D, ended=T + day * D))
    assert "h" not in st.hazards, "forgotten once its own stream is 20 days past it"
    # Forgotten, a later step starts a new lifecycle.
    assert st.apply(fail("h", T + 30 * D)) is C
    assert st.open_hazards == 0 and st.hazards["h"].opened is None


def restarted(st: DistrictState) -> DistrictState:
    """The state a restart rebuilds from this one's snapshot."""
    return DistrictState.from_snapshot(orjson.loads(orjson.dumps(st.to_snapshot())), TZ,
                                       st.limits)


def patrol_days(first: int, last: int) -> list[Event]:
    """A patrol run each day: they move the patrol topic's watermark (hazards live there)."""
    return [ev(Kind.PATROL_COMPLETED, f"p{d}", T + d * D, ended=T + d * D)
            for d in range(first, last + 1)]


def incident_days(first: int, last: int) -> list[Event]:
    return [filed(f"other{d}", T + d * D) for d in range(first, last + 1)]


def dispute_days(first: int, last: int) -> list[Event]:
    return [reported(f"other{d}", T + d * D) for d in range(first, last + 1)]


def test_a_hazard_confirmed_after_its_rectification_is_remembered_from_the_confirmation() -> None:
    """60 days from its latest transition (the confirming visit on day 10), not from the
    rectification; the live state and a state rebuilt on day 5 forget it on the same day."""
    live = DistrictState("jinshui", TZ, Limits(lifecycle_memory=60 * D))
    run(live, found("h", T), rect("h", T + H), *patrol_days(1, 5))
    rebuilt = restarted(live)
    for st in (live, rebuilt):
        run(st, confirm("h", T + 10 * D), *patrol_days(6, 68))
        assert "h" in st.hazards, "day 68: 58 days after the confirming visit"
        run(st, *patrol_days(69, 72))
        assert "h" not in st.hazards, "day 72: 62 days after it"


def test_a_case_filed_after_its_clearance_is_remembered_from_the_filing() -> None:
    live = DistrictState("jinshui", TZ, Limits(lifecycle_memory=60 * D))
    run(live, cleared("c", T), filed("c", T + 3 * D))
    rebuilt = restarted(live)
    for st in (live, rebuilt):
        run(st, *incident_days(4, 61))
        assert "c" in st.cases, "day 61: 58 days after the filing"
        run(st, *incident_days(62, 65))
        assert "c" not in st.cases


def test_closed_lifecycles_are_forgotten_by_the_hour_even_within_one_day() -> None:
    """The horizon cuts at hours: of four cases closed on one UTC day, a sweep whose cutoff
    is that day's 12:00 forgets those whose latest transition came before 12:00 and keeps
    the others until a later sweep; a state rebuilt between the two sweeps does the same."""
    day0 = (T // D + 40) * D  # a UTC midnight
    live = DistrictState("jinshui", TZ, Limits(lifecycle_memory=10 * D))
    closed_at = {"a": 2.5 * H, "b": 11 * H + 3599, "c": 12 * H, "d": 20.5 * H}
    for sid, t in closed_at.items():
        run(live, filed(sid, day0 + t - H), cleared(sid, day0 + t))
    # One incident a day before the first sweep on this stream, so the next comes only
    # when the watermark is a day past the last one.
    run(live, *(filed(f"x{i}", day0 + 22 * H + i * 1.5 * D) for i in range(6)))
    assert set(closed_at) <= set(live.cases)
    run(live, filed("y", day0 + 10 * D + 12 * H))  # sweeps: the cutoff is day 0, 12:00
    assert {"a", "b"}.isdisjoint(live.cases) and {"c", "d"} <= set(live.cases)
    rebuilt = restarted(live)
    for st in (live, rebuilt):
        run(st, filed("z", day0 + 11 * D + 12 * H))  # the next sweep: day 1, 12:00
        assert {"a", "b", "c", "d"}.isdisjoint(st.cases)
        assert {"x5", "y", "z"} <= set(st.cases)


def test_the_deadline_heap_sheds_rectified_hazards_and_still_finds_the_overdue() -> None:
    """Hazards due a month after they are found, most rectified within the hour: their
    deadline entries must not pile up for the month; the open ones still go overdue."""
    st = DistrictState("jinshui", TZ)
    t0 = (T // D + 40) * D
    still_open = set()
    for i in range(24 * 20):  # one hazard an hour for 20 days; every tenth left open
        t = t0 + i * H
        st.apply(found(f"h{i}", t, deadline=t + 30 * D))
        if i % 10:
            st.apply(rect(f"h{i}", t + 0.5 * H))
        else:
            still_open.add(f"h{i}")
        assert len(st._due) <= st.open_hazards + 64 + 24  # a day's hazards between sweeps
    now = t0 + 60 * D  # every deadline past
    assert st.tick(now) == len(still_open)
    assert set(st.overdue) == still_open


def test_a_dispute_step_whose_report_never_came_is_kept_for_the_retention() -> None:
    """Live and after a restart: a mediation alone is no closed lifecycle."""
    limits = Limits(lifecycle_memory=20 * D, retention_days=100)
    live = DistrictState("jinshui", TZ, limits)
    run(live, step(Kind.DISPUTE_MEDIATION_STARTED, "d", T), *dispute_days(1, 2))
    rebuilt = restarted(live)
    for st in (live, rebuilt):
        run(st, *dispute_days(3, 60))
        assert "d" in st.disputes, "day 60: past the lifecycle memory, inside the retention"
        run(st, *dispute_days(61, 110))
        assert "d" not in st.disputes, "day 110: past the 100-day retention"


def test_a_hazard_reopened_after_its_filing_as_closed_is_kept_while_open() -> None:
    live = DistrictState("jinshui", TZ, Limits(lifecycle_memory=20 * D, retention_days=100))
    run(live, found("h", T), rect("h", T + H), fail("h", T + 2 * D, deadline=T + 300 * D))
    rebuilt = restarted(live)
    for st in (live, rebuilt):
        run(st, *patrol_days(3, 60))
        assert "h" in st.hazards and st.open_hazards == 1


def _shape(st: DistrictState) -> dict[str, object]:
    """A snapshot with each group's rows as a sorted list: a rebuilt dict may differ in
    insertion order, never in content."""
    snap = orjson.loads(orjson.dumps(st.to_snapshot()))
    for group in ("cases", "disputes", "hazards", "patrols", "accidents"):
        snap[group] = sorted(snap[group], key=orjson.dumps)
    return snap


@pytest.mark.parametrize("seed", range(40))
def test_a_restart_anywhere_remembers_and_forgets_what_the_live_state_does(seed: int) -> None:
    """Lifecycles over 200 days, their transitions in any order, some of them late: a state
    rebuilt from a snapshot at a random point and fed the rest answers every event as the
    live one does and ends with the same subjects, counts and memories."""
    import random

    rng = random.Random(seed)
    steps = {
        "c": [lambda s, t: filed(s, t), lambda s, t: cleared(s, t)],
        "d": [lambda s, t: reported(s, t),
              lambda s, t: step(Kind.DISPUTE_MEDIATION_STARTED, s, t),
              lambda s, t: step(Kind.DISPUTE_RESOLVED, s, t),
              lambda s, t: step(Kind.DISPUTE_ESCALATED, s, t)],
        "h": [lambda s, t: found(s, t), lambda s, t: rect(s, t), lambda s, t: confirm(s, t),
              lambda s, t: fail(s, t)],
        "a": [lambda s, t: accident(s, t, 1, 0, 1000), lambda s, t: accident(s, t, 0, 2, 500)],
        "p": [lambda s, t: ev(Kind.PATROL_COMPLETED, s, t, ended=t)],
    }
    timed: list[tuple[float, Event]] = []
    for i in range(150):
        kind = rng.choice("cdhap")
        sid, start = f"{kind}{i}", rng.uniform(0, 200) * D
        for make in rng.sample(steps[kind], rng.randint(1, len(steps[kind]))):
            t = T + start + rng.uniform(0, 15) * D
            e = make(sid, t)
            # Arrival order: mostly by time, some a day or two behind (late past the grace);
            # some sent again days later (a retry: the same identity).
            timed.append((t + rng.choice((0.0, 0.0, 0.0, 2 * D)), e))
            if rng.random() < 0.2:
                timed.append((t + rng.uniform(0, 12) * D, e))
    timed += [(e.ts, e) for e in patrol_days(0, 280) + incident_days(0, 280)
              + dispute_days(0, 280)]
    events = [e for _, e in sorted(timed, key=lambda p: p[0])]
    limits = Limits(lifecycle_memory=30 * D, retention_days=120)
    live = DistrictState("jinshui", TZ, limits)
    cut = rng.randrange(len(events))
    run(live, *events[:cut])
    rebuilt = restarted(live)
    assert run(rebuilt, *events[cut:]) == run(live, *events[cut:])
    assert _shape(rebuilt) == _shape(live)


# -- work-safety accidents ----------------------------------------------------------------


def accident(s: str, t: float, deaths: int, injuries: int, loss: int) -> Event:
    return ev(Kind.ACCIDENT_REPORTED, s, t, category="construction",
              figures=(deaths, injuries, loss))


def indicators(st: DistrictState, at: float) -> list[int]:
    return [cohort(st, m, at) for m in (M.ACCIDENTS, M.ACCIDENT_DEATHS,
                                         M.ACCIDENT_SERIOUS_INJURIES,
                                         M.ACCIDENT_DIRECT_LOSS_YUAN)]


def test_accident_unknown_counts_the_four_indicators(st: DistrictState) -> None:
    assert st.apply(accident("a", T, 1, 2, 1_850_000)) is C
    assert indicators(st, T) == [1, 1, 2, 1_850_000]
    assert st.buckets.by_category(T - D, T + D)[M.ACCIDENT_DEATHS] == {"construction": 1}


def test_a_revision_moves_the_figures_on_the_accidents_own_time(st: DistrictState) -> None:
    run(st, accident("a", T, 1, 2, 1_850_000))
    assert st.apply(accident("a", T + 2 * D, 2, 1, 2_300_000)) is C
    assert indicators(st, T) == [1, 2, 1, 2_300_000]
    assert indicators(st, T + 2 * D) == [0, 0, 0, 0]
    assert total(st, M.ACCIDENTS) == 1 and total(st, M.ACCIDENT_DEATHS) == 2


def test_an_earlier_report_arriving_later_moves_the_accident(st: DistrictState) -> None:
    run(st, accident("a", T + 3 * H, 2, 1, 500))
    assert st.apply(accident("a", T, 1, 1, 100)) is C
    hour = [st.counts(T, T + H)[m] for m in (M.ACCIDENTS, M.ACCIDENT_DEATHS)]
    later = [st.counts(T + 3 * H, T + 4 * H)[m] for m in (M.ACCIDENTS, M.ACCIDENT_DEATHS)]
    assert (hour, later) == ([1, 2], [0, 0]), "the latest report stands, at the first time"
    assert st.accidents["a"].opened == T


def test_a_report_within_the_reports_times_is_a_duplicate(st: DistrictState) -> None:
    run(st, accident("a", T, 1, 0, 0), accident("a", T + 2 * D, 2, 0, 0))
    assert st.apply(accident("a", T + D, 5, 5, 5)) is DUP
    assert st.apply(accident("a", T + 2 * D, 7, 7, 7)) is DUP
    assert indicators(st, T) == [1, 2, 0, 0]


def test_a_step_before_its_opening_is_unknown_until_the_opening_tells(st: DistrictState) -> None:
    run(st, rect("h", T + H), step(Kind.DISPUTE_MEDIATION_STARTED, "d", T + H))
    cats = st.buckets.by_category(T - D, T + D)
    assert cats[M.HAZARDS_RECTIFIED] == {"unknown": 1}
    assert cats[M.DISPUTES_MEDIATED] == {"unknown": 1}
    run(st, found("h", T))
    assert st.buckets.by_category(T - D, T + D)[M.HAZARDS_RECTIFIED] == {"gas": 1}
    assert M.PATROLS_COMPLETED not in cats, "patrols have no categories"


def test_forwarded_records_are_judged_late_against_each_other_only(st: DistrictState) -> None:
    # A misrouted record of today, forwarded, must not make the direct backlog late...
    assert st.apply(filed("today", T + 5 * D), forwarded=True) is C
    assert st.apply(filed("backlog", T)) is C
    # ...and the forwarded route has its own grace.
    assert st.apply(filed("old", T + 2 * D), forwarded=True) is LATE
    # One lifecycle across both routes, one identity memory: a copy through the other
    # route is the same event.
    a = cleared("backlog", T + H)
    assert st.apply(a) is C
    assert st.apply(ev(Kind.CASE_CLEARED, "backlog", T + H, id=a.id), forwarded=True) is DUP
    assert st.open_cases == 1

"""Cases, January to September 2025: clearance recounted from the events."""

from __future__ import annotations

from collections import Counter, defaultdict

from streams.events import Kind
from streams.simulator.files import load_expected
from streams.windows import Measure

from .support import counted_states, events, month_of, when


def test_cases_clearance_recounted_from_events() -> None:
    expected = load_expected("cases-2025-jan-sep")
    evs = events("cases-2025-jan-sep")
    filed = {e["subject"]: e for e in evs if e["_kind"] is Kind.CASE_FILED}
    cleared = {e["subject"]: e for e in evs if e["_kind"] is Kind.CASE_CLEARED}
    assert len(filed) + len(cleared) == len(evs)
    lo, hi = when(expected["from"]), when(expected["to"])
    assert all(lo <= e["_ts"] < hi for e in evs)
    for subject, e in cleared.items():
        assert e["_ts"] > filed[subject]["_ts"]
    assert len(filed) == expected["filed"] == 1538
    assert len(cleared) == expected["cleared"] == 778
    assert round(100 * len(cleared) / len(filed), 1) == expected["clearance_rate_percent"] == 50.6
    assert expected["open_at_end"] == len(filed) - len(cleared)
    by_month_filed = Counter(month_of(e["_ts"]) for e in filed.values())
    by_month_cleared = Counter(month_of(e["_ts"]) for e in cleared.values())
    assert [(m["month"], m["filed"], m["cleared"]) for m in expected["months"]] == [
        (f"2025-{m:02d}", by_month_filed[f"2025-{m:02d}"], by_month_cleared[f"2025-{m:02d}"])
        for m in range(1, 10)
    ]
    by_category: dict[str, dict[str, int]] = defaultdict(lambda: {"filed": 0, "cleared": 0})
    for subject, e in filed.items():
        by_category[e["data"]["category"]]["filed"] += 1
        by_category[e["data"]["category"]]["cleared"] += subject in cleared
    assert expected["by_category"] == dict(by_category)
    group = ("robbery", "snatching", "theft")
    assert expected["two_robberies_one_theft"] == {
        k: sum(by_category[c][k] for c in group) for k in ("filed", "cleared")
    }
    # Thefts are cleared less often than fights, as in life.
    theft, fight = by_category["theft"], by_category["fight"]
    assert theft["cleared"] / theft["filed"] < fight["cleared"] / fight["filed"]


def test_engine_state_reads_the_expected_figures() -> None:
    expected = load_expected("cases-2025-jan-sep")
    state = counted_states("cases-2025-jan-sep")["erqi"]
    counts = state.counts(when(expected["from"]), when(expected["to"]))
    assert (counts[Measure.CASES_FILED], counts[Measure.CASES_CLEARED]) == (1538, 778)
    assert state.open_cases == expected["open_at_end"]

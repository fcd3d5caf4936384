"""Disputes, 2025: outcomes recounted from the events."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from streams.events import Kind
from streams.rates import RATES
from streams.simulator.files import load_expected
from streams.windows import Measure

from .support import counted_states, events, when


def test_disputes_recounted_from_events() -> None:
    expected = load_expected("disputes-2025")
    evs = events("disputes-2025")
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in evs:
        history[e["subject"]].append(e)
    outcome = Counter()
    by_category: dict[str, dict[str, int]] = {}
    for subject, hs in history.items():
        kinds = [h["_kind"] for h in hs]
        assert kinds[:2] == [Kind.DISPUTE_REPORTED, Kind.DISPUTE_MEDIATION_STARTED], subject
        assert len(kinds) <= 3
        unit = hs[0]["data"]["responsible_unit"]
        assert hs[1]["data"]["responsible_unit"] == unit  # one responsible department
        end = kinds[2] if len(kinds) == 3 else None
        name = {
            Kind.DISPUTE_RESOLVED: "resolved",
            Kind.DISPUTE_ESCALATED: "escalated",
            None: "open",
        }[end]
        outcome[name] += 1
        row = by_category.setdefault(
            hs[0]["data"]["category"], {"reported": 0, "resolved": 0, "escalated": 0, "open": 0}
        )
        row["reported"] += 1
        row[name] += 1
    assert len(history) == expected["reported"] == 42
    assert sum(1 for e in evs if e["_kind"] is Kind.DISPUTE_MEDIATION_STARTED) == 42
    assert outcome["resolved"] == expected["resolved"]
    assert outcome["escalated"] == expected["escalated"] >= 1
    assert outcome["open"] == expected["open_at_end"]
    rate = round(100 * outcome["resolved"] / len(history), 1)
    assert rate == expected["resolution_rate_percent"] and rate > 80
    assert expected["by_category"] == dict(sorted(by_category.items()))
    assert set(by_category) == {
        "enterprise_restructuring",
        "social_security",
        "rural_stability",
        "demolition_compensation",
        "environmental_pollution",
        "unpaid_wages",
    }
    assert expected["mass_disputes_10_or_more_people"] == sum(
        1 for hs in history.values() if hs[0]["data"]["people_involved"] >= 10
    )
    assert all(when(expected["from"]) <= e["_ts"] < when(expected["to"]) for e in evs)


def test_engine_state_reads_the_expected_figures() -> None:
    expected = load_expected("disputes-2025")
    state = counted_states("disputes-2025")["zhongyuan"]
    counts = state.counts(when(expected["from"]), when(expected["to"]))
    assert counts[Measure.DISPUTES_REPORTED] == expected["reported"]
    assert counts[Measure.DISPUTES_RESOLVED] == expected["resolved"]
    assert counts[Measure.DISPUTES_ESCALATED] == expected["escalated"]
    assert state.open_disputes == expected["open_at_end"]
    # 化解率 as a cohort: of the 42 disputes reported in the period, those resolved since.
    assert counts[Measure.DISPUTES_REPORTED_RESOLVED] == expected["resolved"] == 35
    rate = next(r for r in RATES if r.name == "dispute_resolution_rate").of(counts)
    assert rate == 35 / 42 and round(100 * rate, 1) == expected["resolution_rate_percent"] >= 80

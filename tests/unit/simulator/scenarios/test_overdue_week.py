"""A week of hazards with known overdue times, recounted and replayed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from streams.events import Kind
from streams.simulator.files import load_expected, read_records, scenario_file
from streams.simulator.records import SimRecord
from streams.simulator.retime import shifted

from .support import counted_states, events, when


def overdue_timeline(evs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per hazard: found time, major, and the (time, deadline, open) changes in order."""
    out: dict[str, dict[str, Any]] = {}
    for e in evs:
        s = e["subject"]
        if e["_kind"] is Kind.HAZARD_FOUND:
            out[s] = {
                "district": e["district"],
                "major": e["data"]["major"],
                "changes": [(e["_ts"], when(e["data"]["deadline"]), True)],
            }
        elif e["_kind"] is Kind.HAZARD_RECTIFIED:
            deadline = out[s]["changes"][-1][1]
            out[s]["changes"].append((e["_ts"], deadline, False))
        elif e["_kind"] is Kind.HAZARD_VERIFIED and e["data"]["result"] == "not_rectified":
            out[s]["changes"].append((e["_ts"], when(e["data"]["new_deadline"]), True))
    return out


def overdue_at(h: dict[str, Any], t: float) -> bool:
    state = None
    for at, deadline, is_open in h["changes"]:
        if at <= t:
            state = (deadline, is_open)
    return state is not None and state[1] and state[0] < t


def test_overdue_week_recounted_from_events() -> None:
    expected = load_expected("overdue-week")
    evs = events("overdue-week")
    t0 = when(expected["first_event"])
    assert evs[0]["_ts"] == t0 and evs[-1]["_ts"] == when(expected["last_event"])
    assert evs[-1]["_ts"] - t0 == 7 * 86400
    hazards = overdue_timeline(evs)
    for point in expected["checkpoints"]:
        t = t0 + point["offset_seconds"]
        assert when(point["time"]) == t
        for district in expected["districts"]:
            mine = [h for h in hazards.values() if h["district"] == district and overdue_at(h, t)]
            assert point[district] == {
                "overdue": len(mine),
                "overdue_major": sum(1 for h in mine if h["major"]),
            }, (point["offset_seconds"], district)
    # Each listed hazard is overdue exactly from its offset (until its rectification).
    listed = {h["subject"]: h for h in expected["overdue_hazards"]}
    for subject, h in hazards.items():
        if subject not in listed:
            assert subject in expected["never_overdue"]
            # Within the scenario's horizon (its last checkpoint): the open_far ones do go
            # overdue, 30 to 60 days later.
            horizon = t0 + expected["checkpoints"][-1]["offset_seconds"]
            moments = [c[0] for c in h["changes"]] + [c[1] for c in h["changes"]] + [horizon]
            assert not any(overdue_at(h, m + 1) for m in moments if m < horizon)
            continue
        row = listed[subject]
        start = t0 + row["overdue_from_offset_seconds"]
        assert not overdue_at(h, start - 1) and overdue_at(h, start + 1), subject
        until = row["overdue_until_offset_seconds"]
        if until is None:
            assert overdue_at(h, t0 + 30 * 86400)
        else:
            assert overdue_at(h, t0 + until - 1) and not overdue_at(h, t0 + until)
        assert h["major"] == row["major"]
    assert set(listed) | set(expected["never_overdue"]) == set(hazards)


def test_overdue_week_shifted_to_now_goes_overdue_minutes_after_the_replay() -> None:
    expected = load_expected("overdue-week")
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
    records: list[SimRecord] = list(
        shifted(read_records(scenario_file("overdue-week")), now - 7 * 86400)
    )
    assert records[-1].at == now and records[0].at == now - 7 * 86400
    evs = []
    for rec in records:
        doc = orjson.loads(rec.value)
        doc.update(_ts=datetime.fromisoformat(doc["time"]).timestamp(), _kind=rec.kind)
        evs.append(doc)
    hazards = overdue_timeline(evs)
    after = sorted(
        (h["overdue_from_offset_seconds"] - 7 * 86400, h["subject"])
        for h in expected["overdue_hazards"]
        if h["overdue_from_offset_seconds"] > 7 * 86400
    )
    assert [m for m, _ in after] == [120, 240, 360, 480, 600, 720, 900, 1200]
    for minutes, subject in after:
        assert not overdue_at(hazards[subject], now + minutes - 1)
        assert overdue_at(hazards[subject], now + minutes + 1)


def test_engine_state_reads_the_expected_figures() -> None:
    # Overdue is judged by the wall clock once every event is in: the checkpoints from
    # the end of the week on.
    expected = load_expected("overdue-week")
    states = counted_states("overdue-week")
    t0 = when(expected["first_event"])
    for point in expected["checkpoints"]:
        if point["offset_seconds"] < 7 * 86400:
            continue
        for district, state in states.items():
            state.tick(t0 + point["offset_seconds"])
            got = {"overdue": len(state.overdue), "overdue_major": state.overdue_major}
            assert got == point[district], (point["offset_seconds"], district)

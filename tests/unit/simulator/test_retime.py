"""Records moved in time: shifted, or mapped onto a compressed clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streams.clock import FixedClock
from streams.events import Kind, Stream
from streams.reference import load_reference
from streams.simulator.records import Intent, SimRecord
from streams.simulator.retime import retime_record, shift_record, shifted
from streams.validation import EventValidator

from .support import CITY_FILE, OFFSET_TIME, doc, ts_of


def test_shift_moves_every_timestamp_and_keeps_offsets(mixed: list[SimRecord]) -> None:
    delta = 400 * 86400 + 17
    found = next(r for r in mixed if r.kind is Kind.HAZARD_FOUND and r.intent is Intent.VALID)
    moved = shift_record(found, delta)
    before, after = doc(found), doc(moved)
    assert ts_of(after["time"]) - ts_of(before["time"]) == delta
    assert ts_of(after["data"]["deadline"]) - ts_of(before["data"]["deadline"]) == delta  # type: ignore[index]
    assert str(after["time"]).endswith("+08:00")
    assert moved.at == found.at + delta and moved.ts == found.ts + delta  # type: ignore[operator]
    patrol = next(r for r in mixed if r.kind is Kind.PATROL_COMPLETED)
    p = doc(shift_record(patrol, delta))["data"]
    assert ts_of(p["ended_at"]) - ts_of(doc(patrol)["data"]["ended_at"]) == delta  # type: ignore[index]
    naive = next(r for r in mixed if r.reason == "naive_time")
    assert datetime.fromisoformat(str(doc(shift_record(naive, delta))["time"])).tzinfo is None
    out_of_range = next(r for r in mixed if r.reason == "time_out_of_range")
    assert shift_record(out_of_range, delta).value == out_of_range.value
    # A duplicate and its original stay identical.
    dup = next(r for r in mixed if r.intent is Intent.DUPLICATE)
    original = next(r for r in mixed if r.intent is Intent.VALID and r.value == dup.value)
    assert shift_record(dup, delta).value == shift_record(original, delta).value
    # shifted() puts the first record where asked.
    moved_all = list(shifted(mixed[:50], mixed[0].at + 3600))
    assert moved_all[0].at == mixed[0].at + 3600
    assert [b.at - a.at for a, b in zip(mixed[:50], moved_all, strict=True)] == [3600] * 50


def test_retime_maps_every_timestamp_through_the_function(mixed: list[SimRecord]) -> None:
    origin = mixed[0].at

    def squeeze(t: float) -> float:  # a day becomes ten seconds, fractions kept
        return origin + (t - origin) / 8640

    found = next(r for r in mixed if r.kind is Kind.HAZARD_FOUND and r.intent is Intent.VALID)
    moved = retime_record(found, squeeze)
    before, after = doc(found), doc(moved)
    assert ts_of(after["time"]) == pytest.approx(squeeze(ts_of(before["time"])), abs=1e-6)
    assert ts_of(after["data"]["deadline"]) == pytest.approx(  # type: ignore[index]
        squeeze(ts_of(before["data"]["deadline"])),
        abs=1e-6,  # type: ignore[index]
    )
    assert str(after["time"]).endswith("+08:00") and OFFSET_TIME.match(str(after["time"]))
    assert moved.at == squeeze(found.at) and moved.ts == squeeze(found.ts)  # type: ignore[arg-type]
    # Still a valid event: the deadline stays after the found time.
    clock = FixedClock(datetime.fromtimestamp(squeeze(found.at) + 1, UTC))
    event = EventValidator(load_reference(CITY_FILE), clock=clock).validate(
        moved.value, Stream.PATROLS
    )
    assert event.deadline is not None and event.deadline > event.ts
    patrol = next(r for r in mixed if r.kind is Kind.PATROL_COMPLETED)
    p, q = doc(patrol)["data"], doc(retime_record(patrol, squeeze))["data"]
    for name in ("started_at", "ended_at"):
        assert ts_of(q[name]) == pytest.approx(squeeze(ts_of(p[name])), abs=1e-6)  # type: ignore[index]
    naive = next(r for r in mixed if r.reason == "naive_time")
    assert datetime.fromisoformat(str(doc(retime_record(naive, squeeze))["time"])).tzinfo is None
    out_of_range = next(r for r in mixed if r.reason == "time_out_of_range")
    assert retime_record(out_of_range, squeeze).value == out_of_range.value
    # A shift is a retime by a constant.
    assert retime_record(found, lambda t: t + 3600).value == shift_record(found, 3600).value

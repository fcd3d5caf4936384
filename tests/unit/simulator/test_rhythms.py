"""Local time and the day/night rhythm."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from streams.events import Kind
from streams.simulator.records import SimRecord
from streams.simulator.rhythms import LocalTime

from .support import doc, local_hour, ts_of


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/Berlin", "America/St_Johns"])
def test_local_time_formatting_agrees_with_datetime(zone: str) -> None:
    tz = ZoneInfo(zone)
    local = LocalTime(tz)
    assert (local.fixed is not None) == (zone == "Asia/Shanghai")
    rng = random.Random(1)
    # Around DST changes too: every hour of late March and late October 2026.
    probes = [int(datetime(2026, 3, 28, tzinfo=UTC).timestamp()) + h * 3600 for h in range(72)]
    probes += [int(datetime(2026, 10, 24, tzinfo=UTC).timestamp()) + h * 3600 for h in range(72)]
    probes += [rng.randrange(946_684_800, 2_000_000_000) for _ in range(2000)]
    for ts in probes:
        when = datetime.fromtimestamp(ts, tz)
        assert local.format(ts) == when.isoformat(), ts
        assert local.hour(ts) == when.hour
        assert datetime.fromtimestamp(local.midnight(ts), tz).time().hour == 0


def test_day_and_night_rhythm(long_run: list[SimRecord]) -> None:
    filed = Counter(local_hour(r.ts) for r in long_run if r.kind is Kind.CASE_FILED)  # type: ignore[arg-type]
    evening = sum(filed[h] for h in range(18, 23))
    small_hours = sum(filed[h] for h in range(2, 7))
    assert evening > 2.5 * small_hours
    found = [r for r in long_run if r.kind is Kind.HAZARD_FOUND]
    office = sum(1 for r in found if 8 <= local_hour(r.ts) < 18)  # type: ignore[arg-type]
    assert office > 0.7 * len(found)
    patrols = Counter(
        local_hour(ts_of(doc(r)["data"]["started_at"]))
        for r in long_run
        if r.kind is Kind.PATROL_COMPLETED
    )  # type: ignore[index]
    night = sum(patrols[h] for h in (*range(20, 24), *range(0, 6)))
    assert night > 0.3 * sum(patrols.values())  # patrols day and night

"""Work safety: the four indicators (四项指标) year on year and the annual death control target."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .errors import QueryError
from .periods import Period
from .reference import DeathTarget, WorkSafetyYear
from .state import DistrictState
from .windows import Measure

# The four indicators, by their name in the API and the metrics.
INDICATORS: tuple[tuple[str, Measure], ...] = (
    ("accidents", Measure.ACCIDENTS),
    ("deaths", Measure.ACCIDENT_DEATHS),
    ("serious_injuries", Measure.ACCIDENT_SERIOUS_INJURIES),
    ("direct_loss_yuan", Measure.ACCIDENT_DIRECT_LOSS_YUAN),
)
DEATHS = 1  # index of deaths in an indicator vector

DEFINITIONS: dict[str, str] = {
    "indicators": "The four indicators of work safety (四项指标): accidents, deaths, serious "
    "injuries and direct economic loss in whole yuan, each counted at the accident's own time "
    "(its first report); a later report of the same accident revises the figures. Whole local "
    "days; the year to date runs from 1 January to the end of today.",
    "previous": "The same dates one year earlier (29 February: to the end of 28 February).",
    "year_deaths": "Deaths from 1 January of the period's year to the end of the period.",
    "deaths_target": "The year's control target on work-safety deaths (死亡人数控制指标) from the "
    "reference data, with the figure the target document compares it with (last_year). used: "
    "deaths from 1 January to the end of the period; used_ratio: used / target (null when the "
    "target is 0); remaining: target - used, below 0 once overrun.",
    "alert_share": "Operators are warned once a district's deaths reach this share of its "
    "target (at least one death). alert_share_reached_at: the report that took the deaths "
    "there, by the time of the latest report of each accident; null when that report is "
    "older than the remembered accidents (60 days), or while the share is not reached.",
}


def year_to_date(now: datetime, tz: ZoneInfo) -> Period:
    """1 January of the local year to the end of the local day of ``now`` (whole days)."""
    today = now.astimezone(tz).date()
    return Period(
        "year to date",
        _midnight(date(today.year, 1, 1), tz),
        _midnight(today + timedelta(days=1), tz),
    )


def year_before(period: Period, tz: ZoneInfo) -> Period:
    """The same dates one year earlier; a 29 February edge falls back to the 28th's end."""
    first = _last_year(period.start.astimezone(tz).date())
    end = period.end.astimezone(tz).date()
    after = _last_year(end) if not (end.month == 2 and end.day == 29) else date(end.year - 1, 3, 1)
    return Period(f"{period.label}, a year earlier", _midnight(first, tz), _midnight(after, tz))


def check_period(period: Period, tz: ZoneInfo) -> int:
    """The year a period of whole days lies in; a QueryError if it spans two years."""
    first = period.start.astimezone(tz).date()
    last = (period.end.astimezone(tz) - timedelta(days=1)).date()
    if first.year != last.year:
        raise QueryError(
            f"Work-safety figures are judged within one calendar year; {period.label} runs "
            f"from {first.year} into {last.year}."
        )
    return first.year


def indicators(st: DistrictState, period: Period) -> list[int]:
    """The four indicators of one district over a period of whole local days."""
    first = period.start.astimezone(st.tz).date().toordinal()
    last = period.end.astimezone(st.tz).date().toordinal()
    out = [0, 0, 0, 0]
    days = st.buckets.days
    items: Iterable[tuple[int, list[int]]] = (
        ((d, days[d]) for d in range(first, last) if d in days)
        if last - first <= len(days)
        else ((d, v) for d, v in days.items() if first <= d < last)
    )
    for _, vec in items:
        for i, (_, m) in enumerate(INDICATORS):
            out[i] += vec[m]
    return out


def alert_threshold(target: DeathTarget, share: float) -> int:
    """Deaths at which a target's alert share is reached: at least one."""
    return max(1, math.ceil(share * target.deaths - 1e-9))


def share_reached_at(
    st: DistrictState, year: int, deaths: int, threshold: int, until: float | None = None
) -> float | None:
    """The time of the report that took the year's deaths (``deaths``, of the accidents
    before ``until``) to ``threshold``, as far as the remembered accidents tell; None if
    not reached, or reached before all of them.

    Each accident's deaths are placed at its latest report: the state keeps no older
    figures, so a revision that adds a death counts all of that accident's deaths at the
    revision. Accidents are remembered for 60 days after their latest report; every
    accident reported since then is remembered, so walking back from the newest report
    finds the crossing exactly when it happened within that time.
    """
    if deaths < threshold:
        return None
    lo = _midnight(date(year, 1, 1), st.tz).timestamp()
    hi = _midnight(date(year + 1, 1, 1), st.tz).timestamp()
    if until is not None:
        hi = min(hi, until)
    fatal = sorted(
        (
            (s.last, s.figures[0])
            for s in st.accidents.values()
            if s.opened is not None and lo <= s.opened < hi and s.figures and s.figures[0] > 0
        ),
        reverse=True,
    )
    known = deaths
    for last, n in fatal:
        if known - n < threshold:
            return last
        known -= n
    return None


@dataclass(frozen=True)
class DistrictFigures:
    """One district's figures for a period: the indicators both years, deaths to the end
    of the period for the target, and when the alert share was reached."""

    district: str
    current: list[int]
    previous: list[int]
    used: int
    reached_at: float | None


def district_figures(
    st: DistrictState, period: Period, targets: WorkSafetyYear | None
) -> DistrictFigures:
    year = check_period(period, st.tz)
    current = indicators(st, period)
    previous = indicators(st, year_before(period, st.tz))
    from_january = Period(period.label, _midnight(date(year, 1, 1), st.tz), period.end)
    used = current[DEATHS] if from_january == period else indicators(st, from_january)[DEATHS]
    reached = None
    target = targets.districts.get(st.district) if targets is not None else None
    if targets is not None and target is not None:
        threshold = alert_threshold(target, targets.alert_share)
        reached = share_reached_at(st, year, used, threshold, until=period.hi)
    return DistrictFigures(st.district, current, previous, used, reached)


def _change(cur: int, prev: int) -> dict[str, Any]:
    return {
        "current": cur,
        "previous": prev,
        "change": cur - prev,
        "change_ratio": round((cur - prev) / prev, 6) if prev else None,
    }


def _indicators(current: list[int], previous: list[int]) -> dict[str, Any]:
    return {
        name: _change(c, p) for (name, _), c, p in zip(INDICATORS, current, previous, strict=True)
    }


def target_block(
    target: DeathTarget | None,
    share: float,
    used: int,
    reached_at: float | None,
    tz: ZoneInfo,
    *,
    with_time: bool = True,
) -> dict[str, Any] | None:
    """The target, its use so far and the alert share; None when the year sets no target."""
    if target is None:
        return None
    block: dict[str, Any] = {
        "target": target.deaths,
        "last_year": target.last_year,
        "change_from_last_year": target.change,
        "used": used,
        "used_ratio": round(used / target.deaths, 6) if target.deaths else None,
        "remaining": target.deaths - used,
        "alert_share": share,
        "alert_share_reached": used >= alert_threshold(target, share),
    }
    if with_time:
        block["alert_share_reached_at"] = (
            None if reached_at is None else datetime.fromtimestamp(reached_at, tz).isoformat()
        )
    return block


def district_block(
    fig: DistrictFigures, targets: WorkSafetyYear | None, tz: ZoneInfo
) -> dict[str, Any]:
    """One district's entry of ``GET /api/v1/work-safety``."""
    target = targets.districts.get(fig.district) if targets is not None else None
    share = targets.alert_share if targets is not None else 0.0
    return {
        "district": fig.district,
        "indicators": _indicators(fig.current, fig.previous),
        "year_deaths": fig.used,
        "deaths_target": target_block(target, share, fig.used, fig.reached_at, tz),
    }


def city_block(
    districts: Iterable[Mapping[str, Any]], targets: WorkSafetyYear | None, tz: ZoneInfo
) -> dict[str, Any]:
    """The city's figures: the sum of its districts' (as the district entries give them)."""
    current = [0, 0, 0, 0]
    previous = [0, 0, 0, 0]
    used = 0
    for d in districts:
        for i, (name, _) in enumerate(INDICATORS):
            current[i] += d["indicators"][name]["current"]
            previous[i] += d["indicators"][name]["previous"]
        # Every district's deaths use the city's target, whether it has one of its own.
        used += d["year_deaths"]
    return {
        "indicators": _indicators(current, previous),
        "deaths_target": target_block(
            targets.city if targets is not None else None,
            targets.alert_share if targets is not None else 0.0,
            used,
            None,
            tz,
            with_time=False,
        ),
    }


def _midnight(d: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(d, time(0), tz)


def _last_year(d: date) -> date:
    try:
        return d.replace(year=d.year - 1)
    except ValueError:  # 29 February
        return d.replace(year=d.year - 1, day=28)


def answer(
    period: Period,
    districts: list[dict[str, Any]],
    targets: WorkSafetyYear | None,
    tz: ZoneInfo,
    now: datetime,
) -> dict[str, Any]:
    """What ``GET /api/v1/work-safety`` shows: the city, every district, the definitions."""
    return {
        "year": check_period(period, tz),
        "period": period.to_dict(),
        "previous_period": year_before(period, tz).to_dict(),
        "city": city_block(districts, targets, tz),
        "districts": sorted(districts, key=lambda d: str(d["district"])),
        "definitions": DEFINITIONS,
        "as_of": now.astimezone(tz).isoformat(),
    }

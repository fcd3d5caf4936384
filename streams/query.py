"""Read models of the query API: a district's figures, windows, comparisons and hazards as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from . import overdue_list
from .periods import Period, comparisons
from .rates import RATES
from .state import DistrictState
from .windows import MEASURES, WINDOWS, Measure

# Shown with every answer, so a figure is never read without its definition.
DEFINITIONS: dict[str, str] = {
    **{rate.name: rate.definition for rate in RATES},
    "counts": "By each event's own time; rolling windows end now and have 5-minute (1h, 24h) "
    "or 1-hour (7d, 28d) precision; calendar periods use the city's local days.",
    "overdue": "An open (not rectified) hazard whose rectification deadline has passed on the "
    "wall clock, whether or not any event arrived since.",
}


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 6) if den else None


def figures(vec: list[int]) -> dict[str, Any]:
    """Counts of every measure plus the rates, from one count vector."""
    out: dict[str, Any] = {m.name.lower(): vec[m] for m in MEASURES}
    for rate in RATES:
        value = rate.of(vec)
        out[rate.name] = None if value is None else round(value, 6)
    return out


def _iso(ts: float | None, tz: ZoneInfo) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz).isoformat()


def current(st: DistrictState, now: float) -> dict[str, Any]:
    oldest = st.oldest_open_dispute()
    return {
        "open_cases": st.open_cases,
        "open_disputes": st.open_disputes,
        "oldest_open_dispute_age_seconds": None if oldest is None else max(0.0, now - oldest),
        "open_hazards": st.open_hazards,
        "overdue_hazards": len(st.overdue),
        "overdue_major_hazards": st.overdue_major,
        "hours_since_last_patrol": (
            None if st.last_patrol_end is None else round((now - st.last_patrol_end) / 3600, 3)
        ),
        "late_events": st.late_total,
        "duplicate_events": st.duplicate_total,
    }


def summary(st: DistrictState, now: float, tz: ZoneInfo) -> dict[str, Any]:
    """What ``GET /api/v1/districts`` shows per district."""
    rolling = st.buckets.rolling(now)
    return {
        "district": st.district,
        "current": current(st, now),
        "rolling": {label: figures(rolling[label]) for label in WINDOWS},
        "watermark": _iso(None if st.watermark == float("-inf") else st.watermark, tz),
    }


def period_figures(st: DistrictState, period: Period) -> dict[str, Any]:
    vec = st.counts(period.lo, period.hi)
    by_cat = st.buckets.by_category(period.lo, period.hi)
    return {
        **period.to_dict(),
        "figures": figures(vec),
        "by_category": {Measure(m).name.lower(): cats for m, cats in sorted(by_cat.items())},
    }


def _change(cur: int, prev: int) -> dict[str, Any]:
    return {
        "current": cur,
        "previous": prev,
        "change": cur - prev,
        "change_ratio": _ratio(cur - prev, prev),
    }


def comparison_figures(st: DistrictState, now: datetime, tz: ZoneInfo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for comp in comparisons(now, tz):
        cur = st.counts(comp.current.lo, comp.current.hi)
        prev = st.counts(comp.previous.lo, comp.previous.hi)
        cur_f, prev_f = figures(cur), figures(prev)
        out[comp.name] = {
            "current_period": comp.current.to_dict(),
            "previous_period": comp.previous.to_dict(),
            "counts": {m.name.lower(): _change(cur[m], prev[m]) for m in MEASURES},
            "rates": {
                name: {"current": cur_f[name], "previous": prev_f[name]}
                for name in (rate.name for rate in RATES)
            },
        }
    return out


def detail(
    st: DistrictState,
    now: datetime,
    tz: ZoneInfo,
    period: Period | None = None,
    *,
    limit: int = overdue_list.DEFAULT_LIMIT,
    cursor: str | None = None,
) -> dict[str, Any]:
    """What ``GET /api/v1/districts/{district}`` shows; open hazards one page at a time."""
    ts = now.timestamp()
    out = summary(st, ts, tz)
    out["comparisons"] = comparison_figures(st, now, tz)
    items, nxt, total = overdue_list.open_page(st, ts, limit, cursor)
    out["open_hazards"] = items
    out["open_hazards_page"] = {"total": total, "limit": limit, "next_cursor": nxt}
    overdue = overdue_list.district_items(st, ts, overdue_list.OverdueFilter())
    first, more = overdue_list.page(overdue, None, limit)
    out["overdue_hazards"] = first
    out["overdue_hazards_page"] = {
        "total": len(overdue),
        "limit": limit,
        "next": None if more is None
        else f"/api/v1/overdue?district={st.district}&limit={limit}&cursor={more}",
    }
    out["open_hazards_by_category"] = st.open_hazards_by_category()
    if period is not None:
        out["period"] = period_figures(st, period)
    out["definitions"] = DEFINITIONS
    out["as_of"] = now.astimezone(tz).isoformat()
    return out

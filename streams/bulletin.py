"""Bulletins (一天一通报): per-district sections at a cut-off, the ranking, frozen as bytes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from .errors import QueryError, SettingsError
from .periods import Period, day_period, month_period, parse_period, week_period
from .rates import RATES
from .state import DistrictState
from .windows import Measure

FORMAT_VERSION = 1
KINDS = ("daily", "weekly", "monthly")
RATE_NAMES = tuple(rate.name for rate in RATES)
DEFAULT_WEIGHTS = "rectification_rate=0.4,clearance_rate=0.3,dispute_resolution_rate=0.3"
FORMULA = (
    "score = 100 * Σ wᵢ·rateᵢ / Σ wᵢ over the rates a district has this period "
    "(a rate whose denominator is 0 is left out, with its weight); a district with no rate "
    "is not ranked. Ties: the district with fewer overdue major hazards at the cut-off, "
    "then fewer overdue hazards, then the code."
)


def parse_weights(text: str) -> dict[str, float]:
    """``name=weight,...`` over the three rates; at least one weight above zero."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, raw = part.partition("=")
        name = name.strip()
        if not sep or name not in RATE_NAMES:
            raise SettingsError(
                f"Bulletin weight {part!r} is not name=number with a name among "
                f"{', '.join(RATE_NAMES)}."
            )
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"Bulletin weight {part!r} is not a number.") from None
        if value < 0:
            raise SettingsError(f"Bulletin weight {part!r} is negative.")
        weights[name] = value
    if not any(weights.values()):
        raise SettingsError("At least one bulletin weight must be above zero.")
    return weights


def parse_cutoff(text: str) -> time:
    try:
        hh, mm = text.strip().split(":")
        return time(int(hh), int(mm))
    except ValueError:
        raise SettingsError(f"Bulletin cut-off {text!r} is not a local time HH:MM.") from None


# -- periods ---------------------------------------------------------------------------


def bulletin_period(spec: str, tz: ZoneInfo) -> tuple[str, Period]:
    """A day (daily), ISO week (weekly) or month (monthly) and its kind."""
    spec = spec.strip()
    if ".." in spec or spec.count("-") == 0:
        raise QueryError(
            f"Bulletins cover a day (2026-04-12), an ISO week (2026-W15) or a month "
            f"(2026-04), not {spec!r}."
        )
    period = parse_period(spec, tz)
    kind = "weekly" if "-W" in spec else ("monthly" if spec.count("-") == 1 else "daily")
    return kind, period


def cut_off_of(period: Period, cutoff: time, tz: ZoneInfo) -> datetime:
    """When a period's bulletin is cut: the cut-off time on the day its period ends."""
    return datetime.combine(period.end.astimezone(tz).date(), cutoff, tz)


def due(now: datetime, tz: ZoneInfo, cutoff: time) -> list[tuple[str, Period]]:
    """The latest period of each kind whose cut-off has passed at ``now``."""
    local = now.astimezone(tz)
    today = local.date()
    # Before today's cut-off, the latest due day is the day before yesterday.
    last_day = today - timedelta(days=1 if local.time() >= cutoff else 2)
    end = last_day + timedelta(days=1)  # the local day on which that cut-off fell
    monday = end - timedelta(days=end.weekday())
    prev_week = monday - timedelta(days=7)
    iso = prev_week.isocalendar()
    first = date(end.year, end.month, 1)
    prev_month = first - timedelta(days=1)
    return [
        ("daily", day_period(last_day, tz)),
        ("weekly", week_period(iso.year, iso.week, tz)),
        ("monthly", month_period(prev_month.year, prev_month.month, tz)),
    ]


def previous_label(kind: str, period: Period, tz: ZoneInfo) -> str:
    """The label of the period before, of the same kind (what movement compares with)."""
    start = period.start.astimezone(tz).date()
    if kind == "daily":
        return (start - timedelta(days=1)).isoformat()
    if kind == "weekly":
        iso = (start - timedelta(days=7)).isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    prev = start - timedelta(days=1)
    return f"{prev.year}-{prev.month:02d}"


# -- one district's section -------------------------------------------------------------


def _iso(ts: float | None, tz: ZoneInfo) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz).isoformat()


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 6) if den else None


def section(
    st: DistrictState, period: Period, cut_off: datetime, computed_at: datetime
) -> dict[str, Any]:
    """A district's part of a bulletin, from its state alone (never from the live clock).

    Overdue means open in this state with a deadline before the cut-off; the state is
    the one at the recorded ``evidence`` (the highest source offset applied per
    topic-partition), so replaying the sources up to those offsets gives it again.
    """
    tz = st.tz
    vec = st.counts(period.lo, period.hi)
    found, rectified = vec[Measure.HAZARDS_FOUND], vec[Measure.HAZARDS_FOUND_RECTIFIED]
    filed, cleared = vec[Measure.CASES_FILED], vec[Measure.CASES_FILED_CLEARED]
    reported = vec[Measure.DISPUTES_REPORTED]
    resolved = vec[Measure.DISPUTES_REPORTED_RESOLVED]
    cut = cut_off.timestamp()
    open_n = overdue_n = 0
    majors: list[dict[str, Any]] = []
    for sid, s in st.open_hazard_items():
        open_n += 1
        if s.deadline is not None and s.deadline < cut:
            overdue_n += 1
            if s.major:
                majors.append(
                    {
                        "subject": sid,
                        "responsible_unit": s.unit,
                        "category": s.category or "unknown",
                        "community": s.community,
                        "deadline": _iso(s.deadline, tz),
                        "overdue_seconds": round(cut - s.deadline, 3),
                        "failed_visits": s.round,
                        "_deadline": s.deadline,
                    }
                )
    majors.sort(key=lambda m: (m["_deadline"], m["subject"]))
    for m in majors:
        del m["_deadline"]
    return {
        "district": st.district,
        "figures": {
            "hazards_found": found,
            "hazards_rectified": rectified,
            "hazards_not_rectified": found - rectified,
            "rectification_rate": _rate(rectified, found),
            "cases_filed": filed,
            "cases_cleared": cleared,
            "clearance_rate": _rate(cleared, filed),
            "disputes_reported": reported,
            "disputes_resolved": resolved,
            "dispute_resolution_rate": _rate(resolved, reported),
            "patrols": vec[Measure.PATROLS_COMPLETED],
        },
        "open_hazards": open_n,
        "overdue_hazards": overdue_n,
        "overdue_major_hazards": len(majors),
        "overdue_major": majors,
        "watermark": _iso(None if st.watermark == float("-inf") else st.watermark, tz),
        "evidence": dict(sorted(st.evidence.items())),
        "computed_at": computed_at.astimezone(tz).isoformat(),
    }


# -- the city-wide bulletin --------------------------------------------------------------

_RATE_PARTS = {
    "rectification_rate": ("hazards_rectified", "hazards_found"),
    "clearance_rate": ("cases_cleared", "cases_filed"),
    "dispute_resolution_rate": ("disputes_resolved", "disputes_reported"),
}


def score(figures: Mapping[str, Any], weights: Mapping[str, float]) -> Fraction | None:
    """The published formula, exactly (fractions: no float order effects), or None."""
    num = Fraction(0)
    den = Fraction(0)
    for name, w in weights.items():
        top, bottom = _RATE_PARTS[name]
        if figures[bottom] and w:
            wf = Fraction(w)
            num += wf * Fraction(figures[top], figures[bottom])
            den += wf
    return 100 * num / den if den else None


def assemble(
    *,
    kind: str,
    period: Period,
    cut_off: datetime,
    tz: ZoneInfo,
    sections: Sequence[Mapping[str, Any]],
    weights: Mapping[str, float],
    named: int,
    previous: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The bulletin from every district's section and the previous bulletin's ranks.

    A pure function of its arguments, all recorded in the result: recomputing the
    sections from their evidence and assembling again gives the same bytes.
    """
    by_district = {s["district"]: s for s in sections}
    scored: list[tuple[Fraction, Mapping[str, Any]]] = []
    unranked: list[str] = []
    for code in sorted(by_district):
        s = by_district[code]
        value = score(s["figures"], weights)
        if value is None:
            unranked.append(code)
        else:
            scored.append((value, s))
    scored.sort(
        key=lambda p: (-p[0], p[1]["overdue_major_hazards"], p[1]["overdue_hazards"],
                       p[1]["district"])
    )
    prev_ranks: dict[str, int] = dict(previous["ranks"]) if previous else {}
    ranking = []
    for i, (value, s) in enumerate(scored, start=1):
        before = prev_ranks.get(s["district"])
        ranking.append(
            {
                "rank": i,
                "district": s["district"],
                "score": round(float(value), 2),
                "previous_rank": before,
                "movement": None if before is None else before - i,
            }
        )
    n = min(named, len(ranking) // 2)
    by_unit: dict[tuple[str, str], int] = {}
    for s in by_district.values():
        for m in s["overdue_major"]:
            k = (s["district"], m["responsible_unit"] or "")
            by_unit[k] = by_unit.get(k, 0) + 1
    totals: dict[str, int] = {}
    for s in by_district.values():
        for name, v in s["figures"].items():
            if isinstance(v, int) and not isinstance(v, bool):
                totals[name] = totals.get(name, 0) + v
        for name in ("open_hazards", "overdue_hazards", "overdue_major_hazards"):
            totals[name] = totals.get(name, 0) + s[name]
    for rate, (top, bottom) in _RATE_PARTS.items():
        totals_rate = _rate(totals.get(top, 0), totals.get(bottom, 0))
        totals[rate] = totals_rate  # type: ignore[assignment]
    order = [r["district"] for r in ranking] + unranked
    computed = max((s["computed_at"] for s in sections), default=None)
    return {
        "v": FORMAT_VERSION,
        "key": period.label,
        "kind": kind,
        "period": period.to_dict(),
        "cut_off": cut_off.astimezone(tz).isoformat(),
        "timezone": str(tz),
        "formula": {"text": FORMULA, "weights": dict(sorted(weights.items())), "named": named},
        "ranking": ranking,
        "unranked": unranked,
        "leaders": [r["district"] for r in ranking[:n]],
        "laggards": [r["district"] for r in reversed(ranking[len(ranking) - n:])] if n else [],
        "city": totals,
        "overdue_major_by_unit": [
            {"district": d, "responsible_unit": u or None, "count": c}
            for (d, u), c in sorted(by_unit.items(), key=lambda p: (-p[1], p[0]))
        ],
        "districts": [by_district[code] for code in order],
        "previous": (
            None
            if previous is None
            else {"key": previous["key"], "ranks": dict(sorted(prev_ranks.items()))}
        ),
        "computed_at": computed,
    }


def ranks_of(bulletin: Mapping[str, Any]) -> dict[str, Any]:
    """What the next bulletin records of this one for movement."""
    ranks = {r["district"]: r["rank"] for r in bulletin["ranking"]}
    return {"key": bulletin["key"], "ranks": ranks}


def to_bytes(bulletin: Mapping[str, Any]) -> bytes:
    """The frozen form: sorted keys, no whitespace, UTF-8."""
    return orjson.dumps(bulletin, option=orjson.OPT_SORT_KEYS)

"""Calendar periods (days, ISO weeks, months, years, ranges) and CompStat comparisons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .errors import QueryError

# Calendar periods the API accepts: from the Unix epoch to the year before the calendar
# ends (a period's end is the next midnight, which must exist too). Events before
# 2000-01-01 are never accepted, so earlier periods are empty anyway.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9998, 12, 31)


@dataclass(frozen=True)
class Period:
    """A half-open span ``[start, end)`` of aware datetimes, with a label for people."""

    label: str
    start: datetime
    end: datetime

    @property
    def lo(self) -> float:
        return self.start.timestamp()

    @property
    def hi(self) -> float:
        return self.end.timestamp()

    def to_dict(self) -> dict[str, str]:
        return {"label": self.label, "from": self.start.isoformat(), "to": self.end.isoformat()}


def _midnight(d: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(d, time(0), tz)


def day_period(d: date, tz: ZoneInfo) -> Period:
    return Period(d.isoformat(), _midnight(d, tz), _midnight(d + timedelta(days=1), tz))


def week_period(year: int, week: int, tz: ZoneInfo) -> Period:
    try:
        monday = date.fromisocalendar(year, week, 1)
    except ValueError:
        raise QueryError(f"{year}-W{week:02d} is not an ISO week.") from None
    return Period(
        f"{year}-W{week:02d}", _midnight(monday, tz), _midnight(monday + timedelta(days=7), tz)
    )


def month_period(year: int, month: int, tz: ZoneInfo) -> Period:
    if not 1 <= month <= 12:
        raise QueryError(f"Month must be between 1 and 12, not {month}.")
    nxt = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return Period(f"{year}-{month:02d}", _midnight(date(year, month, 1), tz), _midnight(nxt, tz))


def year_period(year: int, tz: ZoneInfo) -> Period:
    return Period(str(year), _midnight(date(year, 1, 1), tz), _midnight(date(year + 1, 1, 1), tz))


def range_period(first: date, last: date, tz: ZoneInfo) -> Period:
    """From ``first`` to ``last``, both dates included."""
    if last < first:
        raise QueryError(f"'to' ({last}) is before 'from' ({first}).")
    return Period(
        f"{first.isoformat()}..{last.isoformat()}",
        _midnight(first, tz),
        _midnight(last + timedelta(days=1), tz),
    )


def parse_period(spec: str, tz: ZoneInfo) -> Period:
    """``2026-04-12`` (day), ``2026-W15`` (ISO week), ``2026-04`` (month), ``2026`` (year),
    or ``2026-04-01..2026-06-30`` (dates, both included)."""
    spec = spec.strip()
    try:
        period = _parse(spec, tz)
    except OverflowError:  # the calendar ends in 9999
        raise QueryError(_outside(_echo(spec))) from None
    except ValueError:
        raise QueryError(
            f"Period {_echo(spec)} is not a day (2026-04-12), ISO week (2026-W15), month "
            "(2026-04), year (2026) or date range (2026-04-01..2026-06-30)."
        ) from None
    if period.start.date() < FIRST_DAY or period.end.date() > LAST_DAY + timedelta(days=1):
        raise QueryError(_outside(period.label))
    return period


def _outside(label: str) -> str:
    return (
        f"Period {label} is outside the calendar this API answers for: "
        f"{FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}."
    )


def _parse(spec: str, tz: ZoneInfo) -> Period:
    if ".." in spec:
        a, b = spec.split("..", 1)
        return range_period(date.fromisoformat(a), date.fromisoformat(b), tz)
    if "-W" in spec:
        y, w = spec.split("-W", 1)
        return week_period(int(y), int(w), tz)
    parts = spec.split("-")
    if len(parts) == 1:
        return year_period(int(parts[0]), tz)
    if len(parts) == 2:
        return month_period(int(parts[0]), int(parts[1]), tz)
    return day_period(date.fromisoformat(spec), tz)


def _echo(spec: str) -> str:
    """The spec, quoted, when it is short and plain (answers end up in logs)."""
    if len(spec) <= 40 and all(c.isalnum() or c in "-.W" for c in spec):
        return repr(spec)
    return "(as given)"


@dataclass(frozen=True)
class Comparison:
    """A current period beside the one it is judged against (CompStat style)."""

    name: str
    current: Period
    previous: Period


def comparisons(now: datetime, tz: ZoneInfo) -> list[Comparison]:
    """Today, this week, the last 28 days and the year so far, each beside the same stretch
    before it: yesterday and last week up to the same clock time, the 28 days before, and
    last year's same dates up to the same clock time."""
    local = now.astimezone(tz)
    today = local.date()
    elapsed = local - _midnight(today, tz)

    def span(label: str, start: datetime, end: datetime) -> Period:
        return Period(label, start, end)

    monday = today - timedelta(days=today.weekday())
    ytd_start = date(today.year, 1, 1)
    try:
        same_day_last_year = today.replace(year=today.year - 1)
    except ValueError:  # 29 February
        same_day_last_year = today.replace(year=today.year - 1, day=28)
    start_28 = _midnight(today - timedelta(days=27), tz)
    return [
        Comparison(
            "today",
            span("today", _midnight(today, tz), local),
            span("yesterday", _midnight(today - timedelta(days=1), tz), local - timedelta(days=1)),
        ),
        Comparison(
            "week",
            span("this week", _midnight(monday, tz), local),
            span("last week", _midnight(monday - timedelta(days=7), tz), local - timedelta(days=7)),
        ),
        Comparison(
            "28d",
            span("last 28 days", start_28, local),
            span("28 days before", start_28 - timedelta(days=28), local - timedelta(days=28)),
        ),
        Comparison(
            "ytd",
            span("year to date", _midnight(ytd_start, tz), local),
            span(
                "same period last year",
                _midnight(date(today.year - 1, 1, 1), tz),
                _midnight(same_day_last_year, tz) + elapsed,
            ),
        ),
    ]

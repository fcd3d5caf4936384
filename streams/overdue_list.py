"""The overdue list (督办清单): overdue hazards with who must act, filtered, sorted and paged."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from .errors import QueryError
from .state import DistrictState
from .subjects import Subject

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000

# The columns of an item, in the order of the CSV.
COLUMNS = (
    "subject",
    "district",
    "community",
    "category",
    "major",
    "responsible_unit",
    "found",
    "deadline",
    "overdue_seconds",
    "failed_visits",
)

_FILTERS = {
    "district": "districts",
    "category": "categories",
    "unit": "units",
    "community": "communities",
}


@dataclass(frozen=True)
class OverdueFilter:
    """What to keep: each set is any-of (None keeps all); ``major`` None keeps both."""

    districts: frozenset[str] | None = None
    categories: frozenset[str] | None = None
    units: frozenset[str] | None = None
    communities: frozenset[str] | None = None
    major: bool | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> OverdueFilter:
        """From query parameters: comma-separated codes, ``major=true|false``."""
        sets: dict[str, frozenset[str] | None] = {}
        for param, attr in _FILTERS.items():
            raw = query.get(param, "")
            codes = frozenset(c.strip() for c in raw.split(",") if c.strip())
            sets[attr] = codes or None
        raw_major = query.get("major", "").strip().lower()
        if raw_major in ("", "any"):
            major = None
        elif raw_major in ("true", "1", "yes"):
            major = True
        elif raw_major in ("false", "0", "no"):
            major = False
        else:
            raise QueryError(f"'major' must be true or false, not {raw_major!r}.")
        return cls(major=major, **sets)

    def to_query(self) -> dict[str, str]:
        out = {
            param: ",".join(sorted(codes))
            for param, attr in _FILTERS.items()
            if (codes := getattr(self, attr)) is not None
        }
        if self.major is not None:
            out["major"] = "true" if self.major else "false"
        return out

    def wants_district(self, district: str) -> bool:
        return self.districts is None or district in self.districts

    def keeps(self, s: Subject) -> bool:
        return (
            (self.categories is None or (s.category or "unknown") in self.categories)
            and (self.units is None or (s.unit or "") in self.units)
            and (self.communities is None or (s.community or "") in self.communities)
            and (self.major is None or s.major == self.major)
        )


def _iso(ts: float | None, tz: ZoneInfo) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz).isoformat()


def item(district: str, sid: str, s: Subject, now: float, tz: ZoneInfo) -> dict[str, Any]:
    """One overdue hazard as the API shows it; times in the district's zone."""
    assert s.deadline is not None
    return {
        "subject": sid,
        "district": district,
        "community": s.community,
        "category": s.category or "unknown",
        "major": s.major,
        "responsible_unit": s.unit,
        "found": _iso(s.opened, tz),
        "deadline": _iso(s.deadline, tz),
        "overdue_seconds": round(max(0.0, now - s.deadline), 3),
        "failed_visits": s.round,
    }


def district_items(
    st: DistrictState, now: float, f: OverdueFilter
) -> list[dict[str, Any]]:
    """The district's overdue hazards (the wall-clock overdue set) that the filter keeps."""
    if not f.wants_district(st.district):
        return []
    return [
        item(st.district, sid, s, now, st.tz)
        for sid, s in st.overdue.items()
        if s.deadline is not None and f.keeps(s)
    ]


def sort_key(it: Mapping[str, Any]) -> tuple[float, str, str]:
    """Longest overdue first: earliest deadline, then district and subject (a total order
    that does not move with the clock, so a cursor stays valid between pages)."""
    return (datetime.fromisoformat(it["deadline"]).timestamp(), it["district"], it["subject"])


def encode_cursor(key: tuple[float, str, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, str, str]:
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        deadline, district, subject = raw
        return float(deadline), str(district), str(subject)
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError):
        raise QueryError(
            "The cursor is not one this API gave; start again without 'cursor'."
        ) from None


def parse_limit(raw: str | None, default: int = DEFAULT_LIMIT) -> int:
    if raw is None or raw == "":
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise QueryError(f"'limit' must be a whole number, not {raw!r}.") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"'limit' must be between 1 and {MAX_LIMIT}, not {limit}.")
    return limit


def page(
    items: Iterable[dict[str, Any]], cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """The ``limit`` items after ``cursor`` in list order, and the cursor of the next page."""
    after = decode_cursor(cursor) if cursor else None
    keyed = sorted(((sort_key(it), it) for it in items), key=lambda p: p[0])
    if after is not None:
        keyed = [p for p in keyed if p[0] > after]
    chosen = keyed[:limit]
    nxt = encode_cursor(chosen[-1][0]) if len(keyed) > limit else None
    return [it for _, it in chosen], nxt


@dataclass
class Gathered:
    """Local answers of every worker merged: each district taken from one answer only."""

    items: list[dict[str, Any]]
    covered: set[str]
    missing_districts: list[str]


def merge(answers: Sequence[tuple[Sequence[str], Sequence[dict[str, Any]]]],
          wanted: Iterable[str]) -> Gathered:
    """Merge ``(districts covered, items)`` answers: a district two answers cover (a
    rebalance between two requests) is taken from the first, so nothing is listed twice;
    a wanted district no answer covers is reported missing."""
    covered: set[str] = set()
    items: list[dict[str, Any]] = []
    for districts, its in answers:
        fresh = {d for d in districts if d not in covered}
        covered |= fresh
        items.extend(it for it in its if it["district"] in fresh)
    missing = sorted(set(wanted) - covered)
    return Gathered(items, covered, missing)


def open_page(
    st: DistrictState, now: float, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None, int]:
    """One page of a district's open hazards, earliest deadline first (so the overdue ones
    lead, longest overdue first); the next page's cursor; how many are open."""
    after = decode_cursor(cursor) if cursor else None
    keyed: list[tuple[tuple[float, str, str], str, Subject]] = []
    for sid, s in st.open_hazard_items():
        key = (s.deadline if s.deadline is not None else 1e18, st.district, sid)
        if after is None or key > after:
            keyed.append((key, sid, s))
    total = st.open_hazards
    keyed.sort(key=lambda p: p[0])
    chosen = keyed[:limit]
    nxt = encode_cursor(chosen[-1][0]) if len(keyed) > limit else None
    items = []
    for _, sid, s in chosen:
        overdue = sid in st.overdue
        items.append({
            "id": sid,
            "category": s.category,
            "major": s.major,
            "community": s.community,
            "responsible_unit": s.unit,
            "found": _iso(s.opened, st.tz),
            "deadline": _iso(s.deadline, st.tz),
            "overdue": overdue,
            "overdue_seconds": (
                round(now - s.deadline, 3) if s.deadline is not None and overdue else None
            ),
            "failed_visits": s.round,
        })
    return items, nxt, total

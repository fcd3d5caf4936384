"""Pure, deterministic generation of realistic Watchfloor event streams and synthetic cities."""

from __future__ import annotations

import base64
import bisect
import dataclasses
import heapq
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import orjson

from .errors import ReferenceDataError, SettingsError, WatchfloorError
from .events import KIND_OF_TYPE, REASONS, STREAM_OF_KIND, TYPE_OF_KIND, Kind, Stream
from .reference import Reference

HOUR = 3600
DAY = 86400
BUCKET_SECONDS = 600  # width of the generator's calendar-queue buckets

# --------------------------------------------------------------------------------------
# What a record is meant to be
# --------------------------------------------------------------------------------------


class Intent(StrEnum):
    """What the engine must do with a record: count it, or dead-letter it and why."""

    VALID = "valid"
    DUPLICATE = "duplicate"  # the same bytes again: dead-lettered as ``duplicate``
    LATE = "late"  # older than the district watermark minus the grace: ``too_late``
    MALFORMED = "malformed"  # rejected by the validator; ``reason`` says which check


class SimRecord(NamedTuple):
    """One record ready to produce, with the truth a test needs about it."""

    at: float  # simulated publish time (POSIX seconds); non-decreasing along a stream
    stream: Stream
    key: bytes  # the district code (or the unknown code of an ``unknown_district``)
    value: bytes
    intent: Intent
    reason: str | None  # the rejection reason the engine must give; None when valid
    kind: Kind | None  # the event kind the value claims, when it has one
    ts: float | None  # the event time in the value, when it has a valid one


STREAM_NAMES: dict[Stream, str] = {
    Stream.INCIDENTS: "incidents",
    Stream.DISPUTES: "disputes",
    Stream.PATROLS: "patrols",
}
STREAM_OF_NAME: dict[str, Stream] = {v: k for k, v in STREAM_NAMES.items()}

# Every reason the validator (not the engine's state) gives; ``wrong_partition`` is
# produced by the producing loop, which sends the record to another partition.
MALFORMED_REASONS: tuple[str, ...] = tuple(
    r for r in REASONS if r not in ("duplicate", "too_late", "internal_error")
)
# A district code that matches the pattern but is in no reference data.
UNKNOWN_DISTRICT = "zz-not-a-district"
# Bigger than WATCHFLOOR_MAX_RECORD_BYTES (64 KiB) by a margin.
TOO_LARGE_PADDING = 70 * 1024

SUFFIX_OF_KIND: dict[Kind, str] = {
    Kind.CASE_FILED: "filed",
    Kind.CASE_CLEARED: "cleared",
    Kind.DISPUTE_REPORTED: "reported",
    Kind.DISPUTE_MEDIATION_STARTED: "mediation",
    Kind.DISPUTE_RESOLVED: "resolved",
    Kind.DISPUTE_ESCALATED: "escalated",
    Kind.PATROL_COMPLETED: "completed",
    Kind.HAZARD_FOUND: "found",
    Kind.HAZARD_RECTIFIED: "rectified",
    Kind.HAZARD_VERIFIED: "verified",
    Kind.ACCIDENT_REPORTED: "report",
}
SCHEMA_OF_KIND: dict[Kind, str] = {
    k: "https://watchfloor.dev/schemas/" + t.removeprefix("watchfloor.") + ".json"
    for k, t in TYPE_OF_KIND.items()
}

# --------------------------------------------------------------------------------------
# The city as the simulator sees it
# --------------------------------------------------------------------------------------

# Conventional unit codes (``<district>-<suffix>``) for districts whose reference entry
# lists no units, as synthetic cities do. Kept in step with seeds/reference/city.json.
DEFAULT_HAZARD_UNITS: dict[str, str] = {
    "fire": "fire-brigade",
    "road_traffic": "traffic-police",
    "hazardous_chemicals": "work-safety-bureau",
    "construction": "housing-bureau",
    "special_equipment": "market-supervision",
    "gas": "urban-management",
    "mines_tailings": "work-safety-bureau",
    "school": "education-bureau",
    "food_safety": "market-supervision",
    "road_collapse": "urban-management",
    "dangerous_bridge": "transport-bureau",
    "water_transport": "transport-bureau",
    "fireworks": "work-safety-bureau",
    "other": "urban-management",
}
DEFAULT_DISPUTE_UNITS: dict[str, str] = {
    "enterprise_restructuring": "hrss-bureau",
    "social_security": "hrss-bureau",
    "rural_stability": "agriculture-office",
    "demolition_compensation": "housing-bureau",
    "environmental_pollution": "ecology-bureau",
    "unpaid_wages": "hrss-bureau",
    "school": "education-bureau",
}
DEFAULT_ESCALATION_UNITS: tuple[str, ...] = ("stability-office", "petition-office", "people-court")
DEFAULT_CENTRE = (34.75, 113.65)


@dataclass(frozen=True, slots=True)
class SimDistrict:
    code: str
    key: bytes
    weight: float
    communities: tuple[str, ...]
    day_teams: tuple[str, ...]  # teams on duty 08:00-20:00 local
    night_teams: tuple[str, ...]  # teams on duty 20:00-08:00 local
    areas: tuple[str, ...]  # patrol areas: key areas, then communities
    hazard_units: Mapping[str, str]  # hazard category -> responsible unit
    dispute_units: Mapping[str, str]  # dispute category -> department (else a mediation committee)
    mediation: tuple[str, ...]  # mediation committees (调委会)
    escalation: tuple[str, ...]
    centre: tuple[float, float]


@dataclass(frozen=True)
class SimCity:
    code: str
    timezone: ZoneInfo
    districts: tuple[SimDistrict, ...]
    categories: Mapping[str, tuple[str, ...]]

    def district(self, code: str) -> SimDistrict:
        for d in self.districts:
            if d.code == code:
                return d
        raise ReferenceDataError(f"District {code!r} is not in the reference data.")

    def subset(self, count: int) -> SimCity:
        """The first ``count`` districts (the order of the reference file)."""
        if count < 1 or count > len(self.districts):
            raise SettingsError(
                f"The reference data has {len(self.districts)} districts; cannot simulate "
                f"{count}. Write a synthetic city with `watchfloor simulate reference "
                f"--districts {count} --output DIR/city.json` and point "
                "WATCHFLOOR_REFERENCE_FILE at it."
            )
        return SimCity(self.code, self.timezone, self.districts[:count], self.categories)


def city_from_reference(reference: Reference, document: Mapping[str, Any]) -> SimCity:
    """Combine the loaded reference with the extra fields of its ``city.json`` document.

    ``reference`` gives the codes the engine accepts; ``document`` (the same file,
    parsed) adds what only the simulator reads: population, units, committees, areas.
    """
    raw_by_code = {
        raw.get("code"): raw for raw in document.get("districts", []) if isinstance(raw, dict)
    }
    districts = []
    for code, ref in reference.districts.items():
        raw = raw_by_code.get(code, {})
        if not ref.communities:
            raise ReferenceDataError(f"District {code!r} lists no communities.")
        teams = raw.get("patrol_teams") or [{"code": t, "shift": "both"} for t in ref.patrol_teams]
        if not teams:
            teams = [{"code": f"{code}-pt01", "shift": "both"}]
        day = tuple(t["code"] for t in teams if t.get("shift", "both") in ("day", "both"))
        night = tuple(t["code"] for t in teams if t.get("shift", "both") in ("night", "both"))
        all_teams = tuple(t["code"] for t in teams)
        hazard_units = {c: f"{code}-{s}" for c, s in DEFAULT_HAZARD_UNITS.items()}
        dispute_units = {c: f"{code}-{s}" for c, s in DEFAULT_DISPUTE_UNITS.items()}
        escalation = tuple(f"{code}-{s}" for s in DEFAULT_ESCALATION_UNITS)
        units = raw.get("units")
        if units:
            hazard_units, dispute_units, escalation = {}, {}, ()
            for unit in units:
                handles = unit.get("handles", {})
                for c in handles.get("hazard", []):
                    hazard_units.setdefault(c, unit["code"])
                for c in handles.get("dispute", []):
                    dispute_units.setdefault(c, unit["code"])
                if unit.get("role") == "escalation":
                    escalation += (unit["code"],)
            missing = set(reference.categories.get("hazard", ())) - set(hazard_units)
            if missing:
                raise ReferenceDataError(
                    f"District {code!r}: no unit handles hazard categories {sorted(missing)}."
                )
            if not escalation:
                raise ReferenceDataError(f"District {code!r} has no escalation unit.")
        mediation = tuple(m["code"] for m in raw.get("mediation_committees", ())) or tuple(
            f"{c}-mc" for c in ref.communities
        )
        areas = tuple(a["code"] for a in raw.get("key_areas", ())) + ref.communities
        centre_raw = raw.get("centre") or {}
        centre = (
            float(centre_raw.get("lat", DEFAULT_CENTRE[0])),
            float(centre_raw.get("lon", DEFAULT_CENTRE[1])),
        )
        districts.append(
            SimDistrict(
                code=code,
                key=code.encode(),
                weight=float(raw.get("population", 500_000)) / 1e6,
                communities=ref.communities,
                day_teams=day or all_teams,
                night_teams=night or all_teams,
                areas=areas,
                hazard_units=hazard_units,
                dispute_units=dispute_units,
                mediation=mediation,
                escalation=escalation,
                centre=centre,
            )
        )
    return SimCity(reference.city_code, reference.timezone, tuple(districts), reference.categories)


def synthetic_city_document(
    districts: int, *, timezone: str = "Asia/Shanghai", communities: int = 4
) -> dict[str, Any]:
    """A city of ``districts`` equal districts ``d0001``... for benchmarks.

    Each has one street office, ``communities`` communities, a day and a night patrol
    team, and no unit list (the simulator uses the conventional unit codes).
    """
    if not 1 <= districts <= 999_999:
        raise SettingsError(f"A synthetic city needs 1 to 999999 districts, not {districts}.")
    width = max(4, len(str(districts)))
    out = []
    for i in range(1, districts + 1):
        code = f"d{i:0{width}d}"
        street = f"{code}-s1"
        out.append(
            {
                "code": code,
                "name": f"District {i}",
                "name_zh": f"第{i}区",
                "kind": "district",
                "population": 500_000,
                "streets": [
                    {
                        "code": street,
                        "name": "Street office 1",
                        "communities": [
                            {"code": f"{street}-c{j:02d}", "name": f"Community {j}"}
                            for j in range(1, communities + 1)
                        ],
                    }
                ],
                "patrol_teams": [
                    {"code": f"{code}-pt01", "shift": "day"},
                    {"code": f"{code}-pt02", "shift": "night"},
                ],
            }
        )
    return {
        "city": {
            "code": f"synthetic-{districts}",
            "name": f"Synthetic city of {districts} districts",
            "name_zh": "合成城市",
            "timezone": timezone,
        },
        "districts": out,
    }


# --------------------------------------------------------------------------------------
# Local time, fast
# --------------------------------------------------------------------------------------


class LocalTime:
    """Local-time arithmetic for one zone, fast.

    ``datetime.isoformat`` with a ZoneInfo costs a few microseconds; at tens of
    thousands of events a second the generator formats its timestamps itself. A zone
    whose offset has not changed since 2000 and will not change before 2100 by its
    current rules (Asia/Shanghai) takes a fixed-offset path; others cache offsets by
    hour.
    """

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._offsets: dict[int, tuple[int, str]] = {}
        self._dates: dict[int, str] = {}
        self._minutes = [f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
        self._seconds = [f"{s:02d}" for s in range(60)]
        probes = {
            self._lookup(datetime(year, month, 1, tzinfo=UTC).timestamp())
            for year in range(2000, 2100)
            for month in (1, 4, 7, 10)
        }
        self.fixed: tuple[int, str] | None = probes.pop() if len(probes) == 1 else None

    def _lookup(self, ts: float) -> tuple[int, str]:
        delta = datetime.fromtimestamp(ts, UTC).astimezone(self.tz).utcoffset()
        seconds = int(delta.total_seconds()) if delta is not None else 0
        sign = "+" if seconds >= 0 else "-"
        hh, mm = divmod(abs(seconds) // 60, 60)
        return seconds, f"{sign}{hh:02d}:{mm:02d}"

    def _offset(self, ts: float) -> tuple[int, str]:
        if self.fixed is not None:
            return self.fixed
        hour = int(ts // HOUR)
        got = self._offsets.get(hour)
        if got is None:
            got = self._offsets[hour] = self._lookup(hour * HOUR)
        return got

    def offset(self, ts: float) -> int:
        return self._offset(ts)[0]

    def hour(self, ts: float) -> int:
        off = self.fixed[0] if self.fixed is not None else self._offset(ts)[0]
        return int(((ts + off) % DAY) // HOUR)

    def next_hour(self, ts: float) -> float:
        """The next full local hour after ``ts``."""
        off = self._offset(ts)[0]
        return ts - (ts + off) % HOUR + HOUR

    def midnight(self, ts: float) -> int:
        """POSIX time of the local midnight that starts the day of ``ts``."""
        off = self._offset(ts)[0]
        local = int(ts) + off
        day = local - local % DAY
        if self.fixed is not None:
            return day - off
        # The offset at midnight, which a DST change since then may make different.
        return day - self._offset(day - off)[0]

    def at_hour(self, ts: float, days: int, hour: float) -> int:
        """``hour`` o'clock local, ``days`` days after the day of ``ts``."""
        midnight = self.midnight(ts)
        base = midnight + days * DAY + int(hour * HOUR)
        if self.fixed is not None:
            return base
        # Re-read the offset at the target: a DST change in between moves wall time.
        return base + self.offset(midnight) - self.offset(base)

    def format(self, ts: int) -> str:
        off, text = self.fixed if self.fixed is not None else self._offset(ts)
        day, sod = divmod(int(ts) + off, DAY)
        prefix = self._dates.get(day)
        if prefix is None:
            prefix = self._dates[day] = (datetime(1970, 1, 1) + timedelta(days=day)).strftime(
                "%Y-%m-%dT"
            )
        return prefix + self._minutes[sod // 60] + self._seconds[sod % 60] + text


# --------------------------------------------------------------------------------------
# The model: what happens, how often, how long it takes
# --------------------------------------------------------------------------------------


def _rhythm(values: Sequence[float]) -> tuple[float, ...]:
    """Normalise 24 hourly weights to a mean of 1, so rates are daily averages."""
    mean = sum(values) / len(values)
    return tuple(v / mean for v in values)


# Local hour 0..23. Crime peaks in the evening; reports and inspections follow office
# hours; patrols run day and night, thinner at shift changes.
RHYTHM_INCIDENTS = _rhythm(
    [0.9, 0.7, 0.5, 0.4, 0.3, 0.3, 0.4, 0.6, 0.9, 1.0, 1.0, 1.1,
     1.1, 1.0, 1.0, 1.1, 1.2, 1.4, 1.6, 1.7, 1.7, 1.6, 1.4, 1.1]
)  # fmt: skip
RHYTHM_DISPUTES = _rhythm(
    [0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.5, 1.2, 1.8, 1.9, 1.8,
     1.3, 1.5, 1.8, 1.8, 1.7, 1.5, 1.2, 1.0, 0.8, 0.6, 0.4, 0.3]
)  # fmt: skip
RHYTHM_HAZARDS = _rhythm(
    [0.1, 0.05, 0.05, 0.05, 0.05, 0.1, 0.2, 0.6, 1.8, 2.4, 2.5, 2.2,
     1.2, 1.8, 2.4, 2.4, 2.2, 1.6, 0.8, 0.4, 0.3, 0.2, 0.15, 0.1]
)  # fmt: skip
RHYTHM_PATROLS = _rhythm(
    [1.1, 1.1, 1.0, 1.0, 0.9, 0.6, 0.4, 0.5, 1.0, 1.1, 1.1, 1.0,
     0.9, 1.0, 1.1, 1.1, 1.0, 0.8, 0.5, 0.6, 1.1, 1.2, 1.2, 1.1]
)  # fmt: skip

# Starts per day per million inhabitants, at the natural scale. The seed district
# (about 1.6 M people) filed 1,538 cases in nine months, ~5.6 a day.
NATURAL_STARTS: dict[str, float] = {
    "case": 3.5,
    "dispute": 2.0,
    "hazard": 18.0,
    "patrol": 16.0,
}


class IncidentModel(NamedTuple):
    code: str
    weight: float
    clear_p: float  # share of cases ever cleared
    clear_median_h: float  # median hours from filing to clearance
    severity: tuple[float, float, float]  # minor, serious, major


INCIDENTS: tuple[IncidentModel, ...] = (
    IncidentModel("robbery", 3, 0.72, 72, (0.2, 0.6, 0.2)),
    IncidentModel("snatching", 4, 0.50, 96, (0.5, 0.45, 0.05)),
    IncidentModel("theft", 45, 0.26, 240, (0.8, 0.18, 0.02)),
    IncidentModel("fight", 15, 0.82, 10, (0.6, 0.35, 0.05)),
    IncidentModel("traffic_accident", 15, 0.80, 20, (0.6, 0.3, 0.1)),
    IncidentModel("fire", 4, 0.70, 48, (0.4, 0.4, 0.2)),
    IncidentModel("work_safety_accident", 3, 0.88, 120, (0.3, 0.4, 0.3)),
    IncidentModel("campus", 3, 0.80, 36, (0.6, 0.35, 0.05)),
    IncidentModel("other", 8, 0.45, 96, (0.7, 0.25, 0.05)),
)


class DisputeModel(NamedTuple):
    code: str
    weight: float
    resolve_p: float  # of the disputes in mediation
    escalate_p: float  # of the disputes in mediation


DISPUTES: tuple[DisputeModel, ...] = (
    DisputeModel("neighbourhood", 35, 0.92, 0.02),
    DisputeModel("unpaid_wages", 12, 0.85, 0.08),
    DisputeModel("demolition_compensation", 8, 0.70, 0.15),
    DisputeModel("environmental_pollution", 6, 0.75, 0.10),
    DisputeModel("social_security", 8, 0.85, 0.05),
    DisputeModel("enterprise_restructuring", 3, 0.70, 0.15),
    DisputeModel("rural_stability", 8, 0.80, 0.08),
    DisputeModel("school", 5, 0.90, 0.03),
    DisputeModel("other", 15, 0.85, 0.05),
)
P_MEDIATION = 0.95  # disputes that reach mediation (调处); the rest wait or escalate
P_DIRECT_ESCALATION = 0.02  # escalated without mediation (mass incidents mostly)


class HazardModel(NamedTuple):
    code: str
    weight: float
    days: int  # rectification deadline, days after it was found (限期整改)
    major_days: int  # deadline of a major hazard under listed supervision (挂牌督办)
    major_p: float


HAZARDS: tuple[HazardModel, ...] = (
    HazardModel("fire", 20, 3, 15, 0.03),
    HazardModel("road_traffic", 12, 7, 30, 0.03),
    HazardModel("hazardous_chemicals", 5, 7, 30, 0.15),
    HazardModel("construction", 15, 10, 45, 0.05),
    HazardModel("special_equipment", 7, 15, 30, 0.04),
    HazardModel("gas", 8, 3, 15, 0.05),
    HazardModel("mines_tailings", 2, 30, 90, 0.20),
    HazardModel("school", 5, 7, 30, 0.03),
    HazardModel("food_safety", 8, 3, 15, 0.02),
    HazardModel("road_collapse", 4, 2, 15, 0.05),
    HazardModel("dangerous_bridge", 2, 30, 90, 0.20),
    HazardModel("water_transport", 2, 7, 30, 0.08),
    HazardModel("fireworks", 3, 2, 7, 0.08),
    HazardModel("other", 7, 7, 30, 0.01),
)
# Outcomes of a hazard, in order: fixed on the spot (立查立改), before the deadline,
# after it, long after it, never within the simulation.
P_HAZARD_ON_SPOT = 0.10
P_HAZARD_ON_TIME = 0.72
P_HAZARD_LATE = 0.10
P_HAZARD_VERY_LATE = 0.03
P_VERIFY = 0.60  # rectified hazards that get a look-back visit (回头看)
P_VERIFY_FAILS = 0.06  # look-back visits that find the rectification did not hold
P_RERECTIFY = 0.70  # failed ones rectified again before the new deadline
FOUND_BY = (("inspection", 0.45), ("grid_worker", 0.35), ("public_report", 0.20))
PATROL_FINDINGS_MEAN = 0.35

SEVERITIES = ("minor", "serious", "major")


def _expected_records_per_start() -> dict[str, float]:
    """Mean records a lifecycle of each kind emits; turns a rate into start rates."""
    w = sum(m.weight for m in INCIDENTS)
    case = 1 + sum(m.weight * m.clear_p for m in INCIDENTS) / w
    wd = sum(m.weight for m in DISPUTES)
    after_mediation = sum(m.weight * (m.resolve_p + m.escalate_p) for m in DISPUTES) / wd
    dispute = (
        1 + P_DIRECT_ESCALATION + (1 - P_DIRECT_ESCALATION) * P_MEDIATION * (1 + after_mediation)
    )
    rectified = P_HAZARD_ON_SPOT + P_HAZARD_ON_TIME + P_HAZARD_LATE + P_HAZARD_VERY_LATE
    verified = P_VERIFY * (1 + P_VERIFY_FAILS * P_RERECTIFY * (1 + P_VERIFY))
    hazard = 1 + rectified * (1 + verified)
    patrol = 1 + PATROL_FINDINGS_MEAN * hazard
    return {"case": case, "dispute": dispute, "hazard": hazard, "patrol": patrol}


RECORDS_PER_START = _expected_records_per_start()


def natural_rate(city: SimCity) -> float:
    """Records per second the city produces at its natural scale (no bad records)."""
    weight = sum(d.weight for d in city.districts)
    per_day = sum(NATURAL_STARTS[k] * RECORDS_PER_START[k] for k in NATURAL_STARTS)
    return weight * per_day / DAY


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. Every time is tz-aware; nothing here reads a clock."""

    start: datetime
    end: datetime | None = None  # None: forever
    rate: float = 1.0  # records per second, all intents together, once lifecycles flow
    seed: int = 0
    late_share: float = 0.0
    duplicate_share: float = 0.0
    malformed_share: float = 0.0
    malformed_reasons: tuple[str, ...] = MALFORMED_REASONS
    grace_seconds: float = 24 * HOUR
    # Hazards found at ``drill_at`` (default: start) with deadlines a few minutes later
    # and never rectified, so that the overdue alert can be seen in a demo.
    overdue_drill: int = 0
    drill_at: datetime | None = None
    tag: str = ""  # put into every subject id, so that two runs never share ids
    max_records: int | None = None
    # Before ``live_from``, lifecycles start at ``history_rate`` instead of ``rate``: a
    # backfill of days at a live rate would be millions of records to read first.
    live_from: datetime | None = None
    history_rate: float | None = None

    def check(self) -> None:
        if self.start.tzinfo is None or (self.end is not None and self.end.tzinfo is None):
            raise SettingsError("The simulation's start and end must carry a UTC offset.")
        if self.end is not None and self.end <= self.start:
            raise SettingsError("The simulation must end after it starts.")
        if not self.rate > 0 or not math.isfinite(self.rate):
            raise SettingsError(f"The rate must be a positive number of events/s, not {self.rate}.")
        shares = (self.late_share, self.duplicate_share, self.malformed_share)
        if any(s < 0 for s in shares) or sum(shares) > 0.5:
            raise SettingsError(
                "Late, duplicate and malformed shares must be between 0 and 1 and add up to "
                "at most 0.5."
            )
        unknown = set(self.malformed_reasons) - set(MALFORMED_REASONS)
        if unknown:
            raise SettingsError(f"Unknown malformed reasons: {', '.join(sorted(unknown))}.")
        if self.malformed_share > 0 and not self.malformed_reasons:
            raise SettingsError("A malformed share needs at least one malformed reason.")
        if self.tag and not all(c.isalnum() or c == "-" for c in self.tag):
            raise SettingsError(
                f"The id tag may hold letters, digits and hyphens, not {self.tag!r}."
            )
        if self.history_rate is not None and not self.history_rate > 0:
            raise SettingsError(f"The history rate must be positive, not {self.history_rate}.")
        if self.live_from is not None and self.live_from.tzinfo is None:
            raise SettingsError("The start of the live part must carry a UTC offset.")
        if self.overdue_drill < 0:
            raise SettingsError("The overdue drill cannot have a negative number of hazards.")


# --------------------------------------------------------------------------------------
# Encoding events
# --------------------------------------------------------------------------------------


class Encoder:
    """Builds CloudEvents JSON for one city; shared by the generator and the scenarios."""

    def __init__(self, city: SimCity) -> None:
        self.city = city
        self.local = LocalTime(city.timezone)
        self._sources: dict[tuple[str, Kind], str] = {}

    @staticmethod
    def source(district: str, kind: Kind) -> str:
        stream = STREAM_OF_KIND[kind]
        if stream is Stream.INCIDENTS:
            return f"/{district}/case-system"
        if stream is Stream.DISPUTES:
            return f"/{district}/mediation-app"
        if kind is Kind.PATROL_COMPLETED:
            return f"/{district}/patrol-app"
        return f"/{district}/inspection-app"

    def _source(self, district: str, kind: Kind) -> str:
        got = self._sources[(district, kind)] = self.source(district, kind)
        return got

    def document(
        self,
        district: str,
        kind: Kind,
        subject: str,
        ts: int,
        data: dict[str, Any],
        suffix: str = "",
    ) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": f"{subject}-{SUFFIX_OF_KIND[kind]}{suffix}",
            "source": self._sources.get((district, kind)) or self._source(district, kind),
            "type": TYPE_OF_KIND[kind],
            "time": self.local.format(ts),
            "subject": subject,
            "datacontenttype": "application/json",
            "dataschema": SCHEMA_OF_KIND[kind],
            "district": district,
            "data": data,
        }

    def encode(
        self,
        district: str,
        kind: Kind,
        subject: str,
        ts: int,
        data: dict[str, Any],
        suffix: str = "",
    ) -> bytes:
        return orjson.dumps(self.document(district, kind, subject, ts, data, suffix))


# --------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------

# Heap operations
_START, _EMIT, _DUP, _LATE, _BAD = range(5)
_LIFECYCLES = ("case", "dispute", "hazard", "patrol")
_RHYTHMS = (RHYTHM_INCIDENTS, RHYTHM_DISPUTES, RHYTHM_HAZARDS, RHYTHM_PATROLS)


def generate_events(city: SimCity, config: SimConfig) -> Iterator[SimRecord]:
    """Yield the records of a simulated city, in publish order, deterministically.

    Pure: no I/O, no clock, no global random state. The same city and config give the
    same records, byte for byte. Lifecycles (cases, disputes, hazards, patrols) start as
    Poisson arrivals with a day/night rhythm and emit their later transitions after
    realistic delays; each valid record may be followed by a duplicate, a late or a
    malformed record according to the configured shares.

    Memory grows with the number of open lifecycles: about the start rate times the
    mean lifetime (days for hazards), a few hundred bytes each.
    """
    config.check()
    return _Generator(city, config).run()


class _Generator:
    def __init__(self, city: SimCity, config: SimConfig) -> None:
        self.city = city
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.random = self.rng.random
        self.enc = Encoder(city)
        self.local = self.enc.local
        # A calendar queue: a heap of what is due before ``horizon``, and later entries in
        # buckets by hour. Lifecycles run for days, so most entries wait far ahead; kept out
        # of the heap, they cost an append instead of a sift through a deep heap.
        self.heap: list[tuple[Any, ...]] = []
        self.horizon = -math.inf
        self.buckets: dict[int, list[tuple[Any, ...]]] = {}
        self.seq = 0
        self.counters = dict.fromkeys(("cs", "dp", "hz", "pr", "xx"), 0)
        self.tag = config.tag + "-" if config.tag and not config.tag.endswith("-") else config.tag
        self.watermark: dict[tuple[int, Stream], float] = {}
        self.index = {d.code: i for i, d in enumerate(city.districts)}
        weights = [d.weight for d in city.districts]
        total = sum(weights)
        if total <= 0:
            raise ReferenceDataError("The districts' populations add up to zero.")
        self.cum_weights: list[float] = []
        acc = 0.0
        for w in weights:
            acc += w
            self.cum_weights.append(acc / total)
        valid_share = 1 - config.late_share - config.duplicate_share - config.malformed_share
        self.p_dup = config.duplicate_share / valid_share
        self.p_late = self.p_dup + config.late_share / valid_share
        self.p_bad = self.p_late + config.malformed_share / valid_share
        # Mean start rate per lifecycle kind (starts/s, city-wide, over a day), live and
        # before the live part.
        scale = config.rate * valid_share / natural_rate(city)
        self.mean_rate = [NATURAL_STARTS[name] * total * scale / DAY for name in _LIFECYCLES]
        history = config.history_rate if config.history_rate is not None else config.rate
        scale = history * valid_share / natural_rate(city)
        self.history_mean_rate = [NATURAL_STARTS[n] * total * scale / DAY for n in _LIFECYCLES]
        self.live_from = config.live_from.timestamp() if config.live_from is not None else -math.inf
        self.inc_cum = _cumulative([m.weight for m in INCIDENTS])
        self.dis_cum = _cumulative([m.weight for m in DISPUTES])
        self.haz_cum = _cumulative([m.weight for m in HAZARDS])
        self.found_by_cum = _cumulative([w for _, w in FOUND_BY])
        # A 70 KB record costs as much as a few hundred others: send fewer.
        self.bad_reasons = tuple(config.malformed_reasons)
        self.bad_cum: list[float] = []
        if self.bad_reasons:
            self.bad_cum = _cumulative(
                [0.25 if r == "too_large" else 1.0 for r in self.bad_reasons]
            )
        self.bad_variant = 0

    # -- helpers --------------------------------------------------------------------

    def push(self, at: float, op: int, payload: Any) -> None:
        self.seq += 1
        if at < self.horizon:
            heapq.heappush(self.heap, (at, self.seq, op, payload))
        else:
            bucket = int(at // BUCKET_SECONDS)
            got = self.buckets.get(bucket)
            if got is None:
                self.buckets[bucket] = [(at, self.seq, op, payload)]
            else:
                got.append((at, self.seq, op, payload))

    def refill(self) -> bool:
        """Move the next bucket into the (empty) heap; False when nothing is left."""
        if not self.buckets:
            return False
        bucket = int(self.horizon // BUCKET_SECONDS) if self.horizon > -math.inf else None
        if bucket is None or bucket not in self.buckets:
            bucket = min(self.buckets)
        entries = self.buckets.pop(bucket)
        heapq.heapify(entries)
        self.heap = entries
        self.horizon = (bucket + 1) * BUCKET_SECONDS
        return True

    def subject(self, prefix: str, district: str) -> str:
        n = self.counters[prefix] = self.counters[prefix] + 1
        return f"{prefix}-{district}-{self.tag}{n:07d}"

    def emit(
        self,
        di: int,
        kind: Kind,
        subject: str,
        ts: int,
        data: dict[str, Any],
        not_before: float,
        suffix: str = "",
    ) -> float:
        """Schedule one valid event; return when it is published."""
        # Publishers sync within seconds, sometimes minutes (an app offline for a while):
        # an exponential delay, mean 20 s, at most 15 min. Inlined: this runs per event.
        at = ts - math.log(1.0 - self.random()) * 20.0
        if at > ts + 900.0:
            at = ts + 900.0
        if at < not_before + 1.0:
            at = not_before + 1.0
        self.schedule(at, di, kind, subject, ts, data, suffix)
        return at

    def schedule(
        self,
        at: float,
        di: int,
        kind: Kind,
        subject: str,
        ts: int,
        data: dict[str, Any],
        suffix: str,
    ) -> None:
        # A flat tuple with the data already serialised: hundreds of thousands wait in
        # the queue at once, and a dict costs three times its JSON text. Kept as str: the
        # bytes orjson returns hold a buffer of about 4 KiB each, however short.
        self.seq += 1
        entry = (at, self.seq, _EMIT, di, kind, subject, ts, orjson.dumps(data).decode(), suffix)
        if at < self.horizon:
            heapq.heappush(self.heap, entry)
        else:
            bucket = int(at // BUCKET_SECONDS)
            got = self.buckets.get(bucket)
            if got is None:
                self.buckets[bucket] = [entry]
            else:
                got.append(entry)

    def office(self, ts: float) -> int:
        """Move a follow-up that falls at night into the next working morning, mostly."""
        h = self.local.hour(ts)
        if 8 <= h < 20 or self.rng.random() < 0.15:
            return int(ts)
        days = 1 if h >= 20 else 0
        return self.local.at_hour(ts, days, 8) + int(self.rng.random() * 2 * HOUR)

    def lognormal_hours(self, median_h: float, sigma: float) -> float:
        return min(self.rng.lognormvariate(math.log(median_h * HOUR), sigma), 120 * DAY)

    def community(self, d: SimDistrict) -> str:
        return d.communities[int(self.rng.random() * len(d.communities))]

    # -- lifecycles -----------------------------------------------------------------

    def start_case(self, di: int, t: int) -> None:
        rng = self.rng
        d = self.city.districts[di]
        m = INCIDENTS[bisect.bisect(self.inc_cum, rng.random())]
        u = rng.random()
        sev = (
            "minor"
            if u < m.severity[0]
            else "serious"
            if u < m.severity[0] + m.severity[1]
            else "major"
        )
        subject = self.subject("cs", d.code)
        community = self.community(d)
        loc = {
            "lat": round(d.centre[0] + rng.gauss(0, 0.02), 3),
            "lon": round(d.centre[1] + rng.gauss(0, 0.025), 3),
        }
        data = {"category": m.code, "severity": sev, "community": community, "location": loc}
        at = self.emit(di, Kind.CASE_FILED, subject, t, data, t)
        if rng.random() < m.clear_p:
            tc = max(t + 60, int(t + self.lognormal_hours(m.clear_median_h, 1.2)))
            self.emit(
                di, Kind.CASE_CLEARED, subject, tc, {"category": m.code, "community": community}, at
            )

    def start_dispute(self, di: int, t: int) -> None:
        rng = self.rng
        d = self.city.districts[di]
        m = DISPUTES[bisect.bisect(self.dis_cum, rng.random())]
        subject = self.subject("dp", d.code)
        community = self.community(d)
        unit = d.dispute_units.get(m.code) or d.mediation[int(rng.random() * len(d.mediation))]
        mass = rng.random() < 0.03
        people = (
            int(10 + rng.expovariate(1 / 15)) if mass else 1 + int(rng.expovariate(1 / 1.5)) + 1
        )
        data = {
            "category": m.code,
            "responsible_unit": unit,
            "community": community,
            "people_involved": people,
        }
        at = self.emit(di, Kind.DISPUTE_REPORTED, subject, t, data, t)
        esc_to = d.escalation[int(rng.random() * len(d.escalation))]
        if rng.random() < (0.3 if mass else P_DIRECT_ESCALATION):
            te = self.office(t + self.lognormal_hours(24, 0.8))
            self.emit(
                di, Kind.DISPUTE_ESCALATED, subject, max(te, t + 60), {"escalated_to": esc_to}, at
            )
            return
        if rng.random() >= P_MEDIATION:
            return
        tm = max(t + 60, self.office(t + self.lognormal_hours(4, 1.0)))
        at = self.emit(
            di, Kind.DISPUTE_MEDIATION_STARTED, subject, tm, {"responsible_unit": unit}, at
        )
        u = rng.random()
        if u < m.resolve_p:
            tr = max(tm + 60, self.office(tm + self.lognormal_hours(72, 1.0)))
            self.emit(di, Kind.DISPUTE_RESOLVED, subject, tr, {"responsible_unit": unit}, at)
        elif u < m.resolve_p + m.escalate_p:
            te = max(tm + 60, self.office(tm + self.lognormal_hours(168, 0.8)))
            self.emit(di, Kind.DISPUTE_ESCALATED, subject, te, {"escalated_to": esc_to}, at)

    def start_hazard(
        self, di: int, t: int, found_by: str | None = None, not_before: float = 0
    ) -> None:
        rng = self.rng
        d = self.city.districts[di]
        m = HAZARDS[bisect.bisect(self.haz_cum, rng.random())]
        major = rng.random() < m.major_p
        days = m.major_days if major else m.days
        deadline = self.local.at_hour(t, days, 18)
        if deadline <= t + HOUR:
            deadline += DAY
        if found_by is None:
            found_by = FOUND_BY[bisect.bisect(self.found_by_cum, rng.random())][0]
        subject = self.subject("hz", d.code)
        unit = d.hazard_units[m.code]
        data = {
            "category": m.code,
            "major": major,
            "deadline": self.local.format(deadline),
            "responsible_unit": unit,
            "community": self.community(d),
            "found_by": found_by,
        }
        at = self.emit(di, Kind.HAZARD_FOUND, subject, t, data, max(t, not_before))
        u = rng.random()
        if u < P_HAZARD_ON_SPOT:
            tr = t + int(600 + rng.random() * 6600)
        elif u < P_HAZARD_ON_SPOT + P_HAZARD_ON_TIME:
            tr = min(self.office(t + (deadline - t) * (0.1 + 0.85 * rng.random())), deadline - 60)
        elif u < P_HAZARD_ON_SPOT + P_HAZARD_ON_TIME + P_HAZARD_LATE:
            tr = self.office(deadline + 60 + rng.expovariate(1 / (3 * DAY)))
        elif u < P_HAZARD_ON_SPOT + P_HAZARD_ON_TIME + P_HAZARD_LATE + P_HAZARD_VERY_LATE:
            tr = self.office(deadline + (10 + 50 * rng.random()) * DAY)
        else:
            return
        tr = max(tr, t + 60)
        at = self.emit(di, Kind.HAZARD_RECTIFIED, subject, tr, {"responsible_unit": unit}, at)
        if rng.random() >= P_VERIFY:
            return
        tv = max(tr + HOUR, self.office(tr + (1 + 9 * rng.random()) * DAY))
        if rng.random() >= P_VERIFY_FAILS:
            self.emit(di, Kind.HAZARD_VERIFIED, subject, tv, {"result": "confirmed"}, at)
            return
        new_deadline = self.local.at_hour(tv, 7, 18)
        verdict = {"result": "not_rectified", "new_deadline": self.local.format(new_deadline)}
        at = self.emit(di, Kind.HAZARD_VERIFIED, subject, tv, verdict, at)
        if rng.random() >= P_RERECTIFY:
            return  # reopened, and it will go overdue at the new deadline
        tr2 = max(
            tv + 60, min(self.office(tv + (new_deadline - tv) * rng.random()), new_deadline - 60)
        )
        at = self.emit(
            di, Kind.HAZARD_RECTIFIED, subject, tr2, {"responsible_unit": unit}, at, "-2"
        )
        if rng.random() < P_VERIFY:
            tv2 = max(tr2 + HOUR, self.office(tr2 + (1 + 9 * rng.random()) * DAY))
            self.emit(di, Kind.HAZARD_VERIFIED, subject, tv2, {"result": "confirmed"}, at, "-2")

    def start_patrol(self, di: int, t: int) -> None:
        rng = self.rng
        d = self.city.districts[di]
        h = self.local.hour(t)
        night = h >= 20 or h < 8
        teams = d.night_teams if night else d.day_teams
        team = teams[int(rng.random() * len(teams))]
        duration = int((2 + 2 * rng.random() if night else 1.5 + 1.5 * rng.random()) * HOUR)
        end = t + duration
        subject = self.subject("pr", d.code)
        findings = 0
        u = rng.random()
        # Poisson number of hazards found on the way, each reported when it is found.
        p = math.exp(-PATROL_FINDINGS_MEAN)
        acc = p
        while u > acc and findings < 10:
            findings += 1
            p *= PATROL_FINDINGS_MEAN / findings
            acc += p
        for _ in range(findings):
            self.start_hazard(di, t + int(duration * (0.05 + 0.9 * rng.random())), "patrol")
        te = end + int(rng.random() * 300)
        data = {
            "team": team,
            "started_at": self.local.format(t),
            "ended_at": self.local.format(end),
            "area": d.areas[int(rng.random() * len(d.areas))],
            "findings": findings,
        }
        # The completion follows the findings it counts.
        self.emit(di, Kind.PATROL_COMPLETED, subject, te, data, te)

    # -- extras ---------------------------------------------------------------------

    def fresh_start(
        self, di: int, stream: Stream, ts: int, district: str | None = None
    ) -> tuple[Kind, dict[str, Any]]:
        """A self-contained first event of a new subject on ``stream`` (for extras)."""
        rng = self.rng
        d = self.city.districts[di]
        code = district or d.code
        if stream is Stream.INCIDENTS:
            m = INCIDENTS[bisect.bisect(self.inc_cum, rng.random())]
            subject = self.subject("xx", code)
            data: dict[str, Any] = {
                "category": m.code,
                "severity": "minor",
                "community": self.community(d),
            }
            return Kind.CASE_FILED, self.enc.document(code, Kind.CASE_FILED, subject, ts, data)
        if stream is Stream.DISPUTES:
            m2 = DISPUTES[bisect.bisect(self.dis_cum, rng.random())]
            subject = self.subject("xx", code)
            unit = d.dispute_units.get(m2.code) or d.mediation[0]
            data = {"category": m2.code, "responsible_unit": unit, "people_involved": 2}
            return Kind.DISPUTE_REPORTED, self.enc.document(
                code, Kind.DISPUTE_REPORTED, subject, ts, data
            )
        subject = self.subject("xx", code)
        if rng.random() < 0.5:
            data = {
                "team": d.day_teams[0],
                "started_at": self.local.format(ts - 2 * HOUR),
                "ended_at": self.local.format(ts),
                "area": d.areas[0],
                "findings": 0,
            }
            return Kind.PATROL_COMPLETED, self.enc.document(
                code, Kind.PATROL_COMPLETED, subject, ts, data
            )
        m3 = HAZARDS[bisect.bisect(self.haz_cum, rng.random())]
        data = {
            "category": m3.code,
            "major": False,
            "deadline": self.local.format(self.local.at_hour(ts, m3.days + 1, 18)),
            "responsible_unit": d.hazard_units[m3.code],
        }
        return Kind.HAZARD_FOUND, self.enc.document(code, Kind.HAZARD_FOUND, subject, ts, data)

    def late(self, at: float, di: int, stream: Stream) -> SimRecord:
        # Late against the watermark of the same stream: the engine has read that event
        # before this one (same partition, earlier offset), so its district watermark is
        # at least as high, whatever the other topics' progress.
        wm = self.watermark[(di, stream)]
        ts = int(wm - self.cfg.grace_seconds - HOUR - self.rng.random() * 36 * HOUR)
        kind, doc = self.fresh_start(di, stream, ts)
        d = self.city.districts[di]
        return SimRecord(
            at, stream, d.key, orjson.dumps(doc), Intent.LATE, "too_late", kind, float(ts)
        )

    def malformed(self, at: float, di: int) -> SimRecord:
        rec = self._malformed(at, di)
        # What the bytes claim, as a reader of the file would see it (nothing, for bytes
        # that do not parse).
        kind, ts = describe_value(rec.value)
        return rec._replace(kind=kind, ts=ts)

    def _malformed(self, at: float, di: int) -> SimRecord:
        rng = self.rng
        d = self.city.districts[di]
        reason = self.bad_reasons[bisect.bisect(self.bad_cum, rng.random())]
        streams = (Stream.INCIDENTS, Stream.DISPUTES, Stream.PATROLS)
        stream = streams[int(rng.random() * 3)]
        ts = int(at) - int(rng.random() * 60)
        key = d.key
        self.bad_variant += 1
        variant = self.bad_variant
        if reason == "deadline_before_found":
            stream = Stream.PATROLS
            m = HAZARDS[bisect.bisect(self.haz_cum, rng.random())]
            subject = self.subject("xx", d.code)
            data = {
                "category": m.code,
                "major": False,
                "deadline": self.local.format(ts - 2 * HOUR),
                "responsible_unit": d.hazard_units[m.code],
            }
            value = self.enc.encode(d.code, Kind.HAZARD_FOUND, subject, ts, data)
            return SimRecord(
                at, stream, key, value, Intent.MALFORMED, reason, Kind.HAZARD_FOUND, float(ts)
            )
        if reason == "wrong_topic":
            other = streams[(streams.index(stream) + 1 + int(rng.random() * 2)) % 3]
            kind, doc = self.fresh_start(di, other, ts)
            return SimRecord(
                at, stream, key, orjson.dumps(doc), Intent.MALFORMED, reason, kind, float(ts)
            )
        if reason == "time_out_of_range":
            # Before 2000 or centuries ahead: out of range whatever clock reads it.
            bogus = (
                946_684_800 - DAY * (1 + int(rng.random() * 300)) if variant % 2 else 32_503_680_000
            )
            kind, doc = self.fresh_start(di, stream, bogus)
            return SimRecord(
                at, stream, key, orjson.dumps(doc), Intent.MALFORMED, reason, kind, None
            )
        if reason == "unknown_district":
            kind, doc = self.fresh_start(di, stream, ts, UNKNOWN_DISTRICT)
            value = orjson.dumps(doc)
            return SimRecord(
                at,
                stream,
                UNKNOWN_DISTRICT.encode(),
                value,
                Intent.MALFORMED,
                reason,
                kind,
                float(ts),
            )
        start_kind, doc = self.fresh_start(di, stream, ts)
        if reason == "empty":
            return SimRecord(at, stream, key, b"", Intent.MALFORMED, reason, None, None)
        if reason == "too_large":
            doc["padding"] = "x" * TOO_LARGE_PADDING
            value = orjson.dumps(doc)
        elif reason == "not_utf8":
            value = orjson.dumps(doc).replace(b"/", b"/\xff\xfe", 1)
        elif reason == "malformed_json":
            whole = orjson.dumps(doc)
            value = whole[: len(whole) // 2]
        elif reason == "schema":
            value = orjson.dumps(_break_schema(doc, variant))
        elif reason == "unknown_type":
            doc["type"] = {
                Stream.INCIDENTS: "watchfloor.incident.case_reopened.v1",
                Stream.DISPUTES: "watchfloor.dispute.withdrawn.v1",
                Stream.PATROLS: "watchfloor.patrol.started.v1",
            }[stream]
            doc.pop("dataschema")
            value = orjson.dumps(doc)
        elif reason == "naive_time":
            doc["time"] = doc["time"][:19]
            value = orjson.dumps(doc)
        elif reason == "wrong_partition":
            value = orjson.dumps(doc)
        else:  # pragma: no cover - MALFORMED_REASONS and this chain are kept in step
            raise WatchfloorError(f"No recipe for malformed reason {reason!r}.")
        claimed = None if reason == "unknown_type" else start_kind
        return SimRecord(at, stream, key, value, Intent.MALFORMED, reason, claimed, float(ts))

    # -- main loop ------------------------------------------------------------------

    def run(self) -> Iterator[SimRecord]:
        cfg = self.cfg
        rng = self.rng
        start = cfg.start.timestamp()
        end = cfg.end.timestamp() if cfg.end is not None else math.inf
        limit = cfg.max_records if cfg.max_records is not None else math.inf
        for i in range(len(_LIFECYCLES)):
            self.push(self.next_start(i, start), _START, i)
        self.schedule_drill(start)
        starters = (self.start_case, self.start_dispute, self.start_hazard, self.start_patrol)
        heappop = heapq.heappop
        districts = self.city.districts
        cum = self.cum_weights
        last = len(districts) - 1
        fmt = self.local.format
        dumps = orjson.dumps
        random_ = rng.random
        watermark = self.watermark
        valid = Intent.VALID
        # Per district and kind: (district, key, stream, type, source, schema, id suffix).
        envelope = [
            {
                k: (d.code, d.key, STREAM_OF_KIND[k], TYPE_OF_KIND[k], Encoder.source(d.code, k),
                    SCHEMA_OF_KIND[k], "-" + SUFFIX_OF_KIND[k])
                for k in Kind
            }
            for d in districts
        ]  # fmt: skip
        emitted = 0
        while emitted < limit:
            if not self.heap and not self.refill():
                return
            entry = heappop(self.heap)
            at = entry[0]
            if at >= end:
                return
            op = entry[2]
            if op == _START:
                i = entry[3]
                self.push(self.next_start(i, at), _START, i)
                starters[i](min(bisect.bisect(cum, random_()), last), int(at))
                continue
            if op == _EMIT:
                _, _, _, di, kind, subject, ts, data, suffix = entry
                code, key, stream, etype, source, schema, idsuffix = envelope[di][kind]
                # The same bytes as Encoder.encode, built inline (this runs per event), with
                # the data serialised when the event was scheduled spliced in last.
                head = dumps(
                    {
                        "specversion": "1.0",
                        "id": subject + idsuffix + suffix,
                        "source": source,
                        "type": etype,
                        "time": fmt(ts),
                        "subject": subject,
                        "datacontenttype": "application/json",
                        "dataschema": schema,
                        "district": code,
                    }
                )
                value = head[:-1] + b',"data":' + data.encode() + b"}"
                rec = SimRecord(at, stream, key, value, valid, None, kind, float(ts))
                wkey = (di, stream)
                if ts > watermark.get(wkey, -math.inf):
                    watermark[wkey] = ts
                u = random_()
                if u < self.p_bad:
                    if u < self.p_dup:
                        self.push(at + 5 + rng.random() * 1200, _DUP, rec)
                    elif u < self.p_late:
                        self.push(at + 1 + rng.random() * 120, _LATE, (di, stream))
                    else:
                        self.push(at + 1 + rng.random() * 120, _BAD, di)
            elif op == _DUP:
                rec = entry[3]._replace(at=at, intent=Intent.DUPLICATE, reason="duplicate")
            elif op == _LATE:
                rec = self.late(at, *entry[3])
            else:
                rec = self.malformed(at, entry[3])
            emitted += 1
            yield rec

    def next_start(self, i: int, t: float) -> float:
        """The next arrival of a Poisson process whose rate is constant within a local hour.

        Exact, not thinned: an arrival that would fall past the hour is redrawn from the
        hour's end at the next hour's rate (the exponential forgets how long it waited).
        """
        rhythm = _RHYTHMS[i]
        local = self.local
        live_from = self.live_from
        while True:
            mean = self.mean_rate[i] if t >= live_from else self.history_mean_rate[i]
            nxt = t + self.rng.expovariate(mean * rhythm[local.hour(t)])
            boundary = local.next_hour(t)
            if t < live_from < boundary:
                boundary = live_from
            if nxt < boundary:
                return nxt
            t = boundary

    def schedule_drill(self, start: float) -> None:
        cfg = self.cfg
        if not cfg.overdue_drill:
            return
        t0 = int(cfg.drill_at.timestamp()) if cfg.drill_at is not None else int(start)
        order = sorted(
            range(len(self.city.districts)), key=lambda i: -self.city.districts[i].weight
        )
        for n in range(cfg.overdue_drill):
            di = order[n % len(order)]
            d = self.city.districts[di]
            t = t0 + 20 * n
            category = ("fire", "gas", "hazardous_chemicals", "construction")[n % 4]
            data = {
                "category": category,
                "major": n % 3 == 0,
                "deadline": self.local.format(t + 120 + 60 * n),
                "responsible_unit": d.hazard_units[category],
                "community": d.communities[n % len(d.communities)],
                "found_by": "inspection",
            }
            subject = f"hz-{d.code}-{self.tag}drill{n + 1:03d}"
            self.schedule(float(t), di, Kind.HAZARD_FOUND, subject, t, data, "")


def drill_deadlines(city: SimCity, config: SimConfig) -> list[tuple[str, str, float]]:
    """(district, subject, deadline) of the overdue drill's hazards, as scheduled."""
    if not config.overdue_drill:
        return []
    t0 = int((config.drill_at or config.start).timestamp())
    tag = config.tag + "-" if config.tag and not config.tag.endswith("-") else config.tag
    order = sorted(range(len(city.districts)), key=lambda i: -city.districts[i].weight)
    out = []
    for n in range(config.overdue_drill):
        d = city.districts[order[n % len(order)]]
        out.append(
            (d.code, f"hz-{d.code}-{tag}drill{n + 1:03d}", float(t0 + 20 * n + 120 + 60 * n))
        )
    return out


def _cumulative(weights: Sequence[float]) -> list[float]:
    total = float(sum(weights))
    out, acc = [], 0.0
    for w in weights:
        acc += w
        out.append(acc / total)
    out[-1] = 1.0 + 1e-12  # bisect on random() < 1 never falls off the end
    return out


def _break_schema(doc: dict[str, Any], variant: int) -> dict[str, Any]:
    """One schema fault, in turn: a missing, wrongly typed or extra field."""
    data = doc["data"]
    choice = variant % 4
    if choice == 0:
        doc.pop("subject")
    elif choice == 1:
        data["unexpected"] = "field"
    elif choice == 2:
        required = {"category", "team", "responsible_unit"} & set(data)
        data.pop(sorted(required)[0])
    else:
        doc["id"] = "id with spaces"
    return doc


# --------------------------------------------------------------------------------------
# JSON lines: one record a line (the file format of --output, replay and scenarios)
# --------------------------------------------------------------------------------------


def format_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_to_line(rec: SimRecord) -> bytes:
    """A record as one JSON line: ``at``, ``stream``, ``key``, ``intent``, ``reason`` and
    the value as ``event`` (a JSON object, when the bytes are exactly its orjson form),
    ``value`` (other UTF-8 text) or ``value_b64`` (anything else)."""
    line: dict[str, Any] = {
        "at": format_utc(rec.at),
        "stream": STREAM_NAMES[rec.stream],
        "key": rec.key.decode("utf-8"),
        "intent": rec.intent.value,
    }
    if rec.reason is not None:
        line["reason"] = rec.reason
    value = rec.value
    obj: Any = None
    if value[:1] == b"{":
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            obj = None
    if isinstance(obj, dict) and orjson.dumps(obj) == value:
        line["event"] = obj
    else:
        try:
            line["value"] = value.decode("utf-8")
        except UnicodeDecodeError:
            line["value_b64"] = base64.b64encode(value).decode("ascii")
    return orjson.dumps(line)


def record_from_line(line: bytes | str) -> SimRecord:
    try:
        obj = orjson.loads(line)
        at = datetime.fromisoformat(obj["at"]).timestamp()
        stream = STREAM_OF_NAME[obj["stream"]]
        key = obj["key"].encode("utf-8")
        intent = Intent(obj["intent"])
        reason = obj.get("reason")
        if "event" in obj:
            value = orjson.dumps(obj["event"])
        elif "value_b64" in obj:
            value = base64.b64decode(obj["value_b64"])
        else:
            value = obj["value"].encode("utf-8")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise WatchfloorError(f"Not a simulator record line ({exc}): {str(line)[:120]!r}") from None
    kind, ts = describe_value(value)
    return SimRecord(at, stream, key, value, intent, reason, kind, ts)


def describe_value(value: bytes) -> tuple[Kind | None, float | None]:
    """The kind and event time a value claims, if it is a readable event."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    kind = KIND_OF_TYPE.get(doc.get("type", "")) if isinstance(doc.get("type"), str) else None
    ts: float | None = None
    text = doc.get("time")
    if isinstance(text, str):
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            when = None
        if when is not None and when.tzinfo is not None:
            ts = when.timestamp()
    return kind, ts


_TIME_FIELDS = ("deadline", "new_deadline", "started_at", "ended_at")


def shift_record(rec: SimRecord, seconds: int) -> SimRecord:
    """The record moved ``seconds`` later: publish time and every timestamp inside.

    Offsets are kept, and so are naive times (a ``naive_time`` record stays one). The
    times of a ``time_out_of_range`` record stay where they are: shifted, they could
    fall in range.
    """
    at = rec.at + seconds
    if rec.reason == "time_out_of_range" or rec.value[:1] != b"{":
        return rec._replace(at=at)
    try:
        doc = orjson.loads(rec.value)
    except orjson.JSONDecodeError:
        return rec._replace(at=at)
    if not isinstance(doc, dict):
        return rec._replace(at=at)
    delta = timedelta(seconds=seconds)
    doc["time"] = _shift_text(doc.get("time"), delta)
    data = doc.get("data")
    if isinstance(data, dict):
        for name in _TIME_FIELDS:
            if name in data:
                data[name] = _shift_text(data[name], delta)
    ts = rec.ts + seconds if rec.ts is not None else None
    return rec._replace(at=at, value=orjson.dumps(doc), ts=ts)


def retime_record(rec: SimRecord, to: Callable[[float], float]) -> SimRecord:
    """The record with every time mapped by ``to`` (POSIX seconds to POSIX seconds).

    For replays that compress a scenario's clock: ``to`` must be increasing, so that
    order (and every "deadline after found") survives. Publish time, event time and the
    time fields of ``data`` are mapped; offsets are kept. Naive times and the times of
    a ``time_out_of_range`` record are left as they are, as :func:`shift_record` does.
    """
    at = to(rec.at)
    if rec.reason == "time_out_of_range" or rec.value[:1] != b"{":
        return rec._replace(at=at)
    try:
        doc = orjson.loads(rec.value)
    except orjson.JSONDecodeError:
        return rec._replace(at=at)
    if not isinstance(doc, dict):
        return rec._replace(at=at)
    doc["time"] = _map_text(doc.get("time"), to)
    data = doc.get("data")
    if isinstance(data, dict):
        for name in _TIME_FIELDS:
            if name in data:
                data[name] = _map_text(data[name], to)
    ts = to(rec.ts) if rec.ts is not None else None
    return rec._replace(at=at, value=orjson.dumps(doc), ts=ts)


def _map_text(value: Any, to: Callable[[float], float]) -> Any:
    if not isinstance(value, str):
        return value
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return value
    if when.tzinfo is None:
        return value
    return datetime.fromtimestamp(to(when.timestamp()), when.tzinfo).isoformat()


def _shift_text(value: Any, delta: timedelta) -> Any:
    if not isinstance(value, str):
        return value
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return value
    return (when + delta).isoformat()


class Tally:
    """Counts of what a run produced, by stream, intent and reason."""

    def __init__(self) -> None:
        # One dict update per record: the producing loop calls this per record.
        self.counts: dict[tuple[Stream, Intent, str | None], int] = {}
        self.total = 0

    def add(self, rec: SimRecord) -> None:
        self.total += 1
        key = (rec.stream, rec.intent, rec.reason)
        self.counts[key] = self.counts.get(key, 0) + 1

    def _by(self, index: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for key, n in self.counts.items():
            part = key[index]
            if part is None:
                continue
            name = STREAM_NAMES[part] if isinstance(part, Stream) else str(part)
            out[name] = out.get(name, 0) + n
        return dict(sorted(out.items()))

    @property
    def by_stream(self) -> dict[str, int]:
        return self._by(0)

    @property
    def by_intent(self) -> dict[str, int]:
        return self._by(1)

    @property
    def by_reason(self) -> dict[str, int]:
        return self._by(2)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_stream": self.by_stream,
            "by_intent": self.by_intent,
            "by_reason": self.by_reason,
        }


# --------------------------------------------------------------------------------------
# The seed document's figures as scenarios (files in seeds/scenarios/, built from here)
# --------------------------------------------------------------------------------------


class Scenario(NamedTuple):
    name: str
    records: list[SimRecord]
    expected: dict[str, Any]


class _Timeline:
    """Collects a scenario's events and returns them as records in time order."""

    def __init__(self, city: SimCity) -> None:
        self.enc = Encoder(city)
        self.local = self.enc.local
        self.rows: list[tuple[int, int, str, Kind, str, dict[str, Any], str]] = []

    def add(
        self,
        district: str,
        kind: Kind,
        subject: str,
        ts: int,
        data: dict[str, Any],
        suffix: str = "",
    ) -> None:
        self.rows.append((ts, len(self.rows), district, kind, subject, data, suffix))

    def records(self) -> list[SimRecord]:
        out = []
        for ts, _, district, kind, subject, data, suffix in sorted(self.rows, key=lambda r: r[:2]):
            value = self.enc.encode(district, kind, subject, ts, data, suffix)
            out.append(
                SimRecord(
                    float(ts),
                    STREAM_OF_KIND[kind],
                    district.encode(),
                    value,
                    Intent.VALID,
                    None,
                    kind,
                    float(ts),
                )
            )
        return out


def _invariant(holds: bool, what: str) -> None:
    if not holds:
        raise WatchfloorError(f"A scenario builder broke its own plan: {what}.")


def _month_start(tz: ZoneInfo, year: int, month: int) -> int:
    return int(datetime(year, month, 1, tzinfo=tz).timestamp())


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def _office_time(rng: random.Random, local: LocalTime, day_start: int) -> int:
    """A time between 08:00 and 18:00 local on the day that starts at ``day_start``."""
    return local.at_hour(day_start, 0, 8) + int(rng.random() * 10 * HOUR)


def scenario_city_management(city: SimCity) -> Scenario:
    """数字城管, one district, April to June 2025: found and not rectified per month."""
    name = "city-management-2025q2"
    district = "jinshui"
    d = city.district(district)
    tl = _Timeline(city)
    local = tl.local
    tz = city.timezone
    rng = random.Random(20250401)
    # month: (found, not rectified by the end, rectified in the same month, in the next, in
    # the one after). Rectified by the end = found - not rectified.
    plan = {
        4: (465, 25, 370, 60, 10),
        5: (1325, 336, 860, 129, 0),
        6: (2084, 248, 1836, 0, 0),
    }
    quoted = {4: 94, 5: 73, 6: 82}
    categories = (
        ("other", 40),
        ("construction", 20),
        ("fire", 15),
        ("road_traffic", 10),
        ("road_collapse", 10),
        ("gas", 5),
    )
    cum = _cumulative([w for _, w in categories])
    end = _month_start(tz, 2025, 7)
    month_start = {m: _month_start(tz, 2025, m) for m in (4, 5, 6, 7)}
    found_month: dict[str, int] = {}
    rectified_at: dict[str, int] = {}
    deadlines: dict[str, int] = {}
    n = 0
    for month, (found, not_rectified, same, nxt, after) in plan.items():
        _invariant(found - not_rectified == same + nxt + after, f"month {month} adds up")
        lo, hi = month_start[month], month_start[month + 1]
        days = (hi - lo) // DAY
        subjects = []
        for _ in range(found):
            n += 1
            subject = f"hz-{district}-2025q2-{n:05d}"
            t = _office_time(rng, local, lo + int(rng.random() * days) * DAY)
            category = categories[bisect.bisect(cum, rng.random())][0]
            deadline = local.at_hour(t, (3, 5, 7, 10)[int(rng.random() * 4)], 18)
            tl.add(
                district,
                Kind.HAZARD_FOUND,
                subject,
                t,
                {
                    "category": category,
                    "major": False,
                    "deadline": local.format(deadline),
                    "responsible_unit": d.hazard_units[category],
                    "community": d.communities[int(rng.random() * len(d.communities))],
                    "found_by": "grid_worker" if rng.random() < 0.8 else "public_report",
                },
            )
            found_month[subject] = month
            deadlines[subject] = deadline
            subjects.append((subject, t, category))
        # Same-month rectifications need time left in the month.
        early = [s for s in subjects if s[1] < hi - 2 * DAY]
        same_month = rng.sample(early, same)
        taken = {s[0] for s in same_month}
        rest = [s for s in subjects if s[0] not in taken]
        later = rng.sample(rest, nxt + after)
        for subject, t, category in same_month:
            tr = t + 600 + int(min(rng.expovariate(1 / (2 * DAY)), hi - t - HOUR - 600))
            rectified_at[subject] = tr
            tl.add(
                district,
                Kind.HAZARD_RECTIFIED,
                subject,
                tr,
                {"responsible_unit": d.hazard_units[category]},
            )
        for i, (subject, _t, category) in enumerate(later):
            target = month + 1 if i < nxt else month + 2
            day = month_start[target] + int(rng.random() * 25) * DAY
            tr = _office_time(rng, local, day)
            rectified_at[subject] = tr
            tl.add(
                district,
                Kind.HAZARD_RECTIFIED,
                subject,
                tr,
                {"responsible_unit": d.hazard_units[category]},
            )

    def month_label(m: int) -> str:
        return f"2025-{m:02d}"

    months = []
    for month, (found, not_rectified, *_rest) in plan.items():
        rectified = found - not_rectified
        as_of = {}
        for end_month in (4, 5, 6):
            if end_month < month:
                continue
            cut = month_start[end_month + 1]
            as_of[f"end of {month_label(end_month)}"] = sum(
                1 for s, m in found_month.items() if m == month and rectified_at.get(s, cut) < cut
            )
        months.append(
            {
                "month": month_label(month),
                "from": local.format(month_start[month]),
                "to": local.format(month_start[month + 1]),
                "found": found,
                "rectified": rectified,
                "not_rectified": not_rectified,
                "rectification_rate_percent": _percent(rectified, found),
                "rectification_rate": f"{rectified}/{found}",
                "rate_quoted_in_speech_percent": quoted[month],
                "rectified_by": as_of,
                "rectified_events_in_month": sum(
                    1
                    for t in rectified_at.values()
                    if month_start[month] <= t < month_start[month + 1]
                ),
            }
        )
    open_at_end = [s for s in found_month if s not in rectified_at]
    expected = {
        "scenario": name,
        "district": district,
        "timezone": str(tz),
        "end": local.format(end),
        "definition": "cohort: of the hazards FOUND in a month, how many have a "
        "watchfloor.hazard.rectified.v1 event by the end of the scenario",
        "months": months,
        "open_at_end": len(open_at_end),
        "overdue_at_end": sum(1 for s in open_at_end if deadlines[s] < end),
        "events": len(tl.rows),
    }
    return Scenario(name, tl.records(), expected)


def scenario_cases(city: SimCity) -> Scenario:
    """1,538 criminal cases filed from January to September 2025, 778 cleared: 50.6 %."""
    name = "cases-2025-jan-sep"
    district = "erqi"
    d = city.district(district)
    tl = _Timeline(city)
    local = tl.local
    tz = city.timezone
    rng = random.Random(20250930)
    filed_total, cleared_total = 1538, 778
    start, end = _month_start(tz, 2025, 1), _month_start(tz, 2025, 10)
    days = (end - start) // DAY
    hour_cum = _cumulative(RHYTHM_INCIDENTS)
    inc_cum = _cumulative([m.weight for m in INCIDENTS])
    cases = []
    for n in range(1, filed_total + 1):
        m = INCIDENTS[bisect.bisect(inc_cum, rng.random())]
        hour = bisect.bisect(hour_cum, rng.random())
        t = start + int(rng.random() * days) * DAY + hour * HOUR + int(rng.random() * HOUR)
        subject = f"cs-{district}-2025-{n:05d}"
        u = rng.random()
        sev = SEVERITIES[0 if u < m.severity[0] else 1 if u < m.severity[0] + m.severity[1] else 2]
        community = d.communities[int(rng.random() * len(d.communities))]
        tl.add(
            district,
            Kind.CASE_FILED,
            subject,
            t,
            {
                "category": m.code,
                "severity": sev,
                "community": community,
                "location": {
                    "lat": round(d.centre[0] + rng.gauss(0, 0.02), 3),
                    "lon": round(d.centre[1] + rng.gauss(0, 0.025), 3),
                },
            },
        )
        cases.append((subject, t, m, community))
    # Which cases are cleared: weighted by their category's clearance odds, exactly 778.
    pool = list(cases)
    cleared: dict[str, int] = {}
    while len(cleared) < cleared_total:
        weights = [c[2].clear_p for c in pool]
        pick = rng.choices(range(len(pool)), weights=weights)[0]
        subject, t, m, community = pool.pop(pick)
        delay = rng.lognormvariate(math.log(m.clear_median_h * HOUR), 1.2)
        if t + delay >= end - HOUR:
            delay = (end - HOUR - t) * (0.2 + 0.7 * rng.random())
        tc = t + max(600, int(delay))
        cleared[subject] = tc
        tl.add(
            district, Kind.CASE_CLEARED, subject, tc, {"category": m.code, "community": community}
        )
    months = []
    for month in range(1, 10):
        lo, hi = _month_start(tz, 2025, month), _month_start(tz, 2025, month + 1)
        months.append(
            {
                "month": f"2025-{month:02d}",
                "filed": sum(1 for c in cases if lo <= c[1] < hi),
                "cleared": sum(1 for t in cleared.values() if lo <= t < hi),
            }
        )
    by_category: dict[str, dict[str, int]] = {}
    for subject, _t, m, _c in cases:
        row = by_category.setdefault(m.code, {"filed": 0, "cleared": 0})
        row["filed"] += 1
        row["cleared"] += subject in cleared
    two_robberies_one_theft = {
        k: sum(by_category.get(c, {}).get(k, 0) for c in ("robbery", "snatching", "theft"))
        for k in ("filed", "cleared")
    }
    expected = {
        "scenario": name,
        "district": district,
        "timezone": str(tz),
        "from": local.format(start),
        "to": local.format(end),
        "filed": filed_total,
        "cleared": cleared_total,
        "clearance_rate_percent": _percent(cleared_total, filed_total),
        "clearance_rate": f"{cleared_total}/{filed_total}",
        "open_at_end": filed_total - cleared_total,
        "months": months,
        "by_category": dict(sorted(by_category.items())),
        "two_robberies_one_theft": two_robberies_one_theft,
        "events": len(tl.rows),
    }
    return Scenario(name, tl.records(), expected)


def scenario_disputes(city: SimCity) -> Scenario:
    """42 destabilising disputes found in 2025; 35 resolved (83.3 %), 3 escalated, 4 open."""
    name = "disputes-2025"
    district = "zhongyuan"
    d = city.district(district)
    tl = _Timeline(city)
    local = tl.local
    tz = city.timezone
    rng = random.Random(20251201)
    counts = {
        "enterprise_restructuring": 5,
        "social_security": 6,
        "rural_stability": 8,
        "demolition_compensation": 9,
        "environmental_pollution": 6,
        "unpaid_wages": 8,
    }
    outcomes = ["resolved"] * 35 + ["escalated"] * 3 + ["open"] * 4
    rng.shuffle(outcomes)
    categories = [c for c, k in counts.items() for _ in range(k)]
    rng.shuffle(categories)
    start, end = _month_start(tz, 2025, 1), _month_start(tz, 2025, 12)
    last_report = _month_start(tz, 2025, 11) - 30 * DAY
    rows = []
    for n, (category, outcome) in enumerate(zip(categories, outcomes, strict=True), 1):
        subject = f"dp-{district}-2025-{n:03d}"
        t = _office_time(
            rng, local, start + int(rng.random() * ((last_report - start) // DAY)) * DAY
        )
        unit = d.dispute_units[category]
        people = int(10 + rng.random() * 40) if rng.random() < 0.3 else int(3 + rng.random() * 6)
        tl.add(
            district,
            Kind.DISPUTE_REPORTED,
            subject,
            t,
            {
                "category": category,
                "responsible_unit": unit,
                "community": d.communities[int(rng.random() * len(d.communities))],
                "people_involved": people,
            },
        )
        # Mediation first (调处), within a few days, by the one responsible department.
        tm = _office_time(rng, local, local.midnight(t) + (1 + int(rng.random() * 3)) * DAY)
        tl.add(district, Kind.DISPUTE_MEDIATION_STARTED, subject, tm, {"responsible_unit": unit})
        closed = None
        if outcome == "resolved":
            closed = _office_time(
                rng, local, local.midnight(tm) + (3 + int(rng.random() * 30)) * DAY
            )
            tl.add(district, Kind.DISPUTE_RESOLVED, subject, closed, {"responsible_unit": unit})
        elif outcome == "escalated":
            closed = _office_time(
                rng, local, local.midnight(tm) + (10 + int(rng.random() * 20)) * DAY
            )
            tl.add(
                district,
                Kind.DISPUTE_ESCALATED,
                subject,
                closed,
                {"escalated_to": d.escalation[n % len(d.escalation)]},
            )
        _invariant(closed is None or closed < end, f"{subject} closes within the year")
        rows.append((subject, category, outcome, people))
    by_category: dict[str, dict[str, int]] = {}
    for _s, category, outcome, _p in rows:
        row = by_category.setdefault(
            category, {"reported": 0, "resolved": 0, "escalated": 0, "open": 0}
        )
        row["reported"] += 1
        row[outcome] += 1
    expected = {
        "scenario": name,
        "district": district,
        "timezone": str(tz),
        "from": local.format(start),
        "to": local.format(end),
        "reported": len(rows),
        "mediation_started": len(rows),
        "resolved": outcomes.count("resolved"),
        "escalated": outcomes.count("escalated"),
        "open_at_end": outcomes.count("open"),
        "resolution_rate_percent": _percent(outcomes.count("resolved"), len(rows)),
        "resolution_rate": f"{outcomes.count('resolved')}/{len(rows)}",
        "mass_disputes_10_or_more_people": sum(1 for r in rows if r[3] >= 10),
        "by_category": dict(sorted(by_category.items())),
        "events": len(tl.rows),
    }
    return Scenario(name, tl.records(), expected)


def scenario_overdue_week(city: SimCity) -> Scenario:
    """A week of hazards in two districts; a known set goes overdue at known times."""
    name = "overdue-week"
    districts = ("guancheng", "huiji")
    tl = _Timeline(city)
    local = tl.local
    rng = random.Random(20250303)
    t0 = int(datetime(2025, 3, 3, 8, 0, tzinfo=city.timezone).timestamp())
    t_end = t0 + 7 * DAY
    cats = [m.code for m in HAZARDS]
    hazards: list[dict[str, Any]] = []
    counter = dict.fromkeys(districts, 0)

    def found(
        district: str, group: str, t: int, deadline: int, major: bool = False
    ) -> dict[str, Any]:
        d = city.district(district)
        counter[district] += 1
        subject = f"hz-{district}-wk-{counter[district]:03d}"
        category = cats[int(rng.random() * len(cats))]
        tl.add(
            district,
            Kind.HAZARD_FOUND,
            subject,
            t,
            {
                "category": category,
                "major": major,
                "deadline": local.format(deadline),
                "responsible_unit": d.hazard_units[category],
                "community": d.communities[int(rng.random() * len(d.communities))],
                "found_by": ("patrol", "inspection", "grid_worker")[int(rng.random() * 3)],
            },
        )
        h = {
            "subject": subject,
            "district": district,
            "group": group,
            "major": major,
            "found": t,
            "deadline": deadline,
            "rectified": None,
            "reopened": None,
            "first_deadline": deadline,
            "unit": d.hazard_units[category],
        }
        hazards.append(h)
        return h

    def rectify(h: dict[str, Any], t: int) -> None:
        h["rectified"] = t
        tl.add(
            h["district"], Kind.HAZARD_RECTIFIED, h["subject"], t, {"responsible_unit": h["unit"]}
        )

    def day_time(day: int) -> int:
        return _office_time(rng, local, t0 + day * DAY - 8 * HOUR)

    for k, district in enumerate(districts):
        for j in range(30):  # A: rectified before the deadline, never overdue
            t = day_time(int(rng.random() * 5))
            if k == 0 and j == 0:
                t = t0  # the first event opens the week
            h = found(district, "on_time", t, local.at_hour(t, 2 + int(rng.random() * 5), 18))
            rectify(h, min(t + int((h["deadline"] - t) * (0.1 + 0.8 * rng.random())), t_end - HOUR))
        for _ in range(5):  # B: overdue for a while, rectified late within the week
            t = day_time(int(rng.random() * 3))
            h = found(district, "late", t, local.at_hour(t, 1 + int(rng.random() * 2), 18))
            rectify(
                h, h["deadline"] + HOUR + int(rng.random() * (t_end - h["deadline"] - 2 * HOUR))
            )
        for j in range(4):  # C: overdue from the deadline on, still overdue at the end
            t = day_time(int(rng.random() * 3))
            found(district, "overdue_open", t, local.at_hour(t, 1 + j % 3, 18), major=j == 0)
        # E: rectified in time, then the look-back visit (回头看) finds it not done and sets
        # a new deadline just after the end of the week.
        t = day_time(0)
        h = found(district, "reopened", t, local.at_hour(t, 3, 18))
        rectify(h, local.at_hour(t, 2, 10))
        h["reopened"] = day_time(6)
        h["deadline"] = t_end + (15 + 5 * k) * 60
        tl.add(
            district,
            Kind.HAZARD_VERIFIED,
            h["subject"],
            h["reopened"],
            {"result": "not_rectified", "new_deadline": local.format(h["deadline"])},
        )
        for _ in range(10):  # F: open, deadline far ahead
            t = day_time(int(rng.random() * 7))
            found(district, "open_far", t, local.at_hour(t, 30 + int(rng.random() * 30), 18))
    # D: found on the last day, never rectified, deadlines 2, 4, ... 12 minutes after the
    # end of the week, alternating between the districts; the first of each is major.
    for drill in range(1, 7):
        district = districts[(drill - 1) % 2]
        t = t_end - (7 - drill) * 20 * 60 if drill < 6 else t_end
        found(district, "goes_overdue_after_replay", t, t_end + drill * 120, major=drill in (1, 4))
    first, last = min(r[0] for r in tl.rows), max(r[0] for r in tl.rows)
    _invariant(first == t0 and last == t_end, "the week runs from its first to its last event")

    def overdue_at(h: dict[str, Any], t: int) -> bool:
        if h["found"] > t:
            return False
        if h["reopened"] is not None and h["reopened"] <= t:
            return bool(h["deadline"] < t)  # the look-back visit's new deadline
        if h["rectified"] is not None and h["rectified"] <= t:
            return False
        return bool(h["first_deadline"] < t)

    checkpoints = []
    for offset in (
        DAY,
        3 * DAY,
        5 * DAY,
        6 * DAY + 12 * HOUR,
        7 * DAY,
        7 * DAY + 180,
        7 * DAY + 300,
        7 * DAY + 540,
        7 * DAY + 780,
        7 * DAY + 960,
        7 * DAY + 1260,
        7 * DAY + 3600,
    ):
        t = t0 + offset
        row: dict[str, Any] = {"offset_seconds": offset, "time": local.format(t)}
        for district in districts:
            mine = [h for h in hazards if h["district"] == district and overdue_at(h, t)]
            row[district] = {
                "overdue": len(mine),
                "overdue_major": sum(1 for h in mine if h["major"]),
            }
        checkpoints.append(row)
    listed = []
    for h in hazards:
        if h["group"] in ("on_time", "open_far"):
            continue
        if h["group"] == "late":
            start, until = h["deadline"], h["rectified"]
        else:
            start, until = h["deadline"], None
        listed.append(
            {
                "subject": h["subject"],
                "district": h["district"],
                "group": h["group"],
                "major": h["major"],
                "deadline": local.format(start),
                "overdue_from_offset_seconds": start - t0,
                "overdue_until_offset_seconds": until - t0 if until is not None else None,
            }
        )
    listed.sort(key=lambda x: (x["overdue_from_offset_seconds"], x["subject"]))
    groups: dict[str, int] = {}
    for h in hazards:
        groups[h["group"]] = groups.get(h["group"], 0) + 1
    expected = {
        "scenario": name,
        "districts": list(districts),
        "timezone": str(city.timezone),
        "first_event": local.format(t0),
        "last_event": local.format(t_end),
        "definition": "overdue at t: found by t, not rectified by t (or reopened by a "
        "not_rectified look-back visit by t), and its current deadline before t",
        "groups": dict(sorted(groups.items())),
        "overdue_hazards": listed,
        "never_overdue": sorted(
            h["subject"] for h in hazards if h["group"] in ("on_time", "open_far")
        ),
        "checkpoints": checkpoints,
        "events": len(tl.rows),
    }
    return Scenario(name, tl.records(), expected)


SCENARIOS = {
    "city-management-2025q2": scenario_city_management,
    "cases-2025-jan-sep": scenario_cases,
    "disputes-2025": scenario_disputes,
    "overdue-week": scenario_overdue_week,
}


def build_scenario(name: str, city: SimCity) -> Scenario:
    """Build a scenario from the reference city (deterministic: fixed seeds and dates)."""
    try:
        builder = SCENARIOS[name]
    except KeyError:
        raise SettingsError(
            f"There is no scenario {name!r} (known: {', '.join(SCENARIOS)})."
        ) from None
    return builder(city)


def shard(city: SimCity, config: SimConfig, index: int, count: int) -> tuple[SimCity, SimConfig]:
    """Part ``index`` of ``count`` of a simulation, for producing from several processes.

    Districts are dealt out in turn; each part runs at its districts' share of the rate
    with its own seed, so every part is deterministic, and together they make a city
    whose records are as realistic as one process's (not the same records). The overdue
    drill runs in part 0 only.
    """
    if not 0 <= index < count:
        raise SettingsError(f"Shard {index} of {count} does not exist.")
    if count > len(city.districts):
        raise SettingsError(f"Cannot split {len(city.districts)} districts {count} ways.")
    if count == 1:
        return city, config
    districts = city.districts[index::count]
    share = sum(d.weight for d in districts) / sum(d.weight for d in city.districts)
    part = SimCity(city.code, city.timezone, districts, city.categories)
    changes = dataclasses.replace(
        config,
        rate=config.rate * share,
        history_rate=None if config.history_rate is None else config.history_rate * share,
        seed=config.seed * 1_000_003 + index + 1,
        overdue_drill=config.overdue_drill if index == 0 else 0,
        max_records=None
        if config.max_records is None
        else config.max_records // count + (index < config.max_records % count),
    )
    return part, changes

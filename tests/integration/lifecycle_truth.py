"""A district's true figures from its records, written from docs/design.md alone.

Nothing here imports ``streams``: the rules are the prose and tables of design.md
("Lifecycles: what each transition does", "Order of checks"), metrics.md ("How the rates
are defined", windows) and api.md (comparisons, periods). Where the documents leave a
case open, the model raises :class:`Ambiguous` instead of guessing, so a scenario that
reaches such a case is dropped by its generator rather than asserted either way.

Input: the records of the source topics, each ``(role, partition, offset, key, value)``,
in offset order per partition, plus the reason expected for records built with a content
fault (the edge validator's verdicts are not re-implemented here). Output: the outcome
of every record (``counted`` or a rejection reason) and, per district, every figure the
API and ``/metrics`` export, evaluated at a given wall-clock time.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from kafka.partitioner.default import murmur2  # Kafka's own partitioner, not Watchfloor's

# design.md, "Words" and settings defaults.
GRACE = 24 * 3600.0
DEDUP_HORIZON = 7 * 86400.0
LIFECYCLE_MEMORY = 60 * 86400.0
# metrics.md: windows "count in 5-minute slots (1h, 24h) and hours (7d, 28d)"; api.md:
# "The windows end with the current 5-minute slot".
SLOT = 300
WINDOWS: dict[str, float] = {"1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0,
                             "28d": 28 * 86400.0}
# How close to a window's far edge an event may lie before its rounding (which the
# documents give only as "moves in steps of that size") could decide the answer.
WINDOW_MARGIN: dict[str, float] = {"1h": 600.0, "24h": 600.0, "7d": 7200.0, "28d": 7200.0}
# Decisions this close to a threshold are not asserted (24 h grace: exact comparison
# unspecified; 7-day horizon: "whole UTC days").
LATE_MARGIN = 1800.0
HORIZON_MARGIN = 1.1 * 86400.0

# api.md's measures (plus the cohort numerators and failed look-backs the API also
# shows), and the nine /metrics exports (design.md, metric names).
MEASURES = (
    "cases_filed", "cases_cleared", "disputes_reported", "disputes_mediated",
    "disputes_resolved", "disputes_escalated", "hazards_found", "hazards_rectified",
    "hazards_found_rectified", "hazards_verified", "patrols_completed",
    "cases_filed_cleared", "disputes_reported_resolved", "hazards_lookback_failed",
)
METRIC_MEASURES = (
    "cases_filed", "cases_cleared", "disputes_reported", "disputes_resolved",
    "disputes_escalated", "hazards_found", "hazards_rectified", "hazards_found_rectified",
    "patrols_completed",
)
TOTALS = tuple(m for m in METRIC_MEASURES if m != "hazards_found_rectified")
# (api name, metric stem, numerator, denominator)
RATES = (
    ("rectification_rate", "rectification_ratio", "hazards_found_rectified", "hazards_found"),
    # Cohorts (docs/api.md): of what was filed or reported in the span, the share closed.
    ("clearance_rate", "clearance_ratio", "cases_filed_cleared", "cases_filed"),
    ("dispute_resolution_rate", "dispute_resolution_ratio", "disputes_reported_resolved",
     "disputes_reported"),
)

ROLE_OF_FAMILY = {"incident": "incidents", "dispute": "disputes", "patrol": "patrols",
                  "hazard": "patrols"}


class Ambiguous(Exception):
    """The documents do not say what this record does (or a threshold is too close)."""

    def __init__(self, why: str, index: int | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.index = index


def district_partition(district: str, partitions: int) -> int:
    return int(murmur2(district.encode()) & 0x7FFFFFFF) % partitions


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# --- lifecycles --------------------------------------------------------------------


@dataclass
class Life:
    """What every lifecycle shares: the counted opening (time, category) and a taint."""

    subject: str
    opened: float | None = None  # time of the COUNTED opening (filed, reported, found)
    category: str | None = None
    # Touched by a late closing or the like: later steps are not asserted.
    tainted: str | None = None


@dataclass
class Case(Life):
    cleared: bool = False  # a counted clearance
    closed_now: bool = False  # current state closed (counted or late clearance)

    @property
    def open(self) -> bool:
        return self.opened is not None and not self.closed_now


@dataclass
class Dispute(Life):
    mediated: bool = False
    resolved: bool = False
    escalated: bool = False
    closed_now: bool = False

    @property
    def open(self) -> bool:
        return self.opened is not None and not self.closed_now


@dataclass
class Hazard(Life):
    major: bool = False
    found_deadline: float | None = None
    round: int = 1
    closed: bool = False  # the current round is closed (rectified or confirmed)
    closed_at: float | None = None  # time of the closing that closed this round
    closed_late: bool = False
    rectified: bool = False  # rectified this round
    rectified_at: float | None = None
    confirmed: bool = False  # confirmed this round
    confirmed_at: float | None = None
    latest_failed: float | None = None
    failed_deadline: float | None = None
    in_cohort: bool = False
    seen: bool = False  # any counted step at all

    @property
    def open(self) -> bool:
        return self.opened is not None and not self.closed

    @property
    def deadline(self) -> float | None:
        if self.failed_deadline is not None:
            return self.failed_deadline
        return self.found_deadline


@dataclass
class Entry:
    """One count in the event-time buckets: a flow measure at an event's time."""

    measure: str
    t: float
    life: Life | None
    own_category: str | None = None

    def category(self) -> str:
        if self.life is not None and self.life.opened is not None and self.life.category:
            return self.life.category
        return self.own_category or "unknown"


@dataclass
class StreamState:
    watermark: float = float("-inf")
    identities: dict[tuple[str, str], float] = field(default_factory=dict)
    late_identities: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class District:
    code: str
    streams: dict[str, StreamState] = field(default_factory=lambda: defaultdict(StreamState))
    # Records forwarded from another partition are judged late against each other only,
    # with the same identities (docs/design.md, "Topics and keys" and "Words").
    forwarded: dict[str, StreamState] = field(default_factory=dict)

    def forwarded_stream(self, role: str) -> StreamState:
        if role not in self.forwarded:
            direct = self.streams[role]
            self.forwarded[role] = StreamState(identities=direct.identities,
                                               late_identities=direct.late_identities)
        return self.forwarded[role]
    cases: dict[str, Case] = field(default_factory=dict)
    disputes: dict[str, Dispute] = field(default_factory=dict)
    hazards: dict[str, Hazard] = field(default_factory=dict)
    patrol_runs: dict[str, float] = field(default_factory=dict)  # subject -> counted time
    entries: list[Entry] = field(default_factory=list)
    late: int = 0
    duplicates: int = 0
    last_patrol_end: float | None = None

    # -- what the state shows --------------------------------------------------------

    def cohort_entries(self) -> list[Entry]:
        out = []
        for c in self.cases.values():
            if c.opened is not None and c.cleared:
                out.append(Entry("cases_filed_cleared", c.opened, c))
        for p in self.disputes.values():
            if p.opened is not None and p.resolved:
                out.append(Entry("disputes_reported_resolved", p.opened, p))
        for h in self.hazards.values():
            if h.opened is not None and h.in_cohort:
                out.append(Entry("hazards_found_rectified", h.opened, h))
        return out

    def all_entries(self) -> list[Entry]:
        return self.entries + self.cohort_entries()

    def counts(self, lo: float, hi: float) -> dict[str, int]:
        """Counts of every measure for event times in ``[lo, hi)``."""
        out = dict.fromkeys(MEASURES, 0)
        for e in self.all_entries():
            if lo <= e.t < hi:
                out[e.measure] += 1
        return out

    def by_category(self, lo: float, hi: float) -> dict[str, dict[str, int]]:
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for e in self.all_entries():
            if lo <= e.t < hi:
                out[e.measure][e.category()] += 1
        return {m: dict(c) for m, c in out.items()}

    def totals(self) -> dict[str, int]:
        return {m: sum(1 for e in self.entries if e.measure == m) for m in TOTALS}

    def check_clear_of(self, edge: float, margin: float, what: str) -> None:
        """No counted time within ``margin`` of an edge whose rounding is unspecified."""
        for e in self.all_entries():
            if abs(e.t - edge) < margin:
                raise Ambiguous(
                    f"{self.code}: {e.measure} at {datetime.fromtimestamp(e.t).isoformat()} "
                    f"lies within {margin:.0f}s of the {what} edge"
                )

    def check_empty(self, lo: float, hi: float, what: str) -> None:
        for e in self.all_entries():
            if lo <= e.t < hi:
                raise Ambiguous(f"{self.code}: {e.measure} at {e.t} lies in {what}")

    def rolling(self, now: float) -> dict[str, dict[str, int]]:
        end = (now // SLOT + 1) * SLOT
        out = {}
        for label, length in WINDOWS.items():
            self.check_clear_of(end - length, WINDOW_MARGIN[label], f"{label} window")
            out[label] = self.counts(end - length, end)
        return out

    def open_hazards(self) -> list[Hazard]:
        return [h for h in self.hazards.values() if h.open]

    def overdue(self, now: float) -> list[Hazard]:
        return [h for h in self.open_hazards() if h.deadline is not None and h.deadline < now]

    def current(self, now: float) -> dict[str, Any]:
        open_disputes = [p for p in self.disputes.values() if p.open]
        overdue = self.overdue(now)
        oldest = min((p.opened for p in open_disputes if p.opened is not None), default=None)
        return {
            "open_cases": sum(1 for c in self.cases.values() if c.open),
            "open_disputes": len(open_disputes),
            "oldest_open_dispute_age_seconds": None if oldest is None else now - oldest,
            "open_hazards": len(self.open_hazards()),
            "overdue_hazards": len(overdue),
            "overdue_major_hazards": sum(1 for h in overdue if h.major),
            "hours_since_last_patrol": (
                None if self.last_patrol_end is None else (now - self.last_patrol_end) / 3600
            ),
            "late_events": self.late,
            "duplicate_events": self.duplicates,
        }

    def watermark(self) -> float | None:
        marks = [s.watermark for s in self.streams.values() if s.watermark > float("-inf")]
        return max(marks) if marks else None

    def deadlines(self) -> list[float]:
        return [h.deadline for h in self.open_hazards() if h.deadline is not None]


# --- the rules -------------------------------------------------------------------------


class Model:
    """Feed records in offset order (per partition); read outcomes and district states."""

    def __init__(self, partitions: int, districts: Iterable[str],
                 content_faults: Mapping[bytes, str]) -> None:
        self.partitions = partitions
        self.known = set(districts)
        self.faults = dict(content_faults)
        self.districts: dict[str, District] = {}
        self.outcomes: list[str] = []
        self.ambiguous: list[Ambiguous] = []

    def district(self, code: str) -> District:
        if code not in self.districts:
            self.districts[code] = District(code)
        return self.districts[code]

    def feed(self, records: Iterable[tuple[str, int, int, bytes | None, bytes | None]],
             strict: bool = True) -> list[str]:
        """Outcome per record. ``strict``: raise on the first ambiguous record."""
        for i, (role, partition, _offset, _key, value) in enumerate(records):
            try:
                outcome = self.apply(role, partition, value)
            except Ambiguous as exc:
                exc.index = i
                if strict:
                    raise
                self.ambiguous.append(exc)
                outcome = "ambiguous"
            self.outcomes.append(outcome)
        return self.outcomes

    def apply(self, role: str, partition: int, value: bytes | None) -> str:
        if value is not None and value in self.faults:
            return self.faults[value]
        if not value:
            return "empty"
        doc = orjson.loads(value)
        kind = str(doc["type"]).split(".")[2]
        if ROLE_OF_FAMILY[str(doc["type"]).split(".")[1]] != role:
            return "wrong_topic"
        d = str(doc["district"])
        if d not in self.known:
            return "unknown_district"
        forwarded = partition != district_partition(d, self.partitions)
        dist = self.district(d)
        st = dist.forwarded_stream(role) if forwarded else dist.streams[role]
        t = ts(doc["time"])
        ident = (str(doc["source"]), str(doc["id"]))
        handler = getattr(self, f"_{kind}")
        # 1. Repeat, by identity (the lifecycle rules come in the handlers).
        if ident in st.late_identities:
            raise Ambiguous("a repeat of a late closing's identity (applied or not?)")
        if ident in st.identities:
            seen_t = st.identities[ident]
            edge = st.watermark - DEDUP_HORIZON
            if abs(seen_t - edge) < HORIZON_MARGIN:
                raise Ambiguous("identity at the edge of the de-duplication horizon")
            if seen_t >= edge:
                dist.duplicates += 1
                return "duplicate"
        outcome: str = handler(dist, st, doc, t, ident)
        if forwarded:
            # Counted on the district's partition via the forward topic: no dead letter
            # where it was published. One rejected there is not told apart here.
            if outcome != "counted":
                raise Ambiguous("a forwarded record that is not counted")
            return "forwarded"
        if outcome == "duplicate":
            dist.duplicates += 1
        elif outcome == "too_late":
            dist.late += 1
            # Is a late event's identity "applied"? Not said: its repeats are not asserted.
            st.late_identities.add(ident)
        return outcome

    # helpers -------------------------------------------------------------------------

    @staticmethod
    def late(st: StreamState, t: float) -> bool:
        if st.watermark == float("-inf"):
            return False
        gap = st.watermark - GRACE - t
        if abs(gap) < LATE_MARGIN:
            raise Ambiguous("event time at the edge of the grace")
        return gap > 0

    @staticmethod
    def counted(st: StreamState, t: float, ident: tuple[str, str]) -> str:
        st.watermark = max(st.watermark, t)
        st.identities[ident] = t
        return "counted"

    @staticmethod
    def check_taint(life: Life) -> None:
        if life.tainted:
            raise Ambiguous(f"a step after {life.tainted} on {life.subject}")

    @staticmethod
    def late_closing(life: Life, what: str) -> str:
        # Does the lifecycle now "have" the step? Not said: later steps are not asserted.
        life.tainted = what
        return "too_late"

    # cases ------------------------------------------------------------------------------

    def _case(self, dist: District, subject: str) -> Case:
        return dist.cases.setdefault(subject, Case(subject))

    def _case_filed(self, dist: District, st: StreamState, doc: dict[str, Any], t: float,
                    ident: tuple[str, str]) -> str:
        c = self._case(dist, doc["subject"])
        if c.opened is not None:
            return "duplicate"  # filed | filed
        self.check_taint(c)
        if self.late(st, t):
            return "too_late"  # a late opening changes nothing
        c.opened, c.category = t, doc["data"]["category"]
        # filed | cleared, not filed: never open (closed_now), joins the cohort if the
        # clearance was counted (cohort_entries).
        dist.entries.append(Entry("cases_filed", t, c))
        return self.counted(st, t, ident)

    def _case_cleared(self, dist: District, st: StreamState, doc: dict[str, Any], t: float,
                      ident: tuple[str, str]) -> str:
        c = self._case(dist, doc["subject"])
        if c.cleared:
            return "duplicate"  # cleared | cleared
        self.check_taint(c)
        if self.late(st, t):
            if c.open:
                c.closed_now = True
            return self.late_closing(c, "a late clearance")
        c.cleared = c.closed_now = True
        dist.entries.append(Entry("cases_cleared", t, c, doc["data"].get("category")))
        return self.counted(st, t, ident)

    # disputes -------------------------------------------------------------------------

    def _dispute(self, dist: District, subject: str) -> Dispute:
        return dist.disputes.setdefault(subject, Dispute(subject))

    def _reported(self, dist: District, st: StreamState, doc: dict[str, Any], t: float,
                  ident: tuple[str, str]) -> str:
        p = self._dispute(dist, doc["subject"])
        if p.opened is not None:
            return "duplicate"
        self.check_taint(p)
        if self.late(st, t):
            return "too_late"
        p.opened, p.category = t, doc["data"]["category"]
        dist.entries.append(Entry("disputes_reported", t, p))
        return self.counted(st, t, ident)

    def _mediation_started(self, dist: District, st: StreamState, doc: dict[str, Any],
                           t: float, ident: tuple[str, str]) -> str:
        p = self._dispute(dist, doc["subject"])
        if p.mediated:
            return "duplicate"
        self.check_taint(p)
        if self.late(st, t):
            return "too_late"  # a late mediation changes nothing
        p.mediated = True
        dist.entries.append(Entry("disputes_mediated", t, p))
        return self.counted(st, t, ident)

    def _resolved(self, dist: District, st: StreamState, doc: dict[str, Any], t: float,
                  ident: tuple[str, str]) -> str:
        p = self._dispute(dist, doc["subject"])
        if p.resolved:
            return "duplicate"
        self.check_taint(p)
        if p.escalated:
            raise Ambiguous("resolved after escalated: cohort or not?")
        if self.late(st, t):
            if p.open:
                p.closed_now = True
            return self.late_closing(p, "a late resolution")
        p.resolved = p.closed_now = True
        dist.entries.append(Entry("disputes_resolved", t, p))
        return self.counted(st, t, ident)

    def _escalated(self, dist: District, st: StreamState, doc: dict[str, Any], t: float,
                   ident: tuple[str, str]) -> str:
        p = self._dispute(dist, doc["subject"])
        if p.escalated:
            return "duplicate"
        self.check_taint(p)
        if p.resolved:
            raise Ambiguous("escalated after resolved")
        if self.late(st, t):
            if p.open:
                p.closed_now = True
            return self.late_closing(p, "a late escalation")
        p.escalated = p.closed_now = True
        dist.entries.append(Entry("disputes_escalated", t, p))
        return self.counted(st, t, ident)

    # patrols --------------------------------------------------------------------------

    def _completed(self, dist: District, st: StreamState, doc: dict[str, Any], t: float,
                   ident: tuple[str, str]) -> str:
        subject = doc["subject"]
        if subject in dist.patrol_runs:
            seen_t = dist.patrol_runs[subject]
            edge = st.watermark - DEDUP_HORIZON
            if abs(seen_t - edge) < HORIZON_MARGIN:
                raise Ambiguous("patrol run at the edge of its memory")
            if seen_t >= edge:
                return "duplicate"
        if self.late(st, t):
            return "too_late"
        dist.patrol_runs[subject] = t
        dist.entries.append(Entry("patrols_completed", t, None))
        end = ts(doc["data"]["ended_at"])
        if dist.last_patrol_end is None or end > dist.last_patrol_end:
            dist.last_patrol_end = end
        return self.counted(st, t, ident)

    # hazards --------------------------------------------------------------------------

    def _hazard(self, dist: District, subject: str) -> Hazard:
        return dist.hazards.setdefault(subject, Hazard(subject))

    def _found(self, dist: District, st: StreamState, doc: dict[str, Any], t: float,
               ident: tuple[str, str]) -> str:
        h = self._hazard(dist, doc["subject"])
        if h.opened is not None:
            return "duplicate"  # found | found
        self.check_taint(h)
        if self.late(st, t):
            return "too_late"
        for step in (h.rectified_at, h.confirmed_at, h.latest_failed):
            if step is not None and step <= t:
                raise Ambiguous("a step older than its finding")
        data = doc["data"]
        h.opened, h.category = t, data["category"]
        h.major, h.found_deadline = bool(data["major"]), ts(data["deadline"])
        if h.failed_deadline is not None and h.failed_deadline <= h.found_deadline:
            raise Ambiguous("a failed visit's deadline before the found deadline: newer?")
        # Opens unless the current round is closed; joins the cohort if closed by a
        # counted closing (in_cohort already says so).
        h.seen = True
        dist.entries.append(Entry("hazards_found", t, h))
        return self.counted(st, t, ident)

    def _rectified(self, dist: District, st: StreamState, doc: dict[str, Any], t: float,
                   ident: tuple[str, str]) -> str:
        h = self._hazard(dist, doc["subject"])
        if h.latest_failed is not None and t <= h.latest_failed:
            return "duplicate"  # outgrown: the visit judged it failed
        if h.rectified:
            return "duplicate"  # rectified this round
        self.check_taint(h)
        if h.opened is not None and t < h.opened:
            raise Ambiguous("a rectification older than its finding")
        if self.late(st, t):
            if h.open:
                h.closed = h.closed_late = True
            return self.late_closing(h, "a late rectification")
        if not h.closed:  # open, or not found yet: closes the round, joins the cohort
            h.closed, h.closed_at, h.in_cohort = True, t, True
        elif h.confirmed:  # confirmed this round, not rectified: stays closed
            pass
        else:  # pragma: no cover - closed and not confirmed means rectified
            raise AssertionError("closed round neither rectified nor confirmed")
        h.rectified, h.rectified_at, h.seen = True, t, True
        dist.entries.append(Entry("hazards_rectified", t, h))
        return self.counted(st, t, ident)

    def _verified(self, dist: District, st: StreamState, doc: dict[str, Any], t: float,
                  ident: tuple[str, str]) -> str:
        h = self._hazard(dist, doc["subject"])
        data = doc["data"]
        if data["result"] == "confirmed":
            if h.latest_failed is not None and t <= h.latest_failed:
                return "duplicate"  # outgrown
            if h.confirmed:
                return "duplicate"  # confirmed this round
            self.check_taint(h)
            if not h.seen:
                raise Ambiguous("a confirmed visit of an unknown hazard")
            if h.opened is not None and t < h.opened:
                raise Ambiguous("a visit older than its finding")
            if self.late(st, t):
                if h.open:
                    h.closed = h.closed_late = True
                return self.late_closing(h, "a late confirmed visit")
            if not h.closed:  # open: closes the round, joins the cohort
                h.closed, h.closed_at, h.in_cohort = True, t, True
            # rectified this round: counts verified only
            h.confirmed, h.confirmed_at = True, t
            dist.entries.append(Entry("hazards_verified", t, h))
            return self.counted(st, t, ident)
        # a failed visit (not_rectified, new_deadline)
        if h.latest_failed is not None and t <= h.latest_failed:
            return "duplicate"
        if h.closed and h.closed_at is not None and t < h.closed_at:
            return "duplicate"  # outgrown: it judged an earlier rectification
        self.check_taint(h)
        if not h.seen:
            raise Ambiguous("a failed visit of an unknown hazard")
        if h.opened is not None and t < h.opened:
            raise Ambiguous("a visit older than its finding")
        if (h.rectified and h.confirmed and h.rectified_at is not None
                and h.confirmed_at is not None
                and min(h.rectified_at, h.confirmed_at) <= t < max(h.rectified_at,
                                                                   h.confirmed_at)):
            raise Ambiguous("a failed visit between a round's two closings")
        if self.late(st, t):
            return "too_late"  # a late opening changes nothing
        new_deadline = ts(data["new_deadline"])
        if h.closed:  # reopens: next round, new deadline, leaves the cohort
            h.round += 1
            h.closed, h.closed_at = False, None
            h.rectified, h.rectified_at = False, None
            h.confirmed, h.confirmed_at = False, None
            h.in_cohort = False
        h.latest_failed, h.failed_deadline = t, new_deadline  # "the new one"
        dist.entries.append(Entry("hazards_lookback_failed", t, h))
        return self.counted(st, t, ident)


# --- calendar comparisons and periods (api.md) ---------------------------------------


def midnight(d: date, tz: ZoneInfo) -> float:
    return datetime.combine(d, time(0), tz).timestamp()


def comparisons(now: float, tz: ZoneInfo) -> dict[str, tuple[tuple[float, float],
                                                            tuple[float, float]]]:
    """api.md: today vs yesterday up to the same clock time, this week vs last week up to
    the same time, the last 28 days (today included) vs the 28 before, the year so far vs
    last year's same dates up to the same clock time. Spans are ``[lo, hi)``."""
    local = datetime.fromtimestamp(now, tz)
    today = local.date()
    monday = today - timedelta(days=today.weekday())
    start28 = midnight(today - timedelta(days=27), tz)
    elapsed = now - midnight(today, tz)
    try:
        last_year = today.replace(year=today.year - 1)
    except ValueError:
        last_year = today.replace(year=today.year - 1, day=28)
    return {
        "today": ((midnight(today, tz), now),
                  (midnight(today - timedelta(days=1), tz), now - 86400)),
        "week": ((midnight(monday, tz), now),
                 (midnight(monday - timedelta(days=7), tz), now - 7 * 86400)),
        # "the 28 before": before start28; whether it stops at start28 or at the same
        # clock time 28 days ago is not said, so the test keeps that stretch empty.
        "28d": ((start28, now), (start28 - 28 * 86400, now - 28 * 86400)),
        "ytd": ((midnight(date(today.year, 1, 1), tz), now),
                (midnight(date(today.year - 1, 1, 1), tz), midnight(last_year, tz) + elapsed)),
    }


def comparison_edges(now: float, tz: ZoneInfo) -> list[tuple[float, float, str]]:
    """The comparison edges that are not local midnights, with the stretch around each
    that must hold no counted event (edge rounding and the 28-day reading are open)."""
    local = datetime.fromtimestamp(now, tz)
    start28 = midnight(local.date() - timedelta(days=27), tz)
    return [
        (now - 86400 - 600, now - 86400 + 600, "yesterday's clock time"),
        (now - 7 * 86400 - 600, now - 7 * 86400 + 600, "last week's clock time"),
        (now - 28 * 86400 - 600, start28, "the end of the 28 days before"),
    ]


def rate(num: int, den: int) -> float | None:
    return num / den if den else None

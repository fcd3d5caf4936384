"""One district's figures: lifecycles correlated by subject, event-time buckets, overdue hazards."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any
from zoneinfo import ZoneInfo

from .events import STREAM_OF_KIND, Event, Kind
from .windows import (
    DAY_SECONDS,
    HOUR_SECONDS,
    N_MEASURES,
    Buckets,
    Measure,
    rolling_end,
    zeros,
)

SNAPSHOT_VERSION = 1
EXPIRY_EVERY = 6 * HOUR_SECONDS


class Outcome(IntEnum):
    COUNTED = 0
    DUPLICATE = 1
    TOO_LATE = 2


# Subject flags: which transitions a subject has seen. A repeated transition is a duplicate.
OPENED = 1  # case filed, dispute reported, hazard found
CLOSED = 2  # case cleared, patrol completed
MEDIATED = 4
RESOLVED = 8
ESCALATED = 16
RECTIFIED = 32
VERIFIED = 64


class Subject:
    """What is known of one case, dispute, hazard or patrol run."""

    __slots__ = ("category", "deadline", "flags", "last", "major", "opened", "round")

    def __init__(
        self,
        flags: int,
        opened: float | None,
        last: float,
        category: str | None = None,
        deadline: float | None = None,
        major: bool = False,
        round: int = 0,
    ) -> None:
        self.flags = flags
        self.opened = opened  # time of the opening transition, None until it arrives
        self.last = last  # time of the latest transition
        self.category = category
        self.deadline = deadline
        self.major = major
        # Hazards: bumped when a look-back visit finds the rectification did not hold, so
        # the next rectification counts again.
        self.round = round

    def to_row(self, sid: str) -> list[Any]:
        return [
            sid,
            self.flags,
            self.opened,
            self.last,
            self.category,
            self.deadline,
            self.major,
            self.round,
        ]

    @classmethod
    def from_row(cls, row: list[Any]) -> tuple[str, Subject]:
        sid, flags, opened, last, category, deadline, major, rnd = row
        return sid, cls(flags, opened, last, category, deadline, major, rnd)


def _dispute_open(flags: int) -> bool:
    return bool(flags & OPENED) and not flags & (RESOLVED | ESCALATED)


def _hazard_open(flags: int) -> bool:
    return bool(flags & OPENED) and not flags & RECTIFIED


def _case_open(flags: int) -> bool:
    return bool(flags & OPENED) and not flags & CLOSED


def _never_open(flags: int) -> bool:
    return False


CASES, DISPUTES, HAZARDS, PATROLS = range(4)
_STREAM_INDEX: dict[Kind, int] = {k: int(stream) - 1 for k, stream in STREAM_OF_KIND.items()}
_IS_OPEN: tuple[Callable[[int], bool], ...] = (_case_open, _dispute_open, _hazard_open, _never_open)
_GROUP_OF_KIND: dict[Kind, int] = {
    Kind.CASE_FILED: CASES,
    Kind.CASE_CLEARED: CASES,
    Kind.DISPUTE_REPORTED: DISPUTES,
    Kind.DISPUTE_MEDIATION_STARTED: DISPUTES,
    Kind.DISPUTE_RESOLVED: DISPUTES,
    Kind.DISPUTE_ESCALATED: DISPUTES,
    Kind.PATROL_COMPLETED: PATROLS,
    Kind.HAZARD_FOUND: HAZARDS,
    Kind.HAZARD_RECTIFIED: HAZARDS,
    Kind.HAZARD_VERIFIED: HAZARDS,
}


@dataclass(frozen=True)
class Limits:
    """How far back a district's state reaches; all in seconds of event time."""

    grace: float = 24 * HOUR_SECONDS
    dedup_horizon: float = 7 * DAY_SECONDS
    retention_days: int = 800


class DistrictState:
    """Everything Watchfloor knows about one district, updated one event at a time.

    Pure: no I/O and no clock of its own. Event time drives windows, lateness and
    expiry, so replaying the same events gives the same state. Only overdue depends on
    the wall clock, which the caller passes to :meth:`tick`.

    Lateness is judged per stream (incidents, disputes, patrols): each topic is read at
    its own pace, so a backlog of patrols must not be "late" because incidents ran
    ahead. Expiry follows the district's overall watermark, the latest event time seen.
    """

    def __init__(self, district: str, tz: ZoneInfo, limits: Limits = Limits()) -> None:
        self.district = district
        self.tz = tz
        self.limits = limits
        self.buckets = Buckets(tz)
        self.totals = zeros()
        self.watermark = float("-inf")
        # Latest event time per stream (index: Stream - 1).
        self.stream_watermarks = [float("-inf")] * 3
        # "<topic>:<partition>" -> highest offset applied: the evidence that makes a
        # replay after a crash skip what this state already counts.
        self.evidence: dict[str, int] = {}
        self.cases: dict[str, Subject] = {}
        self.disputes: dict[str, Subject] = {}
        self.hazards: dict[str, Subject] = {}
        self.patrols: dict[str, Subject] = {}
        self.open_cases = 0
        self.open_disputes = 0
        self.open_hazards = 0
        self.late_total = 0
        self.duplicate_total = 0
        self.last_patrol_end: float | None = None
        self.next_expiry = float("-inf")
        self.next_open_sweep = float("-inf")
        # Per group, the ids of subjects that stopped being open, by the hour of their
        # latest transition: expiry drops whole hours the horizon has passed instead of
        # scanning every subject, for one pointer per closed subject. Derived, rebuilt
        # on load from the subjects themselves, so live and rebuilt states expire alike.
        self._closings: tuple[dict[int, list[str]], ...] = ({}, {}, {}, {})
        self._groups = (self.cases, self.disputes, self.hazards, self.patrols)
        # Overdue bookkeeping (derived, rebuilt on load): a heap of (deadline, round, id)
        # for open hazards, and the hazards whose deadline the clock has passed.
        self._due: list[tuple[float, int, str]] = []
        self.overdue: dict[str, Subject] = {}
        self.overdue_major = 0
        self.version = 0
        self._rolling: tuple[int, float, dict[str, list[int]]] | None = None
        self._open_by_category: tuple[int, dict[str, int]] | None = None
        self._oldest_dispute: tuple[int, float | None] | None = None
        self._handlers: dict[Kind, Callable[[Event], Subject | None]] = {
            Kind.CASE_FILED: self._case_filed,
            Kind.CASE_CLEARED: self._case_cleared,
            Kind.DISPUTE_REPORTED: self._dispute_reported,
            Kind.DISPUTE_MEDIATION_STARTED: self._dispute_mediated,
            Kind.DISPUTE_RESOLVED: self._dispute_resolved,
            Kind.DISPUTE_ESCALATED: self._dispute_escalated,
            Kind.PATROL_COMPLETED: self._patrol_completed,
            Kind.HAZARD_FOUND: self._hazard_found,
            Kind.HAZARD_RECTIFIED: self._hazard_rectified,
            Kind.HAZARD_VERIFIED: self._hazard_verified,
        }

    # -- applying events -----------------------------------------------------------------

    def apply(self, ev: Event) -> Outcome:
        """Count one event; say whether it counted, repeated a transition, or came too late."""
        ts = ev.ts
        stream = _STREAM_INDEX[ev.kind]
        if ts < self.stream_watermarks[stream] - self.limits.grace:
            self.late_total += 1
            return Outcome.TOO_LATE
        s = self._handlers[ev.kind](ev)
        if s is None:
            self.duplicate_total += 1
            return Outcome.DUPLICATE
        group = _GROUP_OF_KIND[ev.kind]
        if not _IS_OPEN[group](s.flags):
            hour = int(s.last // HOUR_SECONDS)
            ids = self._closings[group].get(hour)
            if ids is None:
                self._closings[group][hour] = [ev.subject]
            else:
                ids.append(ev.subject)
        if ts > self.stream_watermarks[stream]:
            self.stream_watermarks[stream] = ts
            if ts > self.watermark:
                self.watermark = ts
                if ts >= self.next_expiry:
                    self.expire()
        self.version += 1
        return Outcome.COUNTED

    def _count(self, measure: Measure, ts: float, category: str | None, n: int = 1) -> None:
        self.totals[measure] += n
        self.buckets.add(measure, ts, category, n)

    def _case_filed(self, ev: Event) -> Subject | None:
        s = self.cases.get(ev.subject)
        if s is None:
            s = self.cases[ev.subject] = Subject(OPENED, ev.ts, ev.ts, ev.category)
            self.open_cases += 1
        elif s.flags & OPENED:
            return None
        else:  # cleared before it was filed: counted, never open
            s.flags |= OPENED
            s.opened = ev.ts
            s.category = ev.category
        self._count(Measure.CASES_FILED, ev.ts, ev.category)
        return s

    def _case_cleared(self, ev: Event) -> Subject | None:
        s = self.cases.get(ev.subject)
        if s is None:
            s = self.cases[ev.subject] = Subject(CLOSED, None, ev.ts, ev.category)
        elif s.flags & CLOSED:
            return None
        else:
            s.flags |= CLOSED
            s.last = ev.ts
            if s.flags & OPENED:
                self.open_cases -= 1
        self._count(Measure.CASES_CLEARED, ev.ts, ev.category or s.category)
        return s

    def _dispute_transition(self, ev: Event, flag: int, measure: Measure) -> Subject | None:
        s = self.disputes.get(ev.subject)
        if s is None:
            s = self.disputes[ev.subject] = Subject(0, None, ev.ts, ev.category)
        elif s.flags & flag:
            return None
        was_open = _dispute_open(s.flags)
        s.flags |= flag
        s.last = max(s.last, ev.ts)
        if flag == OPENED:
            s.opened = ev.ts
            s.category = ev.category
        self.open_disputes += int(_dispute_open(s.flags)) - int(was_open)
        self._count(measure, ev.ts, s.category)
        return s

    def _dispute_reported(self, ev: Event) -> Subject | None:
        return self._dispute_transition(ev, OPENED, Measure.DISPUTES_REPORTED)

    def _dispute_mediated(self, ev: Event) -> Subject | None:
        return self._dispute_transition(ev, MEDIATED, Measure.DISPUTES_MEDIATED)

    def _dispute_resolved(self, ev: Event) -> Subject | None:
        return self._dispute_transition(ev, RESOLVED, Measure.DISPUTES_RESOLVED)

    def _dispute_escalated(self, ev: Event) -> Subject | None:
        return self._dispute_transition(ev, ESCALATED, Measure.DISPUTES_ESCALATED)

    def _patrol_completed(self, ev: Event) -> Subject | None:
        if ev.subject in self.patrols:
            return None
        s = self.patrols[ev.subject] = Subject(CLOSED, ev.ts, ev.ts)
        end = ev.ended if ev.ended is not None else ev.ts
        if self.last_patrol_end is None or end > self.last_patrol_end:
            self.last_patrol_end = end
        self._count(Measure.PATROLS_COMPLETED, ev.ts, None)
        return s

    def _hazard_found(self, ev: Event) -> Subject | None:
        s = self.hazards.get(ev.subject)
        if s is None:
            s = self.hazards[ev.subject] = Subject(
                OPENED, ev.ts, ev.ts, ev.category, ev.deadline, ev.major
            )
            self.open_hazards += 1
            self._schedule(ev.subject, s)
        elif s.flags & OPENED:
            return None
        else:  # rectified (or verified) before it was found
            s.flags |= OPENED
            s.opened = ev.ts
            s.category = ev.category
            s.major = ev.major
            if s.deadline is None:
                s.deadline = ev.deadline
            if _hazard_open(s.flags):
                self.open_hazards += 1
                self._schedule(ev.subject, s)
        self._count(Measure.HAZARDS_FOUND, ev.ts, ev.category)
        if s.flags & RECTIFIED:
            self._count(Measure.HAZARDS_FOUND_RECTIFIED, ev.ts, ev.category)
        return s

    def _hazard_rectified(self, ev: Event) -> Subject | None:
        s = self.hazards.get(ev.subject)
        if s is None:
            s = self.hazards[ev.subject] = Subject(RECTIFIED, None, ev.ts)
            self._count(Measure.HAZARDS_RECTIFIED, ev.ts, None)
            return s
        if s.flags & RECTIFIED:
            return None
        was_open = _hazard_open(s.flags)
        s.flags |= RECTIFIED
        s.last = max(s.last, ev.ts)
        self._count(Measure.HAZARDS_RECTIFIED, ev.ts, s.category)
        if s.opened is not None:
            self._count(Measure.HAZARDS_FOUND_RECTIFIED, s.opened, s.category)
        if was_open:
            self.open_hazards -= 1
            self._unmark_overdue(ev.subject, s)
        return s

    def _hazard_verified(self, ev: Event) -> Subject | None:
        s = self.hazards.get(ev.subject)
        if ev.confirmed:
            if s is None:
                s = self.hazards[ev.subject] = Subject(VERIFIED, None, ev.ts)
            elif s.flags & VERIFIED:
                return None
            s.flags |= VERIFIED
            s.last = max(s.last, ev.ts)
            self._count(Measure.HAZARDS_VERIFIED, ev.ts, s.category)
            return s
        # The look-back visit found the rectification did not hold: the hazard reopens
        # with its new deadline and leaves the cohort of rectified hazards.
        if s is None:
            s = self.hazards[ev.subject] = Subject(0, None, ev.ts, None, ev.deadline)
            return s
        if not s.flags & RECTIFIED:
            if s.deadline == ev.deadline:
                return None
            s.deadline = ev.deadline
            s.last = max(s.last, ev.ts)
            if _hazard_open(s.flags):
                self._unmark_overdue(ev.subject, s)
                self._schedule(ev.subject, s)
            return s
        s.flags &= ~(RECTIFIED | VERIFIED)
        s.round += 1
        s.deadline = ev.deadline
        s.last = max(s.last, ev.ts)
        if s.opened is not None:
            self._count(Measure.HAZARDS_FOUND_RECTIFIED, s.opened, s.category, -1)
        if _hazard_open(s.flags):
            self.open_hazards += 1
            self._schedule(ev.subject, s)
        return s

    # -- overdue ------------------------------------------------------------------------

    def _schedule(self, sid: str, s: Subject) -> None:
        if s.deadline is not None:
            heapq.heappush(self._due, (s.deadline, s.round, sid))

    def _unmark_overdue(self, sid: str, s: Subject) -> None:
        if self.overdue.pop(sid, None) is not None and s.major:
            self.overdue_major -= 1

    def tick(self, now: float) -> int:
        """Move hazards whose deadline is before ``now`` into the overdue set; return how many."""
        due = self._due
        moved = 0
        while due and due[0][0] < now:
            deadline, rnd, sid = heapq.heappop(due)
            s = self.hazards.get(sid)
            if (
                s is None
                or s.round != rnd
                or s.deadline != deadline
                or not _hazard_open(s.flags)
                or sid in self.overdue
            ):
                continue  # a stale entry: rectified, reopened or re-scheduled since
            self.overdue[sid] = s
            if s.major:
                self.overdue_major += 1
            moved += 1
        return moved

    def next_deadline(self) -> float | None:
        return self._due[0][0] if self._due else None

    # -- expiry -------------------------------------------------------------------------

    def expire(self) -> None:
        """Forget what the watermark has left behind; runs every few hours of event time."""
        w = self.watermark
        lim = self.limits
        self.buckets.expire(w, lim.retention_days)
        # Closed (and never-opened, out-of-order) subjects are kept for the
        # de-duplication horizon.
        cutoff = int((w - lim.dedup_horizon) // HOUR_SECONDS)
        for group, by_hour in enumerate(self._closings):
            subjects = self._groups[group]
            is_open = _IS_OPEN[group]
            for hour in [h for h in by_hour if h < cutoff]:
                for sid in by_hour.pop(hour):
                    s = subjects.get(sid)
                    # A later transition filed it under a later hour too; that one decides.
                    if (
                        s is not None
                        and int(s.last // HOUR_SECONDS) < cutoff
                        and not is_open(s.flags)
                    ):
                        del subjects[sid]
        # Open ones are kept for the whole retention; a full sweep once a day suffices.
        if w >= self.next_open_sweep:
            open_before = w - lim.retention_days * DAY_SECONDS
            dropped = False
            for group, subjects in enumerate(self._groups):
                is_open = _IS_OPEN[group]
                old = [
                    sid for sid, s in subjects.items() if is_open(s.flags) and s.last < open_before
                ]
                for sid in old:
                    s = subjects.pop(sid)
                    dropped = True
                    if group == HAZARDS:
                        self._unmark_overdue(sid, s)
            if dropped:
                self._recount_open()
            self.next_open_sweep = w + DAY_SECONDS
        # Rectified hazards leave their deadline entries behind until the deadline comes;
        # when those outnumber the open hazards, rebuild the heap from the open ones.
        if len(self._due) > 2 * self.open_hazards + 1024:
            self._due = [
                (s.deadline, s.round, sid)
                for sid, s in self.hazards.items()
                if _hazard_open(s.flags) and s.deadline is not None
            ]
            heapq.heapify(self._due)
        # Every few hours of event time is plenty: the finer resolutions keep a little
        # longer, and a sparse district does not pay for a sweep with every event.
        self.next_expiry = w + EXPIRY_EVERY

    def _recount_open(self) -> None:
        self.open_cases = sum(1 for s in self.cases.values() if _case_open(s.flags))
        self.open_disputes = sum(1 for s in self.disputes.values() if _dispute_open(s.flags))
        self.open_hazards = sum(1 for s in self.hazards.values() if _hazard_open(s.flags))

    def _rebuild_derived(self) -> None:
        self._recount_open()
        self._due = []
        for sid, s in self.hazards.items():
            if _hazard_open(s.flags):
                self._schedule(sid, s)
        self._closings = ({}, {}, {}, {})
        for group, subjects in enumerate(self._groups):
            by_hour = self._closings[group]
            is_open = _IS_OPEN[group]
            for sid, s in subjects.items():
                if not is_open(s.flags):
                    by_hour.setdefault(int(s.last // HOUR_SECONDS), []).append(sid)

    # -- reading ------------------------------------------------------------------------

    def counts(self, lo: float, hi: float) -> list[int]:
        return self.buckets.total(lo, hi)

    def rolling(self, now: float) -> dict[str, list[int]]:
        """Counts in each rolling window at ``now``; kept until the state or the slot changes.

        Most districts are quiet between two scrapes, so their windows need no new sums.
        """
        end = rolling_end(now)
        cached = self._rolling
        if cached is not None and cached[0] == self.version and cached[1] == end:
            return cached[2]
        windows = self.buckets.rolling(now)
        self._rolling = (self.version, end, windows)
        return windows

    def open_hazard_items(self) -> Iterator[tuple[str, Subject]]:
        for sid, s in self.hazards.items():
            if _hazard_open(s.flags):
                yield sid, s

    def oldest_open_dispute(self) -> float | None:
        cached = self._oldest_dispute
        if cached is not None and cached[0] == self.version:
            return cached[1]
        opened = [
            s.opened
            for s in self.disputes.values()
            if _dispute_open(s.flags) and s.opened is not None
        ]
        oldest = min(opened) if opened else None
        self._oldest_dispute = (self.version, oldest)
        return oldest

    def open_hazards_by_category(self) -> dict[str, int]:
        """Open hazards per category; scanned again only after an event changed the state
        (a scrape at 1,000 districts otherwise walks every hazard kept)."""
        cached = self._open_by_category
        if cached is not None and cached[0] == self.version:
            return cached[1]
        out: dict[str, int] = {}
        for _, s in self.open_hazard_items():
            key = s.category or "unknown"
            out[key] = out.get(key, 0) + 1
        self._open_by_category = (self.version, out)
        return out

    def overdue_by_category(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.overdue.values():
            key = s.category or "unknown"
            out[key] = out.get(key, 0) + 1
        return out

    def subject_count(self) -> int:
        return len(self.cases) + len(self.disputes) + len(self.hazards) + len(self.patrols)

    # -- snapshots ----------------------------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        """A JSON-able picture of the state (everything but the derived overdue set)."""
        return {
            "v": SNAPSHOT_VERSION,
            "district": self.district,
            "buckets": self.buckets.to_snapshot(),
            "totals": self.totals,
            "watermark": None if self.watermark == float("-inf") else self.watermark,
            "stream_watermarks": [
                None if w == float("-inf") else w for w in self.stream_watermarks
            ],
            "evidence": self.evidence,
            "cases": [s.to_row(k) for k, s in self.cases.items()],
            "disputes": [s.to_row(k) for k, s in self.disputes.items()],
            "hazards": [s.to_row(k) for k, s in self.hazards.items()],
            "patrols": [s.to_row(k) for k, s in self.patrols.items()],
            "late": self.late_total,
            "dup": self.duplicate_total,
            "last_patrol_end": self.last_patrol_end,
            "next_expiry": None if self.next_expiry == float("-inf") else self.next_expiry,
            "next_open_sweep": (
                None if self.next_open_sweep == float("-inf") else self.next_open_sweep
            ),
        }

    @classmethod
    def from_snapshot(
        cls, snap: dict[str, Any], tz: ZoneInfo, limits: Limits = Limits()
    ) -> DistrictState:
        if snap.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"Unknown state snapshot version {snap.get('v')!r}.")
        st = cls(snap["district"], tz, limits)
        st.buckets = Buckets.from_snapshot(tz, snap["buckets"])
        totals = list(snap["totals"])
        st.totals = totals + [0] * (N_MEASURES - len(totals))
        st.watermark = float("-inf") if snap["watermark"] is None else snap["watermark"]
        st.stream_watermarks = [
            float("-inf") if w is None else w for w in snap["stream_watermarks"]
        ]
        st.evidence = dict(snap["evidence"])
        st.cases = dict(Subject.from_row(r) for r in snap["cases"])
        st.disputes = dict(Subject.from_row(r) for r in snap["disputes"])
        st.hazards = dict(Subject.from_row(r) for r in snap["hazards"])
        st.patrols = dict(Subject.from_row(r) for r in snap["patrols"])
        st.late_total = snap["late"]
        st.duplicate_total = snap["dup"]
        st.last_patrol_end = snap["last_patrol_end"]
        st.next_expiry = float("-inf") if snap["next_expiry"] is None else snap["next_expiry"]
        st.next_open_sweep = snap.get("next_open_sweep") or float("-inf")
        st._groups = (st.cases, st.disputes, st.hazards, st.patrols)
        st._rebuild_derived()
        return st

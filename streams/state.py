"""One district's figures: lifecycles correlated by subject, event-time buckets, overdue hazards."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any
from zoneinfo import ZoneInfo

from .deadlines import DeadlineHeap, Deadlines
from .events import STREAM_OF_KIND, Event, Kind, Stream, digest64
from .identities import IdentityMemory, Memory
from .subjects import (
    CLOSE_COUNTED,
    CLOSED,
    COHORT,
    ESCALATED,
    MEDIATED,
    OPENED,
    RECTIFIED,
    RESOLVED,
    VERIFIED,
    Subject,
    subjects_of_rows,
)
from .windows import (
    DAY_SECONDS,
    HOUR_SECONDS,
    N_MEASURES,
    Buckets,
    Measure,
    rolling_end,
    zeros,
)

SNAPSHOT_VERSION = 2
EXPIRY_EVERY = 6 * HOUR_SECONDS  # buckets: five-minute slots are kept only 26 h
# Memories (identities, lifecycles) span days to months: a daily sweep is plenty.
MEMORY_SWEEP_EVERY = DAY_SECONDS
OPEN_SWEEP_EVERY = 7 * DAY_SECONDS
_NEVER = float("-inf")
_NO_SUBJECTS: dict[str, Subject] = {}  # the patrols' place among the groups: see .patrols
_NO_DAY = -(1 << 62)  # before any day: with no watermark yet, every identity kept counts


class Outcome(IntEnum):
    """What one event did to a district (the engine turns all but COUNTED into dead letters)."""

    COUNTED = 0
    DUPLICATE = 1  # the same event again, or a step the lifecycle already has or has outgrown
    TOO_LATE = 2  # past the grace and changes nothing
    LATE_CLOSED = 3  # past the grace: closes its lifecycle now, the windows stay as they were


def _dispute_open(flags: int) -> bool:
    return bool(flags & OPENED) and not flags & (RESOLVED | ESCALATED)


def _hazard_open(flags: int) -> bool:
    return bool(flags & OPENED) and not flags & (RECTIFIED | VERIFIED)


def _case_open(flags: int) -> bool:
    return bool(flags & OPENED) and not flags & CLOSED


def _never_open(flags: int) -> bool:
    return False


CASES, DISPUTES, HAZARDS, PATROLS, ACCIDENTS = range(5)
_STREAM_INDEX: dict[Kind, int] = {k: int(stream) - 1 for k, stream in STREAM_OF_KIND.items()}
_IS_OPEN: tuple[Callable[[int], bool], ...] = (
    _case_open,
    _dispute_open,
    _hazard_open,
    _never_open,
    _never_open,
)
# The same tests as (flags to have, flags not to have): open iff it has the first and
# none of the second. Patrols and accidents are never open (no flag is 0's).
_OPEN_RULE: tuple[tuple[int, int], ...] = (
    (OPENED, CLOSED),
    (OPENED, RESOLVED | ESCALATED),
    (OPENED, RECTIFIED | VERIFIED),
    (0, 0),
    (0, 0),
)
_GROUP_STREAM: tuple[int, ...] = (
    int(Stream.INCIDENTS) - 1,
    int(Stream.DISPUTES) - 1,
    int(Stream.PATROLS) - 1,
    int(Stream.PATROLS) - 1,
    int(Stream.INCIDENTS) - 1,
)
_PATROL_STREAM = int(Stream.PATROLS) - 1


@dataclass(frozen=True)
class Limits:
    """How far back a district's state reaches; all in seconds of event time.

    Every horizon is measured against the watermark of the lifecycle's own stream, which
    only its own topic-partition moves: what is remembered never depends on how the
    topics' records were fetched or interleaved.
    """

    grace: float = 24 * HOUR_SECONDS
    # Event identities (source, id) and finished patrol runs: a retry comes within days.
    dedup_horizon: float = 7 * DAY_SECONDS
    # Closed cases, disputes and hazards, for reopens, look-back visits (回头看) and
    # retries of earlier steps: measured from the lifecycle's latest transition.
    lifecycle_memory: float = 60 * DAY_SECONDS
    retention_days: int = 800


class DistrictState:
    """Everything Watchfloor knows about one district, updated one event at a time.

    Pure: no I/O and no clock of its own. Event time drives windows, lateness and
    expiry, so replaying the same events gives the same state. Only overdue depends on
    the wall clock, which the caller passes to :meth:`tick`.

    Each stream (incidents, disputes, patrols) keeps its own watermark, the latest event
    time counted from it. Lateness, identity memory and lifecycle memory are judged
    against the watermark of the event's own stream, whose records come from one
    topic-partition in a fixed order; so the figures do not depend on how the three
    topics were fetched or interleaved. The rules are in docs/design.md ("Lifecycles").
    """

    def __init__(self, district: str, tz: ZoneInfo, limits: Limits = Limits()) -> None:
        self.district = district
        self.tz = tz
        self.limits = limits
        self.buckets = Buckets(tz)
        self.totals = zeros()
        self.watermark = _NEVER  # the latest event time counted, over all streams
        # Latest event time counted per stream and route (index: Stream - 1, plus 3 for
        # records forwarded from another partition: they reach the district in an order
        # of their own, so they are judged late against each other, not the direct ones).
        self.stream_watermarks = [_NEVER] * 6
        # "<topic>:<partition>" -> highest offset applied: the evidence that makes a
        # replay after a crash skip what this state already counts.
        self.evidence: dict[str, int] = {}
        self.cases: dict[str, Subject] = {}
        self.disputes: dict[str, Subject] = {}
        self.hazards: dict[str, Subject] = {}
        # A patrol run is one step (completed) whose only memory is for de-duplication:
        # its subject's 64-bit key and the hour it ran, in the table the identities use
        # (12 bytes, where a Subject, its id and its dict slot took about 240).
        self.patrols: Memory = IdentityMemory()
        self.accidents: dict[str, Subject] = {}
        # Per stream, the identities of the events applied, each with the UTC day of its
        # event time (for the horizon and for expiry): a flat table where one is built
        # (streams/identities.py), 12 bytes an identity against about 100 in dicts.
        self.identities: list[Memory] = [IdentityMemory(), IdentityMemory(), IdentityMemory()]
        self.open_cases = 0
        self.open_disputes = 0
        self.open_hazards = 0
        self.late_total = 0
        self.duplicate_total = 0
        self.last_patrol_end: float | None = None
        # Per stream: when its watermark next triggers a sweep of what it remembers.
        self.next_expiry = [_NEVER] * 3
        self.next_open_sweep = [_NEVER] * 3
        self.next_bucket_expiry = _NEVER
        # Per group, the ids of subjects that stopped being open, by the UTC day of their
        # latest transition: expiry drops whole days the horizon has passed instead of
        # scanning every subject, for one pointer per closed subject. By day, not hour:
        # a list per hour held one or two ids each, and its list object cost more than
        # the pointers (60 against 25 MiB at 1,000 districts). Derived, rebuilt on load from the
        # subjects themselves, so live and rebuilt states expire alike.
        self._closings: tuple[dict[int, list[str]], ...] = ({}, {}, {}, {}, {})
        # The days of each group's closings as a heap: a sweep pops the days its
        # horizon has passed instead of scanning the two months of days kept.
        self._closing_days: tuple[list[int], ...] = ([], [], [], [], [])
        self._groups = (self.cases, self.disputes, self.hazards, _NO_SUBJECTS, self.accidents)
        # Overdue bookkeeping (derived, rebuilt on load): a heap of (deadline, round, id)
        # for open hazards, and the hazards whose deadline the clock has passed.
        self._due: Deadlines = DeadlineHeap()
        self.overdue: dict[str, Subject] = {}
        self.overdue_major = 0
        # Overdue hazards per category, moved as hazards enter and leave the overdue set:
        # under load a scan of the set at every scrape was a tenth of the render.
        self._overdue_cats: dict[str, int] = {}
        self.version = 0
        # Moved by every change to the accidents or their counts: the work-safety figures
        # read nothing else, so a scrape sums them again only when it moved.
        self.accidents_version = 0
        self._rolling: tuple[int, float, dict[str, list[int]]] | None = None
        # Open hazards per category, moved with open_hazards at each opening and closing
        # (a hazard's category is fixed from its opening on): under load nearly every
        # district has a hazard event between two scrapes, and a scan of every hazard
        # kept for two months was the largest part of a scrape.
        self._open_hazard_cats: dict[str, int] = {}
        # Report times of the open disputes by id, moved as disputes open and close: a
        # scrape reads them in every district that changed, and a scan of every dispute
        # kept for two months was a third of a scrape under load.
        self._open_dispute_at: dict[str, float] = {}
        self._handlers: dict[Kind, Callable[[Event, bool], Outcome]] = {
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
            Kind.ACCIDENT_REPORTED: self._accident_reported,
        }

    # -- applying events -----------------------------------------------------------------

    def apply(self, ev: Event, forwarded: bool = False) -> Outcome:
        """Apply one event; say whether it counted, repeated, came too late, or closed late.

        The checks run in the order docs/design.md gives: a repeat of an event already
        applied (same ``source`` and ``id``), then lateness, then the lifecycle's rules.
        ``forwarded``: the record came through the forward topic (docs/design.md).
        """
        stream = _STREAM_INDEX[ev.kind]
        route = stream + 3 if forwarded else stream
        w = self.stream_watermarks[route]
        if ev.identity and self._seen(stream, ev.identity, self._memory_watermark(stream)):
            self.duplicate_total += 1
            return Outcome.DUPLICATE
        late = ev.ts < w - self.limits.grace
        outcome = self._handlers[ev.kind](ev, late)
        if outcome is Outcome.DUPLICATE:
            self.duplicate_total += 1
            return outcome
        if late:
            self.late_total += 1
            if outcome is not Outcome.LATE_CLOSED:
                return Outcome.TOO_LATE
        if ev.identity:
            self.identities[stream].add(ev.identity, int(ev.ts // DAY_SECONDS))
        self.version += 1
        if outcome is Outcome.COUNTED and ev.ts > w:
            self.stream_watermarks[route] = ev.ts
            if ev.ts >= self.next_expiry[stream]:
                self._expire_stream(stream)
            if ev.ts > self.watermark:
                self.watermark = ev.ts
                if ev.ts >= self.next_bucket_expiry:
                    self.buckets.expire(ev.ts, self.limits.retention_days)
                    self.next_bucket_expiry = ev.ts + EXPIRY_EVERY
        return outcome

    def _memory_watermark(self, stream: int) -> float:
        """What a stream's memories are measured against: its latest time over both routes."""
        w = self.stream_watermarks
        return max(w[stream], w[stream + 3])

    def _seen(self, stream: int, identity: int, w: float) -> bool:
        first_day = _NO_DAY if w == _NEVER else int((w - self.limits.dedup_horizon) // DAY_SECONDS)
        return self.identities[stream].seen(identity, first_day)

    def _count(self, measure: Measure, ts: float, category: str | None, n: int = 1) -> None:
        self.totals[measure] += n
        self.buckets.add(measure, ts, category, n)

    def _step(self, s: Subject, measure: Measure, ts: float, category: str | None) -> None:
        """Count a step of a lifecycle, filed under its category once the opening tells it."""
        category = s.category or category
        self._count(measure, ts, category)
        if category is None and s.opened is None:
            if s.pending is None:
                s.pending = []
            s.pending.append([int(measure), ts])

    def _opening(self, s: Subject, measure: Measure, ts: float, category: str | None) -> None:
        """Count an opening, and file the steps that came before it under its category."""
        self._count(measure, ts, category)
        if s.pending and category is not None:
            for m, t in s.pending:
                self.buckets.add_category(int(m), t, category, 1)
        s.pending = None

    def _join_cohort(self, s: Subject, measure: Measure) -> None:
        """Count a lifecycle in its opening's cohort once it is both opened and closed by a
        counted closing, whichever of the two came first."""
        if s.flags & CLOSE_COUNTED and s.opened is not None and not s.flags & COHORT:
            s.flags |= COHORT
            self._count(measure, s.opened, s.category)

    def _closed_now(self, group: int, s: Subject) -> None:
        day = int(s.last // DAY_SECONDS)
        ids = self._closings[group].get(day)
        if ids is None:
            self._closings[group][day] = [s.sid]
            heapq.heappush(self._closing_days[group], day)
        else:
            ids.append(s.sid)

    # cases ----------------------------------------------------------------------------

    def _case_filed(self, ev: Event, late: bool) -> Outcome:
        s = self.cases.get(ev.subject)
        if s is not None and s.flags & OPENED:
            return Outcome.DUPLICATE
        if late:
            return Outcome.TOO_LATE  # an opening past the grace changes nothing
        if s is None:
            s = self.cases[ev.subject] = Subject(
                OPENED, ev.ts, ev.ts, ev.category, sid=ev.subject
            )
            s.community = ev.community
            self.open_cases += 1
        else:  # cleared before it was filed: counted, never open
            s.flags |= OPENED
            s.opened = ev.ts
            s.category = ev.category
            s.community = s.community or ev.community
            s.last = max(s.last, ev.ts)
        self._opening(s, Measure.CASES_FILED, ev.ts, ev.category)
        self._join_cohort(s, Measure.CASES_FILED_CLEARED)
        return Outcome.COUNTED

    def _case_cleared(self, ev: Event, late: bool) -> Outcome:
        s = self.cases.get(ev.subject)
        if s is not None and s.flags & CLOSED:
            return Outcome.DUPLICATE
        if s is None:
            s = self.cases[ev.subject] = Subject(0, None, ev.ts, ev.category, sid=ev.subject)
        was_open = _case_open(s.flags)
        s.flags |= CLOSED
        s.last = max(s.last, ev.ts)
        s.closed_at = ev.ts
        if was_open:
            self.open_cases -= 1
        self._closed_now(CASES, s)
        if late:
            return Outcome.LATE_CLOSED
        s.flags |= CLOSE_COUNTED
        self._step(s, Measure.CASES_CLEARED, ev.ts, ev.category)
        self._join_cohort(s, Measure.CASES_FILED_CLEARED)
        return Outcome.COUNTED

    # disputes -------------------------------------------------------------------------

    def _dispute_reported(self, ev: Event, late: bool) -> Outcome:
        s = self.disputes.get(ev.subject)
        if s is not None and s.flags & OPENED:
            return Outcome.DUPLICATE
        if late:
            return Outcome.TOO_LATE
        if s is None:
            s = self.disputes[ev.subject] = Subject(0, None, ev.ts, sid=ev.subject)
        s.flags |= OPENED
        s.opened = ev.ts
        s.category = ev.category
        s.community = ev.community
        s.unit = ev.unit
        s.last = max(s.last, ev.ts)
        if _dispute_open(s.flags):
            self.open_disputes += 1
            self._open_dispute_at[s.sid] = ev.ts
        self._opening(s, Measure.DISPUTES_REPORTED, ev.ts, ev.category)
        self._join_cohort(s, Measure.DISPUTES_REPORTED_RESOLVED)
        return Outcome.COUNTED

    def _dispute_step(self, ev: Event, late: bool, flag: int, measure: Measure) -> Outcome:
        s = self.disputes.get(ev.subject)
        if s is not None and s.flags & flag:
            return Outcome.DUPLICATE
        closing = flag in (RESOLVED, ESCALATED)
        if late and not closing:
            return Outcome.TOO_LATE
        if s is None:
            s = self.disputes[ev.subject] = Subject(0, None, ev.ts, sid=ev.subject)
        was_open = _dispute_open(s.flags)
        s.flags |= flag
        s.last = max(s.last, ev.ts)
        if ev.unit is not None and flag == MEDIATED:
            s.unit = ev.unit
        if was_open and not _dispute_open(s.flags):
            self.open_disputes -= 1
            del self._open_dispute_at[ev.subject]
        if closing and not _dispute_open(s.flags):
            self._closed_now(DISPUTES, s)
        if flag == RESOLVED:
            s.closed_at = ev.ts
        if late:
            return Outcome.LATE_CLOSED
        self._step(s, measure, ev.ts, None)
        if flag == RESOLVED:
            s.flags |= CLOSE_COUNTED
            self._join_cohort(s, Measure.DISPUTES_REPORTED_RESOLVED)
        return Outcome.COUNTED

    def _dispute_mediated(self, ev: Event, late: bool) -> Outcome:
        return self._dispute_step(ev, late, MEDIATED, Measure.DISPUTES_MEDIATED)

    def _dispute_resolved(self, ev: Event, late: bool) -> Outcome:
        return self._dispute_step(ev, late, RESOLVED, Measure.DISPUTES_RESOLVED)

    def _dispute_escalated(self, ev: Event, late: bool) -> Outcome:
        return self._dispute_step(ev, late, ESCALATED, Measure.DISPUTES_ESCALATED)

    # patrols --------------------------------------------------------------------------

    def _patrol_completed(self, ev: Event, late: bool) -> Outcome:
        key = subject_key(ev.subject)
        if self.patrols.seen(key, _NO_DAY):
            return Outcome.DUPLICATE
        if late:
            return Outcome.TOO_LATE
        self.patrols.add(key, int(ev.ts // HOUR_SECONDS))
        end = ev.ended if ev.ended is not None else ev.ts
        if self.last_patrol_end is None or end > self.last_patrol_end:
            self.last_patrol_end = end
        self._count(Measure.PATROLS_COMPLETED, ev.ts, None)
        return Outcome.COUNTED

    # accidents ------------------------------------------------------------------------

    def _accident_reported(self, ev: Event, late: bool) -> Outcome:
        s = self.accidents.get(ev.subject)
        new = list(ev.figures or (0, 0, 0))
        if s is not None and s.opened is not None and s.opened <= ev.ts <= s.last:
            return Outcome.DUPLICATE  # this report, or one it is older than, stands already
        if late:
            return Outcome.TOO_LATE
        if s is None:
            s = self.accidents[ev.subject] = Subject(
                CLOSED, ev.ts, ev.ts, ev.category, sid=ev.subject
            )
            s.community = ev.community
            s.figures = new
            self._accident_counts(s, s.opened, 1)  # type: ignore[arg-type]
            self._closed_now(ACCIDENTS, s)
            return Outcome.COUNTED
        assert s.opened is not None and s.figures is not None
        if ev.ts < s.opened:
            # An earlier report came late: the accident happened then; the latest stands.
            self._accident_counts(s, s.opened, -1)
            s.opened = ev.ts
            self._accident_counts(s, s.opened, 1)
            return Outcome.COUNTED
        # A revision: the figures move by the difference, on the accident's own time.
        self._accident_counts(s, s.opened, -1, accident=False)
        s.figures = new
        s.last = ev.ts
        self._accident_counts(s, s.opened, 1, accident=False)
        self._closed_now(ACCIDENTS, s)
        return Outcome.COUNTED

    def _accident_counts(self, s: Subject, ts: float, sign: int, accident: bool = True) -> None:
        deaths, injuries, loss = s.figures or (0, 0, 0)
        self.accidents_version += 1
        if accident:
            self._count(Measure.ACCIDENTS, ts, s.category, sign)
        self._count(Measure.ACCIDENT_DEATHS, ts, s.category, sign * deaths)
        self._count(Measure.ACCIDENT_SERIOUS_INJURIES, ts, s.category, sign * injuries)
        self._count(Measure.ACCIDENT_DIRECT_LOSS_YUAN, ts, s.category, sign * loss)

    # hazards --------------------------------------------------------------------------

    def _hazard_found(self, ev: Event, late: bool) -> Outcome:
        s = self.hazards.get(ev.subject)
        if s is not None and s.flags & OPENED:
            return Outcome.DUPLICATE
        if late:
            return Outcome.TOO_LATE
        if s is None:
            s = self.hazards[ev.subject] = Subject(0, None, ev.ts, sid=ev.subject)
        s.flags |= OPENED
        s.opened = ev.ts
        s.category = ev.category
        s.major = ev.major
        s.community = ev.community
        s.unit = ev.unit
        s.last = max(s.last, ev.ts)
        if s.deadline is None:  # a failed look-back visit that came first set a newer one
            s.deadline = ev.deadline
        if _hazard_open(s.flags):
            self.open_hazards += 1
            self._hazard_opened(s)
            self._schedule(s)
        self._opening(s, Measure.HAZARDS_FOUND, ev.ts, ev.category)
        self._join_cohort(s, Measure.HAZARDS_FOUND_RECTIFIED)
        return Outcome.COUNTED

    def _close_hazard(self, s: Subject, flag: int, ts: float, late: bool) -> None:
        """The current round is rectified (or confirmed): out of the open and overdue sets."""
        was_open = _hazard_open(s.flags)
        s.flags |= flag
        s.last = max(s.last, ts)
        if was_open:
            self.open_hazards -= 1
            self._hazard_closed(s)
            self._unmark_overdue(s)
        s.closed_at = ts
        self._closed_now(HAZARDS, s)
        if not late:
            s.flags |= CLOSE_COUNTED
            self._join_cohort(s, Measure.HAZARDS_FOUND_RECTIFIED)

    def _hazard_rectified(self, ev: Event, late: bool) -> Outcome:
        s = self.hazards.get(ev.subject)
        if s is None:
            s = self.hazards[ev.subject] = Subject(0, None, ev.ts, sid=ev.subject)
        elif s.flags & RECTIFIED:
            return Outcome.DUPLICATE
        elif s.reopened_at is not None and ev.ts <= s.reopened_at:
            return Outcome.DUPLICATE  # outgrown: a later look-back judged it failed
        if s.flags & VERIFIED:  # a confirming visit closed it already
            s.flags |= RECTIFIED
            s.last = max(s.last, ev.ts)
        else:
            self._close_hazard(s, RECTIFIED, ev.ts, late)
        if late:
            return Outcome.LATE_CLOSED
        self._step(s, Measure.HAZARDS_RECTIFIED, ev.ts, None)
        return Outcome.COUNTED

    def _hazard_verified(self, ev: Event, late: bool) -> Outcome:
        s = self.hazards.get(ev.subject)
        if ev.confirmed:
            if s is None:
                s = self.hazards[ev.subject] = Subject(0, None, ev.ts, sid=ev.subject)
            elif s.flags & VERIFIED:
                return Outcome.DUPLICATE
            elif s.reopened_at is not None and ev.ts <= s.reopened_at:
                return Outcome.DUPLICATE  # outgrown: confirms a round a later visit failed
            if s.flags & RECTIFIED:
                s.flags |= VERIFIED
                s.last = max(s.last, ev.ts)
            else:
                self._close_hazard(s, VERIFIED, ev.ts, late)
            if late:
                return Outcome.LATE_CLOSED
            self._step(s, Measure.HAZARDS_VERIFIED, ev.ts, None)
            return Outcome.COUNTED
        # A failed look-back visit: an opening of sorts, so past the grace it changes nothing.
        if s is not None:
            if s.reopened_at is not None and ev.ts <= s.reopened_at:
                return Outcome.DUPLICATE  # this visit, or an earlier one, is already in
            if s.closed_at is not None and s.flags & (RECTIFIED | VERIFIED) and ev.ts < s.closed_at:
                return Outcome.DUPLICATE  # outgrown: it judged an earlier rectification
        if late:
            return Outcome.TOO_LATE
        if s is None:
            s = self.hazards[ev.subject] = Subject(0, None, ev.ts, sid=ev.subject)
        was_closed = bool(s.flags & (RECTIFIED | VERIFIED))
        if s.flags & COHORT and s.opened is not None:
            self._count(Measure.HAZARDS_FOUND_RECTIFIED, s.opened, s.category, -1)
        s.flags &= ~(RECTIFIED | VERIFIED | COHORT | CLOSE_COUNTED)
        s.round += 1
        s.reopened_at = ev.ts
        s.closed_at = None
        s.last = max(s.last, ev.ts)
        self._unmark_overdue(s)
        s.deadline = ev.deadline
        if _hazard_open(s.flags):
            if was_closed:
                self.open_hazards += 1
                self._hazard_opened(s)
            self._schedule(s)
        self._step(s, Measure.HAZARDS_LOOKBACK_FAILED, ev.ts, None)
        return Outcome.COUNTED

    def _hazard_opened(self, s: Subject) -> None:
        key = s.category or "unknown"
        cats = self._open_hazard_cats
        cats[key] = cats.get(key, 0) + 1

    def _hazard_closed(self, s: Subject) -> None:
        key = s.category or "unknown"
        cats = self._open_hazard_cats
        n = cats[key] - 1
        if n:
            cats[key] = n
        else:
            del cats[key]

    def _count_open_hazard_categories(self) -> None:
        cats: dict[str, int] = {}
        for s in self.hazards.values():
            if _hazard_open(s.flags):
                key = s.category or "unknown"
                cats[key] = cats.get(key, 0) + 1
        self._open_hazard_cats = cats

    # -- overdue ------------------------------------------------------------------------

    def _schedule(self, s: Subject) -> None:
        deadline = s.deadline
        if deadline is not None:
            self._due.push(deadline, s.round, s.sid)

    def _unmark_overdue(self, s: Subject) -> None:
        if self.overdue.pop(s.sid, None) is None:
            return
        if s.major:
            self.overdue_major -= 1
        cats = self._overdue_cats
        key = s.category or "unknown"
        if cats[key] == 1:
            del cats[key]
        else:
            cats[key] -= 1

    def tick(self, now: float) -> int:
        """Move hazards whose deadline is before ``now`` into the overdue set; return how many."""
        due = self._due
        moved = 0
        first = due.first()
        while first is not None and first < now:
            deadline, rnd, sid = due.pop()
            first = due.first()
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
            key = s.category or "unknown"
            self._overdue_cats[key] = self._overdue_cats.get(key, 0) + 1
            moved += 1
        if moved:
            # The overdue set is part of what the state shows: readers that keep figures
            # per version (the scrape's district texts) must see the timer's moves.
            self.version += 1
        return moved

    def next_deadline(self) -> float | None:
        return self._due.first()

    # -- expiry -------------------------------------------------------------------------

    def _expire_stream(self, stream: int) -> None:
        """Forget what the stream's watermark has left behind; every few hours of its time.

        Only this stream's own watermark decides, so what is forgotten (and so whether a
        late step finds its lifecycle) never depends on how fast other topics were read.
        """
        w = self._memory_watermark(stream)
        lim = self.limits
        self.identities[stream].expire(int((w - lim.dedup_horizon) // DAY_SECONDS))
        if stream == _PATROL_STREAM:
            # Forgotten, as a closed lifecycle is: a run in an hour before this one.
            self.patrols.expire(int((w - lim.dedup_horizon) // HOUR_SECONDS))
        dropped_open = False
        for group, subjects in enumerate(self._groups):
            if _GROUP_STREAM[group] != stream:
                continue
            kept = len(subjects)
            memory = lim.dedup_horizon if group == PATROLS else lim.lifecycle_memory
            # Forgotten: what closed in an hour before this one (the horizon cuts at
            # hours); the day it falls in is swept in part, its later hours kept.
            cutoff = int((w - memory) // HOUR_SECONDS)
            cut_day = cutoff // 24
            by_day = self._closings[group]
            days = self._closing_days[group]
            is_open = _IS_OPEN[group]
            closing = _OPEN_RULE[group][1]
            while days and days[0] <= cut_day:
                day = days[0]
                later: list[str] = []
                for sid in by_day[day]:
                    s = subjects.get(sid)
                    # Only a closed lifecycle is forgotten this early: one reopened since,
                    # or a step whose opening never came, is kept for the retention.
                    if s is None or (closing and not s.flags & closing):
                        continue
                    hour = int(s.last // HOUR_SECONDS)
                    if hour < cutoff:
                        del subjects[sid]
                    elif hour // 24 == day:
                        later.append(sid)  # only on the day the horizon cuts
                    elif sid not in by_day.get(hour // 24, ()):
                        # A transition after the closing moved its latest time without
                        # filing it again (a confirming visit after the rectification, a
                        # filing after the clearance): filed now under that day, where a
                        # rebuild files it, so a restart forgets it at the same moment.
                        self._closed_now(group, s)
                if later:
                    by_day[day] = later
                    break
                heapq.heappop(days)
                del by_day[day]
            if group == ACCIDENTS and len(subjects) != kept:
                self.accidents_version += 1
            # Open ones (and steps whose opening never came) are kept for the retention;
            # checking that once a week of stream time is plenty.
            if w < self.next_open_sweep[stream]:
                continue
            open_before = w - lim.retention_days * DAY_SECONDS
            old = [sid for sid, s in subjects.items() if s.last < open_before]
            if group == ACCIDENTS and old:
                self.accidents_version += 1
            for sid in old:
                s = subjects.pop(sid)
                if is_open(s.flags):
                    dropped_open = True
                    if group == HAZARDS:
                        self._unmark_overdue(s)
        if dropped_open:
            self._recount_open()
        # Rectified hazards leave their deadline entries behind until the deadline comes
        # (days, for a deadline days ahead): more than a few of them, and the heap is
        # rebuilt from the open ones. A pass over the district's hazards once a day of
        # stream time at most; the entries cost about 100 bytes each.
        if len(self._due) > self.open_hazards + 64:
            self._due.replace_all(
                [
                    (s.deadline, s.round, sid)
                    for sid, s in self.hazards.items()
                    if _hazard_open(s.flags) and s.deadline is not None
                ]
            )
        self.next_expiry[stream] = w + MEMORY_SWEEP_EVERY
        if w >= self.next_open_sweep[stream]:
            self.next_open_sweep[stream] = w + OPEN_SWEEP_EVERY

    def _recount_open(self) -> None:
        self.open_cases = sum(1 for s in self.cases.values() if _case_open(s.flags))
        self.open_hazards = sum(1 for s in self.hazards.values() if _hazard_open(s.flags))
        self._count_open_hazard_categories()
        self._collect_open_disputes()

    def _collect_open_disputes(self) -> None:
        self._open_dispute_at = {
            sid: s.opened
            for sid, s in self.disputes.items()
            if _dispute_open(s.flags) and s.opened is not None
        }
        self.open_disputes = len(self._open_dispute_at)

    def _rebuild_derived(self) -> None:
        # One pass per group with the open test inlined: a restart runs this over every
        # subject of every district (three passes over the hazards took a quarter of
        # the rebuild).
        closings: tuple[dict[int, list[str]], ...] = ({}, {}, {}, {}, {})
        open_counts = [0, 0, 0, 0, 0]
        due: list[tuple[float, int, str]] = []
        open_dispute_at: dict[str, float] = {}
        for group, subjects in enumerate(self._groups):
            by_day = closings[group]
            opened, closed = _OPEN_RULE[group]
            n_open = 0
            for sid, s in subjects.items():
                flags = s.flags
                if flags & opened and not flags & closed:
                    n_open += 1
                    if group == HAZARDS and s.deadline is not None:
                        due.append((s.deadline, s.round, sid))
                    elif group == DISPUTES and s.opened is not None:
                        open_dispute_at[sid] = s.opened
                    continue
                if closed and not flags & closed:
                    continue  # a step whose opening never came: kept for the retention
                day = int(s.last // DAY_SECONDS)
                sids = by_day.get(day)
                if sids is None:
                    by_day[day] = [sid]
                else:
                    sids.append(sid)
            open_counts[group] = n_open
        self.open_cases = open_counts[CASES]
        self.open_hazards = open_counts[HAZARDS]
        self._count_open_hazard_categories()
        self._open_dispute_at = open_dispute_at
        self.open_disputes = len(open_dispute_at)
        self._due = DeadlineHeap()
        self._due.replace_all(due)
        self._closings = closings
        self._closing_days = tuple(sorted(by_day) for by_day in closings)

    # -- reading ------------------------------------------------------------------------

    def counts(self, lo: float, hi: float, *, keep: bool = False) -> list[int]:
        """Counts of every measure in ``[lo, hi)``; ``keep``: a span read again and again
        (``Buckets.kept_total``)."""
        return self.buckets.kept_total(lo, hi) if keep else self.buckets.total(lo, hi)

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
        return min(self._open_dispute_at.values(), default=None)

    def open_dispute_times(self) -> list[float]:
        """When each open dispute was reported, oldest first."""
        return sorted(self._open_dispute_at.values())

    def open_hazards_by_category(self) -> dict[str, int]:
        """Open hazards per category, in category order (kept as hazards open and close)."""
        return dict(sorted(self._open_hazard_cats.items()))

    def overdue_by_category(self) -> dict[str, int]:
        """Overdue hazards per category, in category order (kept as the set changes)."""
        return dict(sorted(self._overdue_cats.items()))

    def remembers_patrol(self, subject: str) -> bool:
        """Whether a completed run of this subject is still remembered (a repeat is a duplicate)."""
        return self.patrols.seen(subject_key(subject), _NO_DAY)

    def subject_count(self) -> int:
        return sum(len(group) for group in self._groups) + len(self.patrols)

    # -- snapshots ----------------------------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        """A JSON-able picture of the state (everything but the derived overdue set)."""
        return {
            "v": SNAPSHOT_VERSION,
            "district": self.district,
            "buckets": self.buckets.to_snapshot(),
            "totals": self.totals,
            "watermark": _finite(self.watermark),
            "stream_watermarks": [_finite(w) for w in self.stream_watermarks],
            "evidence": self.evidence,
            "cases": [s.to_row(k) for k, s in self.cases.items()],
            "disputes": [s.to_row(k) for k, s in self.disputes.items()],
            "hazards": [s.to_row(k) for k, s in self.hazards.items()],
            "patrols": [],  # subject rows, before patrol runs were kept as keys by hour
            "patrol_hours": self.patrols.by_day(),
            "accidents": [s.to_row(k) for k, s in self.accidents.items()],
            "ids": [memory.by_day() for memory in self.identities],
            "late": self.late_total,
            "dup": self.duplicate_total,
            "last_patrol_end": self.last_patrol_end,
            "next_expiry": [_finite(t) for t in self.next_expiry],
            "next_open_sweep": [_finite(t) for t in self.next_open_sweep],
            "next_bucket_expiry": _finite(self.next_bucket_expiry),
        }

    @classmethod
    def from_snapshot(
        cls, snap: dict[str, Any], tz: ZoneInfo, limits: Limits = Limits()
    ) -> DistrictState:
        version = snap.get("v")
        if version not in (1, SNAPSHOT_VERSION):
            raise ValueError(f"Unknown state snapshot version {version!r}.")
        st = cls(snap["district"], tz, limits)
        st.buckets = Buckets.from_snapshot(tz, snap["buckets"])
        totals = list(snap["totals"])
        st.totals = totals + [0] * (N_MEASURES - len(totals))
        st.watermark = _infinite(snap["watermark"])
        marks = [_infinite(w) for w in snap["stream_watermarks"]]
        st.stream_watermarks = marks + [_NEVER] * (6 - len(marks))
        st.evidence = dict(snap["evidence"])
        st.cases = subjects_of_rows(snap["cases"])
        st.disputes = subjects_of_rows(snap["disputes"])
        st.hazards = subjects_of_rows(snap["hazards"])
        st.patrols = _patrols(snap)
        st.accidents = subjects_of_rows(snap.get("accidents", ()))
        st.late_total = snap["late"]
        st.duplicate_total = snap["dup"]
        st.last_patrol_end = snap["last_patrol_end"]
        if version == SNAPSHOT_VERSION:
            st.identities = [_identities(per) for per in snap["ids"]]
            st.next_expiry = [_infinite(t) for t in snap["next_expiry"]]
            st.next_open_sweep = [_infinite(t) for t in snap["next_open_sweep"]]
            st.next_bucket_expiry = _infinite(snap["next_bucket_expiry"])
        st._groups = (st.cases, st.disputes, st.hazards, _NO_SUBJECTS, st.accidents)
        st._rebuild_derived()
        return st


def subject_key(subject: str) -> int:
    """A stable 64-bit key for a subject (1 .. 2**64 - 1), as identities are keyed."""
    return digest64(subject)


def _patrols(snap: dict[str, Any]) -> Memory:
    hours = snap.get("patrol_hours")
    if hours is not None:
        return _identities(hours)
    memory = IdentityMemory()
    for row in snap["patrols"]:  # subject rows: [sid, flags, opened, last, ...]
        memory.add(subject_key(row[0]), int(row[3] // HOUR_SECONDS))
    return memory


def _identities(per_day: Iterable[list[Any]]) -> Memory:
    memory = IdentityMemory()
    # Oldest day first, so an identity a snapshot of before this table lists under two
    # days (applied again once its first had passed the horizon) keeps its latest.
    for day, ids in sorted(per_day, key=_first):
        memory.add_day(day, ids)
    return memory


def _first(row: list[Any]) -> Any:
    return row[0]


def _finite(x: float) -> float | None:
    return None if x == _NEVER else x


def _infinite(x: float | None) -> float:
    return _NEVER if x is None else x

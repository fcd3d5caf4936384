"""One district's lines of the text exposition: the families' layout, made and kept per district.

Compiled with the counting path (``streams/native.py``): under load every district changed
since the last scrape, and writing their lines is most of a scrape's CPU. The async and
``prometheus_client`` side of ``/metrics`` is ``streams/exposition.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .events import Stream
from .periods import Period
from .rates import RATES
from .reference import WorkSafetyYear
from .signals import (
    cases_filed_baseline,
    disputes_open_a_month,
    matured_cohort,
    newest_overdue_major_deadline,
)
from .state import DistrictState
from .windows import WINDOWS, Measure, rolling_end
from .worksafety import (
    alert_threshold,
    indicators,
    share_reached_at,
    year_before,
    year_to_date,
)

# Measures exported as rolling windows and all-time counters, by metric stem.
EXPORTED: dict[str, Measure] = {
    "cases_filed": Measure.CASES_FILED,
    "cases_cleared": Measure.CASES_CLEARED,
    "disputes_reported": Measure.DISPUTES_REPORTED,
    "disputes_resolved": Measure.DISPUTES_RESOLVED,
    "disputes_escalated": Measure.DISPUTES_ESCALATED,
    "hazards_found": Measure.HAZARDS_FOUND,
    "hazards_rectified": Measure.HAZARDS_RECTIFIED,
    "hazards_found_rectified": Measure.HAZARDS_FOUND_RECTIFIED,
    "patrols_completed": Measure.PATROLS_COMPLETED,
    "cases_filed_cleared": Measure.CASES_FILED_CLEARED,
    "disputes_reported_resolved": Measure.DISPUTES_REPORTED_RESOLVED,
}
# Cohort numerators: counted at the opening's time and lowered again by a failed look-back
# visit, so not counts of events; they have rolling windows but no all-time counter.
COHORT_STEMS = frozenset(
    {"hazards_found_rectified", "cases_filed_cleared", "disputes_reported_resolved"}
)
HELP: dict[str, str] = {
    "cases_filed": "Criminal cases filed (立案)",
    "cases_cleared": "Cases cleared/solved (破案)",
    "disputes_reported": "Disputes found and reported (排查)",
    "disputes_resolved": "Disputes resolved (化解)",
    "disputes_escalated": "Disputes escalated to a higher authority",
    "hazards_found": "Safety hazards found (排查发现)",
    "hazards_rectified": "Hazard rectifications (整改), by the time they were done",
    "hazards_found_rectified": (
        "Hazards found in the window that are rectified now (cohort by found time)"
    ),
    "patrols_completed": "Patrols completed (巡逻)",
    "cases_filed_cleared": "Cases filed in the window that are cleared now (cohort by filing time)",
    "disputes_reported_resolved": (
        "Disputes reported in the window that are resolved now (cohort by report time)"
    ),
}
# The four work-safety indicators (四项指标) by metric stem, with their help text.
WORK_SAFETY_HELP: dict[str, str] = {
    "accidents": "Work-safety accidents (生产安全事故)",
    "deaths": "Deaths in work-safety accidents",
    "serious_injuries": "Serious injuries in work-safety accidents",
    "direct_loss_yuan": "Direct economic loss of work-safety accidents, whole yuan",
}
# Values of the work-safety gauges' `period` label.
YEAR_TO_DATE = "year_to_date"
SAME_PERIOD_LAST_YEAR = "same_period_last_year"

GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "open_cases": ("Cases filed and not yet cleared", ("district",)),
    "open_disputes": ("Disputes reported and neither resolved nor escalated", ("district",)),
    "oldest_open_dispute_age_seconds": (
        "Age of the oldest open dispute (absent while none is open)",
        ("district",),
    ),
    "open_hazards": ("Hazards found and not rectified", ("district",)),
    "overdue_hazards": ("Open hazards past their rectification deadline", ("district",)),
    "overdue_major_hazards": (
        "Overdue hazards under listed supervision (挂牌督办)",
        ("district",),
    ),
    "open_hazards_by_category": (
        "Open hazards by category (only categories with some)",
        ("district", "category"),
    ),
    "overdue_hazards_by_category": (
        "Overdue hazards by category (only categories with some)",
        ("district", "category"),
    ),
    "last_patrol_timestamp_seconds": (
        "End of the district's latest completed patrol",
        ("district",),
    ),
    "overdue_major_hazard_newest_deadline_timestamp_seconds": (
        "Latest deadline among the overdue major hazards (absent while none is overdue)",
        ("district",),
    ),
    "matured_cohort_hazards_found": (
        "Hazards found 35 to 7 days ago (the matured cohort)",
        ("district",),
    ),
    "matured_cohort_hazards_found_rectified": (
        "Of the hazards found 35 to 7 days ago, how many are rectified now",
        ("district",),
    ),
    "matured_cohort_rectification_ratio": (
        "Of the hazards found 35 to 7 days ago, the share rectified now (整改率), 0-1",
        ("district",),
    ),
    "disputes_open_over_30d": (
        "Open disputes reported more than 30 days ago",
        ("district",),
    ),
    "dispute_open_30d_newest_timestamp_seconds": (
        "When the most recently reported of the disputes open over 30 days reached 30 days",
        ("district",),
    ),
    "cases_filed_daily_baseline": (
        "Cases filed per day over up to 28 days before the last 24 h (absent under 7 days)",
        ("district",),
    ),
}


@dataclass(slots=True)
class Family:
    """One family of district figures: computed once per scrape, then collected or rendered."""

    name: str  # as exposed, counters without their _total suffix
    kind: str  # "gauge" or "counter"
    doc: str
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(doc: str) -> str:
    return doc.replace("\\", r"\\").replace("\n", r"\n")


def _number(value: float) -> str:
    if type(value) is int:
        return f"{value}.0"
    return repr(float(value)) if value == value else "NaN"


def _line(head: bytes, value: float) -> bytes:
    """A line of a kept district text: ``head`` then the value as ``_number`` writes it."""
    if type(value) is int:
        return b"%s%d.0\n" % (head, value)
    return b"%s%s\n" % (head, repr(float(value)).encode() if value == value else b"NaN")


def layout() -> list[Family]:
    """Every family of district figures, without samples, in the order they are exposed."""
    return [
        *(
            Family(f"watchfloor_rolling_{stem}", "gauge", f"{doc}, in the window",
                   ("district", "window"))
            for stem, doc in HELP.items()
        ),
        *(
            Family(f"watchfloor_cohort_{rate.metric}", "gauge", rate.help, ("district", "window"))
            for rate in RATES
        ),
        *(
            Family(f"watchfloor_{stem}", "counter", f"{doc}, all time", ("district",))
            for stem, doc in HELP.items()
            if stem not in COHORT_STEMS
        ),
        *(
            Family(f"watchfloor_{name}", "gauge", doc, labels)
            for name, (doc, labels) in GAUGES.items()
        ),
        Family(
            "watchfloor_late_events",
            "counter",
            "Events too late to count (beyond the grace), dead-lettered",
            ("district",),
        ),
        Family(
            "watchfloor_duplicate_events",
            "counter",
            "Repeated transitions (counted once), dead-lettered",
            ("district",),
        ),
        *(
            Family(
                f"watchfloor_work_safety_{stem}",
                "gauge",
                f"{doc}: this year to the end of today, and the same dates last year",
                ("district", "period"),
            )
            for stem, doc in WORK_SAFETY_HELP.items()
        ),
        Family(
            "watchfloor_work_safety_deaths_target",
            "gauge",
            "This year's control target on work-safety deaths (死亡人数控制指标)",
            ("district",),
        ),
        Family(
            "watchfloor_work_safety_deaths_alert_share_ratio",
            "gauge",
            "Share of the death target at which operators are warned (reference data), 0-1",
            ("district",),
        ),
        Family(
            "watchfloor_work_safety_deaths_alert_share_reached_timestamp_seconds",
            "gauge",
            "Time of the accident report that took this year's deaths to the alert share",
            ("district",),
        ),
        Family(
            "watchfloor_city_work_safety_deaths_target",
            "gauge",
            "This year's control target on work-safety deaths for the whole city",
            (),
        ),
        Family(
            "watchfloor_newest_event_timestamp_seconds",
            "gauge",
            "Latest event time counted from the source partition (its districts' watermark)",
            ("topic", "partition"),
        ),
    ]


_LAYOUT = layout()
_INDEX = {fam.name: i for i, fam in enumerate(_LAYOUT)}
# Families with a line per district (all but the city's target and the partitions' reach).
_N_DISTRICT = len(_LAYOUT) - 2
# A scrape renders for at most this long before the event loop gets a turn.
RENDER_SLICE_SECONDS = 0.02
_HEADERS = [
    f"# HELP {name} {_escape_help(fam.doc)}\n# TYPE {name} {fam.kind}\n".encode()
    for fam in _LAYOUT[:_N_DISTRICT]
    for name in [f"{fam.name}_total" if fam.kind == "counter" else fam.name]
]
_GAUGE_INDEX = {name: _INDEX[f"watchfloor_{name}"] for name in GAUGES}
# Gauges that move with the clock itself: written anew at every scrape.
_CLOCK_FAMILIES = (
    _GAUGE_INDEX["oldest_open_dispute_age_seconds"],
    _GAUGE_INDEX["disputes_open_over_30d"],
    _GAUGE_INDEX["dispute_open_30d_newest_timestamp_seconds"],
)
_LATE = _INDEX["watchfloor_late_events"]
_DUP = _INDEX["watchfloor_duplicate_events"]
_WS_TARGET = _INDEX["watchfloor_work_safety_deaths_target"]
_WS_SHARE = _INDEX["watchfloor_work_safety_deaths_alert_share_ratio"]
_WS_REACHED = _INDEX["watchfloor_work_safety_deaths_alert_share_reached_timestamp_seconds"]


class _Heads:
    """One district's line heads (name and labels, escaped) for every family, made once.

    Lines of whole counts are %-templates ending in ``%d.0``, the text ``_number`` gives
    an int: filled by one C-level formatting each, not a call per number (a scrape
    under load writes about 100,000 of them). Heads of other lines end in a space. All
    are bytes: formatting bytes is about three times faster than formatting text and
    encoding it (the help texts are not ASCII, so the exposition is joined as bytes).
    """

    def __init__(self, district: str) -> None:
        e = self._label = _escape_label(district)
        pct = e.replace("%", "%%")
        # A template per rolling family: its four windows' lines in one formatting.
        self.rolling = [
            (
                _INDEX[f"watchfloor_rolling_{stem}"],
                m,
                "".join(
                    f'watchfloor_rolling_{stem}{{district="{pct}",window="{w}"}} %d.0\n'
                    for w in WINDOWS
                ).encode(),
            )
            for stem, m in EXPORTED.items()
        ]
        self.ratios = [
            (
                _INDEX[f"watchfloor_cohort_{rate.metric}"],
                rate.numerator,
                rate.denominator,
                [
                    f'watchfloor_cohort_{rate.metric}{{district="{e}",window="{w}"}} '.encode()
                    for w in WINDOWS
                ],
            )
            for rate in RATES
        ]
        self.totals = [
            (
                _INDEX[f"watchfloor_{stem}"],
                EXPORTED[stem],
                f'watchfloor_{stem}_total{{district="{pct}"}} %d.0\n'.encode(),
            )
            for stem in HELP
            if stem not in COHORT_STEMS
        ]
        self.gauge = {
            name: f'watchfloor_{name}{{district="{e}"}} '.encode()
            for name, (_, labels) in GAUGES.items()
            if labels == ("district",)
        }
        self.count = {
            name: f'watchfloor_{name}{{district="{pct}"}} %d.0\n'.encode()
            for name, (_, labels) in GAUGES.items()
            if labels == ("district",)
        }
        self.late = f'watchfloor_late_events_total{{district="{pct}"}} %d.0\n'.encode()
        self.dup = f'watchfloor_duplicate_events_total{{district="{pct}"}} %d.0\n'.encode()
        self.work_safety = [
            (
                _INDEX[f"watchfloor_work_safety_{stem}"],
                (
                    f'watchfloor_work_safety_{stem}{{district="{pct}",period="{YEAR_TO_DATE}"}}'
                    " %d.0\n"
                    f'watchfloor_work_safety_{stem}{{district="{pct}",'
                    f'period="{SAME_PERIOD_LAST_YEAR}"}} %d.0\n'
                ).encode(),
            )
            for stem in WORK_SAFETY_HELP
        ]
        self.ws_target = f'watchfloor_work_safety_deaths_target{{district="{e}"}} '.encode()
        self.ws_share = (
            f'watchfloor_work_safety_deaths_alert_share_ratio{{district="{e}"}} '.encode()
        )
        self.ws_reached = (
            "watchfloor_work_safety_deaths_alert_share_reached_timestamp_seconds"
            f'{{district="{e}"}} '
        ).encode()
        self._category: dict[tuple[str, str], bytes] = {}

    def category(self, gauge: str, category: str) -> bytes:
        """The template of one category's line of a by-category count."""
        line = self._category.get((gauge, category))
        if line is None:
            label = _escape_label(category).replace("%", "%%")
            line = self._category[(gauge, category)] = (
                f'watchfloor_{gauge}{{district="{self._label.replace("%", "%%")}",'
                f'category="{label}"}} %d.0\n'
            ).encode()
        return line


@dataclass(slots=True)
class DistrictText:
    """One district's rendered lines per family, and the key of what they show."""

    state: DistrictState
    heads: _Heads
    key: tuple[float, ...] | None = None
    parts: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class _Context:
    """What a scrape's work-safety figures read: this year and last, targets, local day."""

    ytd: Period | None
    last_year: Period | None
    targets: WorkSafetyYear | None
    day: int


@dataclass(slots=True)
class _Signals:
    """A district's figures that only change with its state or the 5-minute slot."""

    matured_found: int
    matured_rectified: int
    baseline: float | None


@dataclass(slots=True)
class _WorkSafety:
    """A district's work-safety figures, which change with its state or the local day."""

    current: list[int]
    previous: list[int]
    reached_at: float | None


def format_families(families: Iterable[Family]) -> str:
    """Families in Prometheus text format 0.0.4, line by line (the reference ``render``
    must equal, and what it writes for the few families not kept per district)."""
    out: list[str] = []
    escaped: dict[str, str] = {}
    for fam in families:
        name = f"{fam.name}_total" if fam.kind == "counter" else fam.name
        out.append(f"# HELP {name} {_escape_help(fam.doc)}\n# TYPE {name} {fam.kind}\n")
        heads: dict[tuple[str, ...], str] = {}
        for labels, value in fam.samples:
            head = heads.get(labels)
            if head is None:
                pairs = []
                for k, v in zip(fam.labels, labels, strict=True):
                    e = escaped.get(v)
                    if e is None:
                        e = escaped[v] = _escape_label(v)
                    pairs.append(f'{k}="{e}"')
                head = heads[labels] = f"{name}{{{','.join(pairs)}}} "
            out.append(f"{head}{_number(value)}\n")
    return "".join(out)


class DistrictLines:
    """The district figures of a scrape, and what they were computed from, per district.

    ``families`` (``DistrictCollector.collect``) and ``render_steps`` read the same cached
    signals, work-safety figures and open-dispute times; ``render_steps`` also keeps each
    district's lines (``texts``) with the key of what they show.
    """

    def __init__(
        self,
        states: Callable[[], dict[str, DistrictState]],
        now: Callable[[], float],
        work_safety: Mapping[int, WorkSafetyYear],
        topics: Mapping[str, Stream],
        partition_of: Callable[[str], int] | None,
    ) -> None:
        self.states = states
        self.now = now
        self.work_safety = dict(work_safety)
        self.topics = dict(topics)
        self.partition_of = partition_of
        # Per district: (state version, slot end) -> signals; (state, accidents version,
        # day cut, local day) -> work safety. Figures over weeks and years are not summed
        # again for a district nothing touched (nor, for work safety, no accident).
        self.signals: dict[str, tuple[tuple[int, float], _Signals]] = {}
        self.ws: dict[str, tuple[tuple[DistrictState, int, float, int], _WorkSafety]] = {}
        # Per district: state version -> report times of the open disputes, oldest first.
        self.disputes: dict[str, tuple[int, list[float]]] = {}
        # Per district: its lines as last rendered (``render_steps``).
        self.texts: dict[str, DistrictText] = {}

    def signals_of(self, st: DistrictState, now: float) -> _Signals:
        key = (st.version, rolling_end(now))
        cached = self.signals.get(st.district)
        if cached is not None and cached[0] == key:
            return cached[1]
        cohort = matured_cohort(st, now)
        baseline = cases_filed_baseline(st, now)
        per_day = None if baseline is None else baseline.per_day
        sig = _Signals(cohort.found, cohort.rectified, per_day)
        self.signals[st.district] = (key, sig)
        return sig

    def open_disputes_of(self, st: DistrictState) -> list[float]:
        cached = self.disputes.get(st.district)
        if cached is not None and cached[0] == st.version:
            return cached[1]
        times = st.open_dispute_times()
        self.disputes[st.district] = (st.version, times)
        return times

    def work_safety_of(
        self, st: DistrictState, ytd: Period, last_year: Period, targets: WorkSafetyYear | None
    ) -> _WorkSafety:
        key = (st, st.accidents_version, st.buckets.day_cut, ytd.end.toordinal())
        cached = self.ws.get(st.district)
        if cached is not None and cached[0] == key:
            return cached[1]
        current = indicators(st, ytd)
        reached = None
        target = targets.districts.get(st.district) if targets is not None else None
        if targets is not None and target is not None:
            threshold = alert_threshold(target, targets.alert_share)
            reached = share_reached_at(st, targets.year, current[1], threshold)
        ws = _WorkSafety(current, indicators(st, last_year), reached)
        self.ws[st.district] = (key, ws)
        return ws

    def render_steps(self, slice_seconds: float | None) -> Generator[None, None, list[bytes]]:
        now = self.now()
        states = self.states()
        items = list(states.items())
        ctx = self.context(now, states)
        texts = self.texts
        slot = rolling_end(now)
        rows: list[list[bytes]] = []
        fresh: list[tuple[bytes, bytes, bytes]] = []
        clock = time.perf_counter
        paused_at = clock()
        for d, st in items:
            t = texts.get(d)
            if t is None or t.state is not st:
                t = texts[d] = DistrictText(st, _Heads(d))
            key = (st.version, st.late_total, st.duplicate_total, slot, ctx.day)
            if t.key != key:
                # Kept as bytes: the exposition is joined, not encoded, at each scrape (its
                # help texts are not ASCII, so encoding 7 MB of str took tens of ms).
                t.parts = self.district_parts(d, st, now, ctx, t.heads)
                t.key = key
                if slice_seconds is not None and clock() - paused_at > slice_seconds:
                    yield
                    paused_at = clock()
            rows.append(t.parts)
            fresh.append(self.clock_parts(st, now, t.heads))
        if slice_seconds is not None:
            current = self.states()
            if len(current) != len(items) or any(current.get(d) is not st for d, st in items):
                return (yield from self.render_steps(None))
        self.forget_gone(states)
        # Family by family: every district's lines of the family, in the districts' order.
        cols: list[Sequence[bytes]] = [*zip(*rows, strict=True)] if rows else [()] * _N_DISTRICT
        clock_cols: list[Sequence[bytes]] = [*zip(*fresh, strict=True)] if fresh else [()] * 3
        for i, col in zip(_CLOCK_FAMILIES, clock_cols, strict=True):
            cols[i] = col
        out: list[bytes] = []
        for header, col in zip(_HEADERS, cols, strict=True):
            out.append(header)
            out.extend(col)
        city, newest = _LAYOUT[_N_DISTRICT:]
        city = Family(city.name, city.kind, city.doc, city.labels)
        if ctx.targets is not None:
            city.samples.append(((), ctx.targets.city.deaths))
        newest = Family(newest.name, newest.kind, newest.doc, newest.labels)
        newest.samples.extend(self.reach(states))
        out.append(format_families([city, newest]).encode())
        # The parts, not their join: a gzipped scrape compresses them one by one, and the
        # 7 MB of text at 1,000 districts is never copied whole (the join, then the
        # registry's lines before it, were 14 MB more at the peak of every scrape).
        return out

    def context(self, now: float, states: Mapping[str, DistrictState]) -> _Context:
        tz = next(iter(states.values())).tz if states else None
        if tz is None:
            return _Context(None, None, None, 0)
        local_now = datetime.fromtimestamp(now, tz)
        ytd = year_to_date(local_now, tz)
        return _Context(
            ytd, year_before(ytd, tz), self.work_safety.get(local_now.year), ytd.end.toordinal()
        )

    def reach(self, states: Mapping[str, DistrictState]) -> list[tuple[tuple[str, ...], float]]:
        """How far each source partition's counted events reach: hours or days behind the
        clock while the worker reads a backlog of it (alerts wait for it to catch up)."""
        if self.partition_of is None:
            return []
        reach: dict[tuple[str, str], float] = {}
        for d, st in states.items():
            partition = str(self.partition_of(d))
            for topic, stream in self.topics.items():
                mark = st.stream_watermarks[int(stream) - 1]
                key = (topic, partition)
                if mark != float("-inf") and mark > reach.get(key, float("-inf")):
                    reach[key] = mark
        return sorted(reach.items())

    def forget_gone(self, states: Mapping[str, DistrictState]) -> None:
        for cache in (self.signals, self.ws, self.disputes, self.texts):
            for gone in cache.keys() - states.keys():
                del cache[gone]

    def clock_parts(
        self, st: DistrictState, now: float, h: _Heads
    ) -> tuple[bytes, bytes, bytes]:
        """The lines of the gauges that move with the clock, not only with the state."""
        g = h.gauge
        times = self.open_disputes_of(st)  # oldest first: one scan of the disputes serves both
        age = b""
        if times:  # absent while none is open, as null in the API
            age = _line(g["oldest_open_dispute_age_seconds"], max(0.0, now - times[0]))
        month_old = disputes_open_a_month(times, now)
        over = h.count["disputes_open_over_30d"] % month_old.count
        newest = b""
        if month_old.newest_at is not None:
            newest = _line(g["dispute_open_30d_newest_timestamp_seconds"], month_old.newest_at)
        return age, over, newest

    def district_parts(
        self, d: str, st: DistrictState, now: float, ctx: _Context, h: _Heads
    ) -> list[bytes]:
        """One district's lines of each family but the clock's three, as ``families`` has them."""
        parts = [b""] * _N_DISTRICT
        windows = st.rolling(now)
        vecs = [windows[label] for label in WINDOWS]
        by_measure = [*zip(*vecs, strict=True)]  # per measure, its count in each window
        for i, m, template in h.rolling:
            parts[i] = template % by_measure[m]
        for i, num, den, heads in h.ratios:
            parts[i] = b"".join(
                [_line(head, vec[num] / vec[den]) for head, vec in zip(heads, vecs, strict=True)
                 if vec[den]]
            )
        totals = st.totals
        for i, m, template in h.totals:
            parts[i] = template % totals[m]
        c = h.count
        gi = _GAUGE_INDEX
        parts[gi["open_cases"]] = c["open_cases"] % st.open_cases
        parts[gi["open_disputes"]] = c["open_disputes"] % st.open_disputes
        parts[gi["open_hazards"]] = c["open_hazards"] % st.open_hazards
        parts[gi["overdue_hazards"]] = c["overdue_hazards"] % len(st.overdue)
        parts[gi["overdue_major_hazards"]] = c["overdue_major_hazards"] % st.overdue_major
        g = h.gauge
        newest = newest_overdue_major_deadline(st)
        if newest is not None:
            name = "overdue_major_hazard_newest_deadline_timestamp_seconds"
            parts[gi[name]] = _line(g[name], newest)
        for name, by_category in (
            ("open_hazards_by_category", st.open_hazards_by_category()),
            ("overdue_hazards_by_category", st.overdue_by_category()),
        ):
            if by_category:
                parts[gi[name]] = b"".join(
                    [h.category(name, cat) % n for cat, n in by_category.items()]
                )
        if st.last_patrol_end is not None:
            name = "last_patrol_timestamp_seconds"
            parts[gi[name]] = _line(g[name], st.last_patrol_end)
        parts[_LATE] = h.late % st.late_total
        parts[_DUP] = h.dup % st.duplicate_total
        sig = self.signals_of(st, now)
        name = "matured_cohort_hazards_found"
        parts[gi[name]] = c[name] % sig.matured_found
        name = "matured_cohort_hazards_found_rectified"
        parts[gi[name]] = c[name] % sig.matured_rectified
        if sig.matured_found:
            name = "matured_cohort_rectification_ratio"
            parts[gi[name]] = _line(g[name], sig.matured_rectified / sig.matured_found)
        if sig.baseline is not None:
            name = "cases_filed_daily_baseline"
            parts[gi[name]] = _line(g[name], sig.baseline)
        if ctx.ytd is not None and ctx.last_year is not None:
            targets = ctx.targets
            w = self.work_safety_of(st, ctx.ytd, ctx.last_year, targets)
            for (i, template), cur, prev in zip(h.work_safety, w.current, w.previous, strict=True):
                parts[i] = template % (cur, prev)
            target = targets.districts.get(d) if targets is not None else None
            if targets is not None and target is not None:
                parts[_WS_TARGET] = _line(h.ws_target, target.deaths)
                parts[_WS_SHARE] = _line(h.ws_share, targets.alert_share)
                if w.reached_at is not None:
                    parts[_WS_REACHED] = _line(h.ws_reached, w.reached_at)
        return parts

"""District figures on /metrics: computed at scrape time, kept per district, rendered as text."""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncIterator,
    Callable,
    Iterator,
    Mapping,
)
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, cast

from prometheus_client import (
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .district_lines import (
    COHORT_STEMS,
    EXPORTED,
    GAUGES,
    HELP,
    RENDER_SLICE_SECONDS,
    SAME_PERIOD_LAST_YEAR,
    WORK_SAFETY_HELP,
    YEAR_TO_DATE,
    DistrictLines,
    DistrictText,
    Family,
    layout,
)
from .events import Stream
from .rates import RATES
from .reference import WorkSafetyYear
from .signals import disputes_open_a_month, newest_overdue_major_deadline
from .state import DistrictState
from .windows import WINDOWS
from .worksafety import year_before, year_to_date


class DistrictCollector(Collector):
    """Exports the figures of the districts this worker owns, computed at scrape time.

    It reads the engine's live states; a district leaves the exposition the moment its
    partition is revoked, so two workers never export the same district. ``render``
    writes the text format itself: at 1,000 districts (75,000 series) prometheus_client's
    generic formatting alone takes about half a second, the whole scrape budget.
    ``work_safety`` is the reference data's death control targets by year; ``topics``
    (source topic -> stream) and ``partition_of`` (district -> partition) let it say how
    far each source partition's counted events reach.
    """

    def __init__(
        self,
        states: Callable[[], dict[str, DistrictState]],
        now: Callable[[], float],
        work_safety: Mapping[int, WorkSafetyYear] | None = None,
        *,
        topics: Mapping[str, Stream] | None = None,
        partition_of: Callable[[str], int] | None = None,
    ) -> None:
        self._lines = DistrictLines(
            states, now, work_safety or {}, topics or {}, partition_of
        )
        # Scrapes in progress (``scraping``), and set while there are none.
        self._scrapes = 0
        self._no_scrape = asyncio.Event()
        self._no_scrape.set()

    @property
    def _texts(self) -> dict[str, DistrictText]:
        return self._lines.texts

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unchecked: the series depend on the districts owned

    def families(self) -> list[Family]:
        lines = self._lines
        now = lines.now()
        fams = layout()
        by_name = {fam.name: fam for fam in fams}
        rolling = {stem: by_name[f"watchfloor_rolling_{stem}"] for stem in HELP}
        ratios = {rate.metric: by_name[f"watchfloor_cohort_{rate.metric}"] for rate in RATES}
        totals = {
            stem: by_name[f"watchfloor_{stem}"] for stem in HELP if stem not in COHORT_STEMS
        }
        g = {name: by_name[f"watchfloor_{name}"] for name in GAUGES}
        late = by_name["watchfloor_late_events"]
        dup = by_name["watchfloor_duplicate_events"]
        ws = {stem: by_name[f"watchfloor_work_safety_{stem}"] for stem in WORK_SAFETY_HELP}
        ws_target = by_name["watchfloor_work_safety_deaths_target"]
        ws_share = by_name["watchfloor_work_safety_deaths_alert_share_ratio"]
        ws_reached = by_name["watchfloor_work_safety_deaths_alert_share_reached_timestamp_seconds"]
        city_target = by_name["watchfloor_city_work_safety_deaths_target"]
        newest_event = by_name["watchfloor_newest_event_timestamp_seconds"]
        rolling_fams = [(rolling[stem].samples, m) for stem, m in EXPORTED.items()]
        ratio_fams = [
            (ratios[rate.metric].samples, rate.numerator, rate.denominator) for rate in RATES
        ]
        total_fams = [(fam.samples, EXPORTED[stem]) for stem, fam in totals.items()]
        ws_fams = [ws[stem].samples for stem in WORK_SAFETY_HELP]
        states = lines.states()
        tz = next(iter(states.values())).tz if states else None
        targets = None
        ytd = last_year = None
        if tz is not None:
            local_now = datetime.fromtimestamp(now, tz)
            ytd = year_to_date(local_now, tz)
            last_year = year_before(ytd, tz)
            targets = lines.work_safety.get(local_now.year)
        if targets is not None:
            city_target.samples.append(((), targets.city.deaths))
        newest_event.samples.extend(lines.reach(states))
        for d, st in states.items():
            windows = st.rolling(now)
            for label in WINDOWS:
                vec = windows[label]
                key = (d, label)
                for samples, m in rolling_fams:
                    samples.append((key, vec[m]))
                for samples, num, den in ratio_fams:
                    if vec[den]:
                        samples.append((key, vec[num] / vec[den]))
            dk = (d,)
            for samples, m in total_fams:
                samples.append((dk, st.totals[m]))
            oldest = st.oldest_open_dispute()
            g["open_cases"].samples.append((dk, st.open_cases))
            g["open_disputes"].samples.append((dk, st.open_disputes))
            if oldest is not None:  # absent while none is open, as null in the API
                g["oldest_open_dispute_age_seconds"].samples.append((dk, max(0.0, now - oldest)))
            g["open_hazards"].samples.append((dk, st.open_hazards))
            g["overdue_hazards"].samples.append((dk, len(st.overdue)))
            g["overdue_major_hazards"].samples.append((dk, st.overdue_major))
            newest = newest_overdue_major_deadline(st)
            if newest is not None:
                g["overdue_major_hazard_newest_deadline_timestamp_seconds"].samples.append(
                    (dk, newest)
                )
            for cat, n in st.open_hazards_by_category().items():
                g["open_hazards_by_category"].samples.append(((d, cat), n))
            for cat, n in st.overdue_by_category().items():
                g["overdue_hazards_by_category"].samples.append(((d, cat), n))
            if st.last_patrol_end is not None:
                g["last_patrol_timestamp_seconds"].samples.append((dk, st.last_patrol_end))
            late.samples.append((dk, st.late_total))
            dup.samples.append((dk, st.duplicate_total))
            sig = lines.signals_of(st, now)
            g["matured_cohort_hazards_found"].samples.append((dk, sig.matured_found))
            g["matured_cohort_hazards_found_rectified"].samples.append(
                (dk, sig.matured_rectified)
            )
            if sig.matured_found:
                g["matured_cohort_rectification_ratio"].samples.append(
                    (dk, sig.matured_rectified / sig.matured_found)
                )
            if sig.baseline is not None:
                g["cases_filed_daily_baseline"].samples.append((dk, sig.baseline))
            month_old = disputes_open_a_month(lines.open_disputes_of(st), now)
            g["disputes_open_over_30d"].samples.append((dk, month_old.count))
            if month_old.newest_at is not None:
                g["dispute_open_30d_newest_timestamp_seconds"].samples.append(
                    (dk, month_old.newest_at)
                )
            if ytd is not None and last_year is not None:
                w = lines.work_safety_of(st, ytd, last_year, targets)
                for samples, cur, prev in zip(ws_fams, w.current, w.previous, strict=True):
                    samples.append(((d, YEAR_TO_DATE), cur))
                    samples.append(((d, SAME_PERIOD_LAST_YEAR), prev))
                target = targets.districts.get(d) if targets is not None else None
                if targets is not None and target is not None:
                    ws_target.samples.append((dk, target.deaths))
                    ws_share.samples.append((dk, targets.alert_share))
                    if w.reached_at is not None:
                        ws_reached.samples.append((dk, w.reached_at))
        lines.forget_gone(states)
        return fams

    def collect(self) -> Iterator[Metric]:
        for fam in self.families():
            cls = CounterMetricFamily if fam.kind == "counter" else GaugeMetricFamily
            metric = cls(fam.name, fam.doc, labels=list(fam.labels))
            for labels, value in fam.samples:
                metric.add_metric(list(labels), value)
            yield metric

    def render(self) -> bytes:
        """The same families in Prometheus text format 0.0.4, byte for byte as ``families``
        formatted by ``format_families``, faster.

        Each district's lines are kept, per family, with what they were computed from:
        its state object and version (every event applied, every hazard the timer made
        overdue), its late and duplicate counts (which change without a version), the
        5-minute slot and the local day. A district nothing touched costs a key
        comparison; the three gauges that move with the clock itself are written anew.
        """
        try:
            next(self._lines.render_steps(None))
        except StopIteration as done:
            return b"".join(cast("list[bytes]", done.value))
        raise AssertionError("a render without slices never pauses")

    async def render_parts(self, slice_seconds: float = RENDER_SLICE_SECONDS) -> list[bytes]:
        """``render``, handing the event loop back every ``slice_seconds`` of work.

        Under load most districts changed since the last scrape, and rendering them all
        takes a few hundred ms: in one piece it held every batch (and so every event's
        way to the figures) behind it. Lines rendered before a pause may be a batch
        older than the ones after it, as if scraped a moment earlier; a rebalance during
        the render makes it start again without pauses, so only districts still owned
        are exported. Within ``scraping`` the pauses serve the sockets (fetches, API
        calls), not more counting.
        """
        steps = self._lines.render_steps(slice_seconds)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return cast("list[bytes]", done.value)
            await asyncio.sleep(0)

    @asynccontextmanager
    async def scraping(self) -> AsyncIterator[None]:
        """A scrape, from its render until its answer is written: batches not yet begun
        wait for it (``scrape_done``).

        A scrape that let batches run in its pauses took two or three of them (0.5-0.8 s
        under 20,000 events/s for 0.2 s of rendering), and the events in flight waited as
        long; so did one whose answer, rendered, waited behind the next batch to be sent.
        """
        self._scrapes += 1
        self._no_scrape.clear()
        try:
            yield
        finally:
            self._scrapes -= 1
            if not self._scrapes:
                self._no_scrape.set()

    async def scrape_done(self) -> None:
        """Return once no scrape is rendering (at once when none is)."""
        if self._scrapes:
            await self._no_scrape.wait()

async def exposition(registry: CollectorRegistry, districts: DistrictCollector) -> bytes:
    """What ``/metrics`` serves: the registry's metrics, then the district figures
    (rendered in slices)."""
    return b"".join(await exposition_parts(registry, districts))


async def exposition_parts(
    registry: CollectorRegistry, districts: DistrictCollector
) -> list[bytes]:
    """``exposition`` in the parts it is rendered in, which joined are the exposition."""
    return [generate_latest(registry), *await districts.render_parts()]


def series_per_district() -> dict[str, Any]:
    """How many series one district adds (documented in docs/metrics.md)."""
    always = (
        len(EXPORTED) * len(WINDOWS)  # rolling windows
        + (len(HELP) - len(COHORT_STEMS))  # all-time counters
        + 5  # open cases, disputes, hazards; overdue hazards, overdue major hazards
        + 2  # late and duplicate events
        + 2  # matured cohort: found, found and rectified
        + 1  # open disputes over 30 days
        + len(WORK_SAFETY_HELP) * 2  # the four indicators, this year and last
    )
    return {
        "always": always,
        "ratios_at_most": len(RATES) * len(WINDOWS) + 1,  # and the matured cohort's
        "last_patrol": 1,
        "oldest_open_dispute": 1,
        "newest_overdue_major_deadline": 1,
        "newest_month_old_dispute": 1,
        "cases_filed_baseline": 1,
        "death_target": 3,  # target, alert share, when the share was reached
        "by_category": "one per category with open or overdue hazards",
    }

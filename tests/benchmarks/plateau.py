"""The RSS plateau: a real worker fed compressed event time well past its forgetting horizons.

A fresh worker (``python -m streams.cli worker``, default settings) reads three fresh
topics into which this process produces simulator records for a small district set
whose event time runs over ``days`` days (default 1,600: 800 days past the last edge),
paced at ``days_per_second`` (default 16) days of event time per second of wall time. The event
time ends an hour before now, so validation (not before 2000, at most 600 s ahead of
the clock) and lateness (judged against each stream's watermark) treat them as
ordinary records, and the worker needs no setting of its own.

Every 0.25 s the worker's resident set (``VmRSS``) is sampled together with the event
time it has reached (the ``watermark`` of one district in
``GET /api/v1/districts/<code>``). What the state forgets, and when (docs/design.md):
event identities and finished patrols after 7 days (the de-duplication horizon),
closed cases, disputes and hazards 60 days after their latest transition
(``WATCHFLOOR_LIFECYCLE_MEMORY_DAYS``), day buckets and subjects still open after 800
days (``WATCHFLOOR_RETENTION_DAYS``). Once the last edge is passed, as much leaves the
state as arrives, so RSS must stop growing. The verdict fits a least-squares line to
the samples after ``retention + 7`` days of event time and calls RSS "flat" when the
line rises by at most ``max(FLAT_MB, FLAT_SHARE x mean RSS)`` over that stretch; the
same slope before the 800-day edge is shown beside it. The worker's figures are
checked exactly against the generator's truth at the end.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from streams.kafka import create_topics
from streams.settings import Settings
from streams.simulator.config import SimConfig
from streams.simulator.files import load_city
from streams.simulator.generator import generate_events
from streams.simulator.produce import Pacer, produce_records
from streams.simulator.records import SimRecord
from streams.state import Limits

from .dataset import (
    JOB_REASONS,
    Dataset,
    DatasetSpec,
    Truth,
    _fate,
    _tally,
    delete_topics,
    topic_offsets_sync,
    write_city,
)
from .proc import load_avg, proc_status
from .watchfloor_run import GroupOffsets, WorkerRun, verify, wait_committed

DAY = 86400.0
SAMPLE_SECONDS = 0.25
# RSS is "flat" when its trend after the edges adds at most this much over that stretch.
FLAT_MB = 8.0
FLAT_SHARE = 0.03


@dataclass(frozen=True)
class PlateauSpec:
    """What to run: district set, span of event time and density of records."""

    districts: int = 50
    # 800 days past the last edge: over 200 days, run-to-run noise (10-20 MB) hid the trend.
    days: float = 1600.0
    per_district_day: float = 10.0  # records a district receives per day of event time
    # Event time is paced onto the wall clock at this many days a second, so the worker
    # counts it in small batches and the samples follow it closely.
    days_per_second: float = 16.0
    partitions: int = 4
    seed: int = 11
    late_share: float = 0.01
    duplicate_share: float = 0.02
    malformed_share: float = 0.005


@dataclass
class Sample:
    wall: float
    event_time: float | None  # the watched district's watermark (epoch seconds)
    rss: int


class WorkerSampler:
    """RSS and event time of the worker every ``SAMPLE_SECONDS``, in a thread."""

    def __init__(self, run: WorkerRun, district: str) -> None:
        self.run = run
        self.district = district
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="plateau-sampler", daemon=True)

    def start(self) -> WorkerSampler:
        self._thread.start()
        return self

    def sample(self) -> None:
        rss = proc_status(self.run.pid).get("VmRSS")
        status, body = self.run.get(f"/api/v1/districts/{self.district}", timeout=10)
        event_time = None
        if status == 200:
            mark = json.loads(body).get("watermark")
            if mark:
                event_time = datetime.fromisoformat(mark).timestamp()
        if rss is not None:
            self.samples.append(Sample(time.time(), event_time, rss))

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


class TruthTally:
    """Passes records through and tallies their truth; nothing is kept per record."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self.codes = frozenset(ds.codes)
        self.combos: Counter[tuple[str, str | None, int, int]] = Counter()
        self.first_ts: float | None = None
        self.last_ts: float | None = None

    def watch(self, records: Iterator[SimRecord]) -> Iterator[SimRecord]:
        topics, codes, combos = self.ds.topics, self.codes, self.combos
        for rec in records:
            district = rec.key.decode()
            kind = int(rec.kind) if rec.kind is not None else 0
            combos[
                (topics[rec.stream], district if district in codes else None, kind, _fate(rec))
            ] += 1
            if rec.ts is not None:
                if self.first_ts is None:
                    self.first_ts = rec.ts
                self.last_ts = rec.ts
            yield rec

    def truth(self) -> Truth:
        out = Truth()
        for (topic, district, kind, fate), n in self.combos.items():
            _tally(out, topic, district, kind, fate, n)
        return out


def trend(samples: list[Sample], t_from: float, t_to: float) -> dict[str, Any] | None:
    """Least-squares line of RSS (MB) against event time (days) within ``[t_from, t_to]``."""
    pts = [
        (s.event_time / DAY, s.rss / 2**20)
        for s in samples
        if s.event_time is not None and t_from <= s.event_time <= t_to
    ]
    if len(pts) < 3 or pts[-1][0] - pts[0][0] <= 0:
        return None
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in pts) / var if var else 0.0
    span = xs[-1] - xs[0]
    return {
        "samples": len(pts),
        "days": round(span, 1),
        "mean_mb": round(my, 1),
        "min_mb": round(min(ys), 1),
        "max_mb": round(max(ys), 1),
        "slope_mb_per_100_days": round(slope * 100, 2),
        "growth_mb": round(slope * span, 2),
    }


def checkpoint(
    samples: list[Sample], at: float, start: float, *, before: bool = False
) -> dict[str, Any] | None:
    """The first sample whose event time reached ``at`` (``before``: the last short of it)."""
    timed = [s for s in samples if s.event_time is not None]
    found = (
        next((s for s in reversed(timed) if s.event_time < at), None)  # type: ignore[operator]
        if before
        else next((s for s in timed if s.event_time >= at), None)  # type: ignore[operator]
    )
    if found is None or found.event_time is None:
        return None
    return {
        "event_day": round((found.event_time - start) / DAY, 1),
        "rss_mb": round(found.rss / 2**20, 1),
    }


def judge(samples: list[Sample], start: float, end: float, limits: Limits) -> dict[str, Any]:
    """Checkpoints, trends before and after the edges, and the verdict."""
    dedup_days = limits.dedup_horizon / DAY
    memory_days = limits.lifecycle_memory / DAY
    retention = float(limits.retention_days)
    edge = start + (retention + dedup_days) * DAY
    before = trend(samples, start + memory_days * DAY, start + retention * DAY)
    after = trend(samples, edge, end + DAY)
    points = {
        f"before day {dedup_days:g} (the de-duplication horizon)": checkpoint(
            samples, start + dedup_days * DAY, start, before=True
        ),
        f"day {dedup_days + 1:g} (after it)": checkpoint(
            samples, start + (dedup_days + 1) * DAY, start
        ),
        f"day {memory_days + dedup_days:g} (after the {memory_days:g}-day lifecycle memory)": (
            checkpoint(samples, start + (memory_days + dedup_days) * DAY, start)
        ),
        f"day {retention + dedup_days:g} (after the {retention:g}-day retention)": checkpoint(
            samples, edge, start
        ),
    }
    last = samples[-1] if samples else None
    points["end"] = (
        {
            "event_day": round(((last.event_time or end) - start) / DAY, 1),
            "rss_mb": round(last.rss / 2**20, 1),
        }
        if last
        else None
    )
    verdict = "not judged"
    allowed = None
    if after is not None:
        allowed = round(max(FLAT_MB, FLAT_SHARE * after["mean_mb"]), 1)
        verdict = "flat" if after["growth_mb"] <= allowed else "growing"
    return {
        "checkpoints": points,
        "trend_before_retention_edge": before,
        "trend_after_edges": after,
        "allowed_growth_mb": allowed,
        "verdict": verdict,
        "rule": (
            f"least-squares RSS against event time after day {retention + dedup_days:g}; flat "
            f"if it rises by at most max({FLAT_MB:g} MB, {FLAT_SHARE:.0%} of the mean RSS) "
            "over that stretch"
        ),
    }


def plateau_phase(
    bootstrap: str,
    work: Path,
    spec: PlateauSpec = PlateauSpec(),
    *,
    label: str = "",
    extra_env: dict[str, str] | None = None,
    keep_topics: bool = False,
    log: Any = print,
) -> dict[str, Any]:
    """Run the plateau part on fresh topics and a fresh worker; return its figures."""
    work.mkdir(parents=True, exist_ok=True)
    name = f"plateau-{label}{uuid.uuid4().hex[:6]}"
    city_file = write_city(work, spec.districts)
    city_all = load_city(city_file)
    codes = [d.code for d in city_all.districts]
    ds = Dataset(
        spec=DatasetSpec(
            events=0,
            districts=spec.districts,
            partitions=spec.partitions,
            seed=spec.seed,
            days=spec.days,
            late_share=spec.late_share,
            duplicate_share=spec.duplicate_share,
            malformed_share=spec.malformed_share,
        ),
        bootstrap=bootstrap,
        name=name,
        reference_file=str(city_file),
        codes=codes,
        load_districts=spec.districts,
        parts={},
    )
    asyncio.run(create_topics(ds.settings(), list(ds.topics.values())))
    # The event time ends an hour before now, in whole minutes as a device stamps them.
    end = datetime.fromtimestamp(int(time.time() // 60 * 60) - 3600, UTC)
    start = end - timedelta(days=spec.days)
    config = SimConfig(
        start=start,
        end=end,
        rate=spec.districts * spec.per_district_day / DAY,
        seed=spec.seed,
        late_share=spec.late_share,
        duplicate_share=spec.duplicate_share,
        malformed_share=spec.malformed_share,
        malformed_reasons=JOB_REASONS,
        tag=name.split("-", 1)[1],
    )
    run = WorkerRun(ds, work, f"{name}-wf", extra_env=dict(extra_env or {}))
    offsets = GroupOffsets(bootstrap)
    load_before = load_avg()
    run.start()
    sampler: WorkerSampler | None = None
    try:
        t_ready = run.wait_ready()
        sampler = WorkerSampler(run, codes[0])
        sampler.sample()
        sampler.start()
        tally = TruthTally(ds)
        log(
            f"plateau: producing {spec.days:g} days of event time for {spec.districts} "
            f"districts (~{spec.per_district_day:g} records per district and day)"
        )
        t0 = time.time()
        records = tally.watch(generate_events(city_all.subset(spec.districts), config))
        pacer = Pacer(start.timestamp(), time.monotonic(), spec.days_per_second * DAY)
        summary = asyncio.run(produce_records(records, ds.settings(), pacer=pacer))
        produced_s = time.time() - t0
        ends = {
            tp: e for tp, (_, e) in topic_offsets_sync(bootstrap, list(ds.topics.values())).items()
        }
        wait_committed(run, offsets, ends, timeout=300)
        t_done = time.time()
        # A few more samples of the idle worker: its resident set at the end.
        time.sleep(3 * SAMPLE_SECONDS)
        sampler.stop()
        truth = tally.truth()
        figures = verify(run, truth)
        figures.pop("samples")
        status = proc_status(run.pid)
    finally:
        if sampler is not None:
            sampler.stop()
        run.stop()
        offsets.close()
        if not keep_topics:
            asyncio.run(_delete(bootstrap, name))
    samples = sampler.samples
    first = tally.first_ts if tally.first_ts is not None else start.timestamp()
    # The worker's own horizons: an extra WATCHFLOOR_* setting moves them.
    limits = Settings.from_env(run.env()).limits
    verdict = judge(samples, first, end.timestamp(), limits)
    return {
        "districts": spec.districts,
        "days": spec.days,
        "records": summary.delivered,
        "intents": truth.intents(),
        "event_time_from": datetime.fromtimestamp(first, UTC).isoformat(),
        "event_time_to": end.isoformat(),
        "produced_seconds": round(produced_s, 1),
        "counted_seconds": round(t_done - t_ready, 1),
        "event_days_per_second": round(spec.days / max(t_done - t_ready, 1e-6), 1),
        "peak_rss_bytes": status.get("VmHWM"),
        "samples": [
            [round(s.wall - t_ready, 2), round((s.event_time - first) / DAY, 2), s.rss]
            for s in samples
            if s.event_time is not None
        ],
        **verdict,
        "figures": figures,
        "exact": figures["exact"],
        "loadavg_before": load_before,
        "loadavg_after": load_avg(),
    }


async def _delete(bootstrap: str, name: str) -> None:
    """The part's topics: sources, dead letters, changelogs."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(name)]
    finally:
        await admin.close()
    if names:
        await delete_topics(bootstrap, names)

"""The latency phase: sustained load at a fixed rate on a worker that holds every district.

The load producer (this process) and the marker probe (its own process) run side by
side; afterwards the phase waits until the worker has committed everything that was
produced and checks its district figures against the truth, live records included.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streams.events import Kind, Stream
from streams.simulator.records import SimRecord

from .dataset import Dataset, Truth, topic_offsets_sync
from .live import Cycled, generate_live, live_truth, produce_paced
from .proc import Child, load_avg
from .report import percentile
from .watchfloor_run import (
    GroupOffsets,
    WorkerRun,
    batch_stats,
    parse_exposition,
    verify,
    wait_committed,
)


def latency_phase(
    run: WorkerRun,
    ds: Dataset,
    truth: Truth,
    work: Path,
    *,
    rate: float,
    seconds: float,
    label: str,
    scrape_interval: float = 15.0,
    pool_seconds: float | None = None,
    target_p99: float = 0.5,
    log: Any = print,
) -> tuple[dict[str, Any], Truth]:
    """Run one phase; return its figures and the truth including what it produced.

    ``pool_seconds``: generate only that many seconds of records and produce them in
    passes, each with ids of its own (``live.Cycled``), until ``seconds`` are filled.
    """
    # The last two characters number the passes of a pooled phase (live.cycle_tag).
    tag = f"lv{label}{uuid.uuid4().hex[:4]}00"
    wanted = int(rate * seconds)
    pool_s = pool_seconds if pool_seconds and pool_seconds < seconds else seconds
    log(f"latency {label}: generating {int(rate * pool_s):,} live records")
    t0 = time.monotonic()
    pool = generate_live(ds, rate, pool_s, tag)
    generated_in = time.monotonic() - t0
    pool_n = len(pool)
    cycles = max(1, min(99, round(wanted / max(pool_n, 1))))
    records: Sequence[SimRecord] = Cycled(pool, tag, cycles) if cycles > 1 else pool
    pool_truth = live_truth(ds, pool)
    added = Truth()
    for _ in range(cycles):
        added.add(pool_truth)
    before = parse_exposition(run.scrape()[0])
    load_before = load_avg()
    start_at = time.time() + 4.0  # the probe's interpreter and clients start meanwhile
    probe = Child(
        "tests.benchmarks.probe",
        {
            "worker_url": run.url,
            "worker_pid": run.pid,
            "bootstrap": ds.bootstrap,
            "topic": ds.topics[Stream.INCIDENTS],
            "marker_district": ds.marker_district,
            "partitions": ds.spec.partitions,
            "seconds": seconds,
            "start_at": start_at,
            "run": tag,
            "scrape_interval": scrape_interval,
        },
        work,
        f"probe-{label}",
    )
    log(f"latency {label}: producing {len(records):,} records at {rate:,.0f}/s for {seconds:g}s")
    try:
        paced = asyncio.run(produce_paced(ds, records, rate, start_at))
    except BaseException:
        probe.kill()
        raise
    del records, pool
    t_produced = time.time()
    sources = list(ds.topics.values())
    offsets = GroupOffsets(ds.bootstrap)
    try:
        # What the load put in is committed at most one commit interval (2 s) after it
        # is counted: the drain time is an upper bound by that much.
        load_ends = {tp: end for tp, (_, end) in topic_offsets_sync(ds.bootstrap, sources).items()}
        try:
            t_drained: float | None = wait_committed(run, offsets, load_ends, timeout=300)
        except RuntimeError:
            run.check_alive()
            t_drained = None
        found = probe.result(timeout=seconds + 180)
        ends = {tp: end for tp, (_, end) in topic_offsets_sync(ds.bootstrap, sources).items()}
        # A worker that did not commit the load in 5 minutes gets a short while more, then
        # its figures are checked as they stand and what it left uncommitted is reported.
        uncommitted: dict[str, int] = {}
        try:
            wait_committed(run, offsets, ends, timeout=300 if t_drained else 30)
        except RuntimeError:
            run.check_alive()
            got = offsets.committed(run.app_id)
            uncommitted = {
                f"{t}:{p}": end - max(got.get((t, p), 0), 0)
                for (t, p), end in ends.items()
                if got.get((t, p), 0) < end
            }
    finally:
        offsets.close()
    added.counted[(ds.marker_district, Kind.CASE_FILED)] += found["markers_sent"]
    total = Truth()
    total.add(truth)
    total.add(added)
    figures = verify(run, total, pipeline=False)
    batches = batch_stats(figures.pop("samples"), before)
    lat = sorted(found["latencies"])
    clear = sorted(
        v for v, hit in zip(found["latencies"], found["overlapped_scrape"], strict=True) if not hit
    )
    rss = found["rss"]
    lag = max((s["lag"] for s in found["scrapes"]), default=None)
    scrapes = [s["seconds"] for s in found["scrapes"]]
    result = {
        "rate_target": rate,
        "seconds_target": seconds,
        "target_p99_seconds": target_p99,
        "generated_seconds": round(generated_in, 1),
        "pool_records": pool_n,
        "passes": cycles,
        "produced": paced.to_dict(),
        "markers_sent": found["markers_sent"],
        "markers_seen": found["markers_seen"],
        "latency_seconds": {
            "p50": percentile(lat, 50),
            "p90": percentile(lat, 90),
            "p99": percentile(lat, 99),
            "max": lat[-1] if lat else None,
            "mean": round(statistics.fmean(lat), 4) if lat else None,
        },
        "latency_without_scrape_seconds": {
            "markers": len(clear),
            "p50": percentile(clear, 50),
            "p99": percentile(clear, 99),
            "max": clear[-1] if clear else None,
        },
        "poll_interval": found["poll_interval"],
        "poll_seconds_median": found["poll_seconds_median"],
        "poll_seconds_max": found["poll_seconds_max"],
        "drain_after_produce_seconds": (
            round(t_drained - t_produced, 3) if t_drained is not None else None
        ),
        # Records past the group's committed offsets when the figures were checked.
        "uncommitted_at_check": uncommitted,
        # The worker samples its lag every 5 s; read at each scrape.
        "max_consumer_lag_seconds_of_input": round(lag / rate, 2) if lag is not None else None,
        "scrapes_under_load": {
            "interval_seconds": scrape_interval,
            "count": len(scrapes),
            "median_seconds": round(statistics.median(scrapes), 4) if scrapes else None,
            "max_seconds": round(max(scrapes), 4) if scrapes else None,
        },
        "max_consumer_lag": max((s["lag"] for s in found["scrapes"]), default=None),
        "rss": rss_summary(rss, paced.sent),
        "batches": batches,
        "gc": run.gc_pauses(start_at, t_drained or time.time()),
        "figures": figures,
        "exact": figures["exact"],
        "loadavg_before": load_before,
        "loadavg_after": load_avg(),
    }
    return result, total


def rss_summary(samples: list[list[float]], records: int) -> dict[str, Any]:
    """First, last, min, max RSS, its linear trend and the worker's CPU share.

    The trend is also given per record produced: every live record opens or moves a
    lifecycle that the state keeps for the de-duplication horizon (7 days of event time).
    """
    if len(samples) < 2:
        return {}
    ts = [s[0] for s in samples]
    rss = [s[1] / 2**20 for s in samples]
    mean_t, mean_r = statistics.fmean(ts), statistics.fmean(rss)
    var = sum((t - mean_t) ** 2 for t in ts)
    slope = sum((t - mean_t) * (r - mean_r) for t, r in zip(ts, rss, strict=True)) / var
    cpu = (samples[-1][2] - samples[0][2]) / (ts[-1] - ts[0])
    return {
        "first_mb": round(rss[0], 1),
        "last_mb": round(rss[-1], 1),
        "min_mb": round(min(rss), 1),
        "max_mb": round(max(rss), 1),
        "trend_mb_per_minute": round(slope * 60, 2),
        "growth_kb_per_record": round((rss[-1] - rss[0]) * 1024 / records, 3) if records else None,
        "cpu_share": round(cpu, 3),
        "samples": len(samples),
    }

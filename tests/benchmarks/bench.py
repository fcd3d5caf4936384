"""``python -m tests.benchmarks.bench``: Watchfloor beside raw aiokafka, Faust, Quix, Kafka Streams.

Against a running broker it preloads N simulator events for a synthetic city of
1,000 districts (cached between runs while the topics last), then measures on that
same data, each in its own process and each at least twice:

- ``limit``: a raw aiokafka consumer that reads and decodes every record;
- ``naive``: the textbook Faust agent running the counting job of ``job.py``;
- ``peer``: the same job with Quix Streams;
- ``kstreams``: the same job as a Kafka Streams application (Java, built with Maven on
  first use: ``kstreams_run.py``);
- ``watchfloor``: the real worker, until every event is counted and committed;

then, on the last worker (holding every district): ``/metrics`` scrape times, restart
recovery (SIGTERM and SIGKILL), and event-to-metric latency at a sustained rate (20,000/s
for 30 s, then 50,000/s for 60 s); and on a worker of its own, ``plateau``: RSS against
event time over 1,600 compressed days for 50 districts (``plateau.py``). Each
implementation's counts are checked exactly against the generator's truth. It prints
a table and, with ``--json FILE``, writes every figure. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streams.settings import PROJECT_ROOT, Settings

from . import kstreams_run
from .dataset import ROLES, Dataset, DatasetSpec, Truth, delete_topics, preload
from .job import split_count_key
from .proc import Child, load_avg, parse_tp_key, tp_key
from .report import IMPLS, render, spread, targets

PHASES = ("scrape", "restart", "latency")
ALL_PARTS = (*IMPLS, *PHASES, "plateau")
DEFAULT_WORK = PROJECT_ROOT / ".watchfloor" / "bench"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    default_bootstrap = Settings.from_env().bootstrap_servers
    p = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench",
        description="Watchfloor throughput, latency, recovery and scrape figures, side by side "
        "with a raw consumer, a naive Faust agent, Quix Streams and Kafka Streams.",
    )
    p.add_argument(
        "--bootstrap",
        default=default_bootstrap,
        help=f"Kafka bootstrap address (default {default_bootstrap}, "
        "from WATCHFLOOR_BOOTSTRAP_SERVERS)",
    )
    p.add_argument("--events", type=int, default=1_000_000, help="records to preload (N)")
    p.add_argument("--districts", type=int, default=1000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--late-share", type=float, default=0.02)
    p.add_argument("--duplicate-share", type=float, default=0.02)
    p.add_argument("--malformed-share", type=float, default=0.005)
    p.add_argument(
        "--parts",
        default=",".join(ALL_PARTS),
        help=f"comma-separated, of {', '.join(ALL_PARTS)} (default: all)",
    )
    p.add_argument("--repeat", type=int, default=2, help="runs of each measurement (default 2)")
    p.add_argument(
        "--naive-seconds",
        type=float,
        default=60.0,
        help="time box of the naive agent (checked on the prefix it read)",
    )
    p.add_argument(
        "--max-seconds", type=float, default=900.0, help="time box of limit, peer and kstreams"
    )
    p.add_argument("--rate", type=float, default=20_000.0, help="latency phase: events/s")
    p.add_argument("--latency-seconds", type=float, default=30.0)
    p.add_argument(
        "--high-rate",
        type=float,
        default=50_000.0,
        help="latency part: one more phase at this rate (issue #16: p99 <= 1 s at 50,000/s)",
    )
    p.add_argument(
        "--high-seconds", type=float, default=60.0, help="its duration; 0: no such phase"
    )
    p.add_argument(
        "--high-pool-seconds",
        type=float,
        default=4.0,
        help="its records are generated for this many seconds and produced in passes with "
        "fresh ids (generating three million records would take minutes)",
    )
    p.add_argument("--plateau-districts", type=int, default=50)
    p.add_argument("--plateau-days", type=float, default=1600.0, help="plateau: days of event time")
    p.add_argument(
        "--plateau-density",
        type=float,
        default=10.0,
        help="plateau: records per district and day of event time",
    )
    p.add_argument(
        "--plateau-speed",
        type=float,
        default=16.0,
        help="plateau: days of event time produced per second of wall time",
    )
    p.add_argument(
        "--scrape-interval",
        type=float,
        default=15.0,
        help="latency phase: scrape /metrics this often, as the deployed Prometheus does "
        "(15 s); 0: never",
    )
    p.add_argument("--scrapes", type=int, default=10, help="idle /metrics scrapes to time")
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile the worker with py-spy: an extra catch-up, extra scrapes and an "
        "extra restart (not counted in the figures)",
    )
    p.add_argument(
        "--gc-log",
        action="store_true",
        help="run the worker under tests.benchmarks.gclog: its garbage-collector pauses "
        "are logged and summed per phase",
    )
    p.add_argument("--json", default=None, metavar="FILE", help="write every figure here")
    p.add_argument("--work-dir", default=str(DEFAULT_WORK), help="data set cache, logs and state")
    p.add_argument("--fresh", action="store_true", help="produce the data set again")
    p.add_argument(
        "--keep-topics",
        action="store_true",
        help="keep the topics each run created (changelogs, dead letters)",
    )
    p.add_argument(
        "--store",
        default="memory://",
        help="the worker's WATCHFLOOR_STORE (default memory://, the setting's default; "
        "deploy/ runs rocksdb://, whose restart reads its own disk instead of the whole "
        "changelog, at a cost in CPU and memory: docs/performance.md)",
    )
    p.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra WATCHFLOOR_* setting for the worker (repeatable)",
    )
    args = p.parse_args(argv)
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = set(parts) - set(ALL_PARTS)
    if unknown:
        p.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if set(parts) & set(PHASES) and "watchfloor" not in parts:
        parts.append("watchfloor")  # the phases run on a worker that caught up
    args.parts = parts
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def code_version() -> dict[str, Any]:
    """The commit measured, and the files of streams/ that differ from it (measured too)."""
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout

    # Porcelain lines are "XY path": the status letters may start with a space.
    changed = [line[3:] for line in git("status", "--porcelain", "streams").splitlines()]
    commit = git("rev-parse", "--short", "HEAD").strip()
    return {"commit": commit, "uncommitted_streams_files": changed}


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    pom = (PROJECT_ROOT / "deploy" / "kafka" / "pom.xml").read_text()
    kafka = pom.split("<kafka.version>", 1)[1].split("<", 1)[0] if "<kafka.version>" in pom else "?"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem, 1),
        "python": platform.python_version(),
        "kafka": kafka,
        "platform": platform.platform(),
        "loadavg_start": load_avg(),
    }


def child_spec(
    ds: Dataset, impl: str, label: str, work: Path, max_seconds: float
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "bootstrap": ds.bootstrap,
        "topics": {ROLES[s]: t for s, t in ds.topics.items()},
        "partitions": ds.spec.partitions,
        "districts": ds.codes,
        "events": ds.events,
        "end_offsets": {tp_key(*tp): n for tp, n in ds.end_offsets().items()},
        "group": f"{ds.name}-{impl}-{label}",
        "state_dir": str(work / f"{impl}-{label}-state"),
        "max_seconds": max_seconds,
    }
    if impl == "kstreams":
        spec["job"] = kstreams_run.job_spec()  # the Java job reads job.py's rules from its spec
    return spec


def evaluate(ds: Dataset, impl: str, raw: dict[str, Any], spawned_at: float) -> dict[str, Any]:
    """Events/s and the exact check of one child run against the truth of what it read."""
    upto = {parse_tp_key(k): v for k, v in raw.get("positions", {}).items()}
    truth = ds.truth(upto)
    processed = int(raw["processed"])
    problems = []
    if processed != truth.records:
        problems.append(f"processed {processed} records but its positions cover {truth.records}")
    if impl == "limit":
        if raw["decoded"] != truth.decodable:
            problems.append(f"decoded {raw['decoded']}, truth {truth.decodable}")
    else:
        got = {split_count_key(k): v for k, v in raw["counts"].items() if v}
        want = dict(truth.job)
        if got != want:
            wrong = [k for k in set(got) | set(want) if got.get(k, 0) != want.get(k, 0)]
            problems.append(
                f"{len(wrong)} (district, type) counts differ, e.g. "
                + ", ".join(f"{k}: {got.get(k, 0)} vs truth {want.get(k, 0)}" for k in wrong[:3])
            )
    if impl == "kstreams":
        # Each (source, id) seen is written once to a seen-* store, and so logged once.
        logged = sum(n for t, n in raw["changelog_records"].items() if "-seen-" in t)
        if logged != sum(truth.job.values()):
            problems.append(
                f"its seen-* changelogs hold {logged} records for {sum(truth.job.values())} "
                "events counted"
            )
    if raw.get("complete") is False and impl != "naive":
        problems.append("did not read every record within its time box")
    seconds = max(raw["last_at"] - raw["first_at"], 1e-6)
    out = {
        "impl": impl,
        "events": processed,
        "complete": bool(raw.get("complete")),
        "seconds": round(seconds, 3),
        "events_per_second": round(processed / seconds, 1),
        "startup_seconds": round(raw["first_at"] - spawned_at, 3),
        "cpu_processing_seconds": raw.get("cpu_processing_seconds"),
        "cpu_seconds": raw.get("cpu_seconds"),
        "peak_rss_bytes": raw.get("peak_rss_bytes"),
        "exact": not problems,
        "problems": problems,
        "truth_counted": sum(truth.job.values()) if impl != "limit" else truth.decodable,
    }
    if impl == "kstreams":
        out["kstreams"] = {k: raw[k] for k in kstreams_run.RESULT_EXTRAS if k in raw}
    return out


def run_child_impl(
    ds: Dataset, impl: str, label: str, work: Path, max_seconds: float
) -> dict[str, Any]:
    command = kstreams_run.command() if impl == "kstreams" else None
    load_before = load_avg()
    spawned_at = time.time()
    child = Child(
        f"tests.benchmarks.{impl}",
        child_spec(ds, impl, label, work, max_seconds),
        work,
        f"{impl}-{label}",
        command=command,
    )
    raw = child.result(timeout=max_seconds + 180)
    shutil.rmtree(work / f"{impl}-{label}-state", ignore_errors=True)
    result = evaluate(ds, impl, raw, spawned_at)
    result["loadavg_before"] = load_before
    result["loadavg_after"] = load_avg()
    return result


def summarize(report: dict[str, Any]) -> None:
    summary: dict[str, Any] = {}
    for impl, runs in report["runs"].items():
        if runs:
            per_cpu = [
                r["events"] / r["cpu_processing_seconds"]
                for r in runs
                if r.get("cpu_processing_seconds")
            ]
            summary[impl] = {
                "events_per_second": spread([r["events_per_second"] for r in runs]),
                "events_per_cpu_second": spread([round(x, 1) for x in per_cpu]),
            }
    report["summary"] = summary
    if "watchfloor" in summary:
        for key, name in (("events_per_second", "ratios"), ("events_per_cpu_second", "cpu_ratios")):
            wf = summary["watchfloor"][key].get("best")
            report[name] = {
                impl: round(wf / summary[impl][key]["best"], 3)
                for impl in ("limit", "naive", "peer", "kstreams")
                if impl in summary and wf and summary[impl][key].get("best")
            }
    report["targets"] = targets(report)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(args.work_dir)
    session = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    runs_dir = work / "runs" / session
    spec = DatasetSpec(
        events=args.events,
        districts=args.districts,
        partitions=args.partitions,
        seed=args.seed,
        late_share=args.late_share,
        duplicate_share=args.duplicate_share,
        malformed_share=args.malformed_share,
    )
    worker_env = {"WATCHFLOOR_STORE": args.store}
    worker_env.update(item.split("=", 1) for item in args.worker_env)
    report: dict[str, Any] = {
        "machine": machine(),
        "code": code_version(),
        "params": {
            "bootstrap": args.bootstrap,
            "events": args.events,
            "districts": args.districts,
            "partitions": args.partitions,
            "parts": args.parts,
            "repeat": args.repeat,
            "naive_seconds": args.naive_seconds,
            "rate": args.rate,
            "latency_seconds": args.latency_seconds,
            "scrape_interval": args.scrape_interval,
            "high_rate": args.high_rate,
            "high_seconds": args.high_seconds,
            "high_pool_seconds": args.high_pool_seconds,
            "plateau": {
                "districts": args.plateau_districts,
                "days": args.plateau_days,
                "density": args.plateau_density,
                "speed": args.plateau_speed,
            },
            "worker_env": worker_env,
            "gc_log": args.gc_log,
            "logs": str(runs_dir),
        },
        "runs": {impl: [] for impl in IMPLS if impl in args.parts},
        "watchfloor": {},
        "profiles": {},
    }
    if set(args.parts) == {"plateau"}:  # it makes its own data: no preload
        run_plateau(args, runs_dir, session, worker_env, report)
        return finish(report, args)
    if "kstreams" in args.parts:
        # Built before anything is measured (and only when its sources changed).
        try:
            report["kstreams_build_seconds"] = kstreams_run.build(log=log)
        except kstreams_run.BuildError as exc:
            log(f"kstreams: {exc} (leave it out with --parts)")
            return 2
    ds = asyncio.run(preload(spec, args.bootstrap, work, fresh=args.fresh, log=log))
    truth = ds.truth()
    report["dataset"] = {
        "topics": sorted(ds.topics.values()),
        "events": ds.events,
        "intents": truth.intents(),
        "by_topic": dict(truth.received),
        "preload_seconds": round(ds.preload_seconds, 1),
        "preload_events_per_second": round(ds.preload_rate, 1),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ds.created_at)),
        "marker_district": ds.marker_district,
    }
    log(f"data set: {ds.events:,} records {truth.intents()}")
    from .pyspy import PySpy, attach
    from .pyspy import summarize as summarize_profile
    from .watchfloor_run import WorkerRun, restart, scrape_times, throughput

    live: WorkerRun | None = None
    profiles: dict[str, Any] = report["profiles"]
    try:
        for rep in range(1, args.repeat + 1):
            for impl in IMPLS:
                if impl not in args.parts:
                    continue
                label = f"{session[-4:]}r{rep}"
                log(f"run {rep}/{args.repeat}: {impl}")
                if impl == "watchfloor":
                    if live is not None:
                        live.stop()
                    live, result = throughput(
                        ds, truth, runs_dir, label, extra_env=worker_env, gc_log=args.gc_log
                    )
                else:
                    max_s = args.naive_seconds if impl == "naive" else args.max_seconds
                    result = run_child_impl(ds, impl, label, runs_dir, max_s)
                report["runs"][impl].append(result)
                log(
                    f"  {impl}: {result['events_per_second']:,.0f} events/s over "
                    f"{result['events']:,} events, exact={result['exact']}"
                    + (f" {result.get('problems')}" if not result["exact"] else "")
                )
        wf = report["watchfloor"]
        if live is not None:
            peaks = [r["peak_rss_bytes"] or 0 for r in report["runs"]["watchfloor"]]
            wf["peak_rss_bytes"] = max(peaks)
        if live is not None and "scrape" in args.parts:
            log(f"scrape: {args.scrapes} scrapes of /metrics at {ds.spec.districts} districts")
            wf["scrape"] = scrape_times(live, args.scrapes)
            if args.profile:
                log("profile: 5 more scrapes under py-spy")
                spy = attach(live.pid, runs_dir / "profile-scrape.raw")
                try:
                    scrape_times(live, 5)
                finally:
                    spy.stop()
                profiles["scrape"] = summarize_profile(spy.out)
        if live is not None and "restart" in args.parts:
            wf["restarts"] = []
            for rep in range(args.repeat):
                for how in ("term", "kill"):
                    log(f"restart {rep + 1}/{args.repeat}: {how}")
                    got = restart(live, truth, how)
                    wf["restarts"].append(got)
                    log(
                        f"  ready {got['ready_seconds']:.2f}s "
                        f"({got['ready_cpu_seconds']} s CPU), exact {got['correct_seconds']:.2f}s"
                    )
            if args.profile:
                log("profile: one more restart (SIGTERM) under py-spy")
                raw = runs_dir / "profile-restart.raw"
                spies: list[PySpy] = []

                def on_spawn(pid: int) -> Any:
                    spies.append(attach(pid, raw))
                    return spies[-1].stop

                restart(live, truth, "term", during=on_spawn)
                profiles["restart"] = summarize_profile(raw)
        if live is not None and "latency" in args.parts:
            from .latency import latency_phase

            wf["latency"] = []
            current: Truth = truth
            for rep in range(1, args.repeat + 1):
                got, current = latency_phase(
                    live,
                    ds,
                    current,
                    runs_dir,
                    rate=args.rate,
                    seconds=args.latency_seconds,
                    label=f"{rep}",
                    scrape_interval=args.scrape_interval,
                    log=log,
                )
                wf["latency"].append(got)
                log_latency(got)
            if args.high_seconds > 0:
                got, current = latency_phase(
                    live,
                    ds,
                    current,
                    runs_dir,
                    rate=args.high_rate,
                    seconds=args.high_seconds,
                    label="h",
                    scrape_interval=args.scrape_interval,
                    pool_seconds=args.high_pool_seconds,
                    target_p99=1.0,
                    log=log,
                )
                wf["latency"].append(got)
                log_latency(got)
        if live is not None:
            live.stop()
            live = None
        if "plateau" in args.parts:
            run_plateau(args, runs_dir, session, worker_env, report)
        if args.profile and "watchfloor" in args.parts:
            raw = runs_dir / "profile-catchup.raw"
            log(f"profile: an extra watchfloor catch-up under py-spy ({raw})")
            catchup_spies: list[PySpy] = []

            def on_ready(pid: int) -> Any:
                catchup_spies.append(attach(pid, raw))
                return catchup_spies[-1].stop

            prof_run, prof = throughput(
                ds, truth, runs_dir, f"{session[-4:]}prof", extra_env=worker_env, during=on_ready
            )
            prof_run.stop()
            profiles["catch-up"] = {
                **summarize_profile(raw),
                "events_per_second_under_profiler": prof["events_per_second"],
            }
    finally:
        if live is not None:
            live.stop()
        if not args.keep_topics:
            asyncio.run(_delete_run_topics(ds))
    return finish(report, args)


def finish(report: dict[str, Any], args: argparse.Namespace) -> int:
    """Print the table, write the JSON; 0 if every count was exact."""
    summarize(report)
    print(render(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
        log(f"wrote {args.json}")
    exact = (
        all(r["exact"] for runs in report["runs"].values() for r in runs)
        and all(ph["exact"] for ph in report["watchfloor"].get("latency", []))
        and report.get("plateau", {}).get("exact", True)
    )
    return 0 if exact else 1


def run_plateau(
    args: argparse.Namespace,
    runs_dir: Path,
    session: str,
    worker_env: dict[str, str],
    report: dict[str, Any],
) -> None:
    from .plateau import PlateauSpec, plateau_phase

    pl = plateau_phase(
        args.bootstrap,
        runs_dir,
        PlateauSpec(
            districts=args.plateau_districts,
            days=args.plateau_days,
            per_district_day=args.plateau_density,
            partitions=args.partitions,
            days_per_second=args.plateau_speed,
        ),
        label=session[-4:],
        extra_env=worker_env,
        keep_topics=args.keep_topics,
        log=log,
    )
    report["plateau"] = pl
    after = pl["trend_after_edges"] or {}
    log(
        f"  plateau: RSS {pl['verdict']} after the edges "
        f"({after.get('growth_mb')} MB over {after.get('days')} days), exact={pl['exact']}"
    )


def log_latency(got: dict[str, Any]) -> None:
    lat = got["latency_seconds"]
    log(
        f"  latency p50 {lat['p50']} s, p99 {lat['p99']} s at "
        f"{got['produced']['events_per_second']:,.0f} events/s "
        f"(target {got['rate_target']:,.0f}), exact={got['exact']}"
    )


async def _delete_run_topics(ds: Dataset) -> None:
    """Topics the runs created (changelogs, dead letters, assignor topics); not the data."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=ds.bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if f"{ds.name}-" in t]
    finally:
        await admin.close()
    if names:
        await delete_topics(ds.bootstrap, names)


if __name__ == "__main__":
    sys.exit(main())

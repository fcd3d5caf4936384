"""The real ``watchfloor worker`` under the benchmark: catch-up throughput, exact figures, restarts.

The worker runs as an operator runs it (``python -m streams.cli worker``, settings from
``WATCHFLOOR_*``, defaults otherwise) in its own process. What is timed:

- throughput: from ``/ready`` answering 200 to the end of counting (the newest dead
  letter, stamped by the worker's producer as the last batch is counted), to the last
  state write (the newest changelog record), and to the moment the consumer group's
  committed offsets reach the end of every source partition;
- figures: one ``/metrics`` scrape after the catch-up, compared exactly with the truth
  of the data set, district by district;
- restart: SIGKILL (a crash) or SIGTERM (a deploy), start again, time until ``/ready``
  and until a scrape shows exactly the true figures again;
- scrapes: ``/metrics`` wall time at the full number of districts.

Throughput polling touches only ``/ready`` and the broker, never ``/metrics``: a scrape
at 1,000 districts costs the worker real time, which would be charged to it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.events import Kind
from streams.kafka import ensure_topics

from .dataset import Dataset, Truth
from .proc import ROOT, Sampler, cpu_seconds, load_avg, proc_status

# All-time counters the worker exports per district, by the event kind that adds one.
METRIC_OF_KIND: dict[Kind, str] = {
    Kind.CASE_FILED: "watchfloor_cases_filed_total",
    Kind.CASE_CLEARED: "watchfloor_cases_cleared_total",
    Kind.DISPUTE_REPORTED: "watchfloor_disputes_reported_total",
    Kind.DISPUTE_RESOLVED: "watchfloor_disputes_resolved_total",
    Kind.DISPUTE_ESCALATED: "watchfloor_disputes_escalated_total",
    Kind.HAZARD_FOUND: "watchfloor_hazards_found_total",
    Kind.HAZARD_RECTIFIED: "watchfloor_hazards_rectified_total",
    Kind.PATROL_COMPLETED: "watchfloor_patrols_completed_total",
}
CHECKED = frozenset(
    {
        *METRIC_OF_KIND.values(),
        "watchfloor_duplicate_events_total",
        "watchfloor_late_events_total",
        "watchfloor_events_received_total",
        "watchfloor_events_processed_total",
        "watchfloor_events_rejected_total",
        "watchfloor_consumer_lag",
        "watchfloor_last_recovery_duration_seconds",
        "watchfloor_owned_districts",
        "watchfloor_batch_duration_seconds_count",
        "watchfloor_batch_duration_seconds_sum",
        "watchfloor_batch_duration_seconds_bucket",
        "watchfloor_batch_wait_seconds_count",
        "watchfloor_batch_wait_seconds_sum",
    }
)
_LABEL = re.compile(r'(\w+)="([^"]*)"')
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_exposition(text: str, names: frozenset[str] = CHECKED) -> Samples:
    """The samples of ``names`` in a Prometheus text exposition (labels sorted)."""
    out: Samples = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        if brace < 0:
            name, _, value = line.partition(" ")
            labels: tuple[tuple[str, str], ...] = ()
        else:
            name = line[:brace]
            close = line.rindex("}")
            labels = tuple(sorted(_LABEL.findall(line[brace + 1 : close])))
            value = line[close + 2 :]
        if name in names:
            out[(name, labels)] = float(value.split(" ")[0])
    return out


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for (n, labels), v in samples.items() if n == name and labels}


def mismatches(
    samples: Samples, truth: Truth, topics: Iterable[str], *, pipeline: bool = True
) -> list[str]:
    """Every difference between the worker's figures and the truth (empty: exact).

    District figures come from the durable state; the pipeline counters (received,
    processed, rejected per topic) belong to the process and start at zero after a
    restart, so ``pipeline=False`` leaves them out.
    """
    out: list[str] = []
    districts = {d for d, _ in truth.counted} | set(truth.duplicates) | set(truth.late)
    per_metric = {m: by_label(samples, m, "district") for m in METRIC_OF_KIND.values()}
    for m in per_metric.values():
        districts |= set(m)
    for kind, metric in METRIC_OF_KIND.items():
        got = per_metric[metric]
        for d in districts:
            want = truth.counted.get((d, kind), 0)
            if got.get(d, 0) != want:
                out.append(f"{metric}{{district={d}}} = {got.get(d, 0):g}, truth {want}")
    for metric, want_by in (
        ("watchfloor_duplicate_events_total", truth.duplicates),
        ("watchfloor_late_events_total", truth.late),
    ):
        got = by_label(samples, metric, "district")
        for d in districts | set(got):
            if got.get(d, 0) != want_by.get(d, 0):
                out.append(f"{metric}{{district={d}}} = {got.get(d, 0):g}, truth {want_by[d]}")
    if not pipeline:
        return out
    for metric, want_by in (
        ("watchfloor_events_received_total", truth.received),
        ("watchfloor_events_processed_total", truth.processed),
    ):
        got = by_label(samples, metric, "topic")
        for t in topics:
            if got.get(t, 0) != want_by.get(t, 0):
                out.append(f"{metric}{{topic={t}}} = {got.get(t, 0):g}, truth {want_by[t]}")
    rejected: Counter[tuple[str, str]] = Counter()
    for (n, labels), v in samples.items():
        if n == "watchfloor_events_rejected_total" and v:
            lab = dict(labels)
            rejected[(lab["topic"], lab["reason"])] = int(v)
    for key in set(rejected) | set(truth.rejected):
        if rejected[key] != truth.rejected.get(key, 0):
            out.append(
                f"watchfloor_events_rejected_total{{topic={key[0]},reason={key[1]}}} = "
                f"{rejected[key]}, truth {truth.rejected.get(key, 0)}"
            )
    return out


def batch_stats(after: Samples, before: Samples | None = None) -> dict[str, Any]:
    """Batches the worker processed between two scrapes: count, events and duration.

    The batch duration is the worker's own histogram (validate, count, write state);
    its 99th percentile is the upper bound of the bucket that holds it. The wait is
    from the fetch to the start of counting: the time a batch spent queued.
    """

    def total(samples: Samples | None, name: str) -> float:
        if samples is None:
            return 0.0
        return sum(v for (n, _), v in samples.items() if n == name)

    def buckets(samples: Samples | None) -> dict[float, float]:
        out: dict[float, float] = {}
        for (n, labels), v in (samples or {}).items():
            if n == "watchfloor_batch_duration_seconds_bucket":
                out[float(dict(labels)["le"])] = v
        return out

    count = total(after, "watchfloor_batch_duration_seconds_count") - total(
        before, "watchfloor_batch_duration_seconds_count"
    )
    seconds = total(after, "watchfloor_batch_duration_seconds_sum") - total(
        before, "watchfloor_batch_duration_seconds_sum"
    )
    events = total(after, "watchfloor_events_received_total") - total(
        before, "watchfloor_events_received_total"
    )
    waits = total(after, "watchfloor_batch_wait_seconds_count") - total(
        before, "watchfloor_batch_wait_seconds_count"
    )
    waited = total(after, "watchfloor_batch_wait_seconds_sum") - total(
        before, "watchfloor_batch_wait_seconds_sum"
    )
    b_after, b_before = buckets(after), buckets(before)
    p99 = None
    if count:
        for le in sorted(b_after):
            if b_after[le] - b_before.get(le, 0.0) >= 0.99 * count:
                p99 = le
                break
    return {
        "batches": int(count),
        "events_per_batch": round(events / count, 1) if count else None,
        "mean_batch_seconds": round(seconds / count, 4) if count else None,
        "p99_batch_seconds_at_most": p99,
        "mean_wait_seconds": round(waited / waits, 4) if waits else None,
    }


@dataclass
class WorkerRun:
    """One worker process (restartable) with its own consumer group and state topics."""

    ds: Dataset
    work: Path
    app_id: str
    extra_env: dict[str, str] = field(default_factory=dict)
    gc_log: Path | None = None  # run it under tests.benchmarks.gclog, pauses logged here
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.work / f"{self.app_id}.log"

    @property
    def changelog(self) -> str:
        return f"{self.app_id}-state-changelog"

    def env(self) -> dict[str, str]:
        s = self.ds.settings()
        return {
            **os.environ,
            "WATCHFLOOR_BOOTSTRAP_SERVERS": s.bootstrap_servers,
            "WATCHFLOOR_APP_ID": self.app_id,
            "WATCHFLOOR_TOPIC_INCIDENTS": s.topic_incidents,
            "WATCHFLOOR_TOPIC_DISPUTES": s.topic_disputes,
            "WATCHFLOOR_TOPIC_PATROLS": s.topic_patrols,
            "WATCHFLOOR_TOPIC_DEADLETTER": self.deadletter,
            "WATCHFLOOR_PARTITIONS": str(s.partitions),
            "WATCHFLOOR_REFERENCE_FILE": s.reference_file,
            "WATCHFLOOR_WEB_PORT": str(self.port),
            "WATCHFLOOR_DATA_DIR": str(self.work / f"{self.app_id}-data"),
            **self.extra_env,
        }

    @property
    def deadletter(self) -> str:
        return f"{self.app_id}.deadletter"

    def start(self) -> float:
        """Spawn the worker; return the wall time just before the spawn."""
        self.work.mkdir(parents=True, exist_ok=True)
        if not self.starts:
            # As `watchfloor topics` does before a deployment: the worker writes dead
            # letters to a topic it does not create.
            ensure_topics(self.ds.settings(topic_deadletter=self.deadletter))
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child keeps it)
        log.write(f"\n==== start {self.starts} ====\n".encode())
        log.flush()
        t0 = time.time()
        command = [sys.executable, "-m", "streams.cli", "worker"]
        if self.gc_log is not None:
            command[2:3] = ["tests.benchmarks.gclog", str(self.gc_log)]
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return t0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def gc_pauses(self, start: float, end: float) -> dict[str, Any] | None:
        if self.gc_log is None:
            return None
        from .gclog import summarize

        return summarize(str(self.gc_log), start, end, pid=self.pid)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"worker {self.app_id} exited:\n{self.log_tail()}")

    def get(self, path: str, timeout: float = 30.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as err:
            return int(err.code), err.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, b""

    def wait_ready(self, timeout: float = 180.0, interval: float = 0.05) -> float:
        """Poll ``/ready``; return the wall time of the first 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if self.get("/ready", timeout=5)[0] == 200:
                return time.time()
            time.sleep(interval)
        raise RuntimeError(f"worker {self.app_id} not ready in {timeout}s:\n{self.log_tail()}")

    def scrape(self) -> tuple[str, float]:
        t0 = time.perf_counter()
        status, body = self.get("/metrics", timeout=60)
        took = time.perf_counter() - t0
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return body.decode(), took

    def signal(self, sig: int, timeout: float = 60.0) -> float:
        """Send ``sig``; return the seconds the process took to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        return time.monotonic() - t0

    def stop(self) -> None:
        self.signal(signal.SIGTERM)


class GroupOffsets:
    """Committed offsets of a consumer group and the newest record of a topic (kafka-python)."""

    def __init__(self, bootstrap: str) -> None:
        from kafka import KafkaAdminClient

        self.bootstrap = bootstrap
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)

    def committed(self, group: str) -> dict[tuple[str, int], int]:
        got = self.admin.list_group_offsets(group).get(group, {})
        return {(tp.topic, tp.partition): int(om.offset) for tp, om in got.items()}

    def newest_timestamp(self, topic: str) -> float | None:
        """The largest record timestamp of the last record of each partition (seconds)."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in parts]
            if not tps:
                return None
            ends = consumer.end_offsets(tps)
            consumer.assign(tps)
            wanted = {tp for tp in tps if ends[tp] > 0}
            for tp in wanted:
                consumer.seek(tp, ends[tp] - 1)
            newest = 0
            deadline = time.monotonic() + 20
            while wanted and time.monotonic() < deadline:
                for tp, recs in consumer.poll(timeout_ms=500).items():
                    for rec in recs:
                        newest = max(newest, rec.timestamp)
                        if rec.offset >= ends[tp] - 1:
                            wanted.discard(tp)
            return newest / 1000 if newest else None
        finally:
            consumer.close()

    def close(self) -> None:
        self.admin.close()


def wait_committed(
    run: WorkerRun, offsets: GroupOffsets, ends: dict[tuple[str, int], int], timeout: float
) -> float:
    """Poll the group's committed offsets until they reach ``ends``; return that wall time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.check_alive()
        got = offsets.committed(run.app_id)
        if all(got.get(tp, -1) >= n for tp, n in ends.items()):
            return time.time()
        time.sleep(0.25)
    raise RuntimeError(f"worker {run.app_id} did not commit everything in {timeout:.0f}s")


def verify(run: WorkerRun, truth: Truth, *, pipeline: bool = True) -> dict[str, Any]:
    text, took = run.scrape()
    samples = parse_exposition(text)
    wrong = mismatches(samples, truth, run.ds.topics.values(), pipeline=pipeline)
    return {
        "exact": not wrong,
        "mismatches": len(wrong),
        "first_mismatches": wrong[:10],
        "districts_exported": len(by_label(samples, "watchfloor_cases_filed_total", "district")),
        "scrape_seconds": round(took, 4),
        "samples": samples,
    }


def throughput(
    ds: Dataset,
    truth: Truth,
    work: Path,
    label: str,
    *,
    extra_env: dict[str, str] | None = None,
    during: Any = None,
    gc_log: bool = False,
) -> tuple[WorkerRun, dict[str, Any]]:
    """Start a fresh worker on the preloaded topics and time the catch-up; leave it running.

    ``during(pid)`` is called once the worker is ready (the profiler); it returns a
    callable that is called when the catch-up is over.
    """
    app_id = f"{ds.name}-wf-{label}"
    run = WorkerRun(
        ds,
        work,
        app_id,
        extra_env=dict(extra_env or {}),
        gc_log=work / f"{app_id}.gc.jsonl" if gc_log else None,
    )
    offsets = GroupOffsets(ds.bootstrap)
    load_before = load_avg()
    t_spawn = run.start()
    sampler = Sampler(run.pid, 0.25).start()
    try:
        t_ready = run.wait_ready()
        finish = during(run.pid) if during is not None else None
        cpu_ready = cpu_seconds(run.pid) or 0.0
        t_committed = wait_committed(run, offsets, ds.end_offsets(), timeout=120 + ds.events / 2000)
        cpu_done = cpu_seconds(run.pid) or 0.0
        if finish is not None:
            finish()
        # The end of counting: the newest dead letter. Every batch of this data has some
        # (a few % of its records are duplicates, late or malformed), and a batch's dead
        # letters are sent and confirmed right after it is counted. State writes are a
        # poorer clock: Faust's producer buffer sends them in bursts at each commit.
        t_state = offsets.newest_timestamp(run.changelog) or t_committed
        t_dead = offsets.newest_timestamp(run.deadletter)
        t_counted = t_dead if t_dead is not None and t_dead > t_ready else t_state
    except BaseException:
        run.signal(signal.SIGKILL)
        raise
    finally:
        sampler.stop()
        offsets.close()
    status = proc_status(run.pid)
    figures = verify(run, truth)
    batches = batch_stats(figures.pop("samples"))
    counted_s = max(t_counted - t_ready, 1e-6)
    committed_s = max(t_committed - t_ready, 1e-6)
    return run, {
        "impl": "watchfloor",
        "app_id": run.app_id,
        "events": ds.events,
        "complete": True,
        "startup_seconds": round(t_ready - t_spawn, 3),
        "seconds": round(counted_s, 3),
        "events_per_second": round(ds.events / counted_s, 1),
        "counted_by": "newest dead letter" if t_counted != t_state else "newest state write",
        "state_written_seconds": round(t_state - t_ready, 3),
        "committed_seconds": round(committed_s, 3),
        "committed_events_per_second": round(ds.events / committed_s, 1),
        # CPU from ready to the last state write (sampled every 0.25 s), and to committed.
        "cpu_processing_seconds": round(
            sampler.cpu_between(t_ready, t_counted) or (cpu_done - cpu_ready), 3
        ),
        "cpu_to_committed_seconds": round(cpu_done - cpu_ready, 3),
        "peak_rss_bytes": status.get("VmHWM"),
        "rss_after_bytes": status.get("VmRSS"),
        "sampled_peak_rss_bytes": sampler.peak_rss(),
        "figures": figures,
        "exact": figures["exact"],
        "batches": batches,
        "gc": run.gc_pauses(t_ready, t_counted),
        "loadavg_before": load_before,
        "loadavg_after": load_avg(),
    }


def restart(
    run: WorkerRun, truth: Truth, how: str, *, timeout: float = 180.0, during: Any = None
) -> dict[str, Any]:
    """Stop the worker (``kill``: SIGKILL, ``term``: SIGTERM), start it, time the recovery.

    ``during(pid)`` is called right after the new process is spawned (the profiler);
    the callable it returns is called once the figures are exact again.
    """
    from .dataset import topic_offsets_sync

    load_before = load_avg()
    changelog = topic_offsets_sync(run.ds.bootstrap, [run.changelog])
    stop_seconds = run.signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
    t0 = run.start()
    finish = during(run.pid) if during is not None else None
    try:
        t_ready = run.wait_ready(timeout=timeout)
        # CPU the new process spent to get ready (interpreter, Faust, changelog read,
        # rebuild): on a shared machine it moves far less than the wall time.
        ready_cpu = cpu_seconds(run.pid)
        deadline = time.monotonic() + timeout
        scrapes = 0
        wrong: list[str] = []
        while time.monotonic() < deadline:
            text, _ = run.scrape()
            t_scraped = time.time()
            scrapes += 1
            samples = parse_exposition(text)
            wrong = mismatches(samples, truth, run.ds.topics.values(), pipeline=False)
            if not wrong:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"figures not correct {timeout}s after a restart: {wrong[:5]}")
    finally:
        if finish is not None:
            finish()
    recovery = samples.get(("watchfloor_last_recovery_duration_seconds", ()))
    return {
        "how": how,
        "stop_seconds": round(stop_seconds, 3),
        "ready_seconds": round(t_ready - t0, 3),
        "ready_cpu_seconds": None if ready_cpu is None else round(ready_cpu, 3),
        "correct_seconds": round(t_scraped - t0, 3),
        "scrapes_until_correct": scrapes,
        "worker_recovery_seconds": recovery,
        "districts": len(by_label(samples, "watchfloor_cases_filed_total", "district")),
        # What recovery reads: the state changelog, uncompacted since its last clean-up.
        "changelog_records": sum(end - first for first, end in changelog.values()),
        "rss_after_ready_bytes": proc_status(run.pid).get("VmRSS"),
        "gc": run.gc_pauses(t0, t_scraped),
        "loadavg": load_before,
    }


def scrape_times(run: WorkerRun, count: int) -> dict[str, Any]:
    """Wall time of ``count`` consecutive ``/metrics`` scrapes of an idle worker."""
    times = []
    size = series = 0
    for _ in range(count):
        text, took = run.scrape()
        times.append(took)
        size = len(text)
        series = sum(1 for line in text.splitlines() if line and line[0] != "#")
    return {
        "count": count,
        "median_seconds": round(statistics.median(times), 4),
        "max_seconds": round(max(times), 4),
        "min_seconds": round(min(times), 4),
        "bytes": size,
        "series": series,
        "loadavg": load_avg(),
    }

"""Run real Watchfloor workers against the real broker, publish events, read figures back."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streams.kafka import ensure_topics
from streams.settings import Settings
from tests.conftest import need
from tests.support import TYPES, event

__all__ = ["TYPES", "event"]

ROOT = Path(__file__).resolve().parents[2]

ROLE_OF_PREFIX = {"incident": "incidents", "dispute": "disputes", "patrol": "patrols",
                  "hazard": "patrols"}


def new_topic(bootstrap: str, prefix: str, partitions: int) -> str:
    """A fresh topic of ``partitions`` on the broker, named ``<prefix>-<random>``."""
    from kafka.admin import NewTopic

    topic = f"{prefix}-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()
    return topic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def role_of(doc: Mapping[str, Any]) -> str:
    return ROLE_OF_PREFIX[str(doc["type"]).split(".")[1]]


@dataclass
class Cluster:
    """One test's private corner of the broker: its own topics and consumer group."""

    bootstrap: str
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    partitions: int = 4
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def app_id(self) -> str:
        return f"wf-test-{self.suffix}"

    def topic(self, role: str) -> str:
        return f"test-{self.suffix}.{role}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "WATCHFLOOR_BOOTSTRAP_SERVERS": self.bootstrap,
            "WATCHFLOOR_APP_ID": self.app_id,
            "WATCHFLOOR_TOPIC_INCIDENTS": self.topic("incidents"),
            "WATCHFLOOR_TOPIC_DISPUTES": self.topic("disputes"),
            "WATCHFLOOR_TOPIC_PATROLS": self.topic("patrols"),
            "WATCHFLOOR_TOPIC_DEADLETTER": self.topic("deadletter"),
            "WATCHFLOOR_TOPIC_BULLETINS": self.topic("bulletins"),
            # Scheduled bulletins only where a test asks for them (test_centre_*).
            "WATCHFLOOR_BULLETIN_START_DELAY_SECONDS": "3600",
            "WATCHFLOOR_PARTITIONS": str(self.partitions),
            "WATCHFLOOR_COMMIT_INTERVAL": "0.5",
            "WATCHFLOOR_SESSION_TIMEOUT": "6",
            "WATCHFLOOR_LOG_LEVEL": "info",
            # Tests stop workers all the time; the drain before a stop has its own test.
            "WATCHFLOOR_SHUTDOWN_DRAIN_SECONDS": "0",
        }
        env.update(self.extra)
        env.update(extra)
        return env

    def settings(self) -> Settings:
        return Settings.from_env(self.env())

    def create_topics(self) -> None:
        ensure_topics(self.settings())

    def producer(self) -> KafkaProducer:
        return KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, acks="all")

    def publish(self, docs: Iterable[Mapping[str, Any] | tuple[str, bytes | None, bytes | None]]
                ) -> int:
        """Produce events (documents, keyed by district) or raw (role, key, value) records."""
        producer = self.producer()
        futures = []
        for item in docs:
            if isinstance(item, tuple):
                role, key, value = item
            else:
                role, key, value = (role_of(item), str(item["district"]).encode(),
                                    orjson.dumps(item))
            futures.append(producer.send(self.topic(role), key=key, value=value))
        for f in futures:
            f.get(timeout=30)
        producer.flush()
        producer.close()
        return len(futures)

    def read_all(self, role: str, timeout: float = 10.0) -> list[Any]:
        """Every record of one of our topics, from the beginning, without a group."""
        name = self.topic(role)
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                 auto_offset_reset="earliest", consumer_timeout_ms=1000)
        parts = [TopicPartition(name, p) for p in range(self.partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
            consumer.position(tp) < ends[tp] for tp in parts
        ):
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(batch)
        consumer.close()
        return out


    def wait_committed(self, roles: Iterable[str] = ("incidents", "disputes", "patrols"),
                       timeout: float = 30.0) -> None:
        """Until the worker group has committed every record of these topics: all of them
        were counted, none is still on its way (a batch may wait for more records)."""
        parts = [TopicPartition(self.topic(r), p) for r in roles for p in range(self.partitions)]
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap)
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            ends = consumer.end_offsets(parts)

            def committed() -> bool:
                got = admin.list_group_offsets(self.app_id).get(self.app_id, {})
                done = {(tp.topic, tp.partition): int(om.offset) for tp, om in got.items()}
                return all(done.get((tp.topic, tp.partition), 0) >= ends[tp] for tp in parts)

            wait_for(committed, timeout=timeout, what="the worker group's commits")
        finally:
            consumer.close()
            admin.close()


class WorkerProcess:
    """``watchfloor worker`` in a subprocess, as an operator would run it."""

    def __init__(self, cluster: Cluster, tmp: Path, name: str = "w1", **env: str) -> None:
        self.cluster = cluster
        self.name = name
        self.port = free_port()
        self.data_dir = tmp / f"data-{name}"
        self.log_path = tmp / f"{name}.log"
        self.env = {
            **os.environ,
            **cluster.env(**env),
            "WATCHFLOOR_WEB_PORT": str(self.port),
            "WATCHFLOOR_DATA_DIR": str(self.data_dir),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WorkerProcess:
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 (kept open for the child)
        log.write(f"\n==== start {self.starts} ====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"], env=self.env, cwd=ROOT,
            stdout=log, stderr=subprocess.STDOUT,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 90.0) -> float:
        """Block until /ready answers 200; return the seconds it took."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not self.alive():
                raise AssertionError(f"worker {self.name} exited:\n{self.log_tail()}")
            status, _ = self.get("/ready")
            if status == 200:
                return time.monotonic() - t0
            time.sleep(0.2)
        raise AssertionError(f"worker {self.name} not ready in {timeout}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def digest(self) -> str:
        try:
            return log_digest(self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            return "(no log)"

    def dump_tasks(self) -> None:
        """Ask the worker to log every asyncio task's stack (mode's SIGUSR1 handler)."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGUSR1)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                body = resp.read()
                status = resp.status
                ctype = resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as err:
            body, status, ctype = err.read(), err.code, err.headers.get("Content-Type", "")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, None
        if "json" in ctype:
            return status, orjson.loads(body)
        return status, body.decode()

    def post(self, path: str, body: bytes, headers: Mapping[str, str] | None = None,
             timeout: float = 10.0) -> tuple[int, Any]:
        req = urllib.request.Request(self.url + path, data=body, method="POST",
                                     headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, orjson.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, orjson.loads(raw)
            except orjson.JSONDecodeError:
                return err.code, raw.decode()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics keyed by (name, sorted labels)."""
        status, text = self.get("/metrics")
        assert status == 200, f"/metrics answered {status}"
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(lines[-n:])


_STAMP = re.compile(r"^\[[^]]*\] \[\d+\] ")
_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (\S+)')
#: Tasks whose stacks say where a stuck worker waits: the fetch loop, recovery, the agent.
_TASKS = ("Fetcher._fetcher", "_restart_recovery", "_slurp_changelogs", "_execute_actor")


def log_digest(text: str, warnings: int = 12, tail: int = 12) -> str:
    """A stuck worker's log in a few lines: distinct warnings and errors, the stacks
    of the tasks in ``_TASKS`` (if mode's SIGUSR1 dump is in the log), the last lines."""
    lines = text.splitlines()
    start = max((i for i, line in enumerate(lines) if line.startswith("==== start")), default=0)
    lines = lines[start:]
    seen: dict[str, str] = {}
    for line in lines:
        if "[WARNING]" in line or "[ERROR]" in line or "[CRITICAL]" in line:
            seen.pop(_STAMP.sub("", line), None)
            seen[_STAMP.sub("", line)] = line[:300]
    out = ["  distinct warnings and errors (last seen):", *list(seen.values())[-warnings:]]
    stacks: list[str] = []
    current: str | None = None
    for line in lines:
        if line.startswith("Stack for <Task"):
            current = next((name for name in _TASKS if name in line), None)
            if current is not None:
                stacks.append(f"  stack of {current}:")
        elif current is not None and (m := _FRAME.match(line)):
            stacks.append(f"    {Path(m[1]).name}:{m[2]} {m[3]}")
    if stacks:
        out += stacks
    records = [line for line in lines if _STAMP.match(line)]  # not the task dump
    out += ["  last lines:", *(line[:300] for line in records[-tail:])]
    return "\n".join(out)


def sample(metrics: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float | None:
    return metrics.get((name, tuple(sorted(labels.items()))))


def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.3,
             what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class Truth:
    """What a scripted stream must add up to, per district, computed by construction."""

    filed: Counter[str] = field(default_factory=Counter)
    cleared: Counter[str] = field(default_factory=Counter)
    found: Counter[str] = field(default_factory=Counter)
    rectified: Counter[str] = field(default_factory=Counter)
    reported: Counter[str] = field(default_factory=Counter)
    resolved: Counter[str] = field(default_factory=Counter)
    patrols: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)

    def open_cases(self, d: str) -> int:
        return self.filed[d] - self.cleared[d]

    def open_hazards(self, d: str) -> int:
        return self.found[d] - self.rectified[d]

    def total(self) -> int:
        return sum(sum(c.values()) for c in (self.filed, self.cleared, self.found,
                                              self.rectified, self.reported, self.resolved,
                                              self.patrols))


def scripted_stream(districts: list[str], per_district: int, now: datetime,
                    seed: int = 1, tag: str = "") -> tuple[list[dict[str, Any]], Truth]:
    """A realistic mix whose true figures are known: every lifecycle opens before it
    closes, times rise within a district over the last 20 hours, and about 1 % of the
    events are exact repeats (same id), which must be counted once. ``tag`` keeps the
    subjects of two streams apart."""
    import random

    rng = random.Random(seed)
    truth = Truth()
    docs: list[dict[str, Any]] = []
    span = 20 * 3600.0
    for d in districts:
        step = span / per_district
        t0 = now - timedelta(seconds=span)
        open_cases: list[str] = []
        open_hazards: list[str] = []
        open_disputes: list[str] = []
        for i in range(per_district):
            when = t0 + timedelta(seconds=i * step)
            r = rng.random()
            if r < 0.25:
                sid = f"{d}{tag}-case-{i}"
                docs.append(event("case_filed", d, sid, when,
                                  {"category": "theft", "severity": "minor"}))
                open_cases.append(sid)
                truth.filed[d] += 1
            elif r < 0.35 and open_cases:
                sid = open_cases.pop(rng.randrange(len(open_cases)))
                docs.append(event("case_cleared", d, sid, when))
                truth.cleared[d] += 1
            elif r < 0.6:
                sid = f"{d}{tag}-hz-{i}"
                docs.append(event("hazard_found", d, sid, when, {
                    "category": "fire", "major": rng.random() < 0.1,
                    "deadline": (when + timedelta(days=3)).isoformat(),
                    "responsible_unit": f"{d}-fire-brigade"}))
                open_hazards.append(sid)
                truth.found[d] += 1
            elif r < 0.75 and open_hazards:
                sid = open_hazards.pop(rng.randrange(len(open_hazards)))
                docs.append(event("hazard_rectified", d, sid, when))
                truth.rectified[d] += 1
            elif r < 0.85:
                sid = f"{d}{tag}-dp-{i}"
                docs.append(event("dispute_reported", d, sid, when, {
                    "category": "neighbourhood", "responsible_unit": f"{d}-mediation"}))
                open_disputes.append(sid)
                truth.reported[d] += 1
            elif r < 0.9 and open_disputes:
                sid = open_disputes.pop(rng.randrange(len(open_disputes)))
                docs.append(event("dispute_resolved", d, sid, when))
                truth.resolved[d] += 1
            else:
                sid = f"{d}{tag}-pt-{i}"
                docs.append(event("patrol_completed", d, sid, when, {
                    "team": f"{d}-pt01",
                    "started_at": (when - timedelta(hours=2)).isoformat(),
                    "ended_at": when.isoformat(), "area": f"{d}-s1", "findings": 0}))
                truth.patrols[d] += 1
            if rng.random() < 0.01:
                docs.append(dict(docs[-1]))  # an exact repeat: same id, same subject
                truth.duplicates[d] += 1
    return docs, truth


def confluent_kafka_module() -> Any:
    """librdkafka's Python client, the one many publishers use; the test fails (under CI)
    or skips without it."""
    try:
        import confluent_kafka
    except ImportError:
        confluent_kafka = None
    need(confluent_kafka is not None,
         "confluent-kafka (librdkafka, installed with the bench extra) is missing")
    return confluent_kafka

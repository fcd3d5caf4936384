"""Operations: readiness only after recovery, clean SIGTERM, JSON logs, build info."""

from __future__ import annotations

import signal
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient
from kafka.structs import TopicPartition

from streams import __version__

from .harness import Cluster, WorkerProcess, sample, scripted_stream, wait_for

TZ = ZoneInfo("Asia/Shanghai")
DISTRICTS = ["jinshui", "erqi", "zhongyuan", "guancheng", "huiji", "gaoxin"]


def filed_total(w: WorkerProcess) -> float:
    return sum(v for (name, _), v in w.metrics().items() if name == "watchfloor_cases_filed_total")


def test_ready_only_after_recovery_with_correct_figures(cluster: Cluster, workers) -> None:
    docs, truth = scripted_stream(DISTRICTS, per_district=2500, now=datetime.now(TZ), seed=11)
    cluster.publish(docs)
    w = workers()
    w.wait_ready()
    wait_for(lambda: filed_total(w) == sum(truth.filed.values()), what="all counted")
    assert w.stop() == 0
    w.start()
    # Poll as fast as the worker answers: before readiness it must say 503, and the
    # first 200 must come with complete figures, never a partial state (the unit tests
    # of Watchfloor.serving cover the 503 while recovery runs).
    answers = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status, body = w.get("/ready")
        if status:
            answers.append(status)
        if status == 200:
            break
        time.sleep(0.05)
    assert answers and answers[-1] == 200
    # Before readiness every answer is 503. Since a clean stop snapshots every district,
    # recovery can end before the web server's first answer; the first 200 must then
    # still come with the complete figures checked below.
    assert set(answers[:-1]) <= {503}, answers
    assert body["partitions"] == [0, 1, 2, 3]
    m = w.metrics()
    assert filed_total(w) == sum(truth.filed.values())
    assert sample(m, "watchfloor_recovery_in_progress") == 0
    assert sample(m, "watchfloor_ready") == 1
    assert sample(m, "watchfloor_last_recovery_duration_seconds") > 0


def changelog_latest(cluster: Cluster) -> dict[bytes, bytes | None]:
    """The state changelog as a restart reads it: the newest value of each key."""
    topic = f"{cluster.app_id}-state-changelog"
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in range(cluster.partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        latest: dict[bytes, bytes | None] = {}
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            assert time.monotonic() < deadline, "the changelog could not be read"
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    latest[r.key] = r.value
        return latest
    finally:
        consumer.close()


def journal_seq(value: bytes) -> int:
    """The seq of a stored journal: ``z<seq>\\n`` and zlib, or plain JSON with ``q``."""
    if value[:1] == b"z":
        return int(value.partition(b"\n")[0][1:])
    seq: int = orjson.loads(value)["q"]
    return seq


def test_sigterm_commits_and_leaves_the_group(cluster: Cluster, workers) -> None:
    docs, truth = scripted_stream(DISTRICTS[:3], per_district=800, now=datetime.now(TZ), seed=4)
    cluster.publish(docs)
    w = workers()
    w.wait_ready()
    wait_for(lambda: filed_total(w) == sum(truth.filed.values()), what="all counted")
    t0 = time.monotonic()
    assert w.stop() == 0
    assert time.monotonic() - t0 < 30
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        groups = {g["group_id"]: g for g in admin.list_groups()}
    finally:
        admin.close()
    assert groups[cluster.app_id]["group_state"] == "Empty", "SIGTERM leaves the group"
    # Read the group's commits without joining it.
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap, group_id=cluster.app_id,
                             enable_auto_commit=False)
    parts = [TopicPartition(cluster.topic(r), p) for r in ("incidents", "disputes", "patrols")
             for p in range(cluster.partitions)]
    ends = consumer.end_offsets(parts)
    committed = {tp: consumer.committed(tp) for tp in parts}
    consumer.close()
    for tp in parts:
        # An empty partition has nothing to commit.
        assert (committed[tp] or 0) == ends[tp], f"{tp} committed up to the end"
    # Every district was snapshotted after its last journal (journals still held at the
    # stop were never written: the snapshot holds their counts): the next start replays none.
    latest = changelog_latest(cluster)
    for d in DISTRICTS[:3]:
        manifest = orjson.loads(latest[f"{d}\x1fm".encode()])
        # A journal is stored as b"z<seq>\n" and its zlib stream, or as plain JSON.
        seqs = [journal_seq(v) for k, v in latest.items()
                if k.startswith(f"{d}\x1fj\x1f".encode()) and v is not None]
        assert manifest["g"] >= 1 and manifest["q"] >= max(seqs, default=0), (d, manifest, seqs)
    # Having left the group, a new worker need not wait out the old session.
    w.start()
    assert w.wait_ready() < 15


def test_json_logs_and_build_info(cluster: Cluster, workers) -> None:
    w = workers(WATCHFLOOR_LOG_JSON="true")
    w.wait_ready()
    m = w.metrics()
    info = [labels for (name, labels), v in m.items() if name == "watchfloor_build_info"]
    assert info and dict(info[0])["version"] == __version__
    w.stop()
    lines = [ln for ln in w.log_path.read_text().splitlines()
             if ln.strip() and not ln.startswith("====")]
    parsed = [orjson.loads(ln) for ln in lines]
    assert all({"time", "level", "logger", "message"} <= set(p) for p in parsed)
    assert any("Recovered" in p["message"] for p in parsed)


def test_sigterm_drains_with_503_before_the_listener_goes(cluster: Cluster, workers) -> None:
    """Issue 12, item 9: load balancers get a window in which /ready says 503."""
    w = workers(WATCHFLOOR_SHUTDOWN_DRAIN_SECONDS="3")
    w.wait_ready()
    assert w.proc is not None
    t0 = time.monotonic()
    w.proc.send_signal(signal.SIGTERM)
    seen: list[tuple[float, int, int]] = []  # (seconds after SIGTERM, /ready, /health)
    while w.alive() and time.monotonic() - t0 < 60:
        ready, body = w.get("/ready", timeout=2)
        health, _ = w.get("/health", timeout=2)
        seen.append((time.monotonic() - t0, ready, health))
        if ready == 503:
            assert body["draining"] is True and body["ready"] is False, body
        time.sleep(0.1)
    assert w.proc.wait(timeout=30) == 0
    draining = [t for t, ready, health in seen if ready == 503 and health == 200]
    assert draining, f"no 503 before the listener went: {seen[:5]}"
    assert draining[0] < 0.5, "503 from the moment SIGTERM arrives"
    assert draining[-1] >= 2.5, "and for the whole drain"
    assert all(ready != 200 for _, ready, _ in seen), "never 200 again after SIGTERM"
    log = w.log_path.read_text()
    assert "SIGTERM: /ready answers 503 for 3s" in log

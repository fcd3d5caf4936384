"""The worker's and the tools' edges as new users meet them (issue 12): settings Watchfloor does
not own, Faust's own views, sentences instead of tracebacks, one namespace per installation,
simulator files for publish, the start-up line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer

from streams.simulator.records import MALFORMED_REASONS

from .harness import ROOT, Cluster, WorkerProcess, event, free_port, sample, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]

TZ = ZoneInfo("Asia/Shanghai")


def watchfloor(
    *argv: str, env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *argv], env={**os.environ, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=timeout,
    )


def one_sentence(done: subprocess.CompletedProcess[str]) -> str:
    """The run failed with exit status 2 and one line of its own on stderr."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("watchfloor: ") and lines[0].rstrip().endswith("."), lines[0]
    return lines[0]


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- item 6: Faust's own views ---------------------------------------------------------


def test_fausts_router_and_table_views_are_not_served(cluster: Cluster, workers) -> None:
    w = workers()
    w.wait_ready()
    cluster.publish([event("case_filed", "jinshui", "v-1", datetime.now(TZ),
                           {"category": "theft", "severity": "minor"})])
    wait_for(lambda: sample(w.metrics(), "watchfloor_cases_filed_total", district="jinshui"),
             what="counted")
    for path in ("/router/", "/router/topics", "/router/state/", "/router/state/jinshui/",
                 "/table/", "/table/state/", "/table/state/jinshui/", "/table/state/jinshui%1f0/",
                 "/stats/", "/graph/", "/performance/"):
        status, body = w.get(path)
        assert status == 404, (path, status, body)
    # The API's own routing between workers does not need them (test_scale_out runs it
    # across three workers); on one worker the district answers.
    assert w.get("/api/v1/districts/jinshui")[0] == 200


# --- item 7: settings Watchfloor does not own ----------------------------------------------


def test_fausts_plain_variables_change_nothing(cluster: Cluster, tmp_path: Path) -> None:
    faust_port, f_port = free_port(), free_port()
    faust_dir = tmp_path / "faust-datadir"
    w = WorkerProcess(
        cluster, tmp_path, "w1",
        WEB_PORT=str(faust_port),
        WEB_HOST="0.0.0.0",
        APP_DATADIR=str(faust_dir),
        BROKER_SESSION_TIMEOUT="1",
        NODE_CANONICAL_URL="http://somewhere-else:1",
        TOPIC_PARTITIONS="1",
        F_WEB_PORT=str(f_port),
        FAUST_DATADIR=str(faust_dir),
    ).start()
    try:
        w.wait_ready(timeout=60)  # on WATCHFLOOR_WEB_PORT
        assert not listening(faust_port) and not listening(f_port)
        assert not faust_dir.exists()
        assert w.data_dir.exists()
        log = w.log_path.read_text(errors="replace")
        ignored = next(ln for ln in log.splitlines() if "Ignoring " in ln)
        for name in ("WEB_PORT", "APP_DATADIR", "BROKER_SESSION_TIMEOUT", "F_WEB_PORT",
                     "FAUST_DATADIR", "NODE_CANONICAL_URL"):
            assert name in ignored, (name, ignored)
        assert str(faust_port) not in ignored, "names only, never values"
    finally:
        w.stop()


# --- item 8: sentences instead of tracebacks ---------------------------------------------


def test_bad_durations_and_time_zones_are_one_sentence(cluster: Cluster) -> None:
    line = one_sentence(watchfloor("simulate", "run", "--duration", "tenminutes",
                                   env=cluster.env()))
    assert "tenminutes" in line and "duration" in line
    line = one_sentence(watchfloor("worker", env={**cluster.env(),
                                                  "WATCHFLOOR_TIMEZONE": "Mars/Olympus"}))
    assert "WATCHFLOOR_TIMEZONE" in line


def test_unusable_tls_files_are_one_sentence(
    cluster: Cluster, kafka_sasl: dict[str, str], tmp_path: Path
) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("this is not a certificate\n")
    missing = tmp_path / "missing.pem"
    sasl = {
        **cluster.env(),
        "WATCHFLOOR_BOOTSTRAP_SERVERS": kafka_sasl["bootstrap"],
        "WATCHFLOOR_SECURITY_PROTOCOL": "SASL_SSL",
        "WATCHFLOOR_SASL_MECHANISM": "SCRAM-SHA-512",
        "WATCHFLOOR_SASL_USERNAME": kafka_sasl["username"],
        "WATCHFLOOR_SASL_PASSWORD": kafka_sasl["password"],
        "WATCHFLOOR_SSL_CAFILE": kafka_sasl["cafile"],
    }
    cases = [
        ({"WATCHFLOOR_SSL_CAFILE": str(missing)}, "WATCHFLOOR_SSL_CAFILE", "does not exist"),
        ({"WATCHFLOOR_SSL_CAFILE": str(not_pem)}, "WATCHFLOOR_SSL_CAFILE", "not a PEM file"),
        ({"WATCHFLOOR_SSL_CERTFILE": str(missing)}, "WATCHFLOOR_SSL_CERTFILE", "does not exist"),
        ({"WATCHFLOOR_SSL_CERTFILE": str(not_pem)}, "WATCHFLOOR_SSL_CERTFILE", "not a PEM"),
        ({"WATCHFLOOR_SSL_CERTFILE": kafka_sasl["cafile"],
          "WATCHFLOOR_SSL_KEYFILE": str(missing)}, "WATCHFLOOR_SSL_KEYFILE", "does not exist"),
    ]
    for extra, variable, words in cases:
        for argv in (("topics", "create"), ("worker",)):
            line = one_sentence(watchfloor(*argv, env={**sasl, **extra}))
            assert variable in line and words in line, (argv, extra, line)
    # SASL_SSL at the plain-text port: the reason is said, not left empty.
    line = one_sentence(watchfloor("topics", "create",
                                   env={**sasl, "WATCHFLOOR_BOOTSTRAP_SERVERS": cluster.bootstrap}))
    assert "TLS" in line and f"{cluster.bootstrap}: " in line, line
    assert f"{cluster.bootstrap}: ;" not in line and f"{cluster.bootstrap}: )" not in line


def test_periods_the_calendar_cannot_hold_are_400(cluster: Cluster, workers) -> None:
    w = workers()
    w.wait_ready()
    for query in ("period=9999-W52", "period=0001-01-01", "period=9999-12-31",
                  "period=0001-W01", "from=0001-01-01&to=2026-01-01",
                  "from=2026-01-01&to=9999-12-31"):
        status, body = w.get(f"/api/v1/districts/jinshui?{query}")
        assert status == 400, (query, status, body)
        assert isinstance(body, dict) and body["error"].endswith("."), body
    assert "Error handling request" not in w.log_path.read_text(errors="replace")


# --- also: the start-up line, one namespace, simulator files --------------------------------


def test_the_start_up_line_is_logged_with_secrets_masked(cluster: Cluster, workers) -> None:
    secret = '{"tokens": []}'
    w = workers(WATCHFLOOR_INGEST_TOKENS=secret)
    w.wait_ready()
    log = w.log_path.read_text(errors="replace")
    line = next((ln for ln in log.splitlines() if "Starting worker with Settings(" in ln), None)
    assert line is not None, "security.md promises this line"
    assert "ingest_tokens='********'" in line and secret not in line
    assert f"web_port={w.port}" in line


def test_one_namespace_names_the_app_id_and_every_topic(
    kafka_bootstrap: str, tmp_path: Path, unique: str
) -> None:
    ns = f"ns-{unique}"
    cluster = Cluster(kafka_bootstrap)
    w = WorkerProcess(cluster, tmp_path, "w1", WATCHFLOOR_NAMESPACE=ns)
    for name in ("APP_ID", "TOPIC_INCIDENTS", "TOPIC_DISPUTES", "TOPIC_PATROLS",
                 "TOPIC_DEADLETTER"):
        w.env.pop(f"WATCHFLOOR_{name}")
    w.start()
    try:
        w.wait_ready()
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        doc = event("case_filed", "erqi", "ns-1", datetime.now(TZ),
                    {"category": "theft", "severity": "minor"})
        producer.send(f"{ns}.incidents", key=b"erqi", value=orjson.dumps(doc)).get(30)
        producer.send(f"{ns}.incidents", key=b"erqi", value=b"{broken").get(30)
        producer.close()
        wait_for(lambda: sample(w.metrics(), "watchfloor_cases_filed_total", district="erqi"),
                 what="counted from the namespace's topic")
        consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
        topics = consumer.topics()
        consumer.close()
        assert {f"{ns}.incidents", f"{ns}.disputes", f"{ns}.patrols", f"{ns}.deadletter",
                f"{ns}-state-changelog"} <= topics
        assert f"{ns}.deadletter" in topics
        log = w.log_path.read_text(errors="replace")
        assert f"app_id='{ns}'" in log and f"topic_patrols='{ns}.patrols'" in log
    finally:
        w.stop()


def test_publish_takes_what_simulate_writes(cluster: Cluster, tmp_path: Path) -> None:
    records = tmp_path / "sim.jsonl"
    done = watchfloor("simulate", "run", "--output", str(records), "--duration", "2m",
                      "--backfill", "2h", "--rate", "5", "--seed", "3", env=cluster.env())
    assert done.returncode == 0, done.stderr
    summary = json.loads((done.stdout or done.stderr).strip().splitlines()[-1])
    # publish puts each event on its type's topic, so a record meant for the wrong topic
    # arrives on the right one: every other malformed record is refused before Kafka.
    malformed = sum(n for reason, n in summary["by_reason"].items()
                    if reason in MALFORMED_REASONS and reason != "wrong_topic")
    done = watchfloor("publish", str(records), "--json", env=cluster.env())
    report = json.loads(done.stdout)
    assert report["simulator_lines"] == summary["total"]
    assert report["sent"] == summary["total"] - malformed, report["rejected"][:3]
    assert report["rejected_count"] == malformed
    assert done.returncode == (1 if malformed else 0)
    landed = sum(len(cluster.read_all(r)) for r in ("incidents", "disputes", "patrols"))
    assert landed == report["sent"]


def test_dlq_list_shows_times_in_the_city_time_zone(cluster: Cluster, workers) -> None:
    w = workers()
    w.wait_ready()
    cluster.publish([("incidents", b"jinshui", b"{not json")])
    wait_for(lambda: cluster.read_all("deadletter"), what="a dead letter")
    done = watchfloor("dlq", "list", env=cluster.env())
    assert done.returncode == 0, done.stderr
    latest = [ln for ln in done.stdout.splitlines() if "malformed_json" in ln and "/" in ln]
    assert latest and "+08:00" in latest[-1], done.stdout
    stamp = latest[-1].split()[0]
    when = datetime.fromisoformat(stamp)
    assert abs(when - datetime.now(TZ)) < timedelta(minutes=5)

"""``watchfloor demo``: local broker, topics, a worker, Prometheus and the simulator, in one go."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .bulletin import due, parse_cutoff
from .errors import BrokerError
from .kafka import ensure_topics
from .localbroker import kafkactl, local_broker_port, missing_tools
from .reference import load_reference
from .settings import PROJECT_ROOT, Settings

PROMETHEUS_PORT = 9090


def _answers(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def ensure_broker(settings: Settings) -> bool:
    """Start the local broker when the configured one is local and silent; True if started."""
    port = local_broker_port(settings)
    if port is None:
        return False  # an existing cluster: the user runs it
    if _answers("127.0.0.1", port):
        return False
    problem = missing_tools()
    if problem:
        raise BrokerError(problem)
    print(f"Starting the local Apache Kafka broker on 127.0.0.1:{port} "
          "(the first start downloads its jars from Maven Central)...", flush=True)
    kafkactl("start", port)
    return True


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 (the child keeps it)
    env = dict(os.environ)
    # The demo cuts the first bulletin itself once the backfill is counted; the worker's
    # schedule waits longer, so it never freezes a half-read history.
    env.setdefault("WATCHFLOOR_BULLETIN_START_DELAY_SECONDS", "600")
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
    )


def _get_json(url: str, method: str = "GET") -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=b"" if method == "POST" else None, method=method)
    try:
        with urllib.request.urlopen(req, timeout=150) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")
    except (OSError, ValueError):
        return 0, {}


def cut_first_bulletin(settings: Settings, started: float) -> str | None:
    """Once every district has counted the backfill (its watermark reached the demo's
    start), publish the latest due daily bulletin; return a line for the console."""
    url = settings.web_url.rstrip("/")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status, body = _get_json(f"{url}/api/v1/districts")
        marks = [d.get("watermark") for d in body.get("districts", [])] if status == 200 else []
        if marks and all(
            m and datetime.fromisoformat(m).timestamp() >= started - 120 for m in marks
        ):
            break
        time.sleep(2)
    tz = ZoneInfo(settings.timezone) if settings.timezone else load_reference(
        settings.reference_file).timezone
    label = next(p.label for kind, p in due(datetime.now(UTC), tz,
                                            parse_cutoff(settings.bulletin_cutoff))
                 if kind == "daily")
    status, body = _get_json(f"{url}/api/v1/bulletins/{label}", method="POST")
    if status in (200, 201):
        top = ", ".join(f"{r['rank']}. {r['district']}" for r in body["ranking"][:3])
        return f"Bulletin {label} published ({top}, ...): {settings.centre_url}#/bulletin/{label}"
    return f"Bulletin {label} not cut yet ({status}: {body.get('error', '')})."


def start_prometheus(
    settings: Settings, workdir: Path, port: int = PROMETHEUS_PORT
) -> subprocess.Popen[bytes] | None:
    """A real Prometheus scraping the worker with the project's rules, if one is installed."""
    binary = shutil.which("prometheus")
    if binary is None or _answers("127.0.0.1", port):
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    rules = PROJECT_ROOT / "deploy" / "prometheus" / "rules"
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n"
        f"rule_files:\n  - {rules}/*.yml\n"
        "scrape_configs:\n  - job_name: watchfloor\n    static_configs:\n"
        f"      - targets: ['{settings.web_host}:{settings.web_port}']\n"
    )
    log = open(workdir / "prometheus.log", "ab")  # noqa: SIM115
    return subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    started_broker = ensure_broker(settings)
    created = ensure_topics(settings)
    if created:
        print(f"Created topics: {', '.join(created)}")
    workdir = Path(settings.data_dir) / "demo"
    worker = start_worker(settings, workdir / "worker.log")
    prometheus = (
        None
        if args.no_prometheus
        else start_prometheus(settings, workdir / "prometheus", args.prometheus_port)
    )
    url = settings.web_url
    try:
        deadline = time.monotonic() + 120
        while not _ready(url):
            if worker.poll() is not None:
                print(f"The worker stopped; see {workdir / 'worker.log'}", file=sys.stderr)
                return 1
            if time.monotonic() > deadline:
                print(f"The worker is not ready after 2 minutes; see {workdir / 'worker.log'}",
                      file=sys.stderr)
                return 1
            time.sleep(0.5)
        print(f"""
Watchfloor demo is running. Look at:
  district figures   {url}/metrics   (e.g. watchfloor_rolling_cases_filed)
  command centre     {settings.centre_url}   (ranking, overdue list, bulletins)
  query API          {url}/api/v1/districts   and   {url}/api/v1/districts/jinshui
  readiness          {url}/ready""")
        if prometheus is not None:
            drill = ("from 3 minutes in, a drill's major hazards go overdue and page"
                     if not args.no_drill else "no drill: the normal city raises no alert")
            print(f"  Prometheus         http://127.0.0.1:{args.prometheus_port}/alerts ({drill})")
        print(f"  worker log         {workdir / 'worker.log'}")
        print("The simulator publishes recent history now, then live events. Ctrl-C stops.\n",
              flush=True)
        return asyncio.run(_simulate(settings, args, started=time.time()))
    finally:
        _terminate(worker)
        if prometheus is not None:
            _terminate(prometheus)
        if started_broker and not args.keep_broker:
            port = local_broker_port(settings)
            if port is not None:
                with contextlib.suppress(BrokerError):
                    kafkactl("stop", port)


async def _simulate(settings: Settings, args: argparse.Namespace, started: float) -> int:
    from .simulator.live import DEMO_DRILL_AFTER, DEMO_OVERDUE_DRILL, run_demo_stream

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def first_bulletin() -> None:
        line = await asyncio.to_thread(cut_first_bulletin, settings, started)
        if line:
            print(line, flush=True)

    bulletin = asyncio.create_task(first_bulletin())
    summary = await run_demo_stream(
        settings,
        rate=args.rate,
        seed=args.seed,
        stop_event=stop,
        overdue_drill=0 if args.no_drill else DEMO_OVERDUE_DRILL,
        drill_after=DEMO_DRILL_AFTER,
    )
    bulletin.cancel()
    print(f"\nSimulator stopped: {summary}")
    return 0


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def register_cli(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "demo", help="local broker + worker + Prometheus + simulator, ready in a minute"
    )
    p.add_argument(
        "--rate",
        type=float,
        default=0.2,
        help="records/s of the city, history and live alike (0.2); above about 0.23 the "
        "30-day history is capped and the live city is busier than its past: a surge",
    )
    p.add_argument("--seed", type=int, default=7, help="simulator seed (7)")
    p.add_argument(
        "--no-drill",
        action="store_true",
        help="the normal city only: no hazards made to go overdue in the first minutes",
    )
    p.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus")
    p.add_argument(
        "--prometheus-port",
        type=int,
        default=PROMETHEUS_PORT,
        help=f"where the demo's Prometheus listens ({PROMETHEUS_PORT})",
    )
    p.add_argument("--keep-broker", action="store_true",
                   help="leave the local broker running afterwards")
    p.set_defaults(func=_demo)

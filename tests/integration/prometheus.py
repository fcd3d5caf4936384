"""A real Prometheus for tests: temporary config and storage, free loopback port, query helpers."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = PROJECT_ROOT / "deploy" / "prometheus" / "rules"
DASHBOARDS_DIR = PROJECT_ROOT / "deploy" / "grafana" / "dashboards"

T = TypeVar("T")


class PrometheusHarnessError(Exception):
    """The test Prometheus did not start, answer or reach the awaited state."""


def prometheus_binary() -> str | None:
    """The ``prometheus`` binary: ``$WATCHFLOOR_TEST_PROMETHEUS`` or the one on PATH."""
    return os.environ.get("WATCHFLOOR_TEST_PROMETHEUS") or shutil.which("prometheus")


def promtool_binary() -> str | None:
    """The ``promtool`` binary: ``$WATCHFLOOR_TEST_PROMTOOL`` or the one on PATH."""
    return os.environ.get("WATCHFLOOR_TEST_PROMTOOL") or shutil.which("promtool")


def project_rule_files() -> list[Path]:
    """The project's rule files, the ones deploy/prometheus/prometheus.yml loads."""
    return sorted(RULES_DIR.glob("*.yml"))


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the caller retries on a race)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ScrapeJob:
    """One scrape job of the temporary configuration."""

    name: str
    targets: Sequence[str]
    metrics_path: str = "/metrics"
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """One series of an instant query's answer."""

    labels: dict[str, str]
    value: float


class PrometheusServer:
    """A ``prometheus`` process of its own, for one test module or session.

    It scrapes the given targets as job ``job`` (``watchfloor`` by default, the job the
    alert rules key on) every ``scrape_interval``, loads ``rule_files`` (the project's by
    default) and evaluates them every ``evaluation_interval``. ``for_override`` rewrites
    every alert's ``for:`` (e.g. ``"0s"``) in a temporary copy of the rules, so that an
    end-to-end test sees an alert fire without waiting the production duration; the
    expressions are untouched. Storage lives in a temporary directory removed on stop.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with PrometheusServer(["127.0.0.1:6066", "127.0.0.1:6067"], for_override="0s") as prom:
            prom.wait_for_targets_up()
            alert = prom.wait_for_alert(
                "WatchfloorOverdueMajorHazard", labels={"district": "jinshui"}
            )
            for q in dashboard_queries(DASHBOARDS_DIR / "command-centre.json"):
                prom.query(grafana_expr(q.expr, {"district": ".*", "window": "24h"}))

    ``WATCHFLOOR_TEST_KEEP_PROMETHEUS=1`` keeps the temporary directory (config, rules,
    log) after stop, for a post-mortem.
    """

    def __init__(
        self,
        targets: Sequence[str] = (),
        *,
        job: str = "watchfloor",
        jobs: Sequence[ScrapeJob] = (),
        scrape_self: bool = False,
        rule_files: Sequence[Path] | None = None,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        for_override: str | None = None,
        external_labels: Mapping[str, str] | None = None,
        binary: str | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self._jobs: list[ScrapeJob] = []
        if targets:
            self._jobs.append(ScrapeJob(job, list(targets)))
        self._jobs.extend(jobs)
        self._scrape_self = scrape_self
        self._rule_files = list(project_rule_files() if rule_files is None else rule_files)
        self._scrape_interval = scrape_interval
        self._evaluation_interval = evaluation_interval
        self._for_override = for_override
        self._external_labels = dict(external_labels or {})
        self._binary = binary or prometheus_binary()
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self.port = 0

    # Life cycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise PrometheusHarnessError("The test Prometheus has not been started.")
        return self._workdir

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._binary is None:
            raise PrometheusHarnessError(
                "No prometheus binary: install it (apt-get install prometheus) or set "
                "WATCHFLOOR_TEST_PROMETHEUS."
            )
        self._workdir = Path(tempfile.mkdtemp(prefix="watchfloor-prometheus-"))
        rule_files = self._prepare_rules()
        # A port found free can be taken before Prometheus binds it; try a few.
        last_error: PrometheusHarnessError | None = None
        for _ in range(3):
            self.port = free_port()
            config = self.workdir / "prometheus.yml"
            config.write_text(
                yaml.safe_dump(self._config(rule_files), sort_keys=False), encoding="utf-8"
            )
            try:
                self._launch(config)
                return
            except PrometheusHarnessError as exc:
                last_error = exc
                self._terminate()
        self._cleanup()
        assert last_error is not None
        raise last_error

    def stop(self) -> None:
        self._terminate()
        self._cleanup()

    def _launch(self, config: Path) -> None:
        assert self._binary is not None
        log = self.log_path.open("ab")
        # Its own process group, so that stopping it never reaches the test runner.
        self._process = subprocess.Popen(
            [
                self._binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d",
                "--log.level=info",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PrometheusHarnessError(
                    f"prometheus exited with code {self._process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise PrometheusHarnessError(
            f"prometheus was not ready within {self._startup_timeout:.0f} s:\n{self.log_tail()}"
        )

    def _terminate(self) -> None:
        proc, self._process = self._process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def _cleanup(self) -> None:
        if self._workdir is not None and not os.environ.get("WATCHFLOOR_TEST_KEEP_PROMETHEUS"):
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(
                self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return "(no log)"

    # Configuration ------------------------------------------------------------------

    def _prepare_rules(self) -> list[Path]:
        if self._for_override is None:
            return self._rule_files
        copies = self.workdir / "rules"
        copies.mkdir()
        out = []
        for path in self._rule_files:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            for group in doc.get("groups", []):
                for rule in group.get("rules", []):
                    if "alert" in rule:
                        rule["for"] = self._for_override
            target = copies / path.name
            target.write_text(
                yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8"
            )
            out.append(target)
        return out

    def _config(self, rule_files: Sequence[Path]) -> dict[str, Any]:
        scrape_configs: list[dict[str, Any]] = []
        for job in self._jobs:
            static: dict[str, Any] = {"targets": list(job.targets)}
            if job.labels:
                static["labels"] = dict(job.labels)
            scrape_configs.append(
                {
                    "job_name": job.name,
                    "metrics_path": job.metrics_path,
                    "static_configs": [static],
                }
            )
        if self._scrape_self:
            scrape_configs.append(
                {
                    "job_name": "prometheus",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.port}"]}],
                }
            )
        global_: dict[str, Any] = {
            "scrape_interval": self._scrape_interval,
            "scrape_timeout": self._scrape_interval,
            "evaluation_interval": self._evaluation_interval,
        }
        if self._external_labels:
            global_["external_labels"] = self._external_labels
        return {
            "global": global_,
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": scrape_configs,
        }

    # HTTP API -----------------------------------------------------------------------

    def api(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; raise on an error answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"{self.url}/api/v1/{path}{query}"
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            # Prometheus answers a bad query with 400 and a JSON error: show it.
            try:
                body = json.load(exc)
            except ValueError:
                raise PrometheusHarnessError(f"GET {url}: HTTP {exc.code}") from None
        if body.get("status") != "success":
            raise PrometheusHarnessError(f"GET {url}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """Instant query; a scalar or string answer comes back as one label-less sample."""
        params = {"query": expr}
        if at is not None:
            params["time"] = repr(at)
        data = self.api("query", params)
        if data["resultType"] in ("scalar", "string"):
            return [Sample({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PrometheusHarnessError(
                f"{expr!r} is a {data['resultType']}, not an instant vector."
            )
        return [Sample(dict(r["metric"]), float(r["value"][1])) for r in data["result"]]

    def query_range(
        self, expr: str, start: float, end: float, step: float
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        data = self.api(
            "query_range",
            {"query": expr, "start": repr(start), "end": repr(end), "step": repr(step)},
        )
        return [
            (dict(r["metric"]), [(float(t), float(v)) for t, v in r["values"]])
            for r in data["result"]
        ]

    def alerts(self, state: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """Active alerts (``state`` ``pending`` or ``firing``), each with labels and annotations."""
        found = self.api("alerts")["alerts"]
        return [
            a
            for a in found
            if (state is None or a["state"] == state)
            and (name is None or a["labels"].get("alertname") == name)
        ]

    def rules(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Rule groups as loaded, with every rule's ``health`` and ``lastError``."""
        params = {"type": kind} if kind else None
        groups: list[dict[str, Any]] = self.api("rules", params)["groups"]
        return groups

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.api("targets")["activeTargets"]
        return active

    def reload(self) -> None:
        """Re-read the configuration and rules (POST /-/reload)."""
        req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=30):
            pass

    # Waiting ------------------------------------------------------------------------

    def wait_until(
        self,
        probe: Callable[[], T | None],
        *,
        timeout: float = 60.0,
        interval: float = 0.5,
        what: str = "the condition",
    ) -> T:
        """Call ``probe`` until it returns something truthy; return that, or fail with the log."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            try:
                result = probe()
                if result:
                    return result
            except PrometheusHarnessError as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                hint = f" (last error: {last_error})" if last_error else ""
                raise PrometheusHarnessError(
                    f"Waited {timeout:.0f} s for {what}{hint}.\nPrometheus log:\n{self.log_tail()}"
                )
            time.sleep(interval)

    def wait_for_targets_up(self, *, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait until every configured target has been scraped successfully."""

        def probe() -> list[dict[str, Any]] | None:
            active = self.targets()
            expected = sum(len(j.targets) for j in self._jobs) + int(self._scrape_self)
            if len(active) >= expected and all(t["health"] == "up" for t in active):
                return active
            return None

        return self.wait_until(probe, timeout=timeout, what="every target to be up")

    def wait_for_series(self, expr: str, *, timeout: float = 60.0) -> list[Sample]:
        """Wait until ``expr`` returns at least one series."""
        return self.wait_until(
            lambda: self.query(expr), timeout=timeout, what=f"a series from {expr!r}"
        )

    def wait_for_alert(
        self,
        name: str,
        *,
        state: str = "firing",
        labels: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Wait until alert ``name`` is in ``state`` with at least ``labels``; return it."""
        wanted = dict(labels or {})

        def probe() -> dict[str, Any] | None:
            for alert in self.alerts(state=state, name=name):
                if all(alert["labels"].get(k) == v for k, v in wanted.items()):
                    return alert
            return None

        return self.wait_until(probe, timeout=timeout, what=f"{name} {wanted} to be {state}")

    def wait_for_no_alert(
        self, name: str, *, labels: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> None:
        """Wait until alert ``name`` (with at least ``labels``) is neither pending nor firing."""
        wanted = dict(labels or {})

        def probe() -> bool:
            return not any(
                all(a["labels"].get(k) == v for k, v in wanted.items())
                for a in self.alerts(name=name)
            )

        self.wait_until(probe, timeout=timeout, what=f"{name} {wanted} to resolve")

    def wait_for_rule_evaluation(self, *, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait until every loaded rule has been evaluated at least once; return the groups."""

        def probe() -> list[dict[str, Any]] | None:
            groups = self.rules()
            evaluated = all(r["health"] != "unknown" for g in groups for r in g["rules"])
            return groups if groups and evaluated else None

        return self.wait_until(probe, timeout=timeout, what="every rule to be evaluated")


# Grafana dashboards -----------------------------------------------------------------

GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def grafana_expr(expr: str, variables: Mapping[str, str]) -> str:
    """Substitute Grafana's variables (``$x``, ``${x}``, ``[[x]]`` and the built-ins) in ``expr``.

    ``variables`` maps a dashboard variable to the text Grafana would put in its place,
    e.g. ``{"district": "jinshui|erqi", "window": "24h"}`` (a multi-value variable inside
    ``=~`` becomes an alternation; ``.*`` stands for "All").
    """
    values = {**GRAFANA_BUILTINS, **variables}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in values:
            raise PrometheusHarnessError(f"No value for Grafana variable ${name} in {expr!r}.")
        return values[name]

    return _VARIABLE.sub(replace, expr)


@dataclass(frozen=True)
class PanelQuery:
    """One Prometheus query of one dashboard panel."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str
    instant: bool


def dashboard_queries(path: Path) -> Iterator[PanelQuery]:
    """Every Prometheus target of every panel (rows' nested panels included) of a dashboard."""
    doc = json.loads(path.read_text(encoding="utf-8"))

    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    for panel in walk(doc.get("panels", [])):
        for target in panel.get("targets", []):
            yield PanelQuery(
                dashboard=doc.get("uid", path.stem),
                panel=panel.get("title", ""),
                ref_id=target.get("refId", ""),
                expr=target.get("expr", ""),
                instant=bool(target.get("instant", False)),
            )

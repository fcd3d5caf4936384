"""Real Prometheus, real worker: an overdue major hazard goes pending, fires and resolves."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import need

from .harness import Cluster, WorkerProcess, event, scripted_stream
from .prometheus import PrometheusServer, prometheus_binary

pytestmark = [pytest.mark.broker, pytest.mark.prometheus, pytest.mark.slow]

TZ = ZoneInfo("Asia/Shanghai")
DISTRICT = "jinshui"
CONTROL = "erqi"  # a major hazard too, due in three days: it must stay quiet
BACKGROUND = ["jinshui", "erqi", "zhongyuan", "guancheng"]
MAJOR = "WatchfloorOverdueMajorHazard"
RISING = "WatchfloorOverdueHazardsRising"
# The production `for:` (5 m and 30 m) shortened, but long enough against the 1 s
# evaluation interval that the alert is seen pending for several polls before it fires.
FOR_SECONDS = 8
# Time for the worker to count the hazards and for Prometheus to record "0 overdue" before
# the deadline passes; the worker needs well under 2 s for this on a laptop.
DEADLINE_AHEAD = 12.0
POLL = 0.2


@dataclass
class Seen:
    """What polling /api/v1/alerts saw of one alert: when each state was first seen."""

    first: dict[str, float] = field(default_factory=dict)  # state -> wall time first seen
    alert: dict[str, dict[str, Any]] = field(default_factory=dict)  # state -> the alert

    def note(self, alert: dict[str, Any], at: float) -> None:
        self.first.setdefault(alert["state"], at)
        self.alert.setdefault(alert["state"], alert)


def rfc3339(ts: str) -> float:
    """Prometheus' activeAt (nanosecond RFC 3339, 'Z') as Unix seconds."""
    head, _, frac = ts.rstrip("Z").partition(".")
    base = datetime.fromisoformat(head + "+00:00").timestamp()
    return base + (float(f"0.{frac}") if frac else 0.0)


@pytest.fixture
def worker(cluster: Cluster, workers: Callable[..., WorkerProcess]) -> WorkerProcess:
    # Checked before the worker starts: without Prometheus there is nothing to test.
    need(prometheus_binary() is not None, "no prometheus binary (apt-get install prometheus)")
    w = workers()
    w.wait_ready()
    return w


@pytest.fixture
def prometheus(worker: WorkerProcess) -> Iterator[PrometheusServer]:
    with PrometheusServer(
        [f"127.0.0.1:{worker.port}"],
        scrape_interval="1s",
        evaluation_interval="1s",
        for_override=f"{FOR_SECONDS}s",
    ) as prom:
        prom.wait_for_targets_up(timeout=30)
        yield prom


def one(prom: PrometheusServer, expr: str) -> float | None:
    samples = prom.query(expr)
    return samples[0].value if len(samples) == 1 else None


def test_overdue_major_hazard_goes_pending_then_firing_and_resolves_on_rectification(
    cluster: Cluster, worker: WorkerProcess, prometheus: PrometheusServer
) -> None:
    prom = prometheus
    t_start = time.time()
    now = datetime.now(TZ)
    # Ordinary traffic first (cases, disputes, patrols, hazards due in three days), so
    # that the alert comes out of a busy district, not an empty one.
    background, _ = scripted_stream(BACKGROUND, 60, now - timedelta(minutes=1), seed=5)
    deadline = now + timedelta(seconds=DEADLINE_AHEAD)

    def found(subject: str, district: str, major: bool, due: datetime) -> dict[str, Any]:
        return event(
            "hazard_found",
            district,
            subject,
            now,
            {
                "category": "gas",
                "major": major,
                "deadline": due.isoformat(),
                "responsible_unit": f"{district}-gas-company",
                "found_by": "patrol",
            },
        )

    watched = [
        found("e2e-major", DISTRICT, True, deadline),
        found("e2e-minor-1", DISTRICT, False, deadline),
        found("e2e-minor-2", DISTRICT, False, deadline),
        found("e2e-control", CONTROL, True, now + timedelta(days=3)),
    ]
    cluster.publish(background + watched)
    instance = f"127.0.0.1:{worker.port}"

    # Before the deadline: Prometheus holds the district with its open hazards and none
    # overdue, so the rise is measured from 0 and nothing is pending yet.
    def counted_not_overdue() -> bool:
        opened = one(
            prom,
            f'watchfloor_open_hazards_by_category{{district="{DISTRICT}",'
            f'category="gas",instance="{instance}"}}',
        )
        overdue = one(prom, f'district:watchfloor_overdue_hazards:max{{district="{DISTRICT}"}}')
        return opened == 3 and overdue == 0

    prom.wait_until(
        counted_not_overdue,
        timeout=DEADLINE_AHEAD,
        interval=0.2,
        what="the three gas hazards counted, none overdue, before the deadline",
    )
    assert time.time() < deadline.timestamp(), "the deadline passed before the test could see 0"
    assert not prom.alerts(name=MAJOR) and not prom.alerts(name=RISING)

    # No further event: the worker notices the deadline on its own (its 1 s overdue timer;
    # a scrape moves due hazards too, so this does not tell the two apart).
    seen = {MAJOR: Seen(), RISING: Seen()}
    limit = time.monotonic() + DEADLINE_AHEAD + FOR_SECONDS + 40
    while time.monotonic() < limit:
        at = time.time()
        for alert in prom.alerts():
            name = alert["labels"]["alertname"]
            if name in seen:
                assert alert["labels"]["district"] == DISTRICT, alert
                seen[name].note(alert, at)
        if all("firing" in s.first for s in seen.values()):
            break
        time.sleep(POLL)
    for name, s in seen.items():
        assert "firing" in s.first, f"{name} never fired; saw {s.first}\n{prom.log_tail()}"
        assert "pending" in s.first, f"{name} fired without being seen pending: {s.first}"
        assert s.first["pending"] < s.first["firing"]
        pending, firing = s.alert["pending"], s.alert["firing"]
        # The same alert instance went through both states: activeAt does not move.
        assert pending["activeAt"] == firing["activeAt"]
        active_at = rfc3339(firing["activeAt"])
        assert active_at >= deadline.timestamp(), "the alert went active before the deadline"
        assert s.first["firing"] >= active_at + FOR_SECONDS - 0.05

    major = seen[MAJOR].alert["firing"]
    assert major["labels"] == {
        "alertname": MAJOR,
        "district": DISTRICT,
        "severity": "critical",
        "team": "operators",
    }
    assert float(major["value"]) == 1
    assert DISTRICT in major["annotations"]["summary"]
    description = " ".join(major["annotations"]["description"].split())
    assert description.startswith("1 major hazard(s)"), description
    assert f"in {DISTRICT} are past their rectification deadline" in description
    assert major["annotations"]["runbook_url"].endswith("/docs/runbooks/overdue-major-hazard.md")

    rising = seen[RISING].alert["firing"]
    assert rising["labels"] == {
        "alertname": RISING,
        "district": DISTRICT,
        "severity": "warning",
        "team": "operators",
    }
    assert float(rising["value"]) == 3
    text = " ".join(rising["annotations"]["description"].split())
    assert re.search(rf"^{DISTRICT} has 3 more overdue hazards .* \(3 overdue now\)\.$", text), text

    # The figures behind it came from the worker's own series, through the recording rules.
    assert (
        one(
            prom,
            f'watchfloor_overdue_major_hazards{{district="{DISTRICT}",'
            f'instance="{instance}",job="watchfloor"}}',
        )
        == 1
    )
    assert one(prom, f'watchfloor_overdue_major_hazards{{district="{CONTROL}"}}') == 0
    assert one(prom, f'district:watchfloor_overdue_hazards:max{{district="{DISTRICT}"}}') == 3

    # Prometheus' own record of the alert agrees: pending samples, then firing ones (the
    # ALERTS samples are written just after the evaluation that the API already shows).
    def history() -> dict[str, list[float]] | None:
        found = prom.query_range(
            f'ALERTS{{alertname="{MAJOR}",district="{DISTRICT}"}}', t_start, time.time(), 0.5
        )
        states = {labels["alertstate"]: [t for t, _ in points] for labels, points in found}
        return states if "firing" in states else None

    states = prom.wait_until(history, timeout=10, interval=0.5, what="ALERTS to record firing")
    assert set(states) == {"pending", "firing"}, states
    assert max(states["pending"]) < min(states["firing"])
    assert min(states["firing"]) - min(states["pending"]) >= FOR_SECONDS - 1

    # Firing holds with no further event, until the major hazard is rectified.
    assert prom.alerts(state="firing", name=MAJOR)
    rectified_at = time.time()
    cluster.publish(
        [
            event(
                "hazard_rectified",
                DISTRICT,
                "e2e-major",
                datetime.now(TZ),
                {"responsible_unit": f"{DISTRICT}-gas-company"},
            )
        ]
    )
    prom.wait_for_no_alert(MAJOR, labels={"district": DISTRICT}, timeout=30)
    # Two overdue hazards remain: 2 above the day's low is under the rising threshold of 3.
    prom.wait_for_no_alert(RISING, labels={"district": DISTRICT}, timeout=30)
    resolved_after = time.time() - rectified_at
    assert one(prom, f'district:watchfloor_overdue_major_hazards:max{{district="{DISTRICT}"}}') == 0
    assert one(prom, f'district:watchfloor_overdue_hazards:max{{district="{DISTRICT}"}}') == 2
    assert not prom.alerts(name=MAJOR) and not prom.alerts(name=RISING)
    assert resolved_after < 30

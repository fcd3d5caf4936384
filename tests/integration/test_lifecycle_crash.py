"""Lifecycles survive killed workers, on real Kafka, against a truth computed from the docs.

About 3,000 records for six districts over 29 days of event time: repeats, retries of
earlier steps after later ones, out-of-order and late events, steps before their opening,
look-back visits, hazards falling due while the test watches, one district whose patrols
topic runs days behind its incidents, and one record of every rejection reason Kafka can
carry. Half go through ``watchfloor publish`` (JSON lines), half through kcat. The worker
is killed with SIGKILL three times during publication; a second run publishes the same
records to a worker that is never killed. Every figure of ``/metrics`` and the API, and
the fate of every record (counted, or the dead letter's reason), is compared with
``lifecycle_truth``, a model written from docs/design.md that never calls the engine.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.conftest import need

from .harness import ROOT, Cluster, WorkerProcess, sample, wait_for
from .lifecycle_truth import (
    MEASURES,
    METRIC_MEASURES,
    RATES,
    TOTALS,
    WINDOWS,
    Model,
    comparison_edges,
    comparisons,
    district_partition,
    ts,
)

TZ = ZoneInfo("Asia/Shanghai")
UTC = ZoneInfo("UTC")
DISTRICTS = ["zhongyuan", "jinshui", "erqi", "gaoxin", "huiji", "guancheng"]
REFERENCE = [d["code"] for d in json.loads(
    (ROOT / "seeds" / "reference" / "city.json").read_text())["districts"]]
LAGGING = "huiji"  # its patrols topic runs days behind its incidents topic
LAG = 3.5 * 86400
SPAN = 29 * 86400
# Every figure is read within this long after the records' "now" (zones below).
HORIZON = 30 * 60
PARTITIONS = 4
ROLES = ("incidents", "disputes", "patrols")
KINDS = {
    "case_filed": ("incident", "incidents"), "case_cleared": ("incident", "incidents"),
    "reported": ("dispute", "disputes"), "mediation_started": ("dispute", "disputes"),
    "resolved": ("dispute", "disputes"), "escalated": ("dispute", "disputes"),
    "completed": ("patrol", "patrols"), "found": ("hazard", "patrols"),
    "rectified": ("hazard", "patrols"), "verified": ("hazard", "patrols"),
}
HAZARD_CATEGORIES = ["fire", "road_traffic", "hazardous_chemicals", "construction",
                     "special_equipment", "gas", "mines_tailings", "school", "food_safety",
                     "road_collapse", "dangerous_bridge", "water_transport", "fireworks",
                     "other"]
INCIDENT_CATEGORIES = ["robbery", "snatching", "theft", "fight", "traffic_accident", "fire",
                       "work_safety_accident", "campus", "other"]
DISPUTE_CATEGORIES = ["enterprise_restructuring", "social_security", "rural_stability",
                      "demolition_compensation", "environmental_pollution", "unpaid_wages",
                      "neighbourhood", "school", "other"]
BATCHES = 10
H = 3600.0
D = 86400.0


@dataclass
class Rec:
    """One record to publish, with where it sits in the publication order."""

    role: str
    key: bytes | None
    value: bytes | None
    pkey: float  # publication order
    group: int  # its lifecycle; dropped together when the model finds it ambiguous
    tag: str
    partition: int | None = None  # forced (wrong_partition)
    fault: str | None = None  # a content fault: the reason the worker must give
    kcat: bool = False  # must go through kcat (faults, forced partitions)

    @property
    def target(self) -> int:
        if self.partition is not None:
            return self.partition
        assert self.key is not None
        return district_partition(self.key.decode(), PARTITIONS)


def iso(t: float, utc: bool = False) -> str:
    return datetime.fromtimestamp(round(t), UTC if utc else TZ).isoformat()


# --- the records -----------------------------------------------------------------------


class Builder:
    """Lifecycles with designed publication orders, clear of the documents' open edges."""

    def __init__(self, t0: float, seed: int) -> None:
        self.t0 = t0
        self.rng = random.Random(seed)
        self.start = t0 - SPAN
        self.end = t0 - 120
        self.recs: list[Rec] = []
        self.group = 0
        self.zones: list[tuple[float, float]] = []
        margins = {"1h": 900.0, "24h": 900.0, "7d": 2.5 * H, "28d": 2.5 * H}
        for label, length in WINDOWS.items():
            m = margins[label]
            self.zones.append((t0 - length - m, t0 + HORIZON - length + m))
        for now in (t0, t0 + HORIZON):
            for lo, hi, _ in comparison_edges(now, TZ):
                self.zones.append((lo - HORIZON - 900, hi + HORIZON + 900))

    def u(self, a: float, b: float) -> float:
        return float(round(self.rng.uniform(a, b)))

    def free(self, times: Iterable[float], lag: float = 0.0) -> bool:
        for t in times:
            if not self.start <= t <= self.end - lag:
                return False
            if any(lo <= t <= hi for lo, hi in self.zones):
                return False
        return True

    def pick(self, make: Callable[[], list[tuple[Any, ...]] | None], lag: float = 0.0
             ) -> list[tuple[Any, ...]]:
        """Draw a lifecycle's steps until all its event times are clear of the zones."""
        for _ in range(200):
            steps = make()
            if steps is not None and self.free((s[1] for s in steps), lag):
                return steps
        raise AssertionError("no free times for a lifecycle")

    def emit(self, d: str, subject: str, steps: list[tuple[Any, ...]], lag: float = 0.0
             ) -> None:
        """steps: (kind, time, data, publish delay kind or absolute pkey, tag, id, source)."""
        self.group += 1
        for n, step in enumerate(steps):
            kind, t, data, when, tag = step[:5]
            ident = step[5] if len(step) > 5 and step[5] else None
            source = step[6] if len(step) > 6 and step[6] else None
            family, role = KINDS[kind]
            full = f"watchfloor.{family}.{kind}.v1"
            doc = {
                "specversion": "1.0",
                "id": ident or f"{subject}-{kind}-{n}",
                "source": source or f"/{family}/{d}/app",
                "type": full,
                "time": iso(t, utc=self.rng.random() < 0.3),
                "subject": subject,
                "datacontenttype": "application/json",
                "district": d,
                "data": data,
            }
            pkey = self.delay(t, when) + lag if isinstance(when, str) else float(when)
            self.recs.append(Rec(role, d.encode(), orjson.dumps(doc), pkey, self.group, tag))

    def delay(self, t: float, how: str) -> float:
        if how == "now":
            return t + self.u(0, 600)
        if how == "ooo":  # out of order, well within the grace
            return t + self.u(2 * H, 18 * H)
        if how == "late":  # well past the grace
            return t + self.u(40 * H, 5 * D)
        raise ValueError(how)

    # -- cases ---------------------------------------------------------------------------

    def case(self, d: str, n: int) -> None:
        s = f"{d}-cs-{n:03d}"
        cat = self.rng.choice(INCIDENT_CATEGORIES)
        filed_data = {"category": cat, "severity": self.rng.choice(["minor", "serious",
                                                                     "major"])}
        variant = self.rng.choices(
            ["open", "cleared", "cleared_first", "cleared_only", "late_filing",
             "late_clearance", "cleared_twice", "filed_twice", "same_id_restamped",
             "late_repeat", "forgotten_repeat"],
            [25, 35, 8, 4, 5, 7, 4, 4, 3, 3, 2])[0]

        def cleared_data() -> dict[str, Any]:
            return {"category": cat} if self.rng.random() < 0.5 else {}

        def make() -> list[tuple[Any, ...]] | None:
            tf = self.u(self.start, self.end)
            tc = tf + self.u(H, 8 * D)
            if variant == "open":
                return [("case_filed", tf, filed_data, "now", "case")]
            if variant == "cleared":
                return [("case_filed", tf, filed_data, "now", "case"),
                        ("case_cleared", tc, cleared_data(), "now", "case cleared")]
            if variant == "cleared_first":
                tc = tf + self.u(H, 8 * H)
                return [("case_filed", tf, filed_data, tc + self.u(H, 10 * H),
                         "case filed after its clearance"),
                        ("case_cleared", tc, cleared_data(), tc, "case cleared before filed")]
            if variant == "cleared_only":
                return [("case_cleared", tc, cleared_data(), "now", "case cleared, never filed")]
            if variant == "late_filing":
                if tf > self.end - 6 * D:
                    return None
                return [("case_filed", tf, filed_data, "late", "late filing"),
                        ("case_cleared", tf + self.u(2 * D, 5 * D), cleared_data(), "now",
                         "clearance of a late-filed case")]
            if variant == "late_clearance":
                if tc > self.end - 6 * D:
                    return None
                return [("case_filed", tf, filed_data, "now", "case"),
                        ("case_cleared", tc, cleared_data(), "late",
                         "late clearance of an open case")]
            if variant == "cleared_twice":
                return [("case_filed", tf, filed_data, "now", "case"),
                        ("case_cleared", tc, {}, "now", "case cleared"),
                        ("case_cleared", tc + self.u(H, 2 * D), {}, "now",
                         "second clearance, other source", None, f"/police/{d}/backup")]
            if variant == "filed_twice":
                return [("case_filed", tf, filed_data, "now", "case"),
                        ("case_filed", tf + self.u(600, D), filed_data, "now",
                         "second filing, other source", None, f"/police/{d}/backup")]
            if variant == "same_id_restamped":
                return [("case_filed", tf, filed_data, "now", "case"),
                        ("case_filed", tf + self.u(60, 600), filed_data, "now",
                         "same identity re-stamped", f"{s}-case_filed-0")]
            if variant == "late_repeat":
                if tf > self.end - 6 * D:
                    return None
                return [("case_filed", tf, filed_data, "now", "case"),
                        ("case_filed", tf, filed_data, tf + self.u(3 * D, 5 * D),
                         "exact repeat days later", f"{s}-case_filed-0")]
            if tf > self.end - 13 * D:
                return None
            return [("case_filed", tf, filed_data, "now", "case"),
                    ("case_filed", tf, filed_data, tf + self.u(9.5 * D, 12 * D),
                     "exact repeat past the identity horizon", f"{s}-case_filed-0")]

        self.emit(d, s, self.pick(make))

    # -- disputes ------------------------------------------------------------------------

    def dispute(self, d: str, n: int) -> None:
        s = f"{d}-dp-{n:03d}"
        unit = f"{d}-mediation"
        rep = {"category": self.rng.choice(DISPUTE_CATEGORIES), "responsible_unit": unit,
               "people_involved": self.rng.randint(1, 30)}
        med = {"responsible_unit": unit}
        esc = {"escalated_to": "city-petitions-office"}
        variant = self.rng.choices(
            ["open", "mediated", "resolved", "mediated_resolved", "escalated",
             "mediated_escalated", "resolved_first", "mediated_first", "escalated_first",
             "late_resolution", "mediated_twice", "late_mediation", "late_report",
             "resolved_twice", "late_escalation"],
            [15, 10, 12, 12, 5, 5, 6, 4, 3, 6, 3, 3, 3, 3, 3])[0]

        def make() -> list[tuple[Any, ...]] | None:
            tr = self.u(self.start, self.end)
            tm = tr + self.u(H, 2 * D)
            tz = tm + self.u(H, 8 * D)
            r = ("reported", tr, rep, "now", "dispute")
            if variant == "open":
                return [r]
            if variant == "mediated":
                return [r, ("mediation_started", tm, med, "now", "mediation")]
            if variant == "resolved":
                return [r, ("resolved", tz, {"responsible_unit": unit}, "now", "resolution")]
            if variant == "mediated_resolved":
                return [r, ("mediation_started", tm, med, "now", "mediation"),
                        ("resolved", tz, {}, "now", "resolution")]
            if variant == "escalated":
                return [r, ("escalated", tz, esc, "now", "escalation")]
            if variant == "mediated_escalated":
                return [r, ("mediation_started", tm, med, "now", "mediation"),
                        ("escalated", tz, esc, "now", "escalation")]
            if variant in ("resolved_first", "mediated_first", "escalated_first"):
                step = {"resolved_first": ("resolved", {}),
                        "mediated_first": ("mediation_started", med),
                        "escalated_first": ("escalated", esc)}[variant]
                t2 = tr + self.u(H, 8 * H)
                return [("reported", tr, rep, t2 + self.u(H, 10 * H),
                         "dispute reported after a later step"),
                        (step[0], t2, step[1], t2, f"{step[0]} before reported")]
            if variant == "late_resolution":
                if tz > self.end - 6 * D:
                    return None
                return [r, ("resolved", tz, {}, "late", "late resolution of an open dispute")]
            if variant == "mediated_twice":
                return [r, ("mediation_started", tm, med, "now", "mediation"),
                        ("mediation_started", tm + self.u(H, D), med, "now",
                         "second mediation")]
            if variant == "late_mediation":
                if tm > self.end - 6 * D:
                    return None
                return [r, ("mediation_started", tm, med, "late", "late mediation")]
            if variant == "late_report":
                if tr > self.end - 6 * D:
                    return None
                return [("reported", tr, rep, "late", "late report"),
                        ("mediation_started", tr + self.u(2 * D, 5 * D), med, "now",
                         "mediation of a dispute never counted as reported")]
            if variant == "late_escalation":
                if tz > self.end - 6 * D:
                    return None
                return [r, ("escalated", tz, esc, "late", "late escalation of an open dispute")]
            return [r, ("resolved", tz, {}, "now", "resolution"),
                    ("resolved", tz + self.u(H, D), {}, "now", "second resolution",
                     None, f"/dispute/{d}/backup")]

        self.emit(d, s, self.pick(make))

    # -- patrols ---------------------------------------------------------------------------

    def patrol(self, d: str, n: int, lag: float) -> None:
        s = f"{d}-pt-{n:03d}"
        variant = self.rng.choices(["run", "retry_new_id", "late_run", "ooo_run",
                                    "forgotten_repeat", "reused"], [70, 8, 8, 8, 4, 4])[0]

        def data(t: float) -> dict[str, Any]:
            return {"team": f"{d}-pt01", "started_at": iso(t - self.u(H, 6 * H)),
                    "ended_at": iso(t - self.u(0, 1800)), "area": f"{d}-s1",
                    "findings": self.rng.randint(0, 3)}

        def make() -> list[tuple[Any, ...]] | None:
            t = self.u(self.start, self.end - lag)
            if variant == "run":
                return [("completed", t, data(t), "now", "patrol")]
            if variant == "ooo_run":
                return [("completed", t, data(t), "ooo", "patrol out of order")]
            if variant == "retry_new_id":
                t2 = t + self.u(60, H)
                return [("completed", t, data(t), "now", "patrol"),
                        ("completed", t2, data(t2), "now", "same run, new identity")]
            if t > self.end - lag - 13 * D:
                return None
            if variant == "late_run":
                return [("completed", t, data(t), "late", "late patrol")]
            if variant == "reused":  # forgotten after 7 days: a new run under the same id
                t2 = t + self.u(9.5 * D, 12 * D)
                return [("completed", t, data(t), "now", "patrol"),
                        ("completed", t2, data(t2), "now", "run id reused after the horizon")]
            body = data(t)
            return [("completed", t, body, "now", "patrol"),
                    ("completed", t, body, t + lag + self.u(9.5 * D, 12 * D),
                     "exact repeat of a forgotten run", f"{s}-completed-0")]

        self.emit(d, s, self.pick(make, lag), lag)

    # -- hazards ---------------------------------------------------------------------------

    def deadline(self, after: float, floor: float = 0.0) -> float:
        r = self.rng.random()
        if r < 0.15:
            dl = self.t0 + self.u(15, 60)  # falls due while the test watches
        elif r < 0.6:
            dl = after + self.u(D, 6 * D)
            if dl > self.t0 - H:
                dl = self.t0 + self.u(D, 20 * D)
        else:
            dl = self.t0 + self.u(D, 20 * D)
        if dl <= max(after, floor):
            dl = max(after, floor) + self.u(H, 3 * D)
        return dl

    def hazard(self, d: str, n: int, lag: float) -> None:
        s = f"{d}-hz-{n:03d}"
        cat = self.rng.choice(HAZARD_CATEGORIES)
        major = self.rng.random() < 0.25
        variant = self.rng.choices(
            ["open", "rectified", "confirmed", "reopened", "retry_rect_after_failed",
             "retry_failed_after_rect", "rect_before_found", "confirmed_then_rect",
             "failed_open", "outgrown_failed", "late_rect", "late_failed",
             "steps_before_found", "found_twice", "rect_twice", "confirmed_twice",
             "late_found", "late_confirmed", "outgrown_confirmed", "three_rounds"],
            [14, 14, 8, 10, 6, 5, 5, 4, 5, 3, 4, 3, 3, 2, 2, 2, 3, 3, 3, 3])[0]

        def found(tf: float, when: Any = "now", tag: str = "hazard",
                  dl: float | None = None) -> tuple[Any, ...]:
            return ("found", tf, {"category": cat, "major": major,
                                  "deadline": iso(dl if dl else self.deadline(tf)),
                                  "responsible_unit": f"{d}-safety",
                                  "found_by": "inspection"}, when, tag)

        def failed(t: float, floor: float, when: Any = "now", tag: str = "failed visit",
                   ident: str | None = None) -> tuple[Any, ...]:
            return ("verified", t, {"result": "not_rectified",
                                    "new_deadline": iso(self.deadline(t, floor))}, when, tag,
                    ident)

        def rect(t: float, when: Any = "now", tag: str = "rectification",
                 ident: str | None = None) -> tuple[Any, ...]:
            return ("rectified", t, {"responsible_unit": f"{d}-safety"}, when, tag, ident)

        def confirmed(t: float, when: Any = "now", tag: str = "confirmed visit"
                      ) -> tuple[Any, ...]:
            return ("verified", t, {"result": "confirmed"}, when, tag)

        def make() -> list[tuple[Any, ...]] | None:
            tf = self.u(self.start, self.end - lag)
            f = found(tf)
            fdl = ts(f[2]["deadline"])
            tr1 = tf + self.u(2 * H, 3 * D)
            tF = tr1 + self.u(3 * D, 12 * D)
            tr2 = tF + self.u(6 * H, 5 * D)
            if variant == "open":
                return [f]
            if variant == "rectified":
                return [f, rect(tf + self.u(2 * H, 6 * D))]
            if variant == "confirmed":
                return [f, rect(tr1), confirmed(tr1 + self.u(3 * D, 25 * D),
                                                tag="look-back visit confirmed")]
            if variant == "reopened":
                steps = [f, rect(tr1), failed(tF, fdl, tag="look-back visit failed")]
                if self.rng.random() < 0.6:
                    steps.append(rect(tr2, tag="rectified again"))
                    if self.rng.random() < 0.5:
                        steps.append(confirmed(tr2 + self.u(3 * D, 10 * D)))
                return steps
            if variant == "retry_rect_after_failed":
                fail = failed(tF, fdl)
                pk = self.delay(tF, "now") + lag + self.u(600, 2 * D)
                how = self.rng.choice(["exact", "same_time", "between"])
                if how == "exact":
                    retry = rect(tr1, pk, "rectification retried after a failed visit",
                                 f"{s}-rectified-1")
                elif how == "same_time":
                    retry = rect(tr1, pk, "rectification retried (new id) after a failed visit",
                                 f"{s}-rectified-retry")
                else:
                    retry = rect(self.u(tr1 + 60, tF - 60), pk,
                                 "rectification older than the failed visit",
                                 f"{s}-rectified-retry")
                return [f, rect(tr1), fail, retry]
            if variant == "retry_failed_after_rect":
                fail = failed(tF, fdl)
                pk = self.delay(tr2, "now") + lag + self.u(600, 2 * D)
                if self.rng.random() < 0.5:
                    retry = (*fail[:3], pk, "failed visit retried after a newer rectification",
                             f"{s}-verified-2")
                else:
                    retry = failed(tF, fdl, pk, "failed visit retried (new id) after a "
                                   "newer rectification", f"{s}-verified-retry")
                return [f, rect(tr1), fail, rect(tr2, tag="rectified again"), retry]
            if variant == "rect_before_found":
                tr = tf + self.u(H, 6 * H)
                pk = tr + lag + self.u(H, 10 * H)
                return [found(tf, pk, "hazard found after its rectification", fdl),
                        rect(tr, tag="rectified before found")]
            if variant == "confirmed_then_rect":
                tv = tf + self.u(3 * D, 15 * D)
                tr = tv - self.u(H, 10 * H)
                pk = self.delay(tv, "now") + lag + self.u(H, 6 * H)
                return [f, confirmed(tv, tag="confirmed visit of an open hazard"),
                        rect(tr, pk, "rectification after its confirming visit")]
            if variant == "failed_open":
                tv = tf + self.u(3 * D, 12 * D)
                steps = [f, failed(tv, fdl, tag="failed visit of an open hazard")]
                if self.rng.random() < 0.5:
                    steps.append(rect(tv + self.u(2 * H, 5 * D)))
                return steps
            if variant == "outgrown_failed":
                pk = self.delay(tr2, "now") + lag + self.u(600, D)
                return [f, rect(tr1), failed(tF, fdl), rect(tr2, tag="rectified again"),
                        failed(self.u(tF + H, tr2 - H), fdl, pk,
                               "failed visit older than the round's rectification",
                               f"{s}-verified-old")]
            if variant == "late_rect":
                if tr1 > self.end - lag - 6 * D:
                    return None
                return [f, rect(tr1, "late", "late rectification of an open hazard")]
            if variant == "late_failed":
                if tF > self.end - lag - 6 * D:
                    return None
                return [f, rect(tr1), failed(tF, fdl, "late", "late failed visit")]
            if variant == "steps_before_found":
                tr = tf + self.u(H, 3 * H)
                tv = tr + self.u(H, 3 * H)
                pk = tv + lag + self.u(H, 6 * H)
                return [found(tf, pk, "hazard found after a rectification and a failed visit",
                              fdl),
                        rect(tr, tr + lag, "rectified before found"),
                        failed(tv, fdl, tv + lag, "failed visit before found")]
            if variant == "found_twice":
                return [f, ("found", tf + self.u(600, D), f[2], "now",
                            "second finding, other source", None, f"/hazard/{d}/backup")]
            if variant == "rect_twice":
                return [f, rect(tr1), rect(tr1 + self.u(600, 2 * D), tag="second rectification")]
            if variant == "confirmed_twice":
                tv = tr1 + self.u(3 * D, 10 * D)
                return [f, rect(tr1), confirmed(tv),
                        confirmed(tv + self.u(H, D), tag="second confirmed visit")]
            if variant == "late_confirmed":
                tv = tf + self.u(3 * D, 10 * D)
                if tv > self.end - lag - 6 * D:
                    return None
                return [f, confirmed(tv, "late", "late confirmed visit of an open hazard")]
            if variant == "outgrown_confirmed":
                pk = self.delay(tF, "now") + lag + self.u(600, D)
                return [f, rect(tr1), failed(tF, fdl),
                        confirmed(self.u(tr1 + H, tF - H), pk,
                                  "confirmed visit older than a failed one")]
            if variant == "three_rounds":
                tF2 = tr2 + self.u(D, 4 * D)
                tr3 = tF2 + self.u(2 * H, 3 * D)
                steps = [f, rect(tr1), failed(tF, fdl), rect(tr2, tag="rectified again"),
                         failed(tF2, fdl, tag="second failed visit"),
                         rect(tr3, tag="rectified a third time")]
                if self.rng.random() < 0.5:
                    steps.append(failed(self.u(tF + H, tF2 - H), fdl,
                                        self.delay(tr3, "now") + lag + self.u(600, D),
                                        "failed visit older than the latest failed one",
                                        f"{s}-verified-between"))
                return steps
            # late_found
            if tf > self.end - lag - 6 * D:
                return None
            return [found(tf, "late", "late finding", fdl),
                    rect(tf + self.u(2 * D, 5 * D), tag="rectification of a hazard never counted "
                         "as found")]

        self.emit(d, s, self.pick(make, lag), lag)

    # -- faults ------------------------------------------------------------------------------

    def fault(self, role: str, key: str, value: bytes | None, reason: str | None,
              tag: str, partition: int | None = None) -> None:
        pkey = self.u(self.start, self.end)
        self.recs.append(Rec(role, key.encode(), value, pkey, -1, tag, partition, reason,
                             kcat=True))

    def faults(self) -> None:
        t = iso(self.t0 - 3 * D)

        def doc(kind: str, d: str, subject: str, data: dict[str, Any], **over: Any) -> bytes:
            family = KINDS[kind][0]
            body = {"specversion": "1.0", "id": f"{subject}-{kind}", "source": "/faults",
                    "type": f"watchfloor.{family}.{kind}.v1", "time": t, "subject": subject,
                    "district": d, "data": data}
            body.update(over)
            return orjson.dumps(body)

        case = {"category": "theft", "severity": "minor"}
        self.fault("incidents", "jinshui", None, "empty", "empty record")
        self.fault("patrols", "erqi", b'{"pad": "' + b"x" * 70_000 + b'"}', "too_large",
                   "too large")
        self.fault("disputes", "gaoxin", b'{"specversion": "1.0", "id": "\xff\xfe"}',
                   "not_utf8", "not UTF-8")
        self.fault("incidents", "zhongyuan", b'{"specversion": "1.0", "id": ', "malformed_json",
                   "malformed JSON")
        self.fault("incidents", "jinshui",
                   doc("case_filed", "jinshui", "fault-schema", {"category": "theft"}),
                   "schema", "severity missing")
        self.fault("patrols", "erqi",
                   doc("found", "erqi", "fault-type", {}, type="watchfloor.hazard.closed.v1"),
                   "unknown_type", "unknown type")
        hz = {"category": "gas", "major": False, "deadline": iso(self.t0 + D),
              "responsible_unit": "gaoxin-safety"}
        self.fault("incidents", "gaoxin", doc("found", "gaoxin", "fault-topic", hz), None,
                   "hazard on the incidents topic (wrong_topic)")
        self.fault("incidents", "atlantis", doc("case_filed", "atlantis", "fault-district", case),
                   None, "unknown district")
        self.fault("disputes", "guancheng",
                   doc("reported", "guancheng", "fault-naive",
                       {"category": "school", "responsible_unit": "guancheng-edu"},
                       time=t[:19]), "naive_time", "time without offset")
        self.fault("incidents", "huiji",
                   doc("case_filed", "huiji", "fault-old", case,
                       time="1999-12-31T23:00:00+08:00"), "time_out_of_range", "before 2000")
        self.fault("patrols", "zhongyuan",
                   doc("completed", "zhongyuan", "fault-patrol",
                       {"team": "zhongyuan-pt01", "started_at": t,
                        "ended_at": iso(self.t0 - 3 * D - H), "area": "zhongyuan-s1",
                        "findings": 0}), "time_out_of_range", "patrol ends before it starts")
        self.fault("patrols", "guancheng",
                   doc("found", "guancheng", "fault-deadline",
                       {**hz, "deadline": iso(self.t0 - 4 * D)}), "deadline_before_found",
                   "deadline before found")
        right = district_partition("jinshui", PARTITIONS)
        self.fault("incidents", "jinshui", doc("case_filed", "jinshui", "fault-partition", case),
                   None, "wrong partition", partition=(right + 1) % PARTITIONS)

    def shared_identity(self) -> None:
        """One (source, id) on two streams of a district (identities are per stream), and
        again on the first stream for another case (the same event: a duplicate)."""
        d, source = "erqi", "/shared/erqi"
        case = {"category": "fight", "severity": "minor"}
        dispute = {"category": "neighbourhood", "responsible_unit": "erqi-mediation"}

        def make() -> list[tuple[Any, ...]]:
            t = self.u(self.end - 6 * D, self.end - 2 * D)
            return [("case_filed", t, case, "now"), ("reported", t + self.u(H, D), dispute,
                                                     "now"),
                    ("case_filed", t + self.u(H, D), case, "now")]

        first, second, third = self.pick(make)
        for step, s, tag in ((first, "erqi-cs-shared", "identity shared with a dispute"),
                             (second, "erqi-dp-shared", "identity shared with a case"),
                             (third, "erqi-cs-shared-other", "same identity, another case")):
            self.emit(d, s, [(*step, tag, "shared-1", source)])

    def repeats(self, share: float) -> None:
        """Exact repeats (same source and id) a little later: producer retries."""
        originals = [r for r in self.recs if r.group > 0]
        for r in self.rng.sample(originals, int(len(originals) * share)):
            self.recs.append(Rec(r.role, r.key, r.value, r.pkey + self.u(300, 2 * D), r.group,
                                 "exact repeat"))


SEED = int(os.environ.get("WATCHFLOOR_TEST_LIFECYCLE_SEED", "20261205"))


def build(t0: float, seed: int = SEED) -> Builder:
    b = Builder(t0, seed)
    for d in DISTRICTS:
        lag = LAG if d == LAGGING else 0.0
        for n in range(60):
            b.case(d, n)
        for n in range(40):
            b.dispute(d, n)
        for n in range(64):
            b.patrol(d, n, lag)
        for n in range(80):
            b.hazard(d, n, lag)
    b.shared_identity()
    b.repeats(0.04)
    b.faults()
    return b


@dataclass
class Plan:
    """The records in publication order, cut into batches for the CLI and kcat."""

    t0: float
    batches: list[tuple[str, list[Rec]]]
    dropped: list[str] = field(default_factory=list)

    @property
    def records(self) -> list[Rec]:
        return [r for _, batch in self.batches for r in batch]


def cut(recs: list[Rec]) -> list[tuple[str, list[Rec]]]:
    ordered = sorted(recs, key=lambda r: r.pkey)
    size = -(-len(ordered) // BATCHES)
    batches = [("cli" if i % 2 == 0 else "kcat", ordered[i * size:(i + 1) * size])
               for i in range(BATCHES)]
    out: list[tuple[str, list[Rec]]] = []
    carry: list[Rec] = []
    for tool, batch in batches:
        if tool == "cli":
            out.append((tool, [r for r in batch if not r.kcat]))
            carry = [r for r in batch if r.kcat]
        else:
            # kcat sends a forced partition's records in a run of their own, last.
            both = carry + batch
            out.append((tool, [r for r in both if r.partition is None]
                        + [r for r in both if r.partition is not None]))
            carry = []
    assert not carry
    return out


def model_of(records: Iterable[tuple[str, int, int, bytes | None, bytes | None]],
             faults: dict[bytes, str], strict: bool = True) -> Model:
    m = Model(PARTITIONS, REFERENCE, faults)
    m.feed(records, strict=strict)
    return m


def faults_of(recs: Iterable[Rec]) -> dict[bytes, str]:
    return {r.value: r.fault for r in recs if r.fault and r.value is not None}


def plan(t0: float) -> Plan:
    """Build the records; drop every lifecycle the documents leave open, until none is."""
    b = build(t0)
    recs = b.recs
    dropped: list[str] = []
    while True:
        batches = cut(recs)
        order = [r for _, batch in batches for r in batch]
        m = model_of(((r.role, r.target, i, r.key, r.value) for i, r in enumerate(order)),
                     faults_of(order), strict=False)
        if not m.ambiguous:
            return Plan(t0, batches, dropped)
        groups = {order[a.index].group for a in m.ambiguous if a.index is not None}
        assert -1 not in groups, [a.why for a in m.ambiguous]
        dropped += [f"{order[a.index].tag}: {a.why}" for a in m.ambiguous
                    if a.index is not None]
        recs = [r for r in recs if r.group not in groups]


# --- publishing ------------------------------------------------------------------------------


def publish_cli(cluster: Cluster, recs: list[Rec]) -> None:
    lines = b"".join(r.value + b"\n" for r in recs if r.value is not None)
    env = {**os.environ, **cluster.env()}
    done = subprocess.run([sys.executable, "-m", "streams.cli", "publish", "-", "--json"],
                          input=lines, env=env, cwd=ROOT, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stdout.decode()[-3000:] + done.stderr.decode()[-3000:]
    report = orjson.loads(done.stdout)
    assert report["sent"] == len(recs), report


def publish_kcat(cluster: Cluster, recs: list[Rec], trickle: float = 0.0) -> None:
    """kcat -P per topic (and per forced partition); ``trickle``: spread each run's lines
    over that many seconds, so a kill lands while records are flowing."""
    runs: dict[tuple[str, int | None], list[Rec]] = defaultdict(list)
    for r in recs:
        runs[(r.role, r.partition)].append(r)
    for (role, partition), rs in sorted(runs.items(), key=lambda kv: kv[0][1] is not None):
        cmd = ["kcat", "-P", "-b", cluster.bootstrap, "-t", cluster.topic(role), "-K", "\t",
               "-Z", "-X", "partitioner=murmur2_random", "-X", "enable.idempotence=true",
               "-H", "content-type=application/cloudevents+json; charset=utf-8"]
        if partition is not None:
            cmd += ["-p", str(partition)]
        lines = [(r.key or b"") + b"\t" + (r.value or b"") + b"\n" for r in rs]
        if not trickle:
            done = subprocess.run(cmd, input=b"".join(lines), capture_output=True, timeout=120)
            assert done.returncode == 0, done.stderr.decode()[-3000:]
            continue
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None
        pieces = 10
        for i in range(pieces):
            part = lines[i * len(lines) // pieces:(i + 1) * len(lines) // pieces]
            proc.stdin.write(b"".join(part))
            proc.stdin.flush()
            time.sleep(trickle / len(runs) / pieces)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-3000:]


def publish(cluster: Cluster, tool: str, recs: list[Rec], trickle: float = 0.0) -> None:
    if tool == "cli":
        publish_cli(cluster, recs)
    else:
        publish_kcat(cluster, recs, trickle)


def committed_to_end(cluster: Cluster) -> bool:
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap, group_id=cluster.app_id,
                             enable_auto_commit=False)
    try:
        parts = [TopicPartition(cluster.topic(r), p) for r in ROLES
                 for p in range(cluster.partitions)]
        ends = consumer.end_offsets(parts)
        return all((consumer.committed(tp) or 0) == ends[tp] for tp in parts)
    finally:
        consumer.close()


def read_back(cluster: Cluster) -> list[tuple[str, int, int, bytes | None, bytes | None]]:
    out = []
    for role in ROLES:
        for r in cluster.read_all(role, timeout=30):
            out.append((role, r.partition, r.offset, r.key, r.value))
    out.sort(key=lambda x: (x[0], x[1], x[2]))
    return out


# --- comparing -------------------------------------------------------------------------------


def district_figures(m: dict[tuple[str, tuple[tuple[str, str], ...]], float]
                     ) -> dict[Any, float]:
    clocked = {"watchfloor_oldest_open_dispute_age_seconds"}
    return {k: v for k, v in m.items()
            if any(name == "district" for name, _ in k[1]) and k[0] not in clocked}


@dataclass
class Observation:
    t_lo: float
    t_hi: float
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    listing: Any
    details: dict[str, Any]


def observe(w: WorkerProcess, truth: Model, first: str, last: str) -> Observation:
    """Scrape /metrics and the API while no deadline passes and no window moves."""
    for _ in range(30):
        t_lo = time.time()
        due = [dl for d in DISTRICTS for dl in truth.district(d).deadlines()
               if t_lo - 3 <= dl <= t_lo + 15]
        if due:
            time.sleep(max(due) - t_lo + 3.5)
            continue
        metrics = w.metrics()
        status, listing = w.get("/api/v1/districts")
        assert status == 200, listing
        details = {}
        for d in DISTRICTS:
            status, details[d] = w.get(
                f"/api/v1/districts/{d}?period={first}..{last}&limit=1000")
            assert status == 200, details[d]
        t_hi = time.time()
        moved = any(truth.district(d).rolling(t_lo) != truth.district(d).rolling(t_hi)
                    for d in DISTRICTS)
        due = [dl for d in DISTRICTS for dl in truth.district(d).deadlines()
               if t_lo - 3 <= dl <= t_hi + 1]
        if not moved and not due:
            return Observation(t_lo, t_hi, metrics, listing, details)
        time.sleep(2)
    raise AssertionError("could not read the figures between two deadlines")


def close(a: float | None, b: float | None, tol: float = 1e-6) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= tol


def within(got: Any, lo: float, hi: float, tol: float) -> bool:
    return isinstance(got, int | float) and lo - tol <= got <= hi + tol


def compare(obs: Observation, truth: Model, t0: float) -> list[str]:
    """Every figure of /metrics and the API against the truth; one line per difference."""
    bad: list[str] = []
    now, later = obs.t_lo, obs.t_hi
    assert later < t0 + HORIZON, "the test ran past the horizon its records were built for"
    m = obs.metrics
    if "incomplete" in obs.listing:
        bad.append(f"/api/v1/districts is incomplete: {obs.listing['incomplete']}")
    listed = {e["district"]: e for e in obs.listing["districts"]}
    for d in DISTRICTS:
        dist = truth.district(d)
        windows = dist.rolling(now)
        cur = dist.current(now)
        cur_hi = dist.current(later)
        overdue = dist.overdue(now)

        def check(what: str, got: Any, want: Any, d: str = d) -> None:
            if got == want:
                return
            if isinstance(got, dict) and isinstance(want, dict):
                diff = {k: (got.get(k), want.get(k)) for k in sorted(set(got) | set(want))
                        if got.get(k) != want.get(k)}
                bad.append(f"{d}: {what}: (watchfloor, truth) differ at {diff}")
            else:
                bad.append(f"{d}: {what}: watchfloor {got!r}, truth {want!r}")

        # /metrics: rolling windows and ratios
        for label, counts in windows.items():
            for measure in METRIC_MEASURES:
                check(f"watchfloor_rolling_{measure}{{window={label}}}",
                      sample(m, f"watchfloor_rolling_{measure}", district=d, window=label),
                      counts[measure])
            for _, stem, num, den in RATES:
                got = sample(m, f"watchfloor_cohort_{stem}", district=d, window=label)
                want = counts[num] / counts[den] if counts[den] else None
                if not close(got, want):
                    check(f"watchfloor_cohort_{stem}{{window={label}}}", got, want)
        totals = dist.totals()
        for measure in TOTALS:
            check(f"watchfloor_{measure}_total",
                  sample(m, f"watchfloor_{measure}_total", district=d), totals[measure])
        for name in ("open_cases", "open_disputes", "open_hazards", "overdue_hazards",
                     "overdue_major_hazards"):
            check(f"watchfloor_{name}", sample(m, f"watchfloor_{name}", district=d), cur[name])
        age = sample(m, "watchfloor_oldest_open_dispute_age_seconds", district=d)
        if cur["oldest_open_dispute_age_seconds"] is None:
            check("watchfloor_oldest_open_dispute_age_seconds", age, 0.0)
        elif not within(age, cur["oldest_open_dispute_age_seconds"],
                        cur_hi["oldest_open_dispute_age_seconds"], 1.0):
            check("watchfloor_oldest_open_dispute_age_seconds", age,
                  cur["oldest_open_dispute_age_seconds"])
        check("watchfloor_last_patrol_timestamp_seconds",
              sample(m, "watchfloor_last_patrol_timestamp_seconds", district=d),
              dist.last_patrol_end)
        check("watchfloor_late_events_total",
              sample(m, "watchfloor_late_events_total", district=d), dist.late)
        check("watchfloor_duplicate_events_total",
              sample(m, "watchfloor_duplicate_events_total", district=d), dist.duplicates)
        open_by_cat = Counter(h.category for h in dist.open_hazards())
        overdue_by_cat = Counter(h.category for h in overdue)
        for name, want_cats in (("open_hazards_by_category", open_by_cat),
                                ("overdue_hazards_by_category", overdue_by_cat)):
            got_cats = {dict(k[1])["category"]: v for k, v in m.items()
                        if k[0] == f"watchfloor_{name}" and dict(k[1])["district"] == d}
            check(f"watchfloor_{name}", got_cats, {c: float(n) for c, n in want_cats.items()})

        # API: the list entry and the detail share "current", "rolling" and "watermark".
        detail = obs.details[d]
        for where, entry in (("list", listed.get(d)), ("detail", detail)):
            if entry is None:
                bad.append(f"{d}: missing from /api/v1/districts")
                continue
            got = entry["current"]
            for name in ("open_cases", "open_disputes", "open_hazards", "overdue_hazards",
                         "overdue_major_hazards", "late_events", "duplicate_events"):
                check(f"{where} current.{name}", got.get(name), cur[name])
            for name, tol in (("oldest_open_dispute_age_seconds", 1.0),
                              ("hours_since_last_patrol", 0.001)):
                if cur[name] is None:
                    if got.get(name) not in (None, 0, 0.0):
                        check(f"{where} current.{name}", got.get(name), None)
                elif not within(got.get(name), cur[name], cur_hi[name], tol):
                    check(f"{where} current.{name}", got.get(name), cur[name])
            for label, counts in windows.items():
                block = entry["rolling"][label]
                for measure in MEASURES:
                    check(f"{where} rolling[{label}].{measure}", block.get(measure),
                          counts[measure])
                for api, _, num, den in RATES:
                    want = round(counts[num] / counts[den], 6) if counts[den] else None
                    if not close(block.get(api), want):
                        check(f"{where} rolling[{label}].{api}", block.get(api), want)
            mark = dist.watermark()
            got_mark = entry.get("watermark")
            if (ts(got_mark) if got_mark else None) != mark:
                check(f"{where} watermark", got_mark, mark and iso(mark))

        # API detail: comparisons, open hazards, period
        for name, (cur_span, prev_span) in comparisons(now, TZ).items():
            for lo, hi, what in comparison_edges(now, TZ):
                dist.check_empty(lo, hi, what)
            c, p = dist.counts(*cur_span), dist.counts(*prev_span)
            block = detail["comparisons"][name]
            # Period bounds: starts exactly; ends at "now" (the request's clock) or, for
            # last year, at the same clock time. The 28 days before: its end is the open
            # question of lifecycle_truth.comparisons, not asserted.
            for key, (lo, hi) in (("current_period", cur_span), ("previous_period", prev_span)):
                got_lo, got_hi = ts(block[key]["from"]), ts(block[key]["to"])
                if got_lo != lo:
                    check(f"comparisons.{name}.{key}.from", block[key]["from"], iso(lo))
                if (name, key) != ("28d", "previous_period") and not within(
                        got_hi, hi, hi + (later - now), 1.0):
                    check(f"comparisons.{name}.{key}.to", block[key]["to"], iso(hi))
            for measure in MEASURES:
                want_c: dict[str, Any] = {"current": c[measure], "previous": p[measure],
                        "change": c[measure] - p[measure],
                        "change_ratio": (round((c[measure] - p[measure]) / p[measure], 6)
                                         if p[measure] else None)}
                check(f"comparisons.{name}.{measure}", block["counts"].get(measure), want_c)
            for api, _, num, den in RATES:
                want_r = {"current": round(c[num] / c[den], 6) if c[den] else None,
                          "previous": round(p[num] / p[den], 6) if p[den] else None}
                check(f"comparisons.{name}.rates.{api}", block["rates"].get(api), want_r)
        want_open = {h.subject: h for h in dist.open_hazards()}
        got_open = {h["id"]: h for h in detail["open_hazards"]}
        for sid in sorted(set(want_open) | set(got_open)):
            if sid not in got_open or sid not in want_open:
                check(f"open hazard {sid}", sid in got_open, sid in want_open)
                continue
            g, h = got_open[sid], want_open[sid]
            assert h.opened is not None and h.deadline is not None
            is_overdue = h.deadline < now
            want_h = {"category": h.category, "major": h.major, "found": h.opened,
                      "deadline": h.deadline, "overdue": is_overdue}
            got_h = {"category": g["category"], "major": g["major"],
                     "found": ts(g["found"]) if g["found"] else None,
                     "deadline": ts(g["deadline"]) if g["deadline"] else None,
                     "overdue": g["overdue"]}
            check(f"open hazard {sid}", got_h, want_h)
            if is_overdue:
                if not within(g["overdue_seconds"], now - h.deadline, later - h.deadline, 1.5):
                    check(f"open hazard {sid} overdue_seconds", g["overdue_seconds"],
                          now - h.deadline)
            elif g["overdue_seconds"] is not None:
                check(f"open hazard {sid} overdue_seconds", g["overdue_seconds"], None)
        # docs/api.md: earliest deadline first, so the overdue ones lead.
        deadlines = [ts(h["deadline"]) for h in detail["open_hazards"]]
        if deadlines != sorted(deadlines):
            bad.append(f"{d}: open_hazards not earliest deadline first")
        # The first page of the district's overdue list (longest overdue first).
        check("overdue_hazards", sorted(h["subject"] for h in detail["overdue_hazards"]),
              sorted(h["id"] for h in detail["open_hazards"] if h["overdue"]))
        check("open_hazards_by_category", detail["open_hazards_by_category"], dict(open_by_cat))
        period = detail["period"]
        lo, hi = ts(period["from"]), ts(period["to"])
        counts = dist.counts(lo, hi)
        for measure in MEASURES:
            check(f"period.figures.{measure}", period["figures"].get(measure), counts[measure])
        for api, _, num, den in RATES:
            want = round(counts[num] / counts[den], 6) if counts[den] else None
            if not close(period["figures"].get(api), want):
                check(f"period.figures.{api}", period["figures"].get(api), want)
        by_cat = dist.by_category(lo, hi)
        by_cat.pop("patrols_completed", None)  # patrols have no category: not specified
        got_cat = {k: v for k, v in period["by_category"].items() if k != "patrols_completed"}
        got_cat = {k: {c: n for c, n in v.items() if n} for k, v in got_cat.items()}
        got_cat = {k: v for k, v in got_cat.items() if v}
        for measure in sorted(set(by_cat) | set(got_cat)):
            check(f"period.by_category.{measure}", got_cat.get(measure), by_cat.get(measure))
    # No other district shows anything.
    for (name, labels), v in m.items():
        dl = dict(labels).get("district")
        # The year's death targets come from the reference data, not from events.
        if name in FROM_REFERENCE:
            continue
        if dl is not None and dl not in DISTRICTS and v:
            bad.append(f"{dl}: {name}{labels} = {v} (no counted event for it)")
    return bad


FROM_REFERENCE = {
    "watchfloor_work_safety_deaths_target",
    "watchfloor_work_safety_deaths_alert_share_ratio",
}


def compare_records(cluster: Cluster, read: list[tuple[str, int, int, bytes | None,
                                                       bytes | None]],
                    truth: Model, tags: dict[tuple[str, int, int], str]) -> list[str]:
    """The fate of every record: counted (no dead letter) or its reason, exactly."""
    letters: dict[tuple[str, int, int], set[str]] = defaultdict(set)
    topics = {cluster.topic(r): r for r in ROLES}
    for rec in cluster.read_all("deadletter", timeout=30):
        h = {k: v.decode() for k, v in rec.headers}
        letters[(topics[h["wf-source-topic"]], int(h["wf-source-partition"]),
                  int(h["wf-source-offset"]))].add(h["wf-reason"])
    bad = []
    for (role, part, offset, _key, value), outcome in zip(read, truth.outcomes, strict=True):
        want = set() if outcome in ("counted", "forwarded") else {outcome}
        got = letters.pop((role, part, offset), set())
        if got != want:
            what = "?"
            if value:
                try:
                    doc = orjson.loads(value)
                    what = f"{doc['type'].split('.')[2]} {doc['subject']} {doc['time']}"
                except (orjson.JSONDecodeError, KeyError, AttributeError, TypeError):
                    what = repr(value[:40])
            bad.append(f"{role}/{part}/{offset} [{tags.get((role, part, offset), '?')}] "
                       f"{what}: watchfloor {sorted(got) or 'counted'}, truth "
                       f"{sorted(want) or 'counted'}")
    for coords, reasons in letters.items():
        bad.append(f"dead letter for a record that does not exist: {coords} {reasons}")
    return bad


# --- the runs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def records() -> Plan:
    return plan(time.time())


def run(cluster: Cluster, workers: Callable[..., WorkerProcess], p: Plan, kills: int,
        rng: random.Random) -> tuple[WorkerProcess, list[str]]:
    need(shutil.which("kcat") is not None,
         "kcat is not installed (deploy/local/setup.sh test installs it)")
    w = workers(WATCHFLOOR_GROUP_INSTANCE_ID="w1")
    w.wait_ready()
    kill_at = set(rng.sample(range(1, BATCHES), kills))
    killed = 0
    notes = []
    for i, (tool, batch) in enumerate(p.batches):
        if i not in kill_at:
            publish(cluster, tool, batch)
            continue
        w.wait_ready()
        delay = rng.uniform(0.0, 1.5)
        timer = threading.Timer(delay, w.kill)
        timer.start()
        publish(cluster, tool, batch, trickle=2.0)
        timer.join()
        killed += 1
        notes.append(f"killed {delay:.2f}s into batch {i} ({tool})")
        w.start()
    assert killed == kills
    w.wait_ready()
    wait_for(lambda: committed_to_end(cluster), timeout=120, interval=1.0,
             what="every source record committed")

    def settled() -> bool:
        a = district_figures(w.metrics())
        time.sleep(1.0)
        return a == district_figures(w.metrics())

    wait_for(settled, timeout=30, interval=0.1, what="figures to settle")
    return w, notes


def check_run(cluster: Cluster, w: WorkerProcess, p: Plan, notes: list[str],
              pipeline: bool) -> None:
    read = read_back(cluster)
    # The publication order the scenarios were designed in is the order in Kafka.
    designed: dict[tuple[str, int], list[bytes | None]] = defaultdict(list)
    tag_of: dict[tuple[str, int], list[str]] = defaultdict(list)
    for r in p.records:
        designed[(r.role, r.target)].append(r.value)
        tag_of[(r.role, r.target)].append(r.tag)
    got: dict[tuple[str, int], list[bytes | None]] = defaultdict(list)
    for role, part, _off, _key, value in read:
        got[(role, part)].append(value)
    assert got == designed, "Kafka holds the records in another order than published"
    # Fresh topics: offsets count from 0 without gaps, so an offset indexes the design.
    tags = {(role, part, off): tag_of[(role, part)][off] for role, part, off, _, _ in read}
    truth = model_of(read, faults_of(p.records))
    first = datetime.fromtimestamp(p.t0 - SPAN - D, TZ).date().isoformat()
    last = (datetime.fromtimestamp(time.time(), TZ).date() + timedelta(days=1)).isoformat()
    obs = observe(w, truth, first, last)
    problems = compare(obs, truth, p.t0)
    problems += compare_records(cluster, read, truth, tags)
    if pipeline:
        m = obs.metrics
        for role in ROLES:
            topic = cluster.topic(role)
            outcomes = [o for (r, *_), o in zip(read, truth.outcomes, strict=True) if r == role]
            want = {"received": len(outcomes),
                    "processed": sum(1 for o in outcomes if o == "counted")}
            got_p = {"received": sample(m, "watchfloor_events_received_total", topic=topic),
                     "processed": sample(m, "watchfloor_events_processed_total", topic=topic)}
            if got_p != want:
                problems.append(f"{topic}: watchfloor {got_p}, truth {want}")
            reasons = Counter(o for o in outcomes if o not in ("counted", "forwarded"))
            got_r = {dict(k[1])["reason"]: v for k, v in m.items()
                     if k[0] == "watchfloor_events_rejected_total"
                     and dict(k[1])["topic"] == topic and v}
            if got_r != {r: float(n) for r, n in reasons.items()}:
                problems.append(f"{topic} rejected: watchfloor {got_r}, truth {dict(reasons)}")
    summary = Counter(truth.outcomes)
    assert not problems, (
        f"{len(problems)} differences from the documented behaviour "
        f"(outcomes {dict(summary)}; {'; '.join(notes)}):\n" + "\n".join(problems[:150])
    )


def coverage(p: Plan) -> Counter[tuple[str, str]]:
    order = p.records
    m = model_of(((r.role, r.target, i, r.key, r.value) for i, r in enumerate(order)),
                 faults_of(order))
    return Counter((r.tag, o) for r, o in zip(order, m.outcomes, strict=True))


def test_the_records_cover_every_case(records: Plan) -> None:
    """The scenarios the crash runs rely on really happen (the model says what they do)."""
    cov = coverage(records)
    n = len(records.records)
    assert 2700 <= n <= 3400, n
    reasons = {o for (_, o) in cov}
    assert reasons >= {"counted", "duplicate", "too_late", "empty", "too_large", "not_utf8",
                       "malformed_json", "schema", "unknown_type", "wrong_topic",
                       "unknown_district", "naive_time", "time_out_of_range",
                       "deadline_before_found", "forwarded"}, reasons
    must = [
        ("exact repeat", "duplicate"),
        ("exact repeat past the identity horizon", "duplicate"),
        ("exact repeat of a forgotten run", "too_late"),
        ("same identity re-stamped", "duplicate"),
        ("rectification retried after a failed visit", "duplicate"),
        ("rectification retried (new id) after a failed visit", "duplicate"),
        ("rectification older than the failed visit", "duplicate"),
        ("failed visit retried after a newer rectification", "duplicate"),
        ("failed visit retried (new id) after a newer rectification", "duplicate"),
        ("failed visit older than the round's rectification", "duplicate"),
        ("look-back visit failed", "counted"),
        ("look-back visit confirmed", "counted"),
        ("rectified before found", "counted"),
        ("hazard found after its rectification", "counted"),
        ("hazard found after a rectification and a failed visit", "counted"),
        ("rectification after its confirming visit", "counted"),
        ("late rectification of an open hazard", "too_late"),
        ("late failed visit", "too_late"),
        ("late clearance of an open case", "too_late"),
        ("late resolution of an open dispute", "too_late"),
        ("late filing", "too_late"),
        ("late finding", "too_late"),
        ("rectification of a hazard never counted as found", "counted"),
        ("case cleared before filed", "counted"),
        ("case filed after its clearance", "counted"),
        ("patrol out of order", "counted"),
        ("same run, new identity", "duplicate"),
        ("run id reused after the horizon", "counted"),
        ("identity shared with a dispute", "counted"),
        ("identity shared with a case", "counted"),
        ("same identity, another case", "duplicate"),
        ("late confirmed visit of an open hazard", "too_late"),
        ("late escalation of an open dispute", "too_late"),
        ("confirmed visit older than a failed one", "duplicate"),
        ("second failed visit", "counted"),
        ("rectified a third time", "counted"),
        ("failed visit older than the latest failed one", "duplicate"),
        ("resolved before reported", "counted"),
        ("escalated before reported", "counted"),
    ]
    missing = [k for k in must if cov[k] == 0]
    assert not missing, missing
    assert len(records.dropped) < 40, records.dropped


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.timeout(300)
def test_three_sigkills_during_publication(
    cluster: Cluster, workers: Callable[..., WorkerProcess], records: Plan
) -> None:
    """SIGKILL the worker three times at random points while the records are published;
    every figure and every record's fate still match the documents."""
    seed = int(os.environ.get("WATCHFLOOR_TEST_KILL_SEED", "0")) or int(time.time())
    w, notes = run(cluster, workers, records, kills=3, rng=random.Random(seed))
    check_run(cluster, w, records, [f"kill seed {seed}", *notes], pipeline=False)


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.timeout(300)
def test_same_records_without_kills(
    cluster: Cluster, workers: Callable[..., WorkerProcess], records: Plan
) -> None:
    """The same records, never killed: the same figures, and the pipeline counters too."""
    w, notes = run(cluster, workers, records, kills=0, rng=random.Random(0))
    check_run(cluster, w, records, notes, pipeline=True)

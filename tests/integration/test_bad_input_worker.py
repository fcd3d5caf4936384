"""Bad input through the real broker into a running worker: each record counted or dead-lettered."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.clock import SystemClock
from streams.deadletter import DEAD_LETTER_HEADERS
from streams.events import REASONS
from streams.partitioning import district_partition
from streams.reference import load_reference
from streams.settings import Settings
from streams.validation import EventValidator

from .harness import TYPES, Cluster, WorkerProcess, event, sample, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]

TZ = ZoneInfo("Asia/Shanghai")
PARTITIONS = 4
ROLES = ("incidents", "disputes", "patrols")
# The measures a kind adds one to, by the all-time counter a worker exports per district.
TOTAL_OF_KIND = {
    "case_filed": "watchfloor_cases_filed_total",
    "case_cleared": "watchfloor_cases_cleared_total",
    "dispute_reported": "watchfloor_disputes_reported_total",
    "dispute_resolved": "watchfloor_disputes_resolved_total",
    "dispute_escalated": "watchfloor_disputes_escalated_total",
    "hazard_found": "watchfloor_hazards_found_total",
    "hazard_rectified": "watchfloor_hazards_rectified_total",
    "patrol_completed": "watchfloor_patrols_completed_total",
}

# What Faust and mode print when an agent (or the app) crashes and is restarted, as seen
# in a probe app whose agent raises: ``[ERROR] [^----Agent*: crashapp.boom]: Crashed
# reason=ValueError(...)`` followed by ``[INFO] [^----OneForOneSupervisor: (...)]:
# Restarting dead <Agent*: crashapp.boom>! Last crash reason: ...``. "Restarting on
# rebalance" is an agent cancelled outside a stop; the last two are Watchfloor's own
# lines for a batch it could not write and a record the engine failed on.
CRASH_LINES = (
    "Crashed reason=",
    "Restarting dead",
    "Max restarts exceeded",
    "Restarting on rebalance",
    "Could not write the results of a batch",
    "Engine failed on",
)


# --- sending and reading back -----------------------------------------------------------


@dataclass
class Rec:
    """One record to send, what must become of it, and where Kafka put it."""

    role: str
    key: bytes | None
    value: bytes | None
    expect: str | None  # a rejection reason, or None: counted
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    kind: str | None = None  # for counted records: which figure it adds to
    district: str | None = None
    label: str = ""
    topic: str = ""
    partition: int = -1
    offset: int = -1
    timestamp_ms: int = -1

    @property
    def coords(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


def good(doc: dict[str, Any], label: str = "good") -> Rec:
    kind = next(k for k, t in TYPES.items() if t == doc["type"])
    return Rec(
        _role(doc["type"]),
        doc["district"].encode(),
        orjson.dumps(doc),
        None,
        kind=kind,
        district=doc["district"],
        label=label,
    )


def bad(
    reason: str,
    doc_or_bytes: dict[str, Any] | bytes | None,
    label: str,
    *,
    role: str | None = None,
    key: bytes | None = None,
    headers: Sequence[tuple[str, bytes]] = (),
) -> Rec:
    if isinstance(doc_or_bytes, dict):
        value: bytes | None = orjson.dumps(doc_or_bytes)
        district = doc_or_bytes.get("district")
        if key is None and isinstance(district, str):
            key = district.encode()
        if role is None:
            role = _role(str(doc_or_bytes.get("type", "")))
    else:
        value = doc_or_bytes
    return Rec(
        role or "incidents",
        key if key is not None else b"jinshui",
        value,
        reason,
        list(headers),
        label=label,
    )


def _role(etype: str) -> str:
    part = etype.split(".")[1] if etype.count(".") >= 2 else ""
    return {"incident": "incidents", "dispute": "disputes"}.get(
        part, "patrols" if part in {"patrol", "hazard"} else "incidents"
    )


class Sender:
    """A producer kept for a whole test; records are sent in order and their place noted."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        # One request in flight per connection: with retries, records to one partition
        # keep the order they were sent in (a late record must follow its newer peer).
        self.producer = KafkaProducer(
            bootstrap_servers=cluster.bootstrap,
            acks="all",
            linger_ms=5,
            max_in_flight_requests_per_connection=1,
            max_request_size=4 * 1024 * 1024,
        )
        self.sent: list[Rec] = []

    def send(self, recs: Iterable[Rec]) -> list[Rec]:
        batch = list(recs)
        futures = []
        base_ms = int(time.time() * 1000)
        for i, r in enumerate(batch):
            # A distinct, known timestamp per record: the dead letter must carry it back.
            r.timestamp_ms = base_ms - 1000 * (len(batch) - i)
            futures.append(
                self.producer.send(
                    self.cluster.topic(r.role),
                    key=r.key,
                    value=r.value,
                    headers=r.headers or None,
                    timestamp_ms=r.timestamp_ms,
                )
            )
        self.producer.flush()
        for r, f in zip(batch, futures, strict=True):
            meta = f.get(timeout=30)
            r.topic, r.partition, r.offset = meta.topic, meta.partition, meta.offset
        self.sent.extend(batch)
        return batch

    def close(self) -> None:
        self.producer.close()


class DeadLetters:
    """Reads the dead-letter topic incrementally, without a consumer group."""

    def __init__(self, cluster: Cluster) -> None:
        self.consumer = KafkaConsumer(
            bootstrap_servers=cluster.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self.parts = [TopicPartition(cluster.topic("deadletter"), p) for p in range(PARTITIONS)]
        self.consumer.assign(self.parts)
        self.consumer.seek_to_beginning(*self.parts)
        self.records: list[Any] = []

    def read_to_end(self, timeout: float = 20.0) -> list[Any]:
        """Everything written so far; returns the records new since the last call."""
        ends = self.consumer.end_offsets(self.parts)
        new: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(self.consumer.position(tp) < ends[tp] for tp in self.parts):
            assert time.monotonic() < deadline, "the dead-letter topic could not be read"
            for batch in self.consumer.poll(timeout_ms=200).values():
                new.extend(batch)
        self.records.extend(new)
        return new

    def close(self) -> None:
        self.consumer.close()


def headers_of(letter: Any) -> dict[str, bytes]:
    return dict(letter.headers)


def source_coords(letter: Any) -> tuple[str, int, int]:
    h = headers_of(letter)
    return (
        h["wf-source-topic"].decode(),
        int(h["wf-source-partition"]),
        int(h["wf-source-offset"]),
    )


def pipeline(w: WorkerProcess, cluster: Cluster, name: str) -> int:
    """A pipeline counter summed over the three source topics."""
    m = w.metrics()
    return int(sum(sample(m, name, topic=cluster.topic(r)) or 0 for r in ROLES))


def assert_never_crashed(w: WorkerProcess) -> None:
    assert w.alive(), f"the worker exited:\n{w.log_tail()}"
    assert w.starts == 1
    log = w.log_path.read_text(errors="replace")
    for line in CRASH_LINES:
        assert line not in log, f"the worker log has {line!r}:\n{w.log_tail(120)}"
    assert w.get("/health") == (200, {"status": "ok"})
    status, ready = w.get("/ready")
    assert status == 200 and ready["ready"] is True, ready
    m = w.metrics()
    assert sample(m, "watchfloor_dead_letter_errors_total") == 0
    assert sample(m, "watchfloor_ready") == 1


# --- the catalogue of bad input ----------------------------------------------------------


def catalogue(now: datetime, rng: random.Random) -> tuple[list[Rec], list[Rec]]:
    """Two phases: events that set each district's latest time, then the mix (good and bad)."""
    h1 = now - timedelta(hours=1)
    first: list[Rec] = []
    anchors = {}
    for d in ("jinshui", "erqi", "zhongyuan", "gaoxin"):
        anchors[d] = event(
            "case_filed", d, f"{d}-case-a", h1, {"category": "theft", "severity": "minor"}
        )
        first.append(good(anchors[d], "anchor case"))
    hazard_a = event(
        "hazard_found",
        "jinshui",
        "jinshui-hz-a",
        h1,
        {
            "category": "fire",
            "major": False,
            "deadline": (h1 + timedelta(days=3)).isoformat(),
            "responsible_unit": "jinshui-fire-brigade",
        },
    )
    first.append(good(hazard_a, "anchor hazard"))
    dispute_a = event(
        "dispute_reported",
        "erqi",
        "erqi-dp-a",
        h1,
        {"category": "neighbourhood", "responsible_unit": "erqi-mediation"},
    )
    first.append(good(dispute_a, "anchor dispute"))

    def case(
        d: str = "jinshui", subject: str = "", when: datetime | None = None, **data: Any
    ) -> dict[str, Any]:
        return event(
            "case_filed",
            d,
            subject or f"{d}-case-{rng.getrandbits(32):08x}",
            when or now - timedelta(minutes=5),
            {"category": "theft", "severity": "minor", **data},
        )

    def hazard(d: str = "jinshui", deadline: str | None = None) -> dict[str, Any]:
        when = now - timedelta(minutes=10)
        return event(
            "hazard_found",
            d,
            f"{d}-hz-{rng.getrandbits(32):08x}",
            when,
            {
                "category": "gas",
                "major": True,
                "deadline": deadline or (when + timedelta(days=2)).isoformat(),
                "responsible_unit": f"{d}-gas-office",
            },
        )

    def without(doc: dict[str, Any], *path: str) -> dict[str, Any]:
        doc = orjson.loads(orjson.dumps(doc))
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        del parent[path[-1]]
        return doc

    def with_(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
        doc = orjson.loads(orjson.dumps(doc))
        parts = path.split(".")
        parent = doc
        for p in parts[:-1]:
            parent = parent[p]
        parent[parts[-1]] = value
        return doc

    valid_case = case()
    valid_bytes = orjson.dumps(valid_case)
    padded = {**case(), **{f"pad{i:03d}": "x" * 256 for i in range(300)}}
    trace = [("trace-id", b"t-0001"), ("content-type", b"application/json")]
    forged = [("wf-reason", b"forged"), ("wf-source-offset", b"999"), ("trace-id", b"t-0002")]

    second: list[Rec] = [
        # Good ones, on every topic, interleaved with the bad.
        good(case("zhongyuan"), "good case"),
        good(
            event("case_cleared", "jinshui", "jinshui-case-a", now - timedelta(minutes=3)),
            "good clearance",
        ),
        good(
            event(
                "dispute_resolved",
                "erqi",
                "erqi-dp-a",
                now - timedelta(minutes=2),
                {"responsible_unit": "erqi-mediation"},
            ),
            "good resolution",
        ),
        good(
            event(
                "mediation_started",
                "erqi",
                "erqi-dp-b",
                now - timedelta(minutes=9),
                {"responsible_unit": "erqi-mediation"},
            ),
            "good mediation",
        ),
        good(
            event(
                "hazard_rectified",
                "jinshui",
                "jinshui-hz-a",
                now - timedelta(minutes=1),
                {"responsible_unit": "jinshui-fire-brigade"},
            ),
            "good rectification",
        ),
        good(
            event(
                "patrol_completed",
                "gaoxin",
                "gaoxin-pt-1",
                now - timedelta(minutes=1),
                {
                    "team": "gaoxin-pt01",
                    "started_at": (now - timedelta(hours=2)).isoformat(),
                    "ended_at": (now - timedelta(minutes=1)).isoformat(),
                    "area": "gaoxin-s1",
                    "findings": 2,
                },
            ),
            "good patrol",
        ),
        good(hazard("erqi"), "good hazard"),
        good(
            event(
                "dispute_escalated",
                "gaoxin",
                "gaoxin-dp-1",
                now - timedelta(minutes=4),
                {"escalated_to": "city-petition-office"},
            ),
            "good escalation",
        ),
        # Malformed JSON.
        bad("malformed_json", valid_bytes[: len(valid_bytes) // 2], "truncated JSON"),
        bad("malformed_json", b"case filed, jinshui, theft", "plain text"),
        bad("malformed_json", valid_bytes + b"}", "trailing brace"),
        bad("malformed_json", b'{"id": NaN}', "NaN"),
        # Wrong types.
        bad("schema", with_(case(), "data.severity", 3), "severity a number"),
        bad("schema", with_(hazard(), "data.major", "no"), "major a string"),
        bad("schema", with_(case(), "time", 1712900000), "time a number"),
        bad("schema", with_(case(), "subject", ["jinshui-case-1"]), "subject a list"),
        bad("schema", with_(case(), "data", "theft"), "data a string"),
        bad("schema", b"[1, 2, 3]", "an array, not an event"),
        bad("schema", b"42", "a bare number"),
        # Missing fields.
        bad("schema", without(case(), "subject"), "no subject"),
        bad("schema", without(case(), "time"), "no time"),
        bad("schema", without(case(), "data", "category"), "no data.category"),
        bad("schema", without(hazard(), "data", "deadline"), "no data.deadline"),
        bad("schema", without(case(), "specversion"), "no specversion"),
        # Not allowed.
        bad("schema", with_(case(), "data.suspect_name", "x"), "extra data field"),
        # Unknown event types.
        bad(
            "unknown_type",
            with_(case(), "type", "watchfloor.incident.case_reopened.v1"),
            "unknown type",
            role="incidents",
        ),
        bad(
            "unknown_type",
            with_(case(), "type", "watchfloor.incident.case_filed.v2"),
            "unknown version",
            role="incidents",
        ),
        # Unknown districts.
        bad("unknown_district", case("atlantis"), "unknown district", key=b"atlantis"),
        bad(
            "unknown_district",
            with_(hazard(), "district", "jinshui-east"),
            "unknown district code",
            key=b"jinshui",
        ),
        # Times out of range.
        bad("time_out_of_range", case(when=now + timedelta(hours=2)), "two hours ahead"),
        bad("time_out_of_range", case(when=now + timedelta(days=400)), "next year"),
        bad("time_out_of_range", with_(case(), "time", "1999-12-31T23:59:59+08:00"), "before 2000"),
        bad("time_out_of_range", with_(case(), "time", "1970-01-01T00:00:00Z"), "epoch zero"),
        # Naive timestamps.
        bad(
            "naive_time", with_(case(), "time", now.replace(tzinfo=None).isoformat()), "naive time"
        ),
        bad(
            "naive_time",
            with_(
                hazard(),
                "data.deadline",
                (now + timedelta(days=1)).replace(tzinfo=None).isoformat(),
            ),
            "naive deadline",
        ),
        # Oversized (otherwise valid, checked below).
        bad("too_large", padded, "oversized", headers=trace),
        # Duplicates: an exact repeat of a counted event, and the same transition again.
        bad("duplicate", anchors["erqi"], "exact repeat", headers=trace),
        bad(
            "duplicate",
            {**anchors["gaoxin"], "id": "gaoxin-case-a-again"},
            "same transition, new id",
        ),
        bad(
            "duplicate",
            {**hazard_a, "id": "hz-again", "time": now.isoformat()},
            "hazard found twice",
        ),
        # Not UTF-8.
        bad("not_utf8", b"\xff\xfe\x00\x01\x02", "binary"),
        bad("not_utf8", valid_bytes.replace(b"theft", b"th\xe9ft"), "latin-1 in a string"),
        bad("not_utf8", "案件".encode("gb18030") + b'{"id": 1}', "GB18030 text"),
        # Empty records: no bytes, and a tombstone (no value at all).
        bad("empty", b"", "empty value", headers=forged),
        bad("empty", None, "tombstone"),
        # Deadlines not after the time found.
        bad(
            "deadline_before_found",
            hazard(deadline=(now - timedelta(hours=1)).isoformat()),
            "deadline before found",
        ),
        bad(
            "deadline_before_found",
            hazard(deadline=(now - timedelta(minutes=10)).isoformat()),
            "deadline at found",
        ),
        # Wrong topic.
        bad("wrong_topic", case(), "case on the patrol topic", role="patrols"),
        bad("wrong_topic", hazard(), "hazard on the incident topic", role="incidents"),
        bad(
            "wrong_topic",
            dispute_a | {"id": "dp-x", "subject": "erqi-dp-x"},
            "dispute on the incident topic",
            role="incidents",
        ),
        # Wrong partition: keyed by another district, so it lands in that one's partition.
        bad(
            "wrong_partition", case("jinshui"), "jinshui keyed as erqi", key=b"erqi", headers=forged
        ),
        bad("wrong_partition", hazard("gaoxin"), "gaoxin keyed as zhongyuan", key=b"zhongyuan"),
        # Too late: more than the grace (24 h) before the district's latest incident.
        bad("too_late", case("zhongyuan", when=now - timedelta(hours=30)), "30 h old"),
        bad("too_late", case("jinshui", when=now - timedelta(days=20)), "20 days old"),
    ]
    # Good and bad interleaved; the records that depend on order (repeats, late ones)
    # follow their counterparts of the first phase whatever the shuffle does.
    rng.shuffle(second)
    return first, second


def test_every_bad_input_kind_is_dead_lettered_and_the_rest_counted(
    cluster: Cluster, workers: Callable[..., WorkerProcess]
) -> None:
    # Forwarding off: this test sees every reason, wrong_partition included
    # (tests/integration/test_forwarding.py covers forwarding).
    w = workers(WATCHFLOOR_FORWARD_MISROUTED="false")
    w.wait_ready()
    rebalances = sample(w.metrics(), "watchfloor_rebalances_total")
    now = datetime.now(TZ)
    first, second = catalogue(now, random.Random(20261128))
    reasons_seen = {r.expect for r in second if r.expect}
    assert reasons_seen == set(REASONS) - {"internal_error"}, "every bad-input kind is sent"

    # The wrong-partition records really are in another district's partition, and the
    # oversized record has no fault but its size.
    for r in second:
        if r.expect == "wrong_partition":
            doc = orjson.loads(r.value or b"")
            assert r.key is not None
            assert district_partition(r.key.decode(), PARTITIONS) != district_partition(
                doc["district"], PARTITIONS
            )
        if r.expect == "too_large":
            assert len(r.value or b"") > Settings().max_record_bytes
            roomy = EventValidator(
                load_reference(Settings().reference_file),
                clock=SystemClock(),
                max_record_bytes=1 << 20,
            )
            roomy.validate(r.value)

    sender = Sender(cluster)
    letters = DeadLetters(cluster)
    try:
        sender.send(first)
        wait_for(
            lambda: pipeline(w, cluster, "watchfloor_events_processed_total") == len(first),
            what="the first phase counted",
        )
        sender.send(second)
        sent = sender.sent
        wait_for(
            lambda: pipeline(w, cluster, "watchfloor_events_received_total") == len(sent),
            what=f"all {len(sent)} records read",
        )
        dead = letters.read_to_end()
    finally:
        sender.close()
        letters.close()

    counted = [r for r in sent if r.expect is None]
    rejected = [r for r in sent if r.expect is not None]
    m = w.metrics()

    # Counted + dead-lettered = sent, exactly; no dead letter written twice.
    processed = pipeline(w, cluster, "watchfloor_events_processed_total")
    coords = {source_coords(x) for x in dead}
    assert len(coords) == len(dead), "a dead letter was written twice without a restart"
    assert processed == len(counted)
    assert processed + len(coords) == len(sent)
    assert coords == {r.coords for r in rejected}

    # Per topic: received, counted and each reason.
    for role in ROLES:
        topic = cluster.topic(role)
        assert sample(m, "watchfloor_events_received_total", topic=topic) == sum(
            1 for r in sent if r.role == role
        )
        assert sample(m, "watchfloor_events_processed_total", topic=topic) == sum(
            1 for r in counted if r.role == role
        )
        want = Counter(r.expect for r in rejected if r.role == role)
        for reason in REASONS:
            got = sample(m, "watchfloor_events_rejected_total", topic=topic, reason=reason) or 0
            assert got == want[reason], f"{topic} {reason}"

    # District figures: exactly the good records, each in its own figure.
    totals: Counter[tuple[str, str]] = Counter()
    for r in counted:
        if r.kind in TOTAL_OF_KIND:
            assert r.district is not None
            totals[(TOTAL_OF_KIND[r.kind], r.district)] += 1
    for name in TOTAL_OF_KIND.values():
        for d in ("jinshui", "erqi", "zhongyuan", "gaoxin", "guancheng", "atlantis"):
            assert (sample(m, name, district=d) or 0) == totals[(name, d)], f"{name} {d}"
    assert sample(m, "watchfloor_open_cases", district="jinshui") == 0  # filed, then cleared
    assert sample(m, "watchfloor_open_hazards", district="jinshui") == 0
    assert sample(m, "watchfloor_open_hazards", district="erqi") == 1
    assert sample(m, "watchfloor_late_events_total", district="zhongyuan") == 1
    assert sample(m, "watchfloor_late_events_total", district="jinshui") == 1
    assert sample(m, "watchfloor_duplicate_events_total", district="erqi") == 1
    assert sample(m, "watchfloor_duplicate_events_total", district="gaoxin") == 1
    assert sample(m, "watchfloor_duplicate_events_total", district="jinshui") == 1
    status, jinshui = w.get("/api/v1/districts/jinshui")
    assert status == 200
    assert (
        jinshui["rolling"]["24h"]["cases_filed"]
        == totals[("watchfloor_cases_filed_total", "jinshui")]
    )

    # Every dead letter: original key, value and headers untouched, and the right reason.
    by_coords = {source_coords(x): x for x in dead}
    for r in rejected:
        letter = by_coords[r.coords]
        h = headers_of(letter)
        assert letter.key == r.key, r.label
        assert letter.value == r.value, r.label
        assert h["wf-reason"].decode() == r.expect, f"{r.label}: {h['wf-error']!r}"
        assert h["wf-error"], r.label
        assert int(h["wf-source-timestamp"]) == r.timestamp_ms, r.label
        assert h["wf-worker"].decode() == w.url
        rejected_at = datetime.fromisoformat(h["wf-rejected-at"].decode())
        assert rejected_at.tzinfo is not None
        assert abs(rejected_at.timestamp() - time.time()) < 300
        kept = [(k, v) for k, v in letter.headers if k not in DEAD_LETTER_HEADERS]
        assert kept == [(k, v) for k, v in r.headers if k not in DEAD_LETTER_HEADERS], r.label
        ours = [k for k, _ in letter.headers if k in DEAD_LETTER_HEADERS]
        assert len(ours) == len(set(ours)), f"{r.label}: a forged wf- header survived"
    # Errors name the field at fault where there is one.
    errors = {r.label: headers_of(by_coords[r.coords])["wf-error"].decode() for r in rejected}
    assert "data.severity" in errors["severity a number"]
    assert "subject" in errors["no subject"]
    assert "data.deadline" in errors["naive deadline"]
    assert "partition" in errors["jinshui keyed as erqi"]

    assert sample(w.metrics(), "watchfloor_rebalances_total") == rebalances
    assert_never_crashed(w)


# --- property: whatever arrives, the worker keeps running and accounts for it ------------

DISTRICTS = ("jinshui", "erqi", "zhongyuan", "gaoxin", "huiji", "baihe")
ATTRS = (
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "district",
    "data",
    "datacontenttype",
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def valid_doc(draw: Any, now: datetime) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(TYPES)))
    d = draw(st.sampled_from(DISTRICTS))
    # Subjects from a pool, so repeats and out-of-order lifecycles happen by chance.
    subject = f"{d}-{kind.split('_')[0]}-{draw(st.integers(0, 400))}"
    when = now - timedelta(minutes=draw(st.integers(0, 60 * 40)))
    by_kind: dict[str, dict[str, Any]] = {
        "case_filed": {"category": "fight", "severity": "serious"},
        "case_cleared": {},
        "dispute_reported": {"category": "unpaid_wages", "responsible_unit": f"{d}-labour"},
        "mediation_started": {"responsible_unit": f"{d}-labour"},
        "dispute_resolved": {},
        "dispute_escalated": {"escalated_to": "city-petition-office"},
        "patrol_completed": {
            "team": f"{d}-pt01",
            "started_at": (when - timedelta(hours=1)).isoformat(),
            "ended_at": when.isoformat(),
            "area": f"{d}-s1",
            "findings": 0,
        },
        "hazard_found": {
            "category": "construction",
            "major": False,
            "deadline": (when + timedelta(days=5)).isoformat(),
            "responsible_unit": f"{d}-building-office",
        },
        "hazard_rectified": {},
        "hazard_verified": {"result": "confirmed"},
        "accident_reported": {
            "category": "construction",
            "deaths": draw(st.integers(0, 3)),
            "serious_injuries": draw(st.integers(0, 5)),
            "direct_loss_yuan": draw(st.integers(0, 2_000_000)),
        },
    }
    data = by_kind[kind]
    return event(kind, d, subject, when, data, id=f"{subject}-{kind}-{draw(st.integers(0, 3))}")


def mutate(draw: Any, doc: dict[str, Any], now: datetime) -> bytes:
    # Listed first and often: about half the events arrive unharmed.
    how = draw(
        st.sampled_from(
            [
                *["none"] * 12,
                "drop",
                "drop_data",
                "retype",
                "type",
                "district",
                "time",
                "truncate",
                "flip",
                "not_utf8",
                "big",
            ]
        )
    )
    if how == "drop":
        del doc[draw(st.sampled_from(ATTRS))]
    elif how == "drop_data" and doc["data"]:
        del doc["data"][draw(st.sampled_from(sorted(doc["data"])))]
    elif how == "retype":
        where = draw(st.sampled_from(["top", "data"]))
        target = doc if where == "top" else doc["data"]
        name = draw(st.sampled_from(sorted(target) or ["extra"]))
        target[name] = draw(json_values)
    elif how == "type":
        doc["type"] = draw(st.one_of(st.sampled_from(sorted(TYPES.values())), st.text(max_size=40)))
    elif how == "district":
        doc["district"] = draw(st.one_of(st.sampled_from(DISTRICTS), st.text(max_size=12)))
    elif how == "time":
        doc["time"] = draw(
            st.sampled_from(
                [
                    (now + timedelta(hours=3)).isoformat(),
                    "1999-01-01T00:00:00Z",
                    now.replace(tzinfo=None).isoformat(),
                    "2026-02-30T10:00:00+08:00",
                    "yesterday",
                    (now - timedelta(days=60)).isoformat(),
                ]
            )
        )
    raw = orjson.dumps(doc)
    if how == "truncate":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif how == "flip":
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1 :]
    elif how == "not_utf8":
        i = draw(st.integers(0, len(raw)))
        raw = raw[:i] + b"\xc3\x28" + raw[i:]
    elif how == "big":
        raw = raw[:-1] + b',"pad":"' + b"z" * 70_000 + b'"}'
    return raw


@st.composite
def records(draw: Any, now: datetime) -> Rec:
    role = draw(st.sampled_from(ROLES))
    if draw(st.sampled_from(["event", "event", "event", "bytes"])) == "bytes":
        value: bytes | None = draw(
            st.sampled_from(["binary", "binary", "binary", "empty", "none"]).flatmap(
                lambda v: (
                    st.binary(min_size=1, max_size=200)
                    if v == "binary"
                    else st.just(b"" if v == "empty" else None)
                )
            )
        )
        key = draw(
            st.one_of(
                st.none(),
                st.sampled_from(DISTRICTS).map(str.encode),
                st.binary(min_size=1, max_size=8),
            )
        )
        if value is None and key is None:
            key = b"jinshui"  # Kafka refuses a record with neither
        return Rec(role, key, value, None, label="random bytes")
    doc = valid_doc(draw, now)
    if draw(st.sampled_from(["own", "own", "own", "any"])) == "own":
        role = _role(doc["type"])
    key_choice = draw(st.sampled_from([*["own"] * 8, "other", "none"]))
    key = {
        "own": doc["district"].encode(),
        "none": None,
        "other": draw(st.sampled_from(DISTRICTS)).encode(),
    }[key_choice]
    value = mutate(draw, doc, now)
    return Rec(role, key, value, None, label="mutated event")


def test_property_any_input_is_counted_or_dead_lettered(
    cluster: Cluster, workers: Callable[..., WorkerProcess]
) -> None:
    w = workers(WATCHFLOOR_FORWARD_MISROUTED="false")  # each letter maps to what was sent
    w.wait_ready()
    sender = Sender(cluster)
    letters = DeadLetters(cluster)
    now = datetime.now(TZ)
    seen: dict[tuple[str, int, int], Rec] = {}

    # No shrinking: each step would be a round trip through the broker and the worker,
    # and the failing batch is printed whole anyway.
    @settings(
        max_examples=35,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(batch=st.lists(records(now), min_size=1, max_size=10))
    def prop(batch: list[Rec]) -> None:
        assert w.alive(), w.log_tail()
        before = pipeline(w, cluster, "watchfloor_events_processed_total")
        sender.send(batch)
        for r in batch:
            seen[r.coords] = r
        total = len(sender.sent)
        wait_for(
            lambda: pipeline(w, cluster, "watchfloor_events_received_total") == total,
            timeout=30,
            what=f"{total} records read",
        )
        counted = pipeline(w, cluster, "watchfloor_events_processed_total") - before
        new = letters.read_to_end()
        assert counted + len(new) == len(batch), (counted, len(new), len(batch))
        for letter in new:
            r = seen[source_coords(letter)]
            assert r in batch
            reason = headers_of(letter)["wf-reason"].decode()
            assert reason in REASONS and reason != "internal_error", headers_of(letter)
            assert letter.value == r.value and letter.key == r.key
            # An independent oracle for the encoding-level reasons.
            if not r.value:
                assert reason == "empty"
            elif len(r.value) > Settings().max_record_bytes:
                assert reason == "too_large"
            elif not _is_utf8(r.value):
                assert reason == "not_utf8"

    try:
        prop()
        sent = len(sender.sent)
        assert 100 <= sent <= 300, sent
        dead = {source_coords(x) for x in letters.records}
        processed = pipeline(w, cluster, "watchfloor_events_processed_total")
        assert processed + len(dead) == sent
        assert len(dead) == len(letters.records)
        # The mix reached both sides, and many reasons: the property was not vacuous.
        reasons = Counter(headers_of(x)["wf-reason"].decode() for x in letters.records)
        print(f"property: {sent} sent, {processed} counted, {len(dead)} dead letters {reasons}")
        assert processed >= 15 and len(dead) >= 50
        assert len(reasons) >= 8, reasons
    finally:
        sender.close()
        letters.close()
    assert_never_crashed(w)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True

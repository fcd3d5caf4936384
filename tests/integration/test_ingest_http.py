"""HTTP ingest over real HTTP on a running worker: tokens, scopes, limits, answers and counts."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from streams.ingest import hash_token, new_token

from .harness import Cluster, WorkerProcess, event, sample, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]

TZ = ZoneInfo("Asia/Shanghai")
BODY_LIMIT = 16 * 1024
BATCH_LIMIT = 20
RECORD_LIMIT = 4096
ROLES = ("incidents", "disputes", "patrols")
# Lines a worker prints when something failed inside it: aiohttp's for a view that raised
# (the client got a 500), mode's and Faust's for a crashed and restarted agent.
FAILURE_LINES = (
    "Error handling request",
    "Traceback",
    "Crashed reason=",
    "Restarting dead",
    "Engine failed on",
)


@dataclass
class Node:
    """One worker with HTTP ingest on, shared by the module's tests, and its tokens."""

    cluster: Cluster
    worker: WorkerProcess
    tokens: dict[str, str]  # token name -> the secret a publisher sends
    tokens_file: Path
    entries: list[dict[str, Any]]  # what the tokens file holds at the start

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def write_tokens(self, entries: list[dict[str, Any]] | bytes) -> None:
        raw = entries if isinstance(entries, bytes) else orjson.dumps({"tokens": entries})
        # Written aside and renamed into place, as a careful operator or Kubernetes does.
        part = self.tokens_file.with_suffix(".part")
        part.write_bytes(raw)
        part.replace(self.tokens_file)


TOKEN_RIGHTS = {
    "city-all": (["*"], ["*"]),
    "jinshui-grid": (["jinshui"], ["watchfloor.hazard.*"]),
    "police": (["*"], ["watchfloor.incident.*"]),
}


@pytest.fixture(scope="module")
def node(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    cluster = Cluster(kafka_bootstrap)
    cluster.create_topics()
    secrets = {name: new_token() for name in TOKEN_RIGHTS}
    entries = [
        {"name": name, "sha256": hash_token(secrets[name]), "districts": d, "types": t}
        for name, (d, t) in TOKEN_RIGHTS.items()
    ]
    tmp: Path = tmp_path_factory.mktemp("ingest")
    tokens_file = tmp / "tokens.json"
    tokens_file.write_bytes(orjson.dumps({"tokens": entries}))
    w = WorkerProcess(
        cluster,
        tmp,
        "w1",
        WATCHFLOOR_INGEST_TOKENS_FILE=str(tokens_file),
        WATCHFLOOR_INGEST_MAX_BODY_BYTES=str(BODY_LIMIT),
        WATCHFLOOR_INGEST_MAX_BATCH=str(BATCH_LIMIT),
        WATCHFLOOR_MAX_RECORD_BYTES=str(RECORD_LIMIT),
    ).start()
    try:
        w.wait_ready()
        yield Node(cluster, w, secrets, tokens_file, entries)
    finally:
        w.stop()


@pytest.fixture(autouse=True)
def worker_unharmed(node: Node) -> Iterator[None]:
    """After each test: the worker still runs, answers, and logged no failure."""
    yield
    w = node.worker
    assert w.alive(), f"the worker exited:\n{w.log_tail()}"
    assert w.get("/health") == (200, {"status": "ok"})
    log = w.log_path.read_text(errors="replace")
    for line in FAILURE_LINES:
        assert line not in log, f"the worker log has {line!r}:\n{w.log_tail(120)}"


# --- helpers ---------------------------------------------------------------------------


def post(
    node: Node, body: bytes | Any, headers: Mapping[str, str] | None = None
) -> tuple[int, http.client.HTTPResponse, Any]:
    """POST to /api/v1/events; returns status, the response (for headers) and its JSON."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    conn = http.client.HTTPConnection("127.0.0.1", node.worker.port, timeout=20)
    try:
        conn.request(
            "POST",
            "/api/v1/events",
            body=raw,
            headers={"Content-Type": "application/cloudevents+json", **(headers or {})},
        )
        resp = conn.getresponse()
        payload = resp.read()
    finally:
        conn.close()
    assert resp.status != 500, payload
    assert resp.getheader("Content-Type", "").startswith("application/json"), payload
    return resp.status, resp, orjson.loads(payload)


def raw_post(
    node: Node,
    headers: Mapping[str, str],
    pieces: list[bytes],
    *,
    pause: float = 0.15,
    expect_continue: bool = False,
    timeout: float = 60.0,
) -> tuple[int, dict[str, str], Any]:
    """POST over a bare socket, the body in ``pieces`` with pauses between them, as a
    client on a slow or busy network sends it (one TCP segment per piece)."""
    sock = socket.create_connection(("127.0.0.1", node.worker.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = [
        "POST /api/v1/events HTTP/1.1",
        f"Host: 127.0.0.1:{node.worker.port}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    received = b""
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        if expect_continue:
            while b"\r\n\r\n" not in received:
                received += sock.recv(65536)
            assert received.startswith(b"HTTP/1.1 100"), received[:80]
            received = received.split(b"\r\n\r\n", 1)[1]
        for piece in pieces:
            time.sleep(pause)
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered early and stopped reading
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
    finally:
        sock.close()
    while received.startswith(b"HTTP/1.1 100"):
        received = received.split(b"\r\n\r\n", 1)[1]
    head_raw, _, body = received.partition(b"\r\n\r\n")
    lines = head_raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    answer_headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    assert status != 500, body
    return status, answer_headers, orjson.loads(body)


def chunked(parts: list[bytes]) -> list[bytes]:
    """The parts as HTTP/1.1 chunks, then the last chunk."""
    return [b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p] + [b"0\r\n\r\n"]


def split(data: bytes, n: int) -> list[bytes]:
    step = max(1, -(-len(data) // n))
    return [data[i : i + step] for i in range(0, len(data), step)]


def ingest_count(node: Node, status: int, reason: str) -> float:
    m = node.worker.metrics()
    return sample(m, "watchfloor_ingest_requests_total", status=str(status), reason=reason) or 0.0


def now() -> datetime:
    return datetime.now(TZ)


def uid() -> str:
    return uuid.uuid4().hex[:10]


def case(district: str, when: datetime | None = None) -> dict[str, Any]:
    return event(
        "case_filed",
        district,
        f"{district}-case-{uid()}",
        when or now() - timedelta(minutes=3),
        {"category": "robbery", "severity": "serious"},
    )


def hazard(district: str, *, deadline: datetime | None = None) -> dict[str, Any]:
    when = now() - timedelta(minutes=5)
    return event(
        "hazard_found",
        district,
        f"{district}-hz-{uid()}",
        when,
        {
            "category": "gas",
            "major": False,
            "deadline": (deadline or when + timedelta(days=3)).isoformat(),
            "responsible_unit": f"{district}-gas-office",
            "found_by": "grid_worker",
        },
    )


def dispute(district: str) -> dict[str, Any]:
    return event(
        "dispute_reported",
        district,
        f"{district}-dp-{uid()}",
        now() - timedelta(minutes=7),
        {
            "category": "unpaid_wages",
            "responsible_unit": f"{district}-labour",
            "people_involved": 4,
        },
    )


def processed(node: Node) -> int:
    m = node.worker.metrics()
    return int(
        sum(
            sample(m, "watchfloor_events_processed_total", topic=node.cluster.topic(r)) or 0
            for r in ROLES
        )
    )


def settled(node: Node) -> int:
    """``received`` once every record already in the topics was counted: a test before
    may have left accepted records on their way to the worker."""
    node.cluster.wait_committed()
    return received(node)


def received(node: Node) -> int:
    m = node.worker.metrics()
    return int(
        sum(
            sample(m, "watchfloor_events_received_total", topic=node.cluster.topic(r)) or 0
            for r in ROLES
        )
    )


def total(node: Node, name: str, district: str) -> int:
    return int(sample(node.worker.metrics(), name, district=district) or 0)


def dead_letters(node: Node) -> list[Any]:
    return node.cluster.read_all("deadletter")


def letter_headers(letter: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in letter.headers}


def at_least(node: Node, n: int) -> list[Any]:
    """The dead-letter topic once it holds ``n`` records (HTTP ones are written at once)."""

    def enough() -> list[Any] | None:
        letters = dead_letters(node)
        return letters if len(letters) >= n else None

    # HTTP dead letters are confirmed before the answer; a short wait is plenty.
    result: list[Any] = wait_for(enough, timeout=15, what=f"{n} dead letters")
    return result


def settle(node: Node, before: int, n: int) -> None:
    """Wait until the worker has read ``n`` more records than ``before``."""
    wait_for(lambda: received(node) >= before + n, timeout=30, what=f"{n} records read")
    assert received(node) == before + n


# --- authentication and scope ---------------------------------------------------------


def test_401_without_a_token_or_with_an_unknown_one(node: Node) -> None:
    doc = case("baihe")
    secret = node.tokens["city-all"]
    refused = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer    "},
        {"Authorization": f"Basic {secret}"},
        {"Authorization": f"Token {secret}"},
        {"Authorization": f"Bearer {secret}x"},
        {"Authorization": f"Bearer {new_token()}"},
        # The stored hash is not the token: a leaked tokens file grants nothing.
        {"Authorization": f"Bearer {hash_token(secret)}"},
    ]
    before = settled(node)
    filed = total(node, "watchfloor_cases_filed_total", "baihe")
    letters_before = len(dead_letters(node))
    for headers in refused:
        status, resp, body = post(node, doc, headers)
        assert status == 401, (headers, body)
        assert resp.getheader("WWW-Authenticate", "").startswith('Bearer realm="watchfloor"')
        assert body["status"] == 401 and body["error"]
        assert secret not in orjson.dumps(body).decode()
    # A known token, scheme in any case, does get in.
    marker = case("baihe")
    status, _, body = post(node, marker, {"Authorization": f"bearer {secret}"})
    assert status == 202, body
    assert body["accepted"] == [marker["id"]]
    settle(node, before, 1)
    # Only the marker reached Kafka: nothing refused was sent, counted or dead-lettered.
    assert total(node, "watchfloor_cases_filed_total", "baihe") == filed + 1
    assert len(dead_letters(node)) == letters_before


def test_403_for_districts_and_types_outside_the_tokens_scope(node: Node) -> None:
    grid = node.auth("jinshui-grid")
    before_found = total(node, "watchfloor_hazards_found_total", "jinshui")
    before_erqi = total(node, "watchfloor_hazards_found_total", "erqi")
    before_cases = total(node, "watchfloor_cases_filed_total", "jinshui")
    before = settled(node)
    letters_before = len(dead_letters(node))

    foreign = hazard("erqi")
    status, _, body = post(node, foreign, grid)
    assert status == 403, body
    assert body["accepted"] == [] and body["rejected_count"] == 1
    assert body["errors"] == [
        {
            "index": 0,
            "id": foreign["id"],
            "status": 403,
            "reason": "district_not_allowed",
            "field": "district",
            "error": "This token may not send events for district erqi.",
        }
    ]

    wrong_kind = case("jinshui")
    status, _, body = post(node, wrong_kind, grid)
    assert status == 403, body
    assert body["errors"][0]["reason"] == "type_not_allowed"
    assert body["errors"][0]["field"] == "type"

    status, _, body = post(node, hazard("jinshui"), node.auth("police"))
    assert status == 403 and body["errors"][0]["reason"] == "type_not_allowed"

    # A batch with an allowed and a forbidden event: the allowed one is taken, the answer
    # is still 403 (every fault is a permission), never 202.
    mine, theirs = hazard("jinshui"), hazard("zhongyuan")
    status, _, body = post(node, [mine, theirs], grid)
    assert status == 403, body
    assert body["accepted"] == [mine["id"]] and body["accepted_count"] == 1
    assert [(e["index"], e["reason"]) for e in body["errors"]] == [(1, "district_not_allowed")]

    settle(node, before, 1)
    assert total(node, "watchfloor_hazards_found_total", "jinshui") == before_found + 1
    assert total(node, "watchfloor_hazards_found_total", "erqi") == before_erqi
    assert total(node, "watchfloor_cases_filed_total", "jinshui") == before_cases
    # Refusals for permissions are not dead letters.
    assert len(dead_letters(node)) == letters_before


# --- mixed batches ----------------------------------------------------------------------


def test_mixed_batch_counts_the_valid_and_lists_the_invalid(node: Node) -> None:
    t = now()
    no_subject = case("jinshui")
    del no_subject["subject"]
    naive = case("erqi")
    naive["time"] = t.replace(tzinfo=None).isoformat()
    wrong_type = case("zhongyuan")
    wrong_type["data"]["severity"] = 2
    unknown_type = case("jinshui")
    unknown_type["type"] = "watchfloor.incident.case_reopened.v1"
    oversized = case("jinshui")
    oversized.update({f"pad{i}": "p" * 200 for i in range(25)})
    batch: list[Any] = [
        case("jinshui"),  # 0 valid
        no_subject,  # 1
        hazard("erqi"),  # 2 valid
        case("atlantis"),  # 3
        naive,  # 4
        42,  # 5
        unknown_type,  # 6
        hazard("erqi", deadline=t - timedelta(hours=1)),  # 7
        dispute("zhongyuan"),  # 8 valid
        case("jinshui", when=t + timedelta(hours=1)),  # 9
        wrong_type,  # 10
        oversized,  # 11
        case("gaoxin", when=datetime(1999, 12, 31, 12, tzinfo=TZ)),  # 12
    ]
    expected = {
        1: ("schema", "subject"),
        3: ("unknown_district", "district"),
        4: ("naive_time", "time"),
        5: ("schema", None),
        6: ("unknown_type", "type"),
        7: ("deadline_before_found", "data.deadline"),
        9: ("time_out_of_range", "time"),
        10: ("schema", "data.severity"),
        11: ("too_large", None),
        12: ("time_out_of_range", "time"),
    }
    valid = [0, 2, 8]
    assert len(orjson.dumps(oversized)) > RECORD_LIMIT
    before = settled(node)
    filed = total(node, "watchfloor_cases_filed_total", "jinshui")
    found = total(node, "watchfloor_hazards_found_total", "erqi")
    reported = total(node, "watchfloor_disputes_reported_total", "zhongyuan")
    detail_before = node.worker.get("/api/v1/districts/jinshui")[1]
    letters_before = len(dead_letters(node))

    status, _, body = post(node, batch, node.auth("city-all"))
    assert status == 400, body
    assert body["accepted"] == [batch[i]["id"] for i in valid]
    assert body["accepted_count"] == len(valid)
    assert body["rejected_count"] == len(expected)
    got = {e["index"]: (e["reason"], e["field"]) for e in body["errors"]}
    assert got == expected
    for e in body["errors"]:
        assert e["status"] == 400 and e["error"]
        doc = batch[e["index"]]
        assert e["id"] == (doc.get("id") if isinstance(doc, dict) else None)
    assert body["error"].startswith(f"{len(expected)} of {len(batch)} events were not accepted")

    # The valid ones are counted by the worker, in their districts' figures.
    settle(node, before, len(valid))
    assert total(node, "watchfloor_cases_filed_total", "jinshui") == filed + 1
    assert total(node, "watchfloor_hazards_found_total", "erqi") == found + 1
    assert total(node, "watchfloor_disputes_reported_total", "zhongyuan") == reported + 1
    status, detail = node.worker.get("/api/v1/districts/jinshui")
    assert status == 200
    assert (
        detail["rolling"]["24h"]["cases_filed"]
        == detail_before["rolling"]["24h"]["cases_filed"] + 1
    )

    # The invalid ones are dead letters, one each, pointing back at the request.
    letters = at_least(node, letters_before + len(expected))
    mine = [x for x in letters if letter_headers(x)["wf-source-offset"].startswith(body["request"])]
    assert len(mine) == len(expected) == len(letters) - letters_before
    for letter in mine:
        h = letter_headers(letter)
        index = int(h["wf-source-offset"].split("/")[1])
        assert h["wf-source-topic"] == h["wf-source-partition"] == "http"
        assert h["wf-reason"] == expected[index][0]
        assert h["wf-publisher"] == "city-all"
        assert h["wf-worker"] == node.worker.url
        assert orjson.loads(letter.value) == batch[index]
        district = batch[index].get("district") if isinstance(batch[index], dict) else None
        assert letter.key == (district.encode() if district else None)


def test_a_batch_of_only_valid_events_is_202(node: Node) -> None:
    docs = [case("guancheng"), hazard("guancheng"), dispute("guancheng")]
    names = ("cases_filed", "hazards_found", "disputes_reported")
    figures = {n: total(node, f"watchfloor_{n}_total", "guancheng") for n in names}
    before, counted = received(node), processed(node)
    status, _, body = post(node, docs, node.auth("city-all"))
    assert status == 202, body
    assert body["accepted"] == [d["id"] for d in docs] and body["errors"] == []
    assert body["accepted_count"] == 3 and body["rejected_count"] == 0
    settle(node, before, 3)
    assert processed(node) == counted + 3
    for n in names:
        assert total(node, f"watchfloor_{n}_total", "guancheng") == figures[n] + 1, n


# --- limits -------------------------------------------------------------------------------


def test_413_over_the_body_and_batch_limits(node: Node) -> None:
    auth = node.auth("city-all")
    before = settled(node)
    filed = total(node, "watchfloor_cases_filed_total", "qingshan")

    # Exactly at the limit is fine; one byte more is not.
    at_limit = case("qingshan")
    raw = orjson.dumps(at_limit)
    padded = raw + b" " * (BODY_LIMIT - len(raw))
    assert len(padded) == BODY_LIMIT
    status, _, body = post(node, padded, auth)
    assert status == 202, body
    status, _, body = post(node, padded + b" ", auth)
    assert status == 413, body
    assert body["limit"] == BODY_LIMIT
    assert f"the limit is {BODY_LIMIT} bytes" in body["error"]

    # Far over the limit: answered at once, without a reset connection.
    started = time.monotonic()
    status, _, body = post(node, b"[" + b" " * (4 * 1024 * 1024) + b"]", auth)
    assert status == 413 and body["limit"] == BODY_LIMIT
    assert time.monotonic() - started < 10

    # Small events, but too many of them.
    many = [case("qingshan") for _ in range(BATCH_LIMIT + 1)]
    assert len(orjson.dumps(many)) < BODY_LIMIT
    status, _, body = post(node, many, auth)
    assert status == 413, body
    assert body["limit"] == BATCH_LIMIT
    assert f"{BATCH_LIMIT + 1} events" in body["error"]

    # Authentication comes first, whatever the size.
    status, _, _ = post(node, padded + b"   ", {"Authorization": "Bearer nope"})
    assert status == 401

    status, _, body = post(node, many[:BATCH_LIMIT], auth)
    assert status == 202, body
    settle(node, before, 1 + BATCH_LIMIT)
    # The at-limit event and the full batch; nothing of the refused bodies.
    assert total(node, "watchfloor_cases_filed_total", "qingshan") == filed + 1 + BATCH_LIMIT


# --- idempotence --------------------------------------------------------------------------


def test_reposting_the_same_events_does_not_count_them_twice(node: Node) -> None:
    auth = node.auth("city-all")
    first = hazard("huiji")
    second = case("huiji")
    before = settled(node)
    found = total(node, "watchfloor_hazards_found_total", "huiji")
    filed = total(node, "watchfloor_cases_filed_total", "huiji")
    dups = total(node, "watchfloor_duplicate_events_total", "huiji")
    status, _, body = post(node, [first, second], auth)
    assert status == 202, body
    settle(node, before, 2)
    detail = node.worker.get("/api/v1/districts/huiji")[1]
    assert total(node, "watchfloor_hazards_found_total", "huiji") == found + 1

    # The publisher did not hear back and sends the whole batch again, plus a new event.
    third = dispute("huiji")
    status, _, body = post(node, [first, second, third], auth)
    assert status == 202, body  # accepted again: the engine, not the door, de-duplicates
    # And once more, the hazard alone, under a new id (same subject, same transition).
    again = {**first, "id": first["id"] + "-retry"}
    status, _, body = post(node, again, auth)
    assert status == 202, body
    settle(node, before, 6)

    assert total(node, "watchfloor_hazards_found_total", "huiji") == found + 1
    assert total(node, "watchfloor_cases_filed_total", "huiji") == filed + 1
    assert total(node, "watchfloor_duplicate_events_total", "huiji") == dups + 3
    after = node.worker.get("/api/v1/districts/huiji")[1]
    assert after["rolling"]["24h"]["hazards_found"] == detail["rolling"]["24h"]["hazards_found"]
    assert after["current"]["open_hazards"] == detail["current"]["open_hazards"]
    assert after["current"]["open_cases"] == detail["current"]["open_cases"]
    assert after["rolling"]["24h"]["disputes_reported"] == (
        detail["rolling"]["24h"]["disputes_reported"] + 1
    )

    # The repeats are dead letters from the source topics, reason duplicate, as sent.
    repeats = [
        x
        for x in dead_letters(node)
        if letter_headers(x)["wf-reason"] == "duplicate" and x.key == b"huiji"
    ]
    values = sorted(x.value for x in repeats)
    assert values == sorted([orjson.dumps(first), orjson.dumps(second), orjson.dumps(again)])
    topics = {letter_headers(x)["wf-source-topic"] for x in repeats}
    assert topics == {node.cluster.topic("patrols"), node.cluster.topic("incidents")}


# --- bad input never gives 500 ----------------------------------------------------------

NASTY_BODIES: list[bytes] = [
    b"42",
    b"-0",
    b"1e999999",
    b'"an event"',
    b"null",
    b"true",
    b"[]",
    b"{}",
    b"[[]]",
    b"[null]",
    b'[1, [2, {}], "x"]',
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 2000 + b"1" + b"}" * 2000,
    b"[" * 100 + b"{}" + b"]" * 100,
    b"{",
    b"",
    b"   \n\t ",
    b"\x00",
    b"\xff\xfe{\x00}\x00",
    b"\xef\xbb\xbf{}",
    b'{"\\ud800": 1}',
    b'"\\udfff"',
    b'{"type": {"x": []}, "district": ["jinshui"]}',
    b'[{"district": 5, "type": 6}]',
    b'{"id": {"x": 1}, "type": "watchfloor.hazard.found.v1", "district": "jinshui"}',
    b'{"type": "watchfloor.hazard.found.v1", "district": "jinshui", "data": [], "time": 1}',
    b'{"type": "watchfloor.incident.case_filed.v1", "district": "jinshui", "time": '
    b'"2026-13-45T99:99:99+99:99", "data": {"category": "theft", "severity": "minor"}, '
    b'"specversion": "1.0", "id": "x", "source": "/s", "subject": "s"}',
    b'{"type": "watchfloor.incident.case_filed.v1", "district": "jinshui", "time": '
    b'"2026-04-12T09:30:00+08:00", "data": {"category": "theft", "severity": "minor", '
    b'"location": {"lat": 1e400, "lon": -1e400}}, "specversion": "1.0", "id": "x", '
    b'"source": "/s", "subject": "s"}',
    b'{"type": "watchfloor.incident.case_filed.v1", "time": 123456789012345678901234567890}',
    b'{"district": "' + b"a" * 10_000 + b'"}',
    b'{"type": "' + b"\\u0000" * 1000 + b'"}',
    b'[{"type": "watchfloor.patrol.completed.v1", "district": "jinshui", "data": '
    b'{"started_at": "x", "ended_at": null}}]',
]


def test_bad_bodies_never_give_500(node: Node) -> None:
    auth = node.auth("city-all")
    for raw in NASTY_BODIES:
        assert len(raw) <= BODY_LIMIT
        status, _, body = post(node, raw, auth)
        assert status in {400, 413}, (raw[:80], status, body)
        assert isinstance(body, dict) and body["error"], raw[:80]
    # Not a method this path serves: 405, not 500.
    conn = http.client.HTTPConnection("127.0.0.1", node.worker.port, timeout=10)
    conn.request("GET", "/api/v1/events", headers=auth)
    assert conn.getresponse().status == 405
    conn.close()


ATTRS = ("specversion", "id", "source", "type", "time", "subject", "district", "data", "x")
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["jinshui", "watchfloor.hazard.found.v1", "2026-04-12T09:30:00+08:00"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
event_like = st.dictionaries(st.sampled_from(ATTRS), json_values, max_size=9)


@st.composite
def mutated_events(draw: Any) -> dict[str, Any]:
    """A valid event of some district, with one attribute or data field changed or gone."""
    district = draw(st.sampled_from(["jinshui", "erqi", "xinzheng", "nowhere"]))
    make = draw(st.sampled_from([case, hazard, dispute]))
    doc: dict[str, Any] = make(district)
    target = doc if draw(st.booleans()) else doc["data"]
    name = draw(st.sampled_from(sorted(target)))
    how = draw(st.sampled_from(["keep", "replace", "drop"]))
    if how == "replace":
        target[name] = draw(json_values)
    elif how == "drop":
        del target[name]
    return doc


def dumps(value: Any) -> bytes:
    # The standard library, not orjson: it writes integers of any size, and lone
    # surrogates come out as bytes that are not UTF-8; both are input a server must take.
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


@settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        json_values.map(dumps),
        event_like.map(dumps),
        st.lists(event_like, max_size=4).map(dumps),
        mutated_events().map(dumps),
        st.lists(mutated_events(), min_size=1, max_size=4).map(dumps),
    ),
    token=st.sampled_from(["city-all", "jinshui-grid", "police"]),
)
def test_property_any_body_gets_a_json_answer_never_500(
    node: Node, body: bytes, token: str
) -> None:
    status, _, answer = post(node, body, node.auth(token))
    assert status in {202, 400, 403, 413}, (status, answer)
    assert answer["status"] == status


# --- bodies as networks deliver them (issue 12, item 1) ---------------------------------


def batch_near_the_limit(district: str) -> tuple[list[dict[str, Any]], bytes]:
    # An extension attribute pads each event, so the batch is most of the body limit.
    docs = [{**case(district), "padding": "p" * 200} for _ in range(BATCH_LIMIT)]
    raw = orjson.dumps(docs)
    assert BODY_LIMIT // 2 < len(raw) <= BODY_LIMIT
    return docs, raw


def test_a_body_that_arrives_in_pieces_is_read_whole(node: Node) -> None:
    auth = node.auth("city-all")
    before = settled(node)
    filed = total(node, "watchfloor_cases_filed_total", "jingkai")

    # Content-Length, the body in six TCP segments.
    docs, raw = batch_near_the_limit("jingkai")
    status, _, body = raw_post(
        node,
        {**auth, "Content-Type": "application/json", "Content-Length": str(len(raw))},
        split(raw, 6),
    )
    assert status == 202, body
    assert body["accepted"] == [d["id"] for d in docs]

    # Chunked transfer encoding, no length.
    docs, raw = batch_near_the_limit("jingkai")
    status, _, body = raw_post(
        node,
        {**auth, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        chunked(split(raw, 5)),
    )
    assert status == 202, body

    # What curl does with a large body: Expect: 100-continue, then the body.
    docs, raw = batch_near_the_limit("jingkai")
    status, _, body = raw_post(
        node,
        {**auth, "Content-Length": str(len(raw)), "Expect": "100-continue"},
        split(raw, 4),
        expect_continue=True,
    )
    assert status == 202, body

    settle(node, before, 3 * BATCH_LIMIT)
    assert total(node, "watchfloor_cases_filed_total", "jingkai") == filed + 3 * BATCH_LIMIT


def test_large_bodies_are_413_however_they_arrive(node: Node) -> None:
    auth = node.auth("city-all")
    before = settled(node)
    # 10 MB announced: 413 before the body is read, though its first piece is small.
    ten_mb = b"[" + b" " * (10 * 1024 * 1024 - 2) + b"]"
    started = time.monotonic()
    status, _, body = raw_post(
        node,
        {**auth, "Content-Length": str(len(ten_mb))},
        [ten_mb[:100], ten_mb[100:]],
    )
    assert (status, body["limit"]) == (413, BODY_LIMIT), body
    # 100 MB chunked: no length to go by, so read up to the limit, then 413.
    piece = b" " * (1024 * 1024)
    status, _, body = raw_post(
        node, {**auth, "Transfer-Encoding": "chunked"}, chunked([b"[", *[piece] * 100]), pause=0
    )
    assert (status, body["limit"]) == (413, BODY_LIMIT), body
    assert time.monotonic() - started < 60
    time.sleep(1)
    assert received(node) == before, "nothing of a refused body reaches Kafka"


# --- compressed bodies and unauthenticated load (item 3) -------------------------------


def test_compressed_bodies_are_inflated_and_bounded(node: Node) -> None:
    auth = node.auth("city-all")
    before = settled(node)
    filed = total(node, "watchfloor_cases_filed_total", "xinzheng")
    _, raw = batch_near_the_limit("xinzheng")
    status, _, body = post(node, gzip.compress(raw), {**auth, "Content-Encoding": "gzip"})
    assert status == 202, body
    status, _, body = post(
        node, zlib.compress(orjson.dumps(case("xinzheng"))), {**auth, "Content-Encoding": "deflate"}
    )
    assert status == 202, body
    # Inflated, the body is over the limit: 413, however small it travelled.
    status, _, body = post(
        node, gzip.compress(b" " * (BODY_LIMIT + 1)), {**auth, "Content-Encoding": "gzip"}
    )
    assert status == 413 and body["limit"] == BODY_LIMIT, body
    status, _, body = post(node, b"{}", {**auth, "Content-Encoding": "br"})
    assert status == 415 and body["reason"] == "unsupported_encoding", body
    settle(node, before, BATCH_LIMIT + 1)
    assert total(node, "watchfloor_cases_filed_total", "xinzheng") == filed + BATCH_LIMIT + 1


def test_corrupt_gzip_is_400_with_one_warning_and_no_traceback(node: Node) -> None:
    log = node.worker.log_path
    lines_before = len(log.read_text(errors="replace").splitlines())
    corrupt = [
        b"\x1f\x8b\x08\x00" + b"\xde\xad\xbe\xef" * 40,
        gzip.compress(orjson.dumps(case("baihe")))[:-10],
        b"plainly not gzip",
    ]
    for raw in corrupt:
        status, _, body = post(
            node, raw, {**node.auth("city-all"), "Content-Encoding": "gzip"}
        )
        assert status == 400 and body["reason"] == "bad_encoding", body
        assert "gzip" in body["error"] and body["error"].endswith(".")
        # Without a token: 401, and the body is never looked at.
        status, _, body = post(node, raw, {"Content-Encoding": "gzip"})
        assert status == 401, body
    new = log.read_text(errors="replace").splitlines()[lines_before:]
    warnings = [ln for ln in new if "[WARNING]" in ln or "[ERROR]" in ln]
    assert len(warnings) <= len(corrupt), warnings
    assert not any("[ERROR]" in ln for ln in new), new


def test_gzip_bombs_without_a_token_do_not_stall_the_worker(node: Node) -> None:
    bomb = gzip.compress(b" " * (100 * 1024 * 1024), 9)  # 100 MB of spaces, ~100 KB sent
    assert len(bomb) < 200_000
    stop = threading.Event()
    health: list[float] = []

    def watch() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            status, _ = node.worker.get("/health", timeout=30)
            health.append(time.monotonic() - t0 if status == 200 else 99.0)
            time.sleep(0.05)

    answers: list[int] = []

    def attack() -> None:
        status, _, _ = post(node, bomb, {"Content-Encoding": "gzip"})
        answers.append(status)

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(0.3)
    started = time.monotonic()
    attackers = [threading.Thread(target=attack) for _ in range(20)]
    for t in attackers:
        t.start()
    for t in attackers:
        t.join(timeout=60)
    spent = time.monotonic() - started
    time.sleep(0.5)
    stop.set()
    watcher.join(timeout=30)
    assert answers == [401] * 20
    assert max(health) < 1.0, f"/health took up to {max(health):.2f}s during the bombs"
    assert spent < 20, f"20 unauthenticated bombs took {spent:.1f}s to answer"
    # With a token, a bomb is inflated only up to the limit: 413.
    status, _, body = post(node, bomb, {**node.auth("city-all"), "Content-Encoding": "gzip"})
    assert status == 413, body


# --- tokens change without a restart, and expire (item 5) -------------------------------


def poll_status(node: Node, doc: dict[str, Any], headers: Mapping[str, str], want: int) -> Any:
    def attempt() -> Any:
        status, _, body = post(node, doc, headers)
        return body if status == want else None

    return wait_for(attempt, timeout=10, interval=0.2, what=f"answer {want}")


def test_the_tokens_file_is_read_again_when_it_changes(node: Node) -> None:
    late, expired, later = new_token(), new_token(), new_token()
    now_ = now()

    def entry(name: str, secret: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "sha256": hash_token(secret), "districts": ["*"],
                "types": ["*"], **extra}

    before = settled(node)
    reloads = ingest_reload_errors(node)
    try:
        # A new publisher is let in without a restart.
        node.write_tokens([*node.entries, entry("late-comer", late)])
        poll_status(node, case("baihe"), {"Authorization": f"Bearer {late}"}, 202)
        # Revoked: its entry deleted, it is refused at once.
        node.write_tokens(node.entries)
        body = poll_status(node, case("baihe"), {"Authorization": f"Bearer {late}"}, 401)
        assert "not known" in body["error"]
        # Expiry: one that has passed, one that has not.
        node.write_tokens([
            *node.entries,
            entry("gone", expired, expires=(now_ - timedelta(minutes=1)).isoformat()),
            entry("still", later, expires=(now_ + timedelta(days=1)).isoformat()),
        ])
        poll_status(node, case("baihe"), {"Authorization": f"Bearer {later}"}, 202)
        status, resp, body = post(node, case("baihe"), {"Authorization": f"Bearer {expired}"})
        assert status == 401 and "expired" in body["error"], body
        assert "invalid_token" in resp.getheader("WWW-Authenticate", "")
        # A broken file changes nothing: the tokens in force stay (the next request finds
        # the change, logs it once and counts it).
        node.write_tokens(b'{"tokens": [ half a file')
        status, _, body = post(node, case("baihe"), {"Authorization": f"Bearer {later}"})
        assert status == 202, body
        assert ingest_reload_errors(node) == reloads + 1
        status, _, _ = post(node, case("baihe"), node.auth("city-all"))
        assert status == 202
    finally:
        node.write_tokens(node.entries)
    poll_status(node, case("baihe"), {"Authorization": f"Bearer {later}"}, 401)
    quiesce(node, before)


def quiesce(node: Node, before: int) -> None:
    """Wait until the worker has read everything sent (a number not known in advance)."""
    last: list[int] = [-1]

    def still() -> bool:
        now_ = received(node)
        done = now_ == last[0] and now_ > before
        last[0] = now_
        return done

    wait_for(still, timeout=30, interval=1.0, what="the worker to read what was sent")


def ingest_reload_errors(node: Node) -> float:
    return sample(node.worker.metrics(), "watchfloor_ingest_token_reload_errors_total") or 0.0


# --- what on-call sees (item 9) ------------------------------------------------------------


def test_every_answer_is_counted_by_status_and_reason(node: Node) -> None:
    auth = node.auth("city-all")
    answers = [
        ((202, "accepted"), lambda: post(node, case("huiji"), auth)),
        ((400, "malformed_json"), lambda: post(node, b"{", auth)),
        ((400, "events_rejected"), lambda: post(node, case("atlantis"), auth)),
        ((401, "no_token"), lambda: post(node, case("huiji"))),
        ((401, "unknown_token"), lambda: post(node, case("huiji"), {"Authorization": "Bearer x"})),
        ((403, "not_allowed"), lambda: post(node, case("huiji"), node.auth("jinshui-grid"))),
        ((413, "body_too_large"), lambda: post(node, b" " * (BODY_LIMIT + 1), auth)),
        ((413, "batch_too_large"),
         lambda: post(node, [case("huiji") for _ in range(BATCH_LIMIT + 1)], auth)),
    ]
    m = node.worker.metrics()
    before = settled(node)
    events = {r: sample(m, "watchfloor_ingest_events_total", result=r) or 0.0
              for r in ("accepted", "rejected", "not_allowed", "not_sent")}
    for (status, reason), send in answers:
        count = ingest_count(node, status, reason)
        got, _, body = send()
        assert got == status, body
        assert ingest_count(node, status, reason) == count + 1, (status, reason)
    m = node.worker.metrics()
    after = {r: sample(m, "watchfloor_ingest_events_total", result=r) or 0.0 for r in events}
    assert after["accepted"] == events["accepted"] + 1
    assert after["rejected"] == events["rejected"] + 1
    assert after["not_allowed"] == events["not_allowed"] + 1
    assert sample(m, "watchfloor_kafka_available") == 1
    assert sample(m, "watchfloor_ingest_tokens") == len(TOKEN_RIGHTS)
    settle(node, before, 1)


def test_a_dead_letter_kafka_refuses_is_counted(node: Node) -> None:
    """The dead-letter topic refuses records over 200 bytes for a moment."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    topic = node.cluster.topic("deadletter")
    admin = KafkaAdminClient(bootstrap_servers=node.cluster.bootstrap)

    def limit(value: str | None) -> None:
        configs = {"max.message.bytes": value} if value else {"max.message.bytes": "1048588"}
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)])

    errors = sample(node.worker.metrics(), "watchfloor_ingest_dead_letter_errors_total") or 0.0
    try:
        limit("200")
        time.sleep(1)
        status, _, body = post(node, case("atlantis"), node.auth("city-all"))
        # The caller still hears what is wrong with its event; on-call sees the loss.
        assert status == 400 and body["errors"][0]["reason"] == "unknown_district", body
        wait_for(
            lambda: (sample(node.worker.metrics(), "watchfloor_ingest_dead_letter_errors_total")
                     or 0.0) == errors + 1,
            timeout=15,
            what="the dead-letter error counted",
        )
    finally:
        limit(None)
        admin.close()


def test_malformed_http_is_400_and_one_line_without_a_traceback(node: Node) -> None:
    """A broken chunked body, a cut-off upload: the client's fault, never an ERROR."""
    log = node.worker.log_path
    lines_before = len(log.read_text(errors="replace").splitlines())
    sock = socket.create_connection(("127.0.0.1", node.worker.port), timeout=10)
    sock.sendall(
        b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
    )
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n", 1)[0]
    # An upload cut short by the client: nothing to answer, nothing to log.
    sock = socket.create_connection(("127.0.0.1", node.worker.port), timeout=10)
    sock.sendall(
        b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
        + f"Authorization: Bearer {node.tokens['city-all']}\r\n\r\n[ ".encode()
    )
    sock.close()
    time.sleep(1)
    new = log.read_text(errors="replace").splitlines()[lines_before:]
    assert not any("[ERROR]" in ln or "Traceback" in ln for ln in new), new
    assert sum("[WARNING]" in ln for ln in new) <= 1, new

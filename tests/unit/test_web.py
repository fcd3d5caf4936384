"""The worker's HTTP edge without Kafka: body reading and inflating, ingest order, readiness."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CONTENT_TYPE_LATEST

from streams import web
from streams.ingest import IngestResponse, hash_token
from streams.settings import Secret, Settings
from streams.worker import build_worker

LIMIT = 4096
TOKEN = "wf_unit-test-token"
CASE = {
    "specversion": "1.0",
    "id": "c-1",
    "source": "/tests",
    "type": "watchfloor.incident.case_filed.v1",
    "time": "2026-04-12T09:30:00+08:00",
    "subject": "c-1",
    "district": "jinshui",
    "data": {"category": "theft", "severity": "minor"},
}


async def pieces(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


def read(parts: Iterable[bytes], encoding: str | None = None, length: int | None = None,
         limit: int = LIMIT) -> bytes | IngestResponse:
    return asyncio.run(web.read_body(pieces(parts), encoding=encoding, length=length,
                                     limit=limit))


def split(data: bytes, n: int) -> list[bytes]:
    step = max(1, len(data) // n)
    return [data[i : i + step] for i in range(0, len(data), step)]


# --- reading a body ------------------------------------------------------------------------


def test_a_body_in_many_pieces_is_read_whole() -> None:
    body = orjson.dumps([CASE] * 10)
    assert read(split(body, 37)) == body
    assert read([body[:1], b"", body[1:]]) == body


def test_the_limit_holds_exactly() -> None:
    assert read([b"x" * LIMIT]) == b"x" * LIMIT
    over = read(split(b"x" * (LIMIT + 1), 5))
    assert isinstance(over, IngestResponse) and over.status == 413
    assert over.body["limit"] == LIMIT and over.reason == "body_too_large"


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    async def never() -> AsyncIterator[bytes]:
        raise AssertionError("the body was read")
        yield b""  # pragma: no cover

    answer = asyncio.run(web.read_body(never(), encoding=None, length=LIMIT + 1, limit=LIMIT))
    assert isinstance(answer, IngestResponse) and answer.status == 413


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "GZIP"])
def test_gzip_is_inflated(encoding: str) -> None:
    body = orjson.dumps([CASE] * 15)
    assert len(body) < LIMIT
    packed = gzip.compress(body)
    assert read(split(packed, 9), encoding) == body


def test_deflate_in_zlib_and_raw_form() -> None:
    body = orjson.dumps([CASE] * 5)
    assert read([zlib.compress(body)], "deflate") == body
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert read([raw.compress(body) + raw.flush()], "deflate") == body


def test_a_multi_member_gzip_body_is_read_whole() -> None:
    body = orjson.dumps([CASE] * 4)
    packed = gzip.compress(body[:50]) + gzip.compress(body[50:])
    assert read(split(packed, 3), "gzip") == body


def test_the_limit_applies_after_inflating_and_a_bomb_costs_little() -> None:
    bomb = gzip.compress(b" " * 200_000_000, 9)  # 200 MB of spaces in ~200 KB
    assert len(bomb) < 300_000
    t0 = time.perf_counter()
    answer = read(split(bomb, 40), "gzip", limit=1024 * 1024)
    spent = time.perf_counter() - t0
    assert isinstance(answer, IngestResponse) and answer.status == 413
    assert "after inflating" in answer.body["error"]
    assert spent < 1.0, f"inflating stopped at the limit, not at the end ({spent:.2f}s)"


def test_a_compressed_body_larger_than_the_limit_can_allow_is_refused_unread() -> None:
    answer = read([b"\x1f\x8b" + b"\x00" * 10], "gzip", length=LIMIT + web.COMPRESSED_SLACK + 1)
    assert isinstance(answer, IngestResponse) and answer.status == 413


@pytest.mark.parametrize(
    "parts",
    [
        [b"not gzip at all"],
        [gzip.compress(b'{"a": 1}')[:-12]],  # cut short
        [b"\x1f\x8b\x08\x00" + b"\xff" * 64],  # a gzip header, then garbage
        [gzip.compress(b"{}") + b"trailing garbage"],
        [],  # an empty body that says it is gzip
    ],
)
def test_corrupt_gzip_is_400_with_a_sentence(parts: list[bytes]) -> None:
    answer = read(parts, "gzip")
    assert isinstance(answer, IngestResponse)
    assert (answer.status, answer.reason) == (400, "bad_encoding")
    assert answer.body["error"].endswith(".") and "gzip" in answer.body["error"]


def test_unknown_encodings_are_415() -> None:
    answer = read([b"{}"], "br")
    assert isinstance(answer, IngestResponse)
    assert (answer.status, answer.reason) == (415, "unsupported_encoding")


# --- the views, on a worker without Kafka -------------------------------------------------


class Sent:
    """What the ingest service handed to the producer."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []
        self.bodies_read = 0


def worker(tmp_path: Path, sent: Sent, **overrides: Any) -> Any:
    tokens = {"tokens": [{"name": "t", "sha256": hash_token(TOKEN), "districts": ["*"],
                          "types": ["*"]}]}
    settings = Settings(data_dir=str(tmp_path), ingest_tokens=Secret(json.dumps(tokens)),
                        ingest_max_body_bytes=LIMIT, **overrides)
    wf = build_worker(settings)

    async def send(topic: str, key: bytes, value: bytes, headers: Any) -> None:
        sent.records.append((topic, key, value))

    wf.ingest.send = send
    original = wf.ingest.handle_body

    async def counted(token: Any, body: bytes) -> IngestResponse:
        sent.bodies_read += 1
        return await original(token, body)

    wf.ingest.handle_body = counted
    return wf


def served(wf: Any, check: Callable[[TestClient], Awaitable[None]]) -> None:
    async def main() -> None:
        wf.app.web.init_server()
        async with TestClient(TestServer(wf.app.web.web_app)) as client:
            await check(client)

    asyncio.run(main())


def counter(wf: Any, status: int, reason: str) -> float:
    value = wf.registry.get_sample_value(
        "watchfloor_ingest_requests_total", {"status": str(status), "reason": reason}
    )
    return float(value or 0)


def test_ingest_checks_the_token_before_reading_the_body(tmp_path: Path) -> None:
    sent = Sent()
    wf = worker(tmp_path, sent)

    async def check(client: TestClient) -> None:
        resp = await client.post("/api/v1/events", data=b"x" * 100_000)
        assert resp.status == 401 and (await resp.json())["status"] == 401
        resp = await client.post("/api/v1/events", data=gzip.compress(b" " * 10_000_000),
                                 headers={"Authorization": "Bearer nope",
                                          "Content-Encoding": "gzip"})
        assert resp.status == 401
        assert sent.bodies_read == 0
        resp = await client.post("/api/v1/events", data=orjson.dumps(CASE),
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status == 202, await resp.text()
        assert sent.bodies_read == 1 and len(sent.records) == 1

    served(wf, check)
    assert counter(wf, 401, "no_token") == 1 and counter(wf, 401, "unknown_token") == 1
    assert counter(wf, 202, "accepted") == 1


def test_gzip_posts_are_inflated_by_the_view_and_bombs_refused(tmp_path: Path) -> None:
    sent = Sent()
    wf = worker(tmp_path, sent)
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Encoding": "gzip"}

    async def check(client: TestClient) -> None:
        resp = await client.post("/api/v1/events", data=gzip.compress(orjson.dumps([CASE])),
                                 headers=auth)
        assert resp.status == 202, await resp.text()
        resp = await client.post("/api/v1/events", data=gzip.compress(b" " * 50_000_000),
                                 headers=auth)
        assert resp.status == 413
        resp = await client.post("/api/v1/events", data=b"\x1f\x8bnot really", headers=auth)
        body = await resp.json()
        assert resp.status == 400 and body["reason"] == "bad_encoding", body

    served(wf, check)
    assert [v for _, _, v in sent.records] == [orjson.dumps(CASE)]
    assert counter(wf, 413, "body_too_large") == 1 and counter(wf, 400, "bad_encoding") == 1


def test_ingest_answers_503_at_once_while_kafka_is_away(tmp_path: Path) -> None:
    sent = Sent()
    wf = worker(tmp_path, sent)
    wf.set_kafka_problem("no Kafka broker answers")

    async def check(client: TestClient) -> None:
        resp = await client.post("/api/v1/events", data=orjson.dumps(CASE),
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        body = await resp.json()
        assert resp.status == 503 and resp.headers["Retry-After"].isdigit()
        assert "no Kafka broker answers" in body["error"] and body["reason"] == "kafka_unavailable"
        # A caller without a token learns nothing about Kafka.
        resp = await client.post("/api/v1/events", data=b"{}")
        assert resp.status == 401

    served(wf, check)
    assert sent.bodies_read == 0 and sent.records == []
    assert counter(wf, 503, "kafka_unavailable") == 1
    assert wf.registry.get_sample_value("watchfloor_kafka_available") == 0


def test_ready_says_why_it_is_not(tmp_path: Path) -> None:
    wf = worker(tmp_path, Sent())

    async def ready(client: TestClient) -> tuple[int, dict[str, Any]]:
        resp = await client.get("/ready")
        return resp.status, await resp.json()

    async def check(client: TestClient) -> None:
        status, body = await ready(client)
        assert status == 503 and body["reason"] == "The worker is recovering its state."
        wf.ready = True
        assert (await ready(client))[0] == 200
        wf.set_kafka_problem("no Kafka broker answers")
        status, body = await ready(client)
        assert status == 503 and body["kafka"] is False and "Kafka" in body["reason"]
        wf.set_kafka_problem(None)
        assert (await ready(client))[0] == 200
        wf.begin_drain()
        status, body = await ready(client)
        assert status == 503 and body["draining"] is True
        assert (await client.get("/health")).status == 200

    served(wf, check)


def test_fausts_own_views_are_not_served(tmp_path: Path) -> None:
    wf = worker(tmp_path, Sent())

    async def check(client: TestClient) -> None:
        for path in ("/router/", "/router/topics", "/router/state/", "/router/state/jinshui/",
                     "/table/", "/table/state/", "/table/state/jinshui/", "/stats/",
                     "/graph/", "/performance/"):
            resp = await client.get(path)
            assert resp.status == 404, path

    served(wf, check)


def test_periods_outside_the_calendar_are_400(tmp_path: Path) -> None:
    wf = worker(tmp_path, Sent())
    wf.ready = True
    wf.assigned = set(range(wf.settings.partitions))

    async def check(client: TestClient) -> None:
        for query in ("period=9999-W52", "period=0001-01-01", "period=9999-12-31",
                      "from=0001-01-01&to=9999-12-31", "period=2026-13", "period=" + "9" * 30):
            resp = await client.get(f"/api/v1/districts/jinshui?{query}")
            body = await resp.json()
            assert resp.status == 400, (query, body)
            assert body["error"].endswith("."), body
        resp = await client.get("/api/v1/districts/jinshui?period=2026-W15")
        assert resp.status == 200

    served(wf, check)


@pytest.mark.parametrize(
    ("header", "gzipped"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("identity", False),
        ("deflate, gzip;q=0.5", True),
        ("GZIP ; Q=1", True),
        ("x-gzip", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0, deflate", False),
        ("*", True),
        ("*;q=0", False),
        ("*;q=0, gzip", True),
        ("gzip;q=0, *", False),
        ("gzip;q=nonsense", False),
    ],
)
def test_gzip_is_accepted_as_rfc_9110_says(header: str | None, gzipped: bool) -> None:
    assert web.accepts_gzip(header) is gzipped


def test_metrics_are_gzipped_when_the_scraper_asks_and_say_the_same(tmp_path: Path) -> None:
    from streams.exposition import exposition
    from tests.unit.test_metrics import state

    wf = worker(tmp_path, Sent())
    wf.engine.states["jinshui"] = state("jinshui")

    async def check(client: TestClient) -> None:
        # As Prometheus asks (its scrape requests carry Accept-Encoding: gzip).
        packed = await client.get("/metrics", headers={"Accept-Encoding": "gzip"},
                                  auto_decompress=False)  # fmt: skip
        assert packed.status == 200
        assert packed.headers["Content-Encoding"] == "gzip"
        assert packed.headers["Content-Type"] == CONTENT_TYPE_LATEST
        raw = await packed.read()
        plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"},
                                 auto_decompress=False)  # fmt: skip
        assert "Content-Encoding" not in plain.headers
        text = await plain.read()
        # The same exposition either way (the process collector's figures aside, which
        # move between two scrapes), and it is the one the registry and districts give.
        def steady(body: bytes) -> list[bytes]:
            return [line for line in body.splitlines() if not line.startswith(b"process_")]

        assert steady(gzip.decompress(raw)) == steady(text)
        assert steady(text) == steady(await exposition(wf.registry, wf.districts_collector))
        assert b'watchfloor_open_cases{district="jinshui"} 3.0' in text
        assert len(raw) < len(text) / 3

    served(wf, check)


def test_a_metrics_answer_gets_a_send_buffer_it_fits_in() -> None:
    import socket

    class Transport:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def get_extra_info(self, name: str) -> Any:
            return self.sock if name == "socket" else None

    wmem_max = int(Path("/proc/sys/net/core/wmem_max").read_text())
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        before = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        size = 4 * before
        web.make_room(Transport(sock), size)
        # Linux doubles what is asked (bookkeeping) and caps it at wmem_max.
        after = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        assert after >= min(size, wmem_max) > before
        web.make_room(Transport(sock), 1000)  # never shrunk
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == after
    web.make_room(None, 1000)  # no transport (a test request): nothing to do


def test_the_metrics_port_serves_the_same_exposition(tmp_path: Path) -> None:
    """WATCHFLOOR_METRICS_PORT: a second listener with /metrics only, answered as the
    main one answers (gzipped when asked)."""
    import socket

    from aiohttp import ClientSession

    from tests.unit.test_metrics import state

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    wf = worker(tmp_path, Sent(), metrics_port=port)
    wf.engine.states["jinshui"] = state("jinshui")

    async def main() -> None:
        runner = await web.serve_metrics_port(wf)
        try:
            async with ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/metrics",
                                       headers={"Accept-Encoding": "gzip"}) as resp:  # fmt: skip
                    assert resp.status == 200
                    assert resp.headers["Content-Encoding"] == "gzip"
                    assert resp.headers["Content-Type"] == CONTENT_TYPE_LATEST
                    text = await resp.read()
                assert b'watchfloor_open_cases{district="jinshui"} 3.0' in text
                async with session.get(f"http://127.0.0.1:{port}/health") as resp:
                    assert resp.status == 404  # /metrics only
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_parts_gzipped_one_by_one_inflate_to_their_join() -> None:
    import random

    from streams.web import gzip_parts

    rng = random.Random(5)
    parts = [b"", *(rng.randbytes(rng.randrange(0, 5000)) * rng.randrange(1, 4)
                     for _ in range(200)), b""]  # fmt: skip
    assert gzip.decompress(gzip_parts(parts)) == b"".join(parts)
    assert gzip.decompress(gzip_parts([])) == b""

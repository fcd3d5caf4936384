"""HTTP views on the worker's web server: metrics, health, readiness, ingest and the query API."""

from __future__ import annotations

import asyncio
import logging
import socket
import zlib
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import faust
from aiohttp import ClientError, ClientTimeout
from aiohttp import web as aioweb
from aiohttp.http_exceptions import HttpProcessingError
from faust.exceptions import SameNode
from isal import isal_zlib
from prometheus_client import CONTENT_TYPE_LATEST

from . import query, worksafety
from .deadletter import DeadLetter
from .errors import QueryError
from .exposition import exposition_parts
from .ingest import IngestResponse, IngestService, TokenSource, problem, too_large
from .overdue_list import parse_limit
from .periods import parse_period

if TYPE_CHECKING:
    from .app import Watchfloor
    from .metrics import Metrics

log = logging.getLogger(__name__)

API = "/api/v1"
# Bodies are read a chunk at a time; compressed ones are inflated at most this much per
# step, yielding to the event loop between steps, so no body can hold the loop for long.
READ_CHUNK = 64 * 1024
INFLATE_STEP = 64 * 1024
# A compressed body may exceed the (inflated) limit by gzip's overhead on data that
# does not compress; more than this cannot inflate to within the limit.
COMPRESSED_SLACK = 4096
# A client that trickles its body is cut off after this long (408).
BODY_READ_SECONDS = 30.0
ENCODINGS = {"identity": None, "gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}
# ISA-L's level 1 (isal: zlib's formats in Intel's assembly, 3x faster than zlib's level
# 1, as small): the exposition's repeated names compress 15-fold even so.
METRICS_GZIP_LEVEL = 1
# The send buffer asked for a /metrics answer: its size plus headers, at most 16 MB.
SEND_BUFFER_SLACK = 64 * 1024
SEND_BUFFER_MAX = 16 * 1024 * 1024


def _error(view: faust.web.View, status: int, message: str, **extra: Any) -> Any:
    return view.web.json({"error": message, **extra}, status=status)


def register(wf: Watchfloor) -> None:
    app = wf.app
    wf.ingest = _ingest_service(wf)
    body_limit = wf.settings.ingest_max_body_bytes

    @app.page("/metrics")
    class Metrics(faust.web.View):
        async def get(self, request: Any) -> Any:
            async with wf.districts_collector.scraping():
                body, headers = await metrics_answer(wf, request.headers.get("Accept-Encoding"))
                answer = self.web.bytes(body, headers=headers)
                await send_now(request, answer, len(body))
            return answer

    @app.page("/health")
    class Health(faust.web.View):
        """Liveness: the process and its event loop answer."""

        async def get(self, request: Any) -> Any:
            return self.web.json({"status": "ok"})

    @app.page("/ready")
    class Ready(faust.web.View):
        """Readiness: state recovered, Kafka takes our writes, and not shutting down."""

        async def get(self, request: Any) -> Any:
            serving = wf.serving
            body: dict[str, Any] = {
                "ready": serving,
                "recovered": wf.ready,
                "kafka": wf.kafka_problem is None,
                "draining": wf.draining,
                "partitions": sorted(wf.assigned),
                "districts": len(wf.engine.states),
            }
            why = wf.not_ready_reason()
            if why is not None:
                body["reason"] = why
            return self.web.json(body, status=200 if serving else 503)

    @app.page(f"{API}/events")
    class Events(faust.web.View):
        """HTTP ingest for publishers that cannot speak Kafka (docs/publishing.md)."""

        async def post(self, request: Any) -> Any:
            assert wf.ingest is not None
            answer = await ingest_answer(wf.ingest, request, body_limit)
            wf.metrics.ingest_answer(answer.status, answer.reason)
            return self.web.bytes(
                answer.json(),
                content_type="application/json",
                status=answer.status,
                headers=answer.headers,
            )

    @app.page(f"{API}/districts")
    class Districts(faust.web.View):
        """All districts' current figures, gathered from every worker."""

        async def get(self, request: Any) -> Any:
            if not wf.ready:
                return _error(self, 503, "This worker is recovering its state; retry shortly.")
            now = wf.clock.time()
            local = [query.summary(st, now, wf.tz) for st in wf.engine.states.values()]
            if request.query.get("scope") == "local":
                return self.web.json({"districts": local})
            districts, missing = await _gather(wf, local)
            body: dict[str, Any] = {
                "districts": sorted(districts, key=lambda d: d["district"]),
                "definitions": query.DEFINITIONS,
            }
            if missing:
                body["incomplete"] = missing
            return self.web.json(body)

    @app.page(f"{API}/districts/{{district}}")
    class District(faust.web.View):
        """One district: figures, windows, comparisons, open and overdue hazards, a period."""

        async def get(self, request: Any, district: str) -> Any:
            if district not in wf.reference.districts:
                return _error(
                    self,
                    404,
                    f"There is no district {district!r}.",
                    known=sorted(wf.reference.districts),
                )
            period = None
            spec = request.query.get("period")
            try:
                if spec:
                    period = parse_period(spec, wf.tz)
                elif "from" in request.query or "to" in request.query:
                    first = request.query.get("from")
                    last = request.query.get("to")
                    if not first or not last:
                        raise QueryError("Give both 'from' and 'to' dates (YYYY-MM-DD).")
                    period = parse_period(f"{first}..{last}", wf.tz)
            except QueryError as exc:
                return _error(self, 400, str(exc))
            if wf.engine.partition_of(district) not in wf.assigned or not wf.ready:
                try:
                    return await app.router.route_req(wf.table.name, district, self.web, request)
                except SameNode:
                    return _error(self, 503, "This worker is recovering its state; retry shortly.")
                except (ClientError, TimeoutError, KeyError):
                    return _error(
                        self,
                        503,
                        f"The worker that holds {district!r} does not answer; retry shortly.",
                    )
            st = wf.engine.states.get(district) or wf.engine.new_state(district)
            try:
                limit = parse_limit(request.query.get("limit"))
                body = query.detail(st, wf.clock.now(), wf.tz, period, limit=limit,
                                    cursor=request.query.get("cursor") or None)
            except QueryError as exc:
                return _error(self, 400, str(exc))
            return self.web.json(body)


async def metrics_answer(
    wf: Watchfloor, accept_encoding: str | None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of ``/metrics``: gzipped when the scraper accepts it.

    Prometheus asks for gzip. At 1,000 districts the text is about 7 MB, more than a
    socket takes at once, so the rest went out in later turns of the event loop, each
    behind the batch then being counted: under load a scrape took two or three batches.
    Compressed at level 1 (ISA-L: 4-5 ms, zlib took 20; 15 times smaller) it leaves in
    one write.
    """
    parts = await exposition_parts(wf.registry, wf.districts_collector)
    headers = {"Content-Type": CONTENT_TYPE_LATEST}
    if not accepts_gzip(accept_encoding):
        return b"".join(parts), headers
    headers["Content-Encoding"] = "gzip"
    headers["Vary"] = "Accept-Encoding"
    return gzip_parts(parts), headers


def gzip_body(body: bytes) -> bytes:
    """``body`` as one gzip member."""
    return gzip_parts([body])


def gzip_parts(parts: Iterable[bytes]) -> bytes:
    """The join of ``parts`` as one gzip member, compressed part by part (never joined)."""
    packer = isal_zlib.compressobj(METRICS_GZIP_LEVEL, isal_zlib.DEFLATED, 16 + isal_zlib.MAX_WBITS)
    packed = [packer.compress(part) for part in parts]
    packed.append(packer.flush())
    return b"".join(packed)


async def send_now(request: Any, answer: Any, size: int) -> None:
    """Write a scrape's answer before its handler returns, while batches still wait for
    the scrape (``DistrictCollector.scraping``). An answer larger than what the socket
    takes at once is written in later turns of the event loop; returned unsent, each of
    those waited for the batch then being counted. aiohttp sends a prepared answer once.
    """
    make_room(request.transport, size)
    await answer.prepare(request)
    await answer.write_eof()


def make_room(transport: Any, size: int) -> None:
    """Let the socket take a whole answer of ``size`` bytes in one write.

    What the kernel does not take at once is written in later turns of the event loop,
    and each of those waits for the batch being counted then (hundreds of ms under
    load). A connection starts with a small send buffer; the kernel caps what is asked
    at net.core.wmem_max.
    """
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return
    try:
        wanted = min(size + SEND_BUFFER_SLACK, SEND_BUFFER_MAX)
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < wanted:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, wanted)
    except OSError:  # not a socket that has one (a Unix pipe in tests): nothing to do
        return


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header allows gzip (RFC 9110: a q of 0 refuses it; gzip
    named outright decides over ``*``)."""
    q: dict[str, float] = {}
    for item in (accept_encoding or "").split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        if name == "x-gzip":
            name = "gzip"
        if name not in ("gzip", "*"):
            continue
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        q[name] = weight
    return q.get("gzip", q.get("*", 0.0)) > 0


async def ingest_answer(ingest: IngestService, request: Any, limit: int) -> IngestResponse:
    """The answer to one POST: token first (from the header), then Kafka, then the body.

    Nothing of the body is read for a caller without a valid token, nor while Kafka
    cannot take events; aiohttp drains what the client still sends after the answer.
    """
    token = ingest.authenticate(request.headers.get("Authorization"))
    if isinstance(token, IngestResponse):
        return token
    refusal = ingest.unavailable()
    if refusal is not None:
        return refusal
    try:
        body = await asyncio.wait_for(
            read_body(
                request.content.iter_chunked(READ_CHUNK),
                encoding=request.headers.get("Content-Encoding"),
                length=request.content_length,
                limit=limit,
            ),
            BODY_READ_SECONDS,
        )
    except TimeoutError:
        return problem(
            408,
            f"The body did not arrive within {BODY_READ_SECONDS:g} seconds; send it again.",
            "body_timeout",
        )
    except (ConnectionError, HttpProcessingError):
        # The client went away or broke the framing mid-body: the client's fault, and
        # most likely nobody is left to read this answer.
        return problem(
            400, "The body ended before it was complete; send it again whole.", "body_incomplete"
        )
    if isinstance(body, IngestResponse):
        if body.reason == "bad_encoding":
            log.warning("ingest: a body from token %s could not be inflated", token.name)
        return body
    return await ingest.handle_body(token, body)


async def read_body(
    chunks: AsyncIterator[bytes], *, encoding: str | None, length: int | None, limit: int
) -> bytes | IngestResponse:
    """A request body read whole, inflated when compressed, or the answer that refuses it.

    ``limit`` bounds the body after inflating (413 beyond it); a declared length over
    the limit is refused before reading. Inflating goes ``INFLATE_STEP`` bytes at a time
    with the event loop free in between, and stops at the limit: a small gzip bomb
    costs at most ``limit`` bytes of work.
    """
    name = (encoding or "identity").strip().lower()
    if name not in ENCODINGS:
        return problem(
            415,
            "Content-Encoding must be gzip, deflate or identity (none).",
            "unsupported_encoding",
        )
    kind = ENCODINGS[name]
    raw_limit = limit if kind is None else limit + COMPRESSED_SLACK
    if length is not None and length > raw_limit:
        return too_large(limit)
    out = bytearray()
    raw = 0
    inflater: Any = None
    try:
        async for chunk in chunks:
            raw += len(chunk)
            if raw > raw_limit:
                return too_large(limit)
            if kind is None:
                out += chunk
                if len(out) > limit:
                    return too_large(limit)
                continue
            data = chunk
            while True:
                if inflater is None or inflater.eof:
                    if not data:
                        break
                    # A new stream, or the next member of a multi-member gzip body.
                    inflater = _inflater(kind, data)
                piece = inflater.decompress(data, INFLATE_STEP)
                out += piece
                if len(out) > limit:
                    return too_large(limit)
                if inflater.eof:
                    data = inflater.unused_data
                    continue
                data = inflater.unconsumed_tail
                if not data and not piece:
                    break  # wants more input
                # Output may still be pending with the input used up: ask again (b"").
                await asyncio.sleep(0)
    except zlib.error:
        return _bad_encoding(name)
    if kind is not None and (inflater is None or not inflater.eof):
        return _bad_encoding(name)
    return bytes(out)


def _inflater(kind: str, first: bytes) -> Any:
    if kind == "gzip":
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    # HTTP's "deflate" is the zlib format, but some clients send raw deflate: a zlib
    # stream's first byte says method 8.
    raw = bool(first) and first[0] & 0x0F != 8
    return zlib.decompressobj(wbits=-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)


def _bad_encoding(name: str) -> IngestResponse:
    return problem(
        400,
        f"The body is not valid {name} data (Content-Encoding: {name}); send it compressed "
        "whole, or without Content-Encoding.",
        "bad_encoding",
    )


def register_work_safety(wf: Watchfloor) -> None:
    """``GET /api/v1/work-safety``: the four indicators and death targets, city and districts."""

    @wf.app.page(f"{API}/work-safety")
    class WorkSafety(faust.web.View):
        """The city's figures are the sum of every worker's districts, as for the list."""

        async def get(self, request: Any) -> Any:
            if not wf.ready:
                return _error(self, 503, "This worker is recovering its state; retry shortly.")
            now = wf.clock.now()
            spec = request.query.get("period")
            try:
                period = (
                    parse_period(spec, wf.tz) if spec else worksafety.year_to_date(now, wf.tz)
                )
                year = worksafety.check_period(period, wf.tz)
            except QueryError as exc:
                return _error(self, 400, str(exc))
            targets = wf.reference.work_safety.get(year)
            local = [
                worksafety.district_block(
                    worksafety.district_figures(st, period, targets), targets, wf.tz
                )
                for st in wf.engine.states.values()
            ]
            if request.query.get("scope") == "local":
                return self.web.json({"districts": local})
            params = {"scope": "local", **({"period": spec} if spec else {})}
            districts, missing = await _gather_from(wf, f"{API}/work-safety", params, local)
            body = worksafety.answer(period, districts, targets, wf.tz, now)
            if missing:
                body["incomplete"] = missing
            return self.web.json(body)


async def _gather_from(
    wf: Watchfloor, path: str, params: dict[str, str], local: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The local district entries plus every other worker's answer to ``path`` (its
    ``districts``), by the table's routing metadata."""
    districts = list(local)
    missing: list[str] = []
    for url in wf.other_workers():
        try:
            async with wf.app.http_client.get(
                f"{url}{path}", params=params, timeout=ClientTimeout(total=5)
            ) as resp:
                if resp.status != 200:
                    missing.append(url)
                    continue
                districts.extend((await resp.json())["districts"])
        except (ClientError, TimeoutError, ValueError):
            missing.append(url)
    return districts, missing


def _ingest_service(wf: Watchfloor) -> IngestService:
    """The ingest logic with Faust's producer behind it; a bad tokens file stops start-up."""
    producer = wf.app.producer

    async def send(
        topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        delivered = await producer.send(topic, key, value, None, None, list(headers))
        # Shielded: a POST that stops waiting (503) must not cancel the delivery itself.
        await asyncio.shield(delivered)

    async def dead_letter(letter: DeadLetter) -> None:
        delivered = await wf.deadletter.send(
            key=letter.key, value=letter.value, headers=letter.kafka_headers()
        )
        await asyncio.shield(delivered)

    metrics: Metrics = wf.metrics
    tokens = TokenSource(
        wf.settings,
        wf.reference,
        on_reload=lambda t: metrics.ingest_tokens.set(len(t)),
        on_reload_error=metrics.ingest_token_reload_errors.inc,
    )
    metrics.ingest_tokens.set(len(tokens.current()))
    return IngestService(
        wf.validator,
        tokens,
        wf.settings,
        send,
        dead_letter=dead_letter,
        clock=wf.clock,
        available=lambda: wf.kafka_problem,
        metrics=metrics,
    )


async def _gather(
    wf: Watchfloor, local: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The local summaries plus every other worker's, by the table's routing metadata."""
    return await _gather_from(wf, f"{API}/districts", {"scope": "local"}, local)


async def serve_metrics_port(wf: Watchfloor) -> aioweb.AppRunner:
    """A second listener with /metrics only, when WATCHFLOOR_METRICS_PORT differs."""

    async def handle(request: aioweb.Request) -> aioweb.Response:
        async with wf.districts_collector.scraping():
            body, headers = await metrics_answer(wf, request.headers.get("Accept-Encoding"))
            answer = aioweb.Response(body=body, headers=headers)
            await send_now(request, answer, len(body))
        return answer

    web_app = aioweb.Application()
    web_app.router.add_get("/metrics", handle)
    runner = aioweb.AppRunner(web_app)
    await runner.setup()
    await aioweb.TCPSite(runner, wf.settings.web_host, wf.settings.metrics_port).start()
    return runner

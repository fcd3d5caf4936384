"""HTTP views on the worker's web server: metrics, health, readiness and the query API."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import faust
from aiohttp import ClientError, ClientTimeout
from aiohttp import web as aioweb
from faust.exceptions import SameNode
from prometheus_client import CONTENT_TYPE_LATEST

from . import query, worksafety
from .deadletter import DeadLetter
from .errors import QueryError
from .ingest import IngestService, IngestTokens
from .metrics import exposition
from .periods import parse_period

if TYPE_CHECKING:
    from .app import Watchfloor

log = logging.getLogger(__name__)

API = "/api/v1"


def _error(view: faust.web.View, status: int, message: str, **extra: Any) -> Any:
    return view.web.json({"error": message, **extra}, status=status)


def register(wf: Watchfloor) -> None:
    app = wf.app
    ingest = _ingest_service(wf)
    body_limit = wf.settings.ingest_max_body_bytes

    @app.page("/metrics")
    class Metrics(faust.web.View):
        async def get(self, request: Any) -> Any:
            return self.web.bytes(
                exposition(wf.registry, wf.districts_collector),
                headers={"Content-Type": CONTENT_TYPE_LATEST},
            )

    @app.page("/health")
    class Health(faust.web.View):
        """Liveness: the process and its event loop answer."""

        async def get(self, request: Any) -> Any:
            return self.web.json({"status": "ok"})

    @app.page("/ready")
    class Ready(faust.web.View):
        """Readiness: state recovered for the partitions this worker owns."""

        async def get(self, request: Any) -> Any:
            body = {
                "ready": wf.ready,
                "partitions": sorted(wf.assigned),
                "districts": len(wf.engine.states),
            }
            return self.web.json(body, status=200 if wf.ready else 503)

    @app.page(f"{API}/events")
    class Events(faust.web.View):
        """HTTP ingest for publishers that cannot speak Kafka (docs/publishing.md)."""

        async def post(self, request: Any) -> Any:
            # One byte over the limit is enough to answer 413 without reading it all.
            body = await request.content.read(body_limit + 1)
            answer = await ingest.handle(request.headers.get("Authorization"), body)
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
            return self.web.json(query.detail(st, wf.clock.now(), wf.tz, period))


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
    me = wf.settings.web_url.rstrip("/")
    others: set[str] = set()
    try:
        for url in wf.app.router.tables_metadata():
            if str(url).rstrip("/") != me:
                others.add(str(url).rstrip("/"))
    except KeyError:
        pass
    districts = list(local)
    missing: list[str] = []
    for url in sorted(others):
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
        await delivered

    async def dead_letter(letter: DeadLetter) -> None:
        delivered = await wf.deadletter.send(
            key=letter.key, value=letter.value, headers=letter.kafka_headers()
        )
        await delivered

    tokens = IngestTokens.from_settings(wf.settings, wf.reference)
    return IngestService(
        wf.validator, tokens, wf.settings, send, dead_letter=dead_letter, clock=wf.clock
    )


async def _gather(
    wf: Watchfloor, local: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The local summaries plus every other worker's, by the table's routing metadata."""
    me = wf.settings.web_url.rstrip("/")
    others: set[str] = set()
    try:
        for url in wf.app.router.tables_metadata():
            if str(url).rstrip("/") != me:
                others.add(str(url).rstrip("/"))
    except KeyError:
        pass
    districts = list(local)
    missing: list[str] = []
    session = wf.app.http_client
    for url in sorted(others):
        try:
            async with session.get(
                f"{url}{API}/districts",
                params={"scope": "local"},
                timeout=ClientTimeout(total=5),
            ) as resp:
                if resp.status != 200:
                    missing.append(url)
                    continue
                districts.extend((await resp.json())["districts"])
        except (ClientError, TimeoutError, ValueError):
            missing.append(url)
    return districts, missing


async def serve_metrics_port(wf: Watchfloor) -> aioweb.AppRunner:
    """A second listener with /metrics only, when WATCHFLOOR_METRICS_PORT differs."""

    async def handle(_: aioweb.Request) -> aioweb.Response:
        return aioweb.Response(
            body=exposition(wf.registry, wf.districts_collector),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    web_app = aioweb.Application()
    web_app.router.add_get("/metrics", handle)
    runner = aioweb.AppRunner(web_app)
    await runner.setup()
    await aioweb.TCPSite(runner, wf.settings.web_host, wf.settings.metrics_port).start()
    return runner

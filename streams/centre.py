"""The command centre on a worker: overdue list and bulletins across workers, archive, page."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faust
import orjson
from aiohttp import ClientError, ClientTimeout
from faust.types import TP

from . import bulletin as bl
from . import overdue_list as ol
from .documents import (
    TABLES,
    Names,
    bulletin_csv,
    bulletin_html,
    bulletin_markdown,
    check_lang,
    overdue_csv,
)
from .errors import BrokerError, QueryError
from .kafka import admin_client, admin_partition_counts, client_kwargs, kafka_producer
from .settings import PROJECT_ROOT

if TYPE_CHECKING:
    from .app import Watchfloor

log = logging.getLogger(__name__)

API = "/api/v1"
PAGE_DIR = Path(__file__).resolve().parent / "page"
RUNBOOK_DIR = PROJECT_ROOT / "docs" / "runbooks"
SCHEDULE_SECONDS = 15.0
SETTLING_SECONDS = 1.0
GATHER_TIMEOUT = 10.0
CUT_TIMEOUT = 120.0  # how long a cut waits for every district's worker to catch up


class Archive:
    """The bulletins published so far, read from the compacted topic (one partition).

    The topic is the record of what was published: the publisher reads it to its end
    before publishing, so a period already there is never published again.
    """

    def __init__(self, wf: Watchfloor) -> None:
        self.wf = wf
        self.topic = wf.settings.topic_bulletins
        self.items: dict[str, bytes] = {}
        self._consumer: Any = None
        self._lock = asyncio.Lock()

    async def ensure_topic(self) -> None:
        from aiokafka.admin import NewTopic
        from aiokafka.errors import KafkaError, TopicAlreadyExistsError

        s = self.wf.settings
        async with admin_client(s) as admin:
            try:
                if await admin_partition_counts(admin, [self.topic]):
                    return
                await admin.create_topics([NewTopic(
                    self.topic, 1, s.replication_factor,
                    topic_configs={"cleanup.policy": "compact",
                                   "min.compaction.lag.ms": str(7 * 86400 * 1000)},
                )])
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:
                raise BrokerError(
                    f"The bulletins topic {self.topic} does not exist and could not be "
                    f"created ({exc}); create it with one partition and cleanup.policy=compact."
                ) from None

    async def refresh(self) -> None:
        """Read the topic up to its current end."""
        from aiokafka.errors import KafkaError

        try:
            await self._refresh()
        except KafkaError as exc:
            raise BrokerError(f"The bulletins topic {self.topic} cannot be read ({exc}); "
                              "retry when Kafka answers.") from None

    async def _refresh(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        async with self._lock:
            tp = TopicPartition(self.topic, 0)
            if self._consumer is None:
                await self.ensure_topic()
                consumer = AIOKafkaConsumer(
                    **client_kwargs(self.wf.settings), group_id=None,
                    enable_auto_commit=False, auto_offset_reset="earliest",
                )
                await consumer.start()
                consumer.assign([tp])
                await consumer.seek_to_beginning(tp)
                self._consumer = consumer
            consumer = self._consumer
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for rec in batch.get(tp, ()):
                    if rec.key is not None and rec.value is not None:
                        self.items[rec.key.decode()] = rec.value

    async def publish(self, key: str, raw: bytes) -> None:
        """Write one bulletin and wait until Kafka has it (acks=all).

        With a producer of its own: Faust's producer, sent a topic it did not know at
        start, would track only that topic's metadata from then on and lose the state
        changelog's, which stops the worker at its next state write.
        """
        from aiokafka.errors import KafkaError

        try:
            async with kafka_producer(self.wf.settings) as producer:
                await producer.send_and_wait(self.topic, raw, key=key.encode(), partition=0)
        except KafkaError as exc:
            raise BrokerError(f"The bulletin {key} could not be written ({exc}).") from None
        self.items[key] = raw

    async def end_offsets(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """End offsets of any partitions, asked with this reader's own client (not the
        worker's consumer, whose thread and positions stay untouched)."""
        from aiokafka import TopicPartition
        from aiokafka.errors import KafkaError

        if self._consumer is None:
            await self.refresh()
        try:
            ends = await self._consumer.end_offsets([TopicPartition(t, p) for t, p in tps])
        except KafkaError as exc:
            raise BrokerError(f"Kafka does not tell the end offsets ({exc}).") from None
        return {(tp.topic, tp.partition): off for tp, off in ends.items()}

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.items.get(key)
        return None if raw is None else dict(orjson.loads(raw))

    def listing(self) -> list[dict[str, Any]]:
        out = []
        for key, raw in self.items.items():
            b = orjson.loads(raw)
            out.append({"key": key, "kind": b["kind"], "period": b["period"],
                        "cut_off": b["cut_off"], "leaders": b["leaders"],
                        "laggards": b["laggards"],
                        "top": b["ranking"][0]["district"] if b["ranking"] else None})
        out.sort(key=lambda x: (x["cut_off"], x["kind"]), reverse=True)
        return out


class Centre:
    """One worker's part of the command centre."""

    def __init__(self, wf: Watchfloor) -> None:
        s = wf.settings
        self.wf = wf
        self.weights = bl.parse_weights(s.bulletin_weights)
        self.cutoff = bl.parse_cutoff(s.bulletin_cutoff)
        self.archive = Archive(wf)
        # Bulletins are published by the owner of one fixed partition only: that of the
        # first district code. Ownership moves with rebalances, never to two at once.
        self.publisher_district = min(wf.reference.districts)
        self.publisher_partition = wf.engine.partition_of(self.publisher_district)
        self._publishing = asyncio.Lock()
        self._ready_since: float | None = None
        self._settled = Settling()

    # -- who answers for what ------------------------------------------------------

    def covered(self) -> list[str]:
        """The districts this worker answers for: those it owns, once it is ready and has
        counted what their partitions held when it took them (``settled``)."""
        return sorted(self.wf.engine.states) if self.settled() else []

    def settled(self) -> bool:
        """Ready, and every record its source partitions held when it took them counted.

        A rebalance drops the journals the previous owner still held, with their unacked
        offsets: this worker, rebuilt from the changelog, reads those records again after
        it is ready. Until it has, a list from its states lacks them without saying so
        (seen under CPU load: a district's overdue hazards missing for a moment from an
        answer marked complete). Once reached, it holds until the next rebalance: later
        records are live traffic, as late as any figure.
        """
        wf = self.wf
        if not wf.ready:
            self._settled.reset()
            return False
        if not self._settled.reached:
            consumer: Any = wf.app.consumer
            tps = [TP(t, p) for t in wf.engine.topics for p in sorted(wf.assigned)]
            self._settled.check(
                {tp: consumer.highwater(tp) for tp in tps},
                {tp: wf.next_offset(tp) for tp in tps},
            )
        return self._settled.reached

    def is_publisher(self) -> bool:
        return self.wf.ready and self.publisher_partition in self.wf.assigned

    async def ask(self, url: str, path: str, params: Mapping[str, str],
                  method: str = "GET") -> tuple[int, Any]:
        try:
            async with self.wf.app.http_client.request(
                method, f"{url}{path}", params=dict(params),
                timeout=ClientTimeout(total=GATHER_TIMEOUT),
            ) as resp:
                body = await resp.read()
                ctype = resp.content_type or ""
                return resp.status, orjson.loads(body) if "json" in ctype else body
        except (ClientError, TimeoutError, ValueError):
            return 0, None

    # -- the overdue list ------------------------------------------------------------

    def local_overdue(self, f: ol.OverdueFilter, cursor: str | None, limit: int
                      ) -> dict[str, Any]:
        now = self.wf.clock.time()
        covered = self.covered()
        items: list[dict[str, Any]] = []
        totals: dict[str, int] = {}
        for d in covered:
            found = ol.district_items(self.wf.engine.states[d], now, f)
            totals[d] = len(found)
            items.extend(found)
        chosen, nxt = ol.page(items, cursor, limit)
        return {"districts": covered, "items": chosen, "more": nxt is not None,
                "totals": totals}

    async def overdue(self, query: Mapping[str, str]) -> dict[str, Any]:
        """The city-wide overdue list: every worker's page, merged and paged again."""
        f = ol.OverdueFilter.from_query(query)
        cursor = query.get("cursor") or None
        limit = ol.parse_limit(query.get("limit"))
        if cursor:
            ol.decode_cursor(cursor)
        local = self.local_overdue(f, cursor, limit)
        if query.get("scope") == "local":
            return local
        answers = [local]
        silent: list[str] = []
        params = {**f.to_query(), "limit": str(limit), "scope": "local"}
        if cursor:
            params["cursor"] = cursor
        for url in self.wf.other_workers():
            status, body = await self.ask(url, f"{API}/overdue", params)
            if status == 200 and isinstance(body, dict):
                answers.append(body)
            else:
                silent.append(url)
        wanted = [d for d in sorted(self.wf.reference.districts) if f.wants_district(d)]
        merged = ol.merge([(a["districts"], a["items"]) for a in answers], wanted)
        chosen, nxt = ol.page(merged.items, None, limit)
        if nxt is None and chosen and len(chosen) == limit and any(a["more"] for a in answers):
            nxt = ol.encode_cursor(ol.sort_key(chosen[-1]))
        total = 0
        counted: set[str] = set()
        for a in answers:
            for d, n in a["totals"].items():
                if d not in counted:
                    counted.add(d)
                    total += n
        out: dict[str, Any] = {
            "items": chosen,
            "next_cursor": nxt,
            "total": total,
            "filters": f.to_query(),
            "as_of": self.wf.clock.now().astimezone(self.wf.tz).isoformat(),
            "definitions": {
                "overdue": "An open (not rectified) hazard whose rectification deadline has "
                "passed on the wall clock; longest overdue first.",
                "failed_visits": "Look-back visits (回头看) that found it not rectified.",
            },
        }
        if merged.missing_districts:
            out["incomplete"] = {"districts": merged.missing_districts, "workers": silent}
        return out

    # -- bulletins -------------------------------------------------------------------

    async def caught_up(self) -> bool:
        """Every record of this worker's source partitions that Kafka had a moment ago
        is counted (its offset acked), so a section includes what came before the cut."""
        wf = self.wf
        consumer: Any = wf.app.consumer
        tps = [(t, p) for t in wf.topics for p in sorted(wf.assigned)]
        if not tps:
            return True
        try:
            ends = await self.archive.end_offsets(tps)
        except BrokerError:
            return False
        done: dict[TP, int | None] = {}
        for t, p in tps:
            tp = TP(t, p)
            # Faust's own books: the next offset committed, and offsets acked since.
            committed = consumer._committed_offset.get(tp) or 0
            acked = consumer.acked_end(tp)
            done[tp] = max(committed, acked) if acked is not None else committed
        return counted_to_highwater({TP(t, p): ends.get((t, p), 0) for t, p in tps}, done)

    def local_sections(self, label: str) -> dict[str, Any]:
        _, period = bl.bulletin_period(label, self.wf.tz)
        cut = bl.cut_off_of(period, self.cutoff, self.wf.tz)
        now = self.wf.clock.now()
        # Computed without an await, so every section is of one state per district.
        sections = [bl.section(self.wf.engine.states[d], period, cut, now)
                    for d in self.covered()]
        return {"districts": [s["district"] for s in sections], "sections": sections}

    async def gather_sections(self, label: str) -> tuple[list[dict[str, Any]], list[str]]:
        """Every district's section, each from its owner once that owner has caught up."""
        got: dict[str, dict[str, Any]] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CUT_TIMEOUT
        wanted = set(self.wf.reference.districts)
        while True:
            if self.wf.ready and await self.caught_up():
                for s in self.local_sections(label)["sections"]:
                    got.setdefault(s["district"], s)
            for url in self.wf.other_workers():
                status, body = await self.ask(url, f"{API}/bulletins/{label}/sections", {})
                if status == 200 and isinstance(body, dict) and body.get("caught_up"):
                    for s in body["sections"]:
                        got.setdefault(s["district"], s)
            missing = sorted(wanted - set(got))
            if not missing or loop.time() > deadline:
                return [got[d] for d in sorted(got)], missing
            await asyncio.sleep(0.5)

    async def cut(self, label: str) -> tuple[int, dict[str, Any]]:
        """Publish the bulletin of a period once; (201, it) when published now, (200, it)
        when it was already, or an error status with a sentence."""
        kind, period = bl.bulletin_period(label, self.wf.tz)
        label = period.label
        cut_off = bl.cut_off_of(period, self.cutoff, self.wf.tz)
        if self.wf.clock.now() < cut_off:
            return 409, {"error": f"The bulletin of {label} is cut at {cut_off.isoformat()}; "
                         "it is not due yet."}
        await self.archive.refresh()
        existing = self.archive.get(label)
        if existing is not None:
            return 200, existing
        if not self.is_publisher():
            return await self._forward_cut(label)
        sections, missing = await self.gather_sections(label)
        if missing:
            return 503, {"error": "Not every district's worker answered with its state; "
                         "retry shortly.", "missing": missing}
        prev_label = bl.previous_label(kind, period, self.wf.tz)
        async with self._publishing:
            generation = self.wf.app.consumer_generation_id
            if not self.is_publisher():
                return 503, {"error": "This worker stopped being the publisher; retry."}
            await self.archive.refresh()
            existing = self.archive.get(label)
            if existing is not None:
                return 200, existing
            prev = self.archive.get(prev_label)
            bulletin = bl.assemble(
                kind=kind, period=period, cut_off=bl.cut_off_of(period, self.cutoff,
                                                                self.wf.tz),
                tz=self.wf.tz, sections=sections, weights=self.weights,
                named=self.wf.settings.bulletin_named,
                previous=None if prev is None else bl.ranks_of(prev),
            )
            raw = bl.to_bytes(bulletin)
            if generation != self.wf.app.consumer_generation_id or not self.is_publisher():
                return 503, {"error": "A rebalance came while cutting; retry."}
            await self.archive.publish(label, raw)
        log.info("Published the %s bulletin %s (%d bytes)", kind, label, len(raw))
        return 201, bulletin

    async def _forward_cut(self, label: str) -> tuple[int, dict[str, Any]]:
        try:
            url = str(self.wf.app.router.key_store(self.wf.table.name,
                                                   self.publisher_district)).rstrip("/")
        except KeyError:
            url = ""
        if not url or url == self.wf.settings.web_url.rstrip("/"):
            return 503, {"error": "No worker publishes bulletins right now (a rebalance); "
                         "retry shortly."}
        status, body = await self.ask(url, f"{API}/bulletins/{label}", {}, method="POST")
        if not isinstance(body, dict):
            return 503, {"error": f"The publishing worker {url} does not answer; retry."}
        return status, body

    async def on_revoked(self, *args: Any, **kwargs: Any) -> None:
        # A publication under way finishes (its record delivered) before the partitions
        # move on, so the next publisher finds it when it reads the archive.
        self._ready_since = None
        self._settled.reset()
        async with self._publishing:
            pass

    async def schedule(self) -> None:
        """Cut each kind's latest due period when this worker publishes and it is missing."""
        loop = asyncio.get_running_loop()
        if not self.is_publisher():
            self._ready_since = None
            return
        if self._ready_since is None:
            self._ready_since = loop.time()
        if loop.time() - self._ready_since < self.wf.settings.bulletin_start_delay_seconds:
            return
        await self.archive.refresh()
        for _, period in bl.due(self.wf.clock.now(), self.wf.tz, self.cutoff):
            if period.label not in self.archive.items:
                status, body = await self.cut(period.label)
                if status >= 300:
                    log.warning("Bulletin %s not cut yet: %s", period.label, body)

    # -- rendering -------------------------------------------------------------------

    def names(self, query: Mapping[str, str]) -> Names:
        return Names(self.wf.reference, check_lang(query.get("lang") or self.wf.settings.lang))

    def city(self, names: Names) -> str:
        ref = self.wf.reference
        return ref.name("city", ref.city_code, names.lang)


class Settling:
    """The mark a worker counts to before it answers for its districts: the high
    watermarks of its source partitions when it first knew them all after an assignment.

    The mark is fixed once taken. Measured against the live high watermark instead, a
    worker under steady traffic is always a few records short of it, and an answer asked
    for at such a moment came back 'incomplete' with no district in it (CI, the alert
    drill's overdue list, fourteen minutes after the worker had caught up).
    """

    def __init__(self) -> None:
        self.mark: dict[TP, int] | None = None
        self.reached = False

    def reset(self) -> None:
        self.mark = None
        self.reached = False

    def check(self, highwaters: Mapping[TP, int | None],
              next_offsets: Mapping[TP, int | None]) -> bool:
        """Take the mark once every high watermark is known; then whether it is reached."""
        if self.mark is not None and self.mark.keys() != highwaters.keys():
            self.reset()  # other partitions: what they held is not known yet
        if not self.reached:
            if self.mark is None:
                if any(high is None for high in highwaters.values()):
                    return False
                self.mark = {tp: high for tp, high in highwaters.items() if high is not None}
            self.reached = counted_to_highwater(self.mark, next_offsets)
        return self.reached


def counted_to_highwater(
    highwaters: Mapping[TP, int | None], next_offsets: Mapping[TP, int | None]
) -> bool:
    """Whether every partition's next offset to count has reached its high watermark.

    A partition not fetched since the assignment has no high watermark yet (None): what
    it holds is unknown, so it is not counted to it.
    """
    for tp, high in highwaters.items():
        if high is None or (next_offsets.get(tp) or 0) < high:
            return False
    return True


def _bad(view: faust.web.View, status: int, message: str, **extra: Any) -> Any:
    return view.web.json({"error": message, **extra}, status=status)


def _document(view: faust.web.View, body: bytes, ctype: str, name: str | None = None) -> Any:
    # The type goes in the headers: aiohttp refuses a charset in ``content_type``.
    headers = {"Content-Type": ctype}
    if name:
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return view.web.bytes(body, headers=headers)


def register(wf: Watchfloor) -> Centre:
    """The command centre's views and timers on this worker."""
    app = wf.app
    centre = Centre(wf)
    app.on_partitions_revoked.connect(centre.on_revoked)

    @app.page(f"{API}/overdue")
    class Overdue(faust.web.View):
        """The overdue list (督办清单), city-wide; ``format=csv`` for a spreadsheet."""

        async def get(self, request: Any) -> Any:
            q = request.query
            try:
                if q.get("format") == "csv":
                    q = {**q, "limit": q.get("limit") or str(ol.MAX_LIMIT)}
                body = await centre.overdue(q)
                names = centre.names(q)
            except QueryError as exc:
                return _bad(self, 400, str(exc))
            if q.get("format") == "csv":
                return _document(self, overdue_csv(body["items"], names),
                                 "text/csv; charset=utf-8", "overdue.csv")
            return self.web.json(body)

    @app.page(f"{API}/bulletins")
    class Bulletins(faust.web.View):
        """The archive: every bulletin published, newest first."""

        async def get(self, request: Any) -> Any:
            try:
                await centre.archive.refresh()
            except BrokerError as exc:
                return _bad(self, 503, str(exc))
            return self.web.json({"bulletins": centre.archive.listing(),
                                  "publisher": centre.is_publisher()})

    @app.page(f"{API}/bulletins/{{key}}")
    class Bulletin(faust.web.View):
        """One bulletin as JSON, HTML (A4 print), Markdown or CSV; POST cuts it."""

        async def get(self, request: Any, key: str) -> Any:
            q = request.query
            try:
                _, period = bl.bulletin_period(key, wf.tz)
                names = centre.names(q)
            except QueryError as exc:
                return _bad(self, 400, str(exc))
            try:
                await centre.archive.refresh()
            except BrokerError as exc:
                return _bad(self, 503, str(exc))
            b = centre.archive.get(period.label)
            if b is None:
                return _bad(self, 404, f"No bulletin of {period.label} was published; POST "
                            "to this URL cuts it now.")
            fmt = q.get("format", "json")
            if fmt == "json":
                return self.web.bytes(centre.archive.items[period.label],
                                      content_type="application/json")
            if fmt == "html":
                return _document(self, bulletin_html(b, names, centre.city(names)),
                                 "text/html; charset=utf-8")
            if fmt in ("md", "markdown"):
                return _document(self, bulletin_markdown(b, names, centre.city(names)),
                                 "text/markdown; charset=utf-8")
            if fmt == "csv":
                table = q.get("table", "ranking")
                try:
                    body = bulletin_csv(b, table, names)
                except QueryError as exc:
                    return _bad(self, 400, str(exc), tables=list(TABLES))
                return _document(self, body, "text/csv; charset=utf-8",
                                 f"bulletin-{period.label}-{table}.csv")
            return _bad(self, 400, f"'format' must be json, html, md or csv, not {fmt!r}.")

        async def post(self, request: Any, key: str) -> Any:
            try:
                status, body = await centre.cut(key)
            except QueryError as exc:
                return _bad(self, 400, str(exc))
            except BrokerError as exc:
                return _bad(self, 503, str(exc))
            return self.web.json(body, status=status)

    @app.page(f"{API}/bulletins/{{key}}/sections")
    class Sections(faust.web.View):
        """This worker's districts' sections of a bulletin (what the publisher gathers)."""

        async def get(self, request: Any, key: str) -> Any:
            try:
                body = centre.local_sections(key)
            except QueryError as exc:
                return _bad(self, 400, str(exc))
            body["caught_up"] = wf.ready and await centre.caught_up()
            return self.web.json(body)

    @app.page("/centre")
    class PageBare(faust.web.View):
        async def get(self, request: Any) -> Any:
            return _static(self, "index.html")

    @app.page("/centre/")
    class Page(faust.web.View):
        """The command-centre page: one HTML file, its script and stylesheet, no CDN."""

        async def get(self, request: Any) -> Any:
            return _static(self, "index.html")

    @app.page("/centre/{name}")
    class Asset(faust.web.View):
        async def get(self, request: Any, name: str) -> Any:
            return _static(self, name)

    @app.page("/runbooks/{name}")
    class Runbook(faust.web.View):
        """The runbooks, for an air-gapped centre: by file name or by alert name
        (``WatchfloorOverdueMajorHazard`` is ``overdue-major-hazard.md``)."""

        async def get(self, request: Any, name: str) -> Any:
            path = runbook_path(name)
            if path is None:
                return _bad(self, 404, f"There is no runbook {name!r}.")
            return _document(self, path.read_bytes(), "text/plain; charset=utf-8")

    @app.page(f"{API}/centre")
    class Config(faust.web.View):
        """What the page needs to label and link things: names, settings, districts."""

        async def get(self, request: Any) -> Any:
            ref = wf.reference
            return self.web.json({
                "lang": wf.settings.lang,
                "city": {"code": ref.city_code,
                         "name": ref.name("city", ref.city_code, "en"),
                         "name_zh": ref.name("city", ref.city_code, "zh")},
                "timezone": str(wf.tz),
                "names": {k: list(v) for k, v in ref.names.items()},
                "districts": sorted(ref.districts),
                "hazard_categories": list(ref.categories.get("hazard", ())),
                "runbook_url": wf.settings.runbooks_url,
                "weights": centre.weights,
                "formula": bl.FORMULA,
                "cutoff": wf.settings.bulletin_cutoff,
            })

    @app.timer(SETTLING_SECONDS, name="watchfloor.settling")  # type: ignore[untyped-decorator]
    async def settling() -> None:
        # The mark is taken soon after an assignment, not when the first question comes:
        # asked late under live traffic, a fresh mark would be just out of reach.
        centre.settled()

    @app.timer(SCHEDULE_SECONDS, name="watchfloor.bulletins")  # type: ignore[untyped-decorator]
    async def schedule() -> None:
        try:
            await centre.schedule()
        except (BrokerError, QueryError, ClientError, TimeoutError) as exc:
            log.warning("Bulletin schedule: %s", exc)
        except Exception:
            # A fault in cutting a bulletin must not stop the worker's counting (a
            # timer's exception would); the next tick tries again.
            log.exception("Bulletin schedule failed; trying again at the next tick.")

    return centre


def runbook_path(name: str) -> Path | None:
    """The runbook file of a file name or an alert name, if the docs are installed."""
    if not name.endswith(".md"):
        stem = name.removeprefix("Watchfloor")
        name = re.sub(r"(?<!^)(?=[A-Z])", "-", stem).lower() + ".md"
    path = RUNBOOK_DIR / name
    if "/" in name or name.startswith(".") or not path.is_file():
        return None
    return path


def _static(view: faust.web.View, name: str) -> Any:
    path = PAGE_DIR / name
    if "/" in name or name.startswith(".") or not path.is_file():
        return _bad(view, 404, f"The page has no file {name!r}.")
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype.endswith("javascript"):
        ctype += "; charset=utf-8"
    return view.web.bytes(path.read_bytes(),
                          headers={"Content-Type": ctype, "Cache-Control": "no-cache"})

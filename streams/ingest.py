"""HTTP ingest (POST /api/v1/events) for systems without Kafka: tokens, limits and answers."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from .clock import Clock, SystemClock
from .deadletter import HTTP_SOURCE, DeadLetter, dead_letter_for
from .errors import InvalidEvent
from .events import CONTENT_TYPE, Event
from .ingest_tokens import (
    TOKEN_PREFIX,
    IngestToken,
    IngestTokens,
    TokenSource,
    hash_token,
    new_token,
)
from .settings import Settings
from .validation import EventValidator

if TYPE_CHECKING:
    from .metrics import Metrics

__all__ = [
    "PATH",
    "RETRY_AFTER_SECONDS",
    "TOKEN_PREFIX",
    "IngestResponse",
    "IngestService",
    "IngestToken",
    "IngestTokens",
    "TokenSource",
    "hash_token",
    "new_token",
]

log = logging.getLogger(__name__)

PATH = "/api/v1/events"
_CODE_LIKE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")
RETRY_AFTER_SECONDS = 5

Headers = Sequence[tuple[str, bytes]]
Send = Callable[[str, bytes, bytes, Headers], Awaitable[None]]
WriteDeadLetter = Callable[[DeadLetter], Awaitable[Any]]
# Why Kafka cannot take events now (a sentence), or None when it can.
Availability = Callable[[], str | None]


class Tokens(Protocol):
    """A fixed set of tokens, or a source that reloads them."""

    def current(self) -> IngestTokens: ...


@dataclass(frozen=True)
class IngestResponse:
    """What to answer: HTTP status, JSON body, extra headers, and a reason for the metrics.

    ``reason`` is a short code from a bounded set (docs/metrics.md): the label of
    ``watchfloor_ingest_requests_total``. Body-level faults also carry it in the body.
    """

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    def json(self) -> bytes:
        return orjson.dumps(self.body)


def problem(status: int, error: str, reason: str, **extra: Any) -> IngestResponse:
    """An answer for the whole request: a sentence and a reason code."""
    return IngestResponse(
        status, {"status": status, "error": error, "reason": reason, **extra}, reason=reason
    )


def unavailable(why: str) -> IngestResponse:
    """503 before anything was taken: Kafka cannot confirm events now."""
    return IngestResponse(
        503,
        {
            "status": 503,
            "error": f"This worker cannot reach Kafka ({why}); nothing was taken. "
            f"Send the events again in {RETRY_AFTER_SECONDS} seconds.",
            "reason": "kafka_unavailable",
        },
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
        reason="kafka_unavailable",
    )


def too_large(limit: int) -> IngestResponse:
    return problem(
        413,
        f"The body is too large: the limit is {limit} bytes (after inflating, for a "
        "compressed body); send fewer events per request.",
        "body_too_large",
        limit=limit,
    )


@dataclass
class _Outcome:
    index: int
    id: str | None
    event: Event | None = None
    value: bytes = b""
    status: int = 0  # 0 accepted so far, 400 invalid, 403 not allowed
    reason: str = ""
    field: str | None = None
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "id": self.id,
            "status": self.status,
            "reason": self.reason,
            "field": self.field,
            "error": self.error,
        }


class IngestService:
    """``POST /api/v1/events`` without a web framework: ``await handle(auth, body)``.

    Answers: 202 when every event was accepted and confirmed by Kafka; 400 (403 when
    every fault is a permission) when some were not, listing each with its index, id,
    reason and sentence; the valid ones of such a batch are still sent and listed under
    ``accepted``, because resending the whole batch after a fix is harmless (the engine
    counts each transition once); 401 without a known, unexpired token; 413 above the
    size or batch limit; 503 when Kafka cannot be reached or did not confirm in
    ``WATCHFLOOR_INGEST_TIMEOUT``. Bad input never yields 500.

    The web layer calls the steps apart (``authenticate``, ``unavailable``, then
    ``handle_body``) so that it reads a body only for a known token and a working Kafka.
    """

    def __init__(
        self,
        validator: EventValidator,
        tokens: Tokens,
        settings: Settings,
        send: Send,
        *,
        dead_letter: WriteDeadLetter | None = None,
        clock: Clock | None = None,
        available: Availability | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.validator = validator
        self.tokens = tokens
        self.settings = settings
        self.send = send
        self.dead_letter = dead_letter
        self.clock = clock or SystemClock()
        self.available = available
        self.metrics = metrics

    async def handle(self, authorization: str | None, body: bytes) -> IngestResponse:
        token = self.authenticate(authorization)
        if isinstance(token, IngestResponse):
            return token
        refusal = self.unavailable()
        if refusal is not None:
            return refusal
        if len(body) > self.settings.ingest_max_body_bytes:
            return too_large(self.settings.ingest_max_body_bytes)
        return await self.handle_body(token, body)

    def unavailable(self) -> IngestResponse | None:
        """503 at once, before the body is read, while Kafka cannot take events."""
        why = self.available() if self.available is not None else None
        return unavailable(why) if why else None

    async def handle_body(self, token: IngestToken, body: bytes) -> IngestResponse:
        """Decode, check, dead-letter and send a body read whole (within the limit)."""
        docs = self._decode(body)
        if isinstance(docs, IngestResponse):
            return docs
        if len(docs) > self.settings.ingest_max_batch:
            return problem(
                413,
                f"The batch has {len(docs)} events; the limit is {self.settings.ingest_max_batch}.",
                "batch_too_large",
                limit=self.settings.ingest_max_batch,
            )
        outcomes = [self._check(i, doc, token) for i, doc in enumerate(docs)]
        request_id = uuid.uuid4().hex
        await self._dead_letter(outcomes, token, request_id)
        return await self._send(outcomes, request_id)

    # --- steps -------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> IngestToken | IngestResponse:
        """The caller's token, or the 401 to answer (from the header alone)."""
        scheme, _, presented = (authorization or "").strip().partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            return IngestResponse(
                401,
                {"status": 401, "error": "Send a publisher token: Authorization: Bearer <token>."},
                {"WWW-Authenticate": 'Bearer realm="watchfloor"'},
                reason="no_token",
            )
        token = self.tokens.current().find(presented)
        if token is None:
            return IngestResponse(
                401,
                {"status": 401, "error": "The token is not known; ask the operators for one."},
                {"WWW-Authenticate": 'Bearer realm="watchfloor", error="invalid_token"'},
                reason="unknown_token",
            )
        if token.expired(self.clock.now()):
            assert token.expires is not None
            return IngestResponse(
                401,
                {
                    "status": 401,
                    "error": f"The token expired at {token.expires.isoformat()}; ask the "
                    "operators for a new one.",
                },
                {
                    "WWW-Authenticate": 'Bearer realm="watchfloor", error="invalid_token", '
                    'error_description="The token expired"'
                },
                reason="expired_token",
            )
        return token

    def _decode(self, body: bytes) -> list[Any] | IngestResponse:
        if not body.strip():
            return problem(
                400, "The body is empty; send one event object or an array of them.", "empty"
            )
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as bad:
                return problem(
                    400, f"The body is not UTF-8: byte {bad.start} cannot be decoded.", "not_utf8"
                )
            return problem(
                400,
                f"The body is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
                "malformed_json",
            )
        if isinstance(doc, dict):
            return [doc]
        if isinstance(doc, list):
            if not doc:
                return problem(400, "The batch is empty.", "empty")
            return doc
        return problem(400, "The body must be one event object or an array of them.", "schema")

    def _check(self, index: int, doc: Any, token: IngestToken) -> _Outcome:
        event_id = doc.get("id") if isinstance(doc, dict) else None
        outcome = _Outcome(index, event_id if isinstance(event_id, str) else None)
        if isinstance(doc, dict):
            # Permissions first, from the raw fields: an event outside the token's remit
            # is refused whatever else is wrong with it, and is not dead-lettered.
            district, etype = doc.get("district"), doc.get("type")
            if isinstance(district, str) and not token.allows_district(district):
                return self._deny(
                    outcome,
                    "district_not_allowed",
                    "district",
                    f"This token may not send events for district {_shown(district)}.",
                )
            if isinstance(etype, str) and not token.allows_type(etype):
                return self._deny(
                    outcome,
                    "type_not_allowed",
                    "type",
                    f"This token may not send {_shown(etype)} events.",
                )
        try:
            value = orjson.dumps(doc)
        except TypeError:  # not reachable with decoded JSON; never a 500 all the same
            value = b""
        outcome.value = value
        try:
            if len(value) > self.validator.max_record_bytes:
                raise InvalidEvent(
                    "too_large",
                    f"The event is {len(value)} bytes; the limit is "
                    f"{self.validator.max_record_bytes}.",
                )
            outcome.event = self.validator.validate_document(doc)
        except InvalidEvent as exc:
            outcome.status, outcome.reason = 400, exc.reason
            outcome.field, outcome.error = exc.field, exc.message
        return outcome

    @staticmethod
    def _deny(outcome: _Outcome, reason: str, field_name: str, error: str) -> _Outcome:
        outcome.status, outcome.reason, outcome.field, outcome.error = (
            403,
            reason,
            field_name,
            error,
        )
        return outcome

    async def _dead_letter(
        self, outcomes: list[_Outcome], token: IngestToken, request_id: str
    ) -> None:
        if self.dead_letter is None:
            return
        now: datetime = self.clock.now()
        for o in outcomes:
            if o.status != 400 or not o.value:
                continue
            exc = InvalidEvent(o.reason, o.error, field=o.field)
            district = _district_of(o.value)
            letter = dead_letter_for(
                exc,
                key=district.encode() if district else None,
                value=o.value,
                headers=[CONTENT_TYPE],
                source_topic=HTTP_SOURCE,
                source_partition=HTTP_SOURCE,
                source_offset=f"{request_id}/{o.index}",
                source_timestamp_ms=int(self.clock.time() * 1000),
                rejected_at=now,
                worker=self.settings.web_url,
                publisher=token.name,
            )
            try:
                await asyncio.wait_for(self.dead_letter(letter), self.settings.ingest_timeout)
            except Exception as exc:
                # The caller still gets its answer, with the event's fault: nothing is lost
                # for it; operators get a log line and the metric.
                if self.metrics is not None:
                    self.metrics.ingest_dead_letter_errors.inc()
                log.warning(
                    "ingest: dead letter for event %d of request %s could not be written: %s",
                    o.index,
                    request_id,
                    _describe(exc),
                )

    async def _send(self, outcomes: list[_Outcome], request_id: str) -> IngestResponse:
        good = [o for o in outcomes if o.status == 0 and o.event is not None]
        timeout = self.settings.ingest_timeout
        results = await asyncio.gather(
            *(
                asyncio.wait_for(
                    self.send(
                        self.settings.topic_for_kind(o.event.kind),
                        o.event.district.encode(),
                        o.value,
                        [CONTENT_TYPE],
                    ),
                    timeout,
                )
                for o in good
                if o.event is not None
            ),
            return_exceptions=True,
        )
        accepted: list[str] = []
        not_sent: list[dict[str, Any]] = []
        for o, result in zip(good, results, strict=True):
            if isinstance(result, BaseException):
                not_sent.append({"index": o.index, "id": o.id, "error": _describe(result)})
            else:
                accepted.append(o.id or "")
        self._count(outcomes, len(accepted), len(not_sent))
        errors = [o.to_dict() for o in outcomes if o.status]
        body: dict[str, Any] = {
            "request": request_id,
            "accepted_count": len(accepted),
            "accepted": accepted,
            "rejected_count": len(errors),
            "errors": errors,
        }
        if not_sent:
            log.warning(
                "ingest: Kafka did not confirm %d events of request %s", len(not_sent), request_id
            )
            body.update(
                status=503,
                error=f"Kafka did not confirm {len(not_sent)} of the events within "
                f"{timeout:g} seconds; send the batch again in {RETRY_AFTER_SECONDS} seconds.",
                not_sent=not_sent,
            )
            return IngestResponse(
                503, body, {"Retry-After": str(RETRY_AFTER_SECONDS)}, reason="not_confirmed"
            )
        if not errors:
            body["status"] = 202
            return IngestResponse(202, body, reason="accepted")
        status = 403 if all(e["status"] == 403 for e in errors) else 400
        first = errors[0]
        body["status"] = status
        body["error"] = (
            f"{len(errors)} of {len(outcomes)} events were not accepted; the first "
            f"(index {first['index']}): {first['error']}"
        )
        return IngestResponse(
            status, body, reason="not_allowed" if status == 403 else "events_rejected"
        )

    def _count(self, outcomes: list[_Outcome], accepted: int, not_sent: int) -> None:
        if self.metrics is None:
            return
        events = self.metrics.ingest_events
        events["accepted"].inc(accepted)
        events["not_sent"].inc(not_sent)
        events["rejected"].inc(sum(1 for o in outcomes if o.status == 400))
        events["not_allowed"].inc(sum(1 for o in outcomes if o.status == 403))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "not confirmed in time"
    return str(exc) or type(exc).__name__


def _shown(value: str) -> str:
    """A value fit to repeat in an answer or a log: a code, or nothing of it."""
    return value if _CODE_LIKE.match(value) else "(not a code)"


def _district_of(value: bytes) -> str | None:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    district = doc.get("district") if isinstance(doc, dict) else None
    return district if isinstance(district, str) and len(district) <= 64 else None

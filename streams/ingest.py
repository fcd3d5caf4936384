"""HTTP ingest (POST /api/v1/events) for systems without Kafka: tokens, limits and answers."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import re
import secrets
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from .clock import Clock, SystemClock
from .deadletter import HTTP_SOURCE, DeadLetter, dead_letter_for
from .errors import InvalidEvent, SettingsError
from .events import CONTENT_TYPE, KIND_OF_TYPE, Event
from .reference import Reference, load_reference
from .settings import Settings
from .validation import EventValidator, type_matches

log = logging.getLogger(__name__)

PATH = "/api/v1/events"
TOKEN_PREFIX = "wf_"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENTRY_KEYS = {"name", "sha256", "districts", "types"}
_CODE_LIKE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")
RETRY_AFTER_SECONDS = 5

Headers = Sequence[tuple[str, bytes]]
Send = Callable[[str, bytes, bytes, Headers], Awaitable[None]]
WriteDeadLetter = Callable[[DeadLetter], Awaitable[Any]]


def hash_token(token: str) -> str:
    """The stored form of a token: sha256 of its UTF-8 bytes, lower-case hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh publisher token: 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class IngestToken:
    """One publisher's token (by hash) and what it may send."""

    name: str
    sha256: str
    districts: frozenset[str]
    types: tuple[str, ...]

    def allows_district(self, district: str) -> bool:
        return "*" in self.districts or district in self.districts

    def allows_type(self, event_type: str) -> bool:
        return type_matches(event_type, self.types)

    def to_dict(self) -> dict[str, Any]:
        """The JSON entry for the tokens file."""
        return {
            "name": self.name,
            "sha256": self.sha256,
            "districts": sorted(self.districts),
            "types": list(self.types),
        }


class IngestTokens:
    """The configured tokens, looked up by the hash of what a caller presents.

    Looking up a hash in a dict does not leak the stored hashes through timing in any
    useful way: an attacker controls only the preimage.
    """

    def __init__(self, tokens: Iterable[IngestToken] = ()) -> None:
        self._by_hash: dict[str, IngestToken] = {}
        names: set[str] = set()
        for token in tokens:
            if token.sha256 in self._by_hash:
                raise SettingsError(
                    f"Ingest tokens {self._by_hash[token.sha256].name} and {token.name} "
                    "have the same hash."
                )
            if token.name in names:
                raise SettingsError(f"Two ingest tokens are named {token.name}.")
            names.add(token.name)
            self._by_hash[token.sha256] = token

    def __len__(self) -> int:
        return len(self._by_hash)

    def __iter__(self) -> Any:
        return iter(sorted(self._by_hash.values(), key=lambda t: t.name))

    def find(self, token: str) -> IngestToken | None:
        return self._by_hash.get(hash_token(token))

    @classmethod
    def parse(
        cls, data: object, origin: str, reference: Reference | None = None
    ) -> list[IngestToken]:
        """Entries from a tokens document: ``{"tokens": [...]}`` or a bare list."""
        entries = data.get("tokens") if isinstance(data, dict) else data
        if isinstance(data, dict) and set(data) - {"tokens"}:
            raise SettingsError(f"{origin}: only a 'tokens' list is allowed at the top.")
        if not isinstance(entries, list):
            raise SettingsError(f'{origin} must hold a list of tokens, or {{"tokens": [...]}}.')
        return [
            _parse_entry(e, f"{origin}, token {i + 1}", reference) for i, e in enumerate(entries)
        ]

    @classmethod
    def from_settings(cls, settings: Settings, reference: Reference | None = None) -> IngestTokens:
        """Tokens from ``WATCHFLOOR_INGEST_TOKENS_FILE`` and ``WATCHFLOOR_INGEST_TOKENS``."""
        tokens: list[IngestToken] = []
        if settings.ingest_tokens_file:
            path = Path(settings.ingest_tokens_file)
            try:
                data = orjson.loads(path.read_bytes())
            except OSError as exc:
                raise SettingsError(
                    f"The ingest tokens file {path} cannot be read: {exc.strerror}."
                ) from None
            except orjson.JSONDecodeError as exc:
                raise SettingsError(f"The ingest tokens file {path} is not JSON: {exc}.") from None
            tokens += cls.parse(data, str(path), reference)
        if settings.ingest_tokens:
            try:
                data = orjson.loads(settings.ingest_tokens.reveal())
            except orjson.JSONDecodeError:
                # The message would quote the secret; say only where it is wrong.
                raise SettingsError("WATCHFLOOR_INGEST_TOKENS is not valid JSON.") from None
            tokens += cls.parse(data, "WATCHFLOOR_INGEST_TOKENS", reference)
        return cls(tokens)


def _parse_entry(entry: object, where: str, reference: Reference | None) -> IngestToken:
    if not isinstance(entry, dict):
        raise SettingsError(f"{where} must be a JSON object.")
    extra = set(entry) - _ENTRY_KEYS
    if extra:
        raise SettingsError(f"{where} has unknown fields {', '.join(sorted(extra))}.")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise SettingsError(f"{where}: name must be letters, digits, '.', '_' or '-' (at most 64).")
    digest = entry.get("sha256")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise SettingsError(f"{where} ({name}): sha256 must be 64 lower-case hex digits.")
    districts = entry.get("districts")
    if (
        not isinstance(districts, list)
        or not districts
        or not all(isinstance(d, str) for d in districts)
    ):
        raise SettingsError(
            f'{where} ({name}): districts must be a non-empty list of codes, or ["*"].'
        )
    if reference is not None:
        unknown = sorted(set(districts) - reference.district_codes - {"*"})
        if unknown:
            raise SettingsError(
                f"{where} ({name}): {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} "
                "not in the reference data."
            )
    types = entry.get("types")
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise SettingsError(
            f"{where} ({name}): types must be a non-empty list of event types or globs."
        )
    dead = [t for t in types if not any(type_matches(k, [t]) for k in KIND_OF_TYPE)]
    if dead:
        raise SettingsError(f"{where} ({name}): {', '.join(dead)} matches no event type.")
    return IngestToken(name, digest, frozenset(districts), tuple(types))


@dataclass(frozen=True)
class IngestResponse:
    """What to answer: HTTP status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> bytes:
        return orjson.dumps(self.body)


def _problem(status: int, error: str, **extra: Any) -> IngestResponse:
    return IngestResponse(status, {"status": status, "error": error, **extra})


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
    counts each transition once); 401 without a known token; 413 above the size or
    batch limit; 503 when Kafka did not confirm. Bad input never yields 500.
    """

    def __init__(
        self,
        validator: EventValidator,
        tokens: IngestTokens,
        settings: Settings,
        send: Send,
        *,
        dead_letter: WriteDeadLetter | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.validator = validator
        self.tokens = tokens
        self.settings = settings
        self.send = send
        self.dead_letter = dead_letter
        self.clock = clock or SystemClock()

    async def handle(self, authorization: str | None, body: bytes) -> IngestResponse:
        token = self._authenticate(authorization)
        if isinstance(token, IngestResponse):
            return token
        limit = self.settings.ingest_max_body_bytes
        if len(body) > limit:
            # The web layer reads at most limit + 1 bytes, so the true size is unknown here.
            return _problem(
                413,
                f"The body is too large: the limit is {limit} bytes; send fewer events per "
                "request.",
                limit=limit,
            )
        docs = self._decode(body)
        if isinstance(docs, IngestResponse):
            return docs
        if len(docs) > self.settings.ingest_max_batch:
            return _problem(
                413,
                f"The batch has {len(docs)} events; the limit is {self.settings.ingest_max_batch}.",
                limit=self.settings.ingest_max_batch,
            )
        outcomes = [self._check(i, doc, token) for i, doc in enumerate(docs)]
        request_id = uuid.uuid4().hex
        await self._dead_letter(outcomes, token, request_id)
        return await self._send(outcomes, request_id)

    # --- steps -------------------------------------------------------------------------

    def _authenticate(self, authorization: str | None) -> IngestToken | IngestResponse:
        challenge = {"WWW-Authenticate": 'Bearer realm="watchfloor"'}
        scheme, _, presented = (authorization or "").strip().partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            return IngestResponse(
                401,
                {"status": 401, "error": "Send a publisher token: Authorization: Bearer <token>."},
                challenge,
            )
        token = self.tokens.find(presented)
        if token is None:
            return IngestResponse(
                401,
                {"status": 401, "error": "The token is not known; ask the operators for one."},
                {"WWW-Authenticate": 'Bearer realm="watchfloor", error="invalid_token"'},
            )
        return token

    def _decode(self, body: bytes) -> list[Any] | IngestResponse:
        if not body.strip():
            return _problem(
                400, "The body is empty; send one event object or an array of them.", reason="empty"
            )
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as bad:
                return _problem(
                    400,
                    f"The body is not UTF-8: byte {bad.start} cannot be decoded.",
                    reason="not_utf8",
                )
            return _problem(
                400,
                f"The body is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
                reason="malformed_json",
            )
        if isinstance(doc, dict):
            return [doc]
        if isinstance(doc, list):
            if not doc:
                return _problem(400, "The batch is empty.", reason="empty")
            return doc
        return _problem(
            400, "The body must be one event object or an array of them.", reason="schema"
        )

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
                await self.dead_letter(letter)
            except Exception as exc:  # the caller still gets its answer; operators get a log
                log.warning("ingest: dead letter for %s could not be written: %s", o.id, exc)

    async def _send(self, outcomes: list[_Outcome], request_id: str) -> IngestResponse:
        good = [o for o in outcomes if o.status == 0 and o.event is not None]
        results = await asyncio.gather(
            *(
                self.send(
                    self.settings.topic_for_kind(o.event.kind),
                    o.event.district.encode(),
                    o.value,
                    [CONTENT_TYPE],
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
                not_sent.append(
                    {"index": o.index, "id": o.id, "error": str(result) or type(result).__name__}
                )
            else:
                accepted.append(o.id or "")
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
                error="Kafka did not confirm some events; send them again later.",
                not_sent=not_sent,
            )
            return IngestResponse(503, body, {"Retry-After": str(RETRY_AFTER_SECONDS)})
        if not errors:
            body["status"] = 202
            return IngestResponse(202, body)
        status = 403 if all(e["status"] == 403 for e in errors) else 400
        first = errors[0]
        body["status"] = status
        body["error"] = (
            f"{len(errors)} of {len(outcomes)} events were not accepted; the first "
            f"(index {first['index']}): {first['error']}"
        )
        return IngestResponse(status, body)


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


# --- command line --------------------------------------------------------------------


def register_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "ingest-token",
        help="make and inspect HTTP ingest tokens",
        description="Publisher tokens for POST /api/v1/events; only their sha256 is stored.",
    )
    sub = parser.add_subparsers(dest="token_command", metavar="ACTION")
    sub.required = True
    new = sub.add_parser(
        "new",
        help="make a token: print it once, and the entry for the tokens file",
        description=(
            "Print a fresh token (give it to the publisher; it is not stored anywhere) and the "
            "JSON entry, with its sha256, to add to WATCHFLOOR_INGEST_TOKENS_FILE."
        ),
    )
    new.add_argument("--name", required=True, help="who publishes with it, e.g. jinshui-grid-app")
    new.add_argument(
        "--districts", required=True, help="comma-separated district codes, or '*' for all"
    )
    new.add_argument(
        "--types",
        required=True,
        help="comma-separated event types or globs, e.g. 'watchfloor.hazard.*'",
    )
    new.add_argument("--json", action="store_true", help="print JSON {token, entry}")
    new.set_defaults(func=_cmd_new)
    lister = sub.add_parser("list", help="the configured tokens (names and rights, no secrets)")
    lister.add_argument("--json", action="store_true", help="print JSON")
    lister.set_defaults(func=_cmd_list)


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _cmd_new(args: argparse.Namespace, settings: Settings) -> int:
    reference = load_reference(settings.reference_file)
    token = new_token()
    entry = {
        "name": args.name,
        "sha256": hash_token(token),
        "districts": sorted(set(_csv(args.districts))),
        "types": _csv(args.types),
    }
    parsed = _parse_entry(entry, "the new token", reference)  # same checks as at start-up
    if args.json:
        sys.stdout.write(orjson.dumps({"token": token, "entry": parsed.to_dict()}).decode() + "\n")
        return 0
    print(f"token for {parsed.name} (shown once; give it to the publisher, store it nowhere else):")
    print(f"  {token}")
    print('add this entry to the "tokens" list of the tokens file (WATCHFLOOR_INGEST_TOKENS_FILE):')
    print(f"  {orjson.dumps(parsed.to_dict()).decode()}")
    return 0


def _cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    tokens = IngestTokens.from_settings(settings, load_reference(settings.reference_file))
    rows = [
        {
            "name": t.name,
            "sha256": t.sha256[:12] + "...",
            "districts": sorted(t.districts),
            "types": list(t.types),
        }
        for t in tokens
    ]
    if args.json:
        sys.stdout.write(orjson.dumps(rows).decode() + "\n")
    elif not rows:
        print(
            "no ingest tokens configured (WATCHFLOOR_INGEST_TOKENS_FILE, WATCHFLOOR_INGEST_TOKENS)"
        )
    else:
        for r in rows:
            print(
                f"{r['name']}: districts {','.join(r['districts'])}; types {','.join(r['types'])}"
            )
    return 0

"""HTTP ingest tokens: the tokens file, rights and expiry, reloading it when it changes, its CLI."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from .errors import SettingsError
from .events import KIND_OF_TYPE
from .reference import Reference, load_reference
from .settings import Settings
from .validation import type_matches

log = logging.getLogger(__name__)

TOKEN_PREFIX = "wf_"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENTRY_KEYS = {"name", "sha256", "districts", "types", "expires"}


def hash_token(token: str) -> str:
    """The stored form of a token: sha256 of its UTF-8 bytes, lower-case hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh publisher token: 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class IngestToken:
    """One publisher's token (by hash), what it may send, and until when."""

    name: str
    sha256: str
    districts: frozenset[str]
    types: tuple[str, ...]
    expires: datetime | None = None

    def allows_district(self, district: str) -> bool:
        return "*" in self.districts or district in self.districts

    def allows_type(self, event_type: str) -> bool:
        return type_matches(event_type, self.types)

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires

    def to_dict(self) -> dict[str, Any]:
        """The JSON entry for the tokens file."""
        out: dict[str, Any] = {
            "name": self.name,
            "sha256": self.sha256,
            "districts": sorted(self.districts),
            "types": list(self.types),
        }
        if self.expires is not None:
            out["expires"] = self.expires.isoformat()
        return out


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

    def __iter__(self) -> Iterator[IngestToken]:
        return iter(sorted(self._by_hash.values(), key=lambda t: t.name))

    def current(self) -> IngestTokens:
        """The tokens in force (a fixed set: itself)."""
        return self

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
            parse_entry(e, f"{origin}, token {i + 1}", reference) for i, e in enumerate(entries)
        ]

    @classmethod
    def from_settings(cls, settings: Settings, reference: Reference | None = None) -> IngestTokens:
        """Tokens from ``WATCHFLOOR_INGEST_TOKENS_FILE`` and ``WATCHFLOOR_INGEST_TOKENS``."""
        tokens: list[IngestToken] = []
        if settings.ingest_tokens_file:
            tokens += read_tokens_file(Path(settings.ingest_tokens_file), reference)
        tokens += inline_tokens(settings, reference)
        return cls(tokens)


def read_tokens_file(path: Path, reference: Reference | None) -> list[IngestToken]:
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise SettingsError(
            f"The ingest tokens file {path} cannot be read: {exc.strerror}."
        ) from None
    except orjson.JSONDecodeError as exc:
        raise SettingsError(f"The ingest tokens file {path} is not JSON: {exc}.") from None
    return IngestTokens.parse(data, str(path), reference)


def inline_tokens(settings: Settings, reference: Reference | None) -> list[IngestToken]:
    if not settings.ingest_tokens:
        return []
    try:
        data = orjson.loads(settings.ingest_tokens.reveal())
    except orjson.JSONDecodeError:
        # The message would quote the secret; say only where it is wrong.
        raise SettingsError("WATCHFLOOR_INGEST_TOKENS is not valid JSON.") from None
    return IngestTokens.parse(data, "WATCHFLOOR_INGEST_TOKENS", reference)


def parse_expiry(text: str, where: str) -> datetime:
    """An RFC 3339 time with an offset (``2027-01-01T00:00:00+08:00``)."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise SettingsError(
            f"{where}: expires must be an RFC 3339 time with an offset, like "
            "2027-01-01T00:00:00+08:00."
        )
    return when


def parse_entry(entry: object, where: str, reference: Reference | None) -> IngestToken:
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
    expires_raw = entry.get("expires")
    expires = None
    if expires_raw is not None:
        if not isinstance(expires_raw, str):
            raise SettingsError(f"{where} ({name}): expires must be a string.")
        expires = parse_expiry(expires_raw, f"{where} ({name})")
    return IngestToken(name, digest, frozenset(districts), tuple(types), expires)


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    """What changes when the file does (a Kubernetes secret volume swaps a symlink)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


class TokenSource:
    """The tokens in force, with the tokens file read again whenever it changes.

    Each request looks at the file's modification time, size and inode (one ``stat``);
    a changed file is parsed again and, if it is valid, its tokens replace the old ones
    at once, so deleting an entry revokes that token on every worker within a request.
    A file that is missing or malformed after a change leaves the previous tokens in force
    (a half-written file must not lock every publisher out) and is logged once per change.
    Inline tokens (``WATCHFLOOR_INGEST_TOKENS``) are read at start only.
    """

    def __init__(
        self,
        settings: Settings,
        reference: Reference | None = None,
        *,
        on_reload: Callable[[IngestTokens], None] | None = None,
        on_reload_error: Callable[[], None] | None = None,
    ) -> None:
        self._path = Path(settings.ingest_tokens_file) if settings.ingest_tokens_file else None
        self._reference = reference
        self._inline = inline_tokens(settings, reference)
        self._on_reload = on_reload
        self._on_reload_error = on_reload_error
        self._stamp = _stamp(self._path) if self._path is not None else None
        file_tokens = (
            read_tokens_file(self._path, reference) if self._path is not None else []
        )
        self._tokens = IngestTokens([*file_tokens, *self._inline])

    def current(self) -> IngestTokens:
        if self._path is not None:
            stamp = _stamp(self._path)
            if stamp != self._stamp:
                self._reload(stamp)
        return self._tokens

    def _reload(self, stamp: tuple[int, int, int, int] | None) -> None:
        assert self._path is not None
        self._stamp = stamp  # one attempt per change of the file
        try:
            tokens = IngestTokens(
                [*read_tokens_file(self._path, self._reference), *self._inline]
            )
        except SettingsError as exc:
            log.warning("Ingest tokens not reloaded, the previous ones stay in force: %s", exc)
            if self._on_reload_error is not None:
                self._on_reload_error()
            return
        self._tokens = tokens
        log.info("Ingest tokens reloaded from %s: %d in force", self._path, len(tokens))
        if self._on_reload is not None:
            self._on_reload(tokens)


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
    new.add_argument(
        "--expires",
        default=None,
        help="when the token stops working: an RFC 3339 time with an offset, "
        "e.g. 2027-01-01T00:00:00+08:00 (default: never)",
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
    entry: dict[str, Any] = {
        "name": args.name,
        "sha256": hash_token(token),
        "districts": sorted(set(_csv(args.districts))),
        "types": _csv(args.types),
    }
    if args.expires:
        entry["expires"] = args.expires
    parsed = parse_entry(entry, "the new token", reference)  # same checks as at start-up
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
    now = datetime.now().astimezone()
    rows: list[dict[str, Any]] = [
        {
            "name": t.name,
            "sha256": t.sha256[:12] + "...",
            "districts": sorted(t.districts),
            "types": list(t.types),
            "expires": t.expires.isoformat() if t.expires is not None else None,
            "expired": t.expired(now),
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
        for t in tokens:
            until = ""
            if t.expires is not None:
                until = f"; {'expired' if t.expired(now) else 'expires'} {t.expires.isoformat()}"
            print(
                f"{t.name}: districts {','.join(sorted(t.districts))}; "
                f"types {','.join(t.types)}{until}"
            )
    return 0

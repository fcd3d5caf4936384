"""JSON lines, one record a line: the file format of ``--output``, replays and scenarios."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson

from ..errors import WatchfloorError
from ..events import KIND_OF_TYPE, Kind
from .records import STREAM_NAMES, STREAM_OF_NAME, Intent, SimRecord


def format_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_to_line(rec: SimRecord) -> bytes:
    """A record as one JSON line: ``at``, ``stream``, ``key``, ``intent``, ``reason`` and
    the value as ``event`` (a JSON object, when the bytes are exactly its orjson form),
    ``value`` (other UTF-8 text) or ``value_b64`` (anything else)."""
    line: dict[str, Any] = {
        "at": format_utc(rec.at),
        "stream": STREAM_NAMES[rec.stream],
        "key": rec.key.decode("utf-8"),
        "intent": rec.intent.value,
    }
    if rec.reason is not None:
        line["reason"] = rec.reason
    value = rec.value
    obj: Any = None
    if value[:1] == b"{":
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            obj = None
    if isinstance(obj, dict) and orjson.dumps(obj) == value:
        line["event"] = obj
    else:
        try:
            line["value"] = value.decode("utf-8")
        except UnicodeDecodeError:
            line["value_b64"] = base64.b64encode(value).decode("ascii")
    return orjson.dumps(line)


def record_from_line(line: bytes | str) -> SimRecord:
    try:
        obj = orjson.loads(line)
        at = datetime.fromisoformat(obj["at"]).timestamp()
        stream = STREAM_OF_NAME[obj["stream"]]
        key = obj["key"].encode("utf-8")
        intent = Intent(obj["intent"])
        reason = obj.get("reason")
        if "event" in obj:
            value = orjson.dumps(obj["event"])
        elif "value_b64" in obj:
            value = base64.b64decode(obj["value_b64"])
        else:
            value = obj["value"].encode("utf-8")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise WatchfloorError(f"Not a simulator record line ({exc}): {str(line)[:120]!r}") from None
    kind, ts = describe_value(value)
    return SimRecord(at, stream, key, value, intent, reason, kind, ts)


def describe_value(value: bytes) -> tuple[Kind | None, float | None]:
    """The kind and event time a value claims, if it is a readable event."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    kind = KIND_OF_TYPE.get(doc.get("type", "")) if isinstance(doc.get("type"), str) else None
    ts: float | None = None
    text = doc.get("time")
    if isinstance(text, str):
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            when = None
        if when is not None and when.tzinfo is not None:
            ts = when.timestamp()
    return kind, ts

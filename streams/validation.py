"""Validation at the edge: raw records and decoded JSON become Events or InvalidEvent errors."""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson

from . import native
from .categories import canonical
from .clock import Clock
from .errors import InvalidEvent, ReferenceDataError
from .events import KIND_OF_TYPE, STREAM_OF_KIND, Event, Kind, Stream, event_identity
from .reference import CATEGORY_GROUPS, Reference
from .schema_program import compile_schema

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"
SCHEMA_BASE_URL = "https://watchfloor.dev/schemas/"
COMMON_SCHEMA = "common.v1.json"

# 2000-01-01T00:00:00Z: anything earlier is a device with a reset clock, not a report.
EARLIEST_TS = 946_684_800.0
# A patrol app sends its report when the run ends; ten minutes covers queueing on the device.
PATROL_END_SLACK_SECONDS = 600.0
# Defaults of the settings of the same names (streams.settings reads these).
MAX_RECORD_BYTES = 64 * 1024
MAX_FUTURE_SECONDS = 600.0
TIME_EXAMPLE = "2026-04-12T09:30:00+08:00"
_TYPE_LIKE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")

# Error sentences are written into dead-letter headers and logs; values are not echoed
# into them (a publisher may have put a name where a code belongs), only their JSON type.
_JSON_TYPE_NAMES = {
    "string": "a string",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "object": "a JSON object",
    "array": "a JSON array",
    "null": "null",
}


class SchemaFilesError(ReferenceDataError):
    """The schema files are missing, malformed or do not cover every event type."""


@dataclass(frozen=True)
class SchemaFiles:
    """The contract as loaded from ``schemas/``: every document by ``$id``, and by event type."""

    directory: Path
    documents: dict[str, dict[str, Any]]
    by_type: dict[str, dict[str, Any]]

    @property
    def registry(self) -> jsonschema_rs.Registry:
        return jsonschema_rs.Registry(list(self.documents.items()))

    def validator(self, schema: Mapping[str, Any]) -> jsonschema_rs.Validator:
        """A compiled validator for one schema, with format assertion on and no network."""
        try:
            return jsonschema_rs.validator_for(
                dict(schema),
                registry=self.registry,
                validate_formats=True,
                ignore_unknown_formats=False,
                offline=True,
            )
        except (ValueError, jsonschema_rs.ReferencingError) as exc:
            raise SchemaFilesError(
                f"A schema in {self.directory} does not compile: {exc}"
            ) from None


def load_schemas(directory: Path = SCHEMAS_DIR) -> SchemaFiles:
    """Read every ``*.json`` in ``directory``; each event type must have exactly one schema."""
    documents: dict[str, dict[str, Any]] = {}
    by_type: dict[str, dict[str, Any]] = {}
    paths = sorted(Path(directory).glob("*.json"))
    if not paths:
        raise SchemaFilesError(f"There are no schema files in {directory}.")
    for path in paths:
        try:
            doc = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise SchemaFilesError(f"Schema file {path} cannot be read: {exc}.") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("$id"), str):
            raise SchemaFilesError(f"Schema file {path} has no $id.")
        if doc["$id"] != SCHEMA_BASE_URL + path.name:
            raise SchemaFilesError(
                f"Schema file {path} has $id {doc['$id']}; it must be {SCHEMA_BASE_URL}{path.name}."
            )
        documents[doc["$id"]] = doc
        etype = doc.get("properties", {}).get("type", {}).get("const")
        if isinstance(etype, str):
            if etype in by_type:
                raise SchemaFilesError(f"Two schema files in {directory} describe {etype}.")
            by_type[etype] = doc
    missing = sorted(set(KIND_OF_TYPE) - set(by_type))
    if missing:
        raise SchemaFilesError(f"{directory} has no schema for {', '.join(missing)}.")
    unknown = sorted(set(by_type) - set(KIND_OF_TYPE))
    if unknown:
        raise SchemaFilesError(
            f"{directory} describes {', '.join(unknown)}, which streams.events does not know."
        )
    if SCHEMA_BASE_URL + COMMON_SCHEMA not in documents:
        raise SchemaFilesError(f"{directory} has no {COMMON_SCHEMA}.")
    return SchemaFiles(Path(directory), documents, by_type)


# --- time --------------------------------------------------------------------------

_NAIVE_EPOCH = datetime(1970, 1, 1)
_fromiso = datetime.fromisoformat
_offset_cache: dict[str, float] = {}


def _offset_seconds(suffix: str) -> float:
    seconds = _offset_cache.get(suffix)
    if seconds is None:
        sign = -1.0 if suffix[0] == "-" else 1.0
        seconds = sign * (int(suffix[1:3]) * 3600 + int(suffix[4:6]) * 60)
        if len(_offset_cache) < 4096:  # offsets are few; a flood of odd ones must not grow it
            _offset_cache[suffix] = seconds
    return seconds


def rfc3339_seconds(text: str) -> float:
    """POSIX seconds of an RFC 3339 time already checked by the schema (offset present).

    The common form is read by ``streams/_rfc3339.c`` when built; the rest (and every
    time without it) by ``datetime``: parsing the naive part and applying a cached offset
    is about twice as fast as an aware ``fromisoformat(...).timestamp()``, which builds a
    tzinfo object every time. Raises ValueError when the text is not a real time (a leap
    second is read as :59).
    """
    if _C_SECONDS is not None:
        fast = _C_SECONDS(text)
        if fast is not None:
            return fast
    return py_rfc3339_seconds(text)


def py_rfc3339_seconds(text: str) -> float:
    """``rfc3339_seconds`` through ``datetime`` alone: the fallback, and the reference the
    C reading is tested against."""
    last = text[-1]
    if last == "Z" or last == "z":
        naive, offset = text[:-1], 0.0
    else:
        naive = text[:-6]
        cached = _offset_cache.get(text[-6:])
        offset = _offset_seconds(text[-6:]) if cached is None else cached
    try:
        moment = _fromiso(naive)
    except ValueError:
        moment = _fromiso(_python_iso(naive))
    if moment.tzinfo is not None:
        raise ValueError("two offsets")
    return (moment - _NAIVE_EPOCH).total_seconds() - offset


# The schema programs' checker in C (``streams/_schema_check.c``) where built: a record it
# vouches for skips jsonschema-rs (``streams/schema_program.py`` says why that is safe).
_SCHEMA_CHECK = native.extension("_schema_check")
# The common form's reading in C (``streams/_rfc3339.c``) where built.
_RFC3339 = native.extension("_rfc3339")
_C_SECONDS: Callable[[str], float | None] | None = None if _RFC3339 is None else _RFC3339.seconds


def _python_iso(naive: str) -> str:
    # RFC 3339 allows a lower-case 't' and leap second 60; Python accepts neither.
    fixed = naive[:10] + "T" + naive[11:]
    if fixed[17:19] == "60":
        fixed = fixed[:17] + "59" + fixed[19:]
    return fixed


def _is_naive_time(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return _fromiso(value).tzinfo is None
    except ValueError:
        return False


# --- field names and sentences -----------------------------------------------------


def field_name(path: list[str | int] | tuple[str | int, ...]) -> str:
    """``['data', 'location', 'lat']`` -> ``data.location.lat``; list items as ``[i]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a JSON array"
    if isinstance(value, dict):
        return "a JSON object"
    return type(value).__name__


def _words(items: list[str], conj: str = "or") -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {conj} " + items[-1]


def _show(value: object) -> str:
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )


def _node_at(schema: Mapping[str, Any], path: list[str | int]) -> Any:
    node: Any = schema
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _keyword_parent(
    err: jsonschema_rs.ValidationError, schema: Mapping[str, Any], files: SchemaFiles
) -> Mapping[str, Any]:
    """The subschema holding the keyword that failed (for its x-expected / x-error hints)."""
    location = err.absolute_keyword_location
    node: Any = None
    if location:
        url, _, pointer = location.partition("#")
        doc = files.documents.get(url, schema)
        parts: list[str | int] = [
            p.replace("~1", "/").replace("~0", "~") for p in pointer.strip("/").split("/") if p
        ]
        node = _node_at(doc, parts[:-1])
    if not isinstance(node, Mapping):
        node = _node_at(schema, list(err.schema_path)[:-1])
    return node if isinstance(node, Mapping) else {}


def describe_error(
    err: jsonschema_rs.ValidationError, schema: Mapping[str, Any], files: SchemaFiles
) -> InvalidEvent:
    """Turn one schema failure into an ``InvalidEvent`` whose sentence names the field."""
    path = list(err.instance_path)
    kind = err.kind
    name = kind.name
    parent = _keyword_parent(err, schema, files)
    field = field_name(path)
    if name == "required":
        field = field_name([*path, kind.property])  # type: ignore[attr-defined]
    elif name == "additionalProperties":
        unexpected = list(kind.unexpected)  # type: ignore[attr-defined]
        field = field_name([*path, unexpected[0]]) if unexpected else field
    elif name == "propertyNames":
        inner = kind.error  # type: ignore[attr-defined]
        field = field_name([*path, str(inner.instance)])
        parent = _keyword_parent(inner, schema, files) or parent
    shown = field or "The event"

    hint = parent.get("x-error")
    if isinstance(hint, str):
        return InvalidEvent("schema", hint.format(field=shown), field=field or None)

    naive = parent.get("format") == "date-time" and name in {"pattern", "format"}
    if naive and _is_naive_time(err.instance):
        return InvalidEvent(
            "naive_time",
            f"{shown} has no UTC offset; write it with one, like {TIME_EXAMPLE}.",
            field=field,
        )

    if name == "required":
        return InvalidEvent("schema", f"{shown} is missing.", field=field)
    if name == "additionalProperties":
        allowed = sorted(parent.get("properties", {}))
        where = field_name(path) or "the event"
        if allowed:
            sentence = f"{shown} is not allowed; {where} may have only {_words(allowed)}."
        else:
            sentence = f"{shown} is not allowed; {where} must be empty."
        return InvalidEvent("schema", sentence, field=field)
    if name == "type" and not path:
        return InvalidEvent(
            "schema",
            f"The event must be a JSON object, not {_json_type(err.instance)}.",
            field=None,
        )

    expected = parent.get("x-expected")
    if isinstance(expected, str) and name in {
        "type", "pattern", "format", "minLength", "maxLength", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum",
    }:  # fmt: skip
        return InvalidEvent("schema", f"{shown} must be {expected}.", field=field)
    if name == "type":
        wanted = [_JSON_TYPE_NAMES.get(t, t) for t in kind.types]  # type: ignore[attr-defined]
        return InvalidEvent(
            "schema",
            f"{shown} must be {_words(wanted)}, not {_json_type(err.instance)}.",
            field=field,
        )
    if name == "enum":
        options = [_show(o) for o in kind.options]  # type: ignore[attr-defined]
        if options and options[-1] == "null" and len(options) == 2:
            return InvalidEvent("schema", f"{shown} must be {options[0]} or absent.", field=field)
        return InvalidEvent("schema", f"{shown} must be one of {_words(options)}.", field=field)
    if name == "const":
        value = _show(kind.expected_value)  # type: ignore[attr-defined]
        return InvalidEvent("schema", f"{shown} must be {value}.", field=field)
    if name in {"minimum", "exclusiveMinimum"}:
        limit = _show(kind.limit)  # type: ignore[attr-defined]
        word = "at least" if name == "minimum" else "more than"
        return InvalidEvent("schema", f"{shown} must be {word} {limit}.", field=field)
    if name in {"maximum", "exclusiveMaximum"}:
        limit = _show(kind.limit)  # type: ignore[attr-defined]
        word = "at most" if name == "maximum" else "less than"
        return InvalidEvent("schema", f"{shown} must be {word} {limit}.", field=field)
    if name == "minLength":
        limit = kind.limit  # type: ignore[attr-defined]
        return InvalidEvent(
            "schema", f"{shown} must have at least {limit} characters.", field=field
        )
    if name == "maxLength":
        limit = kind.limit  # type: ignore[attr-defined]
        return InvalidEvent("schema", f"{shown} must have at most {limit} characters.", field=field)
    if name in {"pattern", "format"}:
        return InvalidEvent("schema", f"{shown} is not in the required form.", field=field)
    if name == "propertyNames":
        return InvalidEvent("schema", f"{shown} is not an allowed attribute name.", field=field)
    return InvalidEvent("schema", f"{shown} does not match its schema ({name}).", field=field)


# --- per-type builders: schema-valid document -> Event -------------------------------

_Builder = Callable[[dict[str, Any], dict[str, Any], float], Event]


def _timestamp(doc_part: Mapping[str, Any], key: str, field: str) -> float:
    try:
        return rfc3339_seconds(doc_part[key])
    except (ValueError, IndexError):
        raise InvalidEvent(
            "schema",
            f"{field} must be a real time with a UTC offset, like {TIME_EXAMPLE}.",
            field=field,
        ) from None


def _event(kind: Kind, d: dict[str, Any], ts: float) -> Event:
    """The event's envelope part. Builders set the optional fields before handing the
    event on: keyword construction through ``**fields`` costs three times as much, once
    per event."""
    source, eid = d["source"], d["id"]
    ev = Event(kind, eid, source, d["district"], d["subject"], ts)
    ev.identity = event_identity(source, eid)
    return ev


# Codes met so far, each as its one shared string. sys.intern's table holds every name
# the process interned, and a lookup there missed the caches: 6 % of the engine's time
# (perf, 100,000 events at 1,000 districts). This one holds the codes of a city (the
# benchmark's 1,000 districts have 13,755 units and communities), up to a bound that
# senders making up codes cannot push past (about 4 MB); beyond it, sys.intern as before.
_CODES: dict[str, str] = {}
CODES_MAX = 1 << 15


def _code(data: dict[str, Any], key: str) -> str | None:
    """An optional code of ``data``, as one shared string (lifecycles keep it)."""
    value = data.get(key)
    if value is None:
        return None
    code = _CODES.get(value)
    if code is None:
        code = sys.intern(value)
        if len(_CODES) < CODES_MAX:
            _CODES[code] = code
    return code


def _b_case_filed(d: dict[str, Any], data: dict[str, Any], ts: float) -> Event:
    ev = _event(Kind.CASE_FILED, d, ts)
    ev.category = canonical(data["category"])
    ev.community = _code(data, "community")
    return ev


def _b_case_cleared(d: dict[str, Any], data: dict[str, Any], ts: float) -> Event:
    ev = _event(Kind.CASE_CLEARED, d, ts)
    category = data.get("category")
    ev.category = category and canonical(category)
    ev.community = _code(data, "community")
    return ev


def _b_dispute_reported(d: dict[str, Any], data: dict[str, Any], ts: float) -> Event:
    ev = _event(Kind.DISPUTE_REPORTED, d, ts)
    ev.category = canonical(data["category"])
    ev.community = _code(data, "community")
    ev.unit = _code(data, "responsible_unit")
    return ev


def _plain(kind: Kind) -> _Builder:
    def build(d: dict[str, Any], data: dict[str, Any], ts: float) -> Event:
        ev = _event(kind, d, ts)
        ev.unit = _code(data, "responsible_unit")
        return ev

    return build


def _b_patrol(d: dict[str, Any], data: dict[str, Any], ts: float) -> Event:
    started = _timestamp(data, "started_at", "data.started_at")
    ended = _timestamp(data, "ended_at", "data.ended_at")
    if started < EARLIEST_TS:
        raise InvalidEvent(
            "time_out_of_range", "data.started_at is before 2000-01-01.", field="data.started_at"
        )
    if ended < started:
        raise InvalidEvent(
            "time_out_of_range",
            "data.ended_at is before data.started_at: a patrol cannot end before it starts.",
            field="data.ended_at",
        )
    if ended > ts + PATROL_END_SLACK_SECONDS:
        raise InvalidEvent(
            "time_out_of_range",
            "data.ended_at is more than 10 minutes after time: the report cannot precede "
            "the end of the patrol.",
            field="data.ended_at",
        )
    ev = _event(Kind.PATROL_COMPLETED, d, ts)
    ev.ended = ended
    return ev


def _b_hazard_found(d: dict[str, Any], data: dict[str, Any], ts: float) -> Event:
    deadline = _timestamp(data, "deadline", "data.deadline")
    if deadline <= ts:
        raise InvalidEvent(
            "deadline_before_found",
            "data.deadline is not after time: a hazard's deadline must come after it was found.",
            field="data.deadline",
        )
    ev = _event(Kind.HAZARD_FOUND, d, ts)
    ev.category = canonical(data["category"])
    ev.deadline = deadline
    ev.major = data["major"]
    ev.community = _code(data, "community")
    ev.unit = _code(data, "responsible_unit")
    return ev


def _b_hazard_verified(d: dict[str, Any], data: dict[str, Any], ts: float) -> Event:
    if data["result"] == "confirmed":
        return _event(Kind.HAZARD_VERIFIED, d, ts)
    deadline = _timestamp(data, "new_deadline", "data.new_deadline")
    if deadline <= ts:
        raise InvalidEvent(
            "deadline_before_found",
            "data.new_deadline is not after time: a new deadline must come after the "
            "look-back visit that set it.",
            field="data.new_deadline",
        )
    ev = _event(Kind.HAZARD_VERIFIED, d, ts)
    ev.deadline = deadline
    ev.confirmed = False
    return ev


def _b_accident(d: dict[str, Any], data: dict[str, Any], ts: float) -> Event:
    ev = _event(Kind.ACCIDENT_REPORTED, d, ts)
    ev.category = canonical(data["category"])
    ev.community = _code(data, "community")
    ev.figures = (data["deaths"], data["serious_injuries"], data["direct_loss_yuan"])
    return ev


_BUILDERS: dict[Kind, _Builder] = {
    Kind.CASE_FILED: _b_case_filed,
    Kind.CASE_CLEARED: _b_case_cleared,
    Kind.DISPUTE_REPORTED: _b_dispute_reported,
    Kind.DISPUTE_MEDIATION_STARTED: _plain(Kind.DISPUTE_MEDIATION_STARTED),
    Kind.DISPUTE_RESOLVED: _plain(Kind.DISPUTE_RESOLVED),
    Kind.DISPUTE_ESCALATED: _plain(Kind.DISPUTE_ESCALATED),
    Kind.PATROL_COMPLETED: _b_patrol,
    Kind.HAZARD_FOUND: _b_hazard_found,
    Kind.HAZARD_RECTIFIED: _plain(Kind.HAZARD_RECTIFIED),
    Kind.HAZARD_VERIFIED: _b_hazard_verified,
    Kind.ACCIDENT_REPORTED: _b_accident,
}


@dataclass(frozen=True, slots=True)
class _Entry:
    kind: Kind
    stream: Stream
    schema: dict[str, Any]
    validator: jsonschema_rs.Validator
    build: _Builder
    is_valid: Callable[[object], bool]
    # True only for a record the schema program is sure is valid; None: no program.
    vouches: Callable[[object], bool] | None


def stream_name(stream: Stream) -> str:
    return stream.name.lower()


def type_matches(event_type: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """Whether an event type matches any glob (``watchfloor.hazard.*``; ``*`` for all)."""
    return any(fnmatch.fnmatchcase(event_type, p) for p in patterns)


class EventValidator:
    """Checks records against the schema files and the reference data; compiled once.

    The order of checks fixes which reason a record with several faults gets: size and
    encoding, then the event type and its topic, then the schema, then the district, then
    times (range, deadlines, patrol ends).
    """

    def __init__(
        self,
        reference: Reference,
        *,
        clock: Clock,
        max_record_bytes: int = MAX_RECORD_BYTES,
        max_future_seconds: float = MAX_FUTURE_SECONDS,
        schemas_dir: Path = SCHEMAS_DIR,
        schema_programs: bool = True,
    ) -> None:
        self.reference = reference
        self.clock = clock
        self.max_record_bytes = max_record_bytes
        self.max_future_seconds = max_future_seconds
        self.files = load_schemas(schemas_dir)
        self._districts = reference.district_codes
        self._entries: dict[str, _Entry] = {}
        for etype, schema in self.files.by_type.items():
            kind = KIND_OF_TYPE[etype]
            compiled = self.files.validator(schema)
            vouches = None
            if schema_programs and _SCHEMA_CHECK is not None:
                program = compile_schema(schema, self.files.documents)
                if program is not None:
                    vouches = _SCHEMA_CHECK.Program(program).accepts
            self._entries[etype] = _Entry(
                kind,
                STREAM_OF_KIND[kind],
                schema,
                compiled,
                _BUILDERS[kind],
                compiled.is_valid,
                vouches,
            )
        common = self.files.documents[SCHEMA_BASE_URL + COMMON_SCHEMA]
        self._envelope_schema: dict[str, Any] = {
            "$schema": common.get("$schema"),
            "$ref": f"{COMMON_SCHEMA}#/$defs/envelope",
            "$id": SCHEMA_BASE_URL + "envelope-check.json",
        }
        self._envelope = self.files.validator(self._envelope_schema)
        self._check_categories()

    def _check_categories(self) -> None:
        # The schemas fix the category codes; a reference file that disagrees would make
        # the dashboards list categories no event can carry, or drop ones they do.
        defs = self.files.documents[SCHEMA_BASE_URL + COMMON_SCHEMA].get("$defs", {})
        for group in CATEGORY_GROUPS:
            in_schema = list(defs.get(f"{group}_category", {}).get("enum", []))
            in_reference = list(self.reference.categories.get(group, ()))
            if sorted(in_schema) != sorted(in_reference):
                raise SchemaFilesError(
                    f"The {group} categories in the schemas ({', '.join(in_schema)}) differ from "
                    f"the reference data ({', '.join(in_reference)})."
                )

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def validate(self, raw: bytes | None, stream: Stream | None = None) -> Event:
        """Check one raw Kafka value; ``stream`` is the topic's role (None: any topic)."""
        if not raw:
            raise InvalidEvent("empty", "The record has no value.")
        if len(raw) > self.max_record_bytes:
            raise InvalidEvent(
                "too_large",
                f"The record is {len(raw)} bytes; the limit is {self.max_record_bytes}.",
            )
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise self._undecodable(raw, exc) from None
        return self.validate_document(doc, stream)

    def validate_document(self, doc: object, stream: Stream | None = None) -> Event:
        """Check an already decoded JSON document (HTTP ingest); same rules as ``validate``."""
        if type(doc) is not dict:
            raise InvalidEvent(
                "schema", f"The event must be a JSON object, not {_json_type(doc)}.", field=None
            )
        etype = doc.get("type")
        entry = self._entries.get(etype) if type(etype) is str else None
        if entry is None:
            raise self._type_problem(doc)
        if stream is not None and entry.stream is not stream:
            raise InvalidEvent(
                "wrong_topic",
                f"type {etype} belongs on the {stream_name(entry.stream)} topic, "
                f"not on the {stream_name(stream)} topic.",
                field="type",
            )
        try:
            vouches = entry.vouches
            valid = (vouches is not None and vouches(doc)) or entry.is_valid(doc)
        except (ValueError, TypeError, OverflowError, RecursionError):
            # Only reachable with Python objects JSON cannot hold (validate_document).
            raise InvalidEvent(
                "schema", "The event holds a value that is not JSON.", field=None
            ) from None
        if not valid:
            raise self._explain(entry.validator, entry.schema, doc)
        district = doc["district"]
        if district not in self._districts:
            raise InvalidEvent(
                "unknown_district",
                f"district {district} is not a district in the reference data.",
                field="district",
            )
        try:
            ts = rfc3339_seconds(doc["time"])
        except (ValueError, IndexError):
            ts = _timestamp(doc, "time", "time")  # raises with the sentence
        if not EARLIEST_TS <= ts <= self.clock.time() + self.max_future_seconds:
            raise self._time_out_of_range(ts)
        return entry.build(doc, doc["data"], ts)

    # --- error paths: slower, only on failure -----------------------------------------

    def _time_out_of_range(self, ts: float) -> InvalidEvent:
        if ts < EARLIEST_TS:
            return InvalidEvent("time_out_of_range", "time is before 2000-01-01.", field="time")
        return InvalidEvent(
            "time_out_of_range",
            f"time is more than {self.max_future_seconds:g} seconds ahead of this clock; "
            "check the sending device's clock and offset.",
            field="time",
        )

    def _undecodable(self, raw: bytes, exc: orjson.JSONDecodeError) -> InvalidEvent:
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError as bad:
            return InvalidEvent(
                "not_utf8", f"The record is not UTF-8: byte {bad.start} cannot be decoded."
            )
        return InvalidEvent(
            "malformed_json",
            f"The record is not a JSON document: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}.",
        )

    def _type_problem(self, doc: dict[str, Any]) -> InvalidEvent:
        etype = doc.get("type")
        if isinstance(etype, str):
            # Echo the value only when it looks like a type: sentences end up in logs.
            shown = f"{etype!r} " if _TYPE_LIKE.match(etype) else ""
            return InvalidEvent(
                "unknown_type",
                f"type {shown}is not a Watchfloor event type; known types are "
                f"{', '.join(sorted(self._entries))}.",
                field="type",
            )
        return self._explain(self._envelope, self._envelope_schema, doc)

    def _explain(
        self, validator: jsonschema_rs.Validator, schema: dict[str, Any], doc: dict[str, Any]
    ) -> InvalidEvent:
        try:
            errors = list(validator.iter_errors(doc))
        except (ValueError, TypeError, OverflowError, RecursionError):
            return InvalidEvent("schema", "The event holds a value that is not JSON.")
        if not errors:  # is_valid and iter_errors disagree: never seen, but never crash
            return InvalidEvent("schema", "The event does not match its schema.")
        return describe_error(_first(errors), schema, self.files)


def _first(errors: list[jsonschema_rs.ValidationError]) -> jsonschema_rs.ValidationError:
    # Envelope attributes before data fields, then shallow before deep: the outermost
    # fault is the one a publisher should fix first.
    def rank(err: jsonschema_rs.ValidationError) -> tuple[int, int]:
        path = list(err.instance_path)
        return (1 if path[:1] == ["data"] else 0, len(path))

    return min(errors, key=rank)

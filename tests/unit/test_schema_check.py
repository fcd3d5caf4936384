"""Schema programs: what the C checker vouches for, jsonschema-rs accepts, and nothing else changes.

The oracle throughout is jsonschema-rs itself (the validator the contract is defined by),
and for patterns also Python's ``re``, which reads these ASCII patterns as ECMA-262 does:
a program's "valid" must be jsonschema-rs's valid, its "invalid" jsonschema-rs's invalid,
and the validator's outcome (the Event, or the reason code, sentence and field) must be
the same with the programs and without them.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streams import native, schema_program
from streams.clock import FixedClock
from streams.errors import InvalidEvent
from streams.reference import Reference, load_reference
from streams.schema_program import (
    DATE_TIME_FORM,
    FORMAT,
    FORMATS,
    PATTERN,
    SPANS,
    automaton,
    compile_schema,
    includes,
    pattern_check,
)
from streams.settings import Settings
from streams.validation import EventValidator
from tests.unit.test_validation import NOW, json_values, mutated_events

C = native.extension("_schema_check")
needs_c = pytest.mark.skipif(
    C is None, reason="streams/_schema_check.c is not built (pure install)"
)
INVALID, VALID, UNSURE = 0, 1, 2
TIMESTAMP = (
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


@pytest.fixture(scope="module")
def reference() -> Reference:
    return load_reference(Settings().reference_file)


@pytest.fixture(scope="module")
def with_programs(reference: Reference) -> EventValidator:
    return EventValidator(reference, clock=FixedClock(NOW))


@pytest.fixture(scope="module")
def without_programs(reference: Reference) -> EventValidator:
    return EventValidator(reference, clock=FixedClock(NOW), schema_programs=False)


@pytest.fixture(scope="module")
def programs(with_programs: EventValidator) -> dict[str, Any]:
    files = with_programs.files
    assert C is not None
    out = {}
    for etype, schema in files.by_type.items():
        program = compile_schema(schema, files.documents)
        assert program is not None, f"{etype} does not compile to a program"
        out[etype] = C.Program(program)
    return out


@pytest.fixture(scope="module")
def rs(with_programs: EventValidator) -> dict[str, jsonschema_rs.Validator]:
    files = with_programs.files
    return {etype: files.validator(schema) for etype, schema in files.by_type.items()}


def all_examples(validator: EventValidator) -> list[dict[str, Any]]:
    return [copy.deepcopy(ex) for s in validator.files.by_type.values() for ex in s["examples"]]


def outcome(validator: EventValidator, doc: object) -> object:
    try:
        return validator.validate_document(doc)
    except InvalidEvent as exc:
        return (exc.reason, exc.message, exc.field)


def rs_verdict(validator: jsonschema_rs.Validator, doc: object) -> bool | None:
    try:
        return bool(validator.is_valid(doc))
    except (ValueError, TypeError, OverflowError, RecursionError):
        return None  # not JSON: the validator's "not JSON" sentence


def assert_sound(program: Any, validator: jsonschema_rs.Validator, doc: object) -> int:
    verdict = program.evaluate(doc)
    assert verdict in (INVALID, VALID, UNSURE)
    if verdict != UNSURE:
        assert rs_verdict(validator, doc) is (verdict == VALID), (verdict, doc)
    return verdict


def one(schema: dict[str, Any]) -> tuple[Any, jsonschema_rs.Validator]:
    """A program and jsonschema-rs for one small schema of our own."""
    assert C is not None
    full = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    program = compile_schema(full, {})
    assert program is not None, schema
    return C.Program(program), jsonschema_rs.validator_for(full, validate_formats=True)


# --- what the schemas compile to -------------------------------------------------------


@needs_c
def test_every_event_type_has_a_program_in_the_validator(with_programs: EventValidator) -> None:
    assert all(entry.vouches is not None for entry in with_programs._entries.values())


def test_without_programs_the_validator_asks_jsonschema_rs_alone(
    without_programs: EventValidator,
) -> None:
    assert all(entry.vouches is None for entry in without_programs._entries.values())


@needs_c
def test_every_example_is_vouched_for(
    with_programs: EventValidator, programs: dict[str, Any]
) -> None:
    examples = all_examples(with_programs)
    assert len(examples) >= 11
    for doc in examples:
        assert programs[doc["type"]].evaluate(doc) == VALID
        assert programs[doc["type"]].evaluate(orjson.loads(orjson.dumps(doc))) == VALID


@needs_c
def test_the_simulators_valid_records_are_vouched_for(
    with_programs: EventValidator, programs: dict[str, Any], rs: dict[str, Any]
) -> None:
    from tests.benchmarks.engine_cost import city_engine, records

    engine, city, _ = city_engine(20)
    vouched = checked = 0
    for _, _, recs in records(city, 3000, 2, engine):
        for rec in recs:
            try:
                doc = orjson.loads(rec.value)
            except orjson.JSONDecodeError:
                continue
            program = programs.get(doc.get("type")) if isinstance(doc, dict) else None
            if program is None:
                continue
            checked += 1
            verdict = assert_sound(program, rs[doc["type"]], doc)
            vouched += verdict == VALID
            if rs_verdict(rs[doc["type"]], doc):
                assert verdict == VALID, doc  # else the shortcut would buy nothing
    assert checked > 2500 and vouched > 2400


@pytest.mark.parametrize(
    "schema",
    [
        {"pattern": "^a|b$"},  # the "|" binds looser than the anchors
        {"pattern": "a+"},  # not anchored: a search, not a match
        {"pattern": "^\\d+$"},  # \d is Unicode digits to some engines
        {"pattern": "^.{1,3}$"},
        {"pattern": "^[^a]$"},
        {"pattern": "^(?:a)$"},
        {"pattern": "^a+?$"},
        {"pattern": "^é$"},
        {"format": "email"},
        {"oneOf": [{"type": "string"}]},
        {"type": "string", "enum": [1, 2]},
        {"$ref": "other.json#/x"},
        {"maxLength": -1},
        {"minLength": 1.5},
    ],
)
def test_what_the_checker_does_not_model_compiles_to_no_program(schema: dict[str, Any]) -> None:
    assert compile_schema(schema, {}) is None


def test_a_pattern_of_fixed_classes_and_a_repeated_one_becomes_spans() -> None:
    assert pattern_check("^[a-z][a-z0-9-]{0,31}$")[0] == SPANS
    assert pattern_check("^[!-~]{1,128}$")[0] == SPANS
    assert pattern_check(TIMESTAMP)[0] == PATTERN
    assert pattern_check("^a*b*$")[0] == PATTERN  # two variable parts: the automaton


def test_the_timestamp_pattern_is_dropped_only_because_the_form_implies_it() -> None:
    form = automaton(DATE_TIME_FORM)
    assert includes(form, automaton(TIMESTAMP))
    assert not includes(automaton(TIMESTAMP), form)  # lower-case t, long fractions
    assert not includes(form, automaton("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]*$"))
    node = compile_schema({"type": "string", "format": "date-time", "pattern": TIMESTAMP}, {})
    assert node is not None
    assert node[0] == (FORMAT, FORMATS["date-time"]) and all(c[0] != PATTERN for c in node)
    kept = compile_schema({"format": "date-time", "pattern": "^2026-(0|1)[0-9T:Z-]*$"}, {})
    assert kept is not None and any(c[0] == PATTERN for c in kept)


# --- patterns: the automata and spans against re and jsonschema-rs ---------------------

PATTERNS = sorted(
    {
        "^[a-z0-9][a-z0-9_.-]{0,127}$",
        "^[!-~]{1,128}$",
        "^[a-z0-9][a-z0-9-]{0,63}$",
        "^application/json(; ?charset=(utf|UTF)-8)?$",
        "^[a-z][a-z0-9-]{0,31}$",
        TIMESTAMP,
        "^[!-~]{0,256}$",
        "^[a-z0-9]{1,20}$",
        "^(ab|a)(bc|c)?x{2,}$",
        "^[a\\-z]+\\.[0-9]?$",
    }
)


def test_the_patterns_of_the_schemas_are_all_tested_here(with_programs: EventValidator) -> None:
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                found.add(node["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(list(with_programs.files.documents.values()))
    assert found and found <= set(PATTERNS)


def near(pattern: str) -> st.SearchStrategy[str]:
    """Texts made of the pattern's own characters and a few others, around its lengths."""
    own = sorted({c for c in pattern if c.isprintable()} | set("aZ09-._:+/ T\t\n"))
    pieces = st.sampled_from(own) | st.sampled_from(["é", "\u4e2d", "\U0001f600", "\x00", "\x7f"])
    return st.lists(pieces, max_size=300).map("".join) | st.text(max_size=40)


@needs_c
@pytest.mark.parametrize("pattern", PATTERNS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_pattern_matches_as_re_and_jsonschema_rs_do(pattern: str, data: st.DataObject) -> None:
    assert C is not None
    program = C.Program((pattern_check(pattern),))
    rs = jsonschema_rs.validator_for({"pattern": pattern})
    text = data.draw(near(pattern))
    want = re.fullmatch(pattern[1:-1], text) is not None
    assert program.evaluate(text) == (VALID if want else INVALID), text
    assert rs.is_valid(text) is want


@needs_c
@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_pattern_accepts_its_own_matches(pattern: str) -> None:
    assert C is not None
    program = C.Program((pattern_check(pattern),))
    samples = st.from_regex(re.compile(pattern[1:-1] + r"\Z", re.ASCII), fullmatch=True)

    @settings(max_examples=200, deadline=None)
    @given(text=samples)
    def check(text: str) -> None:
        assert program.evaluate(text) == VALID, text

    check()


# --- formats: vouched only where jsonschema-rs agrees ----------------------------------


@st.composite
def times(draw: st.DrawFn) -> str:
    """Common-form times with every field pushed past its range now and then."""
    y = draw(st.integers(0, 9999))
    mo, d = draw(st.integers(0, 14)), draw(st.integers(0, 32))
    h, mi, s = draw(st.integers(0, 25)), draw(st.integers(0, 61)), draw(st.integers(0, 61))
    digits = st.text("0123456789", min_size=1, max_size=12)
    frac = draw(st.sampled_from(["", "."]) | digits.map(lambda f: "." + f))
    zone = draw(
        st.sampled_from(["Z", "z", "", "+00:00", "-00:00", "+24:00", "+23:59", "-12:60", "+5:30"])
        | st.tuples(st.sampled_from("+-"), st.integers(0, 30), st.integers(0, 70)).map(
            lambda t: f"{t[0]}{t[1]:02d}:{t[2]:02d}"
        )
    )
    sep = draw(st.sampled_from(["T", "T", "T", "t", " "]))
    return f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{frac}{zone}"


@needs_c
@settings(max_examples=3000, deadline=None)
@given(text=times() | st.text(max_size=40))
def test_a_date_time_vouched_for_is_one_jsonschema_rs_accepts(text: str) -> None:
    program, rs = one({"format": "date-time"})
    verdict = program.evaluate(text)
    assert verdict in (VALID, UNSURE)
    if verdict == VALID:
        assert rs.is_valid(text), text
        assert re.fullmatch(DATE_TIME_FORM[1:-1], text), text


@needs_c
def test_plain_times_are_vouched_for_and_the_calendar_is_checked() -> None:
    program, rs = one({"format": "date-time"})
    plain = ["2026-04-12T09:30:00+08:00", "2024-02-29T00:00:00Z", "2000-02-29T23:59:59.1234-05:30"]
    for text in plain:
        assert program.evaluate(text) == VALID and rs.is_valid(text)
    for text in ["2026-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
                 "2026-04-12T24:00:00Z", "2026-04-12T09:30:60Z", "2026-04-12t09:30:00Z",
                 "2026-04-12T09:30:00+24:00", "2026-04-12T09:30:00.Z", "2026-04-12T09:30Z"]:
        assert program.evaluate(text) == UNSURE, text


URI_PIECES = st.sampled_from(
    ["/", "//", "a", "Z", "0", "-", ".", "_", "~", "%", "%2F", ":", "?", "#", "@", " ", "é",
     "http://", "https://", "[", "]", "\\", "..", "host", "/x"]
)


@needs_c
@pytest.mark.parametrize("fmt", ["uri", "uri-reference"])
@settings(max_examples=1500, deadline=None)
@given(text=st.lists(URI_PIECES, max_size=12).map("".join) | st.text(max_size=30))
def test_a_uri_vouched_for_is_one_jsonschema_rs_accepts(fmt: str, text: str) -> None:
    program, rs = one({"format": fmt})
    verdict = program.evaluate(text)
    assert verdict in (VALID, UNSURE)
    if verdict == VALID:
        assert rs.is_valid(text), text


@needs_c
def test_the_plain_uris_of_the_examples_are_vouched_for() -> None:
    ref, _ = one({"format": "uri-reference"})
    uri, _ = one({"format": "uri"})
    assert ref.evaluate("/grid/jinshui/inspection-app") == VALID
    assert uri.evaluate("https://watchfloor.dev/schemas/hazard.found.v1.json") == VALID
    assert ref.evaluate("//host/x") == UNSURE and uri.evaluate("urn:x") == UNSURE


# --- the events: mutated, cut, and not JSON at all -------------------------------------


@dataclass(frozen=True)
class Sides:
    with_programs: EventValidator
    without_programs: EventValidator
    programs: dict[str, Any]
    rs: dict[str, Any]


@pytest.fixture(scope="module")
def sides(
    with_programs: EventValidator,
    without_programs: EventValidator,
    programs: dict[str, Any],
    rs: dict[str, Any],
) -> Sides:
    return Sides(with_programs, without_programs, programs, rs)


def agree(sides: Sides, doc: object) -> None:
    """The program's verdict is jsonschema-rs's where it gives one, and the validator's
    outcome is the same with the programs and without them."""
    etype = doc.get("type") if isinstance(doc, dict) else None
    if isinstance(etype, str) and etype in sides.programs:
        assert_sound(sides.programs[etype], sides.rs[etype], doc)
    assert outcome(sides.with_programs, doc) == outcome(sides.without_programs, doc)



@needs_c
@settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_mutated_events_get_the_same_verdict_and_the_same_outcome(
    sides: Sides, data: st.DataObject
) -> None:
    doc = data.draw(mutated_events(all_examples(sides.with_programs)))
    try:
        doc = orjson.loads(orjson.dumps(doc))  # as the worker sees a record
    except TypeError:
        assume(False)
        return
    agree(sides, doc)


FIELD_VALUES = (
    json_values
    | times()
    | st.lists(URI_PIECES, max_size=8).map("".join)
    | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=130), max_size=140)
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
)


@needs_c
@settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_one_field_replaced_gets_the_same_verdict(sides: Sides, data: st.DataObject) -> None:
    doc = data.draw(st.sampled_from(all_examples(sides.with_programs)))
    where = doc["data"] if data.draw(st.booleans()) else doc
    key = data.draw(st.sampled_from([*where, "extra", "x" * 21, "Upper"]))
    where[key] = data.draw(FIELD_VALUES)
    agree(sides, doc)


class Text(str):
    pass


@needs_c
@pytest.mark.parametrize(
    "value",
    [{1, 2}, (1, 2), math.nan, math.inf, 2**64, "\ud800", Text("x"), b"bytes", object()],
)
def test_values_json_cannot_hold_are_never_vouched_for(
    with_programs: EventValidator,
    without_programs: EventValidator,
    programs: dict[str, Any],
    value: object,
) -> None:
    for place in ("envelope", "data", "deep"):
        doc = copy.deepcopy(found_example())
        if place == "envelope":
            doc["ext1"] = value
        elif place == "data":
            doc["data"]["community"] = value
        else:
            doc["ext1"] = None
            doc["data"]["category"] = value
        assert programs[doc["type"]].evaluate(doc) in (INVALID, UNSURE)
        assert programs[doc["type"]].evaluate(doc) != VALID
        assert outcome(with_programs, doc) == outcome(without_programs, doc)


@needs_c
def test_a_key_met_before_is_not_trusted_for_another_schema(programs: dict[str, Any]) -> None:
    # Keys are remembered per properties check: a name allowed in the envelope stays
    # forbidden in data, and a name rejected once is rejected again.
    found = programs["watchfloor.hazard.found.v1"]
    doc = orjson.loads(orjson.dumps(
        {**copy.deepcopy(found_example()), "ext1": "x"}
    ))
    assert found.evaluate(doc) == VALID
    doc["data"]["ext1"] = "x"
    assert found.evaluate(doc) == INVALID
    del doc["data"]["ext1"]
    doc["Ext"] = "x"
    assert found.evaluate(doc) == INVALID
    assert found.evaluate(doc) == INVALID
    del doc["Ext"]
    del doc["subject"]
    assert found.evaluate(doc) == INVALID  # a required key missing, the others seen before


def found_example() -> dict[str, Any]:
    from streams.validation import SCHEMAS_DIR, load_schemas

    return load_schemas(SCHEMAS_DIR).by_type["watchfloor.hazard.found.v1"]["examples"][0]


@needs_c
@pytest.mark.parametrize(
    "program",
    [
        ((99, 1),),
        ((schema_program.TYPE,),),
        ((schema_program.PATTERN, b"\x00" * 10, b"\x01"),),
        ((schema_program.PATTERN, (b"\x05\x00" * 128), b"\x01"),),  # names a missing state
        ((schema_program.SPANS, b"\x00" * 15, b"\x00" * 16, 0, 1),),
        ((schema_program.PROPERTIES, [], (), None, None),),
        ((schema_program.CONST, 1),),
        ((schema_program.ENUM, ("a", 1.5)),),
        ("not a tuple",),
    ],
)
def test_a_malformed_program_is_refused_when_read(program: tuple[Any, ...]) -> None:
    assert C is not None
    with pytest.raises((ValueError, TypeError)):
        C.Program(program)


@needs_c
@pytest.mark.parametrize("value", [math.nan, -math.inf, {1, 2}, 2**70, "\ud800", {"k": [math.nan]}])
def test_a_value_json_cannot_hold_is_left_to_jsonschema_rs_even_where_unconstrained(
    value: object,
) -> None:
    # jsonschema-rs takes some of these where nothing constrains them and refuses others;
    # the program does not guess which.
    program, _ = one({"properties": {"a": {}}})
    assert program.evaluate({"a": 1.5}) == VALID
    assert program.evaluate({"a": value}) == UNSURE
    assert program.evaluate({"b": value}) == UNSURE

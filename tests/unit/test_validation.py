"""Validation at the edge: each bad input gets its reason and a sentence naming the field."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import orjson
import pytest
import referencing
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streams.clock import FixedClock
from streams.errors import InvalidEvent
from streams.events import KIND_OF_TYPE, REASONS, STREAM_OF_KIND, Event, Kind, Stream
from streams.reference import Reference, load_reference
from streams.settings import Settings
from streams.validation import EARLIEST_TS, EventValidator, rfc3339_seconds

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
VALIDATOR_REASONS = {
    "empty",
    "too_large",
    "not_utf8",
    "malformed_json",
    "schema",
    "unknown_type",
    "wrong_topic",
    "unknown_district",
    "naive_time",
    "time_out_of_range",
    "deadline_before_found",
}


@pytest.fixture(scope="module")
def reference() -> Reference:
    return load_reference(Settings().reference_file)


@pytest.fixture(scope="module")
def validator(reference: Reference) -> EventValidator:
    return EventValidator(reference, clock=FixedClock(NOW))


def example(validator: EventValidator, etype: str, n: int = 0) -> dict[str, Any]:
    return copy.deepcopy(validator.files.by_type[etype]["examples"][n])


def all_examples(validator: EventValidator) -> list[dict[str, Any]]:
    return [copy.deepcopy(ex) for s in validator.files.by_type.values() for ex in s["examples"]]


def reject(
    validator: EventValidator, raw: bytes | dict[str, Any] | None, stream: Stream | None = None
) -> InvalidEvent:
    data = orjson.dumps(raw) if isinstance(raw, dict) else raw
    with pytest.raises(InvalidEvent) as caught:
        validator.validate(data, stream)
    exc = caught.value
    assert exc.reason in VALIDATOR_REASONS
    if exc.field:
        assert exc.field in exc.message, "the sentence must name the field at fault"
    assert exc.message.endswith("."), "errors are plain sentences"
    return exc


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("z", "Z").replace("t", "T")).timestamp()


HAZARD = "watchfloor.hazard.found.v1"
PATROL = "watchfloor.patrol.completed.v1"
VERIFIED = "watchfloor.hazard.verified.v1"
FILED = "watchfloor.incident.case_filed.v1"
REPORTED = "watchfloor.dispute.reported.v1"


# --- records that are not JSON events ---------------------------------------------------


@pytest.mark.parametrize("raw", [b"", None])
def test_empty_records(validator: EventValidator, raw: bytes | None) -> None:
    exc = reject(validator, raw)
    assert exc.reason == "empty"
    assert "no value" in exc.message


def test_oversized_record_is_rejected_before_parsing(validator: EventValidator) -> None:
    limit = validator.max_record_bytes
    exc = reject(validator, b"{" + b" " * limit + b"}")
    assert exc.reason == "too_large"
    assert str(limit) in exc.message and str(limit + 2) in exc.message


def padded_to(doc: dict[str, Any], size: int) -> dict[str, Any]:
    """The event with extension attributes (at most 256 characters each) filling it to ``size``."""
    doc = copy.deepcopy(doc)
    overhead = len(b',"p0000":""')
    room = size - len(orjson.dumps(doc))
    lengths = []
    while room >= 256 + 2 * overhead:
        lengths.append(256)
        room -= 256 + overhead
    if room - overhead <= 256:
        lengths.append(room - overhead)
    else:
        half = (room - 2 * overhead) // 2
        lengths += [half, room - 2 * overhead - half]
    for i, length in enumerate(lengths):
        doc[f"p{i:04d}"] = "x" * length
    assert len(orjson.dumps(doc)) == size
    return doc


def test_record_exactly_at_the_limit_is_accepted(validator: EventValidator) -> None:
    limit = validator.max_record_bytes
    doc = padded_to(example(validator, HAZARD), limit)
    assert validator.validate(orjson.dumps(doc)).kind is Kind.HAZARD_FOUND
    doc = padded_to(example(validator, HAZARD), limit + 1)
    assert reject(validator, doc).reason == "too_large"


def test_non_utf8_bytes(validator: EventValidator) -> None:
    raw = orjson.dumps(example(validator, HAZARD)).replace(b"jinshui-fire", b"jinshui-\xe9ire")
    exc = reject(validator, raw)
    assert exc.reason == "not_utf8"
    assert "UTF-8" in exc.message and str(raw.index(b"\xe9")) in exc.message


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"id": "x",}', b"not json", b"[1, 2", b"\xef\xbb\xbf{}", b'{"a": NaN}'],
)
def test_malformed_json(validator: EventValidator, raw: bytes) -> None:
    exc = reject(validator, raw)
    assert exc.reason == "malformed_json"
    assert "not a JSON document" in exc.message and "line 1" in exc.message


@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"[]", "a JSON array"), (b"42", "a number"), (b'"hi"', "a string"), (b"null", "null")],
)
def test_json_that_is_not_an_object(validator: EventValidator, raw: bytes, kind: str) -> None:
    exc = reject(validator, raw)
    assert exc.reason == "schema"
    assert exc.message == f"The event must be a JSON object, not {kind}."


# --- envelope ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attribute", ["specversion", "id", "source", "type", "time", "subject", "district", "data"]
)
def test_missing_envelope_attribute(validator: EventValidator, attribute: str) -> None:
    doc = example(validator, HAZARD)
    del doc[attribute]
    exc = reject(validator, doc)
    assert exc.reason == "schema"
    assert exc.field == attribute
    assert exc.message == f"{attribute} is missing."


@pytest.mark.parametrize(
    ("attribute", "value", "phrase"),
    [
        ("id", 12, "printable ASCII"),
        ("id", "has space", "without spaces"),
        ("id", "x" * 129, "1 to 128"),
        ("subject", "", "1 to 128"),
        ("specversion", "0.3", "must be 1.0"),
        ("source", "", "URI reference"),
        ("district", "Jinshui", "district code"),
        ("district", 7, "district code"),
        ("time", 1775957400, "UTC offset"),
        ("time", "yesterday", "UTC offset"),
        ("datacontenttype", "text/plain", "application/json"),
        ("dataschema", "https://example.org/other.json", "or absent"),
        ("data", [], "must be a JSON object"),
        ("data", "text", "must be a JSON object"),
    ],
)
def test_wrong_envelope_values(
    validator: EventValidator, attribute: str, value: Any, phrase: str
) -> None:
    doc = example(validator, HAZARD)
    doc[attribute] = value
    exc = reject(validator, doc)
    assert exc.reason == "schema"
    assert exc.field == attribute
    assert exc.message.startswith(attribute)
    assert phrase in exc.message


def test_unknown_event_type(validator: EventValidator) -> None:
    doc = example(validator, HAZARD)
    doc["type"] = "watchfloor.hazard.found.v2"
    exc = reject(validator, doc)
    assert exc.reason == "unknown_type"
    assert exc.field == "type"
    assert "watchfloor.hazard.found.v2" in exc.message and HAZARD in exc.message


def test_type_of_the_wrong_json_type_is_a_schema_error(validator: EventValidator) -> None:
    doc = example(validator, HAZARD)
    doc["type"] = ["watchfloor.hazard.found.v1"]
    exc = reject(validator, doc)
    assert (exc.reason, exc.field) == ("schema", "type")


def test_unknown_district(validator: EventValidator, reference: Reference) -> None:
    doc = example(validator, HAZARD)
    doc["district"] = "atlantis"
    assert "atlantis" not in reference.district_codes
    exc = reject(validator, doc)
    assert (exc.reason, exc.field) == ("unknown_district", "district")
    assert "atlantis" in exc.message


def test_extension_attributes_are_allowed_and_ignored(validator: EventValidator) -> None:
    doc = example(validator, HAZARD)
    plain = validator.validate(orjson.dumps(doc))
    doc.update(
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        priority=3,
        sampled=True,
        partitionkey=None,
    )
    assert validator.validate(orjson.dumps(doc)) == plain


@pytest.mark.parametrize(
    ("name", "value", "phrase"),
    [
        ("Trace", "x", "lower-case letters and digits"),
        ("trace_id", "x", "lower-case letters and digits"),
        ("averyveryverylongname1", "x", "at most 20"),
        ("nested", {"a": 1}, "scalar"),
        ("listed", [1], "scalar"),
        ("note", "Zhang San lives here", "without spaces"),
        ("long", "x" * 257, "at most 256"),
    ],
)
def test_bad_extension_attributes(
    validator: EventValidator, name: str, value: Any, phrase: str
) -> None:
    doc = example(validator, HAZARD)
    doc[name] = value
    exc = reject(validator, doc)
    assert (exc.reason, exc.field) == ("schema", name)
    assert phrase in exc.message


def test_wrong_topic(validator: EventValidator) -> None:
    raw = orjson.dumps(example(validator, HAZARD))
    exc = reject(validator, raw, Stream.INCIDENTS)
    assert (exc.reason, exc.field) == ("wrong_topic", "type")
    assert "patrols" in exc.message and "incidents" in exc.message
    assert validator.validate(raw, Stream.PATROLS).kind is Kind.HAZARD_FOUND


@pytest.mark.parametrize("etype", sorted(KIND_OF_TYPE))
def test_every_type_is_accepted_on_its_own_topic_only(
    validator: EventValidator, etype: str
) -> None:
    raw = orjson.dumps(example(validator, etype))
    home = STREAM_OF_KIND[KIND_OF_TYPE[etype]]
    assert validator.validate(raw, home).kind is KIND_OF_TYPE[etype]
    for other in Stream:
        if other is not home:
            assert reject(validator, raw, other).reason == "wrong_topic"


# --- time -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("etype", "path"),
    [
        (HAZARD, ("time",)),
        (HAZARD, ("data", "deadline")),
        (PATROL, ("data", "started_at")),
        (PATROL, ("data", "ended_at")),
        (VERIFIED, ("data", "new_deadline")),
    ],
)
@pytest.mark.parametrize("naive", ["2026-04-12T09:30:00", "2026-04-12 09:30:00", "20260412T093000"])
def test_naive_timestamps(
    validator: EventValidator, etype: str, path: tuple[str, ...], naive: str
) -> None:
    doc = example(validator, etype, 1 if etype == VERIFIED else 0)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = naive
    exc = reject(validator, doc)
    field = ".".join(path)
    assert (exc.reason, exc.field) == ("naive_time", field)
    assert exc.message.startswith(f"{field} has no UTC offset")


def test_time_far_in_the_future(validator: EventValidator) -> None:
    doc = example(validator, FILED)
    limit = NOW + timedelta(seconds=validator.max_future_seconds)
    doc["time"] = limit.isoformat()
    assert validator.validate(orjson.dumps(doc)).ts == limit.timestamp()
    doc["time"] = (limit + timedelta(seconds=1)).isoformat()
    exc = reject(validator, doc)
    assert (exc.reason, exc.field) == ("time_out_of_range", "time")
    assert "ahead" in exc.message


def test_future_check_follows_the_clock(reference: Reference) -> None:
    clock = FixedClock(NOW)
    v = EventValidator(reference, clock=clock, max_future_seconds=60)
    doc = example(v, FILED)
    doc["time"] = (NOW + timedelta(minutes=5)).isoformat()
    assert reject(v, doc).reason == "time_out_of_range"
    clock.advance(timedelta(minutes=4))
    assert v.validate(orjson.dumps(doc)).kind is Kind.CASE_FILED


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("1999-12-31T23:59:59Z", False),
        ("2000-01-01T07:59:59+08:00", False),
        ("2000-01-01T00:00:00Z", True),
        ("1970-01-01T00:00:00Z", False),
    ],
)
def test_time_before_2000(validator: EventValidator, text: str, ok: bool) -> None:
    doc = example(validator, "watchfloor.dispute.resolved.v1")
    doc["time"] = text
    if ok:
        assert validator.validate(orjson.dumps(doc)).ts == EARLIEST_TS
    else:
        exc = reject(validator, doc)
        assert (exc.reason, exc.field) == ("time_out_of_range", "time")
        assert "2000-01-01" in exc.message


@pytest.mark.parametrize(
    "text",
    [
        "2026-04-12T09:30:00+08:00",
        "2026-04-12T01:30:00Z",
        "2026-04-12t01:30:00z",
        "2026-04-11T20:00:00-05:30",
        "2026-04-12T09:30:00.123456+08:00",
        "2026-04-12T09:30:00.5Z",
        "2026-04-12T09:30:00.123456789+08:00",
        "2026-04-12T09:30:00+00:00",
        "2026-04-12T09:30:00-00:00",
    ],
)
def test_time_forms_give_the_right_instant(validator: EventValidator, text: str) -> None:
    doc = example(validator, FILED)
    doc["time"] = text
    expected = ts(text[:26] + text[-6:] if len(text) > 32 else text)
    assert validator.validate(orjson.dumps(doc)).ts == pytest.approx(expected, abs=1e-6)
    assert rfc3339_seconds(text) == pytest.approx(expected, abs=1e-6)


def test_a_leap_second_is_read_as_the_second_before(validator: EventValidator) -> None:
    doc = example(validator, FILED)
    doc["time"] = "2016-12-31T23:59:60Z"
    assert validator.validate(orjson.dumps(doc)).ts == ts("2016-12-31T23:59:59+00:00")


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-30T10:00:00Z",
        "2026-04-12T24:00:00Z",
        "2026-13-01T10:00:00Z",
        "2026-04-12T09:30:00+8:00",
    ],
)
def test_impossible_times(validator: EventValidator, text: str) -> None:
    doc = example(validator, FILED)
    doc["time"] = text
    exc = reject(validator, doc)
    assert (exc.reason, exc.field) == ("schema", "time")


# --- data of each type ------------------------------------------------------------------


def _required(validator: EventValidator) -> list[tuple[str, str]]:
    return [
        (etype, name)
        for etype, schema in sorted(validator.files.by_type.items())
        for name in schema["properties"]["data"].get("required", [])
    ]


def test_every_type_requires_something_or_nothing_as_designed(validator: EventValidator) -> None:
    assert len(_required(validator)) >= 12


@pytest.mark.parametrize("etype", sorted(KIND_OF_TYPE))
def test_missing_data_fields(validator: EventValidator, etype: str) -> None:
    for name in validator.files.by_type[etype]["properties"]["data"].get("required", []):
        doc = example(validator, etype)
        del doc["data"][name]
        exc = reject(validator, doc)
        assert (exc.reason, exc.field) == ("schema", f"data.{name}"), etype
        assert exc.message == f"data.{name} is missing."


@pytest.mark.parametrize(
    ("etype", "name", "value", "phrase"),
    [
        (HAZARD, "major", "yes", "true or false"),
        (HAZARD, "category", "flood", "one of fire, road_traffic"),
        (HAZARD, "category", 3, "one of"),
        (HAZARD, "responsible_unit", "Fire Brigade", "lower-case letters"),
        (
            HAZARD,
            "found_by",
            "neighbour",
            "one of patrol, inspection, grid_worker or public_report",
        ),
        (FILED, "severity", "huge", "one of minor, serious or major"),
        (FILED, "category", "fire_in_a_school", "one of robbery"),
        (FILED, "location", {"lat": 95, "lon": 113}, "latitude"),
        (FILED, "location", {"lat": "34.7", "lon": 113}, "latitude"),
        (FILED, "location", [34.7, 113.6], "must be a JSON object"),
        (REPORTED, "people_involved", 0, "at least 1"),
        (REPORTED, "people_involved", 2.5, "whole number"),
        (REPORTED, "people_involved", True, "whole number"),
        (PATROL, "findings", -1, "at least 0"),
        (PATROL, "team", "", "lower-case letters"),
        (VERIFIED, "result", "maybe", "one of confirmed or not_rectified"),
    ],
)
def test_wrong_data_values(
    validator: EventValidator, etype: str, name: str, value: Any, phrase: str
) -> None:
    doc = example(validator, etype)
    doc["data"][name] = value
    exc = reject(validator, doc)
    assert exc.reason == "schema"
    assert exc.field is not None and exc.field.startswith(f"data.{name}")
    assert phrase in exc.message


@pytest.mark.parametrize("etype", sorted(KIND_OF_TYPE))
def test_data_allows_no_extra_fields(validator: EventValidator, etype: str) -> None:
    doc = example(validator, etype)
    doc["data"]["reporter_name"] = "Zhang San"
    exc = reject(validator, doc)
    assert (exc.reason, exc.field) == ("schema", "data.reporter_name")
    assert "not allowed" in exc.message
    assert "Zhang San" not in exc.message, "values are never echoed into error sentences"


def test_location_allows_no_extra_fields(validator: EventValidator) -> None:
    doc = example(validator, FILED)
    doc["data"]["location"]["address"] = "No. 1 Some Road"
    exc = reject(validator, doc)
    assert (exc.reason, exc.field) == ("schema", "data.location.address")
    assert "lat or lon" in exc.message


@pytest.mark.parametrize(
    "offset_deadline",
    ["2026-04-12T01:30:00Z", "2026-04-12T09:30:00+08:00", "2026-04-11T09:30:00+08:00"],
)
def test_hazard_deadline_not_after_found(validator: EventValidator, offset_deadline: str) -> None:
    doc = example(validator, HAZARD)
    assert doc["time"] == "2026-04-12T09:30:00+08:00"
    doc["data"]["deadline"] = offset_deadline
    exc = reject(validator, doc)
    assert (exc.reason, exc.field) == ("deadline_before_found", "data.deadline")


def test_hazard_deadline_one_second_after_found_is_fine(validator: EventValidator) -> None:
    doc = example(validator, HAZARD)
    doc["data"]["deadline"] = "2026-04-12T01:30:01Z"
    assert validator.validate(orjson.dumps(doc)).deadline == ts("2026-04-12T01:30:01+00:00")


def test_new_deadline_before_the_visit(validator: EventValidator) -> None:
    doc = example(validator, VERIFIED, 1)
    doc["data"]["new_deadline"] = doc["time"]
    exc = reject(validator, doc)
    assert (exc.reason, exc.field) == ("deadline_before_found", "data.new_deadline")


def test_not_rectified_needs_a_new_deadline(validator: EventValidator) -> None:
    doc = example(validator, VERIFIED, 1)
    del doc["data"]["new_deadline"]
    exc = reject(validator, doc)
    assert (exc.reason, exc.field) == ("schema", "data.new_deadline")
    assert "required when data.result is not_rectified" in exc.message


def test_confirmed_takes_no_new_deadline(validator: EventValidator) -> None:
    doc = example(validator, VERIFIED, 0)
    doc["data"]["new_deadline"] = "2026-05-30T18:00:00+08:00"
    exc = reject(validator, doc)
    assert (exc.reason, exc.field) == ("schema", "data.new_deadline")
    assert "only when data.result is not_rectified" in exc.message


def test_patrol_ending_before_it_started(validator: EventValidator) -> None:
    doc = example(validator, PATROL)
    doc["data"]["ended_at"] = "2026-04-11T21:59:59+08:00"
    exc = reject(validator, doc)
    assert (exc.reason, exc.field) == ("time_out_of_range", "data.ended_at")
    assert "before data.started_at" in exc.message


def test_patrol_ending_well_after_its_report(validator: EventValidator) -> None:
    doc = example(validator, PATROL)
    end = datetime.fromisoformat(doc["time"]) + timedelta(minutes=10)
    doc["data"]["ended_at"] = end.isoformat()
    assert validator.validate(orjson.dumps(doc)).ended == end.timestamp()
    doc["data"]["ended_at"] = (end + timedelta(seconds=1)).isoformat()
    exc = reject(validator, doc)
    assert (exc.reason, exc.field) == ("time_out_of_range", "data.ended_at")
    assert "10 minutes after time" in exc.message


def test_patrol_starting_before_2000(validator: EventValidator) -> None:
    doc = example(validator, PATROL)
    doc["data"]["started_at"] = "1999-12-31T22:00:00+08:00"
    exc = reject(validator, doc)
    assert (exc.reason, exc.field) == ("time_out_of_range", "data.started_at")


def test_checks_run_in_a_fixed_order(validator: EventValidator) -> None:
    """A record with several faults gets the reason of the first check it fails."""
    doc = example(validator, HAZARD)
    doc["district"] = "atlantis"
    doc["time"] = "1990-01-01T00:00:00Z"
    doc["data"]["deadline"] = "1989-01-01T00:00:00Z"
    assert reject(validator, doc).reason == "unknown_district"
    doc["data"]["extra"] = 1
    assert reject(validator, doc).reason == "schema"
    assert reject(validator, doc, Stream.DISPUTES).reason == "wrong_topic"
    doc["id"] = 5  # envelope faults come before data faults
    assert reject(validator, doc).field == "id"


def test_validate_document_rejects_python_values_json_cannot_hold(
    validator: EventValidator,
) -> None:
    doc: dict[str, Any] = example(validator, HAZARD)
    doc["data"]["major"] = {1, 2}
    exc = reject_document(validator, doc)
    assert exc.reason == "schema"


def reject_document(validator: EventValidator, doc: object) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        validator.validate_document(doc)
    return caught.value


# --- valid events become the right Event ------------------------------------------------


def expected_event(doc: dict[str, Any]) -> Event:
    """What the engine must get, computed with the standard library, independently."""
    kind = KIND_OF_TYPE[doc["type"]]
    data = doc["data"]

    def when(text: str | None) -> float | None:
        return None if text is None else ts(text)

    deadline = None
    if kind is Kind.HAZARD_FOUND:
        deadline = when(data["deadline"])
    elif kind is Kind.HAZARD_VERIFIED:
        deadline = when(data.get("new_deadline"))
    return Event(
        kind=kind,
        id=doc["id"],
        source=doc["source"],
        district=doc["district"],
        subject=doc["subject"],
        ts=ts(doc["time"]),
        category=data.get("category")
        if kind in {Kind.CASE_FILED, Kind.CASE_CLEARED, Kind.DISPUTE_REPORTED, Kind.HAZARD_FOUND,
                    Kind.ACCIDENT_REPORTED}
        else None,
        deadline=deadline,
        major=data.get("major", False) if kind is Kind.HAZARD_FOUND else False,
        confirmed=data.get("result", "confirmed") == "confirmed",
        ended=when(data.get("ended_at")) if kind is Kind.PATROL_COMPLETED else None,
        identity=int.from_bytes(
            hashlib.blake2b(f"{doc['source']}\x00{doc['id']}".encode(), digest_size=8).digest(),
            "big",
        ),
        community=data.get("community"),
        unit=data.get("responsible_unit"),
        figures=(data["deaths"], data["serious_injuries"], data["direct_loss_yuan"])
        if kind is Kind.ACCIDENT_REPORTED
        else None,
    )


def test_every_schema_example_becomes_the_right_event(validator: EventValidator) -> None:
    examples = all_examples(validator)
    assert len(examples) >= len(KIND_OF_TYPE)
    for doc in examples:
        assert validator.validate(orjson.dumps(doc)) == expected_event(doc)
        assert validator.validate_document(doc) == expected_event(doc)


def test_validator_refuses_reference_categories_that_differ_from_the_schemas(
    reference: Reference,
) -> None:
    from dataclasses import replace

    from streams.errors import ReferenceDataError

    changed = dict(reference.categories)
    changed["hazard"] = (*changed["hazard"], "volcano")
    with pytest.raises(ReferenceDataError, match="hazard categories"):
        EventValidator(replace(reference, categories=changed), clock=FixedClock(NOW))


# --- properties -------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    return out


@st.composite
def mutated_events(draw: st.DrawFn, examples: list[dict[str, Any]]) -> dict[str, Any]:
    doc = copy.deepcopy(draw(st.sampled_from(examples)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if action == "delete":
            parent.pop(path[-1], None)
        elif action == "set":
            parent[path[-1]] = draw(json_values)
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
    return doc


def check_outcome(validator: EventValidator, raw: bytes, stream: Stream | None = None) -> None:
    try:
        event = validator.validate(raw, stream)
    except InvalidEvent as exc:
        assert exc.reason in VALIDATOR_REASONS and exc.reason in REASONS
        assert exc.message
        if exc.field:
            assert exc.field in exc.message
        return
    doc = orjson.loads(raw)
    assert event == expected_event(doc)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=300), stream=st.none() | st.sampled_from(list(Stream)))
def test_random_bytes_only_ever_raise_invalid_event(
    validator: EventValidator, raw: bytes, stream: Stream | None
) -> None:
    check_outcome(validator, raw, stream)


@pytest.fixture(scope="module")
def examples(validator: EventValidator) -> list[dict[str, Any]]:
    return all_examples(validator)


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_mutated_events_are_rejected_cleanly_or_counted_correctly(
    validator: EventValidator, examples: list[dict[str, Any]], data: st.DataObject
) -> None:
    doc = data.draw(mutated_events(examples))
    try:
        raw = orjson.dumps(doc)
    except TypeError:  # an integer beyond 64 bits: not something Kafka could carry either
        assume(False)
        return
    check_outcome(validator, raw, data.draw(st.none() | st.sampled_from(list(Stream))))
    # Any byte-level damage to a valid record is also handled.
    cut = data.draw(st.integers(0, len(raw)))
    check_outcome(validator, raw[:cut] + data.draw(st.binary(max_size=4)) + raw[cut + 1 :])


@pytest.fixture(scope="module")
def reference_validators(validator: EventValidator) -> dict[str, Callable[[Any], bool]]:
    """The python-jsonschema reference implementation over the same files."""
    registry = referencing.Registry().with_resources(
        (uri, referencing.Resource.from_contents(doc))
        for uri, doc in validator.files.documents.items()
    )
    return {
        etype: jsonschema.Draft202012Validator(schema, registry=registry).is_valid
        for etype, schema in validator.files.by_type.items()
    }


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_schema_verdicts_agree_with_the_reference_implementation(
    validator: EventValidator,
    examples: list[dict[str, Any]],
    reference_validators: dict[str, Callable[[Any], bool]],
    data: st.DataObject,
) -> None:
    """Mutating only data: jsonschema-rs and python-jsonschema must agree on the verdict."""
    doc = copy.deepcopy(data.draw(st.sampled_from(examples)))
    key = data.draw(st.sampled_from([*doc["data"], "extra"]))
    if data.draw(st.booleans()):
        doc["data"][key] = data.draw(json_values)
    else:
        doc["data"].pop(key, None)
    try:
        raw = orjson.dumps(doc)
    except TypeError:
        assume(False)
        return
    schema_ok = reference_validators[doc["type"]](orjson.loads(raw))
    try:
        validator.validate(raw)
        ours = True
    except InvalidEvent as exc:
        ours = exc.reason not in {"schema", "naive_time"}
    assert ours == schema_ok, doc


@st.composite
def valid_events(draw: st.DrawFn, reference: Reference) -> dict[str, Any]:
    """Events built from the contract, not from examples: every one must be accepted."""
    etype = draw(st.sampled_from(sorted(KIND_OF_TYPE)))
    kind = KIND_OF_TYPE[etype]
    code = st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,20}\Z")
    ident = st.from_regex(r"\A[!-~]{1,40}\Z")
    offset = draw(st.sampled_from(["Z", "+08:00", "-05:30", "+00:00", "+14:00", "-12:00"]))
    start = datetime(2000, 1, 2, tzinfo=UTC)
    moment = draw(
        st.datetimes(min_value=start.replace(tzinfo=None), max_value=NOW.replace(tzinfo=None))
    )
    moment = moment.replace(microsecond=0, tzinfo=UTC)

    def text(at: datetime) -> str:
        h, m = (0, 0) if offset == "Z" else (int(offset[1:3]), int(offset[4:6]))
        delta = timedelta(hours=h, minutes=m) * (-1 if offset.startswith("-") else 1)
        local = (at + delta).replace(tzinfo=None).isoformat()
        return local + offset

    data: dict[str, Any] = {}
    if kind is Kind.CASE_FILED:
        data = {
            "category": draw(st.sampled_from(reference.categories["incident"])),
            "severity": draw(st.sampled_from(["minor", "serious", "major"])),
        }
        if draw(st.booleans()):
            data["location"] = {"lat": draw(st.floats(-90, 90)), "lon": draw(st.floats(-180, 180))}
    elif kind is Kind.CASE_CLEARED and draw(st.booleans()):
        data = {"category": draw(st.sampled_from(reference.categories["incident"]))}
    elif kind is Kind.DISPUTE_REPORTED:
        data = {
            "category": draw(st.sampled_from(reference.categories["dispute"])),
            "responsible_unit": draw(code),
            "people_involved": draw(st.integers(1, 10**6)),
        }
    elif kind in {Kind.DISPUTE_MEDIATION_STARTED}:
        data = {"responsible_unit": draw(code)}
    elif kind is Kind.ACCIDENT_REPORTED:
        data = {
            "category": draw(st.sampled_from(reference.categories["accident"])),
            "deaths": draw(st.integers(0, 100000)),
            "serious_injuries": draw(st.integers(0, 100000)),
            "direct_loss_yuan": draw(st.integers(0, 10**12)),
        }
    elif kind is Kind.DISPUTE_ESCALATED:
        data = {"escalated_to": draw(code)}
    elif kind is Kind.PATROL_COMPLETED:
        length = timedelta(seconds=draw(st.integers(0, 12 * 3600)))
        end = moment + timedelta(seconds=draw(st.integers(-3600, 600)))
        if end - length < start:
            end = start + length
            moment = max(moment, end)
        data = {
            "team": draw(code),
            "started_at": text(end - length),
            "ended_at": text(end),
            "area": draw(code),
            "findings": draw(st.integers(0, 500)),
        }
    elif kind is Kind.HAZARD_FOUND:
        data = {
            "category": draw(st.sampled_from(reference.categories["hazard"])),
            "major": draw(st.booleans()),
            "deadline": text(moment + timedelta(seconds=draw(st.integers(1, 10**7)))),
            "responsible_unit": draw(code),
        }
        if draw(st.booleans()):
            data["found_by"] = draw(
                st.sampled_from(["patrol", "inspection", "grid_worker", "public_report"])
            )
    elif kind is Kind.HAZARD_VERIFIED:
        if draw(st.booleans()):
            data = {"result": "confirmed"}
        else:
            data = {
                "result": "not_rectified",
                "new_deadline": text(moment + timedelta(seconds=draw(st.integers(1, 10**7)))),
            }
    return {
        "specversion": "1.0",
        "id": draw(ident),
        "source": draw(st.sampled_from(["/police/case-system", "/grid/app", "urn:wf:x"])),
        "type": etype,
        "time": text(moment),
        "subject": draw(ident),
        "district": draw(st.sampled_from(sorted(reference.district_codes))),
        "data": data,
    }


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_valid_events_give_the_right_event(
    validator: EventValidator, reference: Reference, data: st.DataObject
) -> None:
    doc = data.draw(valid_events(reference))
    raw = orjson.dumps(doc)
    kind = KIND_OF_TYPE[doc["type"]]
    assert validator.validate(raw, STREAM_OF_KIND[kind]) == expected_event(doc)

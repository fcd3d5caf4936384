"""The schema files: valid JSON Schema 2020-12, faithful to docs/design.md and reference data."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import orjson
import pytest
import referencing

from streams.clock import FixedClock
from streams.errors import ReferenceDataError
from streams.events import KIND_OF_TYPE, STREAM_OF_KIND
from streams.reference import load_reference
from streams.settings import PROJECT_ROOT, Settings
from streams.validation import (
    SCHEMA_BASE_URL,
    SCHEMAS_DIR,
    EventValidator,
    SchemaFiles,
    load_schemas,
)

DESIGN = PROJECT_ROOT / "docs" / "design.md"
CATEGORIES = PROJECT_ROOT / "seeds" / "reference" / "categories.json"
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def files() -> SchemaFiles:
    return load_schemas()


def resolve(files: SchemaFiles, node: Any, base: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Follow ``$ref`` (file-relative, with a JSON pointer) until a node without one."""
    while isinstance(node, dict) and "$ref" in node:
        url, _, pointer = node["$ref"].partition("#")
        doc = files.documents[SCHEMA_BASE_URL + url] if url else base
        target: Any = doc
        for part in pointer.strip("/").split("/"):
            if part:
                target = target[part]
        node, base = target, doc
    return node, base


def data_schema(files: SchemaFiles, etype: str) -> dict[str, Any]:
    return files.by_type[etype]["properties"]["data"]  # type: ignore[no-any-return]


def data_property(files: SchemaFiles, etype: str, name: str) -> dict[str, Any]:
    schema = files.by_type[etype]
    node, _ = resolve(files, data_schema(files, etype)["properties"][name], schema)
    return node  # type: ignore[no-any-return]


# --- the files themselves ---------------------------------------------------------------


def test_every_file_is_a_valid_2020_12_schema(files: SchemaFiles) -> None:
    assert len(files.documents) == len(KIND_OF_TYPE) + 1
    for uri, doc in files.documents.items():
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema", uri
        jsonschema.Draft202012Validator.check_schema(doc)
        jsonschema_rs.meta.validate(doc)


def test_one_versioned_file_per_event_type(files: SchemaFiles) -> None:
    assert set(files.by_type) == set(KIND_OF_TYPE)
    for etype, schema in files.by_type.items():
        name = etype.removeprefix("watchfloor.") + ".json"
        assert schema["$id"] == SCHEMA_BASE_URL + name
        assert (SCHEMAS_DIR / name).is_file()
        assert re.search(r"\.v\d+$", etype), "event types carry their version"
        assert schema["properties"]["dataschema"]["enum"] == [schema["$id"], None]


def test_examples_validate_in_two_independent_implementations(files: SchemaFiles) -> None:
    registry = referencing.Registry().with_resources(
        (uri, referencing.Resource.from_contents(doc)) for uri, doc in files.documents.items()
    )
    rs_registry = jsonschema_rs.Registry(list(files.documents.items()))
    for etype, schema in files.by_type.items():
        assert schema["examples"], f"{etype} has no examples"
        py = jsonschema.Draft202012Validator(schema, registry=registry)
        rs = jsonschema_rs.validator_for(schema, registry=rs_registry, validate_formats=True)
        for ex in schema["examples"]:
            assert ex["type"] == etype
            assert ex["dataschema"] == schema["$id"]
            assert list(py.iter_errors(ex)) == [], ex["id"]
            assert rs.is_valid(ex), ex["id"]


def test_examples_pass_the_whole_validator(files: SchemaFiles) -> None:
    validator = EventValidator(load_reference(Settings().reference_file), clock=FixedClock(NOW))
    for etype, schema in files.by_type.items():
        for ex in schema["examples"]:
            event = validator.validate(orjson.dumps(ex), STREAM_OF_KIND[KIND_OF_TYPE[etype]])
            assert event.kind is KIND_OF_TYPE[etype]


def test_category_enums_equal_the_reference_categories(files: SchemaFiles) -> None:
    reference = json.loads(CATEGORIES.read_text())
    common = files.documents[SCHEMA_BASE_URL + "common.v1.json"]
    for group in ("incident", "dispute", "hazard"):
        codes = [c["code"] for c in reference[group]]
        assert common["$defs"][f"{group}_category"]["enum"] == codes


def test_district_pattern_accepts_every_reference_district(files: SchemaFiles) -> None:
    pattern = files.documents[SCHEMA_BASE_URL + "common.v1.json"]["$defs"]["district"]["pattern"]
    assert pattern == "^[a-z][a-z0-9-]{0,31}$"  # docs/design.md
    codes = load_reference(Settings().reference_file).district_codes
    assert codes and all(re.match(pattern, c) for c in codes)


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key not in {"examples", "enum", "const"}:
                yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}/{i}")


def test_no_field_takes_free_text(files: SchemaFiles) -> None:
    """Personal data stays out: every string is a code, an enum, a time or a URI reference."""
    for uri, doc in files.documents.items():
        for path, node in _walk(doc):
            if node.get("type") == "string" or (
                isinstance(node.get("type"), list) and "string" in node["type"]
            ):
                bounded = (
                    "pattern" in node
                    or "enum" in node
                    or "const" in node
                    or node.get("format") in {"date-time", "uri", "uri-reference"}
                )
                assert bounded, f"{uri}#{path} takes free text"
                if node.get("format") in {"uri", "uri-reference"}:
                    assert node.get("maxLength", 10**9) <= 256


def test_schemas_say_no_personal_data(files: SchemaFiles) -> None:
    for uri, doc in files.documents.items():
        assert "personal data" in doc["description"] or "no names" in doc["description"], uri
        assert "ID-card" in doc["description"], uri
    defs = files.documents[SCHEMA_BASE_URL + "common.v1.json"]["$defs"]
    for name in ("identifier", "code"):
        assert "never a person's name" in defs[name]["description"]


def test_loading_refuses_a_directory_missing_a_type(tmp_path: Path) -> None:
    for path in SCHEMAS_DIR.glob("*.json"):
        if "hazard.rectified" not in path.name:
            (tmp_path / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ReferenceDataError, match=r"no schema for watchfloor\.hazard\.rectified"):
        load_schemas(tmp_path)


def test_loading_refuses_a_file_whose_id_is_not_its_name(tmp_path: Path) -> None:
    for path in SCHEMAS_DIR.glob("*.json"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    moved = tmp_path / "hazard.found.v1.json"
    moved.rename(tmp_path / "hazard.found.v9.json")
    with pytest.raises(ReferenceDataError, match=r"must be .*hazard\.found\.v9\.json"):
        load_schemas(tmp_path)


# --- faithful to docs/design.md ---------------------------------------------------------

ROW = re.compile(r"^\| `(watchfloor\.[a-z_.]+\.v\d+)` \| (incidents|disputes|patrols) \| (.+) \|$")


def _split_top(text: str) -> list[str]:
    parts, depth, tick, current = [], 0, False, ""
    for ch in text:
        if ch == "`":
            tick = not tick
        elif not tick and ch in "({":
            depth += 1
        elif not tick and ch in ")}":
            depth -= 1
        if ch == "," and depth == 0 and not tick:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    parts.append(current.strip())
    return parts


def design_rows() -> dict[str, tuple[str, list[dict[str, Any]]]]:
    rows: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for line in DESIGN.read_text().splitlines():
        match = ROW.match(line)
        if not match:
            continue
        etype, topic, fields_text = match.groups()
        fields = []
        for part in _split_top(fields_text):
            m = re.match(r"^(\*\*)?([a-z_]+)(\*\*)?\s*(.*)$", part)
            assert m, part
            note = m.group(4).strip()
            inner = note[1:-1] if note.startswith("(") and note.endswith(")") else ""
            items = [s.strip() for s in inner.split(",")] if inner else []
            enum = (
                [s.strip("`") for s in items]
                if items and all(re.fullmatch(r"`[a-z_]+`", s) for s in items)
                else None
            )
            fields.append(
                {"name": m.group(2), "required": bool(m.group(1)), "note": note, "enum": enum}
            )
        rows[etype] = (topic, fields)
    return rows


def test_design_table_lists_every_type() -> None:
    assert set(design_rows()) == set(KIND_OF_TYPE)


@pytest.mark.parametrize("etype", sorted(KIND_OF_TYPE))
def test_data_fields_follow_the_design(files: SchemaFiles, etype: str) -> None:
    topic, fields = design_rows()[etype]
    assert STREAM_OF_KIND[KIND_OF_TYPE[etype]].name.lower() == topic
    data = data_schema(files, etype)
    assert data["additionalProperties"] is False, "data objects allow no extra fields"
    assert set(data["properties"]) == {f["name"] for f in fields}
    assert set(data.get("required", [])) == {f["name"] for f in fields if f["required"]}
    categories = json.loads(CATEGORIES.read_text())
    for f in fields:
        node = data_property(files, etype, f["name"])
        note = f["note"]
        if f["enum"] is not None:
            assert node["enum"] == f["enum"], f["name"]
        if m := re.search(r"(incident|dispute|hazard) category", note):
            assert node["enum"] == [c["code"] for c in categories[m.group(1)]]
        if m := re.search(r"int ≥ (\d+)", note):
            assert node["type"] == "integer" and node["minimum"] == int(m.group(1))
        if note.startswith("(bool"):
            assert node["type"] == "boolean"
        if "RFC 3339" in note or f["name"].endswith(("_at", "deadline")):
            assert node["format"] == "date-time"
        if m := re.search(r"`\{([a-z, ]+)\}`", note):
            wanted = {s.strip() for s in m.group(1).split(",")}
            assert set(node["properties"]) == wanted and set(node["required"]) == wanted
        if f["name"] in {"community", "responsible_unit", "team", "area", "escalated_to"}:
            assert node["pattern"] == "^[a-z0-9][a-z0-9-]{0,63}$"  # "Codes ... match"


def test_envelope_follows_the_design(files: SchemaFiles) -> None:
    envelope = files.documents[SCHEMA_BASE_URL + "common.v1.json"]["$defs"]["envelope"]
    assert set(envelope["required"]) == {
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "district",
        "data",
    }
    ident, _ = resolve(
        files, envelope["properties"]["id"], files.documents[SCHEMA_BASE_URL + "common.v1.json"]
    )
    assert ident["pattern"] == "^[!-~]{1,128}$"  # 1-128 printable characters, no spaces
    assert envelope["propertyNames"]["pattern"] == "^[a-z0-9]{1,20}$"
    assert envelope["additionalProperties"]["type"] == ["string", "number", "boolean", "null"]


def test_verified_requires_new_deadline_only_when_not_rectified(files: SchemaFiles) -> None:
    rs = jsonschema_rs.validator_for(
        files.by_type["watchfloor.hazard.verified.v1"],
        registry=jsonschema_rs.Registry(list(files.documents.items())),
        validate_formats=True,
    )
    base = copy.deepcopy(files.by_type["watchfloor.hazard.verified.v1"]["examples"][0])
    for result, new_deadline, ok in [
        ("confirmed", None, True),
        ("confirmed", "2026-06-01T00:00:00Z", False),
        ("not_rectified", None, False),
        ("not_rectified", "2026-06-01T00:00:00Z", True),
    ]:
        base["data"] = {"result": result}
        if new_deadline:
            base["data"]["new_deadline"] = new_deadline
        assert rs.is_valid(base) is ok, (result, new_deadline)


# --- docs/publishing.md -----------------------------------------------------------------

PUBLISHING = PROJECT_ROOT / "docs" / "publishing.md"


def test_every_event_in_the_publishing_guide_validates() -> None:
    validator = EventValidator(load_reference(Settings().reference_file), clock=FixedClock(NOW))
    blocks = re.findall(r"```json\n(.*?)```", PUBLISHING.read_text(), flags=re.S)
    events = [json.loads(b) for b in blocks if '"specversion"' in b]
    assert {e["type"] for e in events} == set(KIND_OF_TYPE), "a full example of each type"
    for event in events:
        validator.validate(orjson.dumps(event))
    for block in blocks:
        json.loads(block.replace("<64 hex digits>", "0" * 64))  # every JSON block is JSON

"""Cost per event of validating at the edge: candidate libraries and the full EventValidator.

Run: ``.venv/bin/python -m tests.benchmarks.validator_cost [--seconds 0.5]``. Prints
microseconds per event (best of several rounds, so other load on the machine shows
less) for valid and invalid events. Every candidate is first checked for faithfulness:
it must accept every schema example and reject every invalid sample, or its figure is
marked as not usable.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from streams import native
from streams.clock import FixedClock
from streams.errors import InvalidEvent
from streams.events import Event, Kind
from streams.reference import load_reference
from streams.schema_program import compile_schema
from streams.settings import Settings
from streams.validation import EventValidator, SchemaFiles, load_schemas, rfc3339_seconds

CLOCK_AT = datetime(2026, 6, 1, tzinfo=UTC)


SCHEMA_CHECK = native.extension("_schema_check")


def _mutations() -> list[Callable[[dict[str, Any]], None]]:
    def drop(key: str) -> Callable[[dict[str, Any]], None]:
        return lambda d: d.pop(key, None)

    def data_set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
        return lambda d: d["data"].__setitem__(key, value)

    return [
        drop("time"),
        drop("subject"),
        lambda d: d.__setitem__("time", "2026-04-12T09:30:00"),
        lambda d: d.__setitem__("district", "Not A Code"),
        lambda d: d.__setitem__("id", 12),
        data_set("unexpected_field", 1),
        lambda d: d.__setitem__("data", []),
        lambda d: d.__setitem__("specversion", "0.3"),
    ]


def samples(files: SchemaFiles) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every example in the schema files, and schema-invalid mutations of them."""
    valid = [ex for schema in files.by_type.values() for ex in schema["examples"]]
    invalid = []
    for i, ex in enumerate(valid):
        for mutate in _mutations()[i % 3 :: 3]:
            bad = copy.deepcopy(ex)
            mutate(bad)
            invalid.append(bad)
    return valid, invalid


def best_us(fn: Callable[[], object], items: int, seconds: float) -> float:
    """Microseconds per item, best of rounds lasting ``seconds`` in all."""
    rounds: list[float] = []
    deadline = time.perf_counter() + seconds
    gc.disable()
    try:
        while not rounds or time.perf_counter() < deadline:
            start = time.perf_counter()
            fn()
            rounds.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return min(rounds) / items * 1e6


def _loop(check: Callable[[Any], object], docs: list[Any], repeat: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(repeat):
            for doc in docs:
                try:  # noqa: SIM105 - contextlib.suppress would cost more than some checks
                    check(doc)
                except Exception:  # the invalid runs raise on purpose
                    pass

    return run


def candidates(files: SchemaFiles) -> dict[str, dict[str, Callable[[Any], bool]]]:
    """name -> event type -> is_valid(doc), each compiled once from the schema files."""
    out: dict[str, dict[str, Callable[[Any], bool]]] = {}

    import jsonschema_rs

    registry = jsonschema_rs.Registry(list(files.documents.items()))
    rs: dict[str, Callable[[Any], bool]] = {}
    for etype, schema in files.by_type.items():
        v = jsonschema_rs.validator_for(
            schema, registry=registry, validate_formats=True, offline=True
        )
        rs[etype] = v.is_valid
    out[f"jsonschema-rs {getattr(jsonschema_rs, '__version__', '')}".strip()] = rs

    if SCHEMA_CHECK is not None:
        # What EventValidator runs: the schema program, jsonschema-rs where it is unsure.
        both: dict[str, Callable[[Any], bool]] = {}
        for etype, schema in files.by_type.items():
            program = compile_schema(schema, files.documents)
            vouches = SCHEMA_CHECK.Program(program).accepts if program else (lambda d: False)

            def first(doc: Any, v: Callable[[Any], bool] = vouches, r: Any = rs[etype]) -> bool:
                return v(doc) or r(doc)

            both[etype] = first
        out["schema programs, then -rs"] = both

    try:
        import fastjsonschema

        fj: dict[str, Callable[[Any], bool]] = {}
        for etype, schema in files.by_type.items():
            compiled = fastjsonschema.compile(
                schema, handlers={"https": lambda uri: files.documents[uri]}
            )

            def ok(doc: Any, f: Callable[[Any], Any] = compiled) -> bool:
                try:
                    f(doc)
                    return True
                except fastjsonschema.JsonSchemaException:
                    return False

            fj[etype] = ok
        out[f"fastjsonschema {fastjsonschema.VERSION}"] = fj
    except ImportError:
        pass

    try:
        from importlib.metadata import version

        import jsonschema
        import referencing

        resources = [
            (uri, referencing.Resource.from_contents(doc)) for uri, doc in files.documents.items()
        ]
        reg = referencing.Registry().with_resources(resources)
        js: dict[str, Callable[[Any], bool]] = {}
        for etype, schema in files.by_type.items():
            v = jsonschema.Draft202012Validator(
                schema, registry=reg, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
            )
            js[etype] = v.is_valid
        out[f"jsonschema {version('jsonschema')}"] = js
    except ImportError:
        pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.6, help="time per measurement")
    parser.add_argument("--repeat", type=int, default=10, help="passes over the samples per round")
    args = parser.parse_args()

    files = load_schemas()
    reference = load_reference(Settings().reference_file)
    valid, invalid = samples(files)
    valid_raw = [orjson.dumps(d) for d in valid]
    invalid_raw = [orjson.dumps(d) for d in invalid]
    n_valid, n_invalid = len(valid) * args.repeat, len(invalid) * args.repeat
    mean_bytes = sum(map(len, valid_raw)) / len(valid_raw)
    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{len(valid)} valid samples (mean {mean_bytes:.0f} bytes), {len(invalid)} invalid"
    )

    print("\n-- schema check only (decoded document in, bool out) --")
    for name, by_type in candidates(files).items():
        faithful = all(by_type[d["type"]](d) for d in valid) and not any(
            by_type[d["type"]](d) for d in invalid
        )
        fn_valid = _loop(lambda d, t=by_type: t[d["type"]](d), valid, args.repeat)
        fn_invalid = _loop(lambda d, t=by_type: t[d["type"]](d), invalid, args.repeat)
        note = "" if faithful else "   NOT FAITHFUL: accepts invalid samples or rejects examples"
        print(
            f"{name:28s} valid {best_us(fn_valid, n_valid, args.seconds):7.2f} us"
            f"   invalid {best_us(fn_invalid, n_invalid, args.seconds):7.2f} us{note}"
        )

    print("\n-- parts of the valid path --")
    loads_us = best_us(_loop(orjson.loads, valid_raw, args.repeat), n_valid, args.seconds)
    print(f"{'orjson.loads':28s} {loads_us:7.2f} us")
    times = [d["time"] for d in valid]
    parse_us = best_us(_loop(rfc3339_seconds, times, args.repeat), n_valid, args.seconds)
    print(f"{'one RFC 3339 time':28s} {parse_us:7.2f} us")
    sample = (Kind.HAZARD_FOUND, "hz-1", "/grid/x", "jinshui", "hz-1", 1.0, "fire", 2.0, False)
    build = _loop(lambda _: Event(*sample), valid, args.repeat)
    print(f"{'Event(...)':28s} {best_us(build, n_valid, args.seconds):7.2f} us")

    print("\n-- EventValidator.validate (raw bytes in, Event or InvalidEvent out) --")
    validator = EventValidator(reference, clock=FixedClock(CLOCK_AT))
    for raw in valid_raw:
        validator.validate(raw)
    for raw in invalid_raw:
        try:
            validator.validate(raw)
        except InvalidEvent:
            continue
        raise SystemExit(f"an invalid sample passed: {raw!r}")
    plain = EventValidator(reference, clock=FixedClock(CLOCK_AT), schema_programs=False)
    p_us = best_us(_loop(plain.validate, valid_raw, args.repeat), n_valid, args.seconds)
    print(f"{'valid, jsonschema-rs only':28s} {p_us:7.2f} us  (schema_programs=False)")
    v_us = best_us(_loop(validator.validate, valid_raw, args.repeat), n_valid, args.seconds)
    i_us = best_us(_loop(validator.validate, invalid_raw, args.repeat), n_invalid, args.seconds)
    print(f"{'valid events':28s} {v_us:7.2f} us  ({1e6 / v_us:,.0f} events/s on one core)")
    print(f"{'invalid events':28s} {i_us:7.2f} us")
    doc_us = best_us(_loop(validator.validate_document, valid, args.repeat), n_valid, args.seconds)
    print(f"{'validate_document (valid)':28s} {doc_us:7.2f} us  (decoded JSON in: HTTP ingest)")
    by_kind: dict[str, list[bytes]] = {}
    for doc, raw in zip(valid, valid_raw, strict=True):
        by_kind.setdefault(doc["type"], []).append(raw)
    for etype, raws in sorted(by_kind.items()):
        us = best_us(
            _loop(validator.validate, raws, args.repeat), len(raws) * args.repeat, args.seconds / 3
        )
        print(f"  {etype:40s} {us:6.2f} us")
    print(json.dumps({"valid_us": round(v_us, 3), "invalid_us": round(i_us, 3)}))


if __name__ == "__main__":
    main()

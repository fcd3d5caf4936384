"""Simulator files: reference cities, JSON-lines record files and the scenario folders."""

from __future__ import annotations

import contextlib
import gzip
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from ..errors import SettingsError, WatchfloorError
from ..reference import load_reference
from ..settings import PROJECT_ROOT
from .city import SimCity, city_from_reference, synthetic_city_document
from .lines import record_from_line, record_to_line
from .records import SimRecord
from .scenarios import build_scenario
from .tally import Tally

SCENARIO_DIR = PROJECT_ROOT / "seeds" / "scenarios"
SCENARIO_EVENTS = "events.jsonl"
# Scenario files above this size are kept gzipped (deterministically: mtime 0).
SCENARIO_GZIP_ABOVE = 512 * 1024


def load_city(city_file: str | Path, districts: int | None = None) -> SimCity:
    """The simulator's view of a reference file (the engine's, so every district is known)."""
    path = Path(city_file)
    reference = load_reference(path)
    try:
        document = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:  # load_reference read it a moment ago
        raise SettingsError(f"Cannot read {path}: {exc}.") from None
    city = city_from_reference(reference, document)
    return city.subset(districts) if districts is not None else city


def write_reference(path: str | Path, districts: int) -> Path:
    """Write a synthetic city of ``districts`` districts, and categories.json beside it."""
    out = Path(path)
    if out.suffix != ".json":
        out = out / "city.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = synthetic_city_document(districts)
    out.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    categories = PROJECT_ROOT / "seeds" / "reference" / "categories.json"
    beside = out.with_name("categories.json")
    if beside.resolve() != categories.resolve():
        beside.write_bytes(categories.read_bytes())
    load_reference(out)  # what the engine will do with it
    return out


def _open(path: str | Path, mode: str) -> IO[bytes]:
    if str(path) == "-":
        return sys.stdout.buffer if "w" in mode else sys.stdin.buffer
    p = Path(path)
    if p.suffix == ".gz":
        # mtime 0: the same records give the same bytes.
        return gzip.GzipFile(p, mode, mtime=0)  # type: ignore[return-value]
    return open(p, mode)


def write_records(records: Iterable[SimRecord], path: str | Path) -> Tally:
    """Write records as JSON lines (``-``: standard output; ``.gz``: compressed)."""
    tally = Tally()
    out = _open(path, "wb")
    try:
        for rec in records:
            out.write(record_to_line(rec) + b"\n")
            tally.add(rec)
    finally:
        if str(path) == "-":
            out.flush()
        else:
            out.close()
    return tally


def read_records(path: str | Path) -> Iterator[SimRecord]:
    """Read JSON lines written by :func:`write_records` (blank lines are skipped)."""
    try:
        f = _open(path, "rb")
    except FileNotFoundError:
        raise SettingsError(f"There is no records file {path}.") from None
    with contextlib.closing(f) if str(path) != "-" else contextlib.nullcontext(f):
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield record_from_line(line)
            except WatchfloorError as exc:
                raise WatchfloorError(f"{path}, line {n}: {exc}") from None


def _events_file(folder: Path) -> Path | None:
    for candidate in (folder / SCENARIO_EVENTS, folder / (SCENARIO_EVENTS + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def scenario_names(directory: Path = SCENARIO_DIR) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and _events_file(p))


def scenario_file(name: str, directory: Path = SCENARIO_DIR) -> Path:
    """The events of a scenario: ``events.jsonl`` or ``events.jsonl.gz``."""
    path = _events_file(directory / name)
    if path is None:
        known = ", ".join(scenario_names(directory)) or "none"
        raise SettingsError(f"There is no scenario {name!r} (known: {known}).")
    return path


def write_scenario(name: str, city: SimCity, directory: Path = SCENARIO_DIR) -> Path:
    """(Re)write a scenario's ``events.jsonl`` and ``expected.json`` from its builder."""
    scenario = build_scenario(name, city)
    folder = directory / name
    folder.mkdir(parents=True, exist_ok=True)
    size = sum(len(record_to_line(r)) + 1 for r in scenario.records)
    plain, packed = folder / SCENARIO_EVENTS, folder / (SCENARIO_EVENTS + ".gz")
    target, other = (packed, plain) if size > SCENARIO_GZIP_ABOVE else (plain, packed)
    write_records(scenario.records, target)
    other.unlink(missing_ok=True)
    expected = orjson.dumps(scenario.expected, option=orjson.OPT_INDENT_2) + b"\n"
    (folder / "expected.json").write_bytes(expected)
    return target


def load_expected(name: str, directory: Path = SCENARIO_DIR) -> dict[str, Any]:
    path = directory / name / "expected.json"
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise WatchfloorError(f"{path} must hold a JSON object.")
    return data

"""The hot path compiled with mypyc: which modules, and running their source when stale.

``setup.py`` compiles these modules to C extensions at install (``pip install -e .``,
``make install``) and records each source's hash beside them (``MANIFEST``). Python
prefers an extension to the ``.py`` beside it, so an extension built from an older
source would run that older code silently; when any source differs from what was
compiled (or the manifest is gone), every one of them runs from its source instead,
with a warning. All or none: compiled modules call each other's compiled code
directly, so a mix would hold two versions of the same classes.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent
# The counting path: category codes, validation, routing, lifecycles, windows, journals,
# the alert signals; and the district lines of ``/metrics``, which a scrape under load
# writes for every district. Not ``exposition`` (mypyc has no async generators) nor any
# module that Faust or aiohttp call back into by name.
MODULES: tuple[str, ...] = (
    "categories",
    "events",
    "validation",
    "windows",
    "subjects",
    "state",
    "engine",
    "state_journal",
    "signals",
    "district_lines",
)
# Written in C, not compiled from Python: the flat tables Python has no layout for
# (``streams/identities.py``, ``streams/tallies.py``, ``streams/deadlines.py``), the
# identity digests (``events.digest64``) and the common form of RFC 3339 times
# (``validation.rfc3339_seconds``), where the Python took a hash object or a datetime
# per event; and the schema programs' checker (``streams/schema_program.py``), which
# vouches for a record before jsonschema-rs is asked; and the CRC-32C of fetched record
# batches with the CPU's instruction, and the reading of their records
# (``streams/kafka.py``). Each falls back to its Python twin, to jsonschema-rs alone or to
# aiokafka's own CRC check and reading, when not built or when the hot path runs from
# source.
C_SOURCES: tuple[str, ...] = (
    "_identities",
    "_tallies",
    "_deadlines",
    "_digests",
    "_rfc3339",
    "_schema_check",
    "_crc32c",
    "_records",
)
MANIFEST = PACKAGE / "native.json"


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(package: Path = PACKAGE, modules: Sequence[str] = MODULES) -> dict[str, str]:
    """What ``setup.py`` records when it compiles: each module's source hash. (This module
    imports nothing outside the standard library: ``setup.py`` loads it before any
    dependency is installed.)"""
    out = {name: source_hash(package / f"{name}.py") for name in modules}
    for name in C_SOURCES:
        if (package / f"{name}.c").exists():
            out[f"{name}.c"] = source_hash(package / f"{name}.c")
    return out


def stale(package: Path = PACKAGE, modules: Sequence[str] = MODULES) -> list[str]:
    """The compiled modules whose source changed since they were compiled (all of them
    when the record is missing or unreadable); empty when none is compiled."""
    built = [name for name in modules if _extension(package, name) is not None]
    if not built:
        return []
    try:
        recorded = json.loads((package / MANIFEST.name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return list(modules)
    now = manifest(package, modules)
    return [name for name in now if recorded.get(name) != now[name]]


def compiled() -> list[str]:
    """The hot modules that run as compiled extensions in this process."""
    out = []
    for name in MODULES:
        module = sys.modules.get(f"{__package__}.{name}")
        if module is not None and _is_extension(module):
            out.append(name)
    return out


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the hot modules' ``.py`` files, ahead of their compiled extensions."""

    def __init__(self, package: str, directory: Path, modules: Sequence[str]) -> None:
        self._names = {f"{package}.{name}": directory / f"{name}.py" for name in modules}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        source = self._names.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def running_source() -> bool:
    """Whether the hot modules run from their source in this process (``use_source``)."""
    return any(isinstance(f, _SourceFinder) for f in sys.meta_path)


def use_source() -> None:
    """Run the hot modules from their source (tests of the pure path, debugging); to be
    called before any of them is imported."""
    loaded = [name for name in MODULES if f"{__package__}.{name}" in sys.modules]
    if loaded:
        raise RuntimeError(
            f"{', '.join(loaded)} already imported: the source can only be chosen before."
        )
    if not any(isinstance(f, _SourceFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder(__package__ or "streams", PACKAGE, MODULES))


def extension(name: str) -> ModuleType | None:
    """One of the ``C_SOURCES`` as built, or None when it is not built or the hot path runs
    from its source (``use_source``), where each caller takes its Python twin instead."""
    if running_source():
        return None
    try:
        return importlib.import_module(f"{__package__ or 'streams'}.{name}")
    except ImportError:
        return None


def check() -> None:
    """At the package's import: the source of every hot module if any compiled one is stale."""
    changed = stale()
    if changed:
        warnings.warn(
            f"streams/{_file(changed[0])} (and {len(changed) - 1} more) changed after it was "
            "compiled: running the hot path from source, slower. `make install` compiles "
            "it again.",
            RuntimeWarning,
            stacklevel=2,
        )
        use_source()


def _file(name: str) -> str:
    return name if name.endswith(".c") else f"{name}.py"


def _extension(package: Path, name: str) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = package / f"{name}{suffix}"
        if path.exists():
            return path
    return None


def _is_extension(module: ModuleType) -> bool:
    origin = getattr(module.__spec__, "origin", None) or ""
    return any(origin.endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES)

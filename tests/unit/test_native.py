"""The compiled counting path (streams/native.py): built where CI runs, its source when stale."""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from streams import native
from tests.conftest import need
from tests.unit.test_architecture import imports, modules

PURE = os.environ.get("WATCHFLOOR_TEST_PURE") == "1"
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def test_the_counting_path_runs_as_the_install_built_it() -> None:
    for name in native.MODULES:
        importlib.import_module(f"streams.{name}")
    if PURE:
        assert native.compiled() == []
        return
    # CI installs with the compiler (make install): a build that silently fell back to
    # Python would pass every other test and run at three quarters of the speed.
    need(native.compiled() != [], "the counting path is not compiled: run `make install`")
    assert native.compiled() == list(native.MODULES)
    assert native.stale() == []


def test_the_makefile_compiles_again_when_a_compiled_source_changes() -> None:
    makefile = (Path(native.__file__).parent.parent / "Makefile").read_text()
    listed = makefile.split("NATIVE_SOURCES :=", 1)[1].split("\n\n", 1)[0]
    assert listed.replace("\\", " ").split() == [
        *(f"streams/{m}.py" for m in native.MODULES),
        *(f"streams/{c}.c" for c in native.C_SOURCES),
    ]


def package(tmp_path: Path, built: list[str]) -> Path:
    for name in ("alpha", "beta"):
        (tmp_path / f"{name}.py").write_text(f"X = {name!r}\n")
    for name in built:
        (tmp_path / f"{name}{SUFFIX}").write_bytes(b"\x7fELF")
    return tmp_path


def test_nothing_is_stale_without_a_build(tmp_path: Path) -> None:
    assert native.stale(package(tmp_path, []), ("alpha", "beta")) == []


def test_a_build_is_fresh_while_its_sources_are_the_ones_recorded(tmp_path: Path) -> None:
    pkg = package(tmp_path, ["alpha", "beta"])
    (pkg / native.MANIFEST.name).write_text(json.dumps(native.manifest(pkg, ("alpha", "beta"))))
    assert native.stale(pkg, ("alpha", "beta")) == []
    (pkg / "beta.py").write_text("X = 'changed'\n")
    assert native.stale(pkg, ("alpha", "beta")) == ["beta"]


def test_a_table_written_in_c_is_stale_once_its_source_changes(tmp_path: Path) -> None:
    pkg = package(tmp_path, ["alpha", "beta"])
    for name in native.C_SOURCES:
        (pkg / f"{name}.c").write_text("/* built */\n")
    (pkg / native.MANIFEST.name).write_text(json.dumps(native.manifest(pkg, ("alpha", "beta"))))
    assert native.stale(pkg, ("alpha", "beta")) == []
    (pkg / f"{native.C_SOURCES[0]}.c").write_text("/* changed */\n")
    assert native.stale(pkg, ("alpha", "beta")) == [f"{native.C_SOURCES[0]}.c"]


@pytest.mark.parametrize("record", [None, "{not json", '{"alpha": "0"}'])
def test_a_build_without_a_readable_record_is_stale(tmp_path: Path, record: str | None) -> None:
    pkg = package(tmp_path, ["alpha"])
    if record is not None:
        (pkg / native.MANIFEST.name).write_text(record)
    assert native.stale(pkg, ("alpha", "beta")) == ["alpha", "beta"]


def test_the_source_can_be_chosen_before_the_first_import_only() -> None:
    script = (
        "from streams import native\n"
        "native.use_source()\n"
        "import streams.engine, streams.state\n"
        "print(streams.state.__file__, native.compiled())\n"
        "try:\n"
        "    native.use_source()\n"
        "except RuntimeError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == f"{Path(native.__file__).parent / 'state.py'} []"
    assert out[1].startswith(
        "categories, events, windows, subjects, state, engine already imported"
    )
    assert out[1].endswith("already imported: the source can only be chosen before.")


def _third_party_imports(start: list[str]) -> set[str]:
    """Top-level packages outside the standard library that the ``start`` modules import,
    and the ``streams`` modules they import in turn (mypy follows those imports)."""
    known = modules()
    todo, seen, found = list(start), set(), set()
    while todo:
        mod = todo.pop()
        if mod in seen or mod not in known:  # not a module: a name imported from one
            continue
        seen.add(mod)
        for name in imports(mod, known[mod], type_checking=True):
            top = name.split(".")[0]
            if top == "streams":
                todo.append(name)
            elif top not in sys.stdlib_module_names:
                found.add(top)
    return found


def test_the_isolated_build_has_every_package_the_compiled_path_imports() -> None:
    # mypyc type-checks the counting path in pip's isolated build environment, which has
    # only the build requirements: a package imported there and missing from them stops
    # the install (it did, for isal, in CI).
    root = Path(native.__file__).parent.parent
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    required = {
        re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("-", "_")
        for req in pyproject["build-system"]["requires"]
    }
    imported = _third_party_imports([f"streams.{m}" for m in native.MODULES])
    assert {"orjson", "isal"} <= imported  # the walk reaches what the modules import
    assert imported <= required, sorted(imported - required)

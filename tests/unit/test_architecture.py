"""The layout tells the architecture: layers by module, checked by reading imports with ast."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "streams"
MODULE_MAP = ROOT / "docs" / "architecture.md"

# Libraries that tie code to Kafka, Faust, Prometheus or HTTP: never in the counting core.
FRAMEWORKS = ("faust", "mode", "aiokafka", "kafka", "prometheus_client", "aiohttp", "yarl")


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``streams.state``, ``streams.simulator.x``);
    a module written in C by its stub (its imports are what its types need)."""
    out = {}
    stubs = [p for p in PACKAGE.rglob("*.pyi") if not p.with_suffix(".py").exists()]
    for path in sorted([*PACKAGE.rglob("*.py"), *stubs]):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, *, type_checking: bool = False) -> set[str]:
    """Absolute names of what a module imports; type-checking-only imports left out unless
    ``type_checking`` (mypy reads them)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if (not type_checking and isinstance(node, ast.If)
                and "TYPE_CHECKING" in ast.unparse(node.test)):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            if node.module is None or (node.level and not node.module):
                found.update(f"{prefix}.{alias.name}" for alias in node.names)
            else:
                found.add(prefix)
                found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def module_map() -> dict[str, str]:
    """Module -> layer, from the table in docs/architecture.md ("Module map")."""
    text = MODULE_MAP.read_text()
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    layers: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0] or cells[0].startswith(("layer", "---")):
            continue
        for mod in re.findall(r"`([a-z0-9_.]+)`", cells[1]):
            layers[f"streams.{mod}"] = cells[0]
    return layers


def layer_of(name: str, layers: dict[str, str]) -> str | None:
    while name:
        if name in layers:
            return layers[name]
        name = name.rpartition(".")[0]
    return None


def test_every_module_has_its_line_in_the_module_map() -> None:
    layers = module_map()
    missing = [m for m in modules() if m != "streams" and layer_of(m, layers) is None]
    assert not missing, f"add these to the module map in docs/architecture.md: {missing}"
    gone = [m for m in layers if not any(k == m or k.startswith(m + ".") for k in modules())]
    assert not gone, f"the module map names modules that do not exist: {gone}"


@pytest.mark.parametrize("name", [m for m in modules() if layer_of(m, module_map()) == "core"])
def test_core_modules_import_no_framework_and_no_settings(name: str) -> None:
    layers = module_map()
    for imported in imports(name, modules()[name]):
        top = imported.split(".")[0]
        assert top not in FRAMEWORKS, f"{name} imports {imported}: the core must stay pure"
        if top == "streams":
            target = layer_of(imported, layers) or layer_of(imported.rpartition(".")[0], layers)
            assert target == "core", f"{name} imports {imported} ({target}), outside the core"


def test_no_import_cycles() -> None:
    mods = modules()
    graph = {
        name: {i for i in imports(name, path) if i in mods and i != name}
        for name, path in mods.items()
    }
    # A package importing its own submodules is how a package exposes them, not a cycle.
    for name in graph:
        graph[name] = {i for i in graph[name] if not (i.startswith(name + "."))}
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        seen[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if seen.get(m) == 1:
                cycle = [*stack[stack.index(m) :], m]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if m not in seen:
                visit(m)
        stack.pop()
        seen[n] = 2

    for n in sorted(graph):
        if n not in seen:
            visit(n)


def test_the_checker_sees_what_it_must(tmp_path: Path) -> None:
    # A check that cannot fail proves nothing: feed it a module that breaks the rules.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\nimport faust\nfrom .settings import Settings\n"
        "from . import metrics\nif TYPE_CHECKING:\n    from .app import Watchfloor\n"
    )
    found = imports("streams.probe", probe)
    assert {"faust", "streams.settings", "streams.metrics"} <= found
    assert "streams.app" not in found, "type-checking imports are not imports at run time"

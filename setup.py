"""Build hook: compiles the counting path (``streams/native.py``) with mypyc, and its C tables.

Everything else about the package is in pyproject.toml. Without a C compiler or
Python's headers, or with ``WATCHFLOOR_PURE_PYTHON=1`` at install, the counting path
stays Python (slower, the same figures) and extensions of an earlier build are removed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_watchfloor_native", ROOT / "streams" / "native.py")
assert _spec is not None and _spec.loader is not None
native = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(native)


def missing_toolchain() -> str | None:
    """What compiling lacks here, in a few words; None when nothing is missing."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(os.environ.get("CC", cc).split()[0]) is None:
        return f"no C compiler ({cc})"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (Debian: python3-dev)"
    return None


def remove_build() -> None:
    for name in (*native.MODULES, *native.C_SOURCES):
        for built in (ROOT / "streams").glob(f"{name}.*.so"):
            built.unlink()
    for shared in ROOT.glob("*__mypyc.*.so"):  # the code the compiled modules share
        shared.unlink()
    native.MANIFEST.unlink(missing_ok=True)


ext_modules = []
lacking = missing_toolchain()
if os.environ.get("WATCHFLOOR_PURE_PYTHON") == "1" or lacking:
    if lacking:
        print(f"watchfloor: {lacking}: the counting path stays Python.", file=sys.stderr)
    remove_build()
else:
    from mypyc.build import mypycify

    native.MANIFEST.write_text(json.dumps(native.manifest(), indent=1) + "\n", encoding="utf-8")
    ext_modules = mypycify([f"streams/{name}.py" for name in native.MODULES], opt_level="3")
    ext_modules += [
        Extension(f"streams.{name}", [f"streams/{name}.c"], extra_compile_args=["-O2"])
        for name in native.C_SOURCES
    ]

setup(ext_modules=ext_modules)

"""Build hook: compiles the counting path (``streams/native.py``) with mypyc.

Everything else about the package is in pyproject.toml. ``WATCHFLOOR_PURE_PYTHON=1``
at install leaves the hot path as Python (and removes extensions of an earlier build).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_watchfloor_native", ROOT / "streams" / "native.py")
assert _spec is not None and _spec.loader is not None
native = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(native)

ext_modules = []
if os.environ.get("WATCHFLOOR_PURE_PYTHON") == "1":
    for name in native.MODULES:
        for built in (ROOT / "streams").glob(f"{name}.*.so"):
            built.unlink()
    for shared in ROOT.glob("*__mypyc.*.so"):  # the code the compiled modules share
        shared.unlink()
    native.MANIFEST.unlink(missing_ok=True)
else:
    from mypyc.build import mypycify

    native.MANIFEST.write_text(json.dumps(native.manifest(), indent=1) + "\n", encoding="utf-8")
    ext_modules = mypycify([f"streams/{name}.py" for name in native.MODULES], opt_level="3")

setup(ext_modules=ext_modules)

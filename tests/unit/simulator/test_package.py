"""The package's layering: only its I/O modules may load Kafka clients, metrics or settings."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import streams.simulator

IO_MODULES = {"cli", "files", "live", "produce"}
FORBIDDEN_TOP = {"faust", "mode", "aiokafka", "kafka", "prometheus_client"}


def test_the_pure_modules_load_no_kafka_client_metrics_or_settings() -> None:
    pure = [
        m.name
        for m in pkgutil.walk_packages(streams.simulator.__path__, "streams.simulator.")
        if m.name.split(".")[2] not in IO_MODULES
    ]
    assert "streams.simulator.generator" in pure and "streams.simulator.scenarios.builder" in pure
    # A fresh interpreter: this one has loaded everything already.
    script = (
        f"import importlib, sys\nfor name in {pure!r}: importlib.import_module(name)\n"
        "print('\\n'.join(sys.modules))"
    )
    root = Path(streams.simulator.__file__).parents[2]
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=root
    ).stdout.split()
    assert "streams.simulator.generator" in loaded
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN_TOP or m == "streams.settings"]
    assert bad == []

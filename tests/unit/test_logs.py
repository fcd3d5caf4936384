"""Log set-up: a run of like warnings is cut to one line a window, with a count."""

from __future__ import annotations

import logging
from typing import Any

from streams.logs import RepeatFilter


def record(msg: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka") -> Any:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeats_are_cut_and_counted() -> None:
    now = [0.0]
    f = RepeatFilter(window=60, clock=lambda: now[0])
    template = "Unable connect to node with id %s: %s"
    assert f.filter(record(template, 1, "refused"))
    passed = 0
    for i in range(1000):
        now[0] = i * 0.05
        passed += f.filter(record(template, 1, "refused"))
    assert passed == 0
    now[0] = 61.0
    last = record(template, 1, "refused")
    assert f.filter(last)
    assert "[1000 more like this in the last 61s were not logged]" in last.getMessage()
    # Other messages, other loggers and INFO lines are not held back by that run.
    assert f.filter(record("Unable to update metadata from %s", [1]))
    assert f.filter(record(template, 1, "refused", name="other"))
    assert all(f.filter(record("info %d", i, level=logging.INFO)) for i in range(5))


def test_the_map_of_runs_stays_small() -> None:
    f = RepeatFilter(window=60, clock=lambda: 0.0)
    for i in range(5000):
        f.filter(record(f"an f-string message {i}"))
    assert len(f._runs) <= RepeatFilter.MAX_KEYS

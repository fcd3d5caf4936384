"""``python -m tests.benchmarks.gclog LOG worker``: the worker, its garbage-collector pauses logged.

The cyclic garbage collector stops the whole process while it walks the heap, and a
full (generation 2) collection walks every tracked object: with a million lifecycles
in memory that takes a while, and no profiler frame shows it. Every full collection,
every collection over 10 ms, and at least once a second the running totals per
generation are written to LOG as JSON lines; the worker itself is the ordinary
``watchfloor`` command, untouched.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from typing import Any

SLOW_SECONDS = 0.01


def install(path: str) -> None:
    out = open(path, "a", buffering=1)  # noqa: SIM115 (open for the life of the process)
    started = [0.0]
    last_write = [0.0]
    counts = [0, 0, 0]
    seconds = [0.0, 0.0, 0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            started[0] = now
            return
        took = now - started[0]
        gen = info["generation"]
        counts[gen] += 1
        seconds[gen] += took
        if gen == 2 or took > SLOW_SECONDS or now - last_write[0] >= 1.0:
            last_write[0] = now
            record = {
                "pid": os.getpid(),
                "t": time.time(),
                "generation": gen,
                "seconds": round(took, 5),
                "collected": info["collected"],
                "counts": counts,
                "totals": [round(x, 5) for x in seconds],
            }
            out.write(json.dumps(record) + "\n")

    gc.callbacks.append(on_gc)


def summarize(
    path: str, start: float = 0.0, end: float = float("inf"), pid: int | None = None
) -> dict[str, Any]:
    """Collections between two wall times: time per generation, full ones, pauses > 10 ms.

    A restarted worker appends to the same log with totals from zero: ``pid`` keeps
    the lines of one process.
    """
    try:
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return {}
    if pid is not None:
        rows = [r for r in rows if r.get("pid") == pid]
    before = [r for r in rows if r["t"] < start]
    inside = [r for r in rows if start <= r["t"] <= end]
    zero = {"counts": [0, 0, 0], "totals": [0.0, 0.0, 0.0]}
    base = before[-1] if before else zero
    # Lines carry running totals, written at least once a second while collections run:
    # the window is exact to that second (an empty window counts as no collection).
    last = inside[-1] if inside else base
    base_counts, base_totals = base["counts"], base["totals"]
    full = [r["seconds"] for r in inside if r["generation"] == 2]
    slow = [r["seconds"] for r in inside if r["seconds"] > SLOW_SECONDS]
    return {
        "collections": [c - b for c, b in zip(last["counts"], base_counts, strict=True)],
        "seconds_by_generation": [
            round(t - b, 3) for t, b in zip(last["totals"], base_totals, strict=True)
        ],
        "seconds_total": round(sum(last["totals"]) - sum(base_totals), 3),
        "full_collections": len(full),
        "full_seconds_max": round(max(full), 3) if full else 0.0,
        "pauses_over_10ms": len(slow),
        "pause_seconds_max": round(max(slow), 3) if slow else 0.0,
    }


def main() -> int:
    install(sys.argv[1])
    from streams.cli import main as cli

    return cli(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

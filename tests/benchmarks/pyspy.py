"""Where the worker's time goes: py-spy samples of a running worker, summed by thread and by part.

``py-spy record -f raw`` writes one line per distinct stack, ``frame;frame;...;leaf
count``, each frame ``function (file:line)``. With ``--idle`` the samples of a thread
waiting in ``select``/``epoll`` are kept, so the share of time each thread is busy
shows. A part (validation, counting, state writes, ...) is charged a sample when one
of its frames is on the stack; parts are checked in order and a sample goes to the
first that matches, so the busy shares add up to 100 %.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# (part, pattern over one frame "function (file:line)"); first match wins, leaf-most
# frames are not preferred: a sample belongs to the outermost part on its stack.
PARTS: tuple[tuple[str, str], ...] = (
    ("/metrics and API views", r"\((?:streams/)?web\.py|generate_latest|DistrictCollector"),
    ("validation (streams/validation.py)", r"\((?:streams/)?validation\.py"),
    ("counting (streams/state.py, windows.py)", r"\((?:streams/)?(?:state|windows)\.py"),
    ("engine routing (streams/engine.py)", r"\((?:streams/)?engine\.py"),
    ("state journals (streams/store.py)", r"\((?:streams/)?store\.py"),
    ("dead letters (streams/deadletter.py)", r"\((?:streams/)?deadletter\.py|_dead_letter"),
    ("pipeline metrics (_observe)", r"_observe \("),
    ("batch ack (streams/consumer.py ack_batch)", r"ack_batch \("),
    ("batch fetch (streams/consumer.py)", r"\((?:streams/)?consumer\.py"),
    ("Faust table / changelog", r"\(faust/tables/|\(faust/stores/"),
    ("Faust producer buffer / send", r"\(faust/transport/producer\.py|\(aiokafka/producer/"),
    ("aiokafka fetch and record parsing", r"\(aiokafka/consumer/|\(aiokafka/record/"),
    ("aiokafka protocol / connection", r"\(aiokafka/(?:conn|client|protocol)"),
    ("Faust consumer / commit", r"\(faust/transport/"),
    ("other Faust / mode", r"\((?:faust|mode)/"),
    ("asyncio event loop", r"\(asyncio/"),
)
IDLE = re.compile(r"^(?:select|poll|epoll_wait|_run_once|wait|_wait_for_tstate_lock) \(")
_THREAD = re.compile(r"^(?:process \d+:)?\"?(?:thread )?\(?(0x[0-9a-f]+)\)?")


def pyspy_binary() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class PySpy:
    """``py-spy record`` attached to a process until :meth:`stop`."""

    def __init__(self, pid: int, out: Path, rate: int = 100) -> None:
        binary = pyspy_binary()
        if binary is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy).")
        self.out = out
        out.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(out.with_suffix(".log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                binary,
                "record",
                "-p",
                str(pid),
                "-f",
                "raw",
                "-o",
                str(out),
                "-r",
                str(rate),
                "--idle",
                "--threads",
                "--function",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            # py-spy writes its output when interrupted.
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def _is_idle(frames: list[str]) -> bool:
    leaf = frames[-1] if frames else ""
    return bool(IDLE.match(leaf)) or "selectors.py" in leaf


def summarize(raw: Path, top: int = 20) -> dict[str, Any]:
    """Samples per thread (busy/idle), busy samples per part, and the busiest leaf functions."""
    threads: Counter[str] = Counter()
    idle: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = busy = 0
    compiled = [(name, re.compile(pattern)) for name, pattern in PARTS]
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0] if frames and "thread" in frames[0].lower() else "main"
        frames = [f for f in frames if "(" in f]
        total += count
        threads[thread] += count
        if _is_idle(frames):
            idle[thread] += count
            continue
        busy += count
        leaves[re.sub(r":\d+\)$", ")", frames[-1]) if frames else "?"] += count
        for name, pattern in compiled:
            if any(pattern.search(f) for f in frames):
                parts[name] += count
                break
        else:
            parts["other"] += count
    return {
        "samples": total,
        "busy_samples": busy,
        "threads": {
            t: {"samples": n, "busy_share": round(1 - idle[t] / n, 3) if n else 0.0}
            for t, n in threads.most_common()
        },
        "parts": [
            {"part": name, "samples": n, "share_of_busy": round(n / busy, 3) if busy else 0.0}
            for name, n in parts.most_common()
        ],
        "top_functions": [
            {"function": f, "samples": n, "share_of_busy": round(n / busy, 3) if busy else 0.0}
            for f, n in leaves.most_common(top)
        ],
    }

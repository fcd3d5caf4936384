"""Where the worker's time goes: py-spy samples of a running worker, summed by thread and by part.

``py-spy record -f raw`` writes one line per distinct stack, ``frame;frame;...;leaf
count``, each frame ``function (file:line)``. With ``--idle`` the samples of a thread
waiting in ``select``/``epoll`` are kept, so the share of time each thread is busy
shows. A part (validation, counting, state writes, ...) is charged a sample when one
of its frames is on the stack; parts are checked in order and a sample goes to the
first that matches, so the busy shares add up to 100 % (see ``OURS`` and ``LIBS``).
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

# Watchfloor's own parts: (part, pattern over one frame "function (file:line)"). A
# sample goes to the first part, in this order, with a frame anywhere on its stack.
OURS: tuple[tuple[str, str], ...] = (
    ("/metrics and API views", r"\((?:streams/)?web\.py|generate_latest|DistrictCollector"),
    ("validation (streams/validation.py)", r"\((?:streams/)?validation\.py"),
    ("counting (streams/state.py, windows.py)", r"\((?:streams/)?(?:state|windows)\.py"),
    ("engine routing (streams/engine.py)", r"\((?:streams/)?engine\.py"),
    ("state journals (streams/state_journal.py)", r"\((?:streams/)?state_journal\.py"),
    ("dead letters (streams/deadletter.py)", r"\((?:streams/)?deadletter\.py|_dead_letter"),
    ("pipeline metrics (_observe)", r"_observe \("),
    ("batch ack (streams/consumer.py ack_batch)", r"ack_batch \("),
    ("batch fetch (streams/consumer.py)", r"\((?:streams/)?consumer\.py"),
)
# Code of the agent loop itself (streams/app.py, agents.py) counts only as the leaf:
# every main-thread stack passes through it.
BATCH_LOOP = ("batch loop (streams/app.py, agents.py)", r"\((?:streams/)?(?:app|agents)\.py")
# Library parts, for samples with none of the above: the leaf-most matching frame wins
# (the roots of every stack are Faust's and mode's service loops).
LIBS: tuple[tuple[str, str], ...] = (
    ("Faust table / changelog", r"\(faust/tables/|\(faust/stores/"),
    ("producer (Faust buffer, aiokafka)", r"\(faust/transport/producer\.py|\(aiokafka/producer/"),
    ("aiokafka fetch and record parsing", r"\(aiokafka/consumer/|\(aiokafka/record/"),
    ("aiokafka protocol / connection", r"\(aiokafka/(?:conn|client|protocol)"),
    ("Faust consumer / commit", r"\(faust/transport/"),
    ("asyncio sockets and event loop", r"\(asyncio/"),
    ("interpreter start-up (imports)", r"<frozen importlib"),
    ("other Faust / mode", r"\((?:faust|mode)/"),
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


def _thread_name(first: str) -> str:
    # "thread (12345): MainThread" -> "MainThread"; Faust runs its consumer in "Thread-1".
    # While the interpreter starts, py-spy knows the main thread by its id only.
    if "): " not in first:
        return "MainThread"
    name = first.split("): ", 1)[1]
    return "consumer thread (Faust)" if name.startswith("Thread-") else name


def summarize(raw: Path, top: int = 15) -> dict[str, Any]:
    """Per thread: samples, busy share, busy samples per part, and the busiest functions."""
    ours = [(name, re.compile(pattern)) for name, pattern in OURS]
    libs = [(name, re.compile(pattern)) for name, pattern in LIBS]
    threads: dict[str, dict[str, Any]] = {}
    total = busy_total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        name = _thread_name(frames[0]) if frames and "thread" in frames[0].lower() else "main"
        frames = [f for f in frames if "(" in f]
        t = threads.setdefault(
            name, {"samples": 0, "idle": 0, "parts": Counter(), "functions": Counter()}
        )
        total += count
        t["samples"] += count
        if _is_idle(frames):
            t["idle"] += count
            continue
        busy_total += count
        t["functions"][re.sub(r":\d+\)$", ")", frames[-1]) if frames else "?"] += count
        t["parts"][_part(frames, ours, libs)] += count
    out: dict[str, Any] = {"samples": total, "busy_samples": busy_total, "threads": {}}
    for name, t in sorted(threads.items(), key=lambda kv: -(kv[1]["samples"] - kv[1]["idle"])):
        busy = t["samples"] - t["idle"]
        out["threads"][name] = {
            "samples": t["samples"],
            "busy_share": round(busy / t["samples"], 3) if t["samples"] else 0.0,
            "parts": [
                {"part": p, "samples": n, "share_of_busy": round(n / busy, 3)}
                for p, n in t["parts"].most_common()
            ],
            "top_functions": [
                {"function": f, "samples": n, "share_of_busy": round(n / busy, 3)}
                for f, n in t["functions"].most_common(top)
            ],
        }
    return out


def _part(
    frames: list[str],
    ours: list[tuple[str, re.Pattern[str]]],
    libs: list[tuple[str, re.Pattern[str]]],
) -> str:
    for part, pattern in ours:
        if any(pattern.search(f) for f in frames):
            return part
    if frames and re.search(BATCH_LOOP[1], frames[-1]):
        return BATCH_LOOP[0]
    for frame in reversed(frames):
        for part, pattern in libs:
            if pattern.search(frame):
                return part
    return "other"


def attach(pid: int, out: Path, rate: int = 100, tries: int = 20) -> PySpy:
    """Attach py-spy to a process that may still be starting its interpreter."""
    for _ in range(tries):
        spy = PySpy(pid, out, rate)
        try:
            spy.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return spy  # still sampling: attached
        spy.log.close()
    raise RuntimeError(f"py-spy could not attach to process {pid}; see {out.with_suffix('.log')}")

"""Process plumbing for the benchmark: child runs, /proc sampling, load, and the child protocol.

Each implementation runs in a child process of its own (``python -m
tests.benchmarks.<impl> SPEC RESULT``, or ``java ... CountingJob SPEC RESULT`` for the
Kafka Streams peer): the spec and the result are JSON files, so the parent never shares
an interpreter, a heap or an event loop with what it measures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) of a process, in bytes."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":", 1)
                    out[name] = int(value.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def cpu_seconds(pid: int | str = "self") -> float | None:
    """User plus system CPU time of a process (all its threads), from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces; fields resume after its closing parenthesis.
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Sampler:
    """Samples a process's RSS and CPU time every ``interval`` seconds in a thread."""

    pid: int
    interval: float = 0.25
    samples: list[tuple[float, int, float]] = field(default_factory=list)  # (t, rss, cpu)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        rss = proc_status(self.pid).get("VmRSS")
        cpu = cpu_seconds(self.pid)
        if rss is not None and cpu is not None:
            self.samples.append((time.time(), rss, cpu))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def peak_rss(self) -> int:
        return max((s[1] for s in self.samples), default=0)

    def cpu_between(self, t0: float, t1: float) -> float | None:
        """CPU seconds spent between two wall times (nearest samples)."""
        inside = [s for s in self.samples if t0 - self.interval <= s[0] <= t1 + self.interval]
        if len(inside) < 2:
            return None
        return inside[-1][2] - inside[0][2]


# -- the child side ---------------------------------------------------------------------


def child_main(run: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Entry point of an implementation's module: read the spec, run, write the result."""
    spec_path, result_path = sys.argv[1], sys.argv[2]
    spec = json.loads(Path(spec_path).read_text())
    cpu0 = time.process_time()
    result = run(spec)
    result.setdefault("cpu_seconds", round(time.process_time() - cpu0, 3))
    result.setdefault("peak_rss_bytes", proc_status().get("VmHWM"))
    tmp = Path(result_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(result_path)


def tp_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def parse_tp_key(key: str) -> tuple[str, int]:
    topic, _, part = key.rpartition(":")
    return topic, int(part)


# -- the parent side --------------------------------------------------------------------


class ChildFailed(RuntimeError):
    """An implementation's process ended without a result."""


class Child:
    """``python -m module SPEC RESULT`` running in its own session, its log kept in ``work``.

    With ``command``, that command runs instead of ``python -m module`` (the Kafka
    Streams peer is a ``java`` command); it takes the same two files.
    """

    def __init__(
        self,
        module: str,
        spec: dict[str, Any],
        work: Path,
        label: str,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.label = label
        self.spec_path = work / f"{label}.spec.json"
        self.result_path = work / f"{label}.result.json"
        self.log_path = work / f"{label}.log"
        self.result_path.unlink(missing_ok=True)
        self.spec_path.write_text(json.dumps(spec))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    *(command or [sys.executable, "-m", module]),
                    str(self.spec_path),
                    str(self.result_path),
                ],
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.sampler = Sampler(self.proc.pid).start()

    def result(self, timeout: float) -> dict[str, Any]:
        """Wait for the child (SIGTERM, then SIGKILL, after ``timeout``); return its result."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            terminate(self.proc)
        finally:
            self.sampler.stop()
        if not self.result_path.exists():
            tail = self.log_path.read_text(errors="replace").splitlines()[-40:]
            raise ChildFailed(
                f"{self.label} gave no result (exit {self.proc.returncode}):\n" + "\n".join(tail)
            )
        result: dict[str, Any] = json.loads(self.result_path.read_text())
        result["exit_code"] = self.proc.returncode
        result["sampled_peak_rss_bytes"] = self.sampler.peak_rss()
        return result

    def kill(self) -> None:
        terminate(self.proc, grace=5)
        self.sampler.stop()


def run_child(
    module: str,
    spec: dict[str, Any],
    work: Path,
    *,
    timeout: float,
    label: str,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run an implementation's child to the end and return its result."""
    return Child(module, spec, work, label, env).result(timeout)


def terminate(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds, to the child's own process group."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass

"""The second peer: the counting job of ``job.py`` as a Kafka Streams application (Java).

The application's source is in ``tests/benchmarks/kstreams/`` (``pom.xml`` and
``src/main/java``): Java 17, ``org.apache.kafka:kafka-streams`` of the broker's version
and slf4j-simple, from Maven Central. :func:`build` runs ``mvn -q -B package`` on it the
first time and again whenever its sources change (a hash of them is kept in
``target/.source-hash``): the classes go to ``target/kstreams-bench.jar``, the runtime
jars to ``target/lib``, Maven's downloads to ``~/.m2`` (so later builds also work with
``mvn -o``). :func:`command` is the ``java`` command the benchmark runs as a child,
with the spec and result files of ``proc.py``'s protocol as its two arguments.

The job's constants (the topic of each event type, the size limit, the time range) go
to the application in the spec (:func:`job_spec`), from ``job.py``: the two jobs read
the same rules.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .dataset import ROLES
from .job import EARLIEST_TS, MAX_BYTES, MAX_FUTURE_SECONDS, STREAM_OF_TYPE

SOURCE = Path(__file__).resolve().with_name("kstreams")
POM = SOURCE / "pom.xml"
TARGET = SOURCE / "target"
JAR = TARGET / "kstreams-bench.jar"
LIB = TARGET / "lib"
STAMP = TARGET / ".source-hash"
MAIN_CLASS = "io.watchfloor.bench.kstreams.CountingJob"
# JVM flags of the application: a 512 MB heap, as the local broker has (kafkactl). Left
# to its ergonomics, the JVM takes a quarter of this 24 GB machine as its maximum heap and
# G1 grows the process to 2.6 GB at the default size, for no gain in speed (docs/
# performance.md). WATCHFLOOR_BENCH_KSTREAMS_JVM_OPTS (space-separated) replaces them; a
# run's flags are in its result (``jvm_args``).
JVM_OPTS: tuple[str, ...] = ("-Xmx512m",)
JVM_OPTS_ENV = "WATCHFLOOR_BENCH_KSTREAMS_JVM_OPTS"
BUILD_TIMEOUT = 900.0
# What the application reports beside the figures every part has; kept in the report.
RESULT_EXTRAS = (
    "kafka_streams_version",
    "java_version",
    "jvm_args",
    "jvm_max_heap_bytes",
    "close_seconds",
    "changelog_records",
)


class BuildError(RuntimeError):
    """The Kafka Streams application could not be built (no Java, no Maven, or mvn failed)."""


def missing_tools() -> str | None:
    """Why the part cannot run here (no Java 17+ or no Maven), or None when it can."""
    java = shutil.which("java")
    if java is None:
        return "Java 17 or newer is needed for the kstreams part and none was found"
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    found = re.search(r'version "(\d+)', out.stderr + out.stdout)
    if found is None or int(found.group(1)) < 17:
        return f"the kstreams part needs Java 17 or newer; {java} is {found and found.group(1)}"
    if shutil.which("javac") is None:
        return "a JDK (javac) is needed to build the kstreams part and none was found"
    if shutil.which("mvn") is None:
        return "Maven (mvn) is needed to build the kstreams part and none was found"
    return None


def source_hash() -> str:
    """A hash of the pom and every file under src/, names and contents."""
    h = hashlib.sha256()
    for path in [POM, *sorted(p for p in (SOURCE / "src").rglob("*") if p.is_file())]:
        h.update(str(path.relative_to(SOURCE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def built() -> bool:
    return (
        JAR.is_file()
        and LIB.is_dir()
        and STAMP.is_file()
        and STAMP.read_text().strip() == source_hash()
    )


def build(log: Callable[[str], None] = print) -> float | None:
    """Build the application unless it is up to date; the seconds it took, or None."""
    if built():
        return None
    why = missing_tools()
    if why:
        raise BuildError(why)
    log(f"kstreams: building {SOURCE.relative_to(SOURCE.parents[2])} (mvn -q -B package)")
    t0 = time.monotonic()
    shutil.rmtree(LIB, ignore_errors=True)  # no stale jars of an older dependency set
    try:
        done = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(POM), "package"],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"mvn package did not finish in {BUILD_TIMEOUT:.0f} s") from exc
    if done.returncode != 0 or not JAR.is_file():
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise BuildError(f"mvn package failed (exit {done.returncode}):\n{tail}")
    STAMP.write_text(source_hash() + "\n")
    seconds = time.monotonic() - t0
    log(f"kstreams: built in {seconds:.1f} s")
    return seconds


def command() -> list[str]:
    """The ``java`` command line of the application, without its two file arguments."""
    java = shutil.which("java") or "java"
    opts = os.environ[JVM_OPTS_ENV].split() if JVM_OPTS_ENV in os.environ else JVM_OPTS
    return [java, *opts, "-cp", f"{JAR}{os.pathsep}{LIB}/*", MAIN_CLASS]


def job_spec() -> dict[str, Any]:
    """The rules of ``job.py`` the Java job reads from its spec."""
    return {
        "role_of_type": {etype: ROLES[stream] for etype, stream in STREAM_OF_TYPE.items()},
        "max_bytes": MAX_BYTES,
        "earliest_ts": EARLIEST_TS,
        "max_future_seconds": MAX_FUTURE_SECONDS,
    }

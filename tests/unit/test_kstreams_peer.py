"""The Kafka Streams peer of the benchmark, checked without Java: what must not drift apart."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from streams.events import TYPE_OF_KIND
from tests.benchmarks import kstreams_run
from tests.benchmarks.dataset import ROLES
from tests.benchmarks.report import IMPLS, TITLES

ROOT = Path(__file__).resolve().parents[2]


def kafka_version(pom: Path) -> str:
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    assert found, pom
    return found.group(1)


def test_kafka_streams_is_the_brokers_version() -> None:
    broker = kafka_version(ROOT / "deploy" / "kafka" / "pom.xml")
    assert kafka_version(kstreams_run.POM) == broker


def test_the_java_job_gets_every_type_and_the_limits_of_job_py() -> None:
    spec = kstreams_run.job_spec()
    assert set(spec["role_of_type"]) == set(TYPE_OF_KIND.values())
    assert set(spec["role_of_type"].values()) == set(ROLES.values())
    assert spec["max_bytes"] == 64 * 1024
    assert spec["earliest_ts"] == 946_684_800.0 and spec["max_future_seconds"] == 600.0


def test_the_command_runs_the_built_classes_with_the_spec_and_result_after_it() -> None:
    cmd = kstreams_run.command()
    assert cmd[-1] == kstreams_run.MAIN_CLASS
    classpath = cmd[cmd.index("-cp") + 1]
    assert str(kstreams_run.JAR) in classpath and f"{kstreams_run.LIB}/*" in classpath
    main = kstreams_run.SOURCE / "src/main/java" / (kstreams_run.MAIN_CLASS.replace(".", "/"))
    assert main.with_suffix(".java").is_file()


def test_a_changed_source_asks_for_a_new_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "kstreams"
    shutil.copytree(kstreams_run.SOURCE, source, ignore=shutil.ignore_patterns("target"))
    monkeypatch.setattr(kstreams_run, "SOURCE", source)
    monkeypatch.setattr(kstreams_run, "POM", source / "pom.xml")
    before = kstreams_run.source_hash()
    assert before == kstreams_run.source_hash()
    java = next((source / "src").rglob("Times.java"))
    java.write_text(java.read_text() + "\n")
    assert kstreams_run.source_hash() != before


def test_kstreams_is_a_part_with_a_title() -> None:
    assert "kstreams" in IMPLS and IMPLS.index("kstreams") < IMPLS.index("watchfloor")
    assert "Kafka Streams" in TITLES["kstreams"]

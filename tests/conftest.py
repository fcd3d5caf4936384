"""Shared fixtures: the real Kafka broker (started once per session) and fresh settings."""

from __future__ import annotations

import os

# WATCHFLOOR_TEST_PURE=1: the hot path from its source, not its compiled build
# (streams/native.py), chosen before anything imports it; `make test` runs the unit
# tests both ways.
if os.environ.get("WATCHFLOOR_TEST_PURE") == "1":
    from streams import native

    native.use_source()
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KAFKACTL = ROOT / "deploy" / "kafka" / "kafkactl"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def need(condition: bool, why: str) -> None:
    """Skip on a developer's machine, fail in CI: a missing service must never pass silently."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real Apache Kafka broker.

    ``WATCHFLOOR_TEST_BOOTSTRAP`` points the suite at a broker you run; otherwise the
    project's own broker is started on ``WATCHFLOOR_TEST_KAFKA_PORT`` (29092) with its
    own data directory and stopped at the end.
    """
    external = os.environ.get("WATCHFLOOR_TEST_BOOTSTRAP")
    if external:
        host, _, port = external.rpartition(":")
        need(_port_open(host, int(port)), f"no Kafka broker answers at {external}")
        yield external
        return
    port = int(os.environ.get("WATCHFLOOR_TEST_KAFKA_PORT", "29092"))
    env = dict(os.environ, KAFKA_PORT=str(port), KAFKA_SASL_PORT=str(port + 2))
    try:
        started = subprocess.run(
            [str(KAFKACTL), "start"], env=env, capture_output=True, text=True, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        need(False, f"the local Kafka broker could not be started: {exc}")
        raise
    need(started.returncode == 0, f"the local Kafka broker did not start:\n{started.stderr}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        if not os.environ.get("WATCHFLOOR_TEST_KEEP_BROKER"):
            subprocess.run([str(KAFKACTL), "stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def kafka_sasl(kafka_bootstrap: str) -> dict[str, str]:
    """The SASL_SSL listener of the same broker: address, CA file and a SCRAM user.

    The project's broker opens it two ports above the plain one, with the user created
    at format time (``kafkactl``: KAFKA_SASL_PORT, KAFKA_SASL_USERS). For a broker you
    run, set WATCHFLOOR_TEST_SASL_BOOTSTRAP, WATCHFLOOR_TEST_SASL_CAFILE,
    WATCHFLOOR_TEST_SASL_USERNAME and WATCHFLOOR_TEST_SASL_PASSWORD.
    """
    if os.environ.get("WATCHFLOOR_TEST_BOOTSTRAP"):
        bootstrap = os.environ.get("WATCHFLOOR_TEST_SASL_BOOTSTRAP", "")
        cafile = os.environ.get("WATCHFLOOR_TEST_SASL_CAFILE", "")
        user = os.environ.get("WATCHFLOOR_TEST_SASL_USERNAME", "watchfloor")
        password = os.environ.get("WATCHFLOOR_TEST_SASL_PASSWORD", "watchfloor-secret")
    else:
        port = int(kafka_bootstrap.rpartition(":")[2])
        bootstrap = f"127.0.0.1:{port + 2}"
        cafile = str(KAFKACTL.parent / ".run" / str(port) / "tls" / "ca.pem")
        user, password = "watchfloor", "watchfloor-secret"
    need(bool(bootstrap) and Path(cafile).is_file(),
         "no SASL_SSL listener is configured for the test broker")
    host, _, port_s = bootstrap.rpartition(":")
    need(_port_open(host, int(port_s)), f"nothing answers at the SASL_SSL listener {bootstrap}")
    return {"bootstrap": bootstrap, "cafile": cafile, "username": user, "password": password}


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic names and app ids, so tests never share state."""
    return uuid.uuid4().hex[:10]

"""The development broker: ``deploy/kafka/kafkactl`` run from Python, and its CLI commands."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess

from .errors import BrokerError
from .settings import PROJECT_ROOT, Settings

KAFKACTL = PROJECT_ROOT / "deploy" / "kafka" / "kafkactl"


def local_broker_port(settings: Settings) -> int | None:
    """The port of the configured broker when it is a single loopback address."""
    servers = settings.bootstrap_list
    if len(servers) != 1:
        return None
    host, _, port = servers[0].rpartition(":")
    if host not in {"127.0.0.1", "localhost"} or not port.isdigit():
        return None
    return int(port)


def missing_tools() -> str | None:
    """A sentence naming what the local broker needs and this machine lacks, or None."""
    if shutil.which("java") is None:
        return (
            "Java 17 or newer is needed to run the local Kafka broker and was not found; "
            "install it (apt-get install openjdk-17-jre-headless) or run the compose stack "
            "in deploy/compose/ (docs/deploy.md)."
        )
    jars = KAFKACTL.parent / ".cache"
    if shutil.which("mvn") is None and not any(jars.glob("*/libs/.complete")):
        return (
            "Maven is needed once to download the Kafka jars and was not found; install it "
            "(apt-get install maven) or run the compose stack in deploy/compose/ "
            "(docs/deploy.md)."
        )
    return None


def kafkactl(command: str, port: int, *, timeout: float = 900) -> str:
    """Run ``kafkactl <command>`` for the broker on ``port``; return its stdout."""
    problem = missing_tools()
    if problem:
        raise BrokerError(problem)
    env = dict(os.environ, KAFKA_PORT=str(port))
    done = subprocess.run(
        [str(KAFKACTL), command], env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise BrokerError(f"kafkactl {command} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _broker(args: argparse.Namespace, settings: Settings) -> int:
    port = local_broker_port(settings)
    if port is None:
        raise BrokerError(
            f"WATCHFLOOR_BOOTSTRAP_SERVERS={settings.bootstrap_servers} is not a local broker; "
            "kafkactl manages only 127.0.0.1:<port>."
        )
    out = kafkactl(args.action, port)
    if out:
        print(out)
    return 0


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from .kafka import ensure_topics

    created = ensure_topics(settings)
    for name in created:
        print(f"created {name} ({settings.partitions} partitions)")
    if not created:
        print("all topics exist")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("broker", help="start, stop or check the local Kafka broker")
    p.add_argument("action", choices=["start", "stop", "status", "reset", "fetch"])
    p.set_defaults(func=_broker)
    t = sub.add_parser("topics", help="create the source and dead-letter topics")
    t.add_argument("action", choices=["create"])
    t.set_defaults(func=_topics)

"""The local Kafka broker (``deploy/kafka/kafkactl``) and the topics Watchfloor reads and writes."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import time

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


def ensure_topics(settings: Settings, *, timeout: float = 60.0) -> list[str]:
    """Create the source and dead-letter topics if missing; return those created.

    The three source topics must share one partition count (a district's state lives
    with its partition number); an existing topic with another count is an error.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    from .kafka import check_connection, client_kwargs

    asyncio.run(check_connection(settings, timeout=timeout))
    names = [*settings.source_topics, settings.topic_deadletter]
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin = KafkaAdminClient(client_id="watchfloor-admin", **client_kwargs(settings))
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"Kafka at {settings.bootstrap_servers} does not answer: {exc}."
                ) from None
            time.sleep(1)
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(name, settings.partitions, settings.replication_factor)
            for name in names
            if name not in existing
        ]
        created = []
        for topic in wanted:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:
                raise BrokerError(
                    f"Topic {topic.name} does not exist and could not be created ({exc}); "
                    "create it with the same partition count as the others, or grant "
                    "this user CREATE on it (docs/security.md)."
                ) from None
        # A topic just created may show no partitions for a moment: ask again.
        while True:
            counts = {
                desc.get("name", desc.get("topic")): len(desc.get("partitions") or [])
                for desc in admin.describe_topics(list(settings.source_topics))
            }
            if all(counts.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for name, n in counts.items():
            if n != settings.partitions:
                raise BrokerError(
                    f"Topic {name} has {n} partitions but WATCHFLOOR_PARTITIONS is "
                    f"{settings.partitions}; the source topics must all have the same count."
                )
        return created
    finally:
        admin.close()


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

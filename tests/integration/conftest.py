"""Fixtures for tests against the real broker: a private cluster namespace and workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import Cluster, WorkerProcess


@pytest.fixture
def cluster(kafka_bootstrap: str) -> Cluster:
    """Fresh topics (4 partitions) and a fresh consumer group on the real broker."""
    c = Cluster(kafka_bootstrap)
    c.create_topics()
    return c


@pytest.fixture
def workers(cluster: Cluster, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers with ``workers(name="w1", **WATCHFLOOR_env)``; all stopped at the end."""
    started: list[WorkerProcess] = []

    def start(name: str = "w1", **env: str) -> WorkerProcess:
        w = WorkerProcess(cluster, tmp_path, name, **env).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()

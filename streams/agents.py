"""Faust agents and timers: thin loops that hand batches to the engine and keep the clock moving."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import memory
from .consumer import Batch

if TYPE_CHECKING:
    from .app import Watchfloor

log = logging.getLogger(__name__)

OVERDUE_TICK_SECONDS = 1.0
# Held journals are written at most this long after their flush interval ends.
STATE_FLUSH_CHECK_SECONDS = 0.25
LAG_SAMPLE_SECONDS = 5.0
MEMORY_RELEASE_SECONDS = 10.0
# /ready and HTTP ingest say 503 within about this plus the check's timeout (3 s) of
# losing the broker.
KAFKA_CHECK_SECONDS = 2.0


def register(wf: Watchfloor) -> None:
    app = wf.app

    @app.agent(wf.batches, name="watchfloor.count", concurrency=1)
    async def count(stream: Any) -> None:
        """Count each fetch of the source topics into the district states."""
        async for batch in stream:
            assert isinstance(batch, Batch)
            try:
                await wf.process_batch(batch)
            except Exception as exc:
                # Only Kafka refusing our writes gets here (bad records are dead
                # letters, engine faults are caught per record). The batch is not
                # acked; stop the worker so it restarts from the committed offsets
                # rather than stalling with a hole it can never commit past.
                log.exception("Could not write the results of a batch; stopping the worker.")
                await app.crash(exc)
            # Not held while the next fetch is awaited: its records (20,000 at most) would
            # stay in memory with nothing left to do.
            del batch

    @app.timer(OVERDUE_TICK_SECONDS, name="watchfloor.overdue")  # type: ignore[untyped-decorator]
    async def overdue() -> None:
        """Move hazards whose deadline passed into the overdue sets, event or no event."""
        wf.engine.tick()

    @app.timer(STATE_FLUSH_CHECK_SECONDS, name="watchfloor.flush")  # type: ignore[untyped-decorator]
    async def flush() -> None:
        """Write held journals once the flush interval passed, batch or no batch."""
        await wf.flush_if_due()

    @app.timer(LAG_SAMPLE_SECONDS, name="watchfloor.lag")  # type: ignore[untyped-decorator]
    async def lag() -> None:
        wf.sample_lag()

    @app.timer(KAFKA_CHECK_SECONDS, name="watchfloor.kafka")  # type: ignore[untyped-decorator]
    async def kafka() -> None:
        """Whether the producer can deliver now: readiness and ingest follow it."""
        await wf.check_kafka()

    @app.timer(MEMORY_RELEASE_SECONDS, name="watchfloor.memory")  # type: ignore[untyped-decorator]
    async def release() -> None:
        memory.release_memory()

    @app.timer(memory.FULL_COLLECTION_SECONDS, name="watchfloor.gc")  # type: ignore[untyped-decorator]
    async def collect() -> None:
        memory.full_collection()

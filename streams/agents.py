"""Faust agents and timers: thin loops that hand batches to the engine and keep the clock moving."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .consumer import Batch

if TYPE_CHECKING:
    from .app import Watchfloor

log = logging.getLogger(__name__)

OVERDUE_TICK_SECONDS = 1.0
LAG_SAMPLE_SECONDS = 5.0
MEMORY_RELEASE_SECONDS = 10.0


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

    @app.timer(OVERDUE_TICK_SECONDS, name="watchfloor.overdue")  # type: ignore[untyped-decorator]
    async def overdue() -> None:
        """Move hazards whose deadline passed into the overdue sets, event or no event."""
        wf.engine.tick()

    @app.timer(LAG_SAMPLE_SECONDS, name="watchfloor.lag")  # type: ignore[untyped-decorator]
    async def lag() -> None:
        wf.sample_lag()

    @app.timer(MEMORY_RELEASE_SECONDS, name="watchfloor.memory")  # type: ignore[untyped-decorator]
    async def memory() -> None:
        release_memory()


def _malloc_trim() -> Callable[[], None]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]

    def release() -> None:
        trim(0)

    return release


# Each batch frees its fetched records and parsed documents; glibc keeps the freed heap
# for reuse and the worker's RSS creeps up to the highest batch (measured: 460 MB
# instead of 340 MB at 1,000 districts). Handing it back every few seconds keeps the
# resident size flat at what the state needs.
release_memory = _malloc_trim()

"""The sustained load of the latency phase: simulator records produced at a fixed rate.

The records are generated before the phase starts (a Python generator does some
ten to twenty thousand records a second, which would starve the worker of CPU if it
ran alongside), then produced in generation order at ``rate`` records a second,
a tick every 10 ms. They are new lifecycles of the same 1,000 districts, stamped an
hour back from now (event times must be neither in the future nor older than the
districts' watermarks minus the grace), with the data set's shares of duplicate,
late and malformed records.

A higher rate for longer (50,000/s for 60 s: three million records) would take minutes
to generate, so such a phase generates a pool of a few seconds and produces it several
times (``Cycled``), each time with the run's tag in every id replaced by one of its own
length: each pass is a new set of lifecycles of the same shape, with the same truth.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams.simulator.config import SimConfig
from streams.simulator.files import load_city
from streams.simulator.generator import generate_events
from streams.simulator.produce import RecordProducer
from streams.simulator.records import SimRecord

from .dataset import JOB_REASONS, Dataset, Truth, truth_of_records

TICK_SECONDS = 0.01


def generate_live(ds: Dataset, rate: float, seconds: float, tag: str) -> list[SimRecord]:
    city = load_city(ds.reference_file, ds.load_districts)
    start = datetime.fromtimestamp(int(time.time() // 60 * 60) - 3600, UTC)
    spec = ds.spec
    config = SimConfig(
        start=start,
        rate=rate,
        seed=spec.seed + 1 + sum(map(ord, tag)),
        late_share=spec.late_share,
        duplicate_share=spec.duplicate_share,
        malformed_share=spec.malformed_share,
        malformed_reasons=JOB_REASONS,
        tag=tag,
        max_records=int(rate * seconds),
    )
    return list(generate_events(city, config))


class Cycled(Sequence[SimRecord]):
    """``cycles`` passes over ``pool``; pass c has the tag ``tag`` replaced in every id."""

    def __init__(self, pool: list[SimRecord], tag: str, cycles: int) -> None:
        self.pool = pool
        self.cycles = cycles
        # Ids read "<prefix>-<district>-<tag>-<n>": the hyphens keep the replacement in ids.
        self._old = f"-{tag}-".encode()
        self._new = [f"-{cycle_tag(tag, c)}-".encode() for c in range(cycles)]

    def __len__(self) -> int:
        return len(self.pool) * self.cycles

    def __getitem__(self, i: int) -> SimRecord:  # type: ignore[override]
        c, j = divmod(i, len(self.pool))
        rec = self.pool[j]
        if c == 0:
            return rec
        return rec._replace(value=rec.value.replace(self._old, self._new[c]))


def cycle_tag(tag: str, cycle: int) -> str:
    """The tag of pass ``cycle``: its last two characters replaced, its length kept."""
    return f"{tag[:-2]}{cycle:02d}" if cycle else tag


def live_truth(ds: Dataset, records: list[SimRecord]) -> Truth:
    return truth_of_records(records, ds.topics, frozenset(ds.codes))


@dataclass
class PacedResult:
    sent: int
    seconds: float
    max_behind_seconds: float  # worst lag of the producer behind its schedule

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.sent,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.sent / self.seconds, 1) if self.seconds else 0.0,
            "max_behind_seconds": round(self.max_behind_seconds, 3),
        }


async def produce_paced(
    ds: Dataset, records: Sequence[SimRecord], rate: float, start_at: float
) -> PacedResult:
    """Produce ``records`` at ``rate``/s from wall time ``start_at``; wait for every receipt."""
    producer = RecordProducer(ds.settings(), acks=1)
    await producer.start()
    n = len(records)
    i = 0
    behind = 0.0
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        t0 = time.monotonic()
        while i < n:
            elapsed = time.monotonic() - t0
            due = min(n, int(elapsed * rate) + 1)
            if i < due:
                behind = max(behind, elapsed - i / rate)
            while i < due:
                if producer.add(records[i]):
                    await producer.send_full()
                i += 1
            await producer.flush()
            await asyncio.sleep(TICK_SECONDS)
        seconds = time.monotonic() - t0
    finally:
        await producer.close()
    return PacedResult(i, seconds, behind)

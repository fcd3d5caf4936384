"""CPU per event of the counting path without Kafka: ``python -m tests.benchmarks.engine_cost``.

Simulator records for many districts go through ``Engine.process`` in fetch-sized
batches (validation, routing, counting, journals), then through ``StateStore.write``;
the script prints microseconds per event for each part, and with ``--profile`` the
functions that take the time. It isolates what the worker's own code costs from what
aiokafka and Faust cost, so an optimisation of the hot path can be judged in seconds.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from streams import memory
from streams.clock import FixedClock
from streams.engine import Engine
from streams.events import Stream
from streams.reference import Reference, load_reference
from streams.simulator.city import SimCity
from streams.simulator.config import SimConfig
from streams.simulator.files import load_city, write_reference
from streams.simulator.generator import generate_events
from streams.state import Limits
from streams.state_journal import StateStore
from streams.validation import EventValidator
from tests.support import Record

START = datetime(2026, 3, 2, tzinfo=UTC)
TOPICS = {"inc": Stream.INCIDENTS, "dis": Stream.DISPUTES, "pat": Stream.PATROLS}
TOPIC_OF = {Stream.INCIDENTS: "inc", Stream.DISPUTES: "dis", Stream.PATROLS: "pat"}


def records(city: SimCity, n: int, partitions: int, engine: Engine) -> list[tuple[str, int, Any]]:
    """The simulator's records as Kafka would hold them: per topic-partition, in order."""
    # As the benchmark's data set: lifecycles spread over days, so every kind flows.
    span = timedelta(days=14)
    cfg = SimConfig(start=START, end=START + span, rate=2.0 * n / span.total_seconds(), seed=7,
                    max_records=n, duplicate_share=0.002, late_share=0.002,
                    malformed_share=0.002)
    parts: dict[tuple[str, int], list[Record]] = {}
    for rec in generate_events(city, cfg):
        p = engine.partition_of(rec.key.decode()) if rec.key else 0
        lst = parts.setdefault((TOPIC_OF[rec.stream], p), [])
        lst.append(Record(len(lst), rec.value, key=rec.key))
    return [(t, p, recs) for (t, p), recs in parts.items()]


def batches(parts: list[tuple[str, int, Any]], size: int) -> list[list[tuple[str, int, Any]]]:
    """Fetch-sized batches: each takes up to ``size`` records across the topic-partitions."""
    pos = [0] * len(parts)
    out = []
    while any(pos[i] < len(p[2]) for i, p in enumerate(parts)):
        batch = []
        share = max(1, size // len(parts))
        for i, (t, p, recs) in enumerate(parts):
            chunk = recs[pos[i] : pos[i] + share]
            if chunk:
                batch.append((t, p, chunk))
                pos[i] += len(chunk)
        out.append(batch)
    return out


def city_engine(districts: int) -> tuple[Engine, SimCity, Reference]:
    """A synthetic city of ``districts`` and an engine for it, its clock 15 days in."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        ref_file = write_reference(Path(tmp) / "city.json", districts)
        reference = load_reference(ref_file)
        city = load_city(ref_file)
    clock = FixedClock(START + timedelta(days=15))
    engine = Engine(reference=reference, validator=EventValidator(reference, clock=clock),
                    topics=TOPICS, partitions=4, limits=Limits(), clock=clock)
    return engine, city, reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--districts", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=8000)
    parser.add_argument("--hold", type=int, default=1, metavar="N",
                        help="hold journals for N batches, then write them (the worker's "
                             "WATCHFLOOR_STATE_FLUSH_MS); 1: every batch")
    parser.add_argument("--rolling", action="store_true",
                        help="with --hold N: write the longest-held 1/N of the held journals "
                             "after each batch, as the worker's rolling flush does")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    engine, city, reference = city_engine(args.districts)
    parts = records(city, args.events, 4, engine)
    todo = batches(parts, args.batch)
    store = StateStore({}, reference.timezone, Limits())
    n = sum(len(r) for _, _, r in parts)
    # The worker's collector policy (streams.memory): without it, the collector's rescans
    # of the whole state would dominate what is measured.
    memory.configure_gc()
    prof = cProfile.Profile() if args.profile else None
    t_engine = t_store = 0.0
    if prof:
        prof.enable()
    # CPU time of this thread, not wall time: on a shared machine other processes would
    # otherwise move the figure by tens of percent.
    for i, batch in enumerate(todo, 1):
        t0 = time.thread_time()
        with memory.counting():  # as the worker counts a batch
            result = engine.process(batch)
        t1 = time.thread_time()
        store.stage(result.journals, i)
        with memory.counting():
            if i == len(todo):
                store.flush(engine.states)
            elif args.rolling:
                store.flush(engine.states, -(-store.staged // args.hold))
            elif i % args.hold == 0:
                store.flush(engine.states)
        memory.after_batch()
        t_store += time.thread_time() - t1
        t_engine += t1 - t0
    if prof:
        prof.disable()
    how = f"1/{args.hold} of them after each batch" if args.rolling else f"every {args.hold}"
    print(f"{n:,} records, {args.districts:,} districts, {len(todo)} batches,"
          f" journals written {how}: {store.records_written:,} records,"
          f" {sum(p.gen for p in store._progress.values()):,} snapshots")
    print(f"engine (validate, route, count): {t_engine / n * 1e6:6.2f} us/event")
    print(f"state journals and snapshots:    {t_store / n * 1e6:6.2f} us/event")
    print(f"together:                        {(t_engine + t_store) / n * 1e6:6.2f} us/event"
          f" of CPU = {n / (t_engine + t_store):,.0f} events per CPU-second")
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()

"""CPU of a ``/metrics`` render at 1,000 districts: ``python -m tests.benchmarks.scrape_cost``.

Simulator records go through ``Engine.process`` as in ``engine_cost``; then the
district collector renders the exposition: once cold, again with nothing changed (an
idle worker), and after each of a few more batches (a worker under load, where most
districts changed since the last scrape). It prints milliseconds per render and, with
``--profile``, the functions that take the time in the renders after a batch.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

from prometheus_client import REGISTRY, generate_latest

from streams import memory
from streams.exposition import DistrictCollector
from streams.web import gzip_body
from tests.benchmarks.engine_cost import TOPICS, batches, city_engine, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--districts", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--loaded", type=int, default=8, help="batches rendered after")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="tottime", help="pstats order: tottime, cumulative")
    args = parser.parse_args()
    engine, city, reference = city_engine(args.districts)
    todo = batches(records(city, args.events, 4, engine), args.batch)
    head, tail = todo[: -args.loaded], todo[-args.loaded :]
    # The worker's collector policy (streams.memory), as in engine_cost.
    memory.configure_gc()
    for batch in head:
        engine.process(batch)
        memory.after_batch()
    engine.tick()
    collector = DistrictCollector(lambda: engine.states, engine.clock.time, reference.work_safety,
                                  topics=TOPICS, partition_of=engine.partition_of)
    prof = cProfile.Profile() if args.profile else None

    def timed(profiled: bool = False) -> float:
        t = time.process_time()
        if prof and profiled:
            prof.enable()
        body = collector.render()
        if prof and profiled:
            prof.disable()
        took = time.process_time() - t
        timed.size = len(body)  # type: ignore[attr-defined]
        timed.body = body  # type: ignore[attr-defined]
        return took

    cold = timed()
    idle = [timed() for _ in range(5)]
    loaded = []
    for batch in tail:
        engine.process(batch)
        engine.tick()
        memory.after_batch()
        loaded.append(timed(profiled=True))
    print(f"{len(engine.states):,} districts, {timed.size / 1e6:.1f} MB of district text")  # type: ignore[attr-defined]
    print(f"cold render:   {cold * 1e3:7.1f} ms CPU")
    print(f"idle render:   {statistics.median(idle) * 1e3:7.1f} ms CPU (median of {len(idle)})")
    print(f"after a batch: {statistics.median(loaded) * 1e3:7.1f} ms CPU"
          f" (median of {len(loaded)} batches of {args.batch:,} records)")
    # What a scrape that asks for gzip (Prometheus does) adds: the whole text compressed.
    full = timed.body + generate_latest(REGISTRY)  # type: ignore[attr-defined]
    zipped = []
    for _ in range(5):
        t = time.process_time()
        packed = gzip_body(full)
        zipped.append(time.process_time() - t)
    print(f"gzip:          {statistics.median(zipped) * 1e3:7.1f} ms CPU"
          f" ({len(full) / 1e6:.1f} MB to {len(packed) / 1e6:.2f} MB, median of 5)")
    if prof:
        pstats.Stats(prof).sort_stats(args.sort).print_stats(30)


if __name__ == "__main__":
    main()

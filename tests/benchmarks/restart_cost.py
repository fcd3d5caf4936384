"""CPU of a worker's state rebuild without Kafka: ``python -m tests.benchmarks.restart_cost``.

Simulator records go through the engine and ``StateStore.write`` as in
``engine_cost``; the table they leave (journals and snapshots, as the changelog would
restore it) is then rebuilt with ``StateStore.load``, as after a crash, and again after
``StateStore.checkpoint`` (what a clean stop writes), and the rebuilt states are checked
against the live ones. Prints CPU seconds of each, and with ``--profile`` where it goes.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Any

from streams import memory
from streams.state import Limits
from streams.state_journal import StateStore
from tests.benchmarks.engine_cost import batches, city_engine, records


def _timed_load(store: StateStore, prof: cProfile.Profile | None) -> tuple[float, dict[str, Any]]:
    keys = list(store.table)
    if prof:
        prof.enable()
    t0 = time.process_time()
    with memory.collector_paused():  # as the worker rebuilds (Watchfloor.on_recovered)
        states = store.load(keys)
    took = time.process_time() - t0
    if prof:
        prof.disable()
    return took, states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--districts", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=8000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    engine, city, reference = city_engine(args.districts)
    parts = records(city, args.events, 4, engine)
    table: dict[str, bytes] = {}
    store = StateStore(table, reference.timezone, Limits())
    memory.configure_gc()
    for batch in batches(parts, args.batch):
        result = engine.process(batch)
        store.write(engine.states, result.journals)
        memory.after_batch()
    live = {d: st.to_snapshot() for d, st in engine.states.items()}
    print(
        f"{sum(len(r) for _, _, r in parts):,} records, {len(live):,} districts, "
        f"{len(table):,} table keys, {sum(len(v) for v in table.values()) / 1e6:.1f} MB"
    )

    for label, prepare in (("after a crash (journals)", None), ("after a clean stop", "stop")):
        if prepare == "stop":
            t0 = time.process_time()
            store.checkpoint(engine.states)
            print(f"  clean-stop checkpoint: {time.process_time() - t0:.3f} s CPU")
        prof = cProfile.Profile() if args.profile else None
        took, states = _timed_load(StateStore(table, reference.timezone, Limits()), prof)
        exact = {d: st.to_snapshot() for d, st in states.items()} == live
        print(
            f"load {label}: {took:.3f} s CPU, {len(states):,} districts, "
            f"{'equal to the live states' if exact else 'DIFFERENT from the live states'}"
        )
        if prof:
            pstats.Stats(prof).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()

"""Measure the simulator: events/s generated, and generated + produced to a real broker.

Not part of the default test run. Usage (a broker must be running)::

    KAFKA_PORT=33092 deploy/kafka/kafkactl start
    .venv/bin/python tests/benchmarks/simulator_rate.py --bootstrap 127.0.0.1:33092 \
        --districts 1000 --events 1000000

It writes a synthetic city of ``--districts`` districts, simulates the last ``--days``
days of it with enough intensity for ``--events`` records (duplicate, late and
malformed records included, as in a demo), and prints one JSON line per phase:
generation alone, then generation and producing together into fresh topics, with
every batch confirmed by the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from streams.settings import Settings
from streams.simulator.config import SimConfig
from streams.simulator.files import load_city, write_reference
from streams.simulator.generator import generate_events
from streams.simulator.produce import produce_in_workers, produce_records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--districts", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--share", type=float, default=0.002, help="late, duplicate, malformed each"
    )
    parser.add_argument("--workers", type=int, default=1, help="producing processes")
    parser.add_argument("--skip-generation-only", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        city_file = write_reference(Path(tmp) / "city.json", args.districts)
        city = load_city(city_file)
    # A fixed end, so that every run generates the same records.
    end = datetime(2026, 11, 1, tzinfo=UTC)
    span = timedelta(days=args.days)
    # Lifecycles take days to flow: ask for a little more than needed and cut at N.
    config = SimConfig(
        start=end - span,
        end=end,
        rate=1.5 * args.events / span.total_seconds(),
        seed=args.seed,
        late_share=args.share,
        duplicate_share=args.share,
        malformed_share=args.share,
        max_records=args.events,
    )

    if not args.skip_generation_only:
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        n = sum(1 for _ in generate_events(city, config))
        seconds = time.perf_counter() - t0
        report("generate", n, seconds, args, cpu_seconds=round(time.process_time() - cpu0, 2))

    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        bootstrap_servers=args.bootstrap,
        topic_incidents=f"bench-{tag}.incidents",
        topic_disputes=f"bench-{tag}.disputes",
        topic_patrols=f"bench-{tag}.patrols",
        partitions=args.partitions,
        reference_file=str(city_file),
    )
    t0 = time.perf_counter()
    if args.workers == 1:
        summary = asyncio.run(produce_records(generate_events(city, config), settings))
    else:
        summary = produce_in_workers(city, config, settings, args.workers)
    seconds = time.perf_counter() - t0
    report(
        "generate+produce", summary.delivered, seconds, args, workers=args.workers,
        topics=summary.topics,
    )  # fmt: skip
    if summary.delivered != summary.tally.total:
        print(f"only {summary.delivered} of {summary.tally.total} confirmed", file=sys.stderr)
        return 1
    return 0


def report(phase: str, n: int, seconds: float, args: argparse.Namespace, **extra: object) -> None:
    line = {
        "phase": phase,
        "events": n,
        "seconds": round(seconds, 2),
        "events_per_second": round(n / seconds),
        "districts": args.districts,
        "days": args.days,
        **extra,
    }
    print(orjson.dumps(line).decode(), flush=True)


if __name__ == "__main__":
    sys.exit(main())

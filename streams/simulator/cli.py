"""The ``watchfloor simulate`` commands: run, replay, scenario and reference."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from ..clock import SystemClock
from ..errors import SettingsError
from ..settings import PROJECT_ROOT, Settings
from .files import (
    load_city,
    read_records,
    scenario_file,
    scenario_names,
    write_records,
    write_reference,
    write_scenario,
)
from .generator import generate_events
from .live import (
    DEMO_BACKFILL,
    DEMO_DUPLICATE_SHARE,
    DEMO_LATE_SHARE,
    DEMO_MALFORMED_SHARE,
    DEMO_OVERDUE_DRILL,
    DEMO_RATE,
    live_config,
)
from .produce import Pacer, ProduceSummary, produce_in_workers, produce_records
from .records import SimRecord
from .retime import shifted
from .scenarios import SCENARIOS

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``2h``, ``7d``, ``1w``."""
    m = _DURATION.match(text.lower())
    if not m:
        raise SettingsError(f"{text!r} is not a duration (examples: 90s, 15m, 2h, 7d).")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def parse_when(text: str, now: datetime) -> datetime:
    """``now``, ``now-7d``, ``now+5m`` or an RFC 3339 time with an offset."""
    t = text.strip().lower()
    if t.startswith("now"):
        rest = t[3:].strip()
        if not rest:
            return now
        if rest[0] in "+-":
            delta = parse_duration(rest[1:])
            return now + delta if rest[0] == "+" else now - delta
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise SettingsError(
            f"{text!r} is not a time: use now, now-7d or an RFC 3339 time with an offset."
        )
    return when


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 0.5:
        raise argparse.ArgumentTypeError(f"a share is between 0 and 0.5, not {text}")
    return value


def register_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sim = subparsers.add_parser(
        "simulate",
        help="produce realistic, replayed or scenario events to Kafka (or JSON lines)",
        description="Simulated police and community systems: a live city, a recorded file, "
        "or one of the seed document's scenarios.",
    )
    sub = sim.add_subparsers(dest="simulate_command", metavar="WHAT")
    sub.required = True

    run = sub.add_parser("run", help="a live city: backfill of recent history, then paced events")
    run.add_argument(
        "--rate",
        type=float,
        default=DEMO_RATE,
        help=f"records/s of the city, history and live alike (default {DEMO_RATE}); the "
        "history is capped at about 600,000 records, so a higher rate makes the live city "
        "busier than its past",
    )
    run.add_argument(
        "--districts", type=int, default=None, help="the first N districts of the reference"
    )
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--duration", type=parse_duration, default=None, help="e.g. 10m (default: forever)"
    )
    run.add_argument(
        "--backfill", type=parse_duration, default=DEMO_BACKFILL,
        help="history produced at once before the live stream (default 30d; 0 for none)",
    )  # fmt: skip
    run.add_argument("--late-share", type=_share, default=DEMO_LATE_SHARE)
    run.add_argument("--duplicate-share", type=_share, default=DEMO_DUPLICATE_SHARE)
    run.add_argument("--malformed-share", type=_share, default=DEMO_MALFORMED_SHARE)
    run.add_argument("--overdue-drill", type=int, default=DEMO_OVERDUE_DRILL,
                     help="hazards that go overdue in the first minutes")  # fmt: skip
    run.add_argument("--max-records", type=int, default=None)
    run.add_argument(
        "--start", default="now", help="simulated start of the live part (with --output)"
    )
    run.add_argument("--tag", default=None, help="id tag (default: from the start time)")
    run.add_argument("--output", default=None, help="write JSON lines here instead of producing")
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="producing processes, each with a share of the districts (for high rates)",
    )
    run.set_defaults(func=_cmd_run)

    rep = sub.add_parser("replay", help="replay a JSON-lines file")
    rep.add_argument("file")
    rep.add_argument(
        "--speed", type=float, default=1.0, help="speed factor; 0: as fast as possible"
    )
    rep.add_argument("--shift-to", default=None, help="move every time so the first event is at "
                     "this time: now, now-7d or RFC 3339")  # fmt: skip
    rep.add_argument("--output", default=None, help="write JSON lines here instead of producing")
    rep.set_defaults(func=_cmd_replay)

    sc = sub.add_parser("scenario", help="produce or write one of seeds/scenarios")
    sc.add_argument("name", help="scenario name, or 'list'")
    sc.add_argument("--speed", type=float, default=0.0, help="speed factor; 0 (default): at once")
    sc.add_argument(
        "--shift-to", default=None, help="now, now-7d or RFC 3339 (default: as recorded)"
    )
    sc.add_argument("--output", default=None, help="write JSON lines here instead of producing")
    sc.add_argument(
        "--rebuild",
        action="store_true",
        help="rewrite seeds/scenarios/NAME/ (events and expected figures) from the builder",
    )
    sc.set_defaults(func=_cmd_scenario)

    ref = sub.add_parser("reference", help="write a synthetic city for benchmarks")
    ref.add_argument("--districts", type=int, required=True)
    ref.add_argument("--output", required=True, help="city.json path (categories.json goes beside)")
    ref.set_defaults(func=_cmd_reference)


def _print_summary(label: str, data: Mapping[str, Any]) -> None:
    print(orjson.dumps({"simulate": label, **data}).decode(), file=sys.stderr)


def _progress(summary: ProduceSummary) -> None:
    print(
        f"simulate: {summary.tally.total} sent, {summary.delivered} confirmed, "
        f"{summary.tally.total / max(summary.seconds, 1e-9):.0f}/s",
        file=sys.stderr,
    )


def _produce_cli(
    records: Iterable[SimRecord], settings: Settings, pacer: Pacer | None, label: str
) -> int:
    async def main() -> ProduceSummary:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        return await produce_records(
            records, settings, pacer=pacer, stop_event=stop, progress=_progress
        )

    summary = asyncio.run(main())
    _print_summary(label, summary.to_dict())
    return 0


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    city = load_city(settings.reference_file, args.districts)
    clock_now = SystemClock().now()
    now = parse_when(args.start, clock_now)
    if args.output is not None and args.duration is None and args.max_records is None:
        raise SettingsError("Writing to a file needs --duration or --max-records.")
    config = live_config(
        now,
        rate=args.rate,
        seed=args.seed,
        backfill=args.backfill,
        duration=args.duration,
        late_share=args.late_share,
        duplicate_share=args.duplicate_share,
        malformed_share=args.malformed_share,
        overdue_drill=args.overdue_drill,
        tag=args.tag,
        max_records=args.max_records,
    )
    records = generate_events(city, config)
    if args.output is not None:
        _print_summary("run", write_records(records, args.output).to_dict())
        return 0
    if now != clock_now:
        raise SettingsError("--start is for --output; a live run starts now.")
    if args.workers > 1:
        stopping = {"now": False}

        def on_signal(signum: int, frame: object) -> None:
            stopping["now"] = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        summary = produce_in_workers(
            city, config, settings, args.workers, live_from=now, stop=lambda: stopping["now"]
        )
        _print_summary("run", summary.to_dict())
        return 0
    pacer = Pacer(now.timestamp(), time.monotonic(), 1.0)
    return _produce_cli(records, settings, pacer, "run")


def _replay_records(path: Path | str, shift_to: str | None) -> Iterator[SimRecord]:
    records: Iterator[SimRecord] = read_records(path)
    if shift_to is not None:
        first = parse_when(shift_to, SystemClock().now()).timestamp()
        records = shifted(records, first)
    return records


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    records = _replay_records(args.file, args.shift_to)
    if args.output is not None:
        _print_summary("replay", write_records(records, args.output).to_dict())
        return 0
    return _produce_paced(records, settings, args.speed, "replay")


def _produce_paced(
    records: Iterator[SimRecord], settings: Settings, speed: float, label: str
) -> int:
    first = next(records, None)
    if first is None:
        raise SettingsError("There are no records to produce.")
    pacer = Pacer(first.at, time.monotonic(), speed)

    def chain() -> Iterator[SimRecord]:
        yield first
        yield from records

    return _produce_cli(chain(), settings, pacer, label)


def _cmd_scenario(args: argparse.Namespace, settings: Settings) -> int:
    if args.name == "list":
        for name in scenario_names():
            print(name)
        return 0
    if args.rebuild:
        city = load_city(PROJECT_ROOT / "seeds" / "reference" / "city.json")
        names = list(SCENARIOS) if args.name == "all" else [args.name]
        for name in names:
            print(f"simulate: wrote {write_scenario(name, city)}", file=sys.stderr)
        return 0
    records = _replay_records(scenario_file(args.name), args.shift_to)
    if args.output is not None:
        _print_summary("scenario", write_records(records, args.output).to_dict())
        return 0
    return _produce_paced(records, settings, args.speed, f"scenario {args.name}")


def _cmd_reference(args: argparse.Namespace, settings: Settings) -> int:
    path = write_reference(args.output, args.districts)
    print(f"simulate: wrote {args.districts} districts to {path}", file=sys.stderr)
    return 0

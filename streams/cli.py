"""The ``watchfloor`` command: one sub-command per job, each in the module that does it."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .errors import WatchfloorError
from .settings import Settings

# Each module here defines ``register_cli(subparsers)``, which adds its sub-commands and
# sets ``func(args, settings) -> int`` on them. Kept as names so that ``watchfloor
# --help`` does not import Faust.
COMMAND_MODULES: tuple[str, ...] = (
    "streams.worker",
    "streams.demo",
    "streams.localbroker",
    "streams.simulator.cli",
    "streams.publish",
    "streams.dlq",
    "streams.ingest_tokens",
    "streams.bulletins",
)

Handler = Callable[[argparse.Namespace, Settings], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watchfloor",
        description="Per-district public-safety figures from Kafka, for operators and on-call.",
    )
    parser.add_argument("--version", action="version", version=f"watchfloor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        # Inside the try: an argument's type check (a duration, a time) raises
        # Watchfloor's own errors, which argparse would let through as a traceback.
        args = parser.parse_args(argv)
        func: Handler = args.func
        settings = Settings.from_env()
        return func(args, settings)
    except WatchfloorError as exc:
        print(f"watchfloor: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

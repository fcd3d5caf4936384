"""``watchfloor worker``: run one Faust worker until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from .logs import logging_config
from .memory import configure_gc
from .settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .app import Watchfloor
    from .clock import Clock

log = logging.getLogger(__name__)


def build_worker(
    settings: Settings,
    *,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
) -> Watchfloor:
    """A worker with its agents, timers and web views registered, ready for Faust to run."""
    from . import agents, web
    from .app import Watchfloor

    wf = Watchfloor(settings, clock=clock, registry=registry)
    agents.register(wf)
    web.register(wf)
    web.register_work_safety(wf)
    return wf


def run_worker(settings: Settings) -> int:
    """Start a worker in this process and block until it stops; SIGTERM stops it cleanly."""
    from faust.worker import Worker

    from .kafka import ensure_topics
    from .web import serve_metrics_port

    configure_gc()
    # Before Faust starts: a refused password or an unknown CA becomes one sentence and
    # exit status 2 here, instead of retries and tracebacks there (ensure_topics checks
    # the connection first). Missing topics would leave the worker idle with nothing
    # assigned, so they are created with the configured partitions.
    for name in ensure_topics(settings):
        log.info("Created topic %s with %d partitions", name, settings.partitions)
    wf = build_worker(settings)
    if settings.metrics_port and settings.metrics_port != settings.web_port:

        @wf.app.task  # type: ignore[untyped-decorator]
        async def metrics_listener() -> None:
            await serve_metrics_port(wf)

    log.info("Starting worker with %r", settings)
    worker = Worker(
        wf.app,
        loglevel=settings.log_level,
        logging_config=logging_config(settings),
        quiet=True,
        redirect_stdouts=False,
        override_logging=True,
    )
    # mode's Worker handles SIGTERM/SIGINT: it stops the app, which commits the
    # offsets of what was processed and leaves the consumer group.
    worker.execute_from_commandline()
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    overrides: dict[str, Any] = {}
    if args.web_port is not None:
        overrides["web_port"] = args.web_port
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    return run_worker(settings.replace(**overrides) if overrides else settings)


def register_cli(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("worker", help="run a worker (settings from WATCHFLOOR_* variables)")
    p.add_argument(
        "--web-port",
        type=int,
        default=None,
        help="override WATCHFLOOR_WEB_PORT (metrics, health, API)",
    )
    p.add_argument("--data-dir", default=None, help="override WATCHFLOOR_DATA_DIR")
    p.set_defaults(func=_worker)

"""``watchfloor worker``: run one Faust worker until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from .logs import logging_config
from .memory import configure_gc, one_heap
from .settings import Settings, drop_variables, variables_set

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .app import Watchfloor
    from .clock import Clock

log = logging.getLogger(__name__)

# Variables Faust and mode read when they are imported, under both of Faust's prefixes
# (faust/types/_env.py, faust/__init__.py): they would set defaults, the event loop and
# debug mode behind Watchfloor's settings.
FAUST_IMPORT_VARIABLES = tuple(
    prefix + name
    for prefix in ("F_", "FAUST_")
    for name in (
        "DEBUG",
        "WORKDIR",
        "DATADIR",
        "BLOCKING_TIMEOUT",
        "FORCE_BLOCKING_TIMEOUT",
        "CONSOLE_PORT",
        "STRICT",
        "WEB_PORT",
        "F_WEB_BIND",
        "WEB_TRANSPORT",
        "LOOP",
    )
)
# Exit status when the worker had to leave without a clean stop (Kafka unreachable).
EXIT_FORCED = 70


def build_worker(
    settings: Settings,
    *,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
) -> Watchfloor:
    """A worker with its agents, timers and web views registered, ready for Faust to run."""
    from . import agents, centre, web
    from .app import Watchfloor

    wf = Watchfloor(settings, clock=clock, registry=registry)
    agents.register(wf)
    web.register(wf)
    centre.register(wf)
    web.register_work_safety(wf)
    return wf


def faust_setting_variables() -> list[str]:
    """The plain variables Faust's settings would read (WEB_PORT, APP_DATADIR, ...)."""
    import faust

    return sorted({p.env_name for p in faust.Settings.SETTINGS.values() if p.env_name})


def run_worker(settings: Settings) -> int:
    """Start a worker in this process and block until it stops; SIGTERM stops it cleanly."""
    one_heap()
    # Before Faust is imported: it reads these at import time.
    ignored = drop_variables(FAUST_IMPORT_VARIABLES)
    from faust.worker import Worker

    from .kafka import ensure_topics
    from .web import serve_metrics_port

    # Faust's own settings are built with an empty environment (streams/app.py); these
    # are only named in the log, so that an operator who set one knows it did nothing.
    ignored += variables_set(faust_setting_variables())
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

    class WatchfloorWorker(Worker):
        """Faust's worker with a drain before stopping and a deadline on the stop."""

        _stopping = False
        _checkpointing: asyncio.Task[None] | None = None

        async def on_execute(self) -> None:
            await super().on_execute()
            # Logging is configured from here on (mode sets it up just before).
            log.info("Starting worker with %r", settings)
            if ignored:
                log.warning(
                    "Ignoring %s: Faust's own variables do nothing here; Watchfloor reads "
                    "only WATCHFLOOR_* (docs/deploy.md).",
                    ", ".join(sorted(ignored)),
                )

        def _on_sigterm(self) -> None:
            self._shut_down("SIGTERM", settings.shutdown_drain_seconds, super()._on_sigterm)

        def _on_sigint(self) -> None:
            self._shut_down("SIGINT", 0.0, super()._on_sigint)

        def _shut_down(self, name: str, drain: float, stop: Any) -> None:
            if self._stopping:
                stop()  # a second signal: no more waiting
                return
            self._stopping = True
            wf.begin_drain()
            deadline = drain + settings.shutdown_timeout
            watchdog = threading.Timer(deadline, _force_exit, args=(name, deadline))
            watchdog.daemon = True
            watchdog.start()
            if drain > 0:
                log.info(
                    "%s: /ready answers 503 for %gs, then the worker stops (at the latest "
                    "%gs from now).",
                    name,
                    drain,
                    deadline,
                )
            self.loop.call_later(drain, self._stop_after_checkpoint, stop)

        def _stop_after_checkpoint(self, stop: Any) -> None:
            self._checkpointing = self.loop.create_task(self._checkpoint(stop))

        async def _checkpoint(self, stop: Any) -> None:
            # Bounded: a batch stuck on an unreachable broker holds the batch lock.
            timeout = max(1.0, settings.shutdown_timeout / 2)
            try:
                await asyncio.wait_for(wf.checkpoint(), timeout)
            except Exception:  # the journals hold everything; only the next start is slower
                log.exception("Could not snapshot the districts before stopping.")
            stop()

    worker = WatchfloorWorker(
        wf.app,
        loglevel=settings.log_level,
        logging_config=logging_config(settings),
        quiet=True,
        redirect_stdouts=False,
        override_logging=True,
        debug=False,
    )
    # mode's Worker handles SIGTERM/SIGINT: it stops the app, which commits the
    # offsets of what was processed and leaves the consumer group.
    worker.execute_from_commandline()
    return 0


def _force_exit(name: str, deadline: float) -> None:
    """The stop did not finish in time (Kafka gone): leave now, as a crash would.

    Nothing is lost: offsets not committed are read again by the partitions' next
    owner, and the state's evidence keeps them from counting twice.
    """
    log.error(
        "The worker did not stop within %gs of %s (Kafka unreachable?); exiting now. "
        "Uncommitted records are read again by the next owner of their partitions.",
        deadline,
        name,
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_FORCED)


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

"""Logging set-up: plain lines for people, one JSON object per line for log pipelines."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from .settings import Settings

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...extra}``; exceptions as text."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class RepeatFilter(logging.Filter):
    """Lets the first of a run of like warnings through, then at most one a window, counted.

    While Kafka is away its client libraries log the same few errors many times a second
    (the broker outage probe counted 6,214 ERROR lines in two minutes). The first line
    says what happened; later ones of the same logger, level and message template come
    at most once per ``window`` seconds, saying how many were left out.
    """

    MAX_KEYS = 1000  # messages built with f-strings have no template; keep the map small

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self._runs: dict[tuple[str, int, str], list[float]] = {}  # key -> [since, left out]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        run = self._runs.get(key)
        if run is not None and now - run[0] < self.window:
            run[1] += 1
            return False
        if len(self._runs) >= self.MAX_KEYS:
            self._runs = {k: v for k, v in self._runs.items() if now - v[0] < self.window}
            if len(self._runs) >= self.MAX_KEYS:
                self._runs.clear()
        since, left_out = (run[0], int(run[1])) if run is not None else (now, 0)
        self._runs[key] = [now, 0]
        if left_out:
            note = f" [{left_out} more like this in the last {now - since:.0f}s were not logged]"
            record.msg = str(record.msg) + note.replace("%", "%%")
        return True


class ClientFaultFilter(logging.Filter):
    """A malformed HTTP request is the client's fault: one WARNING line, no traceback.

    aiohttp answers it 400 itself and logs it as an ERROR with a traceback, so anyone who
    can reach the port could fill the log with tracebacks (RepeatFilter then bounds the
    rate).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "aiohttp.server" or not record.exc_info:
            return True
        exc = record.exc_info[1]
        if exc is None or not _is_client_fault(exc):
            return True
        code = getattr(exc, "code", 400)
        reason = (getattr(exc, "message", "") or type(exc).__name__).strip().splitlines()
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "A malformed HTTP request was answered %s: %s"
        record.args = (code, reason[0] if reason else type(exc).__name__)
        record.exc_info, record.exc_text = None, None
        return True


def _is_client_fault(exc: BaseException) -> bool:
    try:
        from aiohttp.http_exceptions import HttpProcessingError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, HttpProcessingError) and 400 <= int(getattr(exc, "code", 400)) < 500


def logging_config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the worker (Faust applies it at start)."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter}
        if settings.log_json
        else {"format": "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {
            "client_faults": {"()": ClientFaultFilter},
            "repeats": {"()": RepeatFilter},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["client_faults", "repeats"],
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"handlers": ["default"], "level": settings.log_level.upper()},
    }

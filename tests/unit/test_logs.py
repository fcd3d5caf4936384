"""Log set-up: a run of like warnings is cut to one line a window, with a count."""

from __future__ import annotations

import logging
from typing import Any

from streams.logs import RepeatFilter


def record(msg: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka") -> Any:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeats_are_cut_and_counted() -> None:
    now = [0.0]
    f = RepeatFilter(window=60, clock=lambda: now[0])
    template = "Unable connect to node with id %s: %s"
    assert f.filter(record(template, 1, "refused"))
    passed = 0
    for i in range(1000):
        now[0] = i * 0.05
        passed += f.filter(record(template, 1, "refused"))
    assert passed == 0
    now[0] = 61.0
    last = record(template, 1, "refused")
    assert f.filter(last)
    assert "[1000 more like this in the last 61s were not logged]" in last.getMessage()
    # Other messages, other loggers and INFO lines are not held back by that run.
    assert f.filter(record("Unable to update metadata from %s", [1]))
    assert f.filter(record(template, 1, "refused", name="other"))
    assert all(f.filter(record("info %d", i, level=logging.INFO)) for i in range(5))


def test_the_map_of_runs_stays_small() -> None:
    f = RepeatFilter(window=60, clock=lambda: 0.0)
    for i in range(5000):
        f.filter(record(f"an f-string message {i}"))
    assert len(f._runs) <= RepeatFilter.MAX_KEYS


def test_a_malformed_http_request_is_one_warning_without_a_traceback() -> None:
    import sys

    from aiohttp.http_exceptions import BadHttpMessage, TransferEncodingError

    from streams.logs import ClientFaultFilter

    f = ClientFaultFilter()
    for exc in (BadHttpMessage("Invalid character in chunk size:\n\n  b'zz'"),
                TransferEncodingError("Not enough data to satisfy transfer length header.")):
        try:
            raise exc
        except BadHttpMessage:
            info = sys.exc_info()
        rec = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1,
                                "Error handling request from %s", ("127.0.0.1",), info)
        assert f.filter(rec)
        assert rec.levelname == "WARNING" and rec.exc_info is None
        assert rec.getMessage().startswith("A malformed HTTP request was answered 400: ")
        assert "\n" not in rec.getMessage()
    # Our own errors, and aiohttp's other ones, keep their traceback.
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        info = sys.exc_info()
    rec = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "x", (), info)
    assert f.filter(rec) and rec.exc_info is info and rec.levelno == logging.ERROR

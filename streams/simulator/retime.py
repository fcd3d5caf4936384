"""Records moved in time: every timestamp shifted, or mapped onto a compressed clock."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

import orjson

from .records import SimRecord

_TIME_FIELDS = ("deadline", "new_deadline", "started_at", "ended_at")


def shift_record(rec: SimRecord, seconds: int) -> SimRecord:
    """The record moved ``seconds`` later: publish time and every timestamp inside.

    Offsets are kept, and so are naive times (a ``naive_time`` record stays one). The
    times of a ``time_out_of_range`` record stay where they are: shifted, they could
    fall in range.
    """
    delta = timedelta(seconds=seconds)

    def text(value: Any) -> Any:
        when = _time_of(value)
        return value if when is None else (when + delta).isoformat()

    return _rewrite(rec, lambda t: t + seconds, text)


def retime_record(rec: SimRecord, to: Callable[[float], float]) -> SimRecord:
    """The record with every time mapped by ``to`` (POSIX seconds to POSIX seconds).

    For replays that compress a scenario's clock: ``to`` must be increasing, so that
    order (and every "deadline after found") survives. Publish time, event time and the
    time fields of ``data`` are mapped; offsets are kept. Naive times and the times of
    a ``time_out_of_range`` record are left as they are, as :func:`shift_record` does.
    """

    def text(value: Any) -> Any:
        when = _time_of(value)
        if when is None or when.tzinfo is None:
            return value
        return datetime.fromtimestamp(to(when.timestamp()), when.tzinfo).isoformat()

    return _rewrite(rec, to, text)


def shifted(records: Iterable[SimRecord], first_at: float) -> Iterator[SimRecord]:
    """The records moved in time so that the first one is at ``first_at`` (whole seconds)."""
    delta: int | None = None
    for rec in records:
        if delta is None:
            delta = round(first_at - rec.at)
        yield shift_record(rec, delta) if delta else rec


def _rewrite(
    rec: SimRecord, move: Callable[[float], float], text: Callable[[Any], Any]
) -> SimRecord:
    """The record with its times moved by ``move``, and its time texts by ``text``."""
    at = move(rec.at)
    if rec.reason == "time_out_of_range" or rec.value[:1] != b"{":
        return rec._replace(at=at)
    try:
        doc = orjson.loads(rec.value)
    except orjson.JSONDecodeError:
        return rec._replace(at=at)
    if not isinstance(doc, dict):
        return rec._replace(at=at)
    doc["time"] = text(doc.get("time"))
    data = doc.get("data")
    if isinstance(data, dict):
        for name in _TIME_FIELDS:
            if name in data:
                data[name] = text(data[name])
    ts = move(rec.ts) if rec.ts is not None else None
    return rec._replace(at=at, value=orjson.dumps(doc), ts=ts)


def _time_of(value: Any) -> datetime | None:
    """The time a field's value spells, or None when it is not a time."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None

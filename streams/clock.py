"""Clocks: the wall clock for production, a settable one for tests."""

from __future__ import annotations

import time as _time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the counting logic asks of time; always tz-aware."""

    def now(self) -> datetime: ...

    def time(self) -> float: ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def time(self) -> float:
        return _time.time()


class FixedClock:
    """A clock that moves only when told to; tests use fixed epochs with it."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs a tz-aware datetime.")
        self._ts = start.timestamp()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._ts, UTC)

    def time(self) -> float:
        return self._ts

    def advance(self, seconds: float | timedelta) -> None:
        self._ts += seconds.total_seconds() if isinstance(seconds, timedelta) else seconds

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("FixedClock needs a tz-aware datetime.")
        self._ts = when.timestamp()

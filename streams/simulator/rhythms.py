"""Local time and the day/night rhythm: when, in the city's own hours, things happen."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

HOUR = 3600
DAY = 86400


class LocalTime:
    """Local-time arithmetic for one zone, fast.

    ``datetime.isoformat`` with a ZoneInfo costs a few microseconds; at tens of
    thousands of events a second the generator formats its timestamps itself. A zone
    whose offset has not changed since 2000 and will not change before 2100 by its
    current rules (Asia/Shanghai) takes a fixed-offset path; others cache offsets by
    hour.
    """

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._offsets: dict[int, tuple[int, str]] = {}
        self._dates: dict[int, str] = {}
        self._minutes = [f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
        self._seconds = [f"{s:02d}" for s in range(60)]
        probes = {
            self._lookup(datetime(year, month, 1, tzinfo=UTC).timestamp())
            for year in range(2000, 2100)
            for month in (1, 4, 7, 10)
        }
        self.fixed: tuple[int, str] | None = probes.pop() if len(probes) == 1 else None

    def _lookup(self, ts: float) -> tuple[int, str]:
        delta = datetime.fromtimestamp(ts, UTC).astimezone(self.tz).utcoffset()
        seconds = int(delta.total_seconds()) if delta is not None else 0
        sign = "+" if seconds >= 0 else "-"
        hh, mm = divmod(abs(seconds) // 60, 60)
        return seconds, f"{sign}{hh:02d}:{mm:02d}"

    def _offset(self, ts: float) -> tuple[int, str]:
        if self.fixed is not None:
            return self.fixed
        hour = int(ts // HOUR)
        got = self._offsets.get(hour)
        if got is None:
            got = self._offsets[hour] = self._lookup(hour * HOUR)
        return got

    def offset(self, ts: float) -> int:
        return self._offset(ts)[0]

    def hour(self, ts: float) -> int:
        off = self.fixed[0] if self.fixed is not None else self._offset(ts)[0]
        return int(((ts + off) % DAY) // HOUR)

    def next_hour(self, ts: float) -> float:
        """The next full local hour after ``ts``."""
        off = self._offset(ts)[0]
        return ts - (ts + off) % HOUR + HOUR

    def midnight(self, ts: float) -> int:
        """POSIX time of the local midnight that starts the day of ``ts``."""
        off = self._offset(ts)[0]
        local = int(ts) + off
        day = local - local % DAY
        if self.fixed is not None:
            return day - off
        # The offset at midnight, which a DST change since then may make different.
        return day - self._offset(day - off)[0]

    def at_hour(self, ts: float, days: int, hour: float) -> int:
        """``hour`` o'clock local, ``days`` days after the day of ``ts``."""
        midnight = self.midnight(ts)
        base = midnight + days * DAY + int(hour * HOUR)
        if self.fixed is not None:
            return base
        # Re-read the offset at the target: a DST change in between moves wall time.
        return base + self.offset(midnight) - self.offset(base)

    def format(self, ts: int) -> str:
        off, text = self.fixed if self.fixed is not None else self._offset(ts)
        day, sod = divmod(int(ts) + off, DAY)
        prefix = self._dates.get(day)
        if prefix is None:
            prefix = self._dates[day] = (datetime(1970, 1, 1) + timedelta(days=day)).strftime(
                "%Y-%m-%dT"
            )
        return prefix + self._minutes[sod // 60] + self._seconds[sod % 60] + text


def _rhythm(values: Sequence[float]) -> tuple[float, ...]:
    """Normalise 24 hourly weights to a mean of 1, so rates are daily averages."""
    mean = sum(values) / len(values)
    return tuple(v / mean for v in values)


# Local hour 0..23. Crime peaks in the evening; reports and inspections follow office
# hours; patrols run day and night, thinner at shift changes.
RHYTHM_INCIDENTS = _rhythm(
    [0.9, 0.7, 0.5, 0.4, 0.3, 0.3, 0.4, 0.6, 0.9, 1.0, 1.0, 1.1,
     1.1, 1.0, 1.0, 1.1, 1.2, 1.4, 1.6, 1.7, 1.7, 1.6, 1.4, 1.1]
)  # fmt: skip
RHYTHM_DISPUTES = _rhythm(
    [0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.5, 1.2, 1.8, 1.9, 1.8,
     1.3, 1.5, 1.8, 1.8, 1.7, 1.5, 1.2, 1.0, 0.8, 0.6, 0.4, 0.3]
)  # fmt: skip
RHYTHM_HAZARDS = _rhythm(
    [0.1, 0.05, 0.05, 0.05, 0.05, 0.1, 0.2, 0.6, 1.8, 2.4, 2.5, 2.2,
     1.2, 1.8, 2.4, 2.4, 2.2, 1.6, 0.8, 0.4, 0.3, 0.2, 0.15, 0.1]
)  # fmt: skip
RHYTHM_PATROLS = _rhythm(
    [1.1, 1.1, 1.0, 1.0, 0.9, 0.6, 0.4, 0.5, 1.0, 1.1, 1.1, 1.0,
     0.9, 1.0, 1.1, 1.1, 1.0, 0.8, 0.5, 0.6, 1.1, 1.2, 1.2, 1.1]
)  # fmt: skip

"""What to simulate: the period, rate, seed and shares of bad records of one run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from ..errors import SettingsError
from .records import MALFORMED_REASONS, MISROUTED
from .rhythms import HOUR


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. Every time is tz-aware; nothing here reads a clock."""

    start: datetime
    end: datetime | None = None  # None: forever
    rate: float = 1.0  # records per second, all intents together, once lifecycles flow
    seed: int = 0
    late_share: float = 0.0
    duplicate_share: float = 0.0
    malformed_share: float = 0.0
    malformed_reasons: tuple[str, ...] = MALFORMED_REASONS
    grace_seconds: float = 24 * HOUR
    # Hazards found at ``drill_at`` (default: start) with deadlines a few minutes later
    # and never rectified, so that the overdue alert can be seen in a demo.
    overdue_drill: int = 0
    drill_at: datetime | None = None
    tag: str = ""  # put into every subject id, so that two runs never share ids
    max_records: int | None = None
    # Before ``live_from``, lifecycles start at ``history_rate`` instead of ``rate``: a
    # backfill of days at a live rate would be millions of records to read first.
    live_from: datetime | None = None
    history_rate: float | None = None
    # Work-safety accidents per district and day. Drawn from a random stream of their own
    # and never duplicated, delayed or broken, so the other records stay as they were.
    accidents_per_district_day: float = 0.2

    def check(self) -> None:
        if self.start.tzinfo is None or (self.end is not None and self.end.tzinfo is None):
            raise SettingsError("The simulation's start and end must carry a UTC offset.")
        if self.end is not None and self.end <= self.start:
            raise SettingsError("The simulation must end after it starts.")
        if not self.rate > 0 or not math.isfinite(self.rate):
            raise SettingsError(f"The rate must be a positive number of events/s, not {self.rate}.")
        shares = (self.late_share, self.duplicate_share, self.malformed_share)
        if any(s < 0 for s in shares) or sum(shares) > 0.5:
            raise SettingsError(
                "Late, duplicate and malformed shares must be between 0 and 1 and add up to "
                "at most 0.5."
            )
        unknown = set(self.malformed_reasons) - {*MALFORMED_REASONS, MISROUTED}
        if unknown:
            raise SettingsError(f"Unknown malformed reasons: {', '.join(sorted(unknown))}.")
        if self.malformed_share > 0 and not self.malformed_reasons:
            raise SettingsError("A malformed share needs at least one malformed reason.")
        if self.tag and not all(c.isalnum() or c == "-" for c in self.tag):
            raise SettingsError(
                f"The id tag may hold letters, digits and hyphens, not {self.tag!r}."
            )
        if self.history_rate is not None and not self.history_rate > 0:
            raise SettingsError(f"The history rate must be positive, not {self.history_rate}.")
        if self.live_from is not None and self.live_from.tzinfo is None:
            raise SettingsError("The start of the live part must carry a UTC offset.")
        if self.accidents_per_district_day < 0:
            raise SettingsError("The accident rate cannot be negative.")
        if self.overdue_drill < 0:
            raise SettingsError("The overdue drill cannot have a negative number of hazards.")

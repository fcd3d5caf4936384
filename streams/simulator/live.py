"""The demo stream: weeks of history at once, then a live city with an overdue drill."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from ..clock import Clock, SystemClock
from ..settings import Settings
from .config import SimConfig
from .files import load_city
from .generator import generate_events
from .produce import Pacer, ProduceSummary, produce_records
from .records import MALFORMED_REASONS

# The demo (``watchfloor demo`` and ``simulate run`` without options): a month of history
# at once, then a live stream at the same pace, with an overdue drill (a few hazards
# whose deadlines pass minutes after they are found) so that an alert fires while people
# watch. The history is 30 days because the worker judges a surge of cases against its
# own 28 days before the last 24 h, and lifecycles take days to run their course; the
# live pace is the history's, so the city the worker sees is the normal one: the same
# rates, the same overdue share, no surge. A live rate above the history's (``--rate``
# past what the history can hold) is a city getting busier, and the surge alert says so.
DEMO_RATE = 0.2  # records/s for ten districts, live and history alike
DEMO_BACKFILL = timedelta(days=30)
# The history holds at most this many records (the worker reads them in seconds); at
# the demo rate it holds the live pace (0.2/s for 30 days is 518,400).
DEMO_HISTORY_RECORDS = 600_000
DEMO_OVERDUE_DRILL = 6
# `watchfloor demo` starts its drill this long after the live stream: the worker has read
# the month of history by then, and district alerts wait for a worker that has caught up.
DEMO_DRILL_AFTER = timedelta(minutes=3)
DEMO_LATE_SHARE = 0.002
DEMO_DUPLICATE_SHARE = 0.002
DEMO_MALFORMED_SHARE = 0.002
# Work-safety accidents per district and day: some 130 deaths a year over the city, a
# little above the pace of its 2026 target (96), so that no district of the normal city
# reaches 80 % of its target within the month of history.
DEMO_ACCIDENTS_PER_DISTRICT_DAY = 0.07


def run_tag(now: datetime) -> str:
    """A short tag from the start time, so that runs (same seed or not) never share ids."""
    n = int(now.timestamp())
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


def live_config(
    now: datetime,
    *,
    rate: float = DEMO_RATE,
    seed: int = 0,
    backfill: timedelta = DEMO_BACKFILL,
    duration: timedelta | None = None,
    late_share: float = DEMO_LATE_SHARE,
    duplicate_share: float = DEMO_DUPLICATE_SHARE,
    malformed_share: float = DEMO_MALFORMED_SHARE,
    overdue_drill: int = DEMO_OVERDUE_DRILL,
    tag: str | None = None,
    max_records: int | None = None,
    history_records: int = DEMO_HISTORY_RECORDS,
    accidents_per_district_day: float = DEMO_ACCIDENTS_PER_DISTRICT_DAY,
    drill_at: datetime | None = None,
) -> SimConfig:
    """The configuration of a live run that starts ``backfill`` before ``now``.

    The backfill's rate is the live rate, capped so that it holds at most about
    ``history_records`` records. The drill's hazards are found from ``drill_at`` (default:
    ``now``).
    """
    reasons = MALFORMED_REASONS
    seconds = backfill.total_seconds()
    history_rate = min(rate, history_records / seconds) if seconds > 0 else rate
    return SimConfig(
        start=now - backfill,
        end=now + duration if duration is not None else None,
        rate=rate,
        seed=seed,
        late_share=late_share,
        duplicate_share=duplicate_share,
        malformed_share=malformed_share,
        malformed_reasons=reasons,
        overdue_drill=overdue_drill,
        drill_at=now if drill_at is None else drill_at,
        tag=run_tag(now) if tag is None else tag,
        max_records=max_records,
        live_from=now,
        history_rate=history_rate,
        accidents_per_district_day=accidents_per_district_day,
    )


async def run_demo_stream(
    settings: Settings,
    *,
    rate: float = DEMO_RATE,
    seed: int = 0,
    stop_event: asyncio.Event | None = None,
    backfill: timedelta = DEMO_BACKFILL,
    duration: timedelta | None = None,
    districts: int | None = None,
    clock: Clock | None = None,
    progress: Callable[[ProduceSummary], None] | None = None,
    overdue_drill: int = DEMO_OVERDUE_DRILL,
    drill_after: timedelta = timedelta(0),
) -> ProduceSummary:
    """Produce recent history at once (``backfill``, a month), then a live stream until
    ``stop_event`` is set.

    The figures of every district have data as soon as the engine has read the
    backfill; with the drill (``overdue_drill`` hazards, 0 for none, found from
    ``drill_after`` into the live stream) a few hazards go overdue in the first minutes.
    """
    clock = clock or SystemClock()
    city = load_city(settings.reference_file, districts)
    now = clock.now()
    config = live_config(
        now,
        rate=rate,
        seed=seed,
        backfill=backfill,
        duration=duration,
        overdue_drill=overdue_drill,
        drill_at=now + drill_after,
    )
    pacer = Pacer(now.timestamp(), time.monotonic(), 1.0)
    return await produce_records(
        generate_events(city, config), settings, pacer=pacer, stop_event=stop_event,
        progress=progress,
    )  # fmt: skip

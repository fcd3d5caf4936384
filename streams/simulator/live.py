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

# The demo (``watchfloor demo`` and ``simulate run`` without options): three weeks of
# history at once, then a live stream; a few hazards with deadlines minutes away so
# that the overdue alert fires while people watch. Three weeks, not one: lifecycles
# take days (a hazard's deadline, a dispute's mediation), and a history that starts
# empty shows low clearance and resolution ratios until they have run their course;
# with three weeks the 24 h and 7 d windows see lifecycles in full flow, and the 28 d
# window is mostly filled.
DEMO_RATE = 20.0  # live records/s for ten districts
DEMO_BACKFILL = timedelta(days=21)
# The backfill holds about this many records whatever the live rate (0.17/s over three
# weeks: read by the engine in seconds). Follow-ups of the live stream then take hours
# to days to thicken to the live rate, so ratios over 1 h and 24 h read low at first
# when the live rate is far above the history's.
DEMO_HISTORY_RECORDS = 300_000
DEMO_OVERDUE_DRILL = 6
DEMO_LATE_SHARE = 0.002
DEMO_DUPLICATE_SHARE = 0.002
DEMO_MALFORMED_SHARE = 0.002


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
) -> SimConfig:
    """The configuration of a live run that starts ``backfill`` before ``now``.

    The backfill's rate is capped so that it holds about ``history_records`` records.
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
        drill_at=now,
        tag=run_tag(now) if tag is None else tag,
        max_records=max_records,
        live_from=now,
        history_rate=history_rate,
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
) -> ProduceSummary:
    """Produce recent history at once (``backfill``, three weeks), then a live stream until
    ``stop_event`` is set.

    The figures of every district have data as soon as the engine has read the
    backfill; a few hazards go overdue in the first minutes (see ``DEMO_OVERDUE_DRILL``).
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
    )
    pacer = Pacer(now.timestamp(), time.monotonic(), 1.0)
    return await produce_records(
        generate_events(city, config), settings, pacer=pacer, stop_event=stop_event,
        progress=progress,
    )  # fmt: skip

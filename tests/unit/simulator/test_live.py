"""The demo stream's configuration: a month of history at the live pace, then the live city."""

from __future__ import annotations

from datetime import timedelta

import pytest

from streams.events import Kind
from streams.simulator.city import SimCity
from streams.simulator.generator import generate_events
from streams.simulator.live import (
    DEMO_BACKFILL,
    DEMO_HISTORY_RECORDS,
    DEMO_RATE,
    live_config,
)

from .support import EPOCH


def test_the_demo_history_runs_at_the_live_pace(city: SimCity) -> None:
    config = live_config(EPOCH, max_records=None, duration=timedelta(minutes=1))
    assert config.rate == DEMO_RATE and config.history_rate == DEMO_RATE
    assert config.live_from == EPOCH and config.start == EPOCH - DEMO_BACKFILL
    # 28 days of baseline before the last 24 h, and the first (partial) day left out.
    assert timedelta(days=30) <= DEMO_BACKFILL


def test_a_rate_past_the_history_cap_makes_a_busier_live_city(city: SimCity) -> None:
    config = live_config(EPOCH, rate=20.0, max_records=None, duration=timedelta(minutes=1))
    assert config.rate == 20.0 and config.history_rate is not None
    assert config.history_rate * DEMO_BACKFILL.total_seconds() == pytest.approx(
        DEMO_HISTORY_RECORDS
    )


def test_history_holds_about_what_the_rate_says(city: SimCity) -> None:
    backfill = timedelta(days=3)
    config = live_config(EPOCH, rate=0.2, backfill=backfill, duration=timedelta(minutes=1))
    history = [r for r in generate_events(city, config) if r.at < EPOCH.timestamp()]
    # Starts at the full pace from the first hour; follow-ups thicken over the first days.
    expected = 0.2 * backfill.total_seconds()
    assert 0.6 * expected < len(history) < 1.1 * expected


def test_no_drill_no_drill_hazards(city: SimCity) -> None:
    for drill, want in ((6, 6), (0, 0)):
        config = live_config(
            EPOCH, overdue_drill=drill, backfill=timedelta(hours=1), duration=timedelta(minutes=10)
        )
        found = [
            r
            for r in generate_events(city, config)
            if r.kind is Kind.HAZARD_FOUND and b"drill" in r.value
        ]
        assert len(found) == want

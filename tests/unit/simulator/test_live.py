"""The demo stream's configuration: a backfill capped in records, then the live rate."""

from __future__ import annotations

from datetime import timedelta

import pytest

from streams.simulator.city import SimCity
from streams.simulator.generator import generate_events
from streams.simulator.live import DEMO_BACKFILL, live_config

from .support import EPOCH


def test_live_config_caps_the_backfill(city: SimCity) -> None:
    config = live_config(EPOCH, rate=20.0, max_records=None, duration=timedelta(minutes=1))
    assert config.rate == 20.0 and config.live_from == EPOCH
    assert config.history_rate is not None
    assert config.history_rate * DEMO_BACKFILL.total_seconds() == pytest.approx(300_000)
    assert config.start == EPOCH - DEMO_BACKFILL
    history = sum(1 for r in generate_events(city, config) if r.at < EPOCH.timestamp())
    assert 240_000 < history < 330_000

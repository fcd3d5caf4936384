"""Runs of the seed city that several test modules read: made once per session."""

from __future__ import annotations

from datetime import timedelta

import pytest

from streams.simulator.city import SimCity
from streams.simulator.files import load_city
from streams.simulator.records import SimRecord

from .support import CITY_FILE, EPOCH, run


@pytest.fixture(scope="session")
def city() -> SimCity:
    return load_city(CITY_FILE)


@pytest.fixture(scope="session")
def mixed(city: SimCity) -> list[SimRecord]:
    """Four days of the seed city with every kind of bad record in good numbers."""
    return run(
        city,
        end=EPOCH + timedelta(days=4),
        rate=0.3,
        seed=7,
        late_share=0.03,
        duplicate_share=0.03,
        malformed_share=0.06,
    )


@pytest.fixture(scope="session")
def long_run(city: SimCity) -> list[SimRecord]:
    """Sixty days at a low rate: enough lifecycles for the ratios, little time."""
    return run(city, end=EPOCH + timedelta(days=60), rate=0.015, seed=11)

"""Fixtures of the unit tests: the reference data and the validator, built once per session."""

from __future__ import annotations

import pytest

from streams.clock import FixedClock
from streams.reference import Reference, load_reference
from streams.settings import Settings
from streams.validation import EventValidator
from tests.support import EPOCH, EPOCH_UTC, TZ

__all__ = ["EPOCH", "EPOCH_UTC", "TZ"]


@pytest.fixture(scope="session")
def reference() -> Reference:
    return load_reference(Settings().reference_file)


@pytest.fixture(scope="session")
def validator(reference: Reference) -> EventValidator:
    """The edge validator on a clock fixed at EPOCH_UTC."""
    return EventValidator(reference, clock=FixedClock(EPOCH_UTC))

"""A simulation's configuration: mistakes are refused in plain sentences."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from streams.errors import SettingsError
from streams.simulator.city import SimCity

from .support import EPOCH, run


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"late_share": 0.3, "duplicate_share": 0.3}, "shares"),
        ({"rate": 0.0}, "rate"),
        ({"start": datetime(2026, 1, 1)}, "offset"),
        ({"end": EPOCH - timedelta(days=1)}, "end after"),
        ({"malformed_reasons": ("no_such_reason",)}, "Unknown malformed"),
        ({"tag": "bad tag!"}, "tag"),
    ],
)
def test_config_errors_are_plain_sentences(
    city: SimCity, change: dict[str, object], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        run(city, **change)

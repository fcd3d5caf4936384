"""A simulation split over processes: districts and rate dealt out, each part deterministic."""

from __future__ import annotations

from datetime import timedelta

import pytest

from streams.errors import SettingsError
from streams.simulator.city import SimCity
from streams.simulator.config import SimConfig
from streams.simulator.generator import generate_events
from streams.simulator.shard import shard

from .support import EPOCH


def test_shards_split_districts_and_rate_and_are_deterministic(city: SimCity) -> None:
    config = SimConfig(start=EPOCH, end=EPOCH + timedelta(days=1), rate=0.5, overdue_drill=3)
    parts = [shard(city, config, i, 3) for i in range(3)]
    codes = [d.code for p, _ in parts for d in p.districts]
    assert sorted(codes) == sorted(d.code for d in city.districts)
    assert sum(c.rate for _, c in parts) == pytest.approx(0.5)
    assert [c.overdue_drill for _, c in parts] == [3, 0, 0]
    assert len({c.seed for _, c in parts}) == 3
    one = list(generate_events(*parts[1]))
    assert one == list(generate_events(*shard(city, config, 1, 3)))
    assert {r.key.decode() for r in one} <= {d.code for d in parts[1][0].districts}
    assert shard(city, config, 0, 1) == (city, config)
    capped = shard(city, SimConfig(start=EPOCH, rate=1.0, max_records=10), 0, 3)[1]
    assert capped.max_records == 4
    with pytest.raises(SettingsError):
        shard(city, config, 3, 3)

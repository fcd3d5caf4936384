"""The producing side's pure parts: pacing and merged summaries."""

from __future__ import annotations

import math

import pytest

from streams.errors import SettingsError
from streams.events import Stream
from streams.simulator.produce import Pacer, ProduceSummary, merge_summaries
from streams.simulator.records import Intent, SimRecord
from streams.simulator.tally import Tally


def test_pacer_maps_publish_time_to_wall_time() -> None:
    pacer = Pacer(sim_origin=1000.0, wall_origin=50.0, speed=60.0)
    assert pacer.due(1000.0) == 50.0
    assert pacer.due(1600.0) == 60.0
    assert Pacer(1000.0, 50.0, 0.0).due(10**9) == -math.inf
    with pytest.raises(SettingsError):
        Pacer(0, 0, -1)


def test_summaries_merge() -> None:
    rec = SimRecord(1.0, Stream.PATROLS, b"jinshui", b"x", Intent.VALID, None, None, None)
    a, b = ProduceSummary(), ProduceSummary()
    a.topics, b.topics = {"t": 2}, {"t": 3, "u": 1}
    a.tally, b.tally = Tally(), Tally()
    for _ in range(2):
        a.tally.add(rec)
    b.tally.add(rec._replace(intent=Intent.DUPLICATE, reason="duplicate"))
    a.seconds, b.seconds, a.first_at, b.first_at = 2.0, 3.0, 10.0, 5.0
    merged = merge_summaries([a, b])
    assert merged.topics == {"t": 5, "u": 1} and merged.delivered == 6
    assert merged.tally.total == 3 and merged.tally.by_intent == {"duplicate": 1, "valid": 2}
    assert merged.seconds == 3.0 and merged.first_at == 5.0

"""Benchmark helpers checked without a broker: the pooled load's passes, the plateau verdict."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from streams.simulator.config import SimConfig
from streams.simulator.files import load_city, write_reference
from streams.simulator.generator import generate_events
from streams.simulator.records import Intent, SimRecord
from streams.state import DistrictState, Limits
from tests.benchmarks.live import Cycled
from tests.benchmarks.plateau import DAY, Sample, judge
from tests.benchmarks.state_census import census, deep_size
from tests.support import TZ
from tests.unit.test_lifecycles import found, rect

TAG = "lvh1a2b00"


def pool(tmp_path: Path) -> list[SimRecord]:
    city = load_city(write_reference(tmp_path / "city.json", 5))
    start = datetime(2026, 11, 1, tzinfo=UTC)
    config = SimConfig(
        start=start,
        end=start + timedelta(days=3),
        rate=0.02,
        seed=5,
        duplicate_share=0.05,
        late_share=0.02,
        tag=TAG,
    )
    return list(generate_events(city, config))


def identity(value: bytes) -> tuple[str, str]:
    doc = orjson.loads(value)
    return doc["source"], doc["id"]


def test_each_pass_is_the_pool_with_ids_of_its_own(tmp_path: Path) -> None:
    records = pool(tmp_path)
    valid = [r for r in records if r.intent is Intent.VALID]
    assert len(valid) > 100 and any(r.intent is Intent.DUPLICATE for r in records)
    cycled = Cycled(records, TAG, 3)
    assert len(cycled) == 3 * len(records)
    seen: set[tuple[str, str]] = set()
    for c in range(3):
        passed = [cycled[c * len(records) + i] for i in range(len(records))]
        # Same streams, keys, fates, kinds and event times as the pool ...
        assert [(r.stream, r.key, r.intent, r.reason, r.kind, r.ts) for r in passed] == [
            (r.stream, r.key, r.intent, r.reason, r.kind, r.ts) for r in records
        ]
        ids = {identity(r.value) for r in passed if r.intent is Intent.VALID}
        # ... every valid record still has an identity of its own within the pass ...
        assert len(ids) == len(valid)
        # ... and no pass repeats another pass's identities.
        assert not ids & seen
        seen |= ids
        for r in passed:
            if r.intent is Intent.DUPLICATE:
                assert identity(r.value) in ids  # a duplicate repeats its own pass's event


def ramp_then_flat(after_slope_mb_per_day: float) -> list[Sample]:
    """RSS that grows 0.2 MB a day until day 807, then by ``after_slope``, with jitter."""
    start = 1.7e9
    out = []
    for i in range(0, 4000):
        day = i / 4  # 1,000 days
        grown = 0.2 * min(day, 807) + after_slope_mb_per_day * max(day - 807, 0)
        jitter = 3.0 if i % 2 else -3.0
        out.append(Sample(0.0, start + day * DAY, int((100 + grown + jitter) * 2**20)))
    return out


def test_the_verdict_is_flat_when_rss_stops_growing_after_the_edges() -> None:
    samples = ramp_then_flat(0.0)
    got = judge(samples, 1.7e9, 1.7e9 + 1000 * DAY, Limits())
    assert got["verdict"] == "flat"
    assert abs(got["trend_after_edges"]["growth_mb"]) < 1.0
    assert 19 < got["trend_before_retention_edge"]["slope_mb_per_100_days"] < 21
    # Checkpoints land on both sides of each edge.
    points = got["checkpoints"]
    assert points["before day 7 (the de-duplication horizon)"]["event_day"] < 7
    assert points["day 807 (after the 800-day retention)"]["event_day"] >= 807


def test_the_verdict_is_growing_when_rss_keeps_growing() -> None:
    # 0.1 MB a day over the 193 days after the edges: 19 MB, above the 8 MB allowed.
    got = judge(ramp_then_flat(0.1), 1.7e9, 1.7e9 + 1000 * DAY, Limits())
    assert got["verdict"] == "growing"
    assert 18 < got["trend_after_edges"]["growth_mb"] < 20


def test_the_state_census_counts_each_object_once_where_it_is_first_reached() -> None:
    shared = "x" * 100
    inner = [shared, shared]
    seen: set[int] = set()
    # The list and its one string (not twice); then nothing more for the same list again.
    assert deep_size(inner, seen) == sys.getsizeof(inner) + sys.getsizeof(shared)
    assert deep_size({"k": inner}, seen) == sys.getsizeof({"k": inner}) + sys.getsizeof("k")
    st = DistrictState("jinshui", TZ)
    st.apply(found("h-1", 1_780_000_000.0))
    st.apply(rect("h-1", 1_780_003_600.0))
    size, count = census({"jinshui": st})
    s = st.hazards["h-1"]
    # The hazard: the dict, its key, the subject and the strings it holds; the closings
    # index then adds only its own containers and the day, not the id again.
    strings = sum(sys.getsizeof(v) for v in (s.category, s.community, s.unit) if v is not None)
    # Times stored as float objects of their own (in pure Python) count, each once;
    # compiled, the subject holds them in itself.
    stored = [t for a in ("_opened", "_deadline", "_closed_at", "last")
              if (t := getattr(s, a)) is getattr(s, a)]
    times = sum(sys.getsizeof(t) for t in {id(t): t for t in stored}.values())
    assert size["hazards"] == (sys.getsizeof(st.hazards) + sys.getsizeof("h-1")
                               + sys.getsizeof(s) + strings + times)
    assert count["hazards"] == 1 and count["_closings"] == 1
    ((day, sids),) = st._closings[2].items()
    containers = sys.getsizeof(st._closings) + sum(map(sys.getsizeof, st._closings))
    assert size["_closings"] == containers + sys.getsizeof(day) + sys.getsizeof(sids)

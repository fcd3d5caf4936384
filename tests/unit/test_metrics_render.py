"""The fast district render: byte for byte the plain formatting, and never stale."""

from __future__ import annotations

import asyncio
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.district_lines import _line, _number, format_families
from streams.events import Event, Kind, Stream
from streams.exposition import DistrictCollector
from streams.state import DistrictState, Outcome
from tests.unit.test_metrics import NOW, TZ, signals_state, state
from tests.unit.test_worksafety import TARGETS, accident
from tests.unit.test_worksafety import district as accident_district

TOPICS = {"t.incidents": Stream.INCIDENTS, "t.disputes": Stream.DISPUTES,
          "t.patrols": Stream.PATROLS}  # fmt: skip
WS_NOW = datetime(2026, 4, 12, 12, 0, tzinfo=TZ).timestamp()


def collector(states: dict[str, DistrictState], now: list[float]) -> DistrictCollector:
    partition = {d: i % 4 for i, d in enumerate(sorted(states))}
    return DistrictCollector(lambda: states, lambda: now[0], TARGETS, topics=TOPICS,
                             partition_of=lambda d: partition.setdefault(d, 0))  # fmt: skip


def reference_text(states: dict[str, DistrictState], now: float) -> bytes:
    """What a collector that never rendered before writes, the plain way (line by line)."""
    return format_families(collector(states, [now]).families()).encode()


def renamed(st: DistrictState, district: str) -> DistrictState:
    snap = st.to_snapshot()
    snap["district"] = district
    again = DistrictState.from_snapshot(snap, TZ)
    again.tick(NOW)
    return again


def city() -> dict[str, DistrictState]:
    """Districts with every optional series, names that need escaping, a % in one."""
    awkward = state('er"qi\\x\n%s%%')
    awkward.apply(Event(Kind.HAZARD_FOUND, "hq", "/t", awkward.district, "hq", NOW - 900,
                        category='we"ird\\%d', deadline=NOW - 60))  # fmt: skip
    awkward.tick(NOW)
    return {"jinshui": accident_district(), "erqi": renamed(signals_state(), "erqi"),
            awkward.district: awkward, "zhongyuan": state("zhongyuan"),
            "empty": DistrictState("empty", TZ)}  # fmt: skip


def test_a_kept_line_writes_its_value_as_the_reference_formatting_does() -> None:
    values: list[float] = [0, 7, -3, 10**12, True, 0.1, -2.5, 1e20, 3.0, 1796505445.25,
                           float("nan"), float("inf"), float("-inf")]  # fmt: skip
    for value in values:
        assert _line(b"x ", value) == f"x {_number(value)}\n".encode(), value


def test_render_is_the_plain_formatting_byte_for_byte() -> None:
    states = city()
    for now in (NOW, WS_NOW + 86400 * 3):
        fast = collector(states, [now]).render()
        assert fast == reference_text(states, now)
        assert b"watchfloor_work_safety_deaths_target" in fast
        assert b"watchfloor_overdue_hazards_by_category" in fast
        assert b"watchfloor_oldest_open_dispute_age_seconds" in fast
        assert b"watchfloor_dispute_open_30d_newest_timestamp_seconds" in fast


def test_render_parses_as_prometheus_client_writes_it() -> None:
    states = city()
    c = collector(states, [NOW])
    reg = CollectorRegistry()
    reg.register(c)
    ours = list(text_string_to_metric_families(c.render().decode()))
    theirs = list(text_string_to_metric_families(generate_latest(reg).decode()))
    assert [(f.name, f.type, f.documentation) for f in ours] == [
        (f.name, f.type, f.documentation) for f in theirs
    ]
    assert [s for f in ours for s in f.samples] == [s for f in theirs for s in f.samples]


def test_no_empty_families_and_no_districts() -> None:
    states: dict[str, DistrictState] = {}
    c = collector(states, [NOW])
    assert c.render() == reference_text(states, NOW)
    states["erqi"] = renamed(signals_state(), "erqi")
    assert c.render() == reference_text(states, NOW)
    del states["erqi"]
    assert c.render() == reference_text(states, NOW)


def test_a_kept_district_text_follows_every_change() -> None:
    """One collector scraped after each kind of change says what a fresh one says."""
    states = city()
    now = [NOW]
    c = collector(states, now)

    def same(why: str) -> bytes:
        text = c.render()
        assert text == reference_text(states, now[0]), why
        return text

    before = same("first scrape")
    assert c.render() == before, "nothing changed"
    zy = states["zhongyuan"]
    zy.apply(Event(Kind.CASE_FILED, "n1", "/t", "zhongyuan", "n1", NOW - 5, category="theft"))
    assert same("an event") != before
    # A repeat and a late event change counters but not the state's version.
    before = same("again")
    assert zy.apply(Event(Kind.CASE_FILED, "n1", "/t", "zhongyuan", "n1", NOW - 5,
                          category="theft")) is Outcome.DUPLICATE  # fmt: skip
    assert same("a duplicate") != before
    before = same("again")
    assert zy.apply(Event(Kind.CASE_FILED, "old", "/t", "zhongyuan", "old", NOW - 3 * 86400,
                          category="theft")) is Outcome.TOO_LATE  # fmt: skip
    assert same("a late event") != before
    # Accidents: a new report, a revision, an earlier report of it that came late; the
    # work-safety lines are kept per accident change, not per state version.
    js = states["jinshui"]
    for ev, shows in ((accident("a26-3", NOW - 50, 2, 1, 9_000), True),
                      (accident("a26-3", NOW - 20, 3, 1, 9_000), True),
                      (accident("a26-3", NOW - 80, 3, 1, 9_000), False)):  # fmt: skip
        before = same("again")
        assert js.apply(ev) is Outcome.COUNTED
        assert (same(f"an accident report at {ev.ts - NOW:g} s") != before) is shows
    before = same("again")
    zy.late_total += 2  # as a journal's replay adds its late count
    assert same("a replayed journal's counts") != before
    # The overdue timer moves a hazard, no event: overdue gauges change.
    zy.apply(Event(Kind.HAZARD_FOUND, "hz", "/t", "zhongyuan", "hz", NOW - 4, category="gas",
                   deadline=NOW + 30, major=True))  # fmt: skip
    before = same("a hazard")
    now[0] = NOW + 60
    assert zy.tick(now[0]) == 1
    after = same("the timer")
    # The fixture's own major hazard was overdue already; this one makes two.
    assert b'watchfloor_overdue_major_hazards{district="zhongyuan"} 2.0' in after
    # The clock alone, within the slot: ages move; then into later slots and days.
    for step in (1.0, 7.0, 300.0, 3600.0, 86400.0, 86400.0 * 30):
        before = same("again")
        now[0] += step
        assert same(f"the clock, +{step:g} s") != before
    # A state replaced by another object (a restore) with the same version number.
    erqi = states["erqi"]
    other = renamed(signals_state(), "erqi")
    other.apply(Event(Kind.CASE_FILED, "x1", "/t", "erqi", "x1", now[0] - 5, category="theft"))
    replaced = DistrictState.from_snapshot(other.to_snapshot(), TZ)
    replaced.version = erqi.version
    replaced.tick(now[0])
    before = same("again")
    states["erqi"] = replaced
    assert same("a replaced state") != before
    # A district that leaves (revoked) and comes back.
    gone = states.pop("zhongyuan")
    same("a district left")
    gone.apply(Event(Kind.CASE_FILED, "n2", "/t", "zhongyuan", "n2", now[0] - 5,
                     category="theft"))  # fmt: skip
    states["zhongyuan"] = gone
    same("a district came back")


def test_open_and_overdue_hazards_by_category_follow_hazard_events_among_others() -> None:
    """The by-category counts move with every opening, closing, reopening, late closing,
    expiry and deadline passed; truth: a scan of the hazards a snapshot of the state holds,
    and of the overdue set."""
    import random

    rng = random.Random(16)
    st = DistrictState("jinshui", TZ)
    t = NOW - 20 * 86400
    for i in range(600):
        t += rng.random() * 1800
        if rng.random() < 0.01:  # past the retention: open hazards are forgotten
            t += 801 * 86400
        sid = f"h{rng.randrange(40)}"
        kind = rng.choice([Kind.HAZARD_FOUND, Kind.HAZARD_RECTIFIED, Kind.HAZARD_VERIFIED,
                           Kind.CASE_FILED, Kind.PATROL_COMPLETED])  # fmt: skip
        extra: dict[str, object] = {}
        if kind is Kind.HAZARD_FOUND:
            extra = {"category": rng.choice(["gas", "fire", "road", None]),
                     "deadline": t + rng.choice((600, 86400))}  # fmt: skip
        elif kind is Kind.HAZARD_VERIFIED:
            extra = {"confirmed": rng.random() < 0.5}
        elif kind is Kind.CASE_FILED:
            extra = {"category": "theft"}
            sid = f"c{i}"
        elif kind is Kind.PATROL_COMPLETED:
            extra = {"ended": t}
            sid = f"p{i}"
        # Some arrive past the grace: late closings still close, late openings do not.
        at = t - 3 * 86400 if rng.random() < 0.1 else t
        st.apply(Event(kind, f"e{i}", "/t", "jinshui", sid, at, **extra))  # type: ignore[arg-type]
        if rng.random() < 0.3:
            st.tick(t)
        # Checked after every event: one missed invalidation shows at once.
        # A copy from a snapshot has no cache: it scans every hazard it holds.
        truth: dict[str, int] = {}
        fresh = DistrictState.from_snapshot(st.to_snapshot(), TZ)
        for _, s in fresh.open_hazard_items():
            truth[s.category or "unknown"] = truth.get(s.category or "unknown", 0) + 1
        assert st.open_hazards_by_category() == truth, i
        assert sum(truth.values()) == st.open_hazards
        overdue: dict[str, int] = {}
        for s in st.overdue.values():
            overdue[s.category or "unknown"] = overdue.get(s.category or "unknown", 0) + 1
        assert st.overdue_by_category() == overdue, i
        assert sum(overdue.values()) == len(st.overdue)


def test_render_parts_are_render_and_hand_the_loop_back_while_they_render() -> None:
    states = city()
    c = collector(states, [NOW])
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async def scrape() -> bytes:
        worker = asyncio.ensure_future(other_work())
        try:
            # A zero slice pauses after every district it renders.
            return b"".join(await c.render_parts(slice_seconds=0.0))
        finally:
            worker.cancel()

    text = asyncio.run(scrape())
    assert text == reference_text(states, NOW)
    assert turns >= len(states) - 1  # the loop ran between the districts


def test_a_district_revoked_during_an_async_render_is_not_exported() -> None:
    states = city()
    c = collector(states, [NOW])

    async def scrape() -> bytes:
        render = asyncio.ensure_future(c.render_parts(slice_seconds=0.0))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        del states["zhongyuan"]  # a rebalance took its partition meanwhile
        return b"".join(await render)

    text = asyncio.run(scrape())
    assert b'district="zhongyuan"' not in text
    assert text == reference_text(states, NOW)


def test_work_safety_lines_follow_accidents_forgotten() -> None:
    """Accidents forgotten 60 days after their latest report take the alert share's
    crossing with them, though the year's deaths stay in the day buckets; the sweep that
    forgets them need not move the day buckets' cut (what the kept lines also follow)."""
    states = {"jinshui": accident_district()}
    c = collector(states, [NOW])
    reached = (
        b"watchfloor_work_safety_deaths_alert_share_reached_timestamp_seconds"
        b'{district="jinshui"}'
    )
    js = states["jinshui"]

    def case(sid: str, month: int, day: int, hour: int) -> None:
        ts = datetime(2026, month, day, hour, tzinfo=TZ).timestamp()
        ev = Event(Kind.CASE_FILED, sid, "/t", "jinshui", sid, ts, category="theft")
        assert js.apply(ev) is Outcome.COUNTED

    # 9 June 06:00: a sweep of the incidents' memories (the next is due a day later);
    # a26-1, last reported 10 April 09:00, is kept. 10 June 01:00: no sweep, a new day.
    case("c1", 6, 9, 6)
    case("c2", 6, 10, 1)
    assert "a26-1" in js.accidents
    first = c.render()
    assert first == reference_text(states, NOW)
    assert reached in first
    cut = js.buckets.day_cut
    case("c3", 6, 10, 7)  # the sweep: a26-1 is over 60 days old
    assert "a26-1" not in js.accidents
    assert js.buckets.day_cut == cut
    text = c.render()
    assert text == reference_text(states, NOW)
    assert reached not in text

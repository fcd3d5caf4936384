"""Engine: real validator, offset evidence, partitions, and every engine-owned rejection."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from streams.clock import FixedClock
from streams.engine import Engine
from streams.events import Event, Stream
from streams.partitioning import district_partition
from streams.reference import load_reference
from streams.settings import Settings
from streams.state import Limits
from streams.validation import EventValidator
from tests.support import Record, case_filed, event

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 4, 12, 12, 0, tzinfo=TZ)
PARTITIONS = 4


@pytest.fixture
def engine() -> Engine:
    ref = load_reference(Settings().reference_file)
    clock = FixedClock(NOW)
    return Engine(reference=ref, validator=EventValidator(ref, clock=clock),
                  topics={"inc": Stream.INCIDENTS, "pat": Stream.PATROLS},
                  partitions=PARTITIONS, limits=Limits(), clock=clock)


def part(district: str) -> int:
    return district_partition(district, PARTITIONS)


def test_counts_and_journals(engine: Engine) -> None:
    p = part("jinshui")
    recs = [Record(i, case_filed(f"c{i}", NOW - timedelta(minutes=i))) for i in range(5)]
    res = engine.process([("inc", p, recs)])
    assert res.counted == {"inc": 5} and res.received == {"inc": 5}
    assert res.rejections == []
    st = engine.states["jinshui"]
    assert st.totals[0] == 5
    assert st.evidence == {f"inc:{p}": 4}
    journal = res.journals["jinshui"]
    assert [Event.from_journal("jinshui", orjson.loads(r))[0].subject for r in journal.rows] == [
        f"c{i}" for i in range(5)
    ]


def test_replayed_offsets_are_skipped_not_counted_twice(engine: Engine) -> None:
    p = part("jinshui")
    recs = [Record(i, case_filed(f"c{i}", NOW)) for i in range(10)]
    engine.process([("inc", p, recs[:6])])
    # After a crash the broker hands back everything after the last commit (say 3).
    res = engine.process([("inc", p, recs[3:])])
    assert res.replayed == 3
    assert res.counted == {"inc": 4}
    assert engine.states["jinshui"].totals[0] == 10
    assert res.rejections == []


def test_wrong_partition_is_rejected_with_the_right_partition_named(engine: Engine) -> None:
    wrong = (part("jinshui") + 1) % PARTITIONS
    res = engine.process([("inc", wrong, [Record(0, case_filed("c1", NOW))])])
    (rej,) = res.rejections
    assert rej.reason == "wrong_partition"
    assert f"belongs in partition {part('jinshui')}" in rej.message
    assert "jinshui" not in engine.states


def test_duplicate_and_too_late_are_rejected_and_counted(engine: Engine) -> None:
    p = part("erqi")
    recs = [
        Record(0, case_filed("c1", NOW, district="erqi")),
        Record(1, case_filed("c1", NOW, district="erqi")),  # the same transition again
        Record(2, case_filed("c2", NOW - timedelta(hours=25), district="erqi")),  # beyond the grace
    ]
    res = engine.process([("inc", p, recs)])
    assert [r.reason for r in res.rejections] == ["duplicate", "too_late"]
    assert all(r.district == "erqi" for r in res.rejections)
    j = res.journals["erqi"]
    assert (len(j.rows), j.dup, j.late) == (1, 1, 1)
    st = engine.states["erqi"]
    assert (st.duplicate_total, st.late_total) == (1, 1)
    # The rejected records are covered by the evidence too: a replay skips them.
    again = engine.process([("inc", p, recs)])
    assert again.replayed == 3 and again.rejections == []


def test_invalid_records_keep_their_bytes_and_coordinates(engine: Engine) -> None:
    bad = Record(7, b"\xff\xfe not json", key=b"jinshui", headers=[("x", b"y")])
    res = engine.process([("inc", part("jinshui"), [bad])])
    (rej,) = res.rejections
    assert rej.reason == "not_utf8"
    assert (rej.value, rej.key, rej.offset, list(rej.headers)) == (bad.value, b"jinshui", 7,
                                                                   [("x", b"y")])


def test_an_engine_fault_dead_letters_the_record_and_carries_on(engine: Engine) -> None:
    p = part("jinshui")

    def broken(ev: Event, late: bool) -> None:
        raise RuntimeError("boom")

    st = engine.new_state("jinshui")
    engine.states["jinshui"] = st
    st._handlers[next(iter(st._handlers))] = broken  # type: ignore[assignment]
    recs = [Record(0, case_filed("c1", NOW)), Record(1, case_filed("c2", NOW))]
    res = engine.process([("inc", p, recs)])
    assert [r.reason for r in res.rejections] == ["internal_error", "internal_error"]
    assert "boom" in res.rejections[0].message


def test_keep_partitions_forgets_the_others(engine: Engine) -> None:
    for d in ("jinshui", "erqi", "huiji"):
        engine.process([("inc", part(d), [Record(0, case_filed(f"{d}-1", NOW, district=d))])])
    kept = {part("jinshui")}
    gone = engine.keep_partitions(kept)
    assert "jinshui" in engine.states
    assert all(part(d) not in kept for d in gone)
    assert all(part(d) in kept for d in engine.states)


@pytest.fixture
def forwarding() -> Engine:
    ref = load_reference(Settings().reference_file)
    clock = FixedClock(NOW)
    return Engine(reference=ref, validator=EventValidator(ref, clock=clock),
                  topics={"inc": Stream.INCIDENTS, "pat": Stream.PATROLS},
                  partitions=PARTITIONS, limits=Limits(), clock=clock, forward_topic="fwd")


def test_a_valid_record_in_another_partition_is_forwarded_not_rejected(
    forwarding: Engine,
) -> None:
    wrong = (part("jinshui") + 1) % PARTITIONS
    forged = [("wf-forwarded-from", b"inc/0/99999"), ("x", b"y")]
    res = forwarding.process([("inc", wrong, [
        Record(7, case_filed("c1", NOW), key=b"k", headers=forged),
        Record(8, b"{not json", key=b"k"),
    ])])
    (fwd,) = res.forwards
    assert (fwd.topic, fwd.partition, fwd.offset, fwd.district) == ("inc", wrong, 7, "jinshui")
    assert fwd.forward_headers() == [("x", b"y"), ("wf-forwarded-from", f"inc/{wrong}/7".encode())]
    # Only valid records are forwarded; the others are dead-lettered where they are.
    assert [r.reason for r in res.rejections] == ["malformed_json"]
    assert "jinshui" not in forwarding.states


def test_a_forwarded_record_counts_once_however_often_it_was_forwarded(
    forwarding: Engine,
) -> None:
    p = part("jinshui")
    stamp = [("wf-forwarded-from", b"inc/2/7")]
    first = Record(0, case_filed("c1", NOW), headers=stamp)
    again = Record(1, case_filed("c1", NOW), headers=stamp)  # forwarded twice after a crash
    other = Record(2, case_filed("c2", NOW), headers=[("wf-forwarded-from", b"inc/2/9")])
    res = forwarding.process([("fwd", p, [first, again, other])])
    assert res.counted == {"fwd": 2} and res.replayed == 1
    assert res.rejections == [], "a second copy is skipped, not dead-lettered"
    st = forwarding.states["jinshui"]
    assert st.totals[0] == 2 and st.evidence["fwd|inc:2"] == 9
    # Any type may come on the forward topic: it carries every stream.
    hazard = Record(3, event_bytes("hazard_found", NOW),
                    headers=[("wf-forwarded-from", b"pat/1/3")])
    res = forwarding.process([("fwd", p, [hazard])])
    assert res.counted == {"fwd": 1}


def event_bytes(kind: str, when: datetime) -> bytes:
    data = {"category": "gas", "major": False, "responsible_unit": "u1",
            "deadline": (when + timedelta(days=1)).isoformat()}
    return orjson.dumps(event(kind, "jinshui", "h1", when, data, id="h1-found"))


def test_every_reference_district_of_an_owned_partition_has_a_state(engine: Engine) -> None:
    engine.own({part("jinshui")})
    owned = {d for d in engine.reference.districts if part(d) == part("jinshui")}
    assert set(engine.states) == owned and "jinshui" in owned
    assert all(st.totals == [0] * len(st.totals) for st in engine.states.values())
    engine.own({0, 1, 2, 3})
    assert set(engine.states) == set(engine.reference.districts), "listed with zeros"


def test_counting_and_journaling_make_no_cyclic_garbage() -> None:
    # The worker counts a batch with the cyclic collector off (streams.memory.counting)
    # and freezes what is left: a cycle made in counting would outlive the batch until
    # the next full collection. Simulator records, bad ones included, through the
    # engine and the journals, then a collection: it must find nothing to free.
    import gc

    from streams.state_journal import StateStore
    from tests.benchmarks.engine_cost import batches, city_engine, records

    city_eng, city, reference = city_engine(50)
    todo = batches(records(city, 20_000, 4, city_eng), 4000)
    store = StateStore({}, reference.timezone, Limits())
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        found = rejected = 0
        for mark, batch in enumerate(todo, 1):
            result = city_eng.process(batch)
            store.stage(result.journals, mark)
            store.flush(city_eng.states, store.staged // 2)
            rejected += len(result.rejections)
            found += gc.collect()
    finally:
        if was:
            gc.enable()
    assert sum(st.subject_count() for st in city_eng.states.values()) > 1000
    assert rejected > 0  # the bad records are part of what is checked
    assert found == 0



def test_events_compare_and_show_every_field() -> None:
    from streams.events import _EVENT_FIELDS, Kind

    # The fields the class holds: its __slots__ from source, mypyc's list compiled.
    held = getattr(Event, "__mypyc_attrs__", None) or Event.__slots__
    assert sorted(_EVENT_FIELDS) == sorted(n for n in held if not n.startswith("__"))
    a = Event(Kind.CASE_FILED, "e1", "/t", "jinshui", "c1", 1.0, unit="u1")
    assert a == Event(Kind.CASE_FILED, "e1", "/t", "jinshui", "c1", 1.0, unit="u1")
    assert a != Event(Kind.CASE_FILED, "e1", "/t", "jinshui", "c1", 1.0, unit="u2")
    assert all(f"{name}=" in repr(a) for name in _EVENT_FIELDS)

"""Who answers for what in the command centre: a district is covered once what its
partitions held when the worker took them is counted."""

from __future__ import annotations

from faust.types import TP

from streams.centre import Settling, counted_to_highwater

A, B = TP("incidents", 0), TP("patrols", 0)


def test_counted_once_every_partition_reached_its_high_watermark() -> None:
    assert counted_to_highwater({A: 120, B: 0}, {A: 120, B: None})
    assert counted_to_highwater({A: 120}, {A: 121}), "counted past it: live records since"


def test_not_counted_while_a_partition_is_behind_or_not_fetched_yet() -> None:
    # Records 100-119 were counted by the previous owner but never journaled: this
    # worker reads them again from the committed offset.
    assert not counted_to_highwater({A: 120, B: 5}, {A: 100, B: 5})
    assert not counted_to_highwater({A: None, B: 5}, {A: 0, B: 5}), "what A holds is unknown"
    assert not counted_to_highwater({A: 3}, {}), "nothing committed, nothing counted"


def test_no_partition_no_wait() -> None:
    assert counted_to_highwater({}, {})


def test_the_mark_is_taken_once_and_live_records_after_it_do_not_move_it() -> None:
    s = Settling()
    assert not s.check({A: None, B: 5}, {A: 0, B: 5}), "A's high watermark unknown: no mark"
    assert s.mark is None
    assert not s.check({A: 120, B: 5}, {A: 100, B: 5})
    assert s.mark == {A: 120, B: 5}
    # Live traffic: the high watermark is always a little ahead of what is counted, but the
    # records A held when the mark was taken are all counted now.
    assert s.check({A: 131, B: 9}, {A: 125, B: 7})
    assert s.check({A: 400, B: 90}, {A: 390, B: 80}), "reached holds until a reset"


def test_a_reset_or_other_partitions_take_a_new_mark() -> None:
    s = Settling()
    assert s.check({A: 10}, {A: 10})
    s.reset()
    assert not s.check({A: 50}, {A: 40}) and s.mark == {A: 50}
    assert not s.check({A: 60, B: 30}, {A: 55, B: 0}), "B joined: its records are not counted"
    assert s.mark == {A: 60, B: 30}
    assert s.check({A: 70, B: 35}, {A: 60, B: 30})

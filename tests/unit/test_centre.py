"""Who answers for what in the command centre: a district is covered once what its
partitions held when the worker took them is counted."""

from __future__ import annotations

from faust.types import TP

from streams.centre import counted_to_highwater

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

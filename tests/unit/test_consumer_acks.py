"""Acked offsets kept as runs: the same commits as Faust's list and set of every offset."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st
from intervaltree import IntervalTree

from streams.consumer import AckedOffsets, BatchConsumer, offset_runs
from tests.support import Record

TP0 = TP("incidents", 0)


def consecutive(offsets: list[int]) -> list[tuple[int, int]]:
    """Runs [start, end) of ascending offsets, by the textbook offset-minus-index key."""
    groups: dict[int, list[int]] = {}
    for i, o in enumerate(offsets):
        groups.setdefault(o - i, []).append(o)
    return [(g[0], g[-1] + 1) for g in groups.values()]


def test_runs_merge_touching_and_overlapping_ranges_and_count_what_is_new() -> None:
    a = AckedOffsets()
    assert not a and len(a) == 0
    assert a.add_range(10, 20) == 10
    assert a.add_range(20, 25) == 5, "adjacent: one run"
    assert a.runs() == [(10, 25)]
    assert a.add_range(30, 32) == 2 and a.add_range(0, 3) == 3
    assert a.runs() == [(0, 3), (10, 25), (30, 32)]
    assert a.add_range(2, 31) == 29 - (1 + 15 + 1), "fills both holes"
    assert a.runs() == [(0, 32)] and len(a) == 32
    assert 0 in a and 31 in a and 32 not in a and -1 not in a
    assert a.add_range(5, 9) == 0 and a.add_range(7, 7) == 0
    a.add(40)
    a.append(40)  # Faust's stream path adds and appends the same offset: once
    assert list(a)[-2:] == [31, 40] and a.end == 41 and a.first == 0
    assert a.pop_first() == (0, 32) and a.runs() == [(40, 41)]


ops = st.lists(
    st.one_of(
        st.tuples(st.just("range"), st.integers(0, 60), st.integers(0, 12)),
        st.tuples(st.just("one"), st.integers(0, 70), st.just(0)),
        st.tuples(st.just("pop"), st.just(0), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(ops, st.lists(st.integers(-2, 80), max_size=10))
def test_runs_hold_exactly_the_offsets_a_set_would(script: list[Any], probes: list[int]) -> None:
    runs, model = AckedOffsets(), set[int]()
    for op, x, n in script:
        if op == "range":
            new = set(range(x, x + n))
            assert runs.add_range(x, x + n) == len(new - model)
            model |= new
        elif op == "one":
            runs.add(x)
            model.add(x)
        elif model:
            start, end = runs.pop_first()
            first = consecutive(sorted(model))[0]
            assert (start, end) == first
            model -= set(range(start, end))
        assert list(runs) == sorted(model) and len(runs) == len(model)
        assert runs.runs() == consecutive(sorted(model)), "maximal runs, none touching"
        assert all((p in runs) == (p in model) for p in probes)
        if model:
            assert runs.end == max(model) + 1 and runs.first == min(model)


@given(st.lists(st.integers(0, 5), min_size=1, max_size=50), st.integers(0, 10**12))
def test_offset_runs_of_a_fetch(steps: list[int], base: int) -> None:
    offsets, o = [], base
    for step in steps:
        o += step + 1  # ascending, jumps where a step is above 0
        offsets.append(o)
    assert offset_runs([Record(x) for x in offsets]) == consecutive(offsets)
    assert offset_runs([]) == []


def books(runs: bool, committed: int | None) -> Any:
    """The parts of a consumer that acking and committing touch: Faust's list and set,
    or the runs."""
    c = SimpleNamespace(
        _committed_offset=defaultdict(lambda: committed),
        _gap=defaultdict(IntervalTree),
        _n_acked=0,
        _unacked_messages=set(),
        _waiting_for_ack=None,
        app=SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True)),
    )
    if runs:
        shared: defaultdict[TP, AckedOffsets] = defaultdict(AckedOffsets)
        c._acked = c._acked_index = shared
    else:
        c._acked, c._acked_index = defaultdict(list), defaultdict(set)
    return c


class Message:
    def __init__(self, offset: int) -> None:
        self.acked, self.tp, self.offset, self.topic = False, TP0, offset, TP0.topic


def faust_ack(c: Any, offset: int) -> None:
    message = Message(offset)
    FaustConsumer.ack(c, message)  # type: ignore[arg-type]


# A fetch: (jump before it, records in it); the flow: fetches, acks, re-acks, commits.
fetches = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.integers(1, 15),
        st.sampled_from(["ack", "ack", "ack+commit", "again", "hold"]),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(fetches, st.one_of(st.none(), st.integers(0, 5)))
def test_commits_are_the_ones_faust_would_make(flow: list[Any], committed: int | None) -> None:
    """Each fetch's gaps are noted as the batch consumer notes them; its records are
    acked by Faust's own ``ack``, record by record, on one side and as runs on the
    other; Faust's own ``_new_offset`` decides the commits of the first. Both sides
    commit the same offsets at the same moments."""
    faust, ours = books(False, committed), books(True, committed)
    offset = committed or 0
    read: int | None = committed
    held: list[list[Record]] = []
    acked_before: list[list[Record]] = []
    for jump, n, what in flow:
        part = [Record(o) for o in range(offset + jump, offset + jump + n)]
        if len(part) > 3 and jump:
            del part[len(part) // 2]  # a hole inside the fetch too
        offset = part[-1].offset + 1
        for c in (faust, ours):
            BatchConsumer._note_gaps(c, TP0, read, part)  # type: ignore[arg-type]
        read = offset
        held.append(part)
        if what == "hold":
            continue  # counted, its state not written yet: acked later
        if what == "again" and acked_before:
            held.append(acked_before[0])  # read again after a rewind: acked twice
        for p in held:
            for rec in p:
                faust_ack(faust, rec.offset)
            BatchConsumer.ack_runs(ours, TP0, offset_runs(p))  # type: ignore[arg-type]
        acked_before.extend(held)
        held = []
        assert list(ours._acked[TP0]) == sorted(faust._acked[TP0])
        assert ours._n_acked == faust._n_acked
        if what == "ack+commit":
            theirs = FaustConsumer._new_offset(faust, TP0)  # type: ignore[arg-type]
            mine = BatchConsumer._new_offset(ours, TP0)  # type: ignore[arg-type]
            assert mine == theirs
            if mine is not None:
                for c in (faust, ours):
                    if FaustConsumer._should_commit(c, TP0, mine):  # type: ignore[arg-type]
                        c._committed_offset[TP0] = mine


@settings(max_examples=300, deadline=None)
@given(fetches, st.one_of(st.none(), st.integers(0, 5)))
def test_the_gaps_noted_are_the_offsets_no_fetch_brought(
    flow: list[Any], committed: int | None
) -> None:
    c = books(True, committed)
    offset = committed or 0
    read: int | None = committed
    seen: set[int] = set()
    for jump, n, _ in flow:
        part = [Record(o) for o in range(offset + jump, offset + jump + n)]
        if len(part) > 3 and jump:
            del part[len(part) // 2]
        offset = part[-1].offset + 1
        BatchConsumer._note_gaps(c, TP0, read, part)  # type: ignore[arg-type]
        read = offset
        seen |= {r.offset for r in part}
    # Faust's rule: a gap never holds the committed offset itself (nor any before it).
    low = min(seen) if committed is None else committed + 1
    expected = {o for o in range(low, offset) if o not in seen}
    noted = {o for gap in c._gap[TP0] for o in range(gap.begin, gap.end)}
    assert noted == expected

"""Open hazards by deadline: the C heap and its Python twin both pop what heapq pops."""

from __future__ import annotations

import heapq
import os
import random
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import deadlines, native
from streams.deadlines import Deadlines, PyDeadlineHeap

PURE = os.environ.get("WATCHFLOOR_TEST_PURE") == "1"


def kinds() -> list[type[Deadlines]]:
    found: list[type[Deadlines]] = [PyDeadlineHeap]
    try:
        from streams._deadlines import DeadlineHeap as heap
    except ImportError:
        return found
    return [*found, heap]


KINDS = kinds()
ids_of = pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__module__)

# Few deadlines, rounds and ids, so that ties reach the round and the id.
entry = st.tuples(
    st.one_of(st.sampled_from([0.0, 1.5, -3.0, 1e9]), st.floats(allow_nan=False)),
    st.integers(0, 3),
    st.sampled_from(["h1", "h2", "h10", "", "危险-7"]),
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), entry),
        st.tuples(st.just("pop")),
        st.tuples(st.just("replace"), st.lists(entry, max_size=12)),
    ),
    max_size=150,
)


@ids_of
@settings(max_examples=200, deadline=None)
@given(ops=ops)
def test_a_heap_pops_what_heapq_pops(kind: type[Deadlines], ops: list[tuple]) -> None:
    heap = kind()
    model: list[tuple[float, int, str]] = []
    for op in ops:
        if op[0] == "push":
            heap.push(*op[1])
            heapq.heappush(model, op[1])
        elif op[0] == "pop":
            if model:
                assert heap.pop() == heapq.heappop(model)
            else:
                with pytest.raises(IndexError):
                    heap.pop()
        else:
            heap.replace_all(op[1])
            model = list(op[1])
            heapq.heapify(model)
        assert len(heap) == len(model)
        assert heap.first() == (model[0][0] if model else None)
    assert sorted(heap.entries()) == sorted(model)
    assert [heap.pop() for _ in range(len(model))] == sorted(model)


@ids_of
def test_many_entries_come_out_in_order_and_the_heap_shrinks(kind: type[Deadlines]) -> None:
    rng = random.Random(4)
    heap = kind()
    pushed = [(float(rng.randrange(1_000)), rng.randrange(3), f"h{i}") for i in range(20_000)]
    for e in pushed:
        heap.push(*e)
    out = [heap.pop() for _ in range(19_990)]
    assert out == sorted(pushed)[:19_990]
    if kind is not PyDeadlineHeap:
        assert sys.getsizeof(heap) < 24 * 1_000  # handed back as it emptied


@pytest.mark.skipif(len(KINDS) < 2, reason="the C heap is not built (pure install)")
def test_the_heap_grows_by_a_quarter_not_double() -> None:
    heap = KINDS[1]()
    header = sys.getsizeof(heap)  # no entries yet
    for n in range(1, 20_001):
        heap.push(float(n % 977), 0, "h")
        slots = (sys.getsizeof(heap) - header) // 24
        assert n <= slots <= max(8, n * 5 // 4 + 1), (n, slots)


@ids_of
@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ((float("nan"), 0, "h"), ValueError),
        ((1.0, 0, 7), TypeError),
        (("x", 0, "h"), TypeError),
        ((1.0, 0.5, "h"), TypeError),
    ],
)
def test_bad_entries_are_refused_and_add_nothing(kind: type[Deadlines], entry, error) -> None:
    heap = kind()
    with pytest.raises(error):
        heap.push(*entry)
    with pytest.raises(error):
        heap.replace_all([(1.0, 0, "ok"), entry])
    assert len(heap) == 0


@pytest.mark.skipif(len(KINDS) < 2, reason="the C heap is not built (pure install)")
def test_the_heap_holds_each_id_it_was_given_and_lets_it_go() -> None:
    heap = KINDS[1]()
    sid = "".join(["hazard-", "42"])  # an object of its own, not a shared constant
    before = sys.getrefcount(sid)
    heap.push(1.0, 0, sid)
    assert sys.getrefcount(sid) == before + 1
    assert heap.pop()[2] is sid
    assert sys.getrefcount(sid) == before
    heap.replace_all([(1.0, 0, sid), (2.0, 0, sid)])
    assert sys.getrefcount(sid) == before + 2
    heap.replace_all([])
    assert sys.getrefcount(sid) == before


def test_the_heap_is_the_one_in_use_where_it_is_built() -> None:
    if PURE or native.running_source():
        assert deadlines.DeadlineHeap is PyDeadlineHeap
        return
    assert len(KINDS) == 2, "streams/_deadlines.c is not built: run `make install`"
    assert deadlines.DeadlineHeap is KINDS[1]

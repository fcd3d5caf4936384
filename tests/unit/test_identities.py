"""The identities a stream applied: the C table and its Python twin both hold what a dict holds."""

from __future__ import annotations

import os
import random
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import identities, native
from streams.identities import Memory, PyIdentityMemory

PURE = os.environ.get("WATCHFLOOR_TEST_PURE") == "1"


def kinds() -> list[type[Memory]]:
    found: list[type[Memory]] = [PyIdentityMemory]
    try:
        from streams._identities import IdentityMemory as table
    except ImportError:
        return found
    return [*found, table]


KINDS = kinds()
ids_of = pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__module__)

identity = st.integers(min_value=1, max_value=(1 << 64) - 1)
day = st.integers(min_value=-(1 << 31), max_value=(1 << 31) - 1)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), identity, day),
        # Identities drawn from a few, so adds hit what is kept and expiries cut through it.
        st.tuples(st.just("add"), st.integers(min_value=1, max_value=40), st.integers(-5, 5)),
        st.tuples(st.just("expire"), st.integers(-7, 7)),
    ),
    max_size=300,
)


def by_day_of(model: dict[int, int]) -> list[list[object]]:
    days = sorted(set(model.values()))
    return [[d, sorted(i for i, v in model.items() if v == d)] for d in days]


@ids_of
@settings(max_examples=150, deadline=None)
@given(ops=ops, probes=st.lists(st.tuples(identity, day), max_size=20))
def test_a_memory_holds_what_a_dict_of_latest_days_holds(
    kind: type[Memory], ops: list[tuple], probes: list[tuple[int, int]]
) -> None:
    memory = kind()
    model: dict[int, int] = {}
    for op in ops:
        if op[0] == "add":
            memory.add(op[1], op[2])
            model[op[1]] = op[2]
        else:
            gone = [i for i, d in model.items() if d < op[1]]
            assert memory.expire(op[1]) == len(gone)
            for i in gone:
                del model[i]
        assert len(memory) == len(model)
    for i, d in [*model.items(), *probes]:
        assert memory.day_of(i) == model.get(i)
        kept = model.get(i)
        assert memory.seen(i, d) is (kept is not None and kept >= d)
        assert memory.seen(i, -(1 << 62)) is (kept is not None)
    assert memory.by_day() == by_day_of(model)


@ids_of
def test_many_identities_grow_and_shrink_the_table(kind: type[Memory]) -> None:
    rng = random.Random(7)
    memory = kind()
    model: dict[int, int] = {}
    for n in range(20_000):
        i = rng.getrandbits(64) or 1
        d = 20_000 + n // 1_000
        memory.add(i, d)
        model[i] = d
    assert len(memory) == len(model)
    assert all(memory.seen(i, d) for i, d in model.items())
    assert memory.expire(20_015) == 15_000
    assert len(memory) == 5_000
    assert all(memory.seen(i, d) is (d >= 20_015) for i, d in model.items())
    assert memory.expire(20_015) == 0
    assert memory.expire(30_000) == 5_000
    assert len(memory) == 0 and memory.by_day() == []
    memory.add(5, 1)
    assert memory.by_day() == [[1, [5]]]


@ids_of
def test_an_identity_applied_again_keeps_its_latest_day_and_survives_its_first(
    kind: type[Memory],
) -> None:
    memory = kind()
    memory.add(99, 10)
    memory.add(98, 10)
    memory.add(99, 20)
    assert memory.expire(11) == 1
    assert memory.day_of(99) == 20 and memory.day_of(98) is None
    assert memory.by_day() == [[20, [99]]]


@ids_of
def test_a_day_of_a_snapshot_is_added_at_once(kind: type[Memory]) -> None:
    memory = kind()
    memory.add_day(3, [7, 1, (1 << 64) - 1])
    memory.add_day(4, (i for i in [1]))
    assert memory.by_day() == [[3, [7, (1 << 64) - 1]], [4, [1]]]


@ids_of
@pytest.mark.parametrize("bad", [0, -1, 1 << 64])
def test_an_identity_outside_64_bits_or_zero_is_refused(kind: type[Memory], bad: int) -> None:
    memory = kind()
    with pytest.raises((ValueError, OverflowError)):
        memory.add(bad, 1)
    assert len(memory) == 0


def test_the_table_is_the_one_in_use_where_it_is_built() -> None:
    if PURE or native.running_source():
        assert identities.IdentityMemory is PyIdentityMemory
        return
    assert len(KINDS) == 2, "streams/_identities.c is not built: run `make install`"
    assert identities.IdentityMemory is KINDS[1]


@pytest.mark.skipif(len(KINDS) < 2, reason="the C table is not built (pure install)")
def test_the_table_takes_a_fraction_of_a_dict() -> None:
    rng = random.Random(3)
    table = KINDS[1]()
    ids = [rng.getrandbits(64) or 1 for _ in range(1_000)]
    for i in ids:
        table.add(i, 20_000)
    # What the dicts took: each identity an int object and a dict slot, and a list entry.
    as_dicts = sum(sys.getsizeof(i) for i in ids) + sys.getsizeof(dict.fromkeys(ids, 0)) + 8 * 1_000
    # 12 bytes an entry, the table between a half and three quarters full.
    assert sys.getsizeof(table) <= 24 * 1_000 + 128
    assert sys.getsizeof(table) * 3 < as_dicts


@pytest.mark.skipif(len(KINDS) < 2, reason="the C table is not built (pure install)")
def test_the_table_is_between_half_and_three_quarters_full_as_it_grows_and_expires() -> None:
    # A power of two doubled at three quarters full was three eighths full after each
    # growth: a district's identities then took 27.5 bytes each, not 12 / 0.6.
    rng = random.Random(11)
    table = KINDS[1]()
    header = sys.getsizeof(table)  # no slots yet

    def slots() -> int:
        return (sys.getsizeof(table) - header) // 12

    for n in range(1, 5_001):
        table.add(rng.getrandbits(64) or 1, n // 500)
        assert n * 4 <= slots() * 3, n
        assert slots() == 8 or slots() <= 2 * n, (n, slots())
    table.expire(7)  # days 7-10 stay: 1,501 identities
    n = len(table)
    assert n == 1_501
    assert n * 4 <= slots() * 3 and slots() <= 2 * n

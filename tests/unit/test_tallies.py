"""Counts per (bucket, measure): the C table and its Python twin both hold what a dict holds."""

from __future__ import annotations

import os
import random
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import native, tallies
from streams.tallies import BUCKET_LIMIT, Counts, PyTally

PURE = os.environ.get("WATCHFLOOR_TEST_PURE") == "1"
WIDTH = 18


def kinds() -> list[type[Counts]]:
    found: list[type[Counts]] = [PyTally]
    try:
        from streams._tallies import Tally as table
    except ImportError:
        return found
    return [*found, table]


KINDS = kinds()
ids_of = pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__module__)

# Buckets from a few, around 0 (floor division of negative keys) and far out; counts
# small, near the 64-bit edges and beyond them.
bucket = st.one_of(
    st.integers(-6, 6),
    st.integers(min_value=-BUCKET_LIMIT + 1, max_value=BUCKET_LIMIT - 1),
)
count = st.one_of(
    st.integers(-3, 3),
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.sampled_from([(1 << 63) - 1, -(1 << 63), 1 << 62, -(1 << 62)]),
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), bucket, st.integers(0, WIDTH - 1), count),
        st.tuples(st.just("drop"), st.integers(-7, 7)),
        st.tuples(
            st.just("load"),
            st.lists(st.tuples(bucket, st.lists(count, max_size=WIDTH)), max_size=4),
        ),
    ),
    max_size=120,
)


def rows_of(model: dict[int, list[int]]) -> list[list[object]]:
    return [[b, list(model[b])] for b in sorted(model)]


def sum_of(model: dict[int, list[int]], lo: int, hi: int) -> list[int]:
    out = [0] * WIDTH
    for b, row in model.items():
        if lo <= b < hi:
            out = [x + y for x, y in zip(out, row, strict=True)]
    return out


@ids_of
@settings(max_examples=200, deadline=None)
@given(ops=ops, spans=st.lists(st.tuples(bucket, bucket), max_size=10))
def test_a_tally_holds_what_a_dict_of_count_rows_holds(
    kind: type[Counts], ops: list[tuple], spans: list[tuple[int, int]]
) -> None:
    tally = kind(WIDTH)
    model: dict[int, list[int]] = {}
    for op in ops:
        if op[0] == "add":
            _, b, m, n = op
            tally.add(b, m, n)
            model.setdefault(b, [0] * WIDTH)[m] += n
        elif op[0] == "drop":
            tally.drop_below(op[1])
            model = {b: row for b, row in model.items() if b >= op[1]}
        else:
            tally.load([[b, list(counts)] for b, counts in op[1]])
            for b, counts in op[1]:
                row = model.setdefault(b, [0] * WIDTH)
                for m, n in enumerate(counts):
                    row[m] += n
        assert len(tally) == len(model)
    assert tally.rows() == rows_of(model)
    assert tally.buckets() == sorted(model)
    for b in [*model, *(lo for lo, _ in spans)]:
        assert tally.row(b) == model.get(b)
    for lo, hi in [*spans, (-BUCKET_LIMIT + 1, BUCKET_LIMIT - 1), (-6, 6)]:
        out = [0] * WIDTH
        tally.sum_into(out, lo, hi)
        assert out == sum_of(model, lo, hi)
        # It adds to what the list holds, as a window's sum over three resolutions needs.
        out = list(range(WIDTH))
        tally.sum_into(out, lo, hi)
        assert out == [i + n for i, n in enumerate(sum_of(model, lo, hi))]


@ids_of
def test_sums_past_64_bits_are_exact(kind: type[Counts]) -> None:
    tally = kind(WIDTH)
    top = (1 << 63) - 1
    for b in range(4):
        tally.add(b, 17, top)  # each fits; their sum does not
    tally.add(9, 3, top)
    tally.add(9, 3, 1)  # this count itself leaves 64 bits
    tally.add(9, 3, -(1 << 64))
    out = [0] * WIDTH
    tally.sum_into(out, 0, 10)
    assert out[17] == 4 * top and out[3] == top + 1 - (1 << 64)
    assert tally.row(9) == [0, 0, 0, top + 1 - (1 << 64), *[0] * 14]
    tally.drop_below(5)
    assert tally.rows() == [[9, [0, 0, 0, top + 1 - (1 << 64), *[0] * 14]]]
    tally.drop_below(10)
    assert tally.rows() == [] and len(tally) == 0


@ids_of
def test_many_buckets_grow_and_shrink_the_table(kind: type[Counts]) -> None:
    rng = random.Random(5)
    tally = kind(WIDTH)
    model: dict[int, list[int]] = {}
    for _ in range(30_000):
        b, m, n = rng.randrange(-5_000, 5_000), rng.randrange(WIDTH), rng.randrange(1, 9)
        tally.add(b, m, n)
        model.setdefault(b, [0] * WIDTH)[m] += n
    assert tally.rows() == rows_of(model)
    tally.drop_below(4_000)
    model = {b: r for b, r in model.items() if b >= 4_000}
    assert tally.rows() == rows_of(model)
    for m, n in enumerate(sum_of(model, 4_000, 5_000)):
        tally.add(4_000, m, -n)  # a bucket whose counts came back to zero is still held
    assert tally.row(4_000) is not None


@ids_of
def test_a_snapshot_row_of_zeros_or_of_fewer_measures_loads_as_a_dict_holds_it(
    kind: type[Counts],
) -> None:
    tally = kind(WIDTH)
    tally.load([[3, [0] * WIDTH], [-2, [5, 0, 7]], (4, (1,))])
    assert tally.rows() == [
        [-2, [5, 0, 7, *[0] * 15]], [3, [0] * WIDTH], [4, [1, *[0] * 17]]
    ]


@ids_of
@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda t: t.add(BUCKET_LIMIT, 0, 1), OverflowError),
        (lambda t: t.add(0, WIDTH, 1), ValueError),
        (lambda t: t.add(0, -1, 1), ValueError),
        (lambda t: t.add(0, 0, 1.5), TypeError),
        (lambda t: t.add(1.5, 0, 1), TypeError),
        (lambda t: t.add(0, 1.0, 1), TypeError),
        (lambda t: t.load([[0, [0] * (WIDTH + 1)]]), ValueError),
        (lambda t: t.load([[0, ["1"]]]), TypeError),
    ],
)
def test_bad_arguments_are_refused_and_add_nothing(kind: type[Counts], call, error) -> None:
    tally = kind(WIDTH)
    with pytest.raises(error):
        call(tally)
    assert len(tally) == 0


def test_the_table_is_the_one_in_use_where_it_is_built() -> None:
    if PURE or native.running_source():
        assert tallies.Tally is PyTally
        return
    assert len(KINDS) == 2, "streams/_tallies.c is not built: run `make install`"
    assert tallies.Tally is KINDS[1]


@pytest.mark.skipif(len(KINDS) < 2, reason="the C table is not built (pure install)")
def test_the_table_takes_a_fraction_of_a_dict_of_lists() -> None:
    # What an hour of the benchmark's city holds: three counts of 18 not zero.
    rng = random.Random(3)
    table = KINDS[1](WIDTH)
    rows = {}
    for b in range(1_000):
        for m in rng.sample(range(WIDTH), 3):
            table.add(b, m, rng.randrange(1, 300))
            rows.setdefault(b, [0] * WIDTH)[m] += 1
    as_lists = sys.getsizeof(rows) + sum(
        sys.getsizeof(r) + sys.getsizeof(b) for b, r in rows.items()
    )
    # 16 bytes a count, the table between a half and three quarters full (a power of two
    # doubled at three quarters was three eighths full after each growth).
    assert sys.getsizeof(table) <= 16 * 3_000 * 2 + 128
    assert sys.getsizeof(table) * 3 < as_lists


@pytest.mark.skipif(len(KINDS) < 2, reason="the C table is not built (pure install)")
def test_the_table_is_between_half_and_three_quarters_full_as_it_grows_and_drops() -> None:
    rng = random.Random(12)
    table = KINDS[1](WIDTH)
    header = sys.getsizeof(table)  # no entries yet

    def slots() -> int:
        return (sys.getsizeof(table) - header) // 16

    counts: set[tuple[int, int]] = set()
    for b in range(4_000):
        m = rng.randrange(WIDTH)
        table.add(b, m, 1)
        counts.add((b, m))
        n = len(counts)  # the entries: one per (bucket, measure) ever added
        assert n * 4 <= slots() * 3, n
        assert slots() == 8 or slots() <= 2 * n, (n, slots())
    table.drop_below(3_000)
    n = sum(1 for b, _ in counts if b >= 3_000)
    assert n * 4 <= slots() * 3 and slots() <= 2 * n

"""Counts per (bucket, measure): a district's 5-minute slots and hours.

Each count added lands in one slot and one hour, and a read sums the buckets of a
stretch. As a dict of one list of 18 ints a bucket, where one to four counts are not
zero, slots and hours took 154 to 269 bytes a bucket (60 MiB at 1,000 districts after
1,000,000 events) and three dependent loads per count. Built with a C compiler,
``Tally`` is the flat table of ``streams/_tallies.c``: 16 bytes a count ever added.
``PyTally`` is the same contract in Python: the fallback without a compiler, the hot
path's source runs (``streams/native.py``), and the reference the table is tested
against.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from . import native

# Buckets are slot or hour numbers of event times the schemas bound to years 1 to 9999;
# the C table keys a count by bucket * 32 + measure in 64 bits.
BUCKET_LIMIT = 1 << 56
MAX_WIDTH = 32


class PyTally:
    """Bucket -> counts by measure (``width`` of them); a bucket added to is held, even
    if its counts are zero, until ``drop_below`` passes it."""

    __slots__ = ("_rows", "width")

    def __init__(self, width: int) -> None:
        if not 1 <= width <= MAX_WIDTH:
            raise ValueError(f"a tally holds from 1 to {MAX_WIDTH} measures a bucket.")
        self.width = width
        self._rows: dict[int, list[int]] = {}

    def add(self, bucket: int, measure: int, n: int) -> None:
        """Count ``n`` more of the measure in the bucket."""
        _check(bucket)
        if not isinstance(measure, int):
            raise TypeError(f"a measure is an int, not {type(measure).__name__}")
        if not 0 <= measure < self.width:
            raise ValueError(f"a measure is a number from 0 to {self.width - 1}.")
        if not isinstance(n, int):
            raise TypeError(f"a count is an int, not {type(n).__name__}")
        row = self._rows.get(bucket)
        if row is None:
            row = self._rows[bucket] = [0] * self.width
        row[measure] += n

    def sum_into(self, out: list[int], lo: int, hi: int) -> None:
        """``out[measure] +=`` the counts of the buckets ``lo <= bucket < hi``."""
        _check(lo)
        _check(hi)
        for bucket, row in self._rows.items():
            if lo <= bucket < hi:
                for m, n in enumerate(row):
                    if n:
                        out[m] += n

    def drop_below(self, first: int) -> None:
        """Forget the buckets before ``first``."""
        _check(first)
        old = [b for b in self._rows if b < first]
        if old:
            self._rows = {b: row for b, row in self._rows.items() if b >= first}

    def row(self, bucket: int) -> list[int] | None:
        """The bucket's counts by measure, None if it is not held."""
        row = self._rows.get(bucket)
        return None if row is None else list(row)

    def rows(self) -> list[list[object]]:
        """``[[bucket, counts], ...]``, buckets ascending."""
        return [[b, list(self._rows[b])] for b in sorted(self._rows)]

    def buckets(self) -> list[int]:
        """The buckets held, ascending."""
        return sorted(self._rows)

    def load(self, rows: Iterable[list[object]]) -> None:
        """Add the counts of ``[[bucket, counts], ...]`` rows (a snapshot's; a row
        shorter than ``width`` lacks the measures added since it was written)."""
        for bucket, counts in rows:
            counts = cast("list[int]", counts)
            if len(counts) > self.width:
                raise ValueError(f"a row holds at most {self.width} counts.")
            b = cast("int", bucket)
            _check(b)
            for n in counts:  # checked before any is added, so a bad row adds nothing
                if not isinstance(n, int):
                    raise TypeError(f"a count is an int, not {type(n).__name__}")
            row = self._rows.get(b)
            if row is None:
                row = self._rows[b] = [0] * self.width
            for m, n in enumerate(counts):
                row[m] += n

    def __len__(self) -> int:
        return len(self._rows)


def _check(bucket: int) -> None:
    # As strict as the C table: an int, within the keys' 64 bits.
    if not isinstance(bucket, int):
        raise TypeError(f"a bucket is an int, not {type(bucket).__name__}")
    if not -BUCKET_LIMIT < bucket < BUCKET_LIMIT:
        raise OverflowError("a bucket is a number of slots or hours within 2**56 of 1970.")


# The contract both tables keep (the C one's types: streams/_tallies.pyi).
Counts = PyTally


_TABLE = native.extension("_tallies")
# The C table where built (the same methods, checked by the tests); the Python twin otherwise.
Tally: type[Counts] = PyTally if _TABLE is None else cast("type[Counts]", _TABLE.Tally)

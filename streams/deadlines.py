"""A district's open hazards by rectification deadline, earliest first.

The overdue timer asks one question per tick: which deadline comes next? A heap of
``(deadline, round, id)`` tuples answers it, but at about 100 bytes an entry (the tuple,
the float, the list's slot) it was 19 MiB at 1,000 districts after 1,000,000 events,
and every found hazard built a tuple. Built with a C compiler, ``DeadlineHeap`` is the
flat heap of ``streams/_deadlines.c``: 24 bytes an entry. ``PyDeadlineHeap`` is the same
contract in Python (on ``heapq``): the fallback without a compiler, the hot path's
source runs (``streams/native.py``), and the reference the C heap is tested against.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import cast

from . import native


class PyDeadlineHeap:
    """``(deadline, round, id)`` entries, popped in tuple order: earliest deadline first."""

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []

    def push(self, deadline: float, round: int, sid: str) -> None:
        heapq.heappush(self._heap, _entry(deadline, round, sid))

    def first(self) -> float | None:
        """The earliest deadline held, None when empty."""
        return self._heap[0][0] if self._heap else None

    def pop(self) -> tuple[float, int, str]:
        """The earliest entry, removed (IndexError when empty)."""
        if not self._heap:
            raise IndexError("pop from an empty deadline heap.")
        return heapq.heappop(self._heap)

    def replace_all(self, entries: Iterable[tuple[float, int, str]]) -> None:
        """Hold exactly these entries."""
        heap = [_entry(*e) for e in entries]
        heapq.heapify(heap)
        self._heap = heap

    def entries(self) -> list[tuple[float, int, str]]:
        """Every entry held, in heap order."""
        return list(self._heap)

    def __len__(self) -> int:
        return len(self._heap)


def _entry(deadline: float, round: int, sid: str) -> tuple[float, int, str]:
    # As strict as the C heap: numbers only, a whole number of rounds, a str id.
    if not isinstance(sid, str):
        raise TypeError(f"an id is a str, not {type(sid).__name__}")
    if not isinstance(deadline, int | float) or not isinstance(round, int):
        raise TypeError("a deadline is a number of seconds and a round a whole number.")
    d = float(deadline)
    if d != d:
        raise ValueError("a deadline is a number of seconds, not NaN.")
    return (d, int(round), sid)


# The contract both heaps keep (the C one's types: streams/_deadlines.pyi).
Deadlines = PyDeadlineHeap


_HEAP = native.extension("_deadlines")
# The C heap where built (the same methods, checked by the tests); the Python twin otherwise.
DeadlineHeap: type[Deadlines] = (
    PyDeadlineHeap if _HEAP is None else cast("type[Deadlines]", _HEAP.DeadlineHeap)
)

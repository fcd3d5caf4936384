"""The identities a district's stream has applied, each with the UTC day it was last applied on.

De-duplication asks one question per event: was this identity applied, on a day the
horizon still covers? A dict from int to day answers it, but at about 100 bytes an
identity (the int object, the dict's slot, a list by day for expiry) it was a fifth of
a district's memory. Built with a C compiler, ``IdentityMemory`` is the flat table of
``streams/_identities.c``: 12 bytes an entry in two arrays. ``PyIdentityMemory`` is the
same contract in Python: the fallback without a compiler, the hot path's source runs
(``streams/native.py``), and the reference the table is tested against.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from . import native


class PyIdentityMemory:
    """Identity -> the UTC day it was last applied on (identities are 1 .. 2**64 - 1)."""

    __slots__ = ("_days", "_oldest")

    def __init__(self) -> None:
        self._days: dict[int, int] = {}
        # No day held is older: an expiry before it has nothing to scan.
        self._oldest: int | None = None

    def add(self, identity: int, day: int) -> None:
        """The identity was applied on that day: its latest, even if an earlier is kept."""
        if not 0 < identity < 1 << 64:
            raise ValueError("an identity is a number from 1 to 2**64 - 1.")
        self._days[identity] = day
        if self._oldest is None or day < self._oldest:
            self._oldest = day

    def add_day(self, day: int, identities: Iterable[int]) -> None:
        for identity in identities:
            self.add(identity, day)

    def seen(self, identity: int, first_day: int) -> bool:
        """Kept, and last applied on ``first_day`` or later."""
        day = self._days.get(identity)
        return day is not None and day >= first_day

    def day_of(self, identity: int) -> int | None:
        return self._days.get(identity)

    def expire(self, first_day: int) -> int:
        """Forget the identities last applied before ``first_day``; say how many."""
        if self._oldest is None or self._oldest >= first_day:
            return 0
        kept = {i: d for i, d in self._days.items() if d >= first_day}
        gone = len(self._days) - len(kept)
        self._days = kept
        self._oldest = min(kept.values()) if kept else None
        return gone

    def by_day(self) -> list[list[object]]:
        """``[[day, [identity, ...]], ...]``, days and identities ascending."""
        per: dict[int, list[int]] = {}
        for identity, day in self._days.items():
            per.setdefault(day, []).append(identity)
        return [[day, sorted(per[day])] for day in sorted(per)]

    def __len__(self) -> int:
        return len(self._days)


# The contract both tables keep (the C one's types: streams/_identities.pyi).
Memory = PyIdentityMemory


_TABLE = native.extension("_identities")
# The C table where built (the same methods, checked by the tests); the Python twin otherwise.
IdentityMemory: type[Memory] = (
    PyIdentityMemory if _TABLE is None else cast("type[Memory]", _TABLE.IdentityMemory)
)

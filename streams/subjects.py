"""What is known of one case, dispute, hazard or patrol run, packed into few slots."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from .categories import category_code, category_name

# Subject flags: which transitions a subject has seen in its current round.
OPENED = 1  # case filed, dispute reported, hazard found
CLOSED = 2  # case cleared, patrol completed
MEDIATED = 4
RESOLVED = 8
ESCALATED = 16
RECTIFIED = 32
VERIFIED = 64  # a look-back visit confirmed the rectification
# The subject sits in the numerator of its opening's cohort (found/filed/reported and
# closed since); only counted closings put it there, so a late one never moves a window.
COHORT = 128
# The closing that admits it to the cohort (a rectification or confirming visit, a
# clearance, a resolution) was counted, not applied late.
CLOSE_COUNTED = 256


# What a Subject stores for a time it does not know (None to its readers).
_UNKNOWN = float("nan")
# Bits of Subject.flags above the transitions, which are all a snapshot row's flags hold:
# whether the slot of the steps pending holds an accident's figures instead (an accident
# has one step, so never both), whether it holds the time of the latest failed look-back
# visit (see Subject.reopened_at), the major flag, the category's code plus one (0: not
# known; categories.py) and from _ROUND_SHIFT on the round. Six fields folded into the
# flags and one shared slot make a compiled Subject 112 bytes, not 160 (about 22 MiB at
# 1,000 districts after 1,000,000 events).
_TRANSITIONS = (1 << 12) - 1
_FIGURES = 1 << 12
_MAJOR = 1 << 13
_REOPENED = 1 << 14
_CATEGORY_SHIFT = 15
_CATEGORY_MASK = (1 << 16) - 1  # far above the categories the schemas allow (tens)
_ROUND_SHIFT = 31
_NOT_ROUND = (1 << _ROUND_SHIFT) - 1
_NOT_CATEGORY = ~(_CATEGORY_MASK << _CATEGORY_SHIFT)


def _category_bits(name: str | None) -> int:
    if name is None:
        return 0
    code = category_code(name) + 1
    if code > _CATEGORY_MASK:
        raise ValueError(f"More than {_CATEGORY_MASK - 1} categories: {name!r} has no room.")
    return code << _CATEGORY_SHIFT


class Subject:
    """What is known of one case, dispute, hazard or patrol run.

    Its optional times are stored as plain floats, NaN for "not known", and read and
    written as ``float | None`` through properties: compiled, a ``float | None``
    attribute holds a float object of its own (32 bytes each, up to four a subject:
    about 28 MiB at 1,000 districts after 1,000,000 events), a ``float`` one is stored
    in the subject itself.
    """

    __slots__ = (
        "_closed_at",
        "_deadline",
        "_extra",
        "_opened",
        "community",
        "flags",
        "last",
        "sid",
        "unit",
    )

    def __init__(
        self,
        flags: int,
        opened: float | None,
        last: float,
        category: str | None = None,
        deadline: float | None = None,
        major: bool = False,
        round: int = 0,
        closed_at: float | None = None,
        reopened_at: float | None = None,
        community: str | None = None,
        unit: str | None = None,
        pending: list[list[float]] | None = None,
        figures: list[int] | None = None,
        sid: str = "",
    ) -> None:
        # The transitions of the current round; above them, see _TRANSITIONS.
        self.flags = (
            (flags & _TRANSITIONS)
            | (_MAJOR if major else 0)
            | (round << _ROUND_SHIFT)
            | (_FIGURES if figures is not None else 0)
            | _category_bits(category)
        )
        # Accidents: [deaths, serious injuries, direct loss in yuan] of the latest report.
        # The others: steps counted before the opening told the category, [[measure,
        # time], ...], filed under the category when the opening arrives; with _REOPENED,
        # see reopened_at.
        self._extra: Any = figures if figures is not None else pending
        # Time of the opening transition, None until it arrives.
        self._opened: float = _UNKNOWN if opened is None else opened
        self.last: float = last  # time of the latest transition applied
        self._deadline: float = _UNKNOWN if deadline is None else deadline
        # Hazards: time of the current round's rectification (or confirming visit);
        # cases and disputes: time of the closing.
        self._closed_at: float = _UNKNOWN if closed_at is None else closed_at
        if reopened_at is not None:
            self.reopened_at = reopened_at
        self.community = community
        self.unit = unit  # the responsible unit (hazards, disputes)
        # The id its group's dict holds it under, that very string: the closings' lists,
        # the deadline heap and the other indexes point at it, where the id of a later
        # event (an object of its own, 65 bytes) kept a copy alive for every closing.
        self.sid = sid

    @property
    def opened(self) -> float | None:
        t = self._opened
        return None if t != t else t

    @opened.setter
    def opened(self, t: float | None) -> None:
        self._opened = _UNKNOWN if t is None else t

    @property
    def deadline(self) -> float | None:
        t = self._deadline
        return None if t != t else t

    @deadline.setter
    def deadline(self, t: float | None) -> None:
        self._deadline = _UNKNOWN if t is None else t

    @property
    def closed_at(self) -> float | None:
        t = self._closed_at
        return None if t != t else t

    @closed_at.setter
    def closed_at(self, t: float | None) -> None:
        self._closed_at = _UNKNOWN if t is None else t

    @property
    def reopened_at(self) -> float | None:
        """Hazards: time of the latest failed look-back visit. A rectification from before
        it, or a visit from before the current rectification, is an outgrown step.

        Few hazards have one, so it has no slot of its own: with _REOPENED, the slot of
        the steps pending holds it, as a float, or [time, steps] while steps are pending
        (a failed visit that came before the opening)."""
        if not self.flags & _REOPENED:
            return None
        extra = self._extra
        t: float = extra if isinstance(extra, float) else extra[0]
        return t

    @reopened_at.setter
    def reopened_at(self, t: float | None) -> None:
        if t is None:
            if self.flags & _REOPENED:
                steps = self.pending
                self.flags &= ~_REOPENED
                self._extra = steps
            return
        steps = self.pending
        self.flags |= _REOPENED
        self._extra = float(t) if steps is None else [float(t), steps]

    @property
    def category(self) -> str | None:
        code = (self.flags >> _CATEGORY_SHIFT) & _CATEGORY_MASK
        return None if code == 0 else category_name(code - 1)

    @category.setter
    def category(self, name: str | None) -> None:
        self.flags = (self.flags & _NOT_CATEGORY) | _category_bits(name)

    @property
    def major(self) -> bool:
        return bool(self.flags & _MAJOR)

    @major.setter
    def major(self, value: bool) -> None:
        self.flags = self.flags | _MAJOR if value else self.flags & ~_MAJOR

    @property
    def round(self) -> int:
        """Hazards: failed look-back visits so far; each starts a new round."""
        return self.flags >> _ROUND_SHIFT

    @round.setter
    def round(self, n: int) -> None:
        self.flags = (self.flags & _NOT_ROUND) | (n << _ROUND_SHIFT)

    @property
    def pending(self) -> list[list[float]] | None:
        flags = self.flags
        if flags & _FIGURES:
            return None
        extra = self._extra
        if flags & _REOPENED:
            if isinstance(extra, float):
                return None
            extra = extra[1]
        steps: list[list[float]] | None = extra
        return steps

    @pending.setter
    def pending(self, steps: list[list[float]] | None) -> None:
        if self.flags & _REOPENED:
            t = self.reopened_at
            self._extra = t if steps is None else [t, steps]
        elif steps is not None:
            self._extra = steps
            self.flags &= ~_FIGURES
        elif not self.flags & _FIGURES:
            self._extra = None

    @property
    def figures(self) -> list[int] | None:
        return self._extra if self.flags & _FIGURES else None

    @figures.setter
    def figures(self, values: list[int] | None) -> None:
        if values is not None:
            self._extra = values
            self.flags |= _FIGURES
        elif self.flags & _FIGURES:
            self._extra = None
            self.flags &= ~_FIGURES

    def to_row(self, sid: str) -> list[Any]:
        return [
            sid,
            self.flags & _TRANSITIONS,
            self.opened,
            self.last,
            self.category,
            self.deadline,
            self.major,
            self.round,
            self.closed_at,
            self.reopened_at,
            self.community,
            self.unit,
            self.pending,
            self.figures,
        ]

    @classmethod
    def from_row(cls, row: list[Any]) -> tuple[str, Subject]:
        row = row + [None] * (14 - len(row))  # rows of snapshot version 1 had 8 fields
        sid, flags, opened, last, category, deadline, major, rnd = row[:8]
        closed_at, reopened_at, community, unit, pending, figures = row[8:14]
        return sid, cls(
            flags,
            opened,
            last,
            category,  # kept as its code (categories.py): no copy of the name stays
            deadline,
            major,
            rnd,
            closed_at,
            reopened_at,
            None if community is None else sys.intern(community),
            None if unit is None else sys.intern(unit),
            pending,
            figures,
            sid,
        )


def subjects_of_rows(rows: Iterable[list[Any]]) -> dict[str, Subject]:
    """The subjects of snapshot rows; what :meth:`Subject.from_row` does, inlined.

    A restart decodes every subject of every district (hundreds of thousands at 1,000
    districts), so the per-row call, tuple and padding are worth saving.
    """
    out: dict[str, Subject] = {}
    new = Subject
    intern = sys.intern
    for row in rows:
        if len(row) != 14:  # rows of snapshot version 1 had 8 fields
            row = row + [None] * (14 - len(row))
        (sid, flags, opened, last, category, deadline, major, rnd, closed_at, reopened_at,
         community, unit, pending, figures) = row  # fmt: skip
        out[sid] = new(
            flags,
            opened,
            last,
            category,
            deadline,
            major,
            rnd,
            closed_at,
            reopened_at,
            None if community is None else intern(community),
            None if unit is None else intern(unit),
            pending,
            figures,
            sid,
        )
    return out

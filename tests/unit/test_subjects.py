"""Subject: the fields of one lifecycle, packed into few slots, and its snapshot rows."""

from __future__ import annotations

import random
from datetime import datetime
from zoneinfo import ZoneInfo

from streams.subjects import CLOSE_COUNTED, COHORT, OPENED, RECTIFIED, Subject

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 4, 12, 9, 0, tzinfo=TZ).timestamp()  # a fixed epoch
D = 86400.0


def test_a_subjects_packed_fields_move_independently_and_rows_keep_their_format() -> None:
    """Round, major flag, category, pending steps, figures and the latest failed visit
    share the flags and one slot in a Subject; truth: a plain dict of the same fields,
    set in random order."""
    rng = random.Random(11)
    for _ in range(300):
        accident = rng.random() < 0.5
        model: dict[str, object] = {"flags": 0, "round": 0, "major": False,
                                    "pending": None, "figures": None, "category": None,
                                    "reopened": None}
        s = Subject(0, None, T0, sid="h1")
        for _ in range(16):
            field = rng.choice(["flags", "clear", "round", "major", "extra", "none",
                                "category", "reopened"])
            if field == "flags":
                bit = rng.choice([OPENED, RECTIFIED, COHORT, CLOSE_COUNTED])
                s.flags |= bit
                model["flags"] = int(model["flags"]) | bit  # type: ignore[call-overload]
            elif field == "clear":
                s.flags &= ~(RECTIFIED | COHORT | CLOSE_COUNTED)
                model["flags"] = int(model["flags"]) & ~(RECTIFIED | COHORT | CLOSE_COUNTED)  # type: ignore[call-overload]
            elif field == "round":
                s.round += 1
                model["round"] = int(model["round"]) + 1  # type: ignore[call-overload]
            elif field == "major":
                s.major = model["major"] = rng.random() < 0.5
            elif field == "category":
                s.category = model["category"] = rng.choice([None, "fire", "gas", "traffic"])
            elif field == "reopened" and not accident:
                s.reopened_at = model["reopened"] = rng.choice([None, T0 + rng.randrange(99)])
            elif field == "reopened":
                continue  # an accident has no look-back visit
            elif field == "extra" and accident:
                s.figures = model["figures"] = [rng.randrange(3), 0, rng.randrange(10**6)]
            elif field == "extra":
                s.pending = model["pending"] = [[1.0, T0 + rng.randrange(100)]]
            elif accident:
                s.pending = None  # an accident's figures stay
            else:
                s.pending = model["pending"] = None
            row = s.to_row("h1")
            assert row[1] == model["flags"]
            assert (row[6], row[7], row[12], row[13]) == (
                model["major"], model["round"], model["pending"], model["figures"])
            assert (row[4], row[9]) == (model["category"], model["reopened"])
            assert Subject.from_row(row)[1].to_row("h1") == row


def test_a_subjects_row_is_the_same_as_before_the_fields_were_packed() -> None:
    s = Subject(OPENED | RECTIFIED | COHORT, T0, T0 + 5, "fire", T0 + D, True, 2,
                T0 + 5, T0 + 3, "c1", "u1", [[4.0, T0]], None, "h1")
    assert s.to_row("h1") == ["h1", 161, T0, T0 + 5, "fire", T0 + D, True, 2, T0 + 5, T0 + 3,
                              "c1", "u1", [[4.0, T0]], None]
    a = Subject(OPENED, T0, T0, figures=[1, 2, 300], sid="a1")
    assert a.to_row("a1") == ["a1", 1, T0, T0, None, None, False, 0, None, None, None, None,
                              None, [1, 2, 300]]

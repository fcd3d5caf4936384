"""RFC 3339 times: the C reading of the common form answers as the datetime path does, or defers."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import native, validation
from streams.validation import py_rfc3339_seconds, rfc3339_seconds

PURE = os.environ.get("WATCHFLOOR_TEST_PURE") == "1"


def built():  # type: ignore[no-untyped-def]
    try:
        from streams import _rfc3339
    except ImportError:
        return None
    return _rfc3339


C = built()
needs_c = pytest.mark.skipif(C is None, reason="streams/_rfc3339.c is not built (pure install)")


def python_path(text: str) -> float | None:
    try:
        return py_rfc3339_seconds(text)
    except (ValueError, IndexError):
        return None


@st.composite
def common(draw: st.DrawFn) -> tuple[str, datetime]:
    """A time in the form senders use, and the aware datetime it names."""
    moment = draw(st.datetimes(min_value=datetime(1686, 1, 1), max_value=datetime(2254, 12, 31)))
    digits = draw(st.integers(min_value=0, max_value=9))
    minutes = draw(st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59))
    zulu = draw(st.sampled_from(["", "Z", "z"]))
    frac = ""
    if digits:
        # The digits written; datetime keeps the first six (cut, not rounded).
        frac = "." + draw(st.text("0123456789", min_size=digits, max_size=digits))
        moment = moment.replace(microsecond=int((frac[1:] + "00000")[:6]))
    else:
        moment = moment.replace(microsecond=0)
    if zulu:
        tail, tz = zulu, UTC
    else:
        sign = "-" if minutes < 0 else "+"
        tail = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        tz = timezone(timedelta(minutes=minutes))
    return f"{moment:%Y-%m-%dT%H:%M:%S}{frac}{tail}", moment.replace(tzinfo=tz)


@needs_c
@settings(max_examples=3000, deadline=None)
@given(common())
def test_the_common_form_is_read_in_c_as_datetime_reads_it(case: tuple[str, datetime]) -> None:
    text, aware = case
    got = C.seconds(text)
    assert got is not None, text
    assert got == py_rfc3339_seconds(text), text  # bit for bit: the same two roundings
    # An independent reading: the aware datetime's distance from the epoch, exactly.
    exact = (aware - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)
    assert got == pytest.approx(exact / 1e6, abs=1e-6)


def near(draw_from: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(draw_from)


# Every part drawn from valid and invalid values, so most texts are near the common form.
odd = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, tail: f"{y}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{tail}",
    near(["2026", "0000", "0001", "9999", "2255", "2256", "202", "20266", "2024", "1900"]),
    near(["01", "02", "12", "13", "00", "1", "0x"]),
    near(["01", "28", "29", "30", "31", "32", "00", "1"]),
    near(["T", "t", " ", "x", "TT"]),
    near(["00", "23", "24", "9", "ab"]),
    near(["00", "59", "60", "5"]),
    near(["00", "59", "60", "61", "5"]),
    near(["", ".", ".1", ".123", ".123456", ".1234567", ".123456789", ".1234567890",
          ",5", ".12a", ".\u0661"]),
    near(["Z", "z", "+08:00", "-05:30", "+00:00", "-00:00", "+99:99", "+0800", "+08:0",
          "08:00", "+08x00", "+ 8:00", "Zz", "", "+08:00Z"]),
)


@needs_c
@settings(max_examples=4000, deadline=None)
@given(odd)
def test_the_c_reading_answers_as_the_datetime_path_or_defers(text: str) -> None:
    got = C.seconds(text)
    if got is not None:
        assert got == python_path(text), text


@pytest.mark.parametrize(
    "text",
    [
        "2026-06-30T23:59:60Z",  # a leap second: datetime's path reads it as :59
        "2026-03-01t08:30:00+08:00",  # a lower-case t
        "2026-02-29T08:30:00Z",  # no such day
        "2026-03-01T08:30:00.1234567890Z",  # ten fraction digits
        "2026-03-01T08:30Z",  # no seconds
        "2256-01-01T00:00:00Z",  # past 2**53 microseconds from the epoch
        "1684-01-01T00:00:00Z",
        "2026-03-01T08:30:00+8:00",
        "\uff12\uff10\uff12\uff16-03-01T08:30:00Z",  # not ASCII (full-width digits)
    ],
)
@needs_c
def test_what_the_c_reading_leaves_to_datetime(text: str) -> None:
    assert C.seconds(text) is None
    # rfc3339_seconds still answers, or raises, as the datetime path alone does.
    assert python_path(text) == (
        rfc3339_seconds(text) if python_path(text) is not None else None
    )


@needs_c
def test_not_a_str_is_left_to_datetime() -> None:
    assert C.seconds(b"2026-03-01T08:30:00Z") is None  # type: ignore[arg-type]
    assert C.seconds(None) is None  # type: ignore[arg-type]


def test_the_c_reading_is_the_one_in_use_where_it_is_built() -> None:
    if PURE or native.running_source():
        assert validation._C_SECONDS is None
        return
    assert C is not None, "streams/_rfc3339.c is not built: run `make install`"
    assert validation._C_SECONDS is C.seconds

"""The dead-letter format: what a rejected record becomes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from streams import deadletter as dl
from streams.errors import InvalidEvent, WatchfloorError
from streams.settings import Settings
from tests.support import REJECTED_AT
from tests.support import dead_letter as letter

SETTINGS = Settings()


# --- builder ----------------------------------------------------------------------------


def test_key_value_and_original_headers_are_kept_untouched() -> None:
    value = b'{"not": "even valid \xff json'
    original = [("content-type", b"application/cloudevents+json"), ("traceparent", b"00-ab-cd-01")]
    d = letter(value=value, headers=original)
    assert d.key == b"jinshui"
    assert d.value is value
    assert list(d.headers[:2]) == original
    names = [k for k, _ in d.headers[2:]]
    assert names == [
        "wf-reason",
        "wf-error",
        "wf-source-topic",
        "wf-source-partition",
        "wf-source-offset",
        "wf-source-timestamp",
        "wf-rejected-at",
        "wf-worker",
    ]


def test_dead_letter_headers_say_what_happened() -> None:
    d = letter()
    assert d.header("wf-reason") == "unknown_district"
    assert d.header("wf-error") == "unknown_district sentence."
    assert d.header("wf-source-topic") == "watchfloor.patrols"
    assert d.header("wf-source-partition") == "2"
    assert d.header("wf-source-offset") == "1543"
    assert d.header("wf-source-timestamp") == "1775957400123"
    assert d.header("wf-worker") == "http://10.0.0.5:6066"
    assert datetime.fromisoformat(d.header("wf-rejected-at") or "") == REJECTED_AT
    assert d.header("wf-publisher") is None


def test_rejected_at_keeps_its_offset() -> None:
    local = REJECTED_AT.astimezone(timezone(timedelta(hours=8)))
    d = dl.build_dead_letter(
        key=None,
        value=None,
        headers=None,
        reason="empty",
        error="The record has no value.",
        source_topic="t",
        source_partition=0,
        source_offset=0,
        source_timestamp_ms=None,
        rejected_at=local,
        worker="w",
    )
    assert d.header("wf-rejected-at") == "2026-04-12T17:30:01.250+08:00"
    assert d.header("wf-source-timestamp") == ""
    assert (d.key, d.value) == (None, None)


def test_stale_dead_letter_headers_of_the_original_are_replaced() -> None:
    d = letter(headers=[("wf-reason", b"schema"), ("wf-error", b"old"), ("x-app", b"1")])
    assert [k for k, _ in d.headers].count("wf-reason") == 1
    assert d.header("wf-reason") == "unknown_district"
    assert ("x-app", b"1") in d.headers


def test_null_header_values_stay_null() -> None:
    # The original headers are kept untouched: a null value is not an empty one.
    d = letter(headers=[("flag", None)])
    assert ("flag", None) in d.headers


def test_unknown_reason_is_refused() -> None:
    with pytest.raises(WatchfloorError, match="not a rejection reason"):
        letter(reason="bad_vibes")


def test_naive_rejection_time_is_refused() -> None:
    with pytest.raises(WatchfloorError, match="UTC offset"):
        dl.build_dead_letter(
            key=None,
            value=None,
            headers=None,
            reason="empty",
            error="e",
            source_topic="t",
            source_partition=0,
            source_offset=0,
            source_timestamp_ms=None,
            rejected_at=datetime(2026, 4, 12),
            worker="w",
        )


def test_long_error_is_cut_to_valid_utf8() -> None:
    d = dl.build_dead_letter(
        key=None,
        value=b"x",
        headers=None,
        reason="schema",
        error="字" * 1000,
        source_topic="t",
        source_partition=0,
        source_offset=0,
        source_timestamp_ms=None,
        rejected_at=REJECTED_AT,
        worker="w",
    )
    raw = dict(d.headers)["wf-error"]
    assert len(raw) <= dl.MAX_ERROR_BYTES
    assert raw.decode("utf-8").endswith("...")


def test_dead_letter_for_an_invalid_event() -> None:
    exc = InvalidEvent("naive_time", "time has no UTC offset; write it with one.", field="time")
    d = dl.dead_letter_for(
        exc,
        key=b"erqi",
        value=b"{}",
        headers=[],
        source_topic="watchfloor.incidents",
        source_partition=1,
        source_offset=7,
        source_timestamp_ms=5,
        rejected_at=REJECTED_AT,
        worker="w",
        publisher="erqi-case-system",
    )
    assert d.header("wf-reason") == "naive_time"
    assert d.header("wf-error") == exc.message
    assert d.header("wf-publisher") == "erqi-case-system"

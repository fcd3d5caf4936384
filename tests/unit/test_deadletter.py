"""Dead letters: the pure builder, the ledger read back from the topic, replay plans and the CLI."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from streams import deadletter as dl
from streams.errors import InvalidEvent, WatchfloorError
from streams.settings import Settings

REJECTED_AT = datetime(2026, 4, 12, 9, 30, 1, 250000, tzinfo=UTC)
SETTINGS = Settings()


def letter(
    *,
    reason: str = "unknown_district",
    topic: str = "watchfloor.patrols",
    partition: int | str = 2,
    offset: int | str = 1543,
    key: bytes | None = b"jinshui",
    value: bytes | None = b'{"id": "x"}',
    headers: list[tuple[str, bytes | None]] | None = None,
) -> dl.DeadLetter:
    return dl.build_dead_letter(
        key=key,
        value=value,
        headers=headers,
        reason=reason,
        error=f"{reason} sentence.",
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        source_timestamp_ms=1775957400123,
        rejected_at=REJECTED_AT,
        worker="http://10.0.0.5:6066",
    )


def stored(d: dl.DeadLetter, partition: int = 0, offset: int = 0) -> dl.StoredDeadLetter:
    return dl.StoredDeadLetter(partition, offset, 1775957401000, d.key, d.value, d.headers)


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


# --- ledger -----------------------------------------------------------------------------


def ledger_of(*records: dl.StoredDeadLetter) -> dl.Ledger:
    ledger = dl.Ledger("watchfloor.deadletter")
    seen: set[str] = set()
    for r in records:
        ledger.add(r, seen)
    return ledger


def test_the_same_original_dead_lettered_twice_counts_once() -> None:
    first = stored(letter(), 0, 10)
    again = stored(letter(), 3, 99)  # written again after a worker restart
    other = stored(letter(offset=1544), 0, 11)
    ledger = ledger_of(first, again, other)
    assert ledger.records == 3
    assert ledger.duplicates == 1
    assert [r.identity for r in ledger.letters] == [
        "watchfloor.patrols/2/1543",
        "watchfloor.patrols/2/1544",
    ]
    assert ledger.letters[0] is first


def test_records_without_source_headers_stand_for_themselves() -> None:
    bare = dl.StoredDeadLetter(1, 5, 0, None, b"junk", ())
    also_bare = dl.StoredDeadLetter(1, 6, 0, None, b"junk", ())
    ledger = ledger_of(bare, also_bare)
    assert [r.identity for r in ledger.letters] == ["dlq/1/5", "dlq/1/6"]
    assert ledger.letters[0].reason == "unknown"


def test_markers_say_which_letters_were_replayed() -> None:
    a = stored(letter(), 0, 1)
    b = stored(letter(offset=9), 0, 2)
    marker = dl.marker_for(a, "watchfloor.patrols/2/2000", REJECTED_AT)
    ledger = ledger_of(a, b, stored(marker, 0, 3))
    assert ledger.replayed == {a.identity}
    assert ledger.records == 3 and len(ledger.letters) == 2  # the marker is not a letter
    assert ledger.select(include_replayed=False) == [b]
    assert ledger.select() == [a, b]


def test_select_by_reason_and_topic() -> None:
    a = stored(letter(reason="schema", topic="watchfloor.incidents"), 0, 1)
    b = stored(letter(reason="unknown_district", topic="watchfloor.incidents", offset=2), 0, 2)
    c = stored(letter(reason="schema", topic="watchfloor.patrols", offset=3), 0, 3)
    ledger = ledger_of(a, b, c)
    assert ledger.select(["schema"]) == [a, c]
    assert ledger.select(["schema"], ["watchfloor.patrols"]) == [c]
    assert ledger.select([], ["watchfloor.incidents"]) == [a, b]


def test_summary_by_reason_topic_and_state() -> None:
    letters = [
        stored(letter(reason="schema", topic="watchfloor.incidents", offset=i), 0, i)
        for i in range(3)
    ]
    letters.append(stored(letter(reason="too_late", topic="watchfloor.patrols", offset=7), 1, 0))
    replayed_copy = letter(
        reason="schema",
        topic="watchfloor.incidents",
        offset=50,
        headers=[("wf-replayed-from", b"watchfloor.incidents/2/0")],
    )
    letters.append(stored(replayed_copy, 1, 1))
    marker = stored(dl.marker_for(letters[0], "x/0/1", REJECTED_AT), 1, 2)
    ledger = ledger_of(*letters, letters[1], marker)
    summary = ledger.summary(ledger.letters, limit=2)
    assert summary["records"] == 7
    assert summary["dead_letters"] == 5
    assert summary["duplicates"] == 1
    assert summary["replayed"] == 1
    assert summary["second_failures"] == 1
    assert summary["by_reason"] == {"schema": 4, "too_late": 1}
    assert summary["by_source_topic"] == {"watchfloor.incidents": 4, "watchfloor.patrols": 1}
    assert summary["table"][0] == {
        "reason": "schema",
        "source_topic": "watchfloor.incidents",
        "pending": 3,
        "replayed": 1,
    }
    assert [r["identity"] for r in summary["latest"]] == [
        "watchfloor.incidents/2/50",
        "watchfloor.patrols/2/7",
    ]
    assert summary["latest"][0]["second_failure_of"] == "watchfloor.incidents/2/0"
    text = dl.render_summary(summary)
    assert "5 dead letters" in text and "1 written twice" in text
    assert "failed again" in text


# --- replay -----------------------------------------------------------------------------


def test_replay_goes_back_to_the_source_topic() -> None:
    plan = dl.replay_target(stored(letter(topic="watchfloor.disputes")), SETTINGS)
    assert plan.topic == "watchfloor.disputes"


def test_http_letters_go_to_their_types_topic() -> None:
    value = orjson.dumps({"type": "watchfloor.hazard.found.v1", "district": "jinshui"})
    plan = dl.replay_target(stored(letter(topic="http", value=value)), SETTINGS)
    assert plan.topic == SETTINGS.topic_patrols
    junk = dl.replay_target(stored(letter(topic="http", value=b"[1")), SETTINGS)
    assert junk.topic is None and "HTTP" in junk.why_not


def test_letters_without_a_source_cannot_be_replayed() -> None:
    plan = dl.replay_target(dl.StoredDeadLetter(0, 0, 0, None, b"x", ()), SETTINGS)
    assert plan.topic is None and "wf-source-topic" in plan.why_not


def test_replay_headers_keep_the_originals_and_count_replays() -> None:
    original = [("content-type", b"application/cloudevents+json"), ("traceparent", b"00-1")]
    first = stored(letter(headers=original))
    headers = dl.replay_headers(first, REJECTED_AT)
    assert list(headers[:2]) == original
    assert not any(k in dl.DEAD_LETTER_HEADERS for k, _ in headers)
    assert dl.header_text(headers, "wf-replayed-from") == "watchfloor.patrols/2/1543"
    assert dl.header_text(headers, "wf-replay-count") == "1"
    # The replayed copy fails again and is dead-lettered with these headers: count goes up.
    second = stored(letter(topic="watchfloor.patrols", offset=9000, headers=list(headers)))
    again = dl.replay_headers(second, REJECTED_AT)
    assert dl.header_text(again, "wf-replay-count") == "2"
    assert dl.header_text(again, "wf-replayed-from") == "watchfloor.patrols/2/9000"
    assert [k for k, _ in again].count("wf-replayed-from") == 1


# --- command line -----------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="watchfloor")
    sub = p.add_subparsers(dest="command")
    dl.register_cli(sub)
    return p


def test_cli_parses_list_and_replay() -> None:
    args = parser().parse_args(["dlq", "list", "--reason", "schema,too_late", "--limit", "5"])
    assert args.func is dl._cmd_list
    assert dl._reasons(args.reason) == ["schema", "too_late"]
    args = parser().parse_args(["dlq", "replay", "--reason", "unknown_district", "--dry-run"])
    assert args.func is dl._cmd_replay and args.dry_run


def test_replay_needs_a_choice() -> None:
    args = parser().parse_args(["dlq", "replay"])
    with pytest.raises(WatchfloorError, match="--reason REASON, or --all"):
        args.func(args, SETTINGS)


def test_unknown_reason_on_the_command_line() -> None:
    args = parser().parse_args(["dlq", "list", "--reason", "nope"])
    with pytest.raises(WatchfloorError, match="Unknown reason nope"):
        args.func(args, SETTINGS)

"""Dead-letter tools: the ledger read back from the topic, replay plans and the CLI."""

from __future__ import annotations

import argparse

import orjson
import pytest

from streams import deadletter as dl
from streams import dlq
from streams.errors import WatchfloorError
from streams.settings import Settings
from tests.support import REJECTED_AT
from tests.support import dead_letter as letter

SETTINGS = Settings()


def stored(d: dl.DeadLetter, partition: int = 0, offset: int = 0) -> dlq.StoredDeadLetter:
    return dlq.StoredDeadLetter(partition, offset, 1775957401000, d.key, d.value, d.headers)


# --- ledger -----------------------------------------------------------------------------


def ledger_of(*records: dlq.StoredDeadLetter) -> dlq.Ledger:
    ledger = dlq.Ledger("watchfloor.deadletter")
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
    bare = dlq.StoredDeadLetter(1, 5, 0, None, b"junk", ())
    also_bare = dlq.StoredDeadLetter(1, 6, 0, None, b"junk", ())
    ledger = ledger_of(bare, also_bare)
    assert [r.identity for r in ledger.letters] == ["dlq/1/5", "dlq/1/6"]
    assert ledger.letters[0].reason == "unknown"


def test_markers_say_which_letters_were_replayed() -> None:
    a = stored(letter(), 0, 1)
    b = stored(letter(offset=9), 0, 2)
    marker = dlq.marker_for(a, "watchfloor.patrols/2/2000", REJECTED_AT)
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
    marker = stored(dlq.marker_for(letters[0], "x/0/1", REJECTED_AT), 1, 2)
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
    text = dlq.render_summary(summary)
    assert "5 dead letters" in text and "1 written twice" in text
    assert "failed again" in text


# --- replay -----------------------------------------------------------------------------


def test_replay_goes_back_to_the_source_topic() -> None:
    plan = dlq.replay_target(stored(letter(topic="watchfloor.disputes")), SETTINGS)
    assert plan.topic == "watchfloor.disputes"


def test_http_letters_go_to_their_types_topic() -> None:
    value = orjson.dumps({"type": "watchfloor.hazard.found.v1", "district": "jinshui"})
    plan = dlq.replay_target(stored(letter(topic="http", value=value)), SETTINGS)
    assert plan.topic == SETTINGS.topic_patrols
    junk = dlq.replay_target(stored(letter(topic="http", value=b"[1")), SETTINGS)
    assert junk.topic is None and "HTTP" in junk.why_not


def test_letters_without_a_source_cannot_be_replayed() -> None:
    plan = dlq.replay_target(dlq.StoredDeadLetter(0, 0, 0, None, b"x", ()), SETTINGS)
    assert plan.topic is None and "wf-source-topic" in plan.why_not


def test_replay_headers_keep_the_originals_and_count_replays() -> None:
    original = [("content-type", b"application/cloudevents+json"), ("traceparent", b"00-1")]
    first = stored(letter(headers=original))
    headers = dlq.replay_headers(first, REJECTED_AT)
    assert list(headers[:2]) == original
    assert not any(k in dl.DEAD_LETTER_HEADERS for k, _ in headers)
    assert dl.header_text(headers, "wf-replayed-from") == "watchfloor.patrols/2/1543"
    assert dl.header_text(headers, "wf-replay-count") == "1"
    # The replayed copy fails again and is dead-lettered with these headers: count goes up.
    second = stored(letter(topic="watchfloor.patrols", offset=9000, headers=list(headers)))
    again = dlq.replay_headers(second, REJECTED_AT)
    assert dl.header_text(again, "wf-replay-count") == "2"
    assert dl.header_text(again, "wf-replayed-from") == "watchfloor.patrols/2/9000"
    assert [k for k, _ in again].count("wf-replayed-from") == 1


# --- command line -----------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="watchfloor")
    sub = p.add_subparsers(dest="command")
    dlq.register_cli(sub)
    return p


def test_cli_parses_list_and_replay() -> None:
    args = parser().parse_args(["dlq", "list", "--reason", "schema,too_late", "--limit", "5"])
    assert args.func is dlq._cmd_list
    assert dlq._reasons(args.reason) == ["schema", "too_late"]
    args = parser().parse_args(["dlq", "replay", "--reason", "unknown_district", "--dry-run"])
    assert args.func is dlq._cmd_replay and args.dry_run


def test_replay_needs_a_choice() -> None:
    args = parser().parse_args(["dlq", "replay"])
    with pytest.raises(WatchfloorError, match="--reason REASON, or --all"):
        args.func(args, SETTINGS)


def test_unknown_reason_on_the_command_line() -> None:
    args = parser().parse_args(["dlq", "list", "--reason", "nope"])
    with pytest.raises(WatchfloorError, match="Unknown reason nope"):
        args.func(args, SETTINGS)


def test_list_shows_rejection_times_in_the_city_zone() -> None:
    from zoneinfo import ZoneInfo

    from streams.dlq import render_summary

    summary = {"topic": "t", "dead_letters": 1, "records": 1, "duplicates": 0, "replayed": 0,
               "second_failures": 0, "table": [], "latest": [{
                   "replayed": False, "second_failure_of": None, "identity": "x",
                   "reason": "schema", "error": "e",
                   "rejected_at": "2026-04-12T01:30:01.250000+00:00"}]}
    text = render_summary(summary, ZoneInfo("Asia/Shanghai"))
    assert "2026-04-12T09:30:01.250000+08:00" in text

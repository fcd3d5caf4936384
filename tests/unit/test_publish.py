"""Publishing JSON lines: what is read, validated, handed to the producer and reported."""

from __future__ import annotations

import argparse
import asyncio
import copy
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams import publish
from streams.errors import WatchfloorError
from streams.settings import Settings
from streams.validation import EventValidator
from tests.support import EPOCH_UTC

NOW = EPOCH_UTC  # the shared validator fixture's clock
SETTINGS = Settings()


def examples(validator: EventValidator) -> list[dict[str, Any]]:
    return [copy.deepcopy(e) for s in validator.files.by_type.values() for e in s["examples"]]


class Producer:
    """Records hand-overs in order; confirms or fails each delivery like Kafka would."""

    def __init__(self, fail: set[str] = frozenset(), refuse: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.fail, self.refuse = fail, refuse

    async def enqueue(
        self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        event_id = orjson.loads(value)["id"]
        if event_id in self.refuse:
            raise RuntimeError("producer closed")
        self.records.append((topic, key, value, list(headers)))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if event_id in self.fail:
            asyncio.get_running_loop().call_soon(
                done.set_exception, TimeoutError("no acknowledgement")
            )
        else:
            asyncio.get_running_loop().call_soon(done.set_result, None)
        return done


def lines_of(*items: bytes | dict[str, Any]) -> list[tuple[int, bytes]]:
    out = []
    for i, item in enumerate(items, start=1):
        out.append((i, orjson.dumps(item) if isinstance(item, dict) else item))
    return out


def test_read_lines_strips_bom_line_ends_and_counts_lines() -> None:
    raw = b'\xef\xbb\xbf{"a": 1}\r\n\n  \n{"b": 2}\n{"c": 3}'
    assert list(publish.read_lines(io.BytesIO(raw))) == [
        (1, b'{"a": 1}'),
        (2, b""),
        (3, b""),
        (4, b'{"b": 2}'),
        (5, b'{"c": 3}'),
    ]


def test_every_valid_line_is_handed_over_in_order_keyed_by_district(
    validator: EventValidator,
) -> None:
    docs = examples(validator)
    producer = Producer()
    report = asyncio.run(
        publish.publish_lines(lines_of(*docs), validator, SETTINGS, producer.enqueue)
    )
    assert report.ok and report.sent == len(docs)
    assert [orjson.loads(v)["id"] for _, _, v, _ in producer.records] == [d["id"] for d in docs]
    for (topic, key, value, headers), doc in zip(producer.records, docs, strict=True):
        assert key == doc["district"].encode()
        assert value == orjson.dumps(doc), "the bytes of the line are sent as they are"
        assert headers == [publish.CONTENT_TYPE]
        family = doc["type"].split(".")[1]
        assert (
            topic
            == {
                "incident": SETTINGS.topic_incidents,
                "dispute": SETTINGS.topic_disputes,
                "patrol": SETTINGS.topic_patrols,
                "hazard": SETTINGS.topic_patrols,
            }[family]
        )
    assert sum(report.by_topic.values()) == len(docs)


def test_rejected_lines_are_reported_with_line_numbers(validator: EventValidator) -> None:
    docs = examples(validator)
    naive = copy.deepcopy(docs[0])
    naive["time"] = "2026-04-12T09:30:00"
    lines = lines_of(docs[1], b"", b"{broken", naive, b"\xff\xfe", docs[2])
    producer = Producer()
    report = asyncio.run(publish.publish_lines(lines, validator, SETTINGS, producer.enqueue))
    assert not report.ok
    assert report.sent == 2 and report.blank == 1
    assert [(r.line, r.reason, r.id) for r in report.rejected] == [
        (3, "malformed_json", None),
        (4, "naive_time", naive["id"]),
        (5, "not_utf8", None),
    ]
    out = report.to_dict()
    assert out["rejected_by_reason"] == {"malformed_json": 1, "naive_time": 1, "not_utf8": 1}
    assert out["rejected"][1]["field"] == "time"
    text = report.text()
    assert "sent 2 events" in text and "rejected 3 lines" in text
    assert "line 4: naive_time: time has no UTC offset" in text


def test_unconfirmed_and_refused_sends_are_failures(validator: EventValidator) -> None:
    docs = examples(validator)[:4]
    producer = Producer(fail={docs[1]["id"]}, refuse={docs[2]["id"]})
    report = asyncio.run(
        publish.publish_lines(
            lines_of(*docs), validator, SETTINGS, producer.enqueue, max_in_flight=2
        )
    )
    assert report.sent == 2 and not report.ok
    assert [(f.line, f.id) for f in report.failed] == [(2, docs[1]["id"]), (3, docs[2]["id"])]
    assert "no acknowledgement" in report.failed[0].error
    assert "producer closed" in report.failed[1].error


def test_dry_run_sends_nothing(validator: EventValidator) -> None:
    docs = examples(validator)
    report = asyncio.run(publish.publish_lines(lines_of(*docs), validator, SETTINGS, None))
    assert report.dry_run and report.sent == len(docs)
    assert report.text().startswith(f"would send {len(docs)} events")


def run_cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="watchfloor")
    publish.register_cli(p.add_subparsers(dest="command"))
    args = p.parse_args(argv)
    return int(args.func(args, SETTINGS))


def test_cli_dry_run_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], validator: EventValidator
) -> None:
    # The real validator runs on the system clock here: use times safely in the past.
    docs = examples(validator)
    good = tmp_path / "good.jsonl"
    good.write_bytes(b"\n".join(orjson.dumps(d) for d in docs) + b"\n")
    assert run_cli(["publish", str(good), "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["sent"] == len(docs) and out["dry_run"]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(good.read_bytes() + b'{"specversion": "1.0"}\n')
    assert run_cli(["publish", str(bad), "--dry-run"]) == 1
    assert f"line {len(docs) + 1}: schema" in capsys.readouterr().out


def test_cli_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WatchfloorError, match="cannot be read"):
        run_cli(["publish", str(tmp_path / "absent.jsonl")])


# --- simulator files and progress (issue 12, "Also") --------------------------------------


def test_simulator_output_lines_are_read_as_their_records(
    validator: EventValidator, tmp_path: Path
) -> None:
    import base64

    from streams.simulator.files import read_records, write_records  # the format's own code

    docs = examples(validator)[:3]
    lines = [
        orjson.dumps({"at": "2026-06-01T00:00:00.000Z", "stream": "incidents", "key": "k",
                      "intent": "valid", "event": docs[0]}),
        orjson.dumps({"at": "2026-06-01T00:00:01.000Z", "stream": "incidents", "key": "k",
                      "intent": "malformed", "reason": "malformed_json", "value": "{oops"}),
        orjson.dumps({"at": "2026-06-01T00:00:02.000Z", "stream": "incidents", "key": "k",
                      "intent": "valid",
                      "value_b64": base64.b64encode(orjson.dumps(docs[1])).decode()}),
        orjson.dumps(docs[2]),  # an ordinary event in the same file
    ]
    producer = Producer()
    report = asyncio.run(publish.publish_lines(
        list(enumerate(lines, start=1)), validator, SETTINGS, producer.enqueue
    ))
    assert report.simulator_lines == 3
    assert [v for _, _, v, _ in producer.records] == [orjson.dumps(d) for d in docs]
    assert [(r.line, r.reason) for r in report.rejected] == [(2, "malformed_json")]
    assert "simulator records" in report.text()
    # And what write_records itself writes, gzip included, reads back the same way.
    plain = tmp_path / "records.jsonl"
    plain.write_bytes(b"\n".join(lines[:3]) + b"\n")
    path = tmp_path / "records.jsonl.gz"
    write_records(read_records(plain), path)
    with publish._open_lines(path) as handle:
        unwrapped = [publish.unwrap_simulator_line(raw) for _, raw in publish.read_lines(handle)]
    assert unwrapped == [orjson.dumps(docs[0]), b"{oops", orjson.dumps(docs[1])]


def test_events_are_never_taken_for_simulator_lines(validator: EventValidator) -> None:
    doc = {**examples(validator)[0], "intent": "valid", "at": "x", "stream": "s", "key": "k"}
    assert publish.unwrap_simulator_line(orjson.dumps(doc)) is None  # it has specversion
    assert publish.unwrap_simulator_line(b'{"intent": 1') is None


def test_progress_appears_only_for_long_runs() -> None:
    from streams.progress import Progress

    now = [0.0]
    out = io.StringIO()
    progress = Progress("publish", stream=out, clock=lambda: now[0], first_after=2, every=5)
    progress.tick(lambda: "early")
    progress.done("finished")
    assert out.getvalue() == "", "a short run prints nothing"
    for t in (1.0, 2.5, 3.0, 7.4, 7.6):
        now[0] = t
        progress.tick(lambda t=t: f"at {t}")
    assert out.getvalue().splitlines() == ["publish: at 2.5 after 2s", "publish: at 7.6 after 8s"]
    progress.done("1000 sent")
    assert out.getvalue().splitlines()[-1] == "publish: 1000 sent in 8s"
    quiet = Progress("x", stream=out, enabled=False, clock=lambda: 100.0, first_after=0)
    quiet.tick(lambda: "never")
    assert "never" not in out.getvalue()

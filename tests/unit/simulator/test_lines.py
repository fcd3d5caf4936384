"""JSON lines: every kind of record survives the round trip; a bad line is a plain error."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from streams.errors import WatchfloorError
from streams.simulator.files import read_records, write_records
from streams.simulator.lines import record_from_line, record_to_line
from streams.simulator.records import MALFORMED_REASONS, SimRecord


def test_json_lines_round_trip_every_kind_of_record(tmp_path: Path, mixed: list[SimRecord]) -> None:
    sample = []
    for reason in (None, "duplicate", "too_late", *MALFORMED_REASONS):
        sample.append(next(r for r in mixed if r.reason == reason))
    for suffix in ("records.jsonl", "records.jsonl.gz"):
        path = tmp_path / suffix
        tally = write_records(sample, path)
        assert tally.total == len(sample)
        back = list(read_records(path))
        assert [(r.stream, r.key, r.value, r.intent, r.reason, r.kind) for r in back] == [
            (r.stream, r.key, r.value, r.intent, r.reason, r.kind) for r in sample
        ]
        assert all(abs(a.at - b.at) < 0.001 for a, b in zip(back, sample, strict=True))
    lines = gzip.decompress((tmp_path / "records.jsonl.gz").read_bytes()).splitlines()
    first = orjson.loads(lines[0])
    assert first["intent"] == "valid" and isinstance(first["event"], dict)
    empty = orjson.loads(record_to_line(next(r for r in sample if r.reason == "empty")))
    assert empty["value"] == ""
    not_utf8 = orjson.loads(record_to_line(next(r for r in sample if r.reason == "not_utf8")))
    assert "value_b64" in not_utf8


def test_a_bad_line_is_a_plain_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"at": "2026-01-01T00:00:00Z", "stream": "nowhere"}\n')
    with pytest.raises(WatchfloorError, match="line 1"):
        list(read_records(path))
    with pytest.raises(WatchfloorError):
        record_from_line(b"not json")

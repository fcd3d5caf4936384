"""The simulate commands, without a broker (--output)."""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.errors import SettingsError
from streams.events import Kind
from streams.reference import load_reference
from streams.settings import Settings
from streams.simulator.cli import parse_duration, parse_when, register_cli
from streams.simulator.files import read_records
from streams.simulator.records import Intent

from .support import SHANGHAI


def test_durations_and_times_parse() -> None:
    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("15m") == timedelta(minutes=15)
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    with pytest.raises(SettingsError):
        parse_duration("soon")
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert parse_when("now", now) == now
    assert parse_when("now-7d", now) == now - timedelta(days=7)
    assert parse_when("now+5m", now) == now + timedelta(minutes=5)
    assert parse_when("2025-03-03T08:00:00+08:00", now).hour == 8
    with pytest.raises(SettingsError):
        parse_when("2025-03-03T08:00:00", now)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="watchfloor")
    register_cli(parser.add_subparsers())
    return parser.parse_args(argv)


def test_cli_run_writes_a_deterministic_file(tmp_path: Path) -> None:
    outputs = []
    for name in ("a.jsonl", "b.jsonl"):
        args = parse(
            ["simulate", "run", "--start", "2026-03-02T08:00:00+08:00", "--duration", "2h",
             "--backfill", "1d", "--rate", "0.5", "--seed", "3", "--output", str(tmp_path / name)]
        )  # fmt: skip
        assert args.func(args, Settings()) == 0
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]
    records = list(read_records(tmp_path / "a.jsonl"))
    assert len(records) > 1000
    start = datetime(2026, 3, 2, 8, tzinfo=SHANGHAI).timestamp()
    assert records[0].at >= start - 86400 and records[-1].at < start + 7200
    intents = Counter(r.intent for r in records)
    assert intents[Intent.LATE] and intents[Intent.DUPLICATE] and intents[Intent.MALFORMED]
    drill = [r for r in records if r.kind is Kind.HAZARD_FOUND and b"drill" in r.value]
    assert len(drill) == 6 and all(r.ts >= start for r in drill)  # type: ignore[operator]


def test_cli_run_to_a_file_needs_an_end(tmp_path: Path) -> None:
    args = parse(["simulate", "run", "--output", str(tmp_path / "x.jsonl")])
    with pytest.raises(SettingsError, match="duration"):
        args.func(args, Settings())


def test_cli_reference_and_scenario_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse(["simulate", "reference", "--districts", "12", "--output", str(tmp_path)])
    assert args.func(args, Settings()) == 0
    assert len(load_reference(tmp_path / "city.json").districts) == 12
    args = parse(["simulate", "scenario", "list"])
    assert args.func(args, Settings()) == 0
    assert "overdue-week" in capsys.readouterr().out.split()


def test_cli_replay_shifts_a_file_to_a_new_start(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    args = parse(
        ["simulate", "run", "--start", "2026-03-02T08:00:00+08:00", "--duration", "1h",
         "--backfill", "0", "--output", str(src)]
    )  # fmt: skip
    args.func(args, Settings())
    out = tmp_path / "out.jsonl"
    args = parse(
        ["simulate", "replay", str(src), "--shift-to", "2030-01-01T00:00:00+00:00",
         "--output", str(out)]
    )  # fmt: skip
    assert args.func(args, Settings()) == 0
    before, after = list(read_records(src)), list(read_records(out))
    assert after[0].at == datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        if a.intent is Intent.VALID:
            assert b.ts - a.ts == after[0].at - before[0].at  # type: ignore[operator]

"""The command line: arguments that do not parse are one sentence, never a traceback."""

from __future__ import annotations

import pytest

from streams import cli


def test_a_bad_duration_is_one_sentence_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["simulate", "run", "--duration", "tenminutes"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("watchfloor: 'tenminutes' is not a duration") and err.count("\n") == 1


def test_a_bad_time_zone_stops_before_anything_starts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHFLOOR_TIMEZONE", "Mars/Olympus")
    assert cli.main(["worker"]) == 2
    assert "WATCHFLOOR_TIMEZONE must be an IANA time zone" in capsys.readouterr().err

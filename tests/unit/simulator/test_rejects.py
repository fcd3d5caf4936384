"""Late and malformed records: each is what the engine must turn away, and why."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from streams.clock import FixedClock
from streams.errors import InvalidEvent
from streams.events import KIND_OF_TYPE, STREAM_OF_KIND, TYPE_OF_KIND, Stream
from streams.reference import load_reference
from streams.simulator.city import SimCity
from streams.simulator.encoder import Encoder
from streams.simulator.generator import generate_events
from streams.simulator.ids import Subjects
from streams.simulator.live import live_config
from streams.simulator.records import MALFORMED_REASONS, Intent, SimRecord
from streams.simulator.rejects import Rejects
from streams.validation import EventValidator

from .support import (
    CITY_FILE,
    DATA_FIELDS,
    DISTRICT_CODE,
    EPOCH,
    IDENT,
    STREAM_KINDS,
    doc,
    run,
    ts_of,
)


def test_late_records_are_older_than_the_watermark_minus_the_grace(
    mixed: list[SimRecord],
) -> None:
    watermark: dict[tuple[bytes, Stream], float] = {}
    late = 0
    for rec in mixed:
        if rec.intent is Intent.VALID:
            key = (rec.key, rec.stream)
            watermark[key] = max(watermark.get(key, -math.inf), rec.ts)  # type: ignore[type-var]
        elif rec.intent is Intent.LATE:
            late += 1
            assert rec.reason == "too_late"
            assert rec.ts is not None
            assert rec.ts < watermark[(rec.key, rec.stream)] - 24 * 3600 - 3000
            assert rec.ts > datetime(2000, 1, 1, tzinfo=UTC).timestamp()
            d = doc(rec)
            assert KIND_OF_TYPE[str(d["type"])] in STREAM_KINDS[rec.stream]
    assert late > 100


def test_malformed_records_carry_each_fault(city: SimCity, mixed: list[SimRecord]) -> None:
    bad = [r for r in mixed if r.intent is Intent.MALFORMED]
    reasons = Counter(r.reason for r in bad)
    assert set(reasons) == set(MALFORMED_REASONS)
    codes = {d.code for d in city.districts}
    for rec in bad:
        value = rec.value
        if rec.reason == "empty":
            assert value == b""
        elif rec.reason == "too_large":
            assert len(value) > 64 * 1024
        elif rec.reason == "not_utf8":
            with pytest.raises(UnicodeDecodeError):
                value.decode("utf-8")
        elif rec.reason == "malformed_json":
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(value)
        elif rec.reason == "unknown_type":
            assert doc(rec)["type"] not in TYPE_OF_KIND.values()
        elif rec.reason == "wrong_topic":
            assert STREAM_OF_KIND[KIND_OF_TYPE[str(doc(rec)["type"])]] is not rec.stream
        elif rec.reason == "unknown_district":
            assert doc(rec)["district"] not in codes and DISTRICT_CODE.match(
                str(doc(rec)["district"])
            )
        elif rec.reason == "naive_time":
            assert datetime.fromisoformat(str(doc(rec)["time"])).tzinfo is None
        elif rec.reason == "time_out_of_range":
            year = datetime.fromisoformat(str(doc(rec)["time"])).year
            assert year < 2000 or year > 2900
        elif rec.reason == "deadline_before_found":
            d = doc(rec)
            assert ts_of(d["data"]["deadline"]) <= ts_of(d["time"])  # type: ignore[index]
        elif rec.reason == "wrong_partition":
            d = doc(rec)
            assert d["district"] in codes and rec.key == str(d["district"]).encode()
        elif rec.reason == "schema":
            d = doc(rec)
            data = d["data"]
            assert isinstance(data, dict) and rec.kind is not None
            required, optional = DATA_FIELDS[rec.kind]
            faults = [
                "subject" not in d,
                not IDENT.match(str(d.get("id", ""))),
                not required <= set(data),
                not set(data) <= required | optional,
            ]
            assert sum(faults) == 1, d


def test_misrouted_records_come_only_when_asked_for_by_name(city: SimCity) -> None:
    # The worker forwards a valid record from a wrong partition (it is counted), so the
    # default mix of rejects has none; a run that wants them (forwarding off, or a test
    # of forwarding) names the reason.
    assert "wrong_partition" not in MALFORMED_REASONS
    default = {r.reason for r in generate_events(city, live_config(EPOCH, max_records=20000))}
    assert "wrong_partition" not in default
    reasons = (*MALFORMED_REASONS, "wrong_partition")
    records = run(city, malformed_share=0.1, malformed_reasons=reasons, seed=3)
    got = {r.reason for r in records if r.intent is Intent.MALFORMED}
    assert got == set(reasons)


@pytest.mark.parametrize("reason", MALFORMED_REASONS)
def test_each_reason_alone_makes_records_the_validator_rejects_for_it(
    city: SimCity, reason: str
) -> None:
    rejects = Rejects(city, Encoder(city), random.Random(1), Subjects("t"), (reason,), 86400.0, {})
    at = EPOCH.timestamp()
    records = [rejects.malformed(at + i, i % len(city.districts)) for i in range(8)]
    assert all(r.intent is Intent.MALFORMED and r.reason == reason for r in records)
    validator = EventValidator(load_reference(CITY_FILE), clock=FixedClock(EPOCH))
    for rec in records:
        if reason == "wrong_partition":  # the consumer's check, not the validator's
            validator.validate(rec.value, rec.stream)
            continue
        with pytest.raises(InvalidEvent) as caught:
            validator.validate(rec.value, rec.stream)
        assert caught.value.reason == reason

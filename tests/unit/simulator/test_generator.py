"""The pure generator: deterministic, in publish order, valid by contract, calibrated."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from streams.clock import FixedClock
from streams.errors import InvalidEvent
from streams.events import KIND_OF_TYPE, STREAM_OF_KIND, Kind
from streams.reference import load_reference
from streams.simulator.city import SimCity
from streams.simulator.config import SimConfig
from streams.simulator.generator import generate_events
from streams.simulator.records import Intent, SimRecord
from streams.state import DistrictState, Outcome
from streams.validation import EventValidator
from tests.support import ENVELOPE

from .support import (
    CITY_FILE,
    CODE,
    DATA_FIELDS,
    EPOCH,
    IDENT,
    OFFSET_TIME,
    SHANGHAI,
    doc,
    run,
    ts_of,
)


def test_same_seed_same_records_other_seed_other_records(city: SimCity) -> None:
    kw = {"seed": 5, "late_share": 0.02, "duplicate_share": 0.02, "malformed_share": 0.02}
    a = run(city, **kw)
    b = run(city, **kw)
    assert len(a) > 1000
    assert a == b
    c = run(city, **{**kw, "seed": 6})
    assert [r.value for r in c] != [r.value for r in a]


def test_no_wall_clock_times_follow_the_configured_start(city: SimCity) -> None:
    start = datetime(2019, 6, 1, tzinfo=UTC)
    records = run(city, start=start, end=start + timedelta(days=1))
    valid = [r for r in records if r.intent is Intent.VALID]
    assert valid
    assert all(start.timestamp() <= r.ts <= r.at < start.timestamp() + 86400 for r in valid)  # type: ignore[operator]
    assert all(doc(r)["time"].startswith("2019-06-0") for r in valid)  # type: ignore[attr-defined]


def test_max_records_and_end_are_respected(city: SimCity) -> None:
    assert len(run(city, max_records=123)) == 123
    records = run(city, end=EPOCH + timedelta(hours=6))
    assert max(r.at for r in records) < (EPOCH + timedelta(hours=6)).timestamp()


def check_valid_document(rec: SimRecord, reference_codes: frozenset[str], cats: dict) -> None:  # type: ignore[type-arg]
    d = doc(rec)
    assert set(d) == ENVELOPE
    assert d["specversion"] == "1.0"
    kind = KIND_OF_TYPE[d["type"]]  # type: ignore[index]
    assert kind is rec.kind
    assert STREAM_OF_KIND[kind] is rec.stream
    assert IDENT.match(d["id"]) and IDENT.match(d["subject"])  # type: ignore[arg-type]
    assert d["district"] in reference_codes and rec.key == str(d["district"]).encode()
    assert OFFSET_TIME.match(d["time"])  # type: ignore[arg-type]
    assert ts_of(d["time"]) == rec.ts
    data = d["data"]
    assert isinstance(data, dict)
    required, optional = DATA_FIELDS[kind]
    assert required <= set(data) <= required | optional, (kind, data)
    for name in ("community", "responsible_unit", "team", "area", "escalated_to"):
        if name in data:
            assert CODE.match(data[name]), data[name]
    if kind is Kind.CASE_FILED:
        assert data["category"] in cats["incident"]
        assert data["severity"] in ("minor", "serious", "major")
    if kind is Kind.DISPUTE_REPORTED:
        assert data["category"] in cats["dispute"]
        assert data["people_involved"] >= 1
    if kind is Kind.HAZARD_FOUND:
        assert data["category"] in cats["hazard"]
        assert isinstance(data["major"], bool)
        assert ts_of(data["deadline"]) > rec.ts  # type: ignore[operator]
        assert data["found_by"] in ("patrol", "inspection", "grid_worker", "public_report")
    if kind is Kind.PATROL_COMPLETED:
        assert ts_of(data["started_at"]) <= ts_of(data["ended_at"]) <= rec.ts + 600  # type: ignore[operator]
        assert data["findings"] >= 0
    if kind is Kind.HAZARD_VERIFIED:
        assert data["result"] in ("confirmed", "not_rectified")
        assert ("new_deadline" in data) == (data["result"] == "not_rectified")


def test_valid_records_follow_the_design_contract(city: SimCity, mixed: list[SimRecord]) -> None:
    reference = load_reference(CITY_FILE)
    valid = [r for r in mixed if r.intent is Intent.VALID]
    assert Counter(r.kind for r in valid).keys() == set(Kind)
    for rec in valid:
        check_valid_document(rec, reference.district_codes, reference.categories)


def test_records_come_in_publish_order_and_roughly_event_time_order(
    mixed: list[SimRecord],
) -> None:
    ats = [r.at for r in mixed]
    assert ats == sorted(ats)
    high: dict[bytes, float] = {}
    for rec in mixed:
        if rec.intent is not Intent.VALID:
            continue
        assert rec.ts is not None and rec.ts <= rec.at
        # Publishers sync within 15 minutes, so a district's event times never step
        # back further than that: far inside the engine's 24 h grace.
        assert rec.ts >= high.get(rec.key, -math.inf) - 900
        high[rec.key] = max(high.get(rec.key, -math.inf), rec.ts)


def test_duplicates_are_exact_resends_of_counted_records(mixed: list[SimRecord]) -> None:
    sent: dict[bytes, SimRecord] = {}
    dups = 0
    for rec in mixed:
        if rec.intent is Intent.VALID:
            sent[rec.value] = rec
        elif rec.intent is Intent.DUPLICATE:
            dups += 1
            original = sent[rec.value]
            assert (rec.stream, rec.key, rec.kind, rec.ts) == (
                original.stream,
                original.key,
                original.kind,
                original.ts,
            )
            assert rec.reason == "duplicate"
            assert 0 < rec.at - original.at <= 1205  # well inside the dedup horizon
    assert dups > 100


def test_shares_are_what_was_asked_for(mixed: list[SimRecord]) -> None:
    n = len(mixed)
    intents = Counter(r.intent for r in mixed)
    assert intents[Intent.LATE] / n == pytest.approx(0.03, abs=0.006)
    assert intents[Intent.DUPLICATE] / n == pytest.approx(0.03, abs=0.006)
    assert intents[Intent.MALFORMED] / n == pytest.approx(0.06, abs=0.009)


def test_every_record_gets_the_verdict_its_intent_says(
    city: SimCity, mixed: list[SimRecord]
) -> None:
    """Through the real validator and the engine's district state, in publish order:
    valid records count, duplicates repeat, late ones are too late, malformed ones are
    rejected with the reason they were made for."""
    validator = EventValidator(
        load_reference(CITY_FILE), clock=FixedClock(EPOCH + timedelta(days=30))
    )
    states: dict[str, DistrictState] = {}
    verdicts: Counter[tuple[str, str | None, str | None]] = Counter()
    for rec in mixed:
        try:
            event = validator.validate(rec.value, rec.stream)
        except InvalidEvent as exc:
            got: str | None = exc.reason
        else:
            if rec.reason == "wrong_partition":
                got = "wrong_partition"  # the consumer's check: the partition is not here
            else:
                state = states.setdefault(event.district, DistrictState(event.district, SHANGHAI))
                got = {
                    Outcome.COUNTED: None,
                    Outcome.DUPLICATE: "duplicate",
                    Outcome.TOO_LATE: "too_late",
                }[state.apply(event)]
        verdicts[(rec.intent.value, rec.reason, got)] += 1
    wrong = {k: v for k, v in verdicts.items() if k[1] != k[2]}
    assert not wrong, wrong
    assert {k[0] for k in verdicts} == {i.value for i in Intent}


def test_rate_is_calibrated_once_lifecycles_flow(long_run: list[SimRecord]) -> None:
    lo = (EPOCH + timedelta(days=30)).timestamp()
    hi = (EPOCH + timedelta(days=60)).timestamp()
    n = sum(1 for r in long_run if lo <= r.at < hi)
    assert n / (hi - lo) == pytest.approx(0.015, rel=0.08)


def test_history_runs_at_its_own_rate_then_the_live_rate(city: SimCity) -> None:
    live = EPOCH + timedelta(days=20)
    config = SimConfig(
        start=EPOCH,
        end=live + timedelta(hours=25),
        rate=0.2,
        history_rate=0.02,
        live_from=live,
        seed=4,
    )
    records = list(generate_events(city, config))
    starts = {Kind.CASE_FILED, Kind.DISPUTE_REPORTED, Kind.HAZARD_FOUND, Kind.PATROL_COMPLETED}

    def start_rate(lo: datetime, hi: datetime) -> float:
        n = sum(1 for r in records if r.kind in starts and lo.timestamp() <= r.ts < hi.timestamp())  # type: ignore[operator]
        return n / (hi - lo).total_seconds()

    before = start_rate(live - timedelta(days=10), live)
    after = start_rate(live + timedelta(hours=1), live + timedelta(hours=25))
    # Starts (not follow-ups, which lag) jump tenfold at the live start; whole days on
    # both sides, so the hourly rhythm averages out.
    assert after / before == pytest.approx(10, rel=0.2)

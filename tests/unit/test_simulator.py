"""The simulator: reference data, the pure generator's determinism and realism, files, CLI."""

from __future__ import annotations

import argparse
import gzip
import math
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from streams.clock import FixedClock
from streams.errors import InvalidEvent, SettingsError, WatchfloorError
from streams.events import KIND_OF_TYPE, STREAM_OF_KIND, TYPE_OF_KIND, Kind, Stream
from streams.reference import load_reference
from streams.settings import PROJECT_ROOT, Settings
from streams.simulation import (
    MALFORMED_REASONS,
    Intent,
    LocalTime,
    SimCity,
    SimConfig,
    SimRecord,
    drill_deadlines,
    generate_events,
    record_from_line,
    record_to_line,
    retime_record,
    shard,
    shift_record,
    synthetic_city_document,
)
from streams.simulator import (
    DEMO_BACKFILL,
    Pacer,
    live_config,
    load_city,
    parse_duration,
    parse_when,
    read_records,
    register_cli,
    shifted,
    write_records,
    write_reference,
)
from streams.state import DistrictState, Outcome
from streams.validation import EventValidator

CITY_FILE = PROJECT_ROOT / "seeds" / "reference" / "city.json"
DESIGN = PROJECT_ROOT / "docs" / "design.md"
DISTRICT_CODE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
IDENT = re.compile(r"^[!-~]{1,128}$")
OFFSET_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
EPOCH = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday, 08:00 in Asia/Shanghai
SHANGHAI = ZoneInfo("Asia/Shanghai")

# docs/design.md, "Event types and their data": required fields, then optional ones.
DATA_FIELDS: dict[Kind, tuple[set[str], set[str]]] = {
    Kind.CASE_FILED: ({"category", "severity"}, {"community", "location"}),
    Kind.CASE_CLEARED: (set(), {"category", "community"}),
    Kind.DISPUTE_REPORTED: (
        {"category", "responsible_unit"},
        {"community", "people_involved"},
    ),
    Kind.DISPUTE_MEDIATION_STARTED: ({"responsible_unit"}, set()),
    Kind.DISPUTE_RESOLVED: (set(), {"responsible_unit"}),
    Kind.DISPUTE_ESCALATED: ({"escalated_to"}, set()),
    Kind.PATROL_COMPLETED: ({"team", "started_at", "ended_at", "area", "findings"}, set()),
    Kind.HAZARD_FOUND: (
        {"category", "major", "deadline", "responsible_unit"},
        {"community", "found_by"},
    ),
    Kind.HAZARD_RECTIFIED: (set(), {"responsible_unit"}),
    Kind.HAZARD_VERIFIED: ({"result"}, {"new_deadline"}),
}
ENVELOPE = {
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "dataschema",
    "district",
    "data",
}


@pytest.fixture(scope="module")
def city() -> SimCity:
    return load_city(CITY_FILE)


def run(city: SimCity, **kw: object) -> list[SimRecord]:
    args: dict[str, object] = {"start": EPOCH, "end": EPOCH + timedelta(days=3), "rate": 0.2}
    args.update(kw)
    return list(generate_events(city, SimConfig(**args)))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def mixed(city: SimCity) -> list[SimRecord]:
    """Four days of the seed city with every kind of bad record in good numbers."""
    return run(
        city,
        end=EPOCH + timedelta(days=4),
        rate=0.3,
        seed=7,
        late_share=0.03,
        duplicate_share=0.03,
        malformed_share=0.06,
    )


@pytest.fixture(scope="module")
def long_run(city: SimCity) -> list[SimRecord]:
    """Sixty days at a low rate: enough lifecycles for the ratios, little time."""
    return run(city, end=EPOCH + timedelta(days=60), rate=0.015, seed=11)


def doc(rec: SimRecord) -> dict[str, object]:
    value = orjson.loads(rec.value)
    assert isinstance(value, dict)
    return value


def ts_of(text: object) -> float:
    assert isinstance(text, str)
    return datetime.fromisoformat(text).timestamp()


def local_hour(ts: float) -> int:
    return datetime.fromtimestamp(ts, SHANGHAI).hour


# --------------------------------------------------------------------------------------
# Reference data
# --------------------------------------------------------------------------------------


def design_categories() -> dict[str, list[str]]:
    """The category codes listed in docs/design.md (the contract)."""
    text = DESIGN.read_text(encoding="utf-8")
    section = text[text.index("Categories (codes") :]
    section = section[: section.index("## ")]
    out: dict[str, list[str]] = {}
    for group in re.split(r"\n- ", "\n" + section)[1:]:
        name, _, rest = group.partition(":")
        out[name.strip()] = re.findall(r"`([a-z_]+)`", rest)
    return out


def test_categories_are_the_design_contract() -> None:
    raw = orjson.loads((CITY_FILE.parent / "categories.json").read_bytes())
    listed = {k: [c["code"] for c in v] for k, v in raw.items()}
    assert listed == design_categories()
    for items in raw.values():
        for c in items:
            assert c["name"] and c["name_zh"] and len(c["description"]) > 20


def test_reference_city_is_shaped_like_the_seed_document() -> None:
    reference = load_reference(CITY_FILE)
    raw = orjson.loads(CITY_FILE.read_bytes())
    assert raw["city"]["timezone"] == "Asia/Shanghai"
    assert 8 <= len(reference.districts) <= 12
    kinds = Counter(d["kind"] for d in raw["districts"])
    assert kinds["district"] >= 5 and kinds["county"] >= 2
    jinshui = next(d for d in raw["districts"] if d["code"] == "jinshui")
    assert len(reference.districts["jinshui"].communities) == 58
    assert len(jinshui["patrol_teams"]) == 10
    assert all(t["full_time"] for t in jinshui["patrol_teams"])
    assert len(jinshui["security_committees"]) == 93
    assert len(jinshui["mediation_committees"]) == 85
    others = [len(d.communities) for c, d in reference.districts.items() if c != "jinshui"]
    assert max(others) < 58


def test_reference_codes_match_the_contract_and_are_unique() -> None:
    raw = orjson.loads(CITY_FILE.read_bytes())
    categories = design_categories()
    seen: set[str] = set()

    def code(value: str) -> None:
        assert CODE.match(value), value
        assert value not in seen, f"{value} twice"
        seen.add(value)

    for d in raw["districts"]:
        assert DISTRICT_CODE.match(d["code"])
        code(d["code"])
        for street in d["streets"]:
            code(street["code"])
            for c in street["communities"]:
                code(c["code"])
        for key in ("patrol_teams", "key_areas", "security_committees", "mediation_committees"):
            for item in d[key]:
                code(item["code"])
        handled = set()
        for unit in d["units"]:
            code(unit["code"])
            assert set(unit["handles"]["hazard"]) <= set(categories["hazard"])
            assert set(unit["handles"]["dispute"]) <= set(categories["dispute"])
            handled |= set(unit["handles"]["hazard"])
        assert handled == set(categories["hazard"]), d["code"]
        assert any(u["role"] == "escalation" for u in d["units"])


def test_synthetic_city_has_n_districts_and_loads(tmp_path: Path) -> None:
    path = write_reference(tmp_path / "city.json", 1000)
    reference = load_reference(path)
    assert len(reference.districts) == 1000
    assert sorted(reference.districts)[:2] == ["d0001", "d0002"]
    assert "d1000" in reference.districts
    assert all(DISTRICT_CODE.match(c) for c in reference.districts)
    assert reference.categories == load_reference(CITY_FILE).categories
    city = load_city(path)
    assert len(city.districts) == 1000
    # Districts without units fall back to conventional unit codes.
    assert city.district("d0007").hazard_units["fire"] == "d0007-fire-brigade"


def test_synthetic_city_rejects_nonsense() -> None:
    with pytest.raises(SettingsError):
        synthetic_city_document(0)


def test_more_districts_than_the_reference_is_a_plain_error(city: SimCity) -> None:
    with pytest.raises(SettingsError, match="synthetic city"):
        city.subset(len(city.districts) + 1)
    assert [d.code for d in city.subset(3).districts] == [d.code for d in city.districts[:3]]


# --------------------------------------------------------------------------------------
# Determinism and purity
# --------------------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"late_share": 0.3, "duplicate_share": 0.3}, "shares"),
        ({"rate": 0.0}, "rate"),
        ({"start": datetime(2026, 1, 1)}, "offset"),
        ({"end": EPOCH - timedelta(days=1)}, "end after"),
        ({"malformed_reasons": ("no_such_reason",)}, "Unknown malformed"),
        ({"tag": "bad tag!"}, "tag"),
    ],
)
def test_config_errors_are_plain_sentences(
    city: SimCity, change: dict[str, object], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        run(city, **change)


# --------------------------------------------------------------------------------------
# What each record is meant to be
# --------------------------------------------------------------------------------------


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


def test_lifecycles_are_consistent(mixed: list[SimRecord]) -> None:
    seen: dict[str, list[tuple[Kind, dict[str, object]]]] = defaultdict(list)
    ids = set()
    starts = {Kind.CASE_FILED, Kind.DISPUTE_REPORTED, Kind.HAZARD_FOUND, Kind.PATROL_COMPLETED}
    for rec in mixed:
        if rec.intent is not Intent.VALID:
            continue
        d = doc(rec)
        assert (d["source"], d["id"]) not in ids
        ids.add((d["source"], d["id"]))
        subject = str(d["subject"])
        history = seen[subject]
        kind = rec.kind
        assert kind is not None
        if not history:
            assert kind in starts, (subject, kind)
        else:
            assert kind not in starts
            previous = [k for k, _ in history]
            if kind is Kind.CASE_CLEARED:
                assert previous == [Kind.CASE_FILED]
            elif kind is Kind.DISPUTE_MEDIATION_STARTED:
                assert previous == [Kind.DISPUTE_REPORTED]
            elif kind is Kind.DISPUTE_RESOLVED:
                assert previous == [Kind.DISPUTE_REPORTED, Kind.DISPUTE_MEDIATION_STARTED]
            elif kind is Kind.DISPUTE_ESCALATED:
                assert previous[0] is Kind.DISPUTE_REPORTED and len(previous) <= 2
            elif kind is Kind.HAZARD_RECTIFIED:
                # The first time, or again after a look-back visit found it not done.
                assert previous[-1] in (Kind.HAZARD_FOUND, Kind.HAZARD_VERIFIED)
                if previous[-1] is Kind.HAZARD_VERIFIED:
                    assert history[-1][1]["result"] == "not_rectified"
            elif kind is Kind.HAZARD_VERIFIED:
                assert previous[-1] is Kind.HAZARD_RECTIFIED
        history.append((kind, d["data"]))  # type: ignore[arg-type]
    rounds = Counter(len(h) for h in seen.values())
    assert rounds[1] and rounds[2] and rounds[3]


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


STREAM_KINDS = {s: {k for k, v in STREAM_OF_KIND.items() if v is s} for s in Stream}


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


def test_shares_are_what_was_asked_for(mixed: list[SimRecord]) -> None:
    n = len(mixed)
    intents = Counter(r.intent for r in mixed)
    assert intents[Intent.LATE] / n == pytest.approx(0.03, abs=0.006)
    assert intents[Intent.DUPLICATE] / n == pytest.approx(0.03, abs=0.006)
    assert intents[Intent.MALFORMED] / n == pytest.approx(0.06, abs=0.009)


def test_wrong_partition_can_be_left_out(city: SimCity) -> None:
    reasons = tuple(r for r in MALFORMED_REASONS if r != "wrong_partition")
    records = run(city, malformed_share=0.1, malformed_reasons=reasons, seed=3)
    got = {r.reason for r in records if r.intent is Intent.MALFORMED}
    assert got == set(reasons)
    assert {
        r.reason for r in generate_events(city, live_config(EPOCH, partitions=1, max_records=20000))
    } & {"wrong_partition"} == set()


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


# --------------------------------------------------------------------------------------
# Realism
# --------------------------------------------------------------------------------------


def test_rate_is_calibrated_once_lifecycles_flow(long_run: list[SimRecord]) -> None:
    lo = (EPOCH + timedelta(days=30)).timestamp()
    hi = (EPOCH + timedelta(days=60)).timestamp()
    n = sum(1 for r in long_run if lo <= r.at < hi)
    assert n / (hi - lo) == pytest.approx(0.015, rel=0.08)


def test_day_and_night_rhythm(long_run: list[SimRecord]) -> None:
    filed = Counter(local_hour(r.ts) for r in long_run if r.kind is Kind.CASE_FILED)  # type: ignore[arg-type]
    evening = sum(filed[h] for h in range(18, 23))
    small_hours = sum(filed[h] for h in range(2, 7))
    assert evening > 2.5 * small_hours
    found = [r for r in long_run if r.kind is Kind.HAZARD_FOUND]
    office = sum(1 for r in found if 8 <= local_hour(r.ts) < 18)  # type: ignore[arg-type]
    assert office > 0.7 * len(found)
    patrols = Counter(
        local_hour(ts_of(doc(r)["data"]["started_at"]))
        for r in long_run
        if r.kind is Kind.PATROL_COMPLETED
    )  # type: ignore[index]
    night = sum(patrols[h] for h in (*range(20, 24), *range(0, 6)))
    assert night > 0.3 * sum(patrols.values())  # patrols day and night


def test_patrol_teams_work_their_shifts(city: SimCity, long_run: list[SimRecord]) -> None:
    raw = orjson.loads(CITY_FILE.read_bytes())
    shift = {t["code"]: t["shift"] for d in raw["districts"] for t in d["patrol_teams"]}
    for rec in long_run:
        if rec.kind is not Kind.PATROL_COMPLETED:
            continue
        data = doc(rec)["data"]
        hour = local_hour(ts_of(data["started_at"]))  # type: ignore[index]
        night = hour >= 20 or hour < 8
        assert shift[data["team"]] in (("night", "both") if night else ("day", "both"))  # type: ignore[index]


def test_lifecycle_outcomes_are_realistic(long_run: list[SimRecord]) -> None:
    by_subject: dict[str, dict[Kind, list[dict[str, object]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for rec in long_run:
        d = doc(rec)
        by_subject[str(d["subject"])][rec.kind].append({**d, "_ts": rec.ts})  # type: ignore[index]
    cutoff = (EPOCH + timedelta(days=20)).timestamp()  # lifecycles with 40 days to run

    def early(h: dict[Kind, list[dict[str, object]]], kind: Kind) -> bool:
        return kind in h and h[kind][0]["_ts"] < cutoff  # type: ignore[operator]

    cases = [h for h in by_subject.values() if early(h, Kind.CASE_FILED)]
    cleared = sum(1 for h in cases if Kind.CASE_CLEARED in h) / len(cases)
    assert 0.42 <= cleared <= 0.60  # the seed: 778 of 1,538

    hazards = [h for h in by_subject.values() if early(h, Kind.HAZARD_FOUND)]
    on_time = late = never = 0
    for h in hazards:
        deadline = ts_of(h[Kind.HAZARD_FOUND][0]["data"]["deadline"])  # type: ignore[index]
        if Kind.HAZARD_RECTIFIED not in h:
            never += 1
        elif h[Kind.HAZARD_RECTIFIED][0]["_ts"] <= deadline:  # type: ignore[operator]
            on_time += 1
        else:
            late += 1
    assert on_time / len(hazards) == pytest.approx(0.82, abs=0.04)
    assert late / len(hazards) == pytest.approx(0.13, abs=0.04)
    assert 0.02 <= never / len(hazards) <= 0.09
    verified = [h for h in hazards if Kind.HAZARD_VERIFIED in h]
    failed = [
        h for h in verified if h[Kind.HAZARD_VERIFIED][0]["data"]["result"] == "not_rectified"
    ]  # type: ignore[index]
    assert 0.5 <= len(verified) / (on_time + late) <= 0.7
    assert 0 < len(failed) < 0.15 * len(verified)
    majors = sum(1 for h in hazards if h[Kind.HAZARD_FOUND][0]["data"]["major"])  # type: ignore[index]
    assert 0.01 < majors / len(hazards) < 0.12

    disputes = [h for h in by_subject.values() if early(h, Kind.DISPUTE_REPORTED)]
    mediated = sum(1 for h in disputes if Kind.DISPUTE_MEDIATION_STARTED in h) / len(disputes)
    resolved = sum(1 for h in disputes if Kind.DISPUTE_RESOLVED in h) / len(disputes)
    escalated = sum(1 for h in disputes if Kind.DISPUTE_ESCALATED in h) / len(disputes)
    assert mediated > 0.88
    assert 0.7 < resolved < 0.9  # "over 80 % resolved" in the seed
    assert 0.01 < escalated < 0.12


def test_overdue_drill_hazards_go_overdue_within_minutes(city: SimCity) -> None:
    drill_at = EPOCH + timedelta(hours=1)
    config = SimConfig(
        start=EPOCH, end=EPOCH + timedelta(hours=3), rate=0.2, overdue_drill=6, drill_at=drill_at
    )
    records = list(generate_events(city, config))
    planned = drill_deadlines(city, config)
    assert len(planned) == 6
    found = {str(doc(r)["subject"]): r for r in records if r.kind is Kind.HAZARD_FOUND}
    later = {str(doc(r)["subject"]) for r in records if r.kind is Kind.HAZARD_RECTIFIED}
    for district, subject, deadline in planned:
        rec = found[subject]
        assert rec.key == district.encode()
        assert ts_of(doc(rec)["data"]["deadline"]) == deadline  # type: ignore[index]
        assert 0 <= rec.ts - drill_at.timestamp() <= 120  # type: ignore[operator]
        assert 60 <= deadline - rec.ts <= 600  # type: ignore[operator]
        assert subject not in later
    assert any(doc(found[s])["data"]["major"] for _, s, _ in planned)  # type: ignore[index]
    assert len({d for d, _, _ in planned}) >= 3


def test_tag_keeps_two_runs_apart(city: SimCity) -> None:
    a = {str(doc(r)["subject"]) for r in run(city, tag="r1", max_records=500)}
    b = {str(doc(r)["subject"]) for r in run(city, tag="r2", max_records=500)}
    assert a and b and not a & b


# --------------------------------------------------------------------------------------
# Time helpers
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/Berlin", "America/St_Johns"])
def test_local_time_formatting_agrees_with_datetime(zone: str) -> None:
    tz = ZoneInfo(zone)
    local = LocalTime(tz)
    assert (local.fixed is not None) == (zone == "Asia/Shanghai")
    import random

    rng = random.Random(1)
    # Around DST changes too: every hour of late March and late October 2026.
    probes = [int(datetime(2026, 3, 28, tzinfo=UTC).timestamp()) + h * 3600 for h in range(72)]
    probes += [int(datetime(2026, 10, 24, tzinfo=UTC).timestamp()) + h * 3600 for h in range(72)]
    probes += [rng.randrange(946_684_800, 2_000_000_000) for _ in range(2000)]
    for ts in probes:
        when = datetime.fromtimestamp(ts, tz)
        assert local.format(ts) == when.isoformat(), ts
        assert local.hour(ts) == when.hour
        assert datetime.fromtimestamp(local.midnight(ts), tz).time().hour == 0


def test_deadlines_fall_at_six_in_the_evening(mixed: list[SimRecord]) -> None:
    found = [r for r in mixed if r.kind is Kind.HAZARD_FOUND and r.intent is Intent.VALID]
    assert all(str(doc(r)["data"]["deadline"]).endswith("T18:00:00+08:00") for r in found)  # type: ignore[index]


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


def test_pacer_maps_publish_time_to_wall_time() -> None:
    pacer = Pacer(sim_origin=1000.0, wall_origin=50.0, speed=60.0)
    assert pacer.due(1000.0) == 50.0
    assert pacer.due(1600.0) == 60.0
    assert Pacer(1000.0, 50.0, 0.0).due(10**9) == -math.inf
    with pytest.raises(SettingsError):
        Pacer(0, 0, -1)


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


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


def test_shift_moves_every_timestamp_and_keeps_offsets(mixed: list[SimRecord]) -> None:
    delta = 400 * 86400 + 17
    found = next(r for r in mixed if r.kind is Kind.HAZARD_FOUND and r.intent is Intent.VALID)
    moved = shift_record(found, delta)
    before, after = doc(found), doc(moved)
    assert ts_of(after["time"]) - ts_of(before["time"]) == delta
    assert ts_of(after["data"]["deadline"]) - ts_of(before["data"]["deadline"]) == delta  # type: ignore[index]
    assert str(after["time"]).endswith("+08:00")
    assert moved.at == found.at + delta and moved.ts == found.ts + delta  # type: ignore[operator]
    patrol = next(r for r in mixed if r.kind is Kind.PATROL_COMPLETED)
    p = doc(shift_record(patrol, delta))["data"]
    assert ts_of(p["ended_at"]) - ts_of(doc(patrol)["data"]["ended_at"]) == delta  # type: ignore[index]
    naive = next(r for r in mixed if r.reason == "naive_time")
    assert datetime.fromisoformat(str(doc(shift_record(naive, delta))["time"])).tzinfo is None
    out_of_range = next(r for r in mixed if r.reason == "time_out_of_range")
    assert shift_record(out_of_range, delta).value == out_of_range.value
    # A duplicate and its original stay identical.
    dup = next(r for r in mixed if r.intent is Intent.DUPLICATE)
    original = next(r for r in mixed if r.intent is Intent.VALID and r.value == dup.value)
    assert shift_record(dup, delta).value == shift_record(original, delta).value
    # shifted() puts the first record where asked.
    moved_all = list(shifted(mixed[:50], mixed[0].at + 3600))
    assert moved_all[0].at == mixed[0].at + 3600
    assert [b.at - a.at for a, b in zip(mixed[:50], moved_all, strict=True)] == [3600] * 50


def test_retime_maps_every_timestamp_through_the_function(mixed: list[SimRecord]) -> None:
    origin = mixed[0].at

    def squeeze(t: float) -> float:  # a day becomes ten seconds, fractions kept
        return origin + (t - origin) / 8640

    found = next(r for r in mixed if r.kind is Kind.HAZARD_FOUND and r.intent is Intent.VALID)
    moved = retime_record(found, squeeze)
    before, after = doc(found), doc(moved)
    assert ts_of(after["time"]) == pytest.approx(squeeze(ts_of(before["time"])), abs=1e-6)
    assert ts_of(after["data"]["deadline"]) == pytest.approx(  # type: ignore[index]
        squeeze(ts_of(before["data"]["deadline"])), abs=1e-6  # type: ignore[index]
    )
    assert str(after["time"]).endswith("+08:00") and OFFSET_TIME.match(str(after["time"]))
    assert moved.at == squeeze(found.at) and moved.ts == squeeze(found.ts)  # type: ignore[arg-type]
    # Still a valid event: the deadline stays after the found time.
    clock = FixedClock(datetime.fromtimestamp(squeeze(found.at) + 1, UTC))
    event = EventValidator(load_reference(CITY_FILE), clock=clock).validate(
        moved.value, Stream.PATROLS
    )
    assert event.deadline is not None and event.deadline > event.ts
    patrol = next(r for r in mixed if r.kind is Kind.PATROL_COMPLETED)
    p, q = doc(patrol)["data"], doc(retime_record(patrol, squeeze))["data"]
    for name in ("started_at", "ended_at"):
        assert ts_of(q[name]) == pytest.approx(squeeze(ts_of(p[name])), abs=1e-6)  # type: ignore[index]
    naive = next(r for r in mixed if r.reason == "naive_time")
    assert datetime.fromisoformat(str(doc(retime_record(naive, squeeze))["time"])).tzinfo is None
    out_of_range = next(r for r in mixed if r.reason == "time_out_of_range")
    assert retime_record(out_of_range, squeeze).value == out_of_range.value
    # A shift is a retime by a constant.
    assert retime_record(found, lambda t: t + 3600).value == shift_record(found, 3600).value


# --------------------------------------------------------------------------------------
# Command line (without a broker: --output)
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Backfill at a history rate, and splitting a city over processes
# --------------------------------------------------------------------------------------


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


def test_live_config_caps_the_backfill(city: SimCity) -> None:
    config = live_config(EPOCH, rate=20.0, max_records=None, duration=timedelta(minutes=1))
    assert config.rate == 20.0 and config.live_from == EPOCH
    assert config.history_rate is not None
    assert config.history_rate * DEMO_BACKFILL.total_seconds() == pytest.approx(300_000)
    assert config.start == EPOCH - DEMO_BACKFILL
    history = sum(1 for r in generate_events(city, config) if r.at < EPOCH.timestamp())
    assert 240_000 < history < 330_000


def test_shards_split_districts_and_rate_and_are_deterministic(city: SimCity) -> None:
    config = SimConfig(start=EPOCH, end=EPOCH + timedelta(days=1), rate=0.5, overdue_drill=3)
    parts = [shard(city, config, i, 3) for i in range(3)]
    codes = [d.code for p, _ in parts for d in p.districts]
    assert sorted(codes) == sorted(d.code for d in city.districts)
    assert sum(c.rate for _, c in parts) == pytest.approx(0.5)
    assert [c.overdue_drill for _, c in parts] == [3, 0, 0]
    assert len({c.seed for _, c in parts}) == 3
    one = list(generate_events(*parts[1]))
    assert one == list(generate_events(*shard(city, config, 1, 3)))
    assert {r.key.decode() for r in one} <= {d.code for d in parts[1][0].districts}
    assert shard(city, config, 0, 1) == (city, config)
    capped = shard(city, SimConfig(start=EPOCH, rate=1.0, max_records=10), 0, 3)[1]
    assert capped.max_records == 4
    with pytest.raises(SettingsError):
        shard(city, config, 3, 3)


def test_summaries_merge() -> None:
    from streams.simulation import Tally
    from streams.simulator import ProduceSummary, merge_summaries

    rec = SimRecord(1.0, Stream.PATROLS, b"jinshui", b"x", Intent.VALID, None, None, None)
    a, b = ProduceSummary(), ProduceSummary()
    a.topics, b.topics = {"t": 2}, {"t": 3, "u": 1}
    a.tally, b.tally = Tally(), Tally()
    for _ in range(2):
        a.tally.add(rec)
    b.tally.add(rec._replace(intent=Intent.DUPLICATE, reason="duplicate"))
    a.seconds, b.seconds, a.first_at, b.first_at = 2.0, 3.0, 10.0, 5.0
    merged = merge_summaries([a, b])
    assert merged.topics == {"t": 5, "u": 1} and merged.delivered == 6
    assert merged.tally.total == 3 and merged.tally.by_intent == {"duplicate": 1, "valid": 2}
    assert merged.seconds == 3.0 and merged.first_at == 5.0

"""Work safety, 2024 to June 2025: the four indicators and targets recounted from the events."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any

from streams.events import Kind
from streams.periods import Period
from streams.reference import load_reference
from streams.simulator.files import load_expected
from streams.worksafety import indicators, share_reached_at

from .support import CITY_FILE, TZ, counted_states, events, when

NAME = "work-safety-2025h1"
FIELDS = ("deaths", "serious_injuries", "direct_loss_yuan")


def accidents() -> list[dict[str, Any]]:
    """Each accident: its district, its time (the first report's) and its latest figures,
    with the time of that latest report."""
    by_subject: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events(NAME):
        assert e["_kind"] is Kind.ACCIDENT_REPORTED
        by_subject[e["subject"]].append(e)
    out = []
    for reports in by_subject.values():
        reports.sort(key=lambda e: e["_ts"])
        first, latest = reports[0], reports[-1]
        assert len({r["district"] for r in reports}) == 1
        assert {r["data"]["category"] for r in reports} == {first["data"]["category"]}
        out.append(
            {
                "district": first["district"],
                "time": first["_ts"],
                "reported": latest["_ts"],
                "revised": len(reports) > 1,
                **{f: latest["data"][f] for f in FIELDS},
            }
        )
    return out


def sums(accs: list[dict[str, Any]]) -> dict[str, int]:
    return {"accidents": len(accs), **{f: sum(a[f] for a in accs) for f in FIELDS}}


def test_figures_recounted_from_the_events() -> None:
    exp = load_expected(NAME)
    accs = accidents()
    assert len(accs) == exp["accidents"] == 128
    assert sum(a["revised"] for a in accs) == exp["revised"]
    h1_25 = (when(exp["period"]["from"]), when(exp["period"]["to"]))
    h1_24 = (when(exp["previous_period"]["from"]), when(exp["previous_period"]["to"]))
    y2024 = (when(exp["from"]), h1_25[0])

    def within(span: tuple[float, float], district: str | None = None) -> list[dict[str, Any]]:
        return [
            a
            for a in accs
            if span[0] <= a["time"] < span[1] and district in (None, a["district"])
        ]

    city = exp["city"]
    assert sums(within(h1_25)) == city["current"]
    assert sums(within(h1_24)) == city["previous"]
    assert sums(within(y2024)) == city["year_2024"]
    # 上半年 ... "四项指标"的全面下降: all four indicators down on the same half of 2024.
    assert all(city["current"][k] < city["previous"][k] for k in city["current"])
    for district, fig in exp["by_district"].items():
        assert sums(within(h1_25, district)) == fig["current"], district
        assert sums(within(h1_24, district)) == fig["previous"], district
        assert sums(within(y2024, district)) == fig["year_2024"], district
        assert fig["used"] == fig["current"]["deaths"]
        assert fig["alert_threshold"] == max(1, math.ceil(0.8 * fig["target"] - 1e-9))
    assert all(when(exp["from"]) <= a["time"] < when(exp["to"]) for a in accs)


def test_targets_are_the_reference_data_and_the_speech() -> None:
    exp = load_expected(NAME)
    y2025 = load_reference(CITY_FILE).work_safety[2025]
    # "死亡人数控制指标为103人,比上年减少了21人"
    city = exp["city"]
    assert (city["target"], city["last_year"], city["change_from_last_year"]) == (103, 124, -21)
    assert (y2025.city.deaths, y2025.city.last_year) == (103, 124)
    assert city["alert_share"] == y2025.alert_share
    for district, fig in exp["by_district"].items():
        target = y2025.districts[district]
        assert (fig["target"], fig["last_year"]) == (target.deaths, target.last_year)
        # Each district's 2024 deaths are the figure its 2025 target is compared with.
        assert fig["year_2024"]["deaths"] == target.last_year


def test_baihe_reaches_the_alert_share_with_a_revision() -> None:
    exp = load_expected(NAME)
    fig = exp["by_district"]["baihe"]
    h1_25 = (when(exp["period"]["from"]), when(exp["period"]["to"]))
    mine = sorted(
        (a for a in accidents() if a["district"] == "baihe" and h1_25[0] <= a["time"] < h1_25[1]),
        key=lambda a: a["reported"],
    )
    # Deaths in the order their latest reports came: the threshold is reached by a revision.
    running, crossing = 0, None
    for a in mine:
        running += a["deaths"]
        if running >= fig["alert_threshold"]:
            crossing = a
            break
    assert crossing is not None and crossing["revised"]
    assert fig["alert_share_reached_at"] is not None
    assert crossing["reported"] == when(fig["alert_share_reached_at"])
    assert all(
        f["alert_share_reached_at"] is None
        for d, f in exp["by_district"].items()
        if d != "baihe"
    )


def test_engine_state_reads_the_expected_figures() -> None:
    exp = load_expected(NAME)
    states = counted_states(NAME)
    period = Period("h1", *(datetime_of(exp["period"][k]) for k in ("from", "to")))
    previous = Period("h1", *(datetime_of(exp["previous_period"][k]) for k in ("from", "to")))
    for district, fig in exp["by_district"].items():
        st = states[district]
        assert indicators(st, period) == list(fig["current"].values()), district
        assert indicators(st, previous) == list(fig["previous"].values()), district
        reached = share_reached_at(st, 2025, fig["used"], fig["alert_threshold"])
        want = fig["alert_share_reached_at"]
        assert reached == (None if want is None else when(want)), district


def datetime_of(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(TZ)

"""The seed city and synthetic cities as the simulator reads them."""

from __future__ import annotations

import re
from collections import Counter

import orjson
import pytest

from streams.errors import SettingsError
from streams.reference import load_reference
from streams.simulator.city import SimCity, synthetic_city_document

from .support import CITY_FILE, CODE, DESIGN, DISTRICT_CODE


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


def test_synthetic_city_rejects_nonsense() -> None:
    with pytest.raises(SettingsError):
        synthetic_city_document(0)


def test_more_districts_than_the_reference_is_a_plain_error(city: SimCity) -> None:
    with pytest.raises(SettingsError, match="synthetic city"):
        city.subset(len(city.districts) + 1)
    assert [d.code for d in city.subset(3).districts] == [d.code for d in city.districts[:3]]

"""The seed document's figures as scenarios: each builder by name (files in seeds/scenarios/)."""

from __future__ import annotations

from collections.abc import Callable

from ...errors import SettingsError
from ..city import SimCity
from . import cases, city_management, disputes, overdue_week, work_safety
from .builder import Scenario

SCENARIOS: dict[str, Callable[[SimCity], Scenario]] = {
    m.NAME: m.build for m in (city_management, cases, disputes, overdue_week, work_safety)
}


def build_scenario(name: str, city: SimCity) -> Scenario:
    """Build a scenario from the reference city (deterministic: fixed seeds and dates)."""
    try:
        builder = SCENARIOS[name]
    except KeyError:
        raise SettingsError(
            f"There is no scenario {name!r} (known: {', '.join(SCENARIOS)})."
        ) from None
    return builder(city)


__all__ = ["SCENARIOS", "Scenario", "build_scenario"]

"""A simulation split by district into parts, for producing from several processes."""

from __future__ import annotations

import dataclasses

from ..errors import SettingsError
from .city import SimCity
from .config import SimConfig


def shard(city: SimCity, config: SimConfig, index: int, count: int) -> tuple[SimCity, SimConfig]:
    """Part ``index`` of ``count`` of a simulation, for producing from several processes.

    Districts are dealt out in turn; each part runs at its districts' share of the rate
    with its own seed, so every part is deterministic, and together they make a city
    whose records are as realistic as one process's (not the same records). The overdue
    drill runs in part 0 only.
    """
    if not 0 <= index < count:
        raise SettingsError(f"Shard {index} of {count} does not exist.")
    if count > len(city.districts):
        raise SettingsError(f"Cannot split {len(city.districts)} districts {count} ways.")
    if count == 1:
        return city, config
    districts = city.districts[index::count]
    share = sum(d.weight for d in districts) / sum(d.weight for d in city.districts)
    part = SimCity(city.code, city.timezone, districts, city.categories)
    changes = dataclasses.replace(
        config,
        rate=config.rate * share,
        history_rate=None if config.history_rate is None else config.history_rate * share,
        seed=config.seed * 1_000_003 + index + 1,
        overdue_drill=config.overdue_drill if index == 0 else 0,
        max_records=None
        if config.max_records is None
        else config.max_records // count + (index < config.max_records % count),
    )
    return part, changes

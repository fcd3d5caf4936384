"""What every scenario builder uses: its seeded draws, its events in time order, its figures."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from ...errors import WatchfloorError
from ...events import STREAM_OF_KIND, Kind
from ..city import SimCity, SimDistrict
from ..encoder import Encoder
from ..models import draw_community
from ..records import Intent, SimRecord
from ..rhythms import HOUR


class Scenario(NamedTuple):
    name: str
    records: list[SimRecord]
    expected: dict[str, Any]


class Builder:
    """A scenario in the making: fixed seed, fixed districts, events collected as added.

    Draws come from one seeded stream in the order the builder makes them, so a
    builder that draws in the same order makes the same files, byte for byte.
    """

    def __init__(self, name: str, city: SimCity, seed: int, districts: tuple[str, ...]) -> None:
        self.name = name
        self.city = city
        self.tz = city.timezone
        self.districts = districts
        for code in districts:
            city.district(code)  # a plain error now, not a KeyError halfway through
        self.enc = Encoder(city)
        self.local = self.enc.local
        self.rng = random.Random(seed)
        self.rows: list[tuple[int, int, str, Kind, str, dict[str, Any], str]] = []

    # -- time and draws -------------------------------------------------------------

    def month_start(self, year: int, month: int) -> int:
        return int(datetime(year, month, 1, tzinfo=self.tz).timestamp())

    def office_time(self, day_start: int) -> int:
        """A time between 08:00 and 18:00 local on the day that starts at ``day_start``."""
        return self.local.at_hour(day_start, 0, 8) + int(self.rng.random() * 10 * HOUR)

    def community(self, d: SimDistrict) -> str:
        return draw_community(d, self.rng)

    # -- events ---------------------------------------------------------------------

    def add(
        self,
        district: str,
        kind: Kind,
        subject: str,
        ts: int,
        data: dict[str, Any],
        suffix: str = "",
    ) -> None:
        self.rows.append((ts, len(self.rows), district, kind, subject, data, suffix))

    def hazard_found(
        self,
        district: str,
        subject: str,
        t: int,
        category: str,
        *,
        major: bool,
        deadline: int,
        found_by: Callable[[float], str],
    ) -> str:
        """Add a ``hazard.found`` event; return the responsible unit.

        ``found_by`` maps a uniform draw to who found it; it is drawn after the community.
        """
        d = self.city.district(district)
        unit = d.hazard_units[category]
        community = self.community(d)
        self.add(
            district,
            Kind.HAZARD_FOUND,
            subject,
            t,
            {
                "category": category,
                "major": major,
                "deadline": self.local.format(deadline),
                "responsible_unit": unit,
                "community": community,
                "found_by": found_by(self.rng.random()),
            },
        )
        return unit

    def hazard_rectified(self, district: str, subject: str, t: int, unit: str) -> None:
        self.add(district, Kind.HAZARD_RECTIFIED, subject, t, {"responsible_unit": unit})

    # -- the result -----------------------------------------------------------------

    def records(self) -> list[SimRecord]:
        """Every event as a valid record published at its event time, in time order."""
        out = []
        for ts, _, district, kind, subject, data, suffix in sorted(self.rows, key=lambda r: r[:2]):
            value = self.enc.encode(district, kind, subject, ts, data, suffix)
            out.append(
                SimRecord(
                    float(ts),
                    STREAM_OF_KIND[kind],
                    district.encode(),
                    value,
                    Intent.VALID,
                    None,
                    kind,
                    float(ts),
                )
            )
        return out

    def finish(self, figures: dict[str, Any]) -> Scenario:
        """The scenario, its expected figures framed by its name, districts and event count."""
        where: dict[str, Any] = (
            {"district": self.districts[0]}
            if len(self.districts) == 1
            else {"districts": list(self.districts)}
        )
        expected = {
            "scenario": self.name,
            **where,
            "timezone": str(self.tz),
            **figures,
            "events": len(self.rows),
        }
        return Scenario(self.name, self.records(), expected)


def invariant(holds: bool, what: str) -> None:
    if not holds:
        raise WatchfloorError(f"A scenario builder broke its own plan: {what}.")


def percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0

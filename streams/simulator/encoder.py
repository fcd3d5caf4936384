"""CloudEvents JSON for one city: the envelope every simulated event is wrapped in."""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from ..events import STREAM_OF_KIND, TYPE_OF_KIND, Kind, Stream
from .city import SimCity
from .rhythms import LocalTime

SUFFIX_OF_KIND: dict[Kind, str] = {
    Kind.CASE_FILED: "filed",
    Kind.CASE_CLEARED: "cleared",
    Kind.DISPUTE_REPORTED: "reported",
    Kind.DISPUTE_MEDIATION_STARTED: "mediation",
    Kind.DISPUTE_RESOLVED: "resolved",
    Kind.DISPUTE_ESCALATED: "escalated",
    Kind.PATROL_COMPLETED: "completed",
    Kind.HAZARD_FOUND: "found",
    Kind.HAZARD_RECTIFIED: "rectified",
    Kind.HAZARD_VERIFIED: "verified",
    Kind.ACCIDENT_REPORTED: "report",
}
SCHEMA_OF_KIND: dict[Kind, str] = {
    k: "https://watchfloor.dev/schemas/" + t.removeprefix("watchfloor.") + ".json"
    for k, t in TYPE_OF_KIND.items()
}


class Envelope(NamedTuple):
    district: str
    key: bytes
    stream: Stream
    type: str
    source: str
    schema: str
    id_suffix: str  # "-" and the kind's suffix


class Encoder:
    """Builds CloudEvents JSON for one city; shared by the generator and the scenarios."""

    def __init__(self, city: SimCity) -> None:
        self.city = city
        self.local = LocalTime(city.timezone)
        self._sources: dict[tuple[str, Kind], str] = {}

    @staticmethod
    def source(district: str, kind: Kind) -> str:
        stream = STREAM_OF_KIND[kind]
        if stream is Stream.INCIDENTS and kind is not Kind.ACCIDENT_REPORTED:
            return f"/{district}/case-system"
        if stream is Stream.DISPUTES:
            return f"/{district}/mediation-app"
        if kind is Kind.ACCIDENT_REPORTED:
            return f"/{district}/work-safety-office"
        if kind is Kind.PATROL_COMPLETED:
            return f"/{district}/patrol-app"
        return f"/{district}/inspection-app"

    def _source(self, district: str, kind: Kind) -> str:
        got = self._sources[(district, kind)] = self.source(district, kind)
        return got

    def document(
        self,
        district: str,
        kind: Kind,
        subject: str,
        ts: int,
        data: dict[str, Any],
        suffix: str = "",
    ) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": f"{subject}-{SUFFIX_OF_KIND[kind]}{suffix}",
            "source": self._sources.get((district, kind)) or self._source(district, kind),
            "type": TYPE_OF_KIND[kind],
            "time": self.local.format(ts),
            "subject": subject,
            "datacontenttype": "application/json",
            "dataschema": SCHEMA_OF_KIND[kind],
            "district": district,
            "data": data,
        }

    def encode(
        self,
        district: str,
        kind: Kind,
        subject: str,
        ts: int,
        data: dict[str, Any],
        suffix: str = "",
    ) -> bytes:
        return orjson.dumps(self.document(district, kind, subject, ts, data, suffix))

    def envelopes(self) -> list[dict[Kind, Envelope]]:
        """Per district (by index) and kind, the parts of the envelope that never change."""
        return [
            {
                k: Envelope(
                    d.code,
                    d.key,
                    STREAM_OF_KIND[k],
                    TYPE_OF_KIND[k],
                    self.source(d.code, k),
                    SCHEMA_OF_KIND[k],
                    "-" + SUFFIX_OF_KIND[k],
                )
                for k in Kind
            }
            for d in self.city.districts
        ]

    def splice(self, e: Envelope, subject: str, suffix: str, ts: int, data: str) -> bytes:
        """The same bytes as :meth:`encode`, from a prepared envelope and the data's JSON.

        For the generator, which keeps every scheduled event's data serialised.
        """
        head = orjson.dumps(
            {
                "specversion": "1.0",
                "id": subject + e.id_suffix + suffix,
                "source": e.source,
                "type": e.type,
                "time": self.local.format(ts),
                "subject": subject,
                "datacontenttype": "application/json",
                "dataschema": e.schema,
                "district": e.district,
            }
        )
        return head[:-1] + b',"data":' + data.encode() + b"}"

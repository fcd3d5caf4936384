"""Records the engine must turn away: late ones, and malformed ones with one recipe per reason."""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from typing import Any

import orjson

from ..events import Kind, Stream
from .city import SimCity
from .encoder import Encoder
from .ids import Subjects
from .lines import describe_value
from .models import cumulative, draw_community, draw_dispute, draw_hazard, draw_incident
from .records import Intent, SimRecord
from .rhythms import DAY, HOUR

# A district code that matches the pattern but is in no reference data.
UNKNOWN_DISTRICT = "zz-not-a-district"
# Bigger than WATCHFLOOR_MAX_RECORD_BYTES (64 KiB) by a margin.
TOO_LARGE_PADDING = 70 * 1024

STREAMS = (Stream.INCIDENTS, Stream.DISPUTES, Stream.PATROLS)
UNKNOWN_TYPES = {
    Stream.INCIDENTS: "watchfloor.incident.case_reopened.v1",
    Stream.DISPUTES: "watchfloor.dispute.withdrawn.v1",
    Stream.PATROLS: "watchfloor.patrol.started.v1",
}

# (district index, stream, event time, variant) -> (stream, key, value)
Recipe = Callable[[int, Stream, int, int], tuple[Stream, bytes, bytes]]
# (a good event, its stream, variant) -> the value that spoils it
Spoiler = Callable[[dict[str, Any], Stream, int], bytes]


class Rejects:
    """Builds late and malformed records from the generator's city, draws and ids."""

    def __init__(
        self,
        city: SimCity,
        encoder: Encoder,
        rng: random.Random,
        subjects: Subjects,
        reasons: tuple[str, ...],
        grace_seconds: float,
        watermark: dict[tuple[int, Stream], float],
    ) -> None:
        self.districts = city.districts
        self.enc = encoder
        self.local = encoder.local
        self.rng = rng
        self.subjects = subjects
        self.grace = grace_seconds
        self.watermark = watermark  # the generator's, kept up to date as it emits
        self.reasons = reasons
        # A 70 KB record costs as much as a few hundred others: send fewer.
        self.reason_draw = (
            cumulative([0.25 if r == "too_large" else 1.0 for r in reasons]) if reasons else []
        )
        self.variant = 0
        self._recipes: dict[str, Recipe] = {
            "deadline_before_found": self._deadline_before_found,
            "wrong_topic": self._wrong_topic,
            "time_out_of_range": self._time_out_of_range,
            "unknown_district": self._unknown_district,
        }

    def fresh_start(
        self, di: int, stream: Stream, ts: int, district: str | None = None
    ) -> tuple[Kind, dict[str, Any]]:
        """A self-contained first event of a new subject on ``stream``."""
        rng = self.rng
        d = self.districts[di]
        code = district or d.code
        if stream is Stream.INCIDENTS:
            m = draw_incident(rng)
            subject = self.subjects.new("xx", code)
            data: dict[str, Any] = {
                "category": m.code,
                "severity": "minor",
                "community": draw_community(d, rng),
            }
            return Kind.CASE_FILED, self.enc.document(code, Kind.CASE_FILED, subject, ts, data)
        if stream is Stream.DISPUTES:
            m2 = draw_dispute(rng)
            subject = self.subjects.new("xx", code)
            unit = d.dispute_units.get(m2.code) or d.mediation[0]
            data = {"category": m2.code, "responsible_unit": unit, "people_involved": 2}
            return Kind.DISPUTE_REPORTED, self.enc.document(
                code, Kind.DISPUTE_REPORTED, subject, ts, data
            )
        subject = self.subjects.new("xx", code)
        if rng.random() < 0.5:
            data = {
                "team": d.day_teams[0],
                "started_at": self.local.format(ts - 2 * HOUR),
                "ended_at": self.local.format(ts),
                "area": d.areas[0],
                "findings": 0,
            }
            return Kind.PATROL_COMPLETED, self.enc.document(
                code, Kind.PATROL_COMPLETED, subject, ts, data
            )
        m3 = draw_hazard(rng)
        data = {
            "category": m3.code,
            "major": False,
            "deadline": self.local.format(self.local.at_hour(ts, m3.days + 1, 18)),
            "responsible_unit": d.hazard_units[m3.code],
        }
        return Kind.HAZARD_FOUND, self.enc.document(code, Kind.HAZARD_FOUND, subject, ts, data)

    def late(self, at: float, di: int, stream: Stream) -> SimRecord:
        # Late against the watermark of the same stream: the engine has read that event
        # before this one (same partition, earlier offset), so its district watermark is
        # at least as high, whatever the other topics' progress.
        wm = self.watermark[(di, stream)]
        ts = int(wm - self.grace - HOUR - self.rng.random() * 36 * HOUR)
        kind, doc = self.fresh_start(di, stream, ts)
        d = self.districts[di]
        return SimRecord(
            at, stream, d.key, orjson.dumps(doc), Intent.LATE, "too_late", kind, float(ts)
        )

    def malformed(self, at: float, di: int) -> SimRecord:
        rng = self.rng
        reason = self.reasons[bisect.bisect(self.reason_draw, rng.random())]
        stream = STREAMS[int(rng.random() * 3)]
        ts = int(at) - int(rng.random() * 60)
        self.variant += 1
        recipe = self._recipes.get(reason)
        if recipe is not None:
            stream, key, value = recipe(di, stream, ts, self.variant)
        else:
            _, doc = self.fresh_start(di, stream, ts)
            key, value = self.districts[di].key, SPOILERS[reason](doc, stream, self.variant)
        # What the bytes claim, as a reader of the file would see it (nothing, for bytes
        # that do not parse).
        kind, claimed = describe_value(value)
        return SimRecord(at, stream, key, value, Intent.MALFORMED, reason, kind, claimed)

    # -- recipes that make their own event ------------------------------------------

    def _deadline_before_found(
        self, di: int, stream: Stream, ts: int, variant: int
    ) -> tuple[Stream, bytes, bytes]:
        d = self.districts[di]
        m = draw_hazard(self.rng)
        subject = self.subjects.new("xx", d.code)
        data = {
            "category": m.code,
            "major": False,
            "deadline": self.local.format(ts - 2 * HOUR),
            "responsible_unit": d.hazard_units[m.code],
        }
        value = self.enc.encode(d.code, Kind.HAZARD_FOUND, subject, ts, data)
        return Stream.PATROLS, d.key, value

    def _wrong_topic(
        self, di: int, stream: Stream, ts: int, variant: int
    ) -> tuple[Stream, bytes, bytes]:
        other = STREAMS[(STREAMS.index(stream) + 1 + int(self.rng.random() * 2)) % 3]
        _, doc = self.fresh_start(di, other, ts)
        return stream, self.districts[di].key, orjson.dumps(doc)

    def _time_out_of_range(
        self, di: int, stream: Stream, ts: int, variant: int
    ) -> tuple[Stream, bytes, bytes]:
        # Before 2000 or centuries ahead: out of range whatever clock reads it.
        bogus = (
            946_684_800 - DAY * (1 + int(self.rng.random() * 300))
            if variant % 2
            else 32_503_680_000
        )
        _, doc = self.fresh_start(di, stream, bogus)
        return stream, self.districts[di].key, orjson.dumps(doc)

    def _unknown_district(
        self, di: int, stream: Stream, ts: int, variant: int
    ) -> tuple[Stream, bytes, bytes]:
        _, doc = self.fresh_start(di, stream, ts, UNKNOWN_DISTRICT)
        return stream, UNKNOWN_DISTRICT.encode(), orjson.dumps(doc)


# -- recipes that spoil a good event ---------------------------------------------------


def _empty(doc: dict[str, Any], stream: Stream, variant: int) -> bytes:
    return b""


def _too_large(doc: dict[str, Any], stream: Stream, variant: int) -> bytes:
    doc["padding"] = "x" * TOO_LARGE_PADDING
    return orjson.dumps(doc)


def _not_utf8(doc: dict[str, Any], stream: Stream, variant: int) -> bytes:
    return orjson.dumps(doc).replace(b"/", b"/\xff\xfe", 1)


def _malformed_json(doc: dict[str, Any], stream: Stream, variant: int) -> bytes:
    whole = orjson.dumps(doc)
    return whole[: len(whole) // 2]


def _schema(doc: dict[str, Any], stream: Stream, variant: int) -> bytes:
    """One schema fault, in turn: a missing, wrongly typed or extra field."""
    data = doc["data"]
    choice = variant % 4
    if choice == 0:
        doc.pop("subject")
    elif choice == 1:
        data["unexpected"] = "field"
    elif choice == 2:
        required = {"category", "team", "responsible_unit"} & set(data)
        data.pop(sorted(required)[0])
    else:
        doc["id"] = "id with spaces"
    return orjson.dumps(doc)


def _unknown_type(doc: dict[str, Any], stream: Stream, variant: int) -> bytes:
    doc["type"] = UNKNOWN_TYPES[stream]
    doc.pop("dataschema")
    return orjson.dumps(doc)


def _naive_time(doc: dict[str, Any], stream: Stream, variant: int) -> bytes:
    doc["time"] = doc["time"][:19]
    return orjson.dumps(doc)


def _unchanged(doc: dict[str, Any], stream: Stream, variant: int) -> bytes:
    # A good event: the producing loop sends a ``wrong_partition`` record elsewhere.
    return orjson.dumps(doc)


SPOILERS: dict[str, Spoiler] = {
    "empty": _empty,
    "too_large": _too_large,
    "not_utf8": _not_utf8,
    "malformed_json": _malformed_json,
    "schema": _schema,
    "unknown_type": _unknown_type,
    "naive_time": _naive_time,
    "wrong_partition": _unchanged,
}

"""The counting job the naive Faust agent and the Quix Streams peer both run, event by event.

"The same counting job" (docs/performance.md) is, for each record of the three source
topics, in partition order:

1. reject a value larger than 64 KiB;
2. decode it with orjson; reject it unless it is a JSON object;
3. check the envelope: ``specversion`` is ``"1.0"``; ``id``, ``source`` and ``subject``
   are non-empty strings; ``type`` is a Watchfloor event type whose topic is the topic
   the record came from; ``district`` is a district of the reference data; ``time`` is
   an RFC 3339 time with a UTC offset, not before 2000-01-01 and at most 600 s ahead of
   the clock;
4. de-duplicate by ``(source, id)`` in durable state: a pair seen before is not counted;
5. count the event under ``(district, type)`` in durable state.

It does not validate ``data``, correlate lifecycles, keep windows, judge lateness or
write dead letters: Watchfloor does all of that on top. A late event therefore counts
here (it has a fresh id) but not in Watchfloor; the truth of each is computed apart.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from streams.events import KIND_OF_TYPE, STREAM_OF_KIND, Stream

MAX_BYTES = 64 * 1024
EARLIEST_TS = 946_684_800.0  # 2000-01-01T00:00:00Z
MAX_FUTURE_SECONDS = 600.0

STREAM_OF_TYPE: dict[str, Stream] = {t: STREAM_OF_KIND[k] for t, k in KIND_OF_TYPE.items()}
# Keys of the count state: "<district>|<type>"; of the de-duplication state: "<source>|<id>".
KEY_SEP = "|"


class EnvelopeCheck:
    """Steps 1-3 of the job for one topic; ``check`` returns (district, type, source, id)."""

    __slots__ = ("districts", "stream")

    def __init__(self, districts: frozenset[str], stream: Stream) -> None:
        self.districts = districts
        self.stream = stream

    def check(self, raw: bytes | None, now: float) -> tuple[str, str, str, str] | None:
        if not raw or len(raw) > MAX_BYTES:
            return None
        try:
            doc = orjson.loads(raw)
        except ValueError:  # orjson.JSONDecodeError is a ValueError
            return None
        if type(doc) is not dict:
            return None
        etype = doc.get("type")
        if STREAM_OF_TYPE.get(etype) is not self.stream:  # type: ignore[arg-type]
            return None
        district = doc.get("district")
        if district not in self.districts or doc.get("specversion") != "1.0":
            return None
        source, eid, subject = doc.get("source"), doc.get("id"), doc.get("subject")
        if (
            not (
                type(source) is str and source and type(eid) is str and eid and type(subject) is str
            )
            or not subject
        ):
            return None
        when = doc.get("time")
        if type(when) is not str:
            return None
        try:
            parsed = datetime.fromisoformat(when)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            return None
        ts = parsed.timestamp()
        if not EARLIEST_TS <= ts <= now + MAX_FUTURE_SECONDS:
            return None
        return district, etype, source, eid  # type: ignore[return-value]


def count_key(district: str, etype: str) -> str:
    return district + KEY_SEP + etype


def seen_key(source: str, eid: str) -> str:
    return source + KEY_SEP + eid


def split_count_key(key: str) -> tuple[str, str]:
    district, _, etype = key.partition(KEY_SEP)
    return district, etype

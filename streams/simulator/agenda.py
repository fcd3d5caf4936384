"""The generator's agenda of what is due when: a heap, and ten-minute buckets further ahead."""

from __future__ import annotations

import heapq
import math
from typing import Any

import orjson

from ..events import Kind

BUCKET_SECONDS = 600  # width of the calendar-queue buckets

# What an entry asks for; entries are tuples ``(at, seq, op, ...)``.
START, EMIT, DUP, LATE, BAD, ACCIDENT = range(6)


class Agenda:
    """A heap of what is due before ``horizon``, and later entries in buckets.

    Lifecycles run for days, so most entries wait far ahead; kept out of the heap, they
    cost an append instead of a sift through a deep heap. ``seq`` breaks ties in the
    order entries were added, which keeps the output deterministic.
    """

    def __init__(self) -> None:
        self.heap: list[tuple[Any, ...]] = []
        self.horizon = -math.inf
        self.buckets: dict[int, list[tuple[Any, ...]]] = {}
        self.seq = 0

    def push(self, at: float, op: int, payload: Any) -> None:
        self.seq += 1
        self._put((at, self.seq, op, payload))

    def schedule(
        self,
        at: float,
        di: int,
        kind: Kind,
        subject: str,
        ts: int,
        data: dict[str, Any],
        suffix: str,
    ) -> None:
        """Add the publication of one valid event at ``at``."""
        # A flat tuple with the data already serialised: hundreds of thousands wait in
        # the queue at once, and a dict costs three times its JSON text. Kept as str: the
        # bytes orjson returns hold a buffer of about 4 KiB each, however short.
        self.seq += 1
        self._put((at, self.seq, EMIT, di, kind, subject, ts, orjson.dumps(data).decode(), suffix))

    def _put(self, entry: tuple[Any, ...]) -> None:
        at = entry[0]
        if at < self.horizon:
            heapq.heappush(self.heap, entry)
            return
        bucket = int(at // BUCKET_SECONDS)
        got = self.buckets.get(bucket)
        if got is None:
            self.buckets[bucket] = [entry]
        else:
            got.append(entry)

    def refill(self) -> bool:
        """Move the next bucket into the (empty) heap; False when nothing is left."""
        if not self.buckets:
            return False
        bucket = int(self.horizon // BUCKET_SECONDS) if self.horizon > -math.inf else None
        if bucket is None or bucket not in self.buckets:
            bucket = min(self.buckets)
        entries = self.buckets.pop(bucket)
        heapq.heapify(entries)
        self.heap = entries
        self.horizon = (bucket + 1) * BUCKET_SECONDS
        return True

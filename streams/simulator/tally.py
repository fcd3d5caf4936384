"""Counts of what a run produced, by stream, intent and reason."""

from __future__ import annotations

from typing import Any

from ..events import Stream
from .records import STREAM_NAMES, Intent, SimRecord


class Tally:
    """Counts of what a run produced, by stream, intent and reason."""

    def __init__(self) -> None:
        # One dict update per record: the producing loop calls this per record.
        self.counts: dict[tuple[Stream, Intent, str | None], int] = {}
        self.total = 0

    def add(self, rec: SimRecord) -> None:
        self.total += 1
        key = (rec.stream, rec.intent, rec.reason)
        self.counts[key] = self.counts.get(key, 0) + 1

    def _by(self, index: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for key, n in self.counts.items():
            part = key[index]
            if part is None:
                continue
            name = STREAM_NAMES[part] if isinstance(part, Stream) else str(part)
            out[name] = out.get(name, 0) + n
        return dict(sorted(out.items()))

    @property
    def by_stream(self) -> dict[str, int]:
        return self._by(0)

    @property
    def by_intent(self) -> dict[str, int]:
        return self._by(1)

    @property
    def by_reason(self) -> dict[str, int]:
        return self._by(2)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_stream": self.by_stream,
            "by_intent": self.by_intent,
            "by_reason": self.by_reason,
        }

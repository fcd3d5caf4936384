"""Watchfloor's own exception types, each carrying a plain sentence for people."""

from __future__ import annotations


class WatchfloorError(Exception):
    """Base of every error Watchfloor raises on purpose."""


class SettingsError(WatchfloorError):
    """A setting is missing or malformed."""


class ReferenceDataError(WatchfloorError):
    """The reference data (districts, categories) cannot be loaded."""


class BrokerError(WatchfloorError):
    """Kafka cannot be reached or refused us."""


class InvalidEvent(WatchfloorError):
    """A record that cannot be counted; it goes to the dead-letter topic.

    ``reason`` is a short code from a bounded set (it becomes a metric label and a
    dead-letter header); the message is a sentence naming the field at fault.
    """

    def __init__(self, reason: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field

    @property
    def message(self) -> str:
        return str(self.args[0])


class QueryError(WatchfloorError):
    """A query to the state API is malformed (bad period, unknown district)."""

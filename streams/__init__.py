"""Watchfloor: public-safety event stream processing on Kafka and Faust."""

from . import native

__version__ = "0.1.0"

# Before any module of the hot path is imported: their source if their build is stale.
native.check()

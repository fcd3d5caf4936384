"""The event simulator: the pure generator and scenarios here; Kafka only in produce, live, cli."""

from __future__ import annotations

from .city import SimCity
from .config import SimConfig
from .generator import generate_events
from .records import Intent, SimRecord

__all__ = ["Intent", "SimCity", "SimConfig", "SimRecord", "generate_events"]

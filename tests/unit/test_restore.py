"""The state table's bulk-restored store, where no broker answers."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

from faust.types import TP
from prometheus_client import CollectorRegistry

from streams.app import Watchfloor
from streams.clock import FixedClock
from streams.restore import BulkRestoredStore
from streams.settings import Settings
from streams.worker import build_worker

NOW = datetime(2026, 4, 12, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def unreachable_store() -> tuple[Watchfloor, BulkRestoredStore]:
    """A worker whose broker is port 1 on loopback (nothing listens: refused at once)."""
    w = build_worker(Settings(app_id="unit-restore", bootstrap_servers="127.0.0.1:1"),
                     clock=FixedClock(NOW), registry=CollectorRegistry())
    store = w.table.data
    assert isinstance(store, BulkRestoredStore)
    return w, store


def test_a_failed_bulk_read_leaves_the_partitions_to_faust_from_their_start() -> None:
    w, store = unreachable_store()
    tp = TP(w.changelog_topic, 0)
    store._read_to[tp] = 41  # read up to there at an earlier rebalance
    assert store.persisted_offset(tp) == 41
    asyncio.run(store.on_rebalance({tp}, set(), set()))
    assert store.persisted_offset(tp) is None  # Faust's recovery reads it all


def test_a_partition_given_up_is_forgotten() -> None:
    w = build_worker(Settings(app_id="unit-restore"), clock=FixedClock(NOW),
                     registry=CollectorRegistry())
    store = w.table.data
    assert isinstance(store, BulkRestoredStore)
    kept, gone = TP(w.changelog_topic, 0), TP(w.changelog_topic, 1)
    store._read_to.update({kept: 3, gone: 9})
    source = TP(w.settings.topic_incidents, 0)
    # No changelog partition assigned any more: nothing to read, nothing remembered.
    asyncio.run(store.on_rebalance({source}, {kept, gone}, set()))
    assert store.persisted_offset(kept) is None and store.persisted_offset(gone) is None


def test_once_released_the_store_keeps_nothing_until_the_next_rebalance() -> None:
    w, store = unreachable_store()
    tp = TP(w.changelog_topic, 0)
    store[b"d0001\x1fm"] = b"read at recovery"
    store._read_to[tp] = 7
    assert dict(store.data) == {b"d0001\x1fm": b"read at recovery"}

    store.release()
    assert dict(store.data) == {}
    # Written after the rebuild: the changelog has it, the store does not keep it.
    store[b"d0001\x1fj\x1f1"] = b"journal"
    assert dict(store.data) == {}
    # Nothing held, so the next rebalance must read the partition from its start.
    assert store.persisted_offset(tp) is None

    asyncio.run(store.on_rebalance({tp}, set(), set()))  # the bulk read fails: no broker
    store[b"d0001\x1fm"] = b"read at the next recovery"
    assert dict(store.data) == {b"d0001\x1fm": b"read at the next recovery"}

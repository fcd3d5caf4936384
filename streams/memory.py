"""Memory policy of a worker: when the cyclic collector runs, and handing freed heap back."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# The state is millions of small long-lived objects (buckets, lifecycles). Left to the
# default schedule, the cyclic collector rescans all of them again and again: a third
# of the counting time, and pauses of half a second. Instead, what a batch leaves
# behind is frozen (moved out of the collector's sight, an O(1) step) after the batch,
# so routine collections see only the objects of the batch in progress; and everything
# is collected once every few minutes, which also frees any cycle frozen meanwhile.
GC_THRESHOLDS = (10_000, 10, 10)
FULL_COLLECTION_SECONDS = 300.0


_managed = False


def configure_gc() -> None:
    """Take charge of the collector for this process (the worker does; tests do not)."""
    global _managed
    _managed = True
    gc.set_threshold(*GC_THRESHOLDS)


@contextmanager
def counting() -> Iterator[None]:
    """No collection while a batch is counted; what it keeps is frozen as it ends.

    The counting path makes no cyclic garbage (measured: a collection after each of 38
    batches of 8,000 records found none); the collections that its allocations set off
    in the middle of a batch only walked the objects it keeps, about 5 % of its CPU.
    """
    if not _managed or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        # Frozen before the collector is back on: the first allocation after it would
        # otherwise start a young collection over everything the batch allocated, just
        # before ``after_batch`` freezes it anyway (gc callbacks, one latency phase at
        # 20,000 events/s: 128 collections, 1.1 s of 30, pauses up to 29 ms; none after).
        gc.freeze()
        gc.enable()


# A catch-up frees its batches' records and documents at the pace it counts them; glibc
# keeps that heap for reuse rather than handing it back. Released after each batch (at
# most every quarter second: a steady load's batches are smaller and more frequent), the
# resident size stays near what the state needs instead of the state plus the freed heap
# of the batches before. A release takes 0.1-0.6 ms. Measured against a release at most
# every 2 s (four catch-ups each, alternated): peaks of 625-646 MB against 647-684, the
# same catch-up speed and CPU.
RELEASE_AFTER_BATCH_SECONDS = 0.25
_released_at = 0.0


def after_batch() -> None:
    global _released_at
    if _managed:
        gc.freeze()
        now = time.monotonic()
        if now - _released_at >= RELEASE_AFTER_BATCH_SECONDS:
            _released_at = now
            release_memory()


@contextmanager
def collector_paused() -> Iterator[None]:
    """No collection while a state is rebuilt; what it built is frozen afterwards.

    A rebuild makes the whole state (millions of objects) at once and frees almost
    nothing; the collector would run hundreds of times meanwhile and rescan the growing
    heap each time (measured: half of the rebuild's CPU).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        if _managed:  # frozen as after a batch, without its heap release: not in a restart
            gc.freeze()


def full_collection() -> int:
    """Collect everything, frozen objects included; returns what was freed."""
    if not _managed:
        return 0
    gc.unfreeze()
    freed = gc.collect()
    gc.freeze()
    return freed


def _glibc(name: str) -> Any:
    """glibc's function ``name``, or None where the C library is another."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def _malloc_trim() -> Callable[[], None]:
    trim = _glibc("malloc_trim")
    if trim is None:  # not glibc: nothing to do
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]

    def release() -> None:
        trim(0)

    return release


_M_ARENA_MAX = -8  # glibc's malloc.h


def one_heap() -> None:
    """Have every thread of this process allocate from glibc's main heap.

    The consumer thread Faust runs aiokafka in reads the fetched records, and glibc gave it
    a heap of its own, where freed blocks wait for that thread. With one heap a catch-up
    at 1,000 districts peaked 416-423 MB against 434-443, at the same events/s, and a
    restart took as long (1.73 against 1.72 s). Called before the worker starts threads.
    """
    mallopt = _glibc("mallopt")
    if mallopt is None:  # not glibc: nothing to do
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(_M_ARENA_MAX, 1)


# Each batch frees its fetched records and parsed documents; glibc keeps the freed heap
# for reuse and the worker's RSS creeps up to the highest batch (measured: 460 MB
# instead of 340 MB at 1,000 districts). Handing it back after batches
# (``after_batch``), and every few seconds by the worker's timer when none come, keeps
# the resident size at what the state needs.
# glibc's thresholds are left to adjust themselves: fixed with mallopt (big blocks from
# mappings of their own from 128 KB, the heap's top trimmed above 1 MB) they took 70 MB
# off a catch-up's peak, but a long-running worker then grew without end (the plateau
# benchmark: 41 MB over 790 days of event time, against 6 MB with glibc's defaults).
release_memory = _malloc_trim()

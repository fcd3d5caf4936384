"""Where a worker's state memory goes, by container: ``python -m tests.benchmarks.state_census``.

Simulator records for 1,000 districts go through ``Engine.process`` in fetch-sized batches
(as ``engine_cost`` sends them); then every district's state is walked and the bytes of
each of its containers are summed (``sys.getsizeof`` of the container and of everything
it holds, each object counted once, in the first container that reaches it: subjects
before the indexes that point at them). It also prints the growth of the resident set and
the in-memory table's bytes by kind of record, written as the worker writes them. What a
change to the state's layout saves shows here in a minute, before a full benchmark.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
from collections import Counter
from types import NoneType
from typing import Any

from streams import memory
from streams.state import DistrictState, Limits
from streams.state_journal import StateStore, Utf8Keys
from tests.benchmarks.engine_cost import batches, city_engine, records

# Subjects first, so that ids and times are counted where they live; the indexes after.
CONTAINERS = (
    "hazards", "patrols", "cases", "disputes", "accidents", "identity_day", "identities",
    "buckets", "_closings", "_closing_days", "_closing_hours", "_due", "_open_dispute_at",
    "_open_hazard_cats", "overdue", "evidence",
)
# Compiled (mypyc) objects have neither __dict__ nor __slots__: their fields by name.
FIELDS = {
    # (``opened`` and the like: the fields of versions before they were stored as floats.)
    "Subject": ("_opened", "_deadline", "_closed_at", "_reopened_at", "last", "flags", "sid",
                "_extra", "category", "community", "unit", "pending", "figures", "round", "major",
                "opened", "deadline", "closed_at", "reopened_at"),
    "Buckets": ("slots", "hours", "days", "categories", "_spans", "_since", "_rolled"),
    "DayCategories": ("hot", "keys", "counts"),
}


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def deep_size(obj: Any, seen: set[int]) -> int:
    """Bytes of ``obj`` and of what it holds that ``seen`` has not counted yet."""
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        for k, v in obj.items():
            size += deep_size(k, seen) + deep_size(v, seen)
    elif isinstance(obj, list | tuple | set | frozenset):
        for v in obj:
            size += deep_size(v, seen)
    else:
        for name in FIELDS.get(type(obj).__name__, ()):
            value = getattr(obj, name, None)
            # A compiled object stores ints and plain floats in itself (its own size
            # counts them) and makes a new object at each read, whose id would be
            # reused; a float that reads back as the same object twice is one it holds
            # (``float | None``). Small ints, bools and None are shared singletons.
            held = (value is getattr(obj, name, None) if isinstance(value, float)
                    else not isinstance(value, int | NoneType))
            if held:
                size += deep_size(value, seen)
    return size


def census(states: dict[str, DistrictState]) -> tuple[Counter[str], Counter[str]]:
    """Bytes and entries per container, summed over the districts."""
    seen: set[int] = set()
    size: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for st in states.values():
        for name in CONTAINERS:
            value = getattr(st, name, None)  # None: not in this version of the state
            if value is None:
                continue
            size[name] += deep_size(value, seen)
            if isinstance(value, dict):
                count[name] += len(value)
            elif name in ("identity_day", "identities", "_closings"):
                count[name] += sum(len(part) for part in value)
            elif hasattr(value, "by_day"):  # a table of keys (streams/identities.py)
                count[name] += len(value)
    return size, count


def bucket_census(states: dict[str, DistrictState]) -> tuple[dict[str, int], Counter[str]]:
    """Bytes and keys of each resolution of the buckets, summed over the districts; the
    days' categories apart for the newest days, still counted into (hot), and the older."""
    seen: set[int] = set()
    size = dict.fromkeys(("slots", "hours", "days", "categories (hot)", "categories"), 0)
    keys: Counter[str] = Counter()
    for st in states.values():
        b = st.buckets
        for name in ("slots", "hours", "days"):
            size[name] += deep_size(getattr(b, name), seen)
            keys[name] += len(getattr(b, name))
        size["categories"] += sys.getsizeof(b.categories)
        for cats in b.categories.values():
            # (None in versions whose day is a plain dict: every day counted as older.)
            name = "categories (hot)" if getattr(cats, "hot", None) is not None else "categories"
            size[name] += deep_size(cats, seen)
            keys[name] += 1
    return size, keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--districts", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=8000)
    args = parser.parse_args()
    engine, city, reference = city_engine(args.districts)
    todo = batches(records(city, args.events, 4, engine), args.batch)
    local: dict[bytes, bytes] = {}  # the in-memory store's dict
    store = StateStore(Utf8Keys(local), reference.timezone, Limits(), local=local)
    memory.configure_gc()
    gc.collect()
    before = rss_mib()
    for i, batch in enumerate(todo, 1):
        with memory.counting():
            result = engine.process(batch)
        store.stage(result.journals, i)
        with memory.counting():
            store.flush(engine.states, -(-store.staged // 7))  # the worker's rolling flush
        memory.after_batch()
    store.flush(engine.states)
    del todo
    gc.collect()
    grown = rss_mib() - before
    size, count = census(engine.states)
    print(f"{args.events:,} records, {len(engine.states):,} districts; resident set grew "
          f"{grown:,.0f} MiB (state, table and the allocator's slack)")
    for name, n in size.most_common():
        print(f"  {name:18s} {n / 2**20:8.1f} MiB  {count[name]:>10,} entries")
    print(f"  {'state':18s} {sum(size.values()) / 2**20:8.1f} MiB")
    # The buckets by resolution: days and their categories are kept for the whole
    # retention (800 days), so their bytes per district-day set a long-running worker's size.
    parts, keys = bucket_census(engine.states)
    print("  buckets: " + ", ".join(
        f"{name} {n / 2**20:.1f} MiB ({n / max(keys[name], 1):,.0f} B per key)"
        for name, n in parts.items()))
    # A day kept for the retention: its vector and its (older) categories.
    per_day = parts["days"] / max(keys["days"], 1) + parts["categories"] / max(
        keys["categories"], 1)
    print(f"  a district-day of counts kept: {per_day:,.0f} B; 800 days at 1,000 districts: "
          f"{per_day * 800 * 1000 / 2**30:.2f} GiB")
    kinds = {"m": "manifests", "b": "snapshot chunks", "j": "journals"}
    table: Counter[str] = Counter()
    for key, value in local.items():
        table[kinds.get(key.split(b"\x1f")[1][:1].decode(), "other")] += len(value)
    print("  table: " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in table.most_common()))


if __name__ == "__main__":
    main()

"""The peer: the same counting job written with Quix Streams 3.x and its stateful processing.

One ``StreamingDataFrame`` per source topic, each with a stateful ``update`` that runs
the job of ``tests/benchmarks/job.py``. Quix keeps state per message key (the
district) in RocksDB with a changelog topic, commits every 5 s (its default) and
processes at-least-once, as the library is meant to be used. When every record is
seen the app is stopped (its last checkpoint is committed) and the counts are read
back from the RocksDB stores on disk, not from a copy kept on the side.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from streams.events import Stream

from .job import EnvelopeCheck, count_key, seen_key
from .proc import child_main, tp_key

COUNT_PREFIX = "c|"
SEEN_PREFIX = "s|"


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from quixstreams import Application, message_context

    state_dir = Path(spec["state_dir"])
    app = Application(
        broker_address=spec["bootstrap"],
        consumer_group=spec["group"],
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="WARNING",
    )
    districts = frozenset(spec["districts"])
    total = int(spec["events"])
    max_seconds = float(spec.get("max_seconds") or 3600)
    result: dict[str, Any] = {"impl": "peer", "processed": 0, "complete": False}
    positions: dict[str, int] = {}
    progress = {"n": 0, "deadline": 0.0}

    def job(topic: str, stream: Stream) -> Any:
        checker = EnvelopeCheck(districts, stream)

        def update(value: bytes, state: Any) -> None:
            now = time.time()
            n = progress["n"]
            if n == 0:
                result["first_at"] = now
                result["cpu_first"] = time.process_time()
                progress["deadline"] = time.monotonic() + max_seconds
            parsed = checker.check(value, now)
            if parsed is not None:
                _district, etype, source, eid = parsed
                key = SEEN_PREFIX + seen_key(source, eid)
                if not state.exists(key):
                    state.set(key, True)
                    ckey = COUNT_PREFIX + etype
                    state.set(ckey, state.get(ckey, 0) + 1)
            ctx = message_context()
            positions[tp_key(topic, ctx.partition)] = ctx.offset + 1
            n += 1
            progress["n"] = n
            if n >= total or time.monotonic() > progress["deadline"]:
                result["last_at"] = time.time()
                result["cpu_processing_seconds"] = round(
                    time.process_time() - result["cpu_first"], 3
                )
                result["complete"] = n >= total
                result["processed"] = n
                app.stop()

        return update

    for role, topic in spec["topics"].items():
        sdf = app.dataframe(app.topic(topic, value_deserializer="bytes", key_deserializer="bytes"))
        sdf.update(job(topic, Stream[role.upper()]), stateful=True)
    app.run()
    result["positions"] = positions
    result["counts"] = read_counts(state_dir / spec["group"])
    return result


def read_counts(group_dir: Path) -> dict[str, int]:
    """The count keys of every RocksDB store partition the app left on disk."""
    from rocksdict import AccessType, Options, Rdict

    counts: dict[str, int] = {}
    marker = b"|" + orjson.dumps(COUNT_PREFIX)[:-1]  # '|"c|' : start of a JSON string key
    for current in sorted(group_dir.rglob("CURRENT")):
        path = current.parent
        db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            for key, value in db.items():
                cut = key.find(marker)
                if cut < 0:
                    continue
                district = key[:cut].decode()
                etype = orjson.loads(key[cut + 1 :])[len(COUNT_PREFIX) :]
                counts[count_key(district, etype)] = orjson.loads(value)
        finally:
            db.close()
    return counts


if __name__ == "__main__":
    child_main(run)

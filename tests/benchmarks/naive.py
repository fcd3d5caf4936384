"""The textbook Faust agent: ``async for event in stream``, one record at a time, tables per event.

It runs the counting job of ``tests/benchmarks/job.py`` the way the Faust
documentation teaches: a ``seen`` table for de-duplication and a ``counts`` table,
both changelogged, read and written once per event, Faust's default (at-least-once)
processing and commit interval. It stops when it has seen every record, or when the
spec's ``max_seconds`` run out: it then reports where it stopped in each partition,
and its counts are checked against the truth of that prefix.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

from streams.events import Stream

from .job import EnvelopeCheck, count_key, seen_key
from .proc import child_main, tp_key


def run(spec: dict[str, Any]) -> dict[str, Any]:
    import faust
    from faust.worker import Worker

    partitions = int(spec["partitions"])
    app = faust.App(
        spec["group"],
        broker=f"kafka://{spec['bootstrap']}",
        store="memory://",
        datadir=spec["state_dir"],
        autodiscover=False,
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    names = spec["topics"]  # stream role name -> topic
    source = app.topic(
        *names.values(),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    seen = app.Table("seen", default=bool, partitions=partitions)
    counts = app.Table("counts", default=int, partitions=partitions)
    districts = frozenset(spec["districts"])
    checks = {
        topic: EnvelopeCheck(districts, Stream[role.upper()]) for role, topic in names.items()
    }
    total = int(spec["events"])
    max_seconds = float(spec.get("max_seconds") or 3600)
    result: dict[str, Any] = {"impl": "naive", "processed": 0, "complete": False}
    positions: dict[str, int] = {}

    def finish(complete: bool) -> None:
        result["last_at"] = time.time()
        result["cpu_processing_seconds"] = round(time.process_time() - result["cpu_first"], 3)
        result["complete"] = complete
        result["positions"] = positions
        result["counts"] = dict(counts.items())
        result["seen"] = len(seen)
        # mode's worker stops the app cleanly on SIGTERM, as an operator would.
        os.kill(os.getpid(), signal.SIGTERM)

    @app.agent(source)
    async def count(stream: Any) -> None:
        processed = 0
        deadline = None
        async for event in stream.events():
            now = time.time()
            if deadline is None:
                result["first_at"] = now
                result["cpu_first"] = time.process_time()
                deadline = time.monotonic() + max_seconds
            msg = event.message
            parsed = checks[msg.topic].check(event.value, now)
            if parsed is not None:
                district, etype, source_, eid = parsed
                key = seen_key(source_, eid)
                if not seen[key]:
                    seen[key] = True
                    counts[count_key(district, etype)] += 1
            processed += 1
            positions[tp_key(msg.topic, msg.partition)] = msg.offset + 1
            result["processed"] = processed
            if processed >= total:
                finish(True)
                return
            if time.monotonic() > deadline:
                finish(False)
                return

    worker = Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    with contextlib.suppress(SystemExit):  # mode's worker exits the interpreter when done
        worker.execute_from_commandline()
    return result


if __name__ == "__main__":
    child_main(run)

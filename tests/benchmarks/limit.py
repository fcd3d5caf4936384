"""The ceiling: a raw aiokafka consumer that only reads and decodes (orjson) every record.

No consumer group, no commits, no state: it assigns every partition of the three
source topics, reads from the beginning until it has seen every record, and decodes
each value. Whatever a Python consumer does on top of this costs more.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from .proc import child_main, parse_tp_key, tp_key


async def consume(spec: dict[str, Any]) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    ends = {parse_tp_key(k): n for k, n in spec["end_offsets"].items()}
    total = sum(ends.values())
    consumer = AIOKafkaConsumer(
        bootstrap_servers=spec["bootstrap"],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Large fetches: the fewer round trips, the closer to the ceiling.
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    await asyncio.sleep(0)
    tps = [TopicPartition(t, p) for (t, p) in ends]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    loads = orjson.loads
    read = decoded = 0
    positions: dict[str, int] = {}
    first_at: float | None = None
    cpu_first = 0.0
    deadline = time.monotonic() + float(spec.get("max_seconds") or 3600)
    try:
        while read < total and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=500)
            for tp, records in fetched.items():
                if first_at is None:
                    first_at = time.time()
                    cpu_first = time.process_time()
                for rec in records:
                    try:
                        loads(rec.value)
                    except (orjson.JSONDecodeError, TypeError):
                        continue
                    decoded += 1
                read += len(records)
                positions[tp_key(tp.topic, tp.partition)] = records[-1].offset + 1
        last_at = time.time()
        cpu_last = time.process_time()
    finally:
        await consumer.stop()
    return {
        "impl": "limit",
        "first_at": first_at,
        "last_at": last_at,
        "processed": read,
        "decoded": decoded,
        "positions": positions,
        "complete": read >= total,
        "cpu_processing_seconds": round(cpu_last - cpu_first, 3),
    }


def run(spec: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(consume(spec))


if __name__ == "__main__":
    child_main(run)

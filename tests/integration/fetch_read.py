"""Read a topic whole with aiokafka, as aiokafka reads it or through Watchfloor's fetch path.

Run as ``python -m tests.integration.fetch_read <bootstrap> <topic> <partitions> <n> <mode>``
(``mode``: ``aiokafka`` or ``watchfloor``), in a process of its own so that aiokafka's
reading is not patched by anything else the test process did. Prints one JSON object: the
records' fields, and how many were read in C.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from typing import Any


def _b(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


async def read(bootstrap: str, topic: str, partitions: int, n: int, mode: str) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    installed = None
    if mode == "watchfloor":
        from streams import native

        if os.environ.get("WATCHFLOOR_TEST_PURE") == "1":  # as tests/conftest.py does
            native.use_source()
        from streams import kafka

        installed = kafka.install_fetch_path()._asdict()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Small fetches: partitions read in several slices, fetched from mid-batch offsets.
        max_partition_fetch_bytes=4096,
    )
    await consumer.start()
    rows: list[list[Any]] = []
    in_c = 0
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len(rows) < n and loop.time() < deadline:
            got = await consumer.getmany(timeout_ms=500, max_records=7)
            for records in got.values():
                for r in records:
                    in_c += type(r).__module__ == "streams._records"
                    rows.append([
                        r.topic, r.partition, r.offset, r.timestamp, r.timestamp_type,
                        _b(r.key), _b(r.value), r.checksum, r.serialized_key_size,
                        r.serialized_value_size, [[k, _b(v)] for k, v in r.headers],
                    ])
    finally:
        await consumer.stop()
    rows.sort(key=lambda row: (row[1], row[2]))
    return {"rows": rows, "in_c": in_c, "installed": installed}


if __name__ == "__main__":
    bootstrap, topic, partitions, n, mode = sys.argv[1:6]
    print(json.dumps(asyncio.run(read(bootstrap, topic, int(partitions), int(n), mode))))

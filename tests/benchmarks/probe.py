"""Event-to-metric latency: marker events every 100 ms, polled until the worker shows them.

Runs in its own process during the latency phase, beside the load producer. Every
``marker_interval`` seconds it produces one ``case_filed`` event for the marker
district (which no other record touches), noting the wall time just before the
send. Every ``poll_interval`` seconds it asks the worker for that district
(``GET /api/v1/districts/<marker>``, computed from the same live state as
``/metrics``); when ``current.open_cases`` has grown by k, the first k markers are
visible, and each one's latency is the arrival time of that answer minus its send
time. The worker's own ``watchfloor_processing_latency_seconds`` histogram is not used:
it measures from the event's ``time`` field, which the simulator sets seconds to
minutes before publishing, as real devices do.

It also times a ``/metrics`` scrape every ``scrape_interval`` seconds (as Prometheus
would, under load) and samples the worker's RSS and CPU time every second. A scrape runs
in a thread of its own (``scrape_once``), away from the polls: done on the probe's event
loop, reading, inflating and parsing 7 MB of text in Python held the polls for about
0.2 s, so the markers in flight looked that much later and the scrape that much slower
than the worker made them (a ``curl`` beside it read the same body in 10 ms).
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
import zlib
from typing import Any

import orjson

from streams.partitioning import district_partition

from .proc import child_main, cpu_seconds, proc_status


def family_sum(body: bytes, name: str) -> float:
    """The sum of a family's samples in a text exposition, without parsing the rest."""
    start = body.find(f"\n# TYPE {name} ".encode())
    if start < 0:
        return 0.0
    start = body.find(b"\n", start + 1) + 1
    end = body.find(b"\n#", start)
    total = 0.0
    for line in body[start : end if end >= 0 else len(body)].splitlines():
        if line.startswith(name.encode()):
            total += float(line.rsplit(b" ", 1)[1])
    return total


def scrape_once(url: str, timeout: float = 30.0) -> dict[str, float]:
    """One ``/metrics`` scrape as Prometheus makes it (gzip asked), timed until the whole
    body is in and inflated; blocking, for a thread (socket reads and zlib release the GIL).
    """
    request = urllib.request.Request(f"{url}/metrics", headers={"Accept-Encoding": "gzip"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        headers_in = time.perf_counter() - t0  # the worker has begun its answer
        raw = resp.read()
        gzipped = resp.headers.get("Content-Encoding") == "gzip"
    body = zlib.decompress(raw, 16 + zlib.MAX_WBITS) if gzipped else raw
    took = time.perf_counter() - t0
    return {"seconds": took, "headers_seconds": headers_in, "bytes": len(raw),
            "lag": family_sum(body, "watchfloor_consumer_lag")}


def marker_event(district: str, run: str, k: int, now: float) -> bytes:
    local = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now))
    subject = f"mk-{run}-{k:06d}"
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": subject,
            "source": "/bench/latency-probe",
            "type": "watchfloor.incident.case_filed.v1",
            "time": local,
            "subject": subject,
            "datacontenttype": "application/json",
            "district": district,
            "data": {"category": "theft", "severity": "minor"},
        }
    )


async def probe(spec: dict[str, Any]) -> dict[str, Any]:
    import aiohttp
    from aiokafka import AIOKafkaProducer

    url = spec["worker_url"]
    district = spec["marker_district"]
    topic = spec["topic"]
    partition = district_partition(district, int(spec["partitions"]))
    duration = float(spec["seconds"])
    marker_interval = float(spec.get("marker_interval", 0.1))
    poll_interval = float(spec.get("poll_interval", 0.05))
    scrape_interval = float(spec.get("scrape_interval", 15.0))
    drain_timeout = float(spec.get("drain_timeout", 60.0))
    pid = int(spec["worker_pid"])
    run = spec["run"]

    sent: list[float] = []
    seen: list[float] = []
    polls: list[float] = []  # response time of each poll
    scrapes: list[dict[str, Any]] = []
    rss: list[tuple[float, int, float]] = []
    producer = AIOKafkaProducer(bootstrap_servers=spec["bootstrap"], linger_ms=0, acks=1)
    await producer.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    path = f"{url}/api/v1/districts/{district}"

    async def open_cases() -> int | None:
        t0 = time.perf_counter()
        async with session.get(path) as resp:
            if resp.status != 200:
                return None
            body = await resp.json(loads=orjson.loads)
        polls.append(time.perf_counter() - t0)
        return int(body["current"]["open_cases"])

    base = await open_cases()
    if base is None:
        raise RuntimeError(f"{path} does not answer 200")
    await asyncio.sleep(max(0.0, float(spec["start_at"]) - time.time()))
    t_start = time.time()
    end = t_start + duration
    markers_done = asyncio.Event()

    async def markers() -> None:
        k = 0
        next_at = time.monotonic()
        while time.time() < end:
            k += 1
            now = time.time()
            value = marker_event(district, run, k, now)
            sent.append(now)
            await producer.send(topic, value, key=district.encode(), partition=partition)
            next_at += marker_interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await producer.flush()
        markers_done.set()

    async def poll() -> None:
        deadline = None
        while True:
            got = await open_cases()
            now = time.time()
            if got is not None:
                while len(seen) < min(got - base, len(sent)):
                    seen.append(now)
            if markers_done.is_set():
                if len(seen) >= len(sent):
                    return
                deadline = deadline or time.monotonic() + drain_timeout
                if time.monotonic() > deadline:
                    return
            await asyncio.sleep(poll_interval)

    async def scrape() -> None:
        if scrape_interval <= 0:
            return
        while True:
            await asyncio.sleep(scrape_interval)
            if time.time() >= end:
                return
            started = time.time()
            scrapes.append({"at": started, **await asyncio.to_thread(scrape_once, url)})

    async def sample() -> None:
        while time.time() < end + 5:
            status = proc_status(pid)
            cpu = cpu_seconds(pid)
            if "VmRSS" in status and cpu is not None:
                rss.append((time.time() - t_start, status["VmRSS"], cpu))
            await asyncio.sleep(1.0)

    try:
        await asyncio.gather(markers(), poll(), scrape(), sample())
    finally:
        await producer.stop()
        await session.close()
    # A marker in flight while a scrape ran waited for it: the worker's loop is busy
    # rendering /metrics meanwhile. Told apart so that the cost of scrapes shows.
    spans = [(x["at"], x["at"] + x["seconds"]) for x in scrapes]
    overlapped = [any(a < v and s < b for a, b in spans) for s, v in zip(sent, seen, strict=False)]
    polls.sort()
    return {
        "started_at": t_start,
        "markers_sent": len(sent),
        "markers_seen": len(seen),
        "latencies": [round(v - s, 4) for s, v in zip(sent, seen, strict=False)],
        "overlapped_scrape": overlapped,
        "poll_seconds_median": polls[len(polls) // 2] if polls else None,
        "poll_seconds_max": polls[-1] if polls else None,
        "scrape_interval": scrape_interval,
        "scrapes": scrapes,
        "rss": rss,
        "marker_interval": marker_interval,
        "poll_interval": poll_interval,
    }


def run(spec: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(probe(spec))


if __name__ == "__main__":
    child_main(run)

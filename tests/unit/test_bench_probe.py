"""The latency probe's scrape, checked against a local HTTP server: the timing thread's
reading of a gzipped exposition and of the lag family in it."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from tests.benchmarks.probe import family_sum, scrape_once

LAGS = {("incidents", "0"): 120.0, ("incidents", "1"): 3.0, ("patrols", "0"): 0.5}


def exposition() -> bytes:
    registry = CollectorRegistry()
    lag = Gauge("watchfloor_consumer_lag", "Records behind.", ["topic", "partition"],
                registry=registry)
    # A family named with the lag's name as a prefix, before and after it: not counted.
    before = Gauge("watchfloor_consumer", "Other.", registry=registry)
    after = Gauge("watchfloor_consumer_lag_seconds", "Other.", registry=registry)
    before.set(1000)
    after.set(2000)
    for (topic, partition), value in LAGS.items():
        lag.labels(topic, partition).set(value)
    return generate_latest(registry)


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    body = exposition()
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.headers.get("Accept-Encoding", ""))
            data = gzip.compress(body)
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", asked
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_lag_family_is_summed_alone() -> None:
    assert family_sum(exposition(), "watchfloor_consumer_lag") == sum(LAGS.values())
    assert family_sum(exposition(), "watchfloor_absent") == 0.0


def test_a_scrape_asks_for_gzip_and_reads_the_whole_body(
    server: tuple[str, list[str]],
) -> None:
    url, asked = server
    got = scrape_once(url)
    assert asked == ["gzip"]
    assert got["lag"] == sum(LAGS.values())
    assert got["bytes"] == len(gzip.compress(exposition()))
    assert 0 <= got["headers_seconds"] <= got["seconds"]

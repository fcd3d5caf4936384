"""Prometheus metrics: the pipeline's own health, one typed bundle on a given registry."""

from __future__ import annotations

import platform
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import (
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import (
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from . import __version__
from .events import REASONS

# Every answer HTTP ingest gives, as (status, reason): the labels of
# watchfloor_ingest_requests_total, all created at 0 (docs/metrics.md).
INGEST_ANSWERS: tuple[tuple[int, str], ...] = (
    (202, "accepted"),
    (400, "empty"),
    (400, "not_utf8"),
    (400, "malformed_json"),
    (400, "schema"),
    (400, "bad_encoding"),
    (400, "body_incomplete"),
    (400, "events_rejected"),
    (401, "no_token"),
    (401, "unknown_token"),
    (401, "expired_token"),
    (403, "not_allowed"),
    (408, "body_timeout"),
    (413, "body_too_large"),
    (413, "batch_too_large"),
    (415, "unsupported_encoding"),
    (503, "kafka_unavailable"),
    (503, "not_confirmed"),
)
# What became of each event in an ingest request.
INGEST_EVENT_RESULTS = ("accepted", "rejected", "not_allowed", "not_sent")

# ``*_created`` series double the exposition and no dashboard or rule reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    21600.0,
    86400.0,
)


class BulkHistogram(Collector):
    """A histogram fed a batch at a time: one bisect per value, no lock, no child lookup."""

    def __init__(self, name: str, doc: str, label: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.doc = doc
        self.label = label
        self.bounds = list(buckets)
        self._series: dict[str, tuple[list[int], list[float]]] = {}

    def observe_many(self, label_value: str, values: Iterable[float]) -> None:
        series = self._series.get(label_value)
        if series is None:
            series = self._series[label_value] = ([0] * (len(self.bounds) + 1), [0.0])
        counts, total = series
        bounds = self.bounds
        s = 0.0
        for v in values:
            counts[bisect_left(bounds, v)] += 1
            s += v
        total[0] += s

    def collect(self) -> Iterator[Metric]:
        fam = HistogramMetricFamily(self.name, self.doc, labels=[self.label], unit="")
        for label_value, (counts, total) in self._series.items():
            cumulative = 0
            buckets = []
            for bound, n in zip([*self.bounds, float("inf")], counts, strict=True):
                cumulative += n
                buckets.append((_le(bound), cumulative))
            fam.add_metric([label_value], buckets, total[0])
        yield fam

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.doc, labels=[self.label])


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Metrics:
    """The typed bundle of every metric a worker exports, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry, topics: Sequence[str]) -> None:
        self.registry = registry
        r = registry
        # process_resident_memory_bytes and friends, for the on-call dashboard.
        ProcessCollector(registry=r)
        r.register(PLATFORM_COLLECTOR)
        self.events_received = Counter(
            "watchfloor_events_received",
            "Records read from the source topics",
            ["topic"],
            registry=r,
        )
        self.events_processed = Counter(
            "watchfloor_events_processed",
            "Records counted into district figures",
            ["topic"],
            registry=r,
        )
        self.events_rejected = Counter(
            "watchfloor_events_rejected",
            "Records not counted, by reason; each one is written to the dead-letter topic",
            ["topic", "reason"],
            registry=r,
        )
        self.forwarded_records = Counter(
            "watchfloor_forwarded_records",
            "Valid records read outside their district's partition and forwarded to it once, by"
            " the topic they came on; a publisher's partitioner to fix (docs/publishing.md)",
            ["topic"],
            registry=r,
        )
        self.dead_letter_errors = Counter(
            "watchfloor_dead_letter_errors",
            "Dead letters that could not be written (the worker stops committing until they are)",
            registry=r,
        )
        self.latency = BulkHistogram(
            "watchfloor_processing_latency_seconds",
            "From an event's own time to the moment it was counted",
            "topic",
            LATENCY_BUCKETS,
        )
        r.register(self.latency)
        self.batch_duration = Histogram(
            "watchfloor_batch_duration_seconds",
            "Time to validate, count and write the state of one batch",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.batch_wait = Histogram(
            "watchfloor_batch_wait_seconds",
            "From a batch's fetch to the start of its counting (time queued for the agent)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.batch_records = Histogram(
            "watchfloor_batch_records",
            "Records per batch (one fetch of the source topics)",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 20000, 50000),
            registry=r,
        )
        self.last_event = Gauge(
            "watchfloor_last_event_timestamp_seconds",
            "Wall-clock time when the last record was read from the topic",
            ["topic"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "watchfloor_consumer_lag",
            "Records between this worker's position and the end of the partition",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "watchfloor_assigned_partitions", "Source partitions this worker owns", registry=r
        )
        self.owned_districts = Gauge(
            "watchfloor_owned_districts", "Districts whose figures this worker holds", registry=r
        )
        self.recovery_in_progress = Gauge(
            "watchfloor_recovery_in_progress",
            "1 while this worker rebuilds its state after a rebalance or restart",
            registry=r,
        )
        self.recovery_started = Gauge(
            "watchfloor_recovery_started_timestamp_seconds",
            "When the current or last state recovery started",
            registry=r,
        )
        self.last_recovery_duration = Gauge(
            "watchfloor_last_recovery_duration_seconds",
            "How long the last state recovery took",
            registry=r,
        )
        self.rebalances = Counter(
            "watchfloor_rebalances", "Consumer-group rebalances seen by this worker", registry=r
        )
        self.changelog_records = Counter(
            "watchfloor_changelog_records", "State records written to the changelog", registry=r
        )
        self.refetched_records = Counter(
            "watchfloor_refetched_records",
            "Records dropped after a fetch because a rebalance or seek moved their partition;"
            " the broker sends them again in order",
            registry=r,
        )
        self.fetch_errors = Counter(
            "watchfloor_fetch_errors",
            "Unexpected errors of the fetch loop; it rewinds what it held and fetches again",
            registry=r,
        )
        self.ready = Gauge(
            "watchfloor_ready", "1 when this worker serves correct figures", registry=r
        )
        self.kafka_available = Gauge(
            "watchfloor_kafka_available",
            "1 while this worker's producer reaches a leader for every partition it writes",
            registry=r,
        )
        self.kafka_available.set(1)
        self.ingest_requests = Counter(
            "watchfloor_ingest_requests",
            "HTTP ingest answers (POST /api/v1/events) by status code and reason",
            ["status", "reason"],
            registry=r,
        )
        self.ingest_events_by_result = Counter(
            "watchfloor_ingest_events",
            "Events posted over HTTP by what became of them: accepted, rejected (400, "
            "dead-lettered), not_allowed (403), not_sent (503)",
            ["result"],
            registry=r,
        )
        self.ingest_dead_letter_errors = Counter(
            "watchfloor_ingest_dead_letter_errors",
            "Events rejected over HTTP whose dead letter could not be written (the client "
            "was still told the event's fault)",
            registry=r,
        )
        self.ingest_tokens = Gauge(
            "watchfloor_ingest_tokens", "HTTP ingest tokens in force", registry=r
        )
        self.ingest_token_reload_errors = Counter(
            "watchfloor_ingest_token_reload_errors",
            "Changes of the ingest tokens file that could not be read; the previous tokens "
            "stayed in force",
            registry=r,
        )
        self.build_info = Gauge(
            "watchfloor_build_info",
            "Watchfloor version and runtime; always 1",
            ["version", "kafka_client", "python"],
            registry=r,
        )
        self.build_info.labels(__version__, _aiokafka_version(), platform.python_version()).set(1)
        # Children are created up front: the label sets are bounded, and a cached child's
        # inc() costs a third of labels(...).inc().
        self.received = {t: self.events_received.labels(t) for t in topics}
        self.processed = {t: self.events_processed.labels(t) for t in topics}
        self.forwarded = {t: self.forwarded_records.labels(t) for t in topics}
        self.rejected = {
            (t, why): self.events_rejected.labels(t, why) for t in topics for why in REASONS
        }
        self.last_event_by_topic = {t: self.last_event.labels(t) for t in topics}
        self.ingest_answers = {
            (status, why): self.ingest_requests.labels(str(status), why)
            for status, why in INGEST_ANSWERS
        }
        self.ingest_events = {
            why: self.ingest_events_by_result.labels(why) for why in INGEST_EVENT_RESULTS
        }

    def ingest_answer(self, status: int, reason: str) -> None:
        """Count one ingest answer (an unlisted pair still counts, as its own series)."""
        child = self.ingest_answers.get((status, reason))
        if child is None:
            child = self.ingest_requests.labels(str(status), reason or "other")
        child.inc()


def _aiokafka_version() -> str:
    try:
        import aiokafka

        return f"aiokafka {aiokafka.__version__}"
    except ImportError:  # pragma: no cover
        return "unknown"

"""Watchfloor's settings: the one place that reads the environment (``WATCHFLOOR_*``)."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .bulletin import DEFAULT_WEIGHTS, parse_cutoff, parse_weights
from .errors import SettingsError
from .events import STREAM_OF_KIND, Kind, Stream
from .state import Limits
from .validation import MAX_FUTURE_SECONDS, MAX_RECORD_BYTES

if TYPE_CHECKING:
    from .clock import Clock
    from .reference import Reference
    from .validation import EventValidator

PREFIX = "WATCHFLOOR_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Secret(str):
    """A string that never shows itself in ``repr``, logs or tracebacks."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('********')" if self else "Secret('')"

    def reveal(self) -> str:
        return str.__str__(self)


def _bool(raw: str, name: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"{PREFIX}{name} must be true or false, not {raw!r}.")


NO_SECRET = Secret("")

# Kafka's legal topic and group names; an installation's namespace has no dot, so that
# its source topics (``<namespace>.incidents``) and Faust's internal ones
# (``<namespace>-state-changelog``) stay apart (docs/security.md, ACLs).
_KAFKA_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
# Fields an installation's namespace names unless they are set themselves.
_NAMESPACED = (
    "app_id",
    "topic_incidents",
    "topic_disputes",
    "topic_patrols",
    "topic_deadletter",
    "topic_bulletins",
)
# The engine's defaults, read from an instance: compiled (streams/native.py), a
# dataclass's defaults are not attributes of its class.
_LIMITS = Limits()


@dataclass(frozen=True)
class Settings:
    """Every knob of a Watchfloor process; build it with :meth:`from_env`."""

    # Kafka
    bootstrap_servers: str = "127.0.0.1:9092"
    # One name for an installation: the app id (consumer group, internal topics) and the
    # four topics below derive from it unless set themselves, so a second installation
    # on the same cluster needs this one variable.
    namespace: str = "watchfloor"
    app_id: str = ""  # empty: the namespace
    topic_incidents: str = ""  # empty: <namespace>.incidents
    topic_disputes: str = ""  # empty: <namespace>.disputes
    topic_patrols: str = ""  # empty: <namespace>.patrols
    topic_deadletter: str = ""  # empty: <namespace>.deadletter
    # A valid record read outside its district's partition (librdkafka's CRC32
    # partitioner, a keyless CloudEvents producer) is forwarded once through
    # "<app id>-forward" to its district's partition; off: dead-lettered as wrong_partition.
    forward_misrouted: bool = True
    partitions: int = 4
    replication_factor: int = 1
    # Kafka security: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: Secret = NO_SECRET
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    # Worker
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    # The URL other workers use to reach this one (table routing); defaults to http://web_host:web_port.
    canonical_url: str = ""
    metrics_port: int = 0  # 0: /metrics is served on web_port only
    store: str = "memory://"
    data_dir: str = ".watchfloor"
    standby_replicas: int = 0
    # A catch-up's batches are full, and about three of them are in memory at once (the
    # fetched, the queued, the one being counted): at 1,000 districts, 10,000 events a
    # batch peaked 394-397 MB against 416-420 at 20,000, for about 2 % fewer events/s;
    # 8,000 peaked 348-352 MB against 361-369 at 10,000, for 1-5 % fewer. The slower the
    # machine, the fuller the batches: where 8,000 averaged 7,000-7,600 a batch, 6,000
    # peaked 344-348 MB against 353-367, at the same events/s within the runs' spread.
    batch_max_events: int = 6000
    # Longest the broker holds a fetch that finds no new record. Faust fixes 1,500 ms, and
    # aiokafka sends no other fetch to a broker while one is held: a fetch of quiet
    # partitions alone (the forward topic's) then held every busy partition back by up
    # to 1.5 s (p50 event-to-metric 1.3 s at 20,000 events/s; 0.26 s at 100 ms).
    fetch_max_wait_ms: int = 100
    # What one fetch may bring, per partition and in all (aiokafka's
    # max_partition_fetch_bytes and fetch_max_bytes). aiokafka keeps a partition's fetched
    # records, and the whole response they came in, until the last of them is read:
    # during a catch-up that buffer is a large part of the worker's memory. At 4 MiB
    # against 16 / 50 MiB, the benchmark's catch-up peaked 455 MB against 519-544 for
    # 1-2 % fewer events/s (docs/performance.md, twenty-fourth step); a steady load's
    # fetches are far smaller, and a record larger than a fetch still comes, alone.
    fetch_partition_bytes: int = 4 * 1024 * 1024
    fetch_max_bytes: int = 4 * 1024 * 1024
    # A batch smaller than this waits up to BATCH_LINGER_MS from its fetch for more
    # fetches to join it. Each batch has fixed costs (a journal per touched district,
    # the dead-letter and forward round trips): under a steady load the agent otherwise
    # takes a batch per fetch, and those costs grow with the rate until they take the
    # whole core (100 % CPU at 20,000 events/s with batches of 1,500).
    batch_min_events: int = 4000
    batch_linger_ms: int = 100
    # How long counted batches' journals are held and merged before they are written
    # (their offsets are acked, and so committed, only then). A journal per district per
    # batch cost a steady load about a tenth of the worker's CPU; 0 writes every batch.
    # A crash loses nothing held: the uncommitted records are read again.
    state_flush_ms: int = 1000
    commit_interval: float = 2.0
    # A worker that dies is noticed after this long; its partitions move only then.
    session_timeout: float = 10.0
    # Static group membership: a worker that comes back under the same id (a
    # StatefulSet pod name) takes its partitions back at once, without a rebalance or
    # waiting out its old session. Empty: dynamic membership.
    group_instance_id: str = ""
    log_level: str = "info"
    log_json: bool = False
    # How long the worker's producer keeps trying to deliver a record (state, dead
    # letters, HTTP events) while Kafka is away. A state write that runs out of it stops
    # the worker without committing: the next start reads those records again.
    producer_timeout: float = 60.0
    # On SIGTERM: /ready answers 503 this long first, while the server still serves, so
    # load balancers stop sending before the listener goes away.
    shutdown_drain_seconds: float = 5.0
    # Then the worker stops; if Kafka keeps it from stopping cleanly it exits anyway
    # this long after the drain (drain + this should stay below the orchestrator's
    # grace period: 90 s in deploy/kubernetes). Nothing is lost: what was not committed
    # is read again by the partitions' next owner.
    shutdown_timeout: float = 60.0
    # Counting
    reference_file: str = str(PROJECT_ROOT / "seeds" / "reference" / "city.json")
    timezone: str = ""  # empty: the reference city's timezone
    grace_seconds: float = _LIMITS.grace
    dedup_horizon_seconds: float = _LIMITS.dedup_horizon
    # How long a closed case, dispute or hazard is remembered for look-back visits,
    # reopens and retries of earlier steps (docs/design.md, "Lifecycles").
    lifecycle_memory_days: float = _LIMITS.lifecycle_memory / 86400
    max_future_seconds: float = MAX_FUTURE_SECONDS
    max_record_bytes: int = MAX_RECORD_BYTES
    retention_days: int = _LIMITS.retention_days
    # HTTP ingest
    ingest_tokens_file: str = ""
    ingest_tokens: Secret = NO_SECRET  # inline JSON, same shape as the file
    ingest_max_body_bytes: int = 1024 * 1024  # also the limit after inflating gzip
    ingest_max_batch: int = 500
    # Command centre (docs/centre.md): bulletins cut at this local time for the day
    # before (weekly on Mondays, monthly on the 1st), ranked by these weights.
    topic_bulletins: str = ""  # empty: <namespace>.bulletins
    bulletin_cutoff: str = "08:00"
    bulletin_weights: str = DEFAULT_WEIGHTS
    bulletin_named: int = 3  # leaders and laggards named (at most half the ranked)
    # Scheduled cuts start this long after a worker is ready, so a restart's backlog is
    # counted before a period is frozen.
    bulletin_start_delay_seconds: float = 60.0
    lang: str = "zh"  # labels of the page and documents: zh or en
    # Links for people: the page's public URL (empty: this worker's /centre/) and the
    # base of the runbooks (an air-gapped centre points it at its own copy).
    page_url: str = ""
    runbook_url: str = ""

    # How long a POST waits for Kafka to confirm its events before answering 503.
    ingest_timeout: float = 5.0

    def __post_init__(self) -> None:
        derived = _derived_names(self.namespace)
        for name in _NAMESPACED:
            if not getattr(self, name):
                object.__setattr__(self, name, derived[name])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``WATCHFLOOR_<FIELD>`` variables (field names upper-cased)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.name.upper()
            raw = env.get(PREFIX + name)
            if raw is None:
                continue
            values[f.name] = _convert(f, raw, name)
        values.update(overrides)
        try:
            settings = cls(**values)
        except TypeError as exc:  # an unknown override
            raise SettingsError(str(exc)) from None
        settings.check()
        return settings

    def check(self) -> None:
        if self.partitions < 1:
            raise SettingsError(f"{PREFIX}PARTITIONS must be at least 1, not {self.partitions}.")
        protocols = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
        if self.security_protocol not in protocols:
            raise SettingsError(
                f"{PREFIX}SECURITY_PROTOCOL must be one of {', '.join(sorted(protocols))}, "
                f"not {self.security_protocol!r}."
            )
        mechanisms = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
        if self.sasl_enabled:
            if self.sasl_mechanism not in mechanisms:
                raise SettingsError(
                    f"{PREFIX}SASL_MECHANISM must be one of {', '.join(sorted(mechanisms))}, "
                    f"not {self.sasl_mechanism!r}."
                )
            if not self.sasl_username or not self.sasl_password:
                raise SettingsError(
                    f"{PREFIX}SECURITY_PROTOCOL={self.security_protocol} needs "
                    f"{PREFIX}SASL_USERNAME and {PREFIX}SASL_PASSWORD."
                )
        if self.grace_seconds < 0 or self.dedup_horizon_seconds < 0:
            raise SettingsError("Grace and de-duplication horizon cannot be negative.")
        if self.lifecycle_memory_days * 86400 < self.dedup_horizon_seconds:
            raise SettingsError(
                f"{PREFIX}LIFECYCLE_MEMORY_DAYS ({self.lifecycle_memory_days:g}) must be at "
                "least the de-duplication horizon: a lifecycle must outlive the retries of "
                "its own events."
            )
        parse_cutoff(self.bulletin_cutoff)
        parse_weights(self.bulletin_weights)
        if self.lang not in ("zh", "en"):
            raise SettingsError(f"{PREFIX}LANG must be zh or en, not {self.lang!r}.")
        if self.bulletin_named < 0:
            raise SettingsError(f"{PREFIX}BULLETIN_NAMED cannot be negative.")
        if not self.store.startswith(("memory://", "rocksdb://")):
            raise SettingsError(
                f"{PREFIX}STORE must be memory:// or rocksdb://, not {self.store!r}."
            )
        if not _NAMESPACE.match(self.namespace):
            raise SettingsError(
                f"{PREFIX}NAMESPACE must be letters, digits, '_' or '-' (no dot, at most 100), "
                f"not {self.namespace!r}."
            )
        for name in _NAMESPACED:
            value = getattr(self, name)
            if not _KAFKA_NAME.match(value) or value in {".", ".."}:
                raise SettingsError(
                    f"{PREFIX}{name.upper()} must be a Kafka name (letters, digits, '.', '_' "
                    f"or '-', at most 200), not {value!r}."
                )
        if self.timezone:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise SettingsError(
                    f"{PREFIX}TIMEZONE must be an IANA time zone such as Asia/Shanghai, "
                    f"not {self.timezone!r}; leave it empty for the reference city's."
                ) from None
        for name in ("producer_timeout", "ingest_timeout", "shutdown_timeout"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must be more than 0 seconds.")
        if self.shutdown_drain_seconds < 0:
            raise SettingsError(f"{PREFIX}SHUTDOWN_DRAIN_SECONDS cannot be negative.")
        if self.batch_linger_ms < 0 or self.batch_min_events < 0:
            raise SettingsError(
                f"{PREFIX}BATCH_LINGER_MS and {PREFIX}BATCH_MIN_EVENTS cannot be negative."
            )
        if self.fetch_partition_bytes < 1024 or self.fetch_max_bytes < 1024:
            raise SettingsError(
                f"{PREFIX}FETCH_PARTITION_BYTES and {PREFIX}FETCH_MAX_BYTES must be at "
                "least 1024 bytes (a record larger than a fetch still comes, alone)."
            )
        if self.state_flush_ms < 0:
            raise SettingsError(f"{PREFIX}STATE_FLUSH_MS cannot be negative.")
        if self.ingest_max_body_bytes < 1 or self.ingest_max_batch < 1:
            raise SettingsError(
                f"{PREFIX}INGEST_MAX_BODY_BYTES and {PREFIX}INGEST_MAX_BATCH must be at least 1."
            )

    # Derived values -----------------------------------------------------------------

    @property
    def sasl_enabled(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls_enabled(self) -> bool:
        return self.security_protocol in {"SSL", "SASL_SSL"}

    @property
    def source_topics(self) -> tuple[str, ...]:
        return tuple(self.topic_by_stream.values())

    @property
    def topic_by_stream(self) -> dict[Stream, str]:
        """The topic name of each stream's role."""
        return {
            Stream.INCIDENTS: self.topic_incidents,
            Stream.DISPUTES: self.topic_disputes,
            Stream.PATROLS: self.topic_patrols,
        }

    @property
    def topic_forward(self) -> str:
        """The internal topic that carries misrouted records to their district's partition."""
        return f"{self.app_id}-forward"

    @property
    def stream_by_topic(self) -> dict[str, Stream]:
        return {topic: stream for stream, topic in self.topic_by_stream.items()}

    def topic_of(self, stream: Stream) -> str:
        return self.topic_by_stream[stream]

    def topic_for_kind(self, kind: Kind) -> str:
        return self.topic_by_stream[STREAM_OF_KIND[kind]]

    @property
    def limits(self) -> Limits:
        """How far back district states reach, for the counting core."""
        return Limits(
            grace=self.grace_seconds,
            dedup_horizon=self.dedup_horizon_seconds,
            lifecycle_memory=self.lifecycle_memory_days * 86400,
            retention_days=self.retention_days,
        )

    def validator(self, reference: Reference, clock: Clock) -> EventValidator:
        """The edge validator these settings describe."""
        from .validation import EventValidator

        return EventValidator(
            reference,
            clock=clock,
            max_record_bytes=self.max_record_bytes,
            max_future_seconds=self.max_future_seconds,
        )

    @property
    def web_url(self) -> str:
        return self.canonical_url or f"http://{self.web_host}:{self.web_port}"

    @property
    def centre_url(self) -> str:
        """Where people open the command-centre page."""
        return self.page_url or f"{self.web_url.rstrip('/')}/centre/"

    @property
    def runbooks_url(self) -> str:
        """Where people open the runbooks (empty setting: this worker's /runbooks/)."""
        return self.runbook_url or f"{self.web_url.rstrip('/')}/runbooks/"

    @property
    def bootstrap_list(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    def replace(self, **changes: Any) -> Settings:
        if "namespace" in changes:
            # Names derived from the old namespace follow the new one; names set
            # explicitly stay.
            old = _derived_names(self.namespace)
            for name in _NAMESPACED:
                if name not in changes and getattr(self, name) == old[name]:
                    changes[name] = ""
        new = dataclasses.replace(self, **changes)
        new.check()
        return new

    def public(self) -> dict[str, Any]:
        """The settings as a dict fit to print: secrets are masked."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = "********" if value else ""
            out[f.name] = value
        return out

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.public().items())
        return f"Settings({inner})"


def _derived_names(namespace: str) -> dict[str, str]:
    return {
        "app_id": namespace,
        "topic_incidents": f"{namespace}.incidents",
        "topic_disputes": f"{namespace}.disputes",
        "topic_patrols": f"{namespace}.patrols",
        "topic_deadletter": f"{namespace}.deadletter",
        "topic_bulletins": f"{namespace}.bulletins",
    }


def variables_set(names: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """Which of ``names`` the environment sets (names only: values may be secrets)."""
    env = os.environ if environ is None else environ
    return sorted({n for n in names if n in env})


def drop_variables(names: Iterable[str]) -> list[str]:
    """Remove ``names`` from this process's environment; return those that were set.

    For libraries that read variables of their own at import time (Faust's ``F_*`` and
    ``FAUST_*``): a Watchfloor process is configured by ``WATCHFLOOR_*`` alone.
    """
    dropped = variables_set(names)
    for name in dropped:
        del os.environ[name]
    return dropped


def _convert(f: dataclasses.Field[Any], raw: str, name: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            return _bool(raw, name)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name} must be a {kind}, not {raw!r}.") from None
    if kind == "Secret":
        return Secret(raw)
    return raw


"""Kafka clients and topic administration: connections, producers and topics, from settings."""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import ssl
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple, TypeVar, cast

from . import native
from .errors import BrokerError, SettingsError
from .settings import Settings

T = TypeVar("T")

# After a failed metadata update, wait this long at first, doubling up to the maximum.
METADATA_BACKOFF_MAX_SECONDS = 2.0


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context the settings describe; a file that cannot be used is one sentence."""
    if not settings.tls_enabled:
        return None
    try:
        context = ssl.create_default_context(
            purpose=ssl.Purpose.SERVER_AUTH, cafile=settings.ssl_cafile or None
        )
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(
            _pem_problem("WATCHFLOOR_SSL_CAFILE", settings.ssl_cafile, "a CA certificate", exc)
        ) from None
    if settings.ssl_certfile:
        try:
            context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile or None)
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(_cert_problem(settings, exc)) from None
    elif settings.ssl_keyfile:
        raise SettingsError(
            "WATCHFLOOR_SSL_KEYFILE is set without WATCHFLOOR_SSL_CERTFILE; set both for "
            "mutual TLS, or neither."
        )
    return context


def _pem_problem(variable: str, path: str, what: str, exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{variable}={path} does not exist; it must be a PEM file with {what}."
    if isinstance(exc, PermissionError):
        return f"{variable}={path} cannot be read by this user (permission denied)."
    if isinstance(exc, IsADirectoryError):
        return f"{variable}={path} is a directory; it must be a PEM file with {what}."
    if isinstance(exc, ssl.SSLError):
        return f"{variable}={path} is not a PEM file with {what} ({exc.reason or exc})."
    return f"{variable}={path} cannot be read: {getattr(exc, 'strerror', None) or exc}."


def _cert_problem(settings: Settings, exc: BaseException) -> str:
    cert, key = settings.ssl_certfile, settings.ssl_keyfile
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError):
        # Which of the two files is missing or unreadable?
        for variable, path in (("WATCHFLOOR_SSL_CERTFILE", cert), ("WATCHFLOOR_SSL_KEYFILE", key)):
            if path:
                try:
                    with open(path, "rb"):
                        pass
                except OSError as missing:
                    return _pem_problem(variable, path, "a client certificate or key", missing)
        return _pem_problem("WATCHFLOOR_SSL_CERTFILE", cert, "a client certificate", exc)
    reason = getattr(exc, "reason", None) or str(exc)
    if reason == "KEY_VALUES_MISMATCH":
        return (
            f"The key in {key or cert} does not belong to the certificate in {cert} "
            "(WATCHFLOOR_SSL_KEYFILE, WATCHFLOOR_SSL_CERTFILE)."
        )
    return (
        f"WATCHFLOOR_SSL_CERTFILE={cert}"
        + (f" with WATCHFLOOR_SSL_KEYFILE={key}" if key else "")
        + f" is not a PEM client certificate and unencrypted key ({reason})."
    )


def install_aiokafka_fixes() -> None:
    """Two faults of aiokafka 0.14 (pinned) that a Kafka outage brings out; once per process.

    - A failed metadata update (every broker gone) is answered at once, and the
      producer's sender and the fetcher ask again at once: a busy loop that pins a core
      and writes thousands of ERROR lines a second (kafka-python had the same fault:
      dpkp/kafka-python#733). After a failure an update now returns only after a pause
      that starts at the client's ``retry_backoff_ms`` and doubles up to
      ``METADATA_BACKOFF_MAX_SECONDS``, as the Java client waits; a success resets it.
    - A fetch that failed sleeps its retry backoff outside the handler that turns a
      cancel into "no result", so stopping the consumer while Kafka is away raises
      CancelledError out of ``Fetcher.close`` and kills Faust's consumer thread: the
      worker then never finishes stopping. The cancel now ends the fetch as aiokafka's
      own handler does.
    """
    from aiokafka.client import AIOKafkaClient
    from aiokafka.consumer.fetcher import Fetcher

    update = AIOKafkaClient._metadata_update
    if getattr(update, "watchfloor_fix", False):
        return

    async def _metadata_update(self: Any, cluster_metadata: Any, topics: Any) -> bool:
        updated = bool(await update(self, cluster_metadata, topics))
        failures: int = getattr(self, "_watchfloor_md_failures", 0)
        if updated:
            self._watchfloor_md_failures = 0
        else:
            self._watchfloor_md_failures = failures + 1
            pause = self._retry_backoff * (2 ** min(failures, 10))
            await asyncio.sleep(min(METADATA_BACKOFF_MAX_SECONDS, pause))
        return updated

    fetch = Fetcher._proc_fetch_request

    async def _proc_fetch_request(self: Any, assignment: Any, node_id: Any, request: Any) -> Any:
        try:
            return await fetch(self, assignment, node_id, request)
        except asyncio.CancelledError:
            return False  # what aiokafka returns for a cancel during the request itself

    _metadata_update.watchfloor_fix = True  # type: ignore[attr-defined]
    AIOKafkaClient._metadata_update = _metadata_update
    Fetcher._proc_fetch_request = _proc_fetch_request


class FetchPath(NamedTuple):
    """What ``install_fetch_path`` put on aiokafka's fetch path."""

    crc: bool  # fetched buffers' CRC-32C checked whole, in C
    records: bool  # records of the buffers it vouched for read in C


def install_fetch_path() -> FetchPath:
    """Check fetched record batches' CRC-32C with the CPU's instruction, and read the
    records of the buffers found intact in C; once per process.

    aiokafka checks each batch's CRC in the consumer thread with a table-driven sum: 2.3 %
    of a worker's CPU under 50,000 events/s (perf). Where ``streams/_crc32c.c`` is built
    and the CPU has SSE 4.2, each fetched partition's buffer is checked whole as aiokafka
    wraps it (``MemoryRecords``), and the partition's records then skip aiokafka's own
    check. A buffer it does not vouch for (a mismatch, a legacy message set, anything it
    does not read) keeps aiokafka's check, which raises ``CorruptRecordException`` as
    before.

    aiokafka then reads the records one at a time through a Python generator and builds a
    dataclass for each: about 8 % of the worker under the same load (py-spy). Where
    ``streams/_records.c`` is built, a vouched-for buffer of plain batches (version 2,
    uncompressed, no control batch) is read whole into records with the same attributes
    when its records are first asked for, and ``FetchResult.getall`` hands them out in
    slices (``PartitionRecords.__next__`` one by one), moving the partition's position as
    aiokafka's loop would. Anything else (a compressed or control
    batch, ``read_committed``, deserializers, a record it does not read as aiokafka would)
    is read by aiokafka as before.
    """
    from aiokafka.consumer import fetcher

    crc = native.extension("_crc32c")
    if crc is None or not crc.hardware():
        return FetchPath(False, False)
    reader = native.extension("_records")
    if getattr(fetcher.MemoryRecords, "watchfloor_crc", False):
        return FetchPath(True, reader is not None)
    records_type = fetcher.MemoryRecords
    intact = crc.batches_intact
    init = fetcher.PartitionRecords.__init__
    next_record = fetcher.PartitionRecords.__next__
    getall = fetcher.FetchResult.getall
    # The buffer just checked and found intact, with its bytes. aiokafka builds a
    # partition's records right after wrapping its buffer, with no await between; a record
    # set that is not the one vouched for (another thread's, say) is read by aiokafka.
    vouched: list[tuple[Any, bytes] | None] = [None]

    def memory_records(data: bytes) -> Any:
        records = records_type(data)
        vouched[0] = (records, data) if intact(data) else None
        return records

    def partition_records(
        self: Any,
        tp: Any,
        records: Any,
        aborted_transactions: Any,
        fetch_offset: int,
        key_deserializer: Any,
        value_deserializer: Any,
        check_crcs: bool,
        isolation_level: Any,
    ) -> None:
        held, vouched[0] = vouched[0], None
        ours = held is not None and held[0] is records
        if check_crcs and ours:
            check_crcs = False  # every complete batch in it was checked just now
        init(
            self, tp, records, aborted_transactions, fetch_offset,
            key_deserializer, value_deserializer, check_crcs, isolation_level,
        )
        self._watchfloor_records = None
        self._watchfloor_unread = None
        if (
            ours
            and reader is not None
            and key_deserializer is None
            and value_deserializer is None
            and isolation_level != fetcher.READ_COMMITTED
        ):
            assert held is not None
            # Read when first asked for, not now: the fetcher holds a fetched buffer per
            # partition ahead of the consumer, and as records they took 30-60 MB more at
            # the catch-up's peak. aiokafka's generator, not started, is dropped meanwhile:
            # it holds these records, which hold it (a cycle, freed only by a full
            # collection, ``memory``).
            self._watchfloor_unread = held[1]
            self._records_iterator = None

    def read(part: Any) -> _ReadRecords | None:
        """The partition's records read in C (None: aiokafka reads them)."""
        data = getattr(part, "_watchfloor_unread", None)
        if data is not None:
            assert reader is not None
            part._watchfloor_unread = None
            tp = part._tp
            got = reader.unpack(data, part.next_fetch_offset, tp.topic, tp.partition)
            if got is None:
                part._records_iterator = part._unpack_records()
            else:
                part._watchfloor_records = _ReadRecords(*got)
        return cast("_ReadRecords | None", getattr(part, "_watchfloor_records", None))

    def partition_next(self: Any) -> Any:
        read_in_c = read(self)
        if read_in_c is None:
            return next_record(self)
        one, _ = read_in_c.take(self, 1)
        if not one:
            raise StopIteration
        return one[0]

    def fetch_result_getall(self: Any, max_records: int | None = None) -> list[Any]:
        part = self._partition_records
        read_in_c = None if part is None else read(part)
        if read_in_c is None or (max_records is not None and max_records < 1):
            return cast("list[Any]", getall(self, max_records))
        if not self.check_assignment(self._topic_partition) or not self.has_more():
            return []
        out, done = read_in_c.take(part, max_records)
        self._update_position()
        if done:
            self._partition_records = None
        return out

    memory_records.watchfloor_crc = True  # type: ignore[attr-defined]
    fetcher.MemoryRecords = memory_records
    fetcher.PartitionRecords.__init__ = partition_records
    fetcher.PartitionRecords.__next__ = partition_next
    fetcher.FetchResult.getall = fetch_result_getall
    return FetchPath(True, reader is not None)


class _ReadRecords:
    """A partition's records read in C, and how many were handed out."""

    __slots__ = ("next_offset", "records", "taken")

    def __init__(self, records: list[Any], next_offset: int) -> None:
        self.records = records
        self.next_offset = next_offset
        self.taken = 0

    def take(self, part: Any, n: int | None) -> tuple[list[Any], bool]:
        """The next ``n`` records (None: all), and whether they were the last; the
        partition's position moves as aiokafka's generator moves it: past the last record
        handed out, and past the last batch once none is left."""
        start = self.taken
        if n is not None and len(self.records) - start >= n:
            out = self.records[start : start + n]
            self.taken = start + n
            part.next_fetch_offset = out[-1].offset + 1
            return out, False
        out = self.records[start:]
        self.taken = len(self.records)
        part.next_fetch_offset = self.next_offset
        return out, True


async def named_metadata(client: Any, topics: list[str]) -> Any:
    """The metadata of ``topics`` from the first broker of ``client`` that answers (None
    when none does), from a request that names them and forbids creating them: a broker
    with auto.create.topics.enable would otherwise create a missing one, with one
    partition. The metadata of every topic instead cost 0.06-0.08 s each time on a
    broker holding 2,476 topics (aiokafka decodes it in Python)."""
    from aiokafka.errors import KafkaError
    from aiokafka.protocol.metadata import MetadataRequest

    request = MetadataRequest(topics, allow_auto_topic_creation=False)
    nodes = [broker.nodeId for broker in client.cluster.brokers()]
    random.shuffle(nodes)
    for node in nodes:
        try:
            return await client.send(node, request)
        except (KafkaError, OSError):
            continue  # the next broker may answer
    return None


async def delivery_problem(client: Any, topics: Iterable[str], timeout: float) -> str | None:
    """Why a producer on ``client`` cannot deliver to ``topics`` now, or None when it can.

    Asks for the metadata of ``topics`` only (``named_metadata``; it runs every two
    seconds) and checks that each of their partitions has a leader.
    """
    from aiokafka.cluster import ClusterMetadata
    from aiokafka.structs import TopicPartition

    names = list(dict.fromkeys(topics))
    try:
        response = await asyncio.wait_for(named_metadata(client, names), timeout)
    except TimeoutError:
        response = None
    if response is None:
        return "no Kafka broker answers"
    cluster = ClusterMetadata()  # read apart from the client's own, which stays as it is
    cluster.need_all_topic_metadata = True  # a missing topic is reported below, not logged
    cluster.update_metadata(response)
    for topic in names:
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            return f"topic {topic} is missing"
        for p in sorted(partitions):
            leader = cluster.leader_for_partition(TopicPartition(topic, p))
            if leader is None or leader < 0:
                return f"partition {p} of {topic} has no leader"
    return None


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection keyword arguments for aiokafka and kafka-python clients alike."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_list,
        "security_protocol": settings.security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.sasl_enabled:
        kwargs["sasl_mechanism"] = settings.sasl_mechanism
        kwargs["sasl_plain_username"] = settings.sasl_username
        kwargs["sasl_plain_password"] = settings.sasl_password.reveal()
    return kwargs


def faust_credentials(settings: Settings) -> Any:
    """Faust ``broker_credentials`` for the settings (None for plain text)."""
    import faust

    context = ssl_context(settings)
    if settings.sasl_enabled:
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.reveal(),
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


async def check_connection(settings: Settings, timeout: float = 15.0) -> str:
    """Open one authenticated connection to a bootstrap server, or say plainly why not.

    Kafka clients report a refused password as "unable to bootstrap" after a timeout;
    asking one server directly turns it into a sentence a person can act on. Returns the
    server that answered.
    """
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError, SaslAuthenticationFailed


    kwargs: dict[str, Any] = {"security_protocol": settings.security_protocol}
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.sasl_enabled:
        kwargs.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password.reveal(),
        )
    problems: list[str] = []
    for server in settings.bootstrap_list:
        host, _, port = server.rpartition(":")
        try:
            conn = await asyncio.wait_for(create_conn(host, int(port), **kwargs), timeout)
        except SaslAuthenticationFailed as exc:
            why = exc.args[0] if exc.args else "authentication failed"
            raise BrokerError(
                f"Kafka at {server} refused the credentials of user "
                f"{settings.sasl_username!r} ({settings.sasl_mechanism}): {why}. "
                "Check WATCHFLOOR_SASL_USERNAME and WATCHFLOOR_SASL_PASSWORD."
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise BrokerError(
                f"The TLS certificate of Kafka at {server} could not be verified "
                f"({exc.verify_message}); set WATCHFLOOR_SSL_CAFILE to the CA that signed it."
            ) from None
        except (OSError, KafkaError, TimeoutError) as exc:
            problems.append(f"{server}: {_connection_problem(settings, exc)}")
            continue
        conn.close()
        return server
    raise BrokerError(
        f"No Kafka broker answers ({'; '.join(problems)}); check WATCHFLOOR_BOOTSTRAP_SERVERS "
        f"and WATCHFLOOR_SECURITY_PROTOCOL ({settings.security_protocol})."
    )


def _connection_problem(settings: Settings, exc: BaseException) -> str:
    """What went wrong opening a connection, in words (some errors have no message)."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, ssl.SSLError) or (
        settings.tls_enabled and isinstance(exc, (ConnectionResetError, ConnectionAbortedError))
    ):
        return (
            "the connection was closed during the TLS handshake; is this port a TLS listener "
            f"({settings.security_protocol})? A plain-text port closes TLS connections like this"
        )
    text = str(exc) or type(exc).__name__
    if not settings.tls_enabled and "closed" in text.lower():
        return (
            f"{text} right after connecting; if this port is a TLS listener, set "
            "WATCHFLOOR_SECURITY_PROTOCOL to SSL or SASL_SSL"
        )
    return text


@asynccontextmanager
async def kafka_producer(settings: Settings, **overrides: Any) -> AsyncIterator[Any]:
    """A started aiokafka producer that waits for every in-sync replica (acks=all)."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    options: dict[str, Any] = {
        **client_kwargs(settings),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "request_timeout_ms": 30000,
    }
    options.update(overrides)
    producer = AIOKafkaProducer(**options)
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise BrokerError(
            f"Kafka at {settings.bootstrap_servers} cannot be reached: {exc}."
        ) from None
    try:
        yield producer
    finally:
        await producer.stop()


@asynccontextmanager
async def admin_client(settings: Settings) -> AsyncIterator[Any]:
    """A started aiokafka admin client; a broker that does not answer is one sentence."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=15000)
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        raise BrokerError(
            f"Kafka at {settings.bootstrap_servers} cannot be reached: {exc}."
        ) from None
    try:
        yield admin
    finally:
        await admin.close()


async def existing_topics(settings: Settings) -> set[str]:
    """Names of the topics the cluster has (without creating any)."""
    from aiokafka.errors import KafkaError

    async with admin_client(settings) as admin:
        try:
            return set(await admin.list_topics())
        except KafkaError as exc:
            raise BrokerError(f"Kafka refused to list topics: {exc}.") from None


async def create_topics(settings: Settings, topics: Iterable[str]) -> dict[str, int]:
    """Create the missing ones of ``topics`` with ``settings.partitions``; return every
    topic's partition count.

    The broker would auto-create a missing topic with its own default (one partition),
    which would put every district in the same partition.
    """
    async with admin_client(settings) as admin:
        counts, _ = await _create_missing(admin, settings, list(dict.fromkeys(topics)))
        return counts


async def _create_missing(
    admin: Any, settings: Settings, wanted: list[str]
) -> tuple[dict[str, int], list[str]]:
    """Create the missing ones of ``wanted``; return every topic's partition count and
    the names that were missing."""
    from aiokafka.admin import NewTopic
    from aiokafka.errors import KafkaError, TopicAlreadyExistsError

    try:
        counts = await admin_partition_counts(admin, wanted)
        missing = [t for t in wanted if t not in counts]
        if not missing:
            return counts, []
        new = [NewTopic(t, settings.partitions, settings.replication_factor) for t in missing]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            pass  # made by someone meanwhile
        except KafkaError as exc:
            raise BrokerError(
                f"Topics {', '.join(missing)} do not exist and could not be created "
                f"({exc}); create them with {settings.partitions} partitions, or grant "
                "this user CREATE on them (docs/security.md)."
            ) from None
        for _ in range(100):
            counts = await admin_partition_counts(admin, wanted)
            if all(t in counts for t in wanted):
                return counts, missing
            await asyncio.sleep(0.1)
        raise BrokerError(f"Kafka did not create topics {', '.join(missing)}.")
    except KafkaError as exc:
        raise BrokerError(f"Kafka refused to list or create topics: {exc}.") from None


async def admin_partition_counts(admin: Any, topics: list[str]) -> dict[str, int]:
    """``partition_counts`` through a started aiokafka admin client."""
    # aiokafka's admin client has no public call that names topics and forbids creation.
    return await partition_counts(admin._client, topics)


async def partition_counts(client: Any, topics: list[str]) -> dict[str, int]:
    """Partition counts of those of ``topics`` that exist (``named_metadata``: none is
    created) on the aiokafka client ``client``. A worker's start asked for every topic
    six times before."""
    response = await named_metadata(client, topics)
    if response is None:
        raise BrokerError("No Kafka broker answers a request for topic metadata.")
    counts = {}
    for entry in response.to_object()["topics"]:
        if entry["topic"] in topics and entry.get("error_code", 0) == 0 and entry.get("partitions"):
            counts[entry["topic"]] = len(entry["partitions"])
    return counts


def ensure_topics(settings: Settings, *, timeout: float = 60.0) -> list[str]:
    """Create the source and dead-letter topics if missing; return those created.

    What the worker and ``watchfloor topics create`` run. The three source topics must
    share one partition count (a district's state lives with its partition number); an
    existing topic with another count is an error. One admin connection and, when
    nothing is missing, one metadata request for the topics named: this runs before
    every worker start, restarts included.
    """

    async def run() -> list[str]:
        await check_connection(settings, timeout=timeout)
        names = [*settings.source_topics, settings.topic_deadletter]
        if settings.forward_misrouted:
            names.append(settings.topic_forward)
        async with admin_client(settings) as admin:
            counts, created = await _create_missing(admin, settings, list(dict.fromkeys(names)))
        copartitioned = [*settings.source_topics]
        if settings.forward_misrouted:
            copartitioned.append(settings.topic_forward)
        for name in copartitioned:
            n = counts.get(name, 0)
            if n != settings.partitions:
                raise BrokerError(
                    f"Topic {name} has {n} partitions but WATCHFLOOR_PARTITIONS is "
                    f"{settings.partitions}; the source topics must all have the same count."
                )
        return created

    return run_sync(run())


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from synchronous code, even where an event loop already
    runs in this thread (a notebook, a browser driver): then in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()

"""Publishing JSON-lines files of events to Kafka (``watchfloor publish``), validated first."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import gzip
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any, cast

import orjson

from .clock import SystemClock
from .errors import BrokerError, InvalidEvent, WatchfloorError
from .events import CONTENT_TYPE
from .kafka import existing_topics, kafka_producer
from .progress import Progress
from .reference import load_reference
from .settings import Settings
from .validation import EventValidator

BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
# Sends awaited together: enough to keep the producer's batches full, few enough that a
# broken broker is noticed after a second's worth of lines, not after the whole file.
MAX_IN_FLIGHT = 2000
SHOW_REJECTED = 50

Headers = Sequence[tuple[str, bytes]]
# Hands one record to the producer, in order, and returns what resolves on the broker's
# confirmation: ordering needs the hand-over awaited line by line, speed needs the
# confirmations awaited together.
Enqueue = Callable[[str, bytes, bytes, Headers], Awaitable[Awaitable[Any]]]


@dataclass(frozen=True)
class Rejected:
    """A line that did not validate."""

    line: int
    reason: str
    error: str
    field: str | None
    id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "id": self.id,
            "reason": self.reason,
            "field": self.field,
            "error": self.error,
        }


@dataclass(frozen=True)
class Failed:
    """A valid line Kafka did not confirm."""

    line: int
    id: str
    topic: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "id": self.id, "topic": self.topic, "error": self.error}


@dataclass
class PublishReport:
    """What a publish run did, line by line for the failures."""

    sent: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    blank: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    dry_run: bool = False
    simulator_lines: int = 0  # lines of a `simulate --output` file, read as their records

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.failed

    def to_dict(self) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for r in self.rejected:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "sent": self.sent,
            "by_topic": dict(sorted(self.by_topic.items())),
            "blank_lines": self.blank,
            "simulator_lines": self.simulator_lines,
            "rejected_count": len(self.rejected),
            "rejected_by_reason": dict(sorted(reasons.items())),
            "rejected": [r.to_dict() for r in self.rejected],
            "failed": [f.to_dict() for f in self.failed],
        }

    def text(self) -> str:
        verb = "would send" if self.dry_run else "sent"
        topics = ", ".join(f"{t} {n}" for t, n in sorted(self.by_topic.items()))
        lines = [f"{verb} {self.sent} event{'s' if self.sent != 1 else ''}"
                 + (f" ({topics})" if topics else "")]  # fmt: skip
        if self.simulator_lines:
            lines.append(
                f"read {self.simulator_lines} lines as simulator records (watchfloor simulate "
                "--output); records it made invalid on purpose are rejected below"
            )
        if self.rejected:
            lines.append(
                f"rejected {len(self.rejected)} line{'s' if len(self.rejected) != 1 else ''}:"
            )
            for r in self.rejected[:SHOW_REJECTED]:
                lines.append(f"  line {r.line}: {r.reason}: {r.error}")
            if len(self.rejected) > SHOW_REJECTED:
                lines.append(
                    f"  ... and {len(self.rejected) - SHOW_REJECTED} more (--json lists them all)"
                )
        if self.failed:
            lines.append(f"not confirmed by Kafka: {len(self.failed)}:")
            for f in self.failed[:SHOW_REJECTED]:
                lines.append(f"  line {f.line} ({f.id} to {f.topic}): {f.error}")
        return "\n".join(lines)


def _event_id(raw: bytes) -> str | None:
    """The id of a rejected line, when it can be read (for the report only)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("id"), str):
        return str(doc["id"])[:128]
    return None


# The files ``watchfloor simulate ... --output`` writes wrap each record's value in a line
# of its own (streams/simulator/lines.py, record_to_line): these keys, and the value under
# "event" (a JSON object), "value" (text) or "value_b64".
_SIM_KEYS = frozenset({"at", "stream", "key", "intent"})
_SIM_VALUES = ("event", "value", "value_b64")


def unwrap_simulator_line(raw: bytes) -> bytes | None:
    """The record value of a simulator output line, or None when ``raw`` is not one."""
    if not raw.startswith(b"{") or b'"intent"' not in raw:
        return None  # the cheap test: events never get past it
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not doc.keys() >= _SIM_KEYS or "specversion" in doc:
        return None
    if isinstance(doc.get("event"), dict):
        return orjson.dumps(doc["event"])  # the simulator's bytes: it wrote them this way
    if isinstance(doc.get("value"), str):
        return str(doc["value"]).encode("utf-8", "surrogatepass")
    if isinstance(doc.get("value_b64"), str):
        try:
            return base64.b64decode(doc["value_b64"], validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


def read_lines(stream: IO[bytes]) -> Iterable[tuple[int, bytes]]:
    """(line number, stripped bytes) for every line; a UTF-8 byte-order mark is dropped."""
    for number, line in enumerate(stream, start=1):
        if number == 1 and line.startswith(BOM):
            line = line[len(BOM) :]
        yield number, line.strip()


async def publish_lines(
    lines: Iterable[tuple[int, bytes]],
    validator: EventValidator,
    settings: Settings,
    enqueue: Enqueue | None,
    *,
    max_in_flight: int = MAX_IN_FLIGHT,
    progress: Progress | None = None,
) -> PublishReport:
    """Validate every line and send the valid ones, keyed by district, with confirmation.

    ``enqueue`` hands a record to the producer (``None``: dry run, nothing is sent).
    Lines of a simulator output file are read as the records they hold.
    """
    report = PublishReport(dry_run=enqueue is None)
    in_flight: list[tuple[int, str, str, Awaitable[Any]]] = []

    async def settle() -> None:
        results = await asyncio.gather(*(aw for _, _, _, aw in in_flight), return_exceptions=True)
        for (number, event_id, topic, _), result in zip(in_flight, results, strict=True):
            if isinstance(result, BaseException):
                report.failed.append(Failed(number, event_id, topic, _describe(result)))
            else:
                report.sent += 1
                report.by_topic[topic] = report.by_topic.get(topic, 0) + 1
        in_flight.clear()

    for number, raw in lines:
        if progress is not None:
            progress.tick(partial(_progress_line, number, report))
        if not raw:
            report.blank += 1
            continue
        inner = unwrap_simulator_line(raw)
        if inner is not None:
            report.simulator_lines += 1
            raw = inner
        try:
            event = validator.validate(raw)
        except InvalidEvent as exc:
            report.rejected.append(
                Rejected(number, exc.reason, exc.message, exc.field, _event_id(raw))
            )
            continue
        topic = settings.topic_for_kind(event.kind)
        if enqueue is None:
            report.sent += 1
            report.by_topic[topic] = report.by_topic.get(topic, 0) + 1
            continue
        try:
            delivery = await enqueue(topic, event.district.encode(), raw, [CONTENT_TYPE])
        except Exception as exc:  # the producer refused it at once (closed, no metadata)
            report.failed.append(Failed(number, event.id, topic, _describe(exc)))
            continue
        in_flight.append((number, event.id, topic, delivery))
        if len(in_flight) >= max_in_flight:
            await settle()
    if in_flight:
        await settle()
    if progress is not None:
        progress.done(f"{report.sent} sent, {len(report.rejected)} rejected")
    return report


def _progress_line(number: int, report: PublishReport) -> str:
    return f"{number} lines read, {report.sent} sent, {len(report.rejected)} rejected"


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if text.endswith(".") else text + "."


def producer_enqueue(producer: Any) -> Enqueue:
    """An ``Enqueue`` over an aiokafka producer (its ``send`` returns the delivery future)."""

    async def enqueue(topic: str, key: bytes, value: bytes, headers: Headers) -> Awaitable[Any]:
        delivery: Awaitable[Any] = await producer.send(topic, value, key=key, headers=list(headers))
        return delivery

    return enqueue


def producer_send(producer: Any) -> Callable[[str, bytes, bytes, Headers], Awaitable[None]]:
    """A confirmed send over an aiokafka producer: resolves when the broker has the record."""

    async def send(topic: str, key: bytes, value: bytes, headers: Headers) -> None:
        delivery = await producer.send(topic, value, key=key, headers=list(headers))
        await delivery

    return send


async def publish_stream(
    stream: IO[bytes],
    settings: Settings,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> PublishReport:
    """Validate and publish every line of ``stream`` as the settings say."""
    validator = settings.validator(load_reference(settings.reference_file), SystemClock())
    lines = read_lines(stream)
    if dry_run:
        return await publish_lines(lines, validator, settings, None, progress=progress)
    missing = [t for t in settings.source_topics if t not in await existing_topics(settings)]
    if missing:
        # Producing to a missing topic would let the broker auto-create it with the wrong
        # number of partitions, splitting districts' state.
        raise BrokerError(
            f"Topic{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"{'do' if len(missing) > 1 else 'does'} not exist; create "
            f"{'them' if len(missing) > 1 else 'it'} with {settings.partitions} partitions first."
        )
    async with kafka_producer(settings) as producer:
        return await publish_lines(
            lines, validator, settings, producer_enqueue(producer), progress=progress
        )


# --- command line --------------------------------------------------------------------


def register_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "publish",
        help="validate JSON-lines events and publish them to Kafka",
        description=(
            "Read one CloudEvents JSON event per line from FILE (or - for standard input), "
            "check each against the schemas and reference data, and produce the valid ones "
            "to their stream's topic, keyed by district, waiting for Kafka's confirmation. "
            "Exit status: 0 when every line was sent, 1 when some were rejected or not "
            "confirmed, 2 when Kafka or the file cannot be used."
        ),
    )
    parser.add_argument("file", metavar="FILE|-", help="a JSON-lines file, or - for stdin")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--dry-run", action="store_true", help="validate only; send nothing to Kafka"
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress lines on standard error (they appear after a few seconds)",
    )
    parser.set_defaults(func=_cmd_publish)


def _open_lines(path: Path) -> IO[bytes]:
    """The file, inflated when it is gzip (``simulate --output x.jsonl.gz`` writes those)."""
    handle = path.open("rb")
    if handle.read(2) == GZIP_MAGIC:
        handle.close()
        return cast(IO[bytes], gzip.open(path, "rb"))
    handle.seek(0)
    return handle


def _cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    progress = Progress("publish", enabled=not args.quiet)
    if args.file == "-":
        report = asyncio.run(
            publish_stream(sys.stdin.buffer, settings, dry_run=args.dry_run, progress=progress)
        )
    else:
        path = Path(args.file)
        try:
            handle = _open_lines(path)
        except OSError as exc:
            raise WatchfloorError(f"{path} cannot be read: {exc.strerror or exc}.") from None
        with handle:
            report = asyncio.run(
                publish_stream(handle, settings, dry_run=args.dry_run, progress=progress)
            )
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(report.text())
    return 0 if report.ok else 1

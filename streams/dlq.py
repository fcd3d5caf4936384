"""Dead-letter tools: read the topic into a ledger, list what is pending, replay it (``dlq``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from .deadletter import (
    DEAD_LETTER_HEADERS,
    H_ERROR,
    H_MARKED,
    H_MARKER,
    H_PUBLISHER,
    H_REASON,
    H_REJECTED_AT,
    H_REPLAY_COUNT,
    H_REPLAYED_AT,
    H_REPLAYED_FROM,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    H_WORKER,
    HTTP_SOURCE,
    MARKER_REPLAYED,
    REPLAY_HEADERS,
    DeadLetter,
    Headers,
    header_text,
    rfc3339,
)
from .errors import BrokerError, WatchfloorError
from .events import KIND_OF_TYPE, REASONS
from .kafka import client_kwargs
from .reference import load_reference
from .settings import Settings

# --- reading the dead-letter topic ------------------------------------------------------


@dataclass(frozen=True)
class StoredDeadLetter:
    """A record read back from the dead-letter topic."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers

    def header(self, name: str) -> str | None:
        return header_text(self.headers, name)

    @property
    def is_marker(self) -> bool:
        return any(k == H_MARKER for k, _ in self.headers)

    @property
    def reason(self) -> str:
        return self.header(H_REASON) or "unknown"

    @property
    def error(self) -> str:
        return self.header(H_ERROR) or ""

    @property
    def source_topic(self) -> str:
        return self.header(H_SOURCE_TOPIC) or ""

    @property
    def identity(self) -> str:
        """Where the original was read: ``topic/partition/offset``.

        Dead letters are written at least once, so the same original can be here twice;
        records without the source headers stand for themselves.
        """
        topic = self.header(H_SOURCE_TOPIC)
        partition = self.header(H_SOURCE_PARTITION)
        offset = self.header(H_SOURCE_OFFSET)
        if topic and partition and offset:
            return f"{topic}/{partition}/{offset}"
        return f"dlq/{self.partition}/{self.offset}"

    @property
    def replayed_from(self) -> str | None:
        """Set when the rejected record was itself a replayed copy (a second failure)."""
        return self.header(H_REPLAYED_FROM)

    def original_headers(self) -> Headers:
        return tuple(
            (k, v)
            for k, v in self.headers
            if k not in DEAD_LETTER_HEADERS and k not in REPLAY_HEADERS
        )

    def to_dict(self, replayed: bool) -> dict[str, Any]:
        return {
            "dlq_partition": self.partition,
            "dlq_offset": self.offset,
            "identity": self.identity,
            "reason": self.reason,
            "error": self.error,
            "source_topic": self.source_topic,
            "source_partition": self.header(H_SOURCE_PARTITION),
            "source_offset": self.header(H_SOURCE_OFFSET),
            "rejected_at": self.header(H_REJECTED_AT),
            "worker": self.header(H_WORKER),
            "publisher": self.header(H_PUBLISHER),
            "key": None if self.key is None else self.key.decode("utf-8", "replace"),
            "replayed": replayed,
            "second_failure_of": self.replayed_from,
        }


@dataclass
class Ledger:
    """The dead-letter topic read once: unique dead letters and replay markers."""

    topic: str
    records: int = 0
    duplicates: int = 0
    letters: list[StoredDeadLetter] = field(default_factory=list)
    replayed: set[str] = field(default_factory=set)

    def add(self, record: StoredDeadLetter, seen: set[str]) -> None:
        self.records += 1
        if record.is_marker:
            marked = record.header(H_MARKED)
            if marked:
                self.replayed.add(marked)
            return
        identity = record.identity
        if identity in seen:
            self.duplicates += 1
            return
        seen.add(identity)
        self.letters.append(record)

    def select(
        self,
        reasons: Sequence[str] = (),
        source_topics: Sequence[str] = (),
        *,
        include_replayed: bool = True,
    ) -> list[StoredDeadLetter]:
        return [
            r
            for r in self.letters
            if (not reasons or r.reason in reasons)
            and (not source_topics or r.source_topic in source_topics)
            and (include_replayed or r.identity not in self.replayed)
        ]

    def summary(self, letters: Sequence[StoredDeadLetter], limit: int) -> dict[str, Any]:
        by_reason: Counter[str] = Counter()
        by_topic: Counter[str] = Counter()
        rows: Counter[tuple[str, str, bool]] = Counter()
        second = 0
        for r in letters:
            replayed = r.identity in self.replayed
            by_reason[r.reason] += 1
            by_topic[r.source_topic] += 1
            rows[(r.reason, r.source_topic, replayed)] += 1
            second += r.replayed_from is not None
        table: dict[tuple[str, str], dict[str, Any]] = {}
        for (reason, topic, replayed), n in rows.items():
            row = table.setdefault(
                (reason, topic),
                {"reason": reason, "source_topic": topic, "pending": 0, "replayed": 0},
            )
            row["replayed" if replayed else "pending"] += n
        # Partitions are read in no particular order; the dead-letter topic's own
        # timestamps say which came last.
        by_time = sorted(letters, key=lambda r: (r.timestamp_ms, r.partition, r.offset))
        latest = by_time[-limit:] if limit > 0 else []
        return {
            "topic": self.topic,
            "records": self.records,
            "dead_letters": len(letters),
            "duplicates": self.duplicates,
            "replayed": sum(1 for r in letters if r.identity in self.replayed),
            "second_failures": second,
            "by_reason": dict(sorted(by_reason.items())),
            "by_source_topic": dict(sorted(by_topic.items())),
            "table": sorted(
                table.values(), key=lambda row: (-row["pending"] - row["replayed"], row["reason"])
            ),
            "latest": [r.to_dict(r.identity in self.replayed) for r in reversed(latest)],
        }


async def read_ledger(settings: Settings, topic: str | None = None) -> Ledger:
    """Read the whole dead-letter topic, up to its end when we start, without a group."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    name = topic or settings.topic_deadletter
    ledger = Ledger(name)
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        await consumer.start()
        # consumer.partitions_for_topic() knows only topics the client already tracks;
        # the full metadata has every topic (aiokafka is pinned, so its client is stable).
        cluster = await consumer._client.fetch_all_metadata()
        partitions = sorted(cluster.partitions_for_topic(name) or ())
        tps = [TopicPartition(name, p) for p in partitions]
        if not tps:
            return ledger
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
        seen: set[str] = set()
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset >= ends[tp]:
                        continue
                    ledger.add(
                        StoredDeadLetter(
                            rec.partition,
                            rec.offset,
                            rec.timestamp,
                            rec.key,
                            rec.value,
                            tuple(rec.headers),
                        ),
                        seen,
                    )
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    except KafkaError as exc:
        raise BrokerError(f"The dead-letter topic {name} cannot be read: {exc}.") from None
    finally:
        await consumer.stop()
    return ledger


# --- replay --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayPlan:
    """One dead letter and where its original goes back to (None: cannot be routed)."""

    letter: StoredDeadLetter
    topic: str | None
    why_not: str = ""


def replay_target(letter: StoredDeadLetter, settings: Settings) -> ReplayPlan:
    """Originals go back to their source topic; HTTP ones to their type's topic."""

    source = letter.source_topic
    if source and source != HTTP_SOURCE:
        return ReplayPlan(letter, source)
    if source == HTTP_SOURCE:
        try:
            doc = orjson.loads(letter.value or b"")
        except orjson.JSONDecodeError:
            doc = None
        etype = doc.get("type") if isinstance(doc, dict) else None
        kind = KIND_OF_TYPE.get(etype) if isinstance(etype, str) else None
        if kind is not None:
            return ReplayPlan(letter, settings.topic_for_kind(kind))
        return ReplayPlan(letter, None, "posted over HTTP and its type names no topic")
    return ReplayPlan(letter, None, "it has no wf-source-topic header")


def replay_headers(letter: StoredDeadLetter, replayed_at: datetime) -> Headers:
    """The original headers plus the replay marks (the count goes up on each replay)."""
    previous = letter.header(H_REPLAY_COUNT)
    count = int(previous) + 1 if previous and previous.isdigit() else 1
    return (
        *letter.original_headers(),
        (H_REPLAYED_FROM, letter.identity.encode()),
        (H_REPLAYED_AT, rfc3339(replayed_at).encode()),
        (H_REPLAY_COUNT, str(count).encode()),
    )


def marker_for(letter: StoredDeadLetter, target: str, replayed_at: datetime) -> DeadLetter:
    body = {
        "replayed": letter.identity,
        "dead_letter": f"{letter.partition}/{letter.offset}",
        "to": target,
        "at": rfc3339(replayed_at),
    }
    return DeadLetter(
        letter.key,
        orjson.dumps(body),
        ((H_MARKER, MARKER_REPLAYED), (H_MARKED, letter.identity.encode())),
    )


@dataclass
class ReplayReport:
    dry_run: bool
    replayed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    already_replayed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "replayed_count": len(self.replayed),
            "replayed": self.replayed,
            "skipped": self.skipped,
            "already_replayed": self.already_replayed,
        }

    def text(self) -> str:
        verb = "would replay" if self.dry_run else "replayed"
        lines = [f"{verb} {len(self.replayed)} dead letter{'s' if len(self.replayed) != 1 else ''}"]
        by_topic = Counter(r["to"] for r in self.replayed)
        lines += [f"  to {t}: {n}" for t, n in sorted(by_topic.items())]
        if self.already_replayed:
            lines.append(
                f"left out {self.already_replayed} already replayed (--include-replayed to redo)"
            )
        for s in self.skipped[:50]:
            lines.append(f"cannot replay {s['identity']}: {s['why']}")
        return "\n".join(lines)


async def replay(
    settings: Settings,
    *,
    reasons: Sequence[str] = (),
    source_topics: Sequence[str] = (),
    include_replayed: bool = False,
    limit: int | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> ReplayReport:
    """Re-publish chosen dead letters' original bytes, key and headers to their topics."""
    from .kafka import kafka_producer

    ledger = await read_ledger(settings)
    chosen = ledger.select(reasons, source_topics, include_replayed=True)
    report = ReplayReport(dry_run)
    if not include_replayed:
        pending = [r for r in chosen if r.identity not in ledger.replayed]
        report.already_replayed = len(chosen) - len(pending)
        chosen = pending
    if limit is not None:
        chosen = chosen[:limit]
    plans = [replay_target(r, settings) for r in chosen]
    for plan in plans:
        if plan.topic is None:
            report.skipped.append({"identity": plan.letter.identity, "why": plan.why_not})
    routable = [p for p in plans if p.topic is not None]
    when = now or datetime.now(UTC)
    if routable:
        # Producing to a topic that is gone would let the broker re-create it with the
        # wrong number of partitions.
        from .kafka import existing_topics

        present = await existing_topics(settings)
        for plan in routable:
            if plan.topic not in present:
                report.skipped.append(
                    {"identity": plan.letter.identity, "why": f"topic {plan.topic} does not exist"}
                )
        routable = [p for p in routable if p.topic in present]
    if dry_run:
        report.replayed = [
            {"identity": p.letter.identity, "reason": p.letter.reason, "to": p.topic}
            for p in routable
        ]
        return report
    async with kafka_producer(settings) as producer:
        # Originals first, all confirmed, then the markers: a crash in between leaves
        # letters unmarked, and replaying them again is harmless (the engine counts a
        # transition once).
        sent: list[tuple[ReplayPlan, Any]] = []
        for plan in routable:
            try:
                delivery = await producer.send(
                    plan.topic,
                    plan.letter.value,
                    key=plan.letter.key,
                    headers=list(replay_headers(plan.letter, when)),
                )
            except Exception as exc:  # refused at once: too large, no metadata, closed
                report.skipped.append({"identity": plan.letter.identity, "why": f"Kafka: {exc}"})
                continue
            sent.append((plan, delivery))
        results = await asyncio.gather(*(d for _, d in sent), return_exceptions=True)
        markers = []
        for (plan, _), result in zip(sent, results, strict=True):
            if isinstance(result, BaseException):
                report.skipped.append({"identity": plan.letter.identity, "why": f"Kafka: {result}"})
                continue
            target = f"{result.topic}/{result.partition}/{result.offset}"
            report.replayed.append(
                {
                    "identity": plan.letter.identity,
                    "reason": plan.letter.reason,
                    "to": plan.topic,
                    "at": target,
                }
            )
            marker = marker_for(plan.letter, target, when)
            markers.append(
                await producer.send(
                    ledger.topic, marker.value, key=marker.key, headers=list(marker.headers)
                )
            )
        await asyncio.gather(*markers, return_exceptions=True)
    return report


# --- command line --------------------------------------------------------------------


def register_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dlq = subparsers.add_parser(
        "dlq",
        help="list and replay dead letters",
        description="Look into the dead-letter topic and re-publish dead letters once fixed.",
    )
    sub = dlq.add_subparsers(dest="dlq_command", metavar="ACTION")
    sub.required = True

    lister = sub.add_parser(
        "list",
        help="summary of dead letters by reason and source topic",
        description=(
            "Read the whole dead-letter topic (no consumer group, nothing committed) and "
            "summarise it by reason and source topic. A dead letter written twice counts once."
        ),
    )
    _filters(lister)
    lister.add_argument(
        "--limit", type=int, default=20, help="how many of the latest to show (default 20)"
    )
    lister.add_argument("--json", action="store_true", help="print JSON")
    lister.set_defaults(func=_cmd_list)

    replayer = sub.add_parser(
        "replay",
        help="re-publish dead letters to their source topic",
        description=(
            "Re-publish the original key, value and headers of chosen dead letters to the "
            "topic they were read from, marked with wf-replayed-from, once the cause is fixed. "
            "Safe to repeat: the engine counts each transition once. Dead letters replayed "
            "before are left out unless --include-replayed."
        ),
    )
    _filters(replayer)
    replayer.add_argument(
        "--all", action="store_true", help="every reason (needed without --reason)"
    )
    replayer.add_argument("--limit", type=int, default=None, help="replay at most this many")
    replayer.add_argument("--dry-run", action="store_true", help="show what would be replayed")
    replayer.add_argument(
        "--include-replayed", action="store_true", help="also replay dead letters replayed before"
    )
    replayer.add_argument("--json", action="store_true", help="print JSON")
    replayer.set_defaults(func=_cmd_replay)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reason",
        action="append",
        default=[],
        metavar="REASON",
        help=f"only this reason (repeatable or comma-separated): {', '.join(REASONS)}",
    )
    parser.add_argument(
        "--source-topic", action="append", default=[], metavar="TOPIC", help="only from this topic"
    )


def _split(values: Sequence[str]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _reasons(values: Sequence[str]) -> list[str]:
    reasons = _split(values)
    unknown = [r for r in reasons if r not in REASONS]
    if unknown:
        raise WatchfloorError(
            f"Unknown reason {', '.join(unknown)}; reasons are {', '.join(REASONS)}."
        )
    return reasons


def _local(stamp: str | None, tz: ZoneInfo | None) -> str:
    """A header's RFC 3339 time in the city's zone, like every other time people read."""
    if not stamp:
        return "?"
    if tz is None:
        return stamp
    try:
        return datetime.fromisoformat(stamp).astimezone(tz).isoformat()
    except ValueError:
        return stamp


def render_summary(summary: Mapping[str, Any], tz: ZoneInfo | None = None) -> str:
    lines = [
        f"{summary['topic']}: {summary['dead_letters']} dead letters"
        f" ({summary['records']} records read, {summary['duplicates']} written twice),"
        f" {summary['replayed']} replayed, {summary['second_failures']} failed again after a replay"
    ]
    if summary["table"]:
        width = max(len("reason"), *(len(r["reason"]) for r in summary["table"]))
        twidth = max(len("source topic"), *(len(r["source_topic"]) for r in summary["table"]))
        lines.append(
            f"{'reason':<{width}}  {'source topic':<{twidth}}  {'pending':>8}  {'replayed':>8}"
        )
        for row in summary["table"]:
            lines.append(
                f"{row['reason']:<{width}}  {row['source_topic']:<{twidth}}"
                f"  {row['pending']:>8}  {row['replayed']:>8}"
            )
    if summary["latest"]:
        lines.append(f"latest {len(summary['latest'])}:")
        for r in summary["latest"]:
            mark = " [replayed]" if r["replayed"] else ""
            again = (
                f" [failed again; replay of {r['second_failure_of']}]"
                if r["second_failure_of"]
                else ""
            )
            when = _local(r["rejected_at"], tz)
            lines.append(f"  {when}  {r['identity']}  {r['reason']}{mark}{again}: {r['error']}")
    return "\n".join(lines)


def _cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    reasons, topics = _reasons(args.reason), _split(args.source_topic)
    ledger = asyncio.run(read_ledger(settings))
    letters = ledger.select(reasons, topics)
    summary = ledger.summary(letters, args.limit)
    if args.json:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        tz = ZoneInfo(settings.timezone) if settings.timezone else load_reference(
            settings.reference_file
        ).timezone
        print(render_summary(summary, tz))
    return 0


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    reasons = _reasons(args.reason)
    if not reasons and not args.all:
        raise WatchfloorError("Say which dead letters to replay: --reason REASON, or --all.")
    report = asyncio.run(
        replay(
            settings,
            reasons=reasons,
            source_topics=_split(args.source_topic),
            include_replayed=args.include_replayed,
            limit=args.limit,
            dry_run=args.dry_run,
        )
    )
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(report.text())
    return 0 if not report.skipped else 1

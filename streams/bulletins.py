"""``watchfloor bulletin``: list, show and cut bulletins; recompute one from its offsets."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from . import bulletin as bl
from .clock import FixedClock
from .deadletter import H_REASON, H_SOURCE_OFFSET, H_SOURCE_PARTITION, H_SOURCE_TOPIC
from .documents import Names, bulletin_csv, bulletin_html, bulletin_markdown
from .engine import Engine
from .errors import BrokerError, WatchfloorError
from .kafka import client_kwargs
from .reference import load_reference
from .settings import Settings


class RecomputeError(WatchfloorError):
    """A bulletin cannot be recomputed (its sources are gone, or it is not stored)."""


async def read_bulletins(settings: Settings) -> dict[str, bytes]:
    """The latest value of every key of the bulletins topic."""
    out: dict[str, bytes] = {}
    for rec in await _read(settings, settings.topic_bulletins, {0: None}):
        if rec.key is not None and rec.value is not None:
            out[rec.key.decode()] = rec.value
    return out


async def _read(settings: Settings, topic: str, upto: Mapping[int, int | None]) -> list[Any]:
    """Records of ``topic``'s partitions from the start: to offset ``upto[p]`` included,
    or to the end when None."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    consumer = AIOKafkaConsumer(**client_kwargs(settings), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    out: list[Any] = []
    try:
        await consumer.start()
        tps = {TopicPartition(topic, p): last for p, last in upto.items()}
        consumer.assign(list(tps))
        ends = await consumer.end_offsets(list(tps))
        starts = await consumer.beginning_offsets(list(tps))
        stop = {}
        for tp, last in tps.items():
            stop[tp] = ends[tp] if last is None else last + 1
            if last is not None and (ends[tp] <= last or starts[tp] > 0):
                raise RecomputeError(
                    f"{tp.topic}[{tp.partition}] holds offsets {starts[tp]} to "
                    f"{ends[tp] - 1}, not 0 to {last}: the topic's retention dropped records "
                    "the bulletin counted, so it cannot be recomputed from Kafka."
                )
        await consumer.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if stop[tp] > await consumer.position(tp)}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10000)
            for tp, records in batch.items():
                out.extend(r for r in records if r.offset < stop[tp])
            for tp in list(remaining):
                if await consumer.position(tp) >= stop[tp]:
                    remaining.discard(tp)
    except KafkaError as exc:
        raise BrokerError(f"Topic {topic} cannot be read: {exc}.") from None
    finally:
        await consumer.stop()
    return out


async def _future_rejections(settings: Settings) -> set[tuple[str, int, int]]:
    """Source coordinates the workers dead-lettered as too far in the future."""
    from aiokafka.errors import KafkaError

    from .kafka import admin_client

    async with admin_client(settings) as admin:
        try:
            described = await admin.describe_topics([settings.topic_deadletter])
        except KafkaError:
            return set()
    parts = [p["partition"] for d in described for p in d.get("partitions", ())]
    out: set[tuple[str, int, int]] = set()
    for rec in await _read(settings, settings.topic_deadletter, {p: None for p in parts}):
        h = {k: v.decode() for k, v in rec.headers}
        if h.get(H_REASON) == "time_out_of_range" and H_SOURCE_OFFSET in h:
            try:
                out.add((h[H_SOURCE_TOPIC], int(h[H_SOURCE_PARTITION]),
                         int(h[H_SOURCE_OFFSET])))
            except (KeyError, ValueError):
                continue
    return out


@dataclass
class Recomputed:
    stored: bytes
    again: bytes
    differences: list[str] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return self.stored == self.again


async def recompute(settings: Settings, key: str) -> Recomputed:
    """Replay each district's source partitions up to the offsets its section recorded
    through a fresh engine, compute the sections and assemble the bulletin again.

    The validator's clock is the section's ``computed_at``: a record the worker accepted
    was at most the allowed 600 s ahead of its clock then, so it is accepted again; the
    records it rejected as too far ahead are read from the dead-letter topic and left
    out, so the replay sees what the worker counted, whenever it runs.
    """
    stored_all = await read_bulletins(settings)
    stored = stored_all.get(key)
    if stored is None:
        raise RecomputeError(f"No bulletin {key!r} is in {settings.topic_bulletins}.")
    b = orjson.loads(stored)
    tz = ZoneInfo(b["timezone"])
    kind, period = bl.bulletin_period(key, tz)
    cut = datetime.fromisoformat(b["cut_off"])
    reference = load_reference(settings.reference_file)
    skip = await _future_rejections(settings)
    stream_of = settings.stream_by_topic
    # Districts by the moment their sections were computed (one worker, one moment).
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in b["districts"]:
        groups.setdefault(s["computed_at"], []).append(s)
    sections: list[dict[str, Any]] = []
    differences: list[str] = []
    for computed_at, group in sorted(groups.items()):
        when = datetime.fromisoformat(computed_at)
        clock = FixedClock(when)
        engine = Engine(reference=reference, validator=settings.validator(reference, clock),
                        topics=stream_of, partitions=settings.partitions,
                        limits=settings.limits, clock=clock, tz=tz)
        upto: dict[tuple[str, int], int] = {}
        for s in group:
            for tp_key, offset in s["evidence"].items():
                topic, _, part = tp_key.rpartition(":")
                k = (topic, int(part))
                upto[k] = max(upto.get(k, -1), offset)
        for (topic, part), last in sorted(upto.items()):
            if topic not in stream_of:
                raise RecomputeError(f"Topic {topic} of the bulletin is not a source topic "
                                     "of these settings (WATCHFLOOR_TOPIC_*).")
            records = [r for r in await _read(settings, topic, {part: last})
                       if (topic, part, r.offset) not in skip]
            engine.process([(topic, part, records)])
        for s in group:
            st = engine.states.get(s["district"]) or engine.new_state(s["district"])
            if dict(sorted(st.evidence.items())) != s["evidence"]:
                differences.append(f"{s['district']}: replayed evidence {st.evidence} is not "
                                   f"the recorded {s['evidence']}")
            again = bl.section(st, period, cut, when)
            if again != s:
                differences.append(f"{s['district']}: the section differs")
            sections.append(again)
    prev = b["previous"]
    rebuilt = bl.assemble(kind=kind, period=period, cut_off=cut, tz=tz, sections=sections,
                          weights=b["formula"]["weights"], named=b["formula"]["named"],
                          previous=prev)
    return Recomputed(stored, bl.to_bytes(rebuilt), differences)


# -- the command line --------------------------------------------------------------------


def _list(args: argparse.Namespace, settings: Settings) -> int:
    for key, raw in sorted(asyncio.run(read_bulletins(settings)).items()):
        b = orjson.loads(raw)
        top = ", ".join(r["district"] for r in b["ranking"][:3])
        print(f"{key:<12} {b['kind']:<8} cut {b['cut_off']}  top: {top}")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    raw = asyncio.run(read_bulletins(settings)).get(args.key)
    if raw is None:
        print(f"No bulletin {args.key!r} is in {settings.topic_bulletins}.", file=sys.stderr)
        return 1
    b = orjson.loads(raw)
    reference = load_reference(settings.reference_file)
    names = Names(reference, args.lang or settings.lang)
    city = reference.name("city", reference.city_code, names.lang)
    if args.format == "json":
        out = raw
    elif args.format == "html":
        out = bulletin_html(b, names, city)
    elif args.format == "csv":
        out = bulletin_csv(b, args.table, names)
    else:
        out = bulletin_markdown(b, names, city)
    sys.stdout.buffer.write(out + b"\n")
    return 0


def _cut(args: argparse.Namespace, settings: Settings) -> int:
    url = (args.url or settings.web_url).rstrip("/") + f"/api/v1/bulletins/{args.key}"
    req = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=180) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    except OSError as exc:
        print(f"No worker answers at {url}: {exc}", file=sys.stderr)
        return 2
    doc = orjson.loads(body)
    if status >= 300:
        print(f"{status}: {doc.get('error', doc)}", file=sys.stderr)
        return 1
    print(("Published" if status == 201 else "Already published") + f" bulletin {doc['key']}: "
          + ", ".join(f"{r['rank']}. {r['district']} {r['score']}" for r in doc["ranking"]))
    return 0


def _recompute(args: argparse.Namespace, settings: Settings) -> int:
    result = asyncio.run(recompute(settings, args.key))
    digest = hashlib.sha256(result.stored).hexdigest()[:16]
    if result.same and not result.differences:
        print(f"Bulletin {args.key}: recomputed from its recorded offsets, the same "
              f"{len(result.stored)} bytes (sha256 {digest}…).")
        return 0
    print(f"Bulletin {args.key}: the recomputation DIFFERS from the stored bulletin.",
          file=sys.stderr)
    for line in result.differences:
        print(f"  {line}", file=sys.stderr)
    return 1


def register_cli(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bulletin", help="bulletins: list, show, cut, recompute")
    inner = p.add_subparsers(dest="action", metavar="ACTION")
    inner.required = True
    inner.add_parser("list", help="the bulletins published").set_defaults(func=_list)
    show = inner.add_parser("show", help="one bulletin as Markdown, HTML, CSV or JSON")
    show.add_argument("key", help="2026-04-12, 2026-W15 or 2026-04")
    show.add_argument("--format", choices=["md", "html", "csv", "json"], default="md")
    show.add_argument("--table", choices=["ranking", "districts", "overdue_major"],
                      default="ranking", help="the table, for --format csv")
    show.add_argument("--lang", choices=["zh", "en"], default=None)
    show.set_defaults(func=_show)
    cut = inner.add_parser("cut", help="ask the workers to publish a period's bulletin now")
    cut.add_argument("key")
    cut.add_argument("--url", default=None, help="a worker's URL (default: WATCHFLOOR_WEB_*)")
    cut.set_defaults(func=_cut)
    rec = inner.add_parser("recompute", help="replay a bulletin's recorded offsets and compare "
                           "the bytes")
    rec.add_argument("key")
    rec.set_defaults(func=_recompute)

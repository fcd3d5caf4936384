"""Durable district state: per-batch journals and periodic snapshots in one key-value table.

The table is a Faust table whose changelog topic is the durable copy. Per district:

- ``<d>␟m``: the manifest ``{"g": generation, "n": chunks, "q": last journal seq in the
  snapshot, "z": 1}`` (``z``: the chunks together are one zlib stream; manifests without
  it, written before, have plain JSON chunks);
- ``<d>␟b<parity>␟<i>``: snapshot chunks of generation ``g`` (``parity = g % 2``), each
  prefixed by its generation. Two parities mean a snapshot interrupted half-way never
  damages the one the manifest points at;
- ``<d>␟j␟<seq % JOURNAL_SLOTS>``: journals, ``{"q": seq, "e": evidence, "a": rows,
  "l": late, "u": duplicates}``; from 1 KB of JSON on, ``z<seq>\n`` and the zlib stream
  of that JSON. Slots are reused, so the number of keys stays bounded.

Each journal carries the district's offset evidence, so a crash between two journals
never double-counts: on replay the engine skips offsets the evidence covers. A
district's keys all hash to its partition (``streams.kafka.district_partitioner``),
so its changelog records stay in order.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, cast
from zoneinfo import ZoneInfo

import orjson
from isal import isal_zlib

from .engine import Journal, dump
from .events import Event
from .partitioning import KEY_SEPARATOR as SEP
from .partitioning import district_of_key
from .state import DistrictState, Limits

log = logging.getLogger(__name__)

JOURNAL_SLOTS = 64
# Snapshot when this many journals wait since the last one (slots must never wrap onto
# a journal the snapshot does not cover yet), or when replaying them would cost more
# than re-reading a snapshot.
SNAPSHOT_AFTER_JOURNALS = JOURNAL_SLOTS - 4
# ...or once the journals hold half as many rows as the district has subjects: replaying
# a row (about 9 us) costs several times more than loading a subject from a snapshot
# (about 1.5 us), so a restart then costs at most about twice a snapshot load. Writing
# a snapshot costs about 1 us a subject, so this adds about 2 us per event.
SNAPSHOT_AFTER_ROWS = 256
# A batch takes at most this many snapshots that are due only by their rows; the rest
# wait for a later batch, up to twice their row threshold. Districts under the same
# load fall due together (a snapshot costs 1-3 ms at 1,000 districts): 100 of them in
# one batch held it up a quarter of a second, and every event behind it.
SNAPSHOTS_PER_BATCH = 32
CHUNK_BYTES = 256 * 1024
# Snapshots are zlib streams, written and read by ISA-L (``isal``: the same format,
# Intel's assembly for it: 3x faster to write, 2.5x to read than zlib at level 1, and
# as small). A restart reads the whole changelog, and before compaction it holds every
# snapshot of the last segment: its bytes, not the decoding, were most of the restart
# (420 MB at 1,000 districts after a 1,000,000-event catch-up).
SNAPSHOT_ZLIB_LEVEL = 1  # ISA-L's levels are 0-3; 1 compresses as zlib's 1, 0 a fifth less
# Journals too, from a size on: they were three quarters of the changelog a restart reads
# (139 of 193 MB after a 1,000,000-event catch-up at 1,000 districts) and of the
# in-memory table, at about 140 bytes of JSON per event. A journal of 10 KB of JSON takes
# ISA-L about 22 us (zlib with a 4 KB window: 73). Smaller journals (a few events: a
# steady load's batches spread over 1,000 districts) are kept as they are; compressing
# them would cost more than 1 us per event to save a few hundred bytes.
JOURNAL_ZLIB_LEVEL = 1
# What a damaged stream raises (isal's stub declares an instance; it is a class).
_INFLATE_ERROR = cast("type[Exception]", isal_zlib.error)
JOURNAL_COMPRESS_FROM = 1024  # bytes of JSON


@dataclass
class _Progress:
    gen: int = 0
    seq: int = 0  # last journal seq written
    base_seq: int = 0  # last journal seq the snapshot covers
    rows: int = 0  # journal rows since the snapshot
    chunks: tuple[int, int] = (0, 0)  # chunk count written per parity


def _journal_limit(district: str) -> int:
    """Journals after which a district must snapshot: ``SNAPSHOT_AFTER_JOURNALS`` less up
    to a third, stable per district. Under a steady load every district writes a
    journal each batch; with one limit for all they fell due in the same batch."""
    return SNAPSHOT_AFTER_JOURNALS - zlib.crc32(district.encode()) % (SNAPSHOT_AFTER_JOURNALS // 3)


def _stagger(district: str, rows: int) -> int:
    """The row threshold, stretched by up to half per district (stable across restarts):
    districts under the same load would otherwise all snapshot in the same batch."""
    return rows + rows * (zlib.crc32(district.encode()) % 64) // 128


def journal_record(
    seq: int, evidence: dict[str, int], rows: list[bytes], late: int, dup: int
) -> bytes:
    """A journal as stored: plain JSON if small, else ``z<seq>\\n`` and zlib.

    ``rows``: each row's JSON (``Journal.rows``). The seq stays in the clear, so a
    rebuild skips the journals a snapshot covers without decompressing them.
    """
    data = b'{"q":%d,"e":%b,"a":[%b],"l":%d,"u":%d}' % (
        seq, orjson.dumps(evidence), b",".join(rows), late, dup
    )
    if len(data) < JOURNAL_COMPRESS_FROM:
        return data
    return b"z%d\n" % seq + isal_zlib.compress(data, JOURNAL_ZLIB_LEVEL)


def _journal(raw: bytes) -> dict[str, Any]:
    if raw[:1] == b"z":
        body: dict[str, Any] = orjson.loads(isal_zlib.decompress(raw[raw.index(b"\n") + 1 :]))
        return body
    plain: dict[str, Any] = orjson.loads(raw)  # written before journals were compressed
    return plain


_SEQ_PREFIX = b'{"q":'


def _journal_seq(raw: bytes) -> int:
    """The seq of a journal, read from its head without decoding the rest."""
    if raw[:1] == b"z":
        return int(raw[1 : raw.index(b"\n")])
    # Uncompressed journals: ``dump`` wrote ``{"q":<seq>,`` first.
    if raw.startswith(_SEQ_PREFIX):
        end = raw.find(b",", len(_SEQ_PREFIX))
        head = raw[len(_SEQ_PREFIX) : end]
        if end > 0 and head.isdigit():
            return int(head)
    seq: int = orjson.loads(raw)["q"]
    return seq


def manifest_key(d: str) -> str:
    return f"{d}{SEP}m"


def chunk_key(d: str, parity: int, i: int) -> str:
    return f"{d}{SEP}b{parity}{SEP}{i}"


def journal_key(d: str, seq: int) -> str:
    return f"{d}{SEP}j{SEP}{seq % JOURNAL_SLOTS}"


def _delete(table: MutableMapping[str, bytes], key: str) -> None:
    """Delete ``key`` from the table, in its changelog too, whether or not the table's
    local copy still holds it (a Faust table sends the tombstone first, then deletes
    locally; ``pop`` would look the key up first and send nothing when it is missing)."""
    with contextlib.suppress(KeyError):
        del table[key]


class Utf8Keys(MutableMapping[str, bytes]):
    """A bytes-keyed table seen through str keys.

    Faust serialises ``bytes`` keys raw but ``str`` keys as JSON; raw keys keep the
    district prefix that the partitioner hashes identical to the source records' keys.
    """

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table

    def __getitem__(self, key: str) -> bytes:
        return self.table[key.encode()]

    def __setitem__(self, key: str, value: bytes) -> None:
        self.table[key.encode()] = value

    def __delitem__(self, key: str) -> None:
        del self.table[key.encode()]

    def get(self, key: str, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        # Faust tables answer ``get`` of a missing key with their default (None here).
        value = self.table.get(key.encode())
        return default if value is None else value

    def __iter__(self) -> Iterator[str]:
        for key in self.table:
            yield key.decode() if isinstance(key, bytes) else key

    def __len__(self) -> int:
        return len(self.table)


class StateStore:
    """Writes journals and snapshots for the engine's states; rebuilds states from them."""

    def __init__(
        self,
        table: MutableMapping[str, bytes],
        tz: ZoneInfo,
        limits: Limits,
        local: MutableMapping[bytes, bytes] | None = None,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self.table = table
        # The table's local copy, where it has one (the in-memory store's dict, which
        # holds records from a rebalance until the states are rebuilt: streams/restore.py).
        # While it does, journals a snapshot covers are dropped from it without a
        # changelog record: the changelog keeps them until their slot is written again,
        # and a rebuild skips them by their seq. So are the chunks of the snapshot before
        # the latest: the changelog keeps both (the older is what a crash between a new
        # snapshot's chunks and its manifest reads), the local copy needs only the one
        # its manifest names.
        self.local = local
        self.chunk_bytes = chunk_bytes
        self.tz = tz
        self.limits = limits
        self._progress: dict[str, _Progress] = {}
        self.records_written = 0
        # Journals counted but not written yet (``stage``), merged per district, oldest
        # hold first (a dict keeps the order districts started holding).
        self._staged: dict[str, Journal] = {}
        # Per held district, the mark of the batch its hold started with (``stage``).
        self._marks: dict[str, int] = {}
        self.staged_rows_max = 0  # the most rows one district holds in ``_staged``

    def stage(self, journals: dict[str, Journal], mark: int = 0) -> None:
        """Hold one batch's journals until ``flush``, merged with the ones held per district.

        A journal per district per batch was most of what a steady load costs beyond the
        counting (1,000 changelog records a batch at 1,000 districts, whatever its size):
        held for a second, as Kafka Streams' record cache holds its writes until a commit,
        one journal per district carries several batches. The caller acks the batches'
        offsets only once their journals are flushed, so a crash before that re-reads
        them and nothing is counted from memory alone. ``mark``: the batch's number,
        increasing; ``held_since`` gives the oldest hold's, so the caller knows which
        batches every written journal covers.
        """
        staged = self._staged
        marks = self._marks
        most = self.staged_rows_max
        for d, journal in journals.items():
            held = staged.get(d)
            if held is None:
                held = staged[d] = Journal(list(journal.rows), journal.late, journal.dup)
                marks[d] = mark
            else:
                held.rows.extend(journal.rows)
                held.late += journal.late
                held.dup += journal.dup
            most = max(most, len(held.rows))
        self.staged_rows_max = most

    @property
    def staged(self) -> int:
        """How many districts have journals held for the next ``flush``."""
        return len(self._staged)

    def held_since(self) -> int | None:
        """The mark of the batch the oldest hold started with; None when nothing is held.
        Every batch marked lower has all its journals written."""
        return next(iter(self._marks.values()), None)

    def held_through(self, mark: int) -> int:
        """How many districts hold journals from the batch ``mark`` or an earlier one."""
        n = 0
        for m in self._marks.values():
            if m > mark:
                break
            n += 1
        return n

    def flush(self, states: dict[str, DistrictState], oldest: int | None = None) -> None:
        """Write the held journals (and the snapshots they make due), then forget them.

        ``oldest``: only that many, the longest held first. Under a steady load every
        district holds a journal, and writing them all at once made one batch a second
        as long again (the journals and the snapshots they make due): written a share
        per batch, the same work is spread over the batches.
        """
        staged = self._staged
        if oldest is None or oldest >= len(staged):
            self._staged = {}
            self._marks = {}
            self.staged_rows_max = 0
            if staged:
                self.write(states, staged)
            return
        if oldest <= 0:
            return
        marks = self._marks
        # Row-due snapshots are taken at the pace a whole flush takes them: a share of
        # the cap, not the whole cap at every share (that nearly doubled them).
        cap = -(-SNAPSHOTS_PER_BATCH * oldest // len(staged))
        now: dict[str, Journal] = {}
        for d in list(itertools.islice(staged, oldest)):
            now[d] = staged.pop(d)
            del marks[d]
        self.staged_rows_max = max((len(j.rows) for j in staged.values()), default=0)
        self.write(states, now, cap)

    def discard(self) -> None:
        """Forget the held journals: their batches were not acked and will be read again."""
        self._staged = {}
        self._marks = {}
        self.staged_rows_max = 0

    def write(
        self,
        states: dict[str, DistrictState],
        journals: dict[str, Journal],
        snapshot_cap: int | None = None,
    ) -> None:
        """Persist one batch: a journal per touched district, a snapshot where one is due
        (at most ``snapshot_cap`` of those due by rows, unless twice due; default
        ``SNAPSHOTS_PER_BATCH``)."""
        cap = SNAPSHOTS_PER_BATCH if snapshot_cap is None else snapshot_cap
        table = self.table
        snapshots = 0
        for d, journal in journals.items():
            st = states[d]
            prog = self._progress.get(d)
            if prog is None:
                prog = self._progress[d] = _Progress()
            prog.seq += 1
            table[journal_key(d, prog.seq)] = journal_record(
                prog.seq, st.evidence, journal.rows, journal.late, journal.dup
            )
            self.records_written += 1
            prog.rows += len(journal.rows)
            if prog.seq - prog.base_seq >= _journal_limit(d):
                self.snapshot(st)  # its journal slots would wrap: never deferred
                snapshots += 1
                continue
            due = _stagger(d, max(SNAPSHOT_AFTER_ROWS, st.subject_count() // 2))
            if prog.rows >= due and (snapshots < cap or prog.rows >= 2 * due):
                self.snapshot(st)
                snapshots += 1

    def snapshot(self, st: DistrictState) -> None:
        d = st.district
        prog = self._progress.setdefault(d, _Progress())
        gen = prog.gen + 1
        parity = gen % 2
        # Each chunk is a new exact-size object (prefix + slice), see dump().
        blob = isal_zlib.compress(orjson.dumps(st.to_snapshot()), SNAPSHOT_ZLIB_LEVEL)
        size = self.chunk_bytes
        parts = [blob[i : i + size] for i in range(0, len(blob), size)] or [b""]
        prefix = b"%d\n" % gen
        for i, part in enumerate(parts):
            self.table[chunk_key(d, parity, i)] = prefix + part
        # Chunks left over from a bigger snapshot of the same parity.
        for i in range(len(parts), prog.chunks[parity]):
            _delete(self.table, chunk_key(d, parity, i))
        self.table[manifest_key(d)] = dump({"g": gen, "n": len(parts), "q": prog.seq, "z": 1})
        self.records_written += len(parts) + 1
        chunks = list(prog.chunks)
        chunks[parity] = len(parts)
        prog.chunks = (chunks[0], chunks[1])
        prog.gen = gen
        covered = range(prog.base_seq + 1, prog.seq + 1)
        prog.base_seq = prog.seq
        prog.rows = 0
        # Empty once the store has released what it read (streams/restore.py): nothing
        # to drop then.
        if self.local:
            for seq in covered:
                self.local.pop(journal_key(d, seq).encode(), None)
            self._forget_local_chunks(d, 1 - parity, prog.chunks[1 - parity])

    def _forget_local_chunks(self, d: str, parity: int, n: int) -> None:
        """Drop the snapshot before the latest from the local copy only (see __init__)."""
        if self.local:
            for i in range(n):
                self.local.pop(chunk_key(d, parity, i).encode(), None)

    def checkpoint(self, states: dict[str, DistrictState]) -> int:
        """Snapshot every district with journals since its last snapshot; return how many.

        Done on a clean stop, so the next start loads snapshots and replays no journal.
        Held journals need no writing: the snapshot holds what they counted.
        """
        staged = self._staged
        due = [
            st
            for d, st in states.items()
            if d in staged
            or ((prog := self._progress.get(d)) is not None and prog.seq > prog.base_seq)
        ]
        for st in due:
            self.snapshot(st)
        self.discard()
        return len(due)

    def load(self, keys: Iterable[str]) -> dict[str, DistrictState]:
        """Rebuild the states of the districts whose table keys are given."""
        by_district: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            by_district[district_of_key(key)].append(key)
        states: dict[str, DistrictState] = {}
        for d, dkeys in by_district.items():
            try:
                states[d] = self._load_one(d, dkeys)
            except (ValueError, KeyError, TypeError, _INFLATE_ERROR) as exc:
                # A damaged record must not take the other districts down with it.
                log.error("State of district %s could not be rebuilt: %s", d, exc)
        return states

    def forget(self, districts: Iterable[str]) -> None:
        for d in districts:
            self._progress.pop(d, None)
            self._staged.pop(d, None)

    def _load_one(self, d: str, keys: list[str]) -> DistrictState:
        table = self.table
        prog = _Progress()
        raw_manifest = table.get(manifest_key(d))
        chunk_counts = [0, 0]
        for key in keys:
            parts = key.split(SEP)
            if len(parts) == 3 and parts[1] in ("b0", "b1"):
                p = int(parts[1][1])
                chunk_counts[p] = max(chunk_counts[p], int(parts[2]) + 1)
        if raw_manifest is not None:
            manifest = orjson.loads(raw_manifest)
            prog.gen, prog.base_seq = manifest["g"], manifest["q"]
            parity = prog.gen % 2
            blob = bytearray()
            for i in range(manifest["n"]):
                raw = table[chunk_key(d, parity, i)]
                head, _, body = raw.partition(b"\n")
                if int(head) != prog.gen:
                    raise ValueError(
                        f"snapshot chunk {i} is from generation {int(head)}, not {prog.gen}"
                    )
                blob += body
            # Snapshots written before compression have no "z" and are read as they are.
            raw_snapshot = isal_zlib.decompress(blob) if manifest.get("z") else blob
            st = DistrictState.from_snapshot(orjson.loads(raw_snapshot), self.tz, self.limits)
            self._forget_local_chunks(d, 1 - parity, chunk_counts[1 - parity])
        else:
            st = DistrictState(d, self.tz, self.limits)
        journals: list[dict[str, Any]] = []
        local = self.local
        for slot in range(JOURNAL_SLOTS):
            key = journal_key(d, slot)
            raw_journal = table.get(key)
            if raw_journal is None:
                continue
            # Most journals are older than the snapshot: their seq is read without
            # decoding the rows (after a clean stop, every journal is).
            if _journal_seq(raw_journal) <= prog.base_seq:
                if local is not None:
                    local.pop(key.encode(), None)
                continue
            j = _journal(raw_journal)
            if j["q"] > prog.base_seq:
                journals.append(j)
        journals.sort(key=lambda j: j["q"])
        prog.seq = prog.base_seq
        for j in journals:
            if j["q"] != prog.seq + 1:
                # Journals are written in order on one partition, so a gap means records
                # were lost outside Watchfloor (e.g. a changelog topic with delete
                # retention). Keep what is contiguous and say so loudly.
                log.error(
                    "District %s: journal %d is missing; state rebuilt up to journal %d.",
                    d,
                    prog.seq + 1,
                    prog.seq,
                )
                break
            for row in j["a"]:
                ev, outcome, forwarded = Event.from_journal(d, row)
                if st.apply(ev, forwarded) != outcome:
                    raise ValueError(f"journal {j['q']} does not replay cleanly")
            st.late_total += j["l"]
            st.duplicate_total += j["u"]
            st.evidence = dict(j["e"])
            prog.seq = j["q"]
            prog.rows += len(j["a"])
        prog.chunks = (chunk_counts[0], chunk_counts[1])
        self._progress[d] = prog
        return st

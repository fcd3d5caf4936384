"""Fetched records read in C: the same records and positions as aiokafka's own reading,
and aiokafka's reading for everything the C part does not read."""

from __future__ import annotations

import asyncio
import gc
import os
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.consumer import fetcher
from aiokafka.consumer.subscription_state import Assignment
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import kafka, native

PURE = os.environ.get("WATCHFLOOR_TEST_PURE") == "1"
reader = native.extension("_records")
crc = native.extension("_crc32c")
built = pytest.mark.skipif(reader is None, reason="streams/_records.c is not built")

READ_UNCOMMITTED, READ_COMMITTED = 0, 1
TP = TopicPartition("incidents", 7)

Header = tuple[str, bytes | None]
RecordSpec = tuple[bytes | None, bytes | None, list[Header], int]  # key, value, headers, ts


def batch(
    base: int,
    records: list[RecordSpec],
    *,
    log_append: bool = False,
    compression: int = 0,
    offset_gap: int = 1,
) -> bytes:
    """A version-2 batch written by aiokafka's own builder."""
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=compression, is_transactional=0, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 30,
    )
    for i, (key, value, headers, ts) in enumerate(records):
        builder.append(i * offset_gap, timestamp=ts, key=key, value=value, headers=headers)
    buf = bytearray(builder.build())
    buf[0:8] = base.to_bytes(8, "big")  # the base offset, outside the CRC
    if log_append:  # the broker's clock: attribute bit 3, under the CRC, summed again
        buf[22] |= 0x08
        buf[17:21] = calc_crc32c(bytes(buf[21:])).to_bytes(4, "big")
    return bytes(buf)


def fields(rec: Any) -> tuple[Any, ...]:
    return (
        rec.topic, rec.partition, rec.offset, rec.timestamp, rec.timestamp_type, rec.key,
        rec.value, rec.checksum, rec.serialized_key_size, rec.serialized_value_size,
        tuple(rec.headers),
    )


def aiokafka_reads(buf: bytes, fetch_offset: int) -> tuple[list[tuple[Any, ...]], int]:
    """aiokafka's own records of a buffer, and the offset it fetches next (unpatched)."""
    part = _original_partition_records(
        TP, MemoryRecords(buf), None, fetch_offset, None, None, False, READ_UNCOMMITTED
    )
    out = [fields(r) for r in part._records_iterator]  # aiokafka's own generator
    return out, part.next_fetch_offset


# aiokafka's own, taken before any test installs the C path (checked below).
_ORIGINAL_INIT = fetcher.PartitionRecords.__init__
_ORIGINAL_NEXT = fetcher.PartitionRecords.__next__
_ORIGINAL_GETALL = fetcher.FetchResult.getall


def test_the_truth_here_is_aiokafkas_own_code() -> None:
    originals = (_ORIGINAL_INIT, _ORIGINAL_NEXT, _ORIGINAL_GETALL)
    assert {f.__module__ for f in originals} == {"aiokafka.consumer.fetcher"}


class _AiokafkaOwn(fetcher.PartitionRecords):  # type: ignore[misc]
    __next__ = _ORIGINAL_NEXT


def _original_partition_records(*args: Any) -> Any:
    """aiokafka's PartitionRecords, read by its own code only."""
    part = object.__new__(_AiokafkaOwn)
    _ORIGINAL_INIT(part, *args)
    return part


headers_st = st.lists(
    st.tuples(st.text(max_size=6), st.one_of(st.none(), st.binary(max_size=8))), max_size=3
)
record_st = st.tuples(
    st.one_of(st.none(), st.binary(max_size=12)),
    # Long values too: a length of two varint bytes and more (hypothesis favours short).
    st.one_of(st.none(), st.binary(max_size=40), st.binary(min_size=120, max_size=3000)),
    headers_st,
    st.integers(min_value=0, max_value=2**41),
)
batches_st = st.lists(
    st.tuples(st.lists(record_st, min_size=0, max_size=6), st.booleans(), st.integers(1, 3)),
    min_size=1,
    max_size=4,
)


def buffer_of(spec: list[tuple[list[RecordSpec], bool, int]], base: int) -> bytes:
    out = b""
    for records, log_append, gap in spec:
        out += batch(base, records, log_append=log_append, offset_gap=gap)
        base += max(1, (len(records) - 1) * gap + 1) + 1  # a gap, as compaction leaves
    return out


@built
@settings(max_examples=300, deadline=None)
@given(batches_st, st.integers(0, 2**40), st.integers(0, 30))
def test_records_read_in_c_are_aiokafkas(
    spec: list[tuple[list[RecordSpec], bool, int]], base: int, into: int
) -> None:
    assert reader is not None
    buf = buffer_of(spec, base)
    fetch_offset = base + into  # fetched from the middle of a batch, or past it
    got = reader.unpack(buf, fetch_offset, TP.topic, TP.partition)
    assert got is not None, "plain version-2 batches are read in C"
    records, next_offset = got
    assert ([fields(r) for r in records], next_offset) == aiokafka_reads(buf, fetch_offset)


@built
@settings(max_examples=300, deadline=None)
@given(batches_st, st.data())
def test_what_c_reads_of_a_cut_or_damaged_buffer_aiokafka_reads_the_same(
    spec: list[tuple[list[RecordSpec], bool, int]], data: st.DataObject
) -> None:
    assert reader is not None
    whole = buffer_of(spec, 1000)
    at = data.draw(st.integers(0, len(whole) - 1))
    if data.draw(st.booleans()):
        buf = whole[:at]  # cut short: a partial batch is not read by either
    else:
        damaged = bytearray(whole)
        damaged[at] ^= data.draw(st.integers(1, 255))
        buf = bytes(damaged)
    got = reader.unpack(buf, 1000, TP.topic, TP.partition)
    if got is None:
        return  # left to aiokafka, whatever aiokafka makes of it
    try:
        truth = aiokafka_reads(buf, 1000)
    except Exception as exc:  # aiokafka refuses it (corrupt, a codec it lacks...)
        raise AssertionError(f"C read a buffer aiokafka refuses: {exc!r}") from exc
    assert ([fields(r) for r in got[0]], got[1]) == truth


@built
def test_compressed_and_control_batches_and_legacy_sets_are_left_to_aiokafka() -> None:
    assert reader is not None
    plain = batch(0, [(b"k", b"v", [], 1)])
    gzipped = batch(1, [(b"k", b"v" * 50, [], 1)], compression=1)
    assert reader.unpack(plain + gzipped, 0, "t", 0) is None
    control = bytearray(plain)
    control[22] |= 0x20
    assert reader.unpack(bytes(control), 0, "t", 0) is None
    legacy = bytearray(plain)
    legacy[16] = 1
    assert reader.unpack(bytes(legacy), 0, "t", 0) is None
    assert reader.unpack(b"", 5, "t", 0) == ([], 5)


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[kafka.FetchPath]:
    monkeypatch.setattr(fetcher, "MemoryRecords", fetcher.MemoryRecords)
    monkeypatch.setattr(fetcher.PartitionRecords, "__init__", fetcher.PartitionRecords.__init__)
    monkeypatch.setattr(fetcher.PartitionRecords, "__next__", fetcher.PartitionRecords.__next__)
    monkeypatch.setattr(fetcher.FetchResult, "getall", fetcher.FetchResult.getall)
    yield kafka.install_fetch_path()


def fetch_results(buf: bytes, fetch_offset: int, isolation: int = READ_UNCOMMITTED) -> Any:
    """What aiokafka's fetcher builds for a fetched partition, on a real assignment."""
    assignment = Assignment([TP])
    assignment.state_value(TP).seek(fetch_offset)
    part = fetcher.PartitionRecords(
        TP, fetcher.MemoryRecords(buf), None, fetch_offset, None, None, True, isolation
    )
    result = fetcher.FetchResult(TP, assignment=assignment, partition_records=part, backoff=0)
    return result, assignment.state_value(TP), part


def drain(result: Any, state: Any, sizes: list[int | None]) -> list[tuple[list[int], int]]:
    """Each getall's offsets and the partition's position after it."""
    out = []
    for n in sizes:
        if not result.has_more():
            break  # the fetcher drops a result with nothing more
        got = result.getall(n)
        out.append(([r.offset for r in got], state.position))
    return out


SPEC: list[tuple[list[RecordSpec], bool, int]] = [
    ([(b"a", b"1", [], 10), (b"b", b"2", [("h", None)], 11), (None, b"3", [], 12)], False, 1),
    ([(b"c", None, [], 13)], False, 2),
    ([], False, 1),
    ([(b"d", b"4", [], 14), (b"e", b"5", [], 15)], True, 3),
]


@pytest.mark.parametrize("sizes", [[None], [2, 2, 2, None], [1] * 8, [3, None, None], [100]])
def test_the_fetcher_hands_out_records_and_moves_the_position_as_aiokafka_does(
    installed: kafka.FetchPath, sizes: list[int | None]
) -> None:
    if PURE or reader is None or crc is None or not crc.hardware():
        assert not installed.records
        pytest.skip("no C reading here: aiokafka reads every record itself")
    assert installed.records and kafka.install_fetch_path() == installed, "installs once"
    buf = buffer_of(SPEC, 40)

    async def run() -> None:
        result, state, part = fetch_results(buf, 41)
        assert part._watchfloor_unread is not None, "left to C"
        ours = drain(result, state, sizes)
        assert part._watchfloor_records is not None, "read in C"
        # aiokafka's own reading of the same fetch, with its own getall.
        assignment = Assignment([TP])
        assignment.state_value(TP).seek(41)
        theirs_part = _original_partition_records(
            TP, MemoryRecords(buf), None, 41, None, None, True, READ_UNCOMMITTED
        )
        theirs = fetcher.FetchResult(
            TP, assignment=assignment, partition_records=theirs_part, backoff=0
        )
        expected = []
        for n in sizes:
            if not theirs.has_more():
                break
            got = _ORIGINAL_GETALL(theirs, n)
            expected.append(([r.offset for r in got], assignment.state_value(TP).position))
        assert ours == expected

    asyncio.run(run())


def test_getone_reads_the_c_records_one_by_one(installed: kafka.FetchPath) -> None:
    if not installed.records:
        pytest.skip("no C reading here")
    buf = buffer_of(SPEC, 0)

    async def run() -> None:
        result, state, _ = fetch_results(buf, 0)
        offsets = []
        while (rec := result.getone()) is not None:
            offsets.append(rec.offset)
            assert state.position == rec.offset + 1
        want, end = aiokafka_reads(buf, 0)
        assert offsets == [f[2] for f in want]
        assert state.position == end

    asyncio.run(run())


def test_anything_c_does_not_read_is_read_and_checked_by_aiokafka(
    installed: kafka.FetchPath,
) -> None:
    if not installed.records:
        pytest.skip("no C reading here")
    good = buffer_of(SPEC, 0)

    async def run() -> None:
        # read_committed: aiokafka tracks aborted transactions itself.
        result, _, part = fetch_results(good, 0, READ_COMMITTED)
        assert part._watchfloor_unread is None
        assert [r.offset for r in result.getall()] == [f[2] for f in aiokafka_reads(good, 0)[0]]
        assert part._watchfloor_records is None
        # A damaged buffer is not vouched for: aiokafka checks its CRC and raises.
        bad = bytearray(good)
        bad[-1] ^= 0x40
        result, _, part = fetch_results(bytes(bad), 0)
        assert part._watchfloor_unread is None
        with pytest.raises(CorruptRecordException):
            result.getall()
        # A compressed batch: intact, but aiokafka reads it.
        zipped = batch(0, [(b"k", b"v" * 40, [], 5), (b"k", b"w", [], 6)], compression=1)
        result, _, part = fetch_results(zipped, 0)
        assert part._watchfloor_unread is not None, "vouched for: offered to C first"
        assert [r.value for r in result.getall()] == [b"v" * 40, b"w"]
        assert part._watchfloor_records is None, "and read by aiokafka"

    asyncio.run(run())


@pytest.mark.parametrize("how", ["getall", "getone", "dropped"])
def test_a_fetch_read_in_c_is_freed_without_the_cyclic_collector(
    installed: kafka.FetchPath, how: str
) -> None:
    # The worker leaves cycles to a full collection every few minutes (streams/memory.py):
    # a cycle through the partition's records kept a catch-up's records alive (1.7 GB).
    if not installed.records:
        pytest.skip("no C reading here")
    buf = buffer_of(SPEC, 0)

    async def run() -> None:
        result, state, part = fetch_results(buf, 0)
        assert part._watchfloor_unread is not None
        if how == "getall":
            result.getall(2)
            result.getall()
        elif how == "getone":
            while result.getone() is not None:
                pass
        gone = weakref.ref(part)
        del result, state, part
        assert gone() is None, "held by a reference cycle"

    was = gc.isenabled()
    gc.disable()
    try:
        asyncio.run(run())
    finally:
        if was:
            gc.enable()

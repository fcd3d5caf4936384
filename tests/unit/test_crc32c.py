"""CRC-32C of fetched record batches: the C check vouches only for what aiokafka's own
check passes, and the fetcher skips aiokafka's check only for a buffer it vouched for."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import kafka, native

PURE = os.environ.get("WATCHFLOOR_TEST_PURE") == "1"
crc = native.extension("_crc32c")
built = pytest.mark.skipif(crc is None, reason="streams/_crc32c.c is not built")

READ_UNCOMMITTED = 0


def batch(base: int, values: list[bytes]) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=0, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 30,
    )
    for i, value in enumerate(values):
        builder.append(i, timestamp=1_700_000_000_000 + i, key=b"d%04d" % i, value=value,
                       headers=[("h", b"x")] if i % 3 == 0 else [])
    buf = bytearray(builder.build())
    buf[0:8] = base.to_bytes(8, "big")  # base offset, outside the CRC as Kafka sets it
    return bytes(buf)


def aiokafka_accepts(buf: bytes) -> bool:
    """aiokafka's own verdict: every batch it reads has a matching CRC."""
    records = MemoryRecords(buf)
    while records.has_next():
        b = records.next_batch()
        if b is None:
            break
        if not b.validate_crc():
            return False
    return True


@built
def test_the_sum_is_crc32c_by_its_published_check_value_and_equals_aiokafkas() -> None:
    assert crc is not None
    assert crc.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
    assert crc.crc32c(b"") == 0
    data = random.Random(7).randbytes(100_003)
    assert crc.crc32c(data) == calc_crc32c(data)
    # continued from a start value as a sum over the two halves would be
    assert crc.crc32c(data[5000:], crc.crc32c(data[:5000])) == crc.crc32c(data)


@built
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_the_sum_of_any_bytes_equals_aiokafkas(data: bytes) -> None:
    assert crc is not None
    assert crc.crc32c(data) == calc_crc32c(data)


sizes = st.lists(st.lists(st.integers(0, 700), min_size=1, max_size=12), min_size=1, max_size=5)


def buffer(shape: list[list[int]], seed: int) -> bytes:
    rng = random.Random(seed)
    out, base = [], 0
    for values in shape:
        out.append(batch(base, [rng.randbytes(n) for n in values]))
        base += len(values)
    return b"".join(out)


@built
@settings(max_examples=150, deadline=None)
@given(shape=sizes, seed=st.integers(0, 2**32), cut=st.integers(0, 10_000))
def test_intact_buffers_and_buffers_cut_short_are_vouched_for(
    shape: list[list[int]], seed: int, cut: int
) -> None:
    assert crc is not None
    buf = buffer(shape, seed)
    assert aiokafka_accepts(buf)
    assert crc.batches_intact(buf)
    # A fetch ends where the broker's size limit fell: the batch cut there is not read.
    short = buf[: max(0, len(buf) - cut)]
    assert crc.batches_intact(short)


@built
@settings(max_examples=300, deadline=None)
@given(shape=sizes, seed=st.integers(0, 2**32), where=st.floats(0, 1, exclude_max=True),
       flip=st.integers(1, 255))
def test_a_vouched_buffer_is_one_aiokafka_accepts_and_a_flipped_body_byte_is_caught(
    shape: list[list[int]], seed: int, where: float, flip: int
) -> None:
    assert crc is not None
    whole = buffer(shape, seed)
    buf = bytearray(whole)
    at = int(where * len(buf))
    buf[at] ^= flip
    damaged = bytes(buf)
    try:
        accepted = aiokafka_accepts(damaged)
    except Exception:  # a length or header aiokafka cannot read: it raises, not accepts
        accepted = False
    if crc.batches_intact(damaged):
        assert accepted, f"vouched for a buffer aiokafka rejects (byte {at})"
    # A CRC covers a batch from its attributes (byte 21) to its end; the base offset,
    # length, leader epoch and magic before them are outside it (a broken length or magic
    # is not vouched for, or cuts the batch off; either way aiokafka's reading decides).
    pos = 0
    while pos < len(whole):
        size = 12 + int.from_bytes(whole[pos + 8 : pos + 12], "big")
        if pos + 21 <= at < pos + size:
            assert not crc.batches_intact(damaged), f"missed a flipped byte at {at}"
        pos += size


@built
def test_a_legacy_message_set_is_left_to_aiokafka() -> None:
    assert crc is not None
    buf = bytearray(batch(0, [b"x"]))
    buf[16] = 1  # magic 1: a v1 message set
    assert not crc.batches_intact(bytes(buf))


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    monkeypatch.setattr(fetcher, "MemoryRecords", fetcher.MemoryRecords)
    monkeypatch.setattr(fetcher.PartitionRecords, "__init__", fetcher.PartitionRecords.__init__)
    monkeypatch.setattr(fetcher.PartitionRecords, "__next__", fetcher.PartitionRecords.__next__)
    monkeypatch.setattr(fetcher.FetchResult, "getall", fetcher.FetchResult.getall)
    yield kafka.install_fetch_path().crc


def partition(buf: bytes) -> Any:
    records = fetcher.MemoryRecords(buf)
    return fetcher.PartitionRecords(
        TopicPartition("t", 0), records, None, 0, None, None, True, READ_UNCOMMITTED
    )


def test_the_fetcher_skips_aiokafkas_check_only_for_a_buffer_checked_intact(
    installed: bool,
) -> None:
    if PURE or crc is None or not crc.hardware():
        assert not installed
        pytest.skip("no C CRC here: aiokafka checks every batch itself")
    assert installed and kafka.install_fetch_path().crc, "installs once, stays installed"
    good = buffer([[10, 20, 30], [5]], 1)
    part = partition(good)
    assert part._check_crcs is False
    assert [(r.offset, r.value) for r in part] == [
        (r.offset, r.value) for r in fetcher.PartitionRecords(
            TopicPartition("t", 0), MemoryRecords(good), None, 0, None, None, True,
            READ_UNCOMMITTED,
        )
    ]
    bad = bytearray(good)
    bad[-1] ^= 0x40  # inside the last batch, under its CRC
    part = partition(bytes(bad))
    assert part._check_crcs is True
    with pytest.raises(CorruptRecordException):
        list(part)
    # Records wrapped by anyone else than the patched wrapper are checked as before.
    other = fetcher.PartitionRecords(
        TopicPartition("t", 0), MemoryRecords(good), None, 0, None, None, True, READ_UNCOMMITTED
    )
    assert other._check_crcs is True

"""Which partition a district's records and state live in: Kafka's murmur2, pure Python."""

from __future__ import annotations

import random
from collections.abc import Sequence

# Table keys are "<district>\x1f<rest>": the partitioner hashes only the district, so a
# district's state records share its events' partition number (Faust recovers a
# changelog partition together with the source partition of the same number).
KEY_SEPARATOR = "\x1f"
_SEP_BYTE = KEY_SEPARATOR.encode()

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``) as an unsigned int.

    Written out here so that the counting core can place districts without importing a
    Kafka client; ``tests/unit/test_partitioning.py`` checks it against aiokafka's.
    """
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest >= 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def district_partition(district: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a district key."""
    return (murmur2(district.encode()) & 0x7FFFFFFF) % partitions


def district_of_key(key: str) -> str:
    """The district a state-table key belongs to."""
    return key.split(KEY_SEPARATOR, 1)[0]


def district_partitioner(
    key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
) -> int:
    """Kafka's default partitioner, applied to the district part of a composite key."""
    if key is None:
        return random.choice(list(available) or list(all_partitions))
    cut = key.find(_SEP_BYTE)
    if cut >= 0:
        key = key[:cut]
    return all_partitions[(murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]

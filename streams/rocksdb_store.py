"""Local table storage: Faust's RocksDB store, with keys filed under their district's partition."""

from __future__ import annotations

from typing import Any

from faust.stores.rocksdb import Store as RocksDBStore

from .partitioning import KEY_SEPARATOR, district_partition

_SEP = KEY_SEPARATOR.encode()


class DistrictRocksDBStore(RocksDBStore):
    """One RocksDB database per partition, as in Faust, but chosen by the key.

    Faust files a write under the partition of the event being processed. The state
    table is written after a whole batch, outside any source event, and its keys start
    with their district, which decides the partition (``streams.kafka``); filing by key
    keeps each district's records in the database of the partition that owns them, so a
    restart reads them back from disk instead of the changelog.
    """

    def __init__(self, *args: Any, partitions: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._partitions = partitions

    def partition_of(self, key: bytes) -> int:
        cut = key.find(_SEP)
        district = (key if cut < 0 else key[:cut]).decode()
        return district_partition(district, self._partitions)

    def _set(self, key: bytes, value: bytes | None) -> None:
        partition = self.partition_of(key)
        self._key_index[key] = partition
        self._db_for_partition(partition).put(key, value)

"""The RocksDB table store files each key under its district's partition, not the event's."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest

from streams.partitioning import KEY_SEPARATOR, district_partition
from tests.conftest import need

try:
    import rocksdict  # noqa: F401

    HAVE_ROCKSDB = True
except ImportError:  # pragma: no cover - the rocksdb extra is part of `make install`
    HAVE_ROCKSDB = False


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    need(HAVE_ROCKSDB, "rocksdict (the rocksdb extra) is not installed")
    from streams.rocksdb_store import DistrictRocksDBStore

    app = faust.App("unit-rocks", datadir=str(tmp_path), store="rocksdb://", autodiscover=False)
    table = app.Table("state", key_type=bytes, value_type=bytes, partitions=4)
    return DistrictRocksDBStore(
        "rocksdb://", app, table, table_name="state", key_type=bytes, value_type=bytes,
        key_serializer="raw", value_serializer="raw", partitions=4,
    )


def test_each_key_lands_in_its_districts_partition_database(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    districts = ["jinshui", "erqi", "zhongyuan", "gaoxin", "huiji", "baihe"]
    for d in districts:
        store._set(f"{d}{KEY_SEPARATOR}m".encode(), d.encode())
        store._set(f"{d}{KEY_SEPARATOR}j{KEY_SEPARATOR}3".encode(), b"journal")
    for d in districts:
        p = district_partition(d, 4)
        for key in (f"{d}{KEY_SEPARATOR}m", f"{d}{KEY_SEPARATOR}j{KEY_SEPARATOR}3"):
            assert store._key_index[key.encode()] == p
            assert store._db_for_partition(p).get(key.encode()) is not None
        others = set(range(4)) - {p}
        assert all(store._db_for_partition(o).get(f"{d}{KEY_SEPARATOR}m".encode()) is None
                   for o in others)
    # One database file per partition that holds a district, as Faust lays them out.
    on_disk = {p.name for p in (tmp_path / "v1" / "tables").glob("state-*.db")}
    assert on_disk == {f"state-{district_partition(d, 4)}.db" for d in districts}


def test_a_key_without_a_separator_is_its_own_district(store) -> None:  # type: ignore[no-untyped-def]
    assert store.partition_of(b"jinshui") == district_partition("jinshui", 4)

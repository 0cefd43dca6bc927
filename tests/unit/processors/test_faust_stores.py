"""A revoked partition's RocksDB is closed without needless full collections (processors.faust_stores).

The databases are real RocksDB files (rocksdict, what faust's store opens):
a database that is still open holds its file lock, so opening it again is
the check that it was closed.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rocksdict import Rdict

from processors import faust_stores
from processors.faust_stores import release, revoke_partitions


@pytest.fixture
def full_collections() -> Iterator[list[int]]:
    seen: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            seen.append(1)

    # Only the collections the code asks for: none started by allocations meanwhile.
    was_enabled = gc.isenabled()
    gc.disable()
    gc.callbacks.append(count)
    try:
        yield seen
    finally:
        gc.callbacks.remove(count)
        if was_enabled:
            gc.enable()


def store_with(dbs: dict[int, Any]) -> Any:
    return SimpleNamespace(_dbs=dbs, logger=logging.getLogger("test"))


def table_of(topic: str) -> Any:
    return SimpleNamespace(changelog_topic=SimpleNamespace(topics={topic}))


def tp(topic: str, partition: int) -> Any:
    from faust.types import TP

    return TP(topic, partition)


def can_open(path: Path) -> bool:
    try:
        Rdict(str(path)).close()
    except Exception:  # rocksdict raises its own error for a held lock
        return False
    return True


def test_a_still_open_database_holds_its_lock(tmp_path: Path) -> None:
    db = Rdict(str(tmp_path / "p0"))
    assert not can_open(tmp_path / "p0")  # the check below can fail
    db.close()
    assert can_open(tmp_path / "p0")


def test_a_revoked_database_is_closed_without_a_full_collection(
    tmp_path: Path, full_collections: list[int]
) -> None:
    store = store_with({0: Rdict(str(tmp_path / "p0")), 1: Rdict(str(tmp_path / "p1"))})
    revoke_partitions(store, table_of("t-changelog"), {tp("t-changelog", 0)})
    assert list(store._dbs) == [1]
    assert can_open(tmp_path / "p0")
    assert not can_open(tmp_path / "p1")  # still assigned: still open
    assert full_collections == []


def test_nothing_revoked_collects_nothing(tmp_path: Path, full_collections: list[int]) -> None:
    store = store_with({0: Rdict(str(tmp_path / "p0"))})
    revoke_partitions(store, table_of("t-changelog"), set())
    revoke_partitions(store, table_of("t-changelog"), {tp("other-changelog", 0)})
    assert list(store._dbs) == [0]
    assert full_collections == []


def test_a_database_held_in_a_cycle_is_closed_by_a_full_collection(
    tmp_path: Path, full_collections: list[int]
) -> None:
    db = Rdict(str(tmp_path / "p0"))
    cycle: list[Any] = [db]
    cycle.append(cycle)
    store = store_with({0: db})
    del db, cycle
    revoke_partitions(store, table_of("t-changelog"), {tp("t-changelog", 0)})
    assert full_collections == [1]
    assert can_open(tmp_path / "p0")


def test_release_says_whether_anything_else_still_refers_to_a_database() -> None:
    kept = object()
    assert release([object(), object()]) is False
    dropped = [kept]
    assert release(dropped) is True
    assert dropped == []


def test_install_replaces_fausts_revoke() -> None:
    from faust.stores.rocksdb import Store

    faust_stores.install()
    assert Store.revoke_partitions is revoke_partitions


# --- no write-ahead log -------------------------------------------------------------------

CRASHING_WRITER = """
import os, signal, sys
from faust.stores.rocksdb import RocksDBOptions
from processors import faust_stores

faust_stores.install(wal=sys.argv[2] == "wal")
db = RocksDBOptions(write_buffer_size=64 * 1024).open(sys.argv[1])
import rocksdict
for n in range(1, 3001):
    batch = rocksdict.WriteBatch(raw_mode=True)
    for row in range(4):
        batch.put(f"row-{n % 50}-{row}".encode(), f"{n}:".encode() + b"x" * 200)
    db.write(batch)
    db.put(b"__offset__", str(n).encode())  # as faust's set_persisted_offset, after the rows
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def faust_open() -> Iterator[None]:
    yield
    faust_stores.install()  # faust's own open again for every other test


def log_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.log"))


def open_store(path: Path) -> Any:
    from faust.stores.rocksdb import RocksDBOptions

    return RocksDBOptions().open(path)


def test_without_wal_a_store_writes_no_log_and_keeps_its_rows_over_a_clean_close(
    tmp_path: Path, faust_open: None
) -> None:
    from rocksdict import WriteBatch

    faust_stores.install(wal=False)
    db = open_store(tmp_path / "p0")
    batch = WriteBatch(raw_mode=True)
    batch.put(b"k1", b"v1")
    db.write(batch)
    db.put(b"k2", b"v2")
    assert log_bytes(tmp_path / "p0") == 0
    del db  # faust drops its stores, it never closes them: the drop must flush
    db = open_store(tmp_path / "p0")
    assert (db.get(b"k1"), db.get(b"k2")) == (b"v1", b"v2")
    db.close()


def test_with_wal_the_same_writes_go_to_the_log(tmp_path: Path, faust_open: None) -> None:
    faust_stores.install(wal=True)
    db = open_store(tmp_path / "p0")
    db.put(b"k1", b"v1")
    assert log_bytes(tmp_path / "p0") > 0  # so the check above can fail
    db.close()


def rows_and_offset(path: Path) -> tuple[dict[bytes, int], int | None]:
    db = Rdict(str(path), options=__import__("rocksdict").Options(raw_mode=True))
    try:
        offset = db.get(b"__offset__")
        rows = {k: int(v.split(b":")[0]) for k, v in db.items() if k != b"__offset__"}
    finally:
        db.close()
    return rows, None if offset is None else int(offset)


@pytest.mark.parametrize("wal", ["wal", "no-wal"])
def test_a_killed_store_without_wal_is_behind_but_whole(tmp_path: Path, wal: str) -> None:
    """SIGKILL while writing: without the log the store reopens as it was at an earlier
    write, its offset never ahead of its rows; with the log, as at the last write."""
    import subprocess
    import sys

    path = tmp_path / "p0"
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(path), wal], cwd=root, timeout=120
    )
    assert done.returncode == -9
    rows, offset = rows_and_offset(path)
    if wal == "wal":
        assert offset == 3000
    else:
        # Small memtables were flushed on the way (the store is not empty), the last not.
        assert offset is not None and 0 < offset < 3000
    # Every row holds the batch at or after the offset's: the row's last write up to then.
    for key, written in rows.items():
        slot = int(key.split(b"-")[1])
        last_by_offset = max(n for n in range(slot, offset + 1, 50)) if slot <= offset else None
        assert last_by_offset is not None and written >= last_by_offset, (key, written, offset)
    assert len(rows) == 200

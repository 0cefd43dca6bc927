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

"""faust's RocksDB stores, changed in two ways: revoked partitions released without a
full collection per table, and no write-ahead log.

**Revoked partitions.**

faust 0.15's RocksDB ``Store.revoke_partitions`` drops the revoked
partitions' databases and then calls ``gc.collect()``, once per table at
every rebalance, whether it dropped anything or not. The collection is there
so that a database held only in a reference cycle is closed (its file lock
released) before another worker, or this one, opens it again. The worker
holds hundreds of thousands of cached objects, and each of those full
collections walks them all: a py-spy profile of two workers on the small
bench set (2026-12-05 20:22) put 4 of their 77 CPU seconds in
``revoke_partitions``, and one of two workers counted 37 full collections
(1.9 s) in its first 10 s, while the group formed.

:func:`install` keeps faust's behaviour and drops only the collections that
cannot free anything. A database nothing else refers to is closed the
moment its last reference goes (reference counting, no collector needed);
only when something else still refers to one does the full collection run,
as faust's would. When nothing was dropped, nothing is collected.

**No write-ahead log.** A table's changelog topic is its durable copy: every
write the worker makes is acknowledged there by the broker before the batch's
offsets are committed, and faust rebuilds a partition from its changelog,
starting after the offset the store holds. RocksDB's own log duplicates that:
every write batch (whole person, gate and site states, rewritten each batch)
is also appended to a log file on the event loop's thread. :func:`install`
with ``wal=False`` opens every store without it. A process that dies then
loses its stores' unflushed memtables, and RocksDB reopens each partition as
it was at some earlier write: every write, the stored offset included, is made
in the order made, so that earlier state is whole and its offset is never
ahead of its rows. faust reads the changelog from that offset on, as it does
for any store that is behind. What a crash costs is a longer recovery, never
a lost or doubled row. A clean stop flushes the memtables (RocksDB does on
close when writes skipped the log).
"""

from __future__ import annotations

import gc
import sys
from typing import Any


def release(dropped: list[Any]) -> bool:
    """Let each dropped database go; True if one was still referred to elsewhere.

    Empties ``dropped``. A database whose only references are this list's
    slot and the local name is freed (and closed) by ``del``; any other
    reference may be a cycle that only the collector can break.
    """
    held = False
    while dropped:
        db = dropped.pop()
        # The local name and getrefcount's own argument.
        held = held or sys.getrefcount(db) > 2
        del db
    return held


def revoke_partitions(self: Any, table: Any, tps: Any) -> None:
    """faust's ``Store.revoke_partitions``, collecting only when a database may need it."""
    dropped: list[Any] = []
    for tp in tps:
        if tp.topic in table.changelog_topic.topics:
            db = self._dbs.pop(tp.partition, None)
            if db is not None:
                self.logger.info(f"closing db {tp.topic} partition {tp.partition}")
                dropped.append(db)
            del db
    if release(dropped):
        gc.collect()


def without_wal(db: Any) -> Any:
    """``db`` (a rocksdict ``Rdict``) with every later write made without RocksDB's log."""
    import rocksdict

    options = rocksdict.WriteOptions()
    options.disable_wal = True
    db.set_write_options(options)
    return db


_faust_open: Any = None


def open_without_wal(self: Any, path: Any, *, read_only: bool = False) -> Any:
    """faust's ``RocksDBOptions.open``, the store then writing without RocksDB's log."""
    db = _faust_open(self, path, read_only=read_only)
    return without_wal(db) if self.use_rocksdict and not read_only else db


def install(wal: bool = True) -> None:
    """Replace faust's RocksDB ``Store.revoke_partitions`` (and with ``wal=False``,
    ``RocksDBOptions.open``), process-wide; installing again changes nothing more."""
    global _faust_open
    from faust.stores.rocksdb import RocksDBOptions, Store

    Store.revoke_partitions = revoke_partitions
    if _faust_open is None:
        _faust_open = RocksDBOptions.open
    RocksDBOptions.open = _faust_open if wal else open_without_wal

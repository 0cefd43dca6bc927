"""A revoked partition's RocksDB released without a full collection per table.

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


def install() -> None:
    """Replace faust's RocksDB ``Store.revoke_partitions``, once, process-wide."""
    from faust.stores.rocksdb import Store

    Store.revoke_partitions = revoke_partitions

"""Changelog records of partitions this worker stands by for, written to RocksDB as fetched.

Every worker reads the changelog records other workers write: for the
partitions it is a standby replica of, and for every partition of the global
trail tables that another worker owns. faust 0.15 hands each such record
through its fetch loop and conductor as an event, puts it on the table
manager's changelog queue, and its recovery service takes it off one at a
time (a task per record for the queue's timeout, a check of every standby's
remaining count per record) before buffering it for a write batch. In py-spy
profiles of two workers on the bench's small set (2026-12-05 23:44-23:53),
that path (faust's fetch loop beyond what one worker spends there, and its
recovery service) was about a fifth of each worker's samples, and two workers
spent 1.2 to 1.85 times one worker's CPU on the same inputs.

:func:`install` takes the standby partitions' records out of each fetch
before faust sees them and writes them the way faust's RocksDB store would
(``Store.apply_changelog_batch``: the record's raw key and value, a delete
for a tombstone, then the partition's persisted offset), in one write batch
per partition and fetch. faust's recovery keeps its bookkeeping: the offset
it seeks back to at the next rebalance is the one written here. Only tables
kept in RocksDB with no changelog callback are taken, and only partitions
this worker does not write: its standby partitions, and a global table's
partitions another worker owns. faust assigns those to every worker as
active *and* standby (active so that they are recovered at start), so they
are taken only between recoveries; every recovery stays faust's.

The global part was first tried on 2026-12-06 and withdrawn the same day:
the two-worker SIGKILL test with no standby replicas (where those are the only
partitions taken) lost person alerts in two of three runs, cause not found.
Two losses at a takeover were found and closed since, both in the source
partitions the person stage reads, not in the tables written here: records
dropped on their way to a stage and judged late behind the ones after them
(``processors.faust_offsets.InOrder``), and records fetched while faust's seek
to the committed offsets ran, which waited for ``HeadWatch``
(``Owed.start``). With both, that test passed 6 of 6 runs with the global part
back (2026-12-07, half of them beside a one-core CPU hog).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from faust.types import TP

log = logging.getLogger(__name__)

_installed: dict[str, Any] = {}


def appliable(table: Any) -> bool:
    """Whether faust would apply ``table``'s changelog records as raw bytes to RocksDB."""
    store = getattr(table, "data", None)
    return (
        getattr(store, "use_rocksdict", False)
        and hasattr(store, "_db_for_partition")
        and getattr(table, "_on_changelog_event", None) is None
    )


def fresh_records(records: Sequence[Any], seen: int | None) -> Sequence[Any]:
    """The records past ``seen`` (after a seek back, faust reads some again)."""
    if seen is None or not records or records[0].offset > seen:
        return records
    return [record for record in records if record.offset > seen]


def taken(recovery: Any, tp: Any) -> Any:
    """The table whose records of ``tp`` are written here, or None (faust's own path)."""
    if tp not in recovery.standby_tps:
        return None
    table = recovery.tp_to_table.get(tp)
    if table is None or not appliable(table):
        return None
    if tp in recovery.active_tps and not (table.is_global and not recovery.in_recovery):
        return None
    return table


def write_standby(recovery: Any, table: Any, tp: TP, records: Sequence[Any]) -> int:
    """Write one partition's fetched changelog records; the number written."""
    import rocksdict

    # faust's recovery reads a partition that is both active and standby (a
    # global table's) as active, so that is the offset it has seen there.
    offsets = recovery.active_offsets if tp in recovery.active_tps else recovery.standby_offsets
    fresh = fresh_records(records, offsets.get(tp))
    if not fresh:
        return 0
    pending = recovery.buffers.get(table)
    if pending:  # records faust buffered earlier must not land after these
        table.apply_changelog_batch(pending)
        pending.clear()
    batch = rocksdict.WriteBatch(raw_mode=True)
    for record in fresh:
        if record.value is None:
            batch.delete(record.key)
        else:
            batch.put(record.key, record.value)
    store = table.data
    store._db_for_partition(tp.partition).write(batch)
    last = fresh[-1].offset
    store.set_persisted_offset(tp, last)
    offsets[tp] = last
    return len(fresh)


def take_standby_records(
    records: Mapping[Any, Sequence[Any]], recovery: Any, counts: Counter[str]
) -> dict[Any, Sequence[Any]]:
    """Write the fetch's standby changelog records; what is left for faust."""
    if not recovery.standby_tps:
        return dict(records)
    left: dict[Any, Sequence[Any]] = {}
    for tp, batch in records.items():
        table = taken(recovery, tp)
        if table is None:
            left[tp] = batch
            continue
        written = write_standby(recovery, table, TP(tp.topic, tp.partition), batch)
        counts["standby_records_written"] += written
        counts["standby_batches_written"] += 1 if written else 0
    return left


def install(app: Any, counts: Counter[str]) -> None:
    """Wrap faust's ``Consumer._wait_next_records`` once; ``counts`` is the worker's ``/stats``."""
    from faust.transport.consumer import Consumer

    _installed["apps"] = {id(app): counts}
    if "wait_next_records" in _installed:
        return
    original = _installed["wait_next_records"] = Consumer._wait_next_records

    async def _wait_next_records(self: Any, timeout: float) -> Any:
        records, active = await original(self, timeout)
        counts_for = _installed["apps"].get(id(self.app))
        if not records or counts_for is None:
            return records, active
        return take_standby_records(records, self.app.tables.recovery, counts_for), active

    Consumer._wait_next_records = _wait_next_records

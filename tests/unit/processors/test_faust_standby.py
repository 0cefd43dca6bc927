"""Standby changelog records written straight from a fetch, as faust writes them (processors.faust_standby)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
from aiokafka.structs import ConsumerRecord
from faust.types import TP, Message

from processors.faust_standby import fresh_records, take_standby_records
from processors.faust_tables import bytes_table


def make_app(tmp_path: Path, name: str) -> faust.App:
    return faust.App(name, store="rocksdb://", datadir=str(tmp_path / name), autodiscover=False)


def record(topic: str, partition: int, offset: int, key: bytes, value: bytes | None) -> Any:
    return ConsumerRecord(topic, partition, offset, 0, 0, key, value, None, len(key), 0, ())


def as_event(r: Any) -> Any:
    """A changelog event as faust's recovery buffers it (only its message is read)."""
    message = Message(r.topic, r.partition, r.offset, 0.0, 0, {}, r.key, r.value, None)
    return SimpleNamespace(message=message)


def contents(table: Any, partition: int) -> list[tuple[bytes, bytes]]:
    """Every key and value of one partition's database, faust's offset key included."""
    return list(table.data._db_for_partition(partition).items())


def standby_setup(tmp_path: Path, name: str) -> tuple[Any, Any, TP]:
    app = make_app(tmp_path, name)
    table = bytes_table(app, "person-state", 4)
    tp = TP(table.changelog_topic.get_topic_name(), 2)
    recovery = app.tables.recovery
    recovery.add_standby(table, tp)
    return table, recovery, tp


def changelog(topic: str, partition: int) -> list[Any]:
    return [
        record(topic, partition, 10, b"p-1", b'{"v":1}'),
        record(topic, partition, 11, b"p-2", b'{"v":2}'),
        record(topic, partition, 12, b"p-1", b'{"v":3}'),  # a later write of the same key
        record(topic, partition, 13, b"p-2", None),  # a tombstone
        record(topic, partition, 14, b"p-3", b'{"v":4}'),
    ]


def test_standby_records_are_written_as_faust_writes_them(tmp_path: Path) -> None:
    ours, recovery, tp = standby_setup(tmp_path, "ours")
    faust_app = make_app(tmp_path, "faust")
    fausts = bytes_table(faust_app, "person-state", 4)
    records = changelog(tp.topic, tp.partition)

    counts: Counter[str] = Counter()
    left = take_standby_records({tp: records}, recovery, counts)
    fausts.apply_changelog_batch([as_event(r) for r in records])

    assert left == {}
    assert counts["standby_records_written"] == 5
    assert counts["standby_batches_written"] == 1
    assert contents(ours, tp.partition) == contents(fausts, tp.partition)
    assert dict(contents(ours, tp.partition))[b"p-1"] == b'{"v":3}'
    assert b"p-2" not in dict(contents(ours, tp.partition))
    # faust's next rebalance seeks the standby back to the offset written here.
    assert ours.persisted_offset(tp) == 14 == fausts.persisted_offset(tp)
    assert recovery.standby_offsets[tp] == 14


def test_records_read_again_after_a_seek_back_are_not_written_twice(tmp_path: Path) -> None:
    table, recovery, tp = standby_setup(tmp_path, "again")
    records = changelog(tp.topic, tp.partition)
    counts: Counter[str] = Counter()
    take_standby_records({tp: records[:3]}, recovery, counts)
    take_standby_records({tp: records}, recovery, counts)  # 10..12 come again
    assert counts["standby_records_written"] == 5
    assert fresh_records(records, 12) == records[3:]
    assert fresh_records(records, None) is records
    assert table.persisted_offset(tp) == 14


def test_active_and_unknown_partitions_are_left_to_faust(tmp_path: Path) -> None:
    table, recovery, tp = standby_setup(tmp_path, "left")
    active = TP(tp.topic, 0)
    recovery.add_active(table, active)
    source = TP("scantrail.temperatures", 2)
    fetched = {
        tp: changelog(tp.topic, tp.partition),
        active: changelog(active.topic, active.partition),
        source: [record(source.topic, source.partition, 0, b"k-1", b"{}")],
    }
    counts: Counter[str] = Counter()
    left = take_standby_records(fetched, recovery, counts)
    assert set(left) == {active, source}
    assert left[active] == fetched[active]
    assert counts["standby_records_written"] == 5
    assert contents(table, active.partition) == []


def test_records_faust_buffered_earlier_are_written_first(tmp_path: Path) -> None:
    table, recovery, tp = standby_setup(tmp_path, "buffered")
    earlier = [record(tp.topic, tp.partition, 9, b"p-1", b'{"v":0}')]
    recovery.buffers[table].extend(as_event(r) for r in earlier)
    take_standby_records({tp: changelog(tp.topic, tp.partition)}, recovery, Counter())
    # Had faust's buffer been applied after, p-1 would hold the older value.
    assert dict(contents(table, tp.partition))[b"p-1"] == b'{"v":3}'
    assert recovery.buffers[table] == []


def global_setup(tmp_path: Path, name: str) -> tuple[Any, Any, TP]:
    """A global table's partition another worker owns: faust assigns it as active and standby."""
    app = make_app(tmp_path, name)
    table = bytes_table(app, "trails", 4, global_table=True)
    tp = TP(table.changelog_topic.get_topic_name(), 1)
    recovery = app.tables.recovery
    recovery.add_active(table, tp)
    recovery.add_standby(table, tp)
    return table, recovery, tp


def test_a_global_tables_other_partitions_are_written_between_recoveries(
    tmp_path: Path,
) -> None:
    table, recovery, tp = global_setup(tmp_path, "global")
    records = changelog(tp.topic, tp.partition)
    counts: Counter[str] = Counter()
    assert take_standby_records({tp: records[:2]}, recovery, counts) == {}
    take_standby_records({tp: records}, recovery, counts)  # 10 and 11 come again
    assert counts["standby_records_written"] == 5
    assert dict(contents(table, tp.partition))[b"p-1"] == b'{"v":3}'
    # faust reads such a partition as active: both its offsets move on.
    assert recovery.active_offsets[tp] == 14 == table.persisted_offset(tp)


def test_a_global_tables_partitions_are_faust_s_during_a_recovery(tmp_path: Path) -> None:
    table, recovery, tp = global_setup(tmp_path, "recovering")
    recovery.in_recovery = True
    fetched = {tp: changelog(tp.topic, tp.partition)}
    counts: Counter[str] = Counter()
    assert take_standby_records(fetched, recovery, counts) == fetched
    assert counts["standby_records_written"] == 0
    assert contents(table, tp.partition) == []


def test_without_standbys_the_fetch_is_faust_s(tmp_path: Path) -> None:
    app = make_app(tmp_path, "none")
    bytes_table(app, "person-state", 4)
    tp = TP("scantrail.temperatures", 0)
    fetched = {tp: [record(tp.topic, 0, 0, b"k", b"{}")]}
    assert take_standby_records(fetched, app.tables.recovery, Counter()) == fetched

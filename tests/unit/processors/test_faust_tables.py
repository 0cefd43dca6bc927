"""Changelogs read back as raw bytes, declared as faust declares them (processors.faust_tables)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import faust
from faust.types import TP, Message

from processors.faust_tables import bytes_table
from processors.table_writes import encode_value

DECLARED = (
    "topics",
    "key_type",
    "key_serializer",
    "partitions",
    "retention",
    "compacting",
    "deleting",
    "replicas",
    "acks",
    "internal",
    "config",
)


def make_app(tmp_path: Path, store: str) -> faust.App:
    return faust.App("faust-tables-test", store=store, datadir=str(tmp_path), autodiscover=False)


def declared(topic: Any) -> dict[str, Any]:
    return {name: getattr(topic, name) for name in DECLARED}


def changelog_message(topic: str, key: bytes, value: bytes) -> Message:
    return Message(topic, 0, 7, 0.0, 0, {}, key, value, None, tp=TP(topic, 0))


def decode(channel: Any, message: Message) -> Any:
    return asyncio.run(channel.decode(message, propagate=True))


def test_a_rocksdb_tables_changelog_keeps_fausts_declaration_but_reads_bytes(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path, "rocksdb://")
    ours = bytes_table(app, "person-state", 4)
    stock = app.Table("stock", default=None, key_type=bytes, partitions=4)
    assert ours.changelog_topic.get_topic_name() == "faust-tables-test-person-state-changelog"
    # Everything faust declares (name, partitions, compaction, acks) is as it would be.
    assert declared(ours.changelog_topic) | {"topics": ()} == declared(stock.changelog_topic) | {
        "topics": ()
    }
    assert ours.changelog_topic.compacting is True
    value = encode_value({"seen": {"ids": ["e-1"]}, "history": [[1, 36.5]]})
    name = ours.changelog_topic.get_topic_name()
    event = decode(ours.changelog_topic, changelog_message(name, b"p-1", value))
    assert event.key == b"p-1" and event.value == value  # no JSON decoding on the way
    # faust's own path would have decoded the same record.
    assert decode(stock.changelog_topic, changelog_message(name, b"p-1", value)).value == {
        "seen": {"ids": ["e-1"]},
        "history": [[1, 36.5]],
    }
    # The table itself still stores and serves JSON values.
    assert ours.value_serializer == stock.value_serializer == "json"


def test_a_global_table_gets_the_same_changelog(tmp_path: Path) -> None:
    app = make_app(tmp_path, "rocksdb://")
    trails = bytes_table(app, "trails", 4, global_table=True)
    assert isinstance(trails, faust.GlobalTable)
    assert trails.changelog_topic.value_serializer == "raw"
    assert app.tables.changelog_topics == {"faust-tables-test-trails-changelog"}


def test_an_in_memory_table_keeps_fausts_changelog(tmp_path: Path) -> None:
    """faust's memory store applies the decoded value, so it must stay decoded."""
    app = make_app(tmp_path, "memory://")
    table = bytes_table(app, "person-state", 4)
    assert table.changelog_topic.value_serializer == "json"

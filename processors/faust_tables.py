"""faust tables keyed by bytes whose changelog is read back as raw bytes.

faust decodes every changelog record it reads, through the conductor, with the
table's value serializer (JSON here): at recovery, for every standby, and, all
the time, for the global trail tables every worker keeps whole. Its RocksDB
store then writes the record's raw bytes and never looks at the decoded value
(``Store.apply_changelog_batch`` in faust-streaming 0.15 puts
``event.message.value``). So the decoding is pure waste: in a py-spy profile of
two workers draining the bench's small set (2026-12-05 20:21), 207 of the
conductor's 698 samples were JSON decoding of changelog values.

Only the changelog topic changes: the table's own serializer, which faust uses
for ``table[key]`` and the values it stores, stays JSON, and the records
written to the changelog are the same bytes (``processors.table_writes``).
faust's in-memory store (unit tests) applies the *decoded* value, so its
tables keep faust's changelog topic.
"""

from __future__ import annotations

from typing import Any

import faust


def bytes_table(app: faust.App, name: str, partitions: int, *, global_table: bool = False) -> Any:
    """A table of bytes keys (stored raw, so its partitions match its source topic's)."""
    make = app.GlobalTable if global_table else app.Table
    table = make(name, default=None, key_type=bytes, partitions=partitions)
    if _stores_in_rocksdb(app):
        table.changelog_topic = raw_valued(app, table.changelog_topic)
    return table


def raw_valued(app: faust.App, topic: Any) -> Any:
    """``topic`` as faust declared it, except that its values are read as bytes."""
    return app.topic(
        *topic.topics,
        key_type=topic.key_type,
        key_serializer=topic.key_serializer,
        value_serializer="raw",
        partitions=topic.partitions,
        retention=topic.retention,
        compacting=topic.compacting,
        deleting=topic.deleting,
        replicas=topic.replicas,
        acks=topic.acks,
        internal=topic.internal,
        config=topic.config,
    )


def _stores_in_rocksdb(app: faust.App) -> bool:
    return str(app.conf.store).startswith("rocksdb:")

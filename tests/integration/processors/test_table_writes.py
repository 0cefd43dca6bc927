"""processors.table_writes.BulkWrites on the real broker and real RocksDB files.

The worker's tables are written this way (one write batch per partition, one
changelog record per key, the batch's own acknowledgements awaited), so what
recovery reads back must be exactly what was stored, and a record the broker
refuses must fail the batch rather than let its events be committed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import rocksdict
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Consumer, TopicPartition
from faust.types import TP
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from processors.table_writes import (
    BulkWrites,
    Outgoing,
    Write,
    changelog_producer,
    decode_value,
    encode_value,
)
from scantrail.broker import librdkafka_connection

PARTITIONS = 2


class _Store:
    """faust's RocksDB store as BulkWrites uses it: one database per partition, persisted offsets."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dbs: dict[int, rocksdict.Rdict] = {}
        self.persisted: dict[TP, int] = {}

    def _db_for_partition(self, partition: int) -> rocksdict.Rdict:
        if partition not in self.dbs:
            self.dbs[partition] = rocksdict.Rdict(
                str(self.root / f"p{partition}"), options=rocksdict.Options(raw_mode=True)
            )
        return self.dbs[partition]

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.persisted[tp] = offset

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()


class _Topic:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


class _Table:
    def __init__(self, store: _Store, topic: str) -> None:
        self.data = store
        self.changelog_topic = _Topic(topic)


def _changelog(settings: Any, topic: str, expect: int) -> list[tuple[int, bytes, bytes | None]]:
    consumer = Consumer(
        {
            **librdkafka_connection(settings),
            "group.id": f"{topic}-reader",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    records: list[tuple[int, bytes, bytes | None]] = []
    try:
        for _ in range(60):
            for message in consumer.consume(num_messages=100, timeout=0.5):
                assert message.error() is None, message.error()
                records.append((message.partition(), message.key(), message.value()))
            if len(records) >= expect:
                break
    finally:
        consumer.close()
    return records


@pytest.fixture
def changelog_topic(kafka_settings: Any) -> str:
    name = f"{kafka_settings.namespace}bulk-writes-changelog"
    admin = KafkaAdminClient(bootstrap_servers=kafka_settings.servers)
    try:
        admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        admin.close()
    return name


def test_batches_in_flight_together_store_and_log_each_key_once(
    kafka_settings: Any, changelog_topic: str, tmp_path: Path
) -> None:
    store = _Store(tmp_path)
    table = _Table(store, changelog_topic)
    writer = BulkWrites(changelog_producer(librdkafka_connection(kafka_settings), 5))

    def batch(tag: str, n: int) -> list[Write]:
        return [
            Write(table, i % PARTITIONS, f"{tag}-{i}".encode(), encode_value({"n": i}), None)
            for i in range(n)
        ]

    async def run() -> None:
        await asyncio.gather(writer.write(batch("a", 300)), writer.write(batch("b", 200)))
        await writer.write([Write(table, 0, b"a-0", None, None)])  # a delete: a tombstone

    try:
        asyncio.run(run())
        stored = {
            key: decode_value(value) for db in store.dbs.values() for key, value in db.items()
        }
        assert len(stored) == 499 and b"a-0" not in stored
        assert stored[b"a-7"] == {"n": 7} and stored[b"b-199"] == {"n": 199}
        assert writer.records == 501 and writer.batches == 3
        # /stats says what each table wrote: rows (deletes too) and bytes of values.
        assert writer.counts[f"{changelog_topic}_written_rows"] == 501
        assert writer.counts[f"{changelog_topic}_written_bytes"] == sum(
            len(encode_value({"n": i})) for i in (*range(300), *range(200))
        )

        logged = _changelog(kafka_settings, changelog_topic, 501)
        assert len(logged) == 501
        first = [value for p, key, value in logged if p == 0 and key == b"a-0"]
        assert first == [b'{"n":0}', None]  # its value, then its tombstone, in that order
        per_partition = {p: sum(1 for q, _, _ in logged if q == p) for p in range(PARTITIONS)}
        # The persisted offset is each partition's last changelog offset (faust resumes after it).
        assert store.persisted == {
            TP(changelog_topic, p): per_partition[p] - 1 for p in range(PARTITIONS)
        }
    finally:
        assert writer.close() == 0
        store.close()


def test_a_record_the_broker_refuses_fails_the_batch(
    kafka_settings: Any, changelog_topic: str, tmp_path: Path
) -> None:
    store = _Store(tmp_path)
    table = _Table(store, changelog_topic)
    writer = BulkWrites(changelog_producer(librdkafka_connection(kafka_settings), 5), timeout_s=20)
    no_such_partition = PARTITIONS + 3
    writes = [
        Write(table, 0, b"fine", encode_value({"ok": True}), None),
        Write(table, no_such_partition, b"lost", encode_value({"ok": False}), None),
    ]
    try:
        with pytest.raises(OSError, match="not acknowledged"):
            asyncio.run(writer.write(writes))
        assert store.persisted == {}  # nothing is marked as restored up to an unlogged record
    finally:
        writer.close()
        store.close()


def test_a_batchs_sends_go_where_faust_put_them_and_return_once_acknowledged(
    kafka_settings: Any, changelog_topic: str
) -> None:
    """Alerts (keyed, no partition) and forwards (a partition) through the changelog's
    librdkafka producer: a key lands where faust's aiokafka producer put it, so a
    site's alerts stay in one partition across the change; send returns only once
    the broker has every record, and a refused one fails the batch."""
    topic = _Topic(changelog_topic)
    writer = BulkWrites(changelog_producer(librdkafka_connection(kafka_settings), 5))
    keys = [f"site-{i:04d}".encode() for i in range(60)]
    records = [Outgoing(topic, key, b"alert of " + key, None) for key in keys]
    records += [Outgoing(topic, b"__batch__", f"forward {i}".encode(), 1) for i in range(5)]
    faust_partition = DefaultPartitioner()
    try:
        asyncio.run(writer.send(records))
        assert len(writer.producer) == 0  # nothing of the batch still on its way
        # Ticks: one to every partition, after the batch, nobody waiting for them.
        ticks = [Outgoing(topic, b"__watermark__", b'{"marks":{}}', p) for p in range(PARTITIONS)]
        asyncio.run(writer.send_soon(ticks))
        logged = _changelog(kafka_settings, changelog_topic, len(records) + PARTITIONS)
        assert sorted(p for p, k, _ in logged if k == b"__watermark__") == [0, 1]
        logged = [r for r in logged if r[1] != b"__watermark__"]
        assert len(logged) == len(records)
        for key in keys:
            placed = [p for p, k, _ in logged if k == key]
            assert placed == [faust_partition(key, [0, 1], [0, 1])], key
        forwards = [v for p, k, v in logged if k == b"__batch__"]
        assert forwards == [f"forward {i}".encode() for i in range(5)]
        assert {p for p, k, _ in logged if k == b"__batch__"} == {1}

        # The producer knows the topic now: a partition it lacks fails at once.
        refused = [Outgoing(topic, b"k", b"v", PARTITIONS + 3)]
        with pytest.raises(OSError, match="not produced.*Unknown partition"):
            asyncio.run(writer.send(refused))
    finally:
        writer.close()

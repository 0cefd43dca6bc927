"""A batch's table writes, made once per key: RocksDB write batches and changelog records in bulk.

A faust table write (``table[key] = value``) costs a RocksDB put, a changelog
send through aiokafka's pure-Python producer, a TTL check and a sensor call,
each per key. Measured beside faust's own decode floor, one such write per
record halved a faust agent's rate, so per-record table writes cannot be on
the worker's hot path.

:class:`BulkWrites` keeps faust's table layout and changelog exactly, and only
makes the writes differently:

* each changed key is written once per batch (the stages stage their changes
  per key in :class:`processors.batching.Effects`);
* the local store gets one ``rocksdict.WriteBatch`` per table partition,
  with the same raw key and the same JSON value faust would have stored;
* the changelog gets one record per changed key (a tombstone for a delete),
  produced by one librdkafka producer and awaited as a whole before the batch
  is acked, so faust's recovery (and a standby's, and a global table's
  reader) rebuilds the table from the changelog exactly as if faust had
  written it, and compaction still keeps one record per key;
* the highest changelog offset per partition is stored as faust's persisted
  offset, so a restart on the same data directory reads only what is newer.

:class:`TableWrites` is the same contract over plain faust ``__setitem__``
writes: the fallback for tables that are not RocksDB stores (unit tests).
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from faust.types import TP


@dataclass(frozen=True)
class Write:
    """One key's change in one batch: its value (None deletes it), under ``partition``."""

    table: Any
    partition: int
    key: bytes
    value: Callable[[], Any] | None
    event: Any


class Writer(Protocol):
    async def write(self, writes: Sequence[Write]) -> None: ...


class TableWrites:
    """Writes through faust's own table API, one key at a time (tables that are not RocksDB)."""

    async def write(self, writes: Sequence[Write]) -> None:
        from processors.batching import acting_for

        for w in writes:
            with acting_for(w.event):
                if w.value is not None:
                    w.table[w.key] = w.value()
                elif w.table.get(w.key) is not None:
                    del w.table[w.key]


def encode_value(value: Any) -> bytes:
    """The bytes faust's ``json`` value serializer stores and sends for ``value``.

    faust encodes with orjson when it is installed (and ScanTrail installs it),
    with non-string keys allowed; orjson is also several times faster than the
    standard library on the states' long lists, which every batch re-encodes.
    """
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def decode_value(raw: bytes) -> Any:
    """A stored table value, as faust's ``json`` value serializer reads it."""
    return orjson.loads(raw)


class ChangelogProducer(Protocol):
    def produce(
        self, topic: str, value: Any, key: Any, partition: int, on_delivery: Any
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


class BulkWrites:
    """Table writes of a batch as write batches and bulk changelog records (module docstring)."""

    def __init__(self, producer: ChangelogProducer, timeout_s: float = 30.0) -> None:
        self.producer = producer
        self.timeout_s = timeout_s
        self.records = 0
        self.batches = 0
        self._lock = threading.Lock()

    async def write(self, writes: Sequence[Write]) -> None:
        if not writes:
            return
        import rocksdict

        by_table: dict[int, list[Write]] = defaultdict(list)
        for w in writes:
            by_table[id(w.table)].append(w)
        delivered: dict[tuple[str, int], int] = {}
        failures: list[str] = []

        def on_delivery(error: Any, message: Any) -> None:
            if error is not None:
                failures.append(str(error))
                return
            tp = (message.topic(), message.partition())
            with self._lock:
                if message.offset() > delivered.get(tp, -1):
                    delivered[tp] = message.offset()

        produce = self.producer.produce
        stores: dict[str, Any] = {}
        for group in by_table.values():
            table = group[0].table
            store = table.data
            topic = table.changelog_topic.get_topic_name()
            stores[topic] = store
            batches: dict[int, Any] = {}
            for w in group:
                batch = batches.get(w.partition)
                if batch is None:
                    batch = batches[w.partition] = rocksdict.WriteBatch(raw_mode=True)
                if w.value is None:
                    batch.delete(w.key)
                    produce(topic, None, w.key, w.partition, on_delivery)
                else:
                    value = encode_value(w.value())
                    batch.put(w.key, value)
                    produce(topic, value, w.key, w.partition, on_delivery)
            for partition, batch in batches.items():
                store._db_for_partition(partition).write(batch)
            self.producer.poll(0)
        left = await asyncio.get_running_loop().run_in_executor(
            None, self.producer.flush, self.timeout_s
        )
        if left or failures:
            raise OSError(f"changelog records not acknowledged: {left} left, {failures[:3]}")
        for (topic, partition), offset in delivered.items():
            stores[topic].set_persisted_offset(TP(topic, partition), offset)
        self.records += len(writes)
        self.batches += 1


def changelog_producer(config: dict[str, Any], linger_ms: int) -> Any:
    """One librdkafka producer for every table's changelog, acks from all replicas."""
    from confluent_kafka import Producer

    return Producer(
        {
            **config,
            "acks": "all",
            "linger.ms": max(1, linger_ms),
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )

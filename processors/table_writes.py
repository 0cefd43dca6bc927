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
  produced by one librdkafka producer, and the batch's own records are
  acknowledged before the batch is acked, so faust's recovery (and a standby's, and a global table's
  reader) rebuilds the table from the changelog exactly as if faust had
  written it, and compaction still keeps one record per key;
* the highest changelog offset per partition is stored as faust's persisted
  offset, so a restart on the same data directory reads only what is newer.

The same producer carries what a batch sends before its writes (alerts, dead
letters, forwards: :meth:`BulkWrites.send`, acknowledged before the writes are
made) and the watermark ticks after them (:meth:`BulkWrites.send_soon`), so
aiokafka's pure-Python producer is off the event loop's hot path.

:class:`TableWrites` is the same contract over plain faust ``__setitem__``
writes and faust's own producer: the fallback for tables that are not RocksDB
stores (unit tests).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import orjson
from confluent_kafka import KafkaException
from faust.types import TP

log = logging.getLogger(__name__)


class Write(NamedTuple):
    """One key's change in one batch: its encoded value (None deletes it), under ``partition``.

    The value is already bytes, made when the batch stopped changing it
    (:meth:`processors.batching.Effects.seal` says why that moment). A tuple,
    not a frozen dataclass: a batch makes one per changed key, and making one
    took 260 ns against the frozen dataclass's 760 ns (one
    ``object.__setattr__`` per field; timeit, 2026-12-06).
    """

    table: Any
    partition: int
    key: bytes
    value: bytes | None
    event: Any


class Outgoing(NamedTuple):
    """One record a batch sends (an alert, a dead letter, a forward), before its writes."""

    topic: Any  # the faust topic handle
    key: bytes | None
    value: bytes
    partition: int | None  # None: by key, as Kafka's Java client and aiokafka place it


class Writer(Protocol):
    async def send(self, records: Sequence[Outgoing]) -> None: ...

    async def send_soon(self, records: Sequence[Outgoing]) -> None: ...

    async def write(self, writes: Sequence[Write]) -> None: ...


class TableWrites:
    """Writes through faust's own table API, one key at a time (tables that are not RocksDB)."""

    async def send(self, records: Sequence[Outgoing]) -> None:
        """Through faust's producer; returns once every record is acknowledged."""
        futures = [
            await r.topic.send(key=r.key, value=r.value, partition=r.partition) for r in records
        ]
        if futures:
            await asyncio.gather(*futures)

    async def send_soon(self, records: Sequence[Outgoing]) -> None:
        """Through faust's producer, not waiting for the acknowledgements."""
        for r in records:
            await r.topic.send(key=r.key, value=r.value, partition=r.partition)

    async def write(self, writes: Sequence[Write]) -> None:
        from processors.batching import acting_for

        for w in writes:
            with acting_for(w.event):
                if w.value is not None:
                    w.table[w.key] = decode_value(w.value)
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
    """Table writes of a batch as write batches and bulk changelog records (module docstring).

    A batch waits for its own changelog records' acknowledgements, not for the
    producer to empty: every stage shares the one producer, and ``flush()``
    waits for the other stages' records too. The acknowledgements are served
    on the event loop's thread by one pump task that polls the producer while
    any batch waits, so a delivery report never has to take the interpreter
    lock from the busy main thread (a poller thread was tried first). Against
    ``flush()`` in back-to-back runs of the 200,000-reading bench phase
    (2026-12-05 18:15-18:24): 4,848 and 6,074 inputs/s drained against 4,330
    and 5,771. Four back-to-back pairs of the latency phase did not settle
    which is faster there: the machine's speed moved more than the two
    differed (bench/README.md).
    """

    PUMP_S = 0.001  # the pump's pause between two polls while a batch waits

    def __init__(
        self,
        producer: ChangelogProducer,
        timeout_s: float = 30.0,
        counts: Counter[str] | None = None,
    ) -> None:
        self.producer = producer
        self.timeout_s = timeout_s
        self.records = 0
        self.batches = 0
        # ``<table>_written_rows`` and ``<table>_written_bytes`` for /stats: a table
        # whose rows grow with its history shows here before the worker falls behind.
        self.counts: Counter[str] = Counter() if counts is None else counts
        self._waiting: set[_Acks] = set()
        self._pump: asyncio.Task[None] | None = None
        self._names: dict[int, str] = {}  # faust topic handle -> its name (asked once)

    async def send(self, records: Sequence[Outgoing]) -> None:
        """Produce a batch's alerts, dead letters and forwards; return once all are acknowledged.

        Through the same librdkafka producer as the changelog records, not
        faust's aiokafka one: in the latency bench (2026-12-07) aiokafka's
        pure-Python producer was about 7% of the event loop's thread, which
        every stage's flush waits on. The records and their partitions are the
        same: a keyed record goes where Kafka's Java client and aiokafka put it
        (``murmur2_random``, see :func:`changelog_producer`).
        """
        if not records:
            return
        acked = _Acks(len(records), asyncio.get_running_loop())
        self._produce(records, acked.on_delivery)
        await self._acknowledged(acked, len(records))

    async def send_soon(self, records: Sequence[Outgoing]) -> None:
        """Produce records nobody waits for (watermark ticks: a lost one is said again).

        Their delivery reports are served by the next batch's wait; a refused
        tick is logged.
        """
        self._produce(records, _log_refused)

    def _produce(self, records: Sequence[Outgoing], on_delivery: Any) -> None:
        produce, names = self.producer.produce, self._names
        try:
            for r in records:
                name = names.get(id(r.topic))
                if name is None:
                    name = names[id(r.topic)] = r.topic.get_topic_name()
                partition = -1 if r.partition is None else r.partition
                produce(name, r.value, r.key, partition, on_delivery)
        except (KafkaException, BufferError) as exc:
            # e.g. a partition the producer knows does not exist, or its queue full:
            # the broker's side of the batch failing, as a refused record is.
            raise OSError(f"records not produced: {exc}") from exc

    async def write(self, writes: Sequence[Write]) -> None:
        if not writes:
            return
        import rocksdict

        by_table: dict[int, list[Write]] = defaultdict(list)
        for w in writes:
            by_table[id(w.table)].append(w)
        acked = _Acks(len(writes), asyncio.get_running_loop())
        produce = self.producer.produce
        stores: dict[str, Any] = {}
        for group in by_table.values():
            table = group[0].table
            store = table.data
            topic = table.changelog_topic.get_topic_name()
            stores[topic] = store
            batches: dict[int, Any] = {}
            size = 0
            for w in group:
                batch = batches.get(w.partition)
                if batch is None:
                    batch = batches[w.partition] = rocksdict.WriteBatch(raw_mode=True)
                if w.value is None:
                    batch.delete(w.key)
                    produce(topic, None, w.key, w.partition, acked.on_delivery)
                else:
                    batch.put(w.key, w.value)
                    produce(topic, w.value, w.key, w.partition, acked.on_delivery)
                    size += len(w.value)
            for partition, batch in batches.items():
                store._db_for_partition(partition).write(batch)
            name = getattr(table, "name", topic)
            self.counts[f"{name}_written_rows"] += len(group)
            self.counts[f"{name}_written_bytes"] += size
        await self._acknowledged(acked, len(writes))
        for (topic, partition), offset in acked.delivered.items():
            stores[topic].set_persisted_offset(TP(topic, partition), offset)
        self.records += len(writes)
        self.batches += 1

    async def _acknowledged(self, acked: _Acks, produced: int) -> None:
        self._waiting.add(acked)
        if self._pump is None or self._pump.done():
            self._pump = asyncio.ensure_future(self._serve_acks())
        try:
            await asyncio.wait_for(asyncio.shield(acked.done), self.timeout_s)
        except TimeoutError:
            raise OSError(
                f"changelog records not acknowledged within {self.timeout_s:.0f} s:"
                f" {acked.left} of {produced} left"
            ) from None
        finally:
            self._waiting.discard(acked)
        if acked.failures:
            raise OSError(f"changelog records not acknowledged: {acked.failures[:3]}")

    async def _serve_acks(self) -> None:
        """Poll the producer (delivery reports run here, on the loop) while a batch waits."""
        poll = self.producer.poll
        while any(not acked.done.done() for acked in self._waiting):
            poll(0)
            await asyncio.sleep(self.PUMP_S)

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush what is left; returns the records still unacknowledged."""
        return self.producer.flush(timeout_s)


def _log_refused(error: Any, message: Any) -> None:
    if error is not None:
        log.warning(
            "%s[%s]: a record nobody waits for was refused: %s",
            message.topic(),
            message.partition(),
            error,
        )


class _Acks:
    """The delivery reports of one batch's changelog records.

    The count is known before the first record is produced, so an early
    report cannot settle ``done`` too soon.
    """

    def __init__(self, expected: int, loop: asyncio.AbstractEventLoop) -> None:
        self.left = expected
        self.done: asyncio.Future[None] = loop.create_future()
        self.delivered: dict[tuple[str, int], int] = {}
        self.failures: list[str] = []

    def on_delivery(self, error: Any, message: Any) -> None:
        if error is not None:
            self.failures.append(str(error))
        else:
            tp = (message.topic(), message.partition())
            if message.offset() > self.delivered.get(tp, -1):
                self.delivered[tp] = message.offset()
        self.left -= 1
        if self.left == 0 and not self.done.done():
            self.done.set_result(None)


def changelog_producer(config: dict[str, Any], linger_ms: int) -> Any:
    """One librdkafka producer for the changelogs, a batch's sends and the ticks; acks from all."""
    from confluent_kafka import Producer

    return Producer(
        {
            **config,
            "acks": "all",
            "linger.ms": max(1, linger_ms),
            # A keyed record without a partition (an alert) goes where Kafka's Java
            # client and aiokafka put it, so a key's records stay in one partition.
            "partitioner": "murmur2_random",
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )

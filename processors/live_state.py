"""The live worker's state over faust tables: decoded states, reorder buffers, deadlines.

Every class here keeps a faust table (RocksDB with a changelog topic) as the
truth and an in-memory index beside it that is rebuilt after a restart or a
rebalance. Writes go through :class:`processors.batching.Effects`, so they are
made once per key per batch and only after the batch's sends are acked.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from bisect import bisect_left
from collections import defaultdict
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache, partial
from typing import Any, NamedTuple

from faust.streams import current_event
from kafka.partitioner.default import murmur2

from processors.batching import Effects
from processors.screening_state import DriftState, SeenIds, pieces_of
from processors.table_writes import decode_value
from processors.trails import SiteVisits

Paged = DriftState | SiteVisits
"""States a live store keeps as a small head and pages of event time (their docstrings say why)."""

log = logging.getLogger(__name__)


@lru_cache(maxsize=1 << 16)
def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as both kafka-python and aiokafka use it.

    Cached: the same persons, sites and kiosks come back all day, and murmur2
    is pure Python here.
    """
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def time_key(at: datetime) -> str:
    """A sortable text for an instant: UTC microseconds, zero-padded."""
    return f"{int(at.timestamp() * 1_000_000):020d}"


_UNRESOLVED: Any = object()


class StateTable:
    """Decoded shard states by key, over a changelogged faust table.

    Decoding a state on every record cost more than the rules themselves (a
    kiosk's duplicate filter holds a day of event ids), and so did encoding it
    on every change: a state is decoded once, changed in place, and written
    once per batch. The cache is dropped after a rebalance, when partitions
    may have changed hands, and trimmed only between batches.

    A key not in the cache is read straight from the RocksDB partition of the
    event being judged (the partition every stage writes its keys under, see
    :mod:`processors.table_writes`), as faust reads a table it owns; a global
    table's faust read would try every partition first. In a day of new
    persons almost every read is such a miss, and faust's layers around the
    one RocksDB get cost more than the get itself.
    """

    def __init__(self, table: Any, cls: Any, limit: int = 200_000) -> None:
        self.table = table
        self.cls = cls
        self.limit = limit
        self.cache: dict[str, Any] = {}
        # Per cached key with a duplicate filter: the pieces of it the table holds.
        self.stored: dict[str, range] = {}
        # Per cached key of a paged state: the pages the table holds, in order.
        self.pages: dict[str, list[int]] = {}
        self.lost_ids = 0
        self._db_for_partition: Any = _UNRESOLVED  # the store exists once the app runs

    def load(self, key: str) -> Any:
        state = self.cache.get(key)
        if state is None:
            raw = self._read(key.encode())
            state = self.cls() if raw is None else self.cls.from_dict(raw)
            seen = getattr(state, "seen", None)
            if isinstance(seen, SeenIds):
                self._load_pieces(key, seen, raw.get("seen") if raw else None)
            if isinstance(state, (DriftState, SiteVisits)):
                self._load_pages(key, state)
            self.cache[key] = state
        return state

    def _load_pages(self, key: str, state: Paged) -> None:
        """Read a paged state's pages back; a whole record (or none) starts paging now."""
        if not state.paged:
            state.paged = True
            state.touch_all()  # the next save writes the record's samples as pages
            self.pages[key] = []
            return
        numbers = state.pages_to_read()
        records = [self._read(page_key(key, n)) for n in numbers]
        state.restore_pages(records)
        self.pages[key] = [n for n, r in zip(numbers, records, strict=True) if r is not None]

    def _load_pieces(self, key: str, seen: SeenIds, record: Any) -> None:
        """Complete a duplicate filter with the pieces its record left out."""
        seen.chunked = True
        count, pieces = pieces_of(record or {})
        if pieces:
            lost = seen.restore(count, [self._read(piece_key(key, n)) for n in pieces])
            if lost:
                self.lost_ids += lost
                log.warning("%s: %d seen ids of %s were not in the table", self.cls, lost, key)
        self.stored[key] = pieces

    def _read(self, key: bytes) -> Any:
        db_for_partition = self._db_for_partition
        if db_for_partition is _UNRESOLVED:
            store = getattr(self.table, "data", None)
            db_for_partition = self._db_for_partition = getattr(store, "_db_for_partition", None)
        event = current_event()
        if db_for_partition is None or event is None:  # not RocksDB (unit tests), or no event
            return self.table.get(key)
        stored = db_for_partition(event.message.partition).get(key)
        return None if stored is None else decode_value(stored)

    def save(self, effects: Effects, event: Any, key: str, state: Any) -> None:
        """Write ``state`` (the object :meth:`load` returned) when the batch is durable."""
        self.cache[key] = state
        # A state may have a cheaper way to the same stored bytes (PersonState.to_record).
        effects.write(event, self.table, key.encode(), getattr(state, "to_record", state.to_dict))
        seen = getattr(state, "seen", None)
        if isinstance(seen, SeenIds):
            self._save_pieces(effects, event, key, seen)
        if isinstance(state, (DriftState, SiteVisits)):
            self._save_pages(effects, event, key, state)

    def _save_pages(self, effects: Effects, event: Any, key: str, state: Paged) -> None:
        """Rewrite the pages this batch added samples to; delete those the window has left.

        Runs on every save, that is on every reading of a busy site: the stored
        pages are kept in order, and only the oldest is looked at for leaving,
        since a window leaves its pages from the old end. Looking at all of a
        site's hour (360 pages) took 36 us a reading against 0.1 us (timeit);
        with it, the site stage judged for 137 s in the 1,000,000-reading bench
        (2026-12-06 09:35) against 57 s before pages (05:41).
        """
        stored = self.pages.setdefault(key, [])
        for number in state.take_touched():
            effects.write(event, self.table, page_key(key, number), partial(state.page, number))
            if not stored or number > stored[-1]:
                stored.append(number)
            else:
                at = bisect_left(stored, number)
                if at == len(stored) or stored[at] != number:
                    stored.insert(at, number)
        while stored and state.dead(stored[0]):
            effects.write(event, self.table, page_key(key, stored.pop(0)), None)

    def _save_pieces(self, effects: Effects, event: Any, key: str, seen: SeenIds) -> None:
        """Write the duplicate filter's newly full pieces, delete those it has forgotten.

        The record written with them (its own ids, ``first`` and ``count``)
        says which pieces there are, so a reader finds them without a scan.
        """
        seen.chunked = True
        want, have = seen.pieces(), self.stored.get(key, range(0))
        if want == have:
            return
        for number in have:
            if number not in want:
                effects.write(event, self.table, piece_key(key, number), None)
        for number in want:
            if number not in have:
                value = partial(seen.piece, number)
                effects.write(event, self.table, piece_key(key, number), value)
        self.stored[key] = want

    def trim(self) -> None:
        if len(self.cache) > self.limit:
            self.forget()

    def forget(self) -> None:
        self.cache.clear()
        self.stored.clear()
        self.pages.clear()


PIECE_MARK = "#seen"
"""Between a key and a piece number in a duplicate filter's piece rows (ids never hold ``#``)."""
PAGE_MARK = "#page"
"""Between a key and a page number in a paged state's page rows."""


def piece_key(key: str, number: int) -> bytes:
    return f"{key}{PIECE_MARK}{number}".encode()


def page_key(key: str, number: int) -> bytes:
    return f"{key}{PAGE_MARK}{number}".encode()


def is_piece_key(key: bytes) -> bool:
    """Whether a row is a piece or a page of a state, not a state's own record."""
    return PIECE_MARK.encode() in key or PAGE_MARK.encode() in key


class Taken(NamedTuple):
    """A record given back by :meth:`ReorderBuffer.take_until`.

    ``item`` is what the stage decoded when the record arrived (None when the
    record was rebuilt from the table after a restart: decode ``record`` then).
    """

    record: bytes
    item: Any


class ReorderBuffer:
    """Records waiting for the watermark, kept as the forwarded messages that brought them.

    A row is one incoming message's records that were not judged on arrival,
    with their sort keys, under ``buf:<partition>:<offset>`` (so it stays in
    its partition's changelog). An in-memory heap indexes the records and is
    rebuilt from the table after a restart or a rebalance. A row is deleted
    once its last record is taken; a crash before that re-judges its taken
    records, which the states drop as seen.

    The heap also keeps what the stage decoded on arrival, so a record is
    parsed once per stage, not again when it is judged; and a row's table
    value is encoded only if the row outlives its batch (most are added and
    taken within one batch, and then never written).
    """

    def __init__(self, table: Any, gauges: MutableMapping[str, int] | None = None) -> None:
        self.table = table
        self.heaps: dict[int, list[tuple[str, bytes, int, bytes, Any]]] = defaultdict(list)
        self.remaining: dict[bytes, int] = {}
        self.indexed: set[int] = set()
        self.arrivals = itertools.count()  # ties never compare the decoded items
        # Records held for the watermark, on /stats as ``<table>_waiting``: records
        # that never leave mean a source that never moves on (see processors.watermarks).
        # Counts the partitions indexed since the last rebalance.
        # ``<table>_released_max``: the most records one watermark step released.
        # They are judged without yielding, so this sizes the stage's longest
        # stall in a backlog (``<stage>_judge_max_ms``): it follows the size of
        # the upstream group commit a tick covers, not the batch bound.
        self.gauges = gauges
        name = getattr(table, "name", "buffer")
        self.gauge, self.released_gauge = f"{name}_waiting", f"{name}_released_max"
        self.waiting = 0

    def _tell(self) -> None:
        if self.gauges is not None:
            self.gauges[self.gauge] = self.waiting

    def _index(self, partition: int) -> None:
        if partition in self.indexed:
            return
        self.indexed.add(partition)
        prefix = f"buf:{partition}:".encode()
        heap = self.heaps[partition]
        for key, rows in list(self.table.items()):
            if isinstance(key, bytes) and key.startswith(prefix) and rows:
                for sort_key, record in rows:
                    heap.append((sort_key, key, next(self.arrivals), record.encode(), None))
                self.remaining[key] = len(rows)
                self.waiting += len(rows)
        heapq.heapify(heap)
        self._tell()

    def forget(self) -> None:
        """After a rebalance the table is the truth: rebuild each heap on next use."""
        self.heaps.clear()
        self.remaining.clear()
        self.indexed.clear()
        self.waiting = 0
        self._tell()

    def add(self, effects: Effects, event: Any, rows: Sequence[tuple[str, bytes, Any]]) -> None:
        """Buffer ``rows`` (sort key, record, decoded item) that arrived in ``event``."""
        partition = event.message.partition
        self._index(partition)
        key = f"buf:{partition}:{event.message.offset}".encode()
        if key in self.remaining:
            return  # a re-delivered message whose row is still here
        heap = self.heaps[partition]
        arrivals = self.arrivals
        for sort_key, record, item in rows:
            heapq.heappush(heap, (sort_key, key, next(arrivals), record, item))
        self.remaining[key] = len(rows)
        self.waiting += len(rows)
        self._tell()
        effects.write(event, self.table, key, lambda: [[s, r.decode()] for s, r, _ in rows])

    def take_until(self, effects: Effects, event: Any, bound: str) -> list[Taken]:
        """Remove and return, in order, the records whose sort key is <= ``bound``."""
        return self.take_some(effects, event, bound, None)[0]

    def take_some(
        self, effects: Effects, event: Any, bound: str, limit: int | None
    ) -> tuple[list[Taken], str | None]:
        """Like :meth:`take_until`, but at most ``limit`` records.

        Also returns, when records <= ``bound`` are left behind, the sort key
        of the last one taken (how far the partition has been judged), else None.
        """
        partition = event.message.partition
        self._index(partition)
        heap = self.heaps[partition]
        out: list[Taken] = []
        table = self.table
        last = ""
        while heap and heap[0][0] <= bound:
            if limit is not None and len(out) >= limit:
                break
            last, key, _, record, item = heapq.heappop(heap)
            out.append(Taken(record, item))
            left = self.remaining[key] - 1
            if left:
                self.remaining[key] = left
                continue
            del self.remaining[key]
            if not effects.discard_write(table, key):  # written in an earlier batch
                effects.write(event, table, key, None)
        if out:
            self.waiting -= len(out)
            self._tell()
            gauges = self.gauges
            if gauges is not None and len(out) > gauges.get(self.released_gauge, 0):
                gauges[self.released_gauge] = len(out)
        stopped_short = bool(heap) and heap[0][0] <= bound
        return out, (last if stopped_short else None)


@dataclass
class PendingIndex:
    """Re-measure deadlines of the persons on this worker, per person partition."""

    heaps: dict[int, list[tuple[datetime, str]]] = field(default_factory=lambda: defaultdict(list))
    indexed: set[int] = field(default_factory=set)

    def forget(self) -> None:
        self.heaps.clear()
        self.indexed.clear()

    def push(self, partition: int, deadline: datetime, person_id: str) -> None:
        heapq.heappush(self.heaps[partition], (deadline, person_id))

    def due(self, partition: int, before: datetime) -> list[str]:
        heap = self.heaps[partition]
        out: list[str] = []
        while heap and heap[0][0] < before:
            out.append(heapq.heappop(heap)[1])
        return out

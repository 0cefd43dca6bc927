"""Offset commits that never pass a record the worker has not processed.

faust 0.15 commits, per partition, the end of the first run of consecutive
acknowledged offsets. Two gaps in that rule lost records in the two-worker
test (issue 12: the fever persons of one by-person partition lost their first
minutes when a second worker joined):

* **A partition with nothing committed yet** (a new internal topic, or a
  group's first start). faust's check for a hole at the head of the
  acknowledged offsets runs only when a committed offset is known (and is
  truthy, so not 0 either), and aiokafka's ``seek_to_committed`` leaves such a
  partition where it is. Records fetched before a rebalance and dropped with
  the agents' queues are then skipped for good: the fetch position is past
  them, the next records are acknowledged, and their end is committed.
* **A hole of exactly one record at the committed offset.** The check is
  ``min(acked) - committed > 1`` while ``committed`` is the next offset to
  read, so one unacknowledged record right there is committed past.

The fix, installed once by :func:`install` (``processors.app`` calls it):
after faust's own seek to the committed offsets, every stream partition with
nothing committed is sought to its first offset (what ``earliest`` promises),
and that offset becomes its committed offset, so the head check has something
to compare with. On topics that are never compacted, the head of the
acknowledged offsets must then be exactly the committed offset before anything
is committed; a commit held back is only late (the records are re-read after
a crash), never a loss. The compacted quarantine topic keeps faust's rule: a
missing offset there may be a record compaction removed.

A third gap, found in the two-worker SIGKILL test (2026-12-05): a worker that
took over partitions delivered a partition's records from an offset well past
its committed offset, never the ones in between. faust's fetch loop treats
such a jump in offsets as a compacted-away range (``Consumer._add_gap``),
counts it as acknowledged and commits past it, so a fetch hiccup became
silent loss of readings. On a never-compacted topic a jump can only mean
records the fetch skipped, so :class:`FetchContinuity` holds the agents to
the next offset they are owed: a record past it is not delivered, the
partition is sought back to that offset, and the records come again in
order. Only if the records are still missing after that (retention deleted
them) is the jump accepted, with an error in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from faust.transport.consumer import Consumer, ensure_TP

log = logging.getLogger(__name__)

_installed: dict[str, Any] = {}


def head_is_acked(acked: Iterable[int], committed: int | None) -> bool:
    """Whether committing the first run of ``acked`` skips nothing after ``committed``.

    ``committed`` is the next offset to read (Kafka's meaning); None means the
    partition's start is unknown, so nothing can be committed yet.
    """
    offsets = list(acked)
    return bool(offsets) and committed is not None and min(offsets) <= committed


class FetchContinuity:
    """Per stream partition of a never-compacted topic: the next offset its agents are owed.

    Pure bookkeeping. :meth:`start` at every seek to the committed offsets;
    :meth:`check` for every fetched record, which answers what to do with it.
    """

    DELIVER = "deliver"
    REFETCH = "refetch"  # a jump: seek back to the owed offset, do not deliver this record
    SKIP = "skip"  # records of a batch fetched before that seek took effect
    GONE = "gone"  # still a jump after the seek: the records no longer exist

    def __init__(self) -> None:
        self.owed: dict[Any, int] = {}
        self.sought: dict[Any, tuple[int, int]] = {}  # tp -> (owed offset, fetch batch of the seek)
        self.batch = 0

    def start(self, tp: Any, offset: int | None) -> None:
        self.sought.pop(tp, None)
        if offset is None:
            self.owed.pop(tp, None)
        else:
            self.owed[tp] = offset

    def next_batch(self) -> None:
        self.batch += 1

    def check(self, tp: Any, offset: int) -> str:
        owed = self.owed.get(tp)
        if owed is None or offset <= owed:  # in order, or a re-delivery after a seek back
            self.owed[tp] = offset + 1
            self.sought.pop(tp, None)
            return self.DELIVER
        sought = self.sought.get(tp)
        if sought is None or sought[0] != owed:
            self.sought[tp] = (owed, self.batch)
            return self.REFETCH
        if self.batch < sought[1] + 2:
            return self.SKIP
        self.owed[tp] = offset + 1
        self.sought.pop(tp, None)
        return self.GONE


def _continuity(consumer: Any) -> FetchContinuity:
    continuity = consumer.__dict__.get("_scantrail_continuity")
    if continuity is None:
        continuity = consumer.__dict__["_scantrail_continuity"] = FetchContinuity()
    return continuity  # type: ignore[no-any-return]


def install(gapless: Callable[[str], bool]) -> None:
    """Patch faust's consumer (once per process); ``gapless(topic)``: never compacted."""
    _installed["gapless"] = gapless
    if "new_offset" in _installed:
        return
    original_new_offset = Consumer._new_offset
    _installed["new_offset"] = original_new_offset

    def _new_offset(self: Any, tp: Any) -> int | None:
        acked = self._acked[tp]
        if acked and not self._gap.get(tp) and _installed["gapless"](tp.topic):
            if not head_is_acked(acked, self._committed_offset[tp]):
                return None  # the head is still in flight (or was dropped): wait
        result: int | None = original_new_offset(self, tp)
        return result

    async def perform_seek(self: Any) -> None:
        committed = await self.seek_to_committed()
        acking = self.app.topics.acks_enabled_for
        uncommitted = [tp for tp, offset in committed.items() if not offset and acking(tp.topic)]
        starts: dict[Any, int] = {}
        if uncommitted:
            earliest = await self.earliest_offsets(*uncommitted)
            for tp in uncommitted:
                first = earliest.get(tp)
                if first is None:
                    continue
                position = await self.position(tp)
                if position is not None and position > first:
                    log.warning(
                        "%s[%d]: nothing committed, but the fetch position is %d;"
                        " seeking back to its first offset %d so no record is skipped",
                        tp.topic,
                        tp.partition,
                        position,
                        first,
                    )
                await self._seek(tp, first)
                starts[tp] = first
        self._read_offset.update(
            {ensure_TP(tp): offset if offset else None for tp, offset in committed.items()}
        )
        self._committed_offset.update(
            {ensure_TP(tp): offset for tp, offset in committed.items() if offset}
        )
        self._committed_offset.update({ensure_TP(tp): offset for tp, offset in starts.items()})

        continuity = _continuity(self)
        for tp, offset in committed.items():
            tp = ensure_TP(tp)
            continuity.start(tp, starts.get(tp, offset if offset else None))

    original_getmany = Consumer.getmany

    async def getmany(self: Any, timeout: float) -> Any:
        continuity = _continuity(self)
        continuity.next_batch()
        acking = self.app.topics.acks_enabled_for
        async for tp, message in original_getmany(self, timeout):
            if acking(tp.topic) and _installed["gapless"](tp.topic):
                verdict = continuity.check(tp, message.offset)
                if verdict == FetchContinuity.REFETCH:
                    owed = continuity.owed[tp]
                    log.warning(
                        "%s[%d]: fetched offset %d while offset %d was never delivered;"
                        " seeking back to %d so no record is skipped",
                        tp.topic,
                        tp.partition,
                        message.offset,
                        owed,
                        owed,
                    )
                    await self._seek(tp, owed)
                    continue
                if verdict == FetchContinuity.SKIP:
                    continue
                if verdict == FetchContinuity.GONE:
                    log.error(
                        "%s[%d]: offsets before %d are gone from the broker (retention?);"
                        " they were never delivered",
                        tp.topic,
                        tp.partition,
                        message.offset,
                    )
            yield tp, message

    Consumer._new_offset = _new_offset
    Consumer.perform_seek = perform_seek
    Consumer.getmany = getmany

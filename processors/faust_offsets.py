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

    Consumer._new_offset = _new_offset
    Consumer.perform_seek = perform_seek

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


A third way to lose records, and what keeps the rule live (2026-12-05: the
two-process bench's ``by-person[0]`` never committed in 10 minutes, and the
two-worker SIGKILL test lost readings). faust's fetch loop drops records on
the way to the agents: the rest of a fetch when the flow stops or the
generation changes mid-way, a delivery abandoned at a rebalance, a
re-fetched record below the loop's read offset. The fetch position stays past
them, so they never come again unless a rebalance seeks back. faust then
sees the next record as a jump and records it as a compacted-away range
(``Consumer._add_gap``), i.e. acknowledged, and commits past it: silent loss.

* On a never-compacted topic a jump can only be such a drop, so it is not
  recorded as a gap (:func:`_add_gap` logs it); the head check above then
  holds the commit at the missing record: no loss, but no progress either.
* :class:`HeadWatch` (a timer, :func:`watch_heads`) makes it progress: a
  partition whose commit waits on a record that no agent holds any more (it
  is not among faust's unacknowledged messages) for :data:`LOOKS` looks in a
  row is sought back to its committed offset, and the records come again.
  Every stage drops event ids it has already seen, so what comes twice
  changes nothing. If the same offset is still missing after
  :data:`TRIES` seek-backs (retention deleted it), faust's rule is let
  through for that range, with an error in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.transport.consumer import Consumer, ensure_TP

log = logging.getLogger(__name__)

_installed: dict[str, Any] = {}

LOOK_S = 5.0  # how often HeadWatch looks
LOOKS = 3  # looks in a row a partition must wait on a lost record before it is sought back
TRIES = 3  # seek-backs to the same offset before its records count as gone from the broker


def head_is_acked(acked: Iterable[int], committed: int | None) -> bool:
    """Whether committing the first run of ``acked`` skips nothing after ``committed``.

    ``committed`` is the next offset to read (Kafka's meaning); None means the
    partition's start is unknown, so nothing can be committed yet.
    """
    offsets = list(acked)
    return bool(offsets) and committed is not None and min(offsets) <= committed


def waiting_on_lost_records(
    committed: Mapping[Any, int | None],
    acked: Mapping[Any, Sequence[int]],
    ends: Mapping[Any, int | None],
    held: Mapping[Any, int],
) -> dict[Any, int]:
    """Partitions whose commit waits on records no agent holds: partition -> committed offset.

    ``held`` is the lowest offset each partition has in flight (delivered,
    not yet acknowledged). A partition waits on lost records when the record
    at its committed offset is neither acknowledged nor in flight, yet either
    later records are acknowledged (a hole at the head) or the partition has
    records past it (nothing arrives at all).
    """
    out: dict[Any, int] = {}
    for tp, offset in committed.items():
        if offset is None:
            continue
        done = acked.get(tp) or ()
        head = min(done) if done else None
        if head is not None and head <= offset:
            continue  # the head is acknowledged: faust may commit
        if head is None:
            end = ends.get(tp)
            if end is None or end <= offset:
                continue  # nothing to deliver
        first_held = held.get(tp)
        if first_held is not None and (head is None or first_held < head):
            continue  # an agent still holds a record below the first acknowledged one
        out[tp] = offset
    return out


@dataclass
class HeadWatch:
    """Which partitions waiting on lost records to seek back now, and which to give up on.

    Pure bookkeeping over what :func:`waiting_on_lost_records` answers at each look.
    """

    looks: int = LOOKS
    tries: int = TRIES
    waited: dict[Any, tuple[int, int]] = field(default_factory=dict)  # tp -> (offset, looks)
    sought: dict[Any, tuple[int, int]] = field(default_factory=dict)  # tp -> (offset, seek-backs)

    def look(self, waiting: Mapping[Any, int]) -> tuple[list[Any], list[Any]]:
        """(partitions to seek back to their committed offset, partitions to give up on)."""
        seek, give_up = [], []
        waited: dict[Any, tuple[int, int]] = {}
        for tp, offset in waiting.items():
            before = self.waited.get(tp)
            looks = before[1] + 1 if before is not None and before[0] == offset else 1
            if looks < self.looks:
                waited[tp] = (offset, looks)
                continue
            done = self.sought.get(tp)
            tries = done[1] + 1 if done is not None and done[0] == offset else 1
            if tries > self.tries:
                give_up.append(tp)
                self.sought.pop(tp, None)
            else:
                seek.append(tp)
                self.sought[tp] = (offset, tries)
        self.waited = waited
        return seek, give_up


def _new_offset(self: Any, tp: Any) -> int | None:
    acked = self._acked[tp]
    if acked and not self._gap.get(tp) and _installed["gapless"](tp.topic):
        if not head_is_acked(acked, self._committed_offset[tp]):
            return None  # the head is still in flight (or was dropped): wait
    result: int | None = _installed["new_offset"](self, tp)
    return result


async def _add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
    if not _installed["gapless"](tp.topic):
        await _installed["add_gap"](self, tp, offset_from, offset_to)  # compaction, maybe
        return
    log.warning(
        "%s[%d]: offsets %d..%d were fetched past but never delivered; the commit waits"
        " for them, and they are fetched again if they do not come",
        tp.topic,
        tp.partition,
        offset_from,
        offset_to - 1,
    )


async def _perform_seek(self: Any) -> None:
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


def _observe(consumer: Any) -> dict[Any, int]:
    """What :func:`waiting_on_lost_records` needs, read from faust's consumer."""
    gapless, acking = _installed["gapless"], consumer.app.topics.acks_enabled_for
    active = consumer._active_partitions
    watched = [
        tp
        for tp in consumer.assignment()
        if acking(tp.topic) and gapless(tp.topic) and (active is None or tp in active)
    ]
    held: dict[Any, int] = {}
    for message in list(consumer._unacked_messages):
        tp, offset = message.tp, message.offset
        if offset < held.get(tp, offset + 1):
            held[tp] = offset
    ends: dict[Any, int | None] = {}
    for tp in watched:
        try:
            ends[tp] = consumer.highwater(tp)
        except Exception:  # not known yet
            ends[tp] = None
    return waiting_on_lost_records(
        {tp: consumer._committed_offset.get(tp) for tp in watched},
        {tp: consumer._acked.get(tp) or () for tp in watched},
        ends,
        held,
    )


async def repair_heads(consumer: Any, watch: HeadWatch) -> None:
    """One look of :class:`HeadWatch` at faust's consumer, and its seek-backs."""
    if not consumer.flow_active:
        watch.waited.clear()  # a rebalance seeks to the committed offsets itself
        return
    seek, give_up = watch.look(_observe(consumer))
    for tp in seek:
        offset = consumer._committed_offset.get(tp)
        log.warning(
            "%s[%d]: the record at the committed offset %d never reached the agents;"
            " seeking back so it comes again",
            tp.topic,
            tp.partition,
            offset,
        )
        consumer._read_offset[tp] = None  # else faust's fetch loop drops what comes again
        await consumer._seek(tp, offset)
    for tp in give_up:
        offset, acked = consumer._committed_offset.get(tp), consumer._acked.get(tp)
        if not acked:
            continue  # nothing acknowledged past it: nothing to commit past either
        log.error(
            "%s[%d]: offsets %d..%d did not come again after %d seek-backs (deleted by"
            " retention?); committing past them: they were never processed",
            tp.topic,
            tp.partition,
            offset,
            min(acked) - 1,
            watch.tries,
        )
        await _installed["add_gap"](consumer, tp, offset, min(acked))


def watch_heads(app: faust.App) -> None:
    """Look every :data:`LOOK_S` for commits waiting on lost records (:class:`HeadWatch`)."""
    watch = HeadWatch()

    async def seek_back_lost_records() -> None:
        await repair_heads(app.consumer, watch)

    app.timer(interval=LOOK_S, name="lost-records")(seek_back_lost_records)


def install(gapless: Callable[[str], bool]) -> None:
    """Patch faust's consumer (once per process); ``gapless(topic)``: never compacted."""
    _installed["gapless"] = gapless
    if "new_offset" in _installed:
        return
    _installed["new_offset"] = Consumer._new_offset
    _installed["add_gap"] = Consumer._add_gap
    Consumer._new_offset = _new_offset
    Consumer._add_gap = _add_gap
    Consumer.perform_seek = _perform_seek

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

* On a never-compacted topic a jump can only be such a drop. The record that
  jumps is not delivered: the partition is sought back to the offset its
  agents are owed (:class:`Owed`, checked in :func:`_getmany`), so the
  records come again, in order. Order matters as much as loss: the later
  stages judge in event time behind watermark ticks that travel in the same
  partitions, and a dropped record delivered after the ones behind it would
  be judged late (the CI run of 2026-12-05 10:00 failed that way). A
  partition assigned but not yet sought to its committed offset delivers
  nothing: faust fetched a taken-over partition from where another worker
  had read, before its seek, and one reading came ahead of 800 others. Only if
  the broker no longer has the skipped records (retention) is the jump
  accepted, with an error in the log. A jump is never recorded as a gap
  (:func:`_add_gap` logs one if faust sees it), so the head check above holds
  the commit at any record still missing.
* :class:`HeadWatch` (a timer, :func:`watch_heads`) makes it progress: a
  partition whose commit waits on a lost record for :data:`LOOKS` looks in a
  row is sought back to its committed offset, and the records come again.
  A record counts as lost only when aiokafka has handed it to faust (its
  position is past it) and it is nowhere on its way: not buffered by
  aiokafka, not in the fetch faust is handing out, not queued for a stream,
  not delivered and unacknowledged, and not being committed past by a commit in
  flight (faust takes offsets off its acknowledged list before a commit, which took
  seconds at peak: :func:`_commit_tps`). So a partition that simply waits its turn
  in a backlog is left alone. Every stage drops event ids it has already seen, so what comes
  twice changes nothing. Records that retention deleted before they were
  processed are committed past, with an error in the log. The worker calls
  :func:`watch_heads`; both outcomes are counted on ``/stats``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.transport.consumer import Consumer, ensure_TP

log = logging.getLogger(__name__)

_installed: dict[str, Any] = {}

LOOK_S = 5.0  # how often HeadWatch looks
LOOKS = 2  # looks in a row a partition must wait on a lost record before it is sought back


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
    coming: Mapping[Any, int | None],
    fetched_to: Mapping[Any, int | None],
    committing: Mapping[Any, int] | None = None,
) -> dict[Any, int]:
    """Partitions whose commit waits on a record that is nowhere: partition -> committed offset.

    ``coming`` is the lowest offset each partition still has on its way
    (buffered by the client, in the fetch faust is handing out, or delivered
    and not yet acknowledged); ``fetched_to`` is the client's position: the
    client has handed every record below it to faust; ``committing`` the
    offset a commit in flight moves each partition to (:func:`_commit_tps`).
    The record at the committed offset is lost when it is not acknowledged,
    not being committed past, the client has handed it out, and nothing on
    its way starts at or below it.
    """
    out: dict[Any, int] = {}
    committing = committing or {}
    for tp, offset in committed.items():
        if offset is None:
            continue
        done = acked.get(tp) or ()
        if done and min(done) <= offset:
            continue  # the head is acknowledged: faust may commit
        moving_to = committing.get(tp)
        if moving_to is not None and moving_to > offset:
            continue  # acknowledged, and taken off the list by the commit in flight
        position = fetched_to.get(tp)
        if position is None or position <= offset:
            continue  # the client has not handed it out yet: a backlog
        first = coming.get(tp)
        if first is not None and first <= offset:
            continue  # on its way
        out[tp] = offset
    return out


@dataclass
class HeadWatch:
    """Partitions to seek back: those that waited on the same lost record ``looks`` looks in a row.

    One look could catch a record between the client's buffer and faust's
    fetch, or between a fetch and an agent; two looks apart cannot.
    """

    looks: int = LOOKS
    waited: dict[Any, tuple[int, int]] = field(default_factory=dict)  # tp -> (offset, looks)

    def look(self, waiting: Mapping[Any, int]) -> list[Any]:
        due, waited = [], {}
        for tp, offset in waiting.items():
            before = self.waited.get(tp)
            looks = before[1] + 1 if before is not None and before[0] == offset else 1
            if looks >= self.looks:
                due.append(tp)
            else:
                waited[tp] = (offset, looks)
        self.waited = waited
        return due


@dataclass
class Owed:
    """Per partition of a never-compacted topic: the next offset its agents are owed.

    The person, site and household stages judge in event-time order behind
    watermark ticks that travel in the same partitions as the records, so a
    record must not reach them after the ones behind it: a dropped record
    fetched again later would be judged late, and out of order. :meth:`check`
    answers, for each fetched record, whether it skips records still owed.
    """

    next: dict[Any, int | None] = field(default_factory=dict)  # None: sought, start unknown
    # Per partition, the last offset delivered although it jumped (what it skipped is gone).
    jumped: dict[Any, int] = field(default_factory=dict)
    # Partitions that fetched records while their start was not known, since the seek began.
    held: set[Any] = field(default_factory=set)

    def begin(self) -> None:
        """A seek to the committed offsets begins; it fetches again what was held back before."""
        self.held.clear()

    def hold(self, tp: Any) -> None:
        """``tp`` fetched a record before it was sought (:meth:`sought`); it was not delivered."""
        self.held.add(tp)

    def start(self, offsets: Mapping[Any, int | None]) -> list[Any]:
        """After a seek to the committed offsets: each partition is owed from there.

        Only these partitions deliver until the next seek: one assigned since
        has no known start yet (:meth:`sought`). Returns the partitions to seek
        again to where they are owed from: those that held records back since
        :meth:`begin`. The seek runs partition by partition, each awaited on
        faust's consumer thread, and the fetch goes on meanwhile: a partition
        already sought fetches from its new position while its start is not
        known here yet, and those records are held back too. Without a second
        seek nothing fetches them again; when they were all the partition had
        (a quiet partition, or a backlog small enough for one fetch), only
        :class:`HeadWatch` brought them, two looks later (the two-worker SIGKILL
        test, 2026-12-07: up to 18 partitions about 11 s after a takeover).
        """
        self.next = dict(offsets)
        again = [tp for tp in self.held if self.next.get(tp) is not None]
        self.held.clear()
        return again

    def sought(self, tp: Any) -> bool:
        """Whether ``tp`` was sought to its committed offset since it was assigned."""
        return tp in self.next

    def restart(self, tp: Any, offset: int) -> None:
        """After a seek back of one partition."""
        self.next[tp] = offset

    def check(self, tp: Any, offset: int) -> int | None:
        """The owed offset ``offset`` jumps past (do not deliver it), or None (deliver it)."""
        owed = self.next.get(tp)
        if owed is not None and offset > owed:
            return owed
        self.next[tp] = offset + 1  # in order, or again after a seek back
        return None

    def accept(self, tp: Any, offset: int) -> None:
        """Deliver ``offset`` although it jumps (what it skips no longer exists)."""
        self.next[tp] = offset + 1
        self.jumped[tp] = offset


@dataclass
class InOrder:
    """Per partition of a never-compacted input, the next offset one stage is owed.

    :class:`Owed` keeps the fetch from handing out a record past one still
    owed, but faust can still drop a record after that check, on its way to
    the agent (the drops in the module docstring); the records behind it then
    reach the stage first, and HeadWatch brings the dropped one again only
    seconds later. Judged in that order, the records behind the hole move
    their source's watermark past it, and the person and site stages judge the
    dropped records late, out of event-time order: the two-worker SIGKILL test
    raised 323 alerts other than ``scantrail screen``'s that way (2026-12-07,
    after a takeover). So a stage takes the next offset it is owed, or one it
    has passed (again, after a seek back: every stage drops the event ids it
    has seen), and leaves a record past a hole to the seek back that fills it.
    """

    next: dict[Any, int] = field(default_factory=dict)
    generation: int | None = None

    def admit(self, tp: Any, offset: int, start: int | None, jumped: int | None) -> bool:
        """Whether the stage judges this record now.

        ``start`` is where the partition was sought to (its committed offset),
        for the first record of a generation; ``jumped`` the last offset the
        fetch delivered although it jumped over records retention deleted.
        """
        owed = self.next.get(tp, start)
        if owed is not None and offset > owed:
            if jumped is None or not owed < jumped <= offset:
                return False
        self.next[tp] = max(self.next.get(tp, 0), offset + 1)
        return True

    def regenerate(self, generation: int | None) -> None:
        """A rebalance sought every partition to its committed offset: start over."""
        if generation != self.generation:
            self.next.clear()
            self.generation = generation


def disown(consumer: Any, message: Any) -> None:
    """Let go of a record a stage left for a seek back, without acknowledging its offset.

    faust's ack would put the offset on the acknowledged list, and once the
    hole before it filled, a commit could pass the record's second delivery
    before the stage had judged it. Marked acknowledged, faust's own ack of
    the record does nothing, and waiting for the streams (a rebalance) does
    not wait for it.
    """
    message.acked = True
    consumer._unacked_messages.discard(message)


def in_order(
    stream: Any, counts: Counter[str], stage: str
) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """What of each batch a stage may judge now (:class:`InOrder`); the rest is counted.

    ``<stage>_out_of_order`` on ``/stats`` counts records left for a seek back.
    """
    order = InOrder()
    skipped = f"{stage}_out_of_order"
    holes: set[tuple[Any, int]] = set()  # logged once each

    watched: dict[str, bool] = {}  # per topic: never compacted and acknowledged

    def let_go(consumer: Any, message: Any, owed: int) -> None:
        tp = message.tp
        if (tp, owed) not in holes:
            holes.add((tp, owed))
            log.warning(
                "%s: %s[%d] offset %d came while offset %d never did; it is left for"
                " the seek back that brings both, in order",
                stage,
                tp.topic,
                tp.partition,
                message.offset,
                owed,
            )
        counts[skipped] += 1
        disown(consumer, message)

    def admit(events: Sequence[Any]) -> Sequence[Any]:
        gapless, app = _installed.get("gapless"), getattr(stream, "app", None)
        if gapless is None or app is None:
            return events
        consumer, owing = app.consumer, order.next
        kept: list[Any] = []
        for event in events:
            message = event.message
            tp = getattr(message, "tp", None)
            if tp is None:
                kept.append(event)
                continue
            topic = tp.topic
            if topic not in watched:
                watched[topic] = gapless(topic) and app.topics.acks_enabled_for(topic)
            if not watched[topic]:
                kept.append(event)
                continue
            if message.generation_id != order.generation:
                order.regenerate(message.generation_id)  # clears ``owing`` in place
            offset = message.offset
            if owing.get(tp) == offset:  # the next one, as nearly always: no more to ask
                owing[tp] = offset + 1
                kept.append(event)
            elif order.admit(
                tp, offset, consumer._committed_offset.get(tp), _owed(consumer).jumped.get(tp)
            ):
                kept.append(event)
            else:
                let_go(consumer, message, owing.get(tp, -1))
        return kept

    return admit


def _new_offset(self: Any, tp: Any) -> int | None:
    acked = self._acked[tp]
    if acked and not self._gap.get(tp) and _installed["gapless"](tp.topic):
        if not head_is_acked(acked, self._committed_offset[tp]):
            return None  # the head is still in flight (or was dropped): wait
    result: int | None = _installed["new_offset"](self, tp)
    if result is not None:  # faust took these offsets off the acknowledged list
        _committing(self)[tp] = result
    return result


def _committing(consumer: Any) -> dict[Any, int]:
    """Per partition: the offset a commit in flight moves it to (see :func:`_commit_tps`)."""
    committing = consumer.__dict__.get("_scantrail_committing")
    if committing is None:
        committing = consumer.__dict__["_scantrail_committing"] = {}
    return committing  # type: ignore[no-any-return]


async def _commit_tps(self: Any, tps: Iterable[Any], start_new_transaction: bool) -> bool:
    """faust's commit of ``tps``, its offsets marked as being committed while it runs.

    faust takes the offsets it commits off the acknowledged list first
    (``_new_offset``), then flushes the producer and commits, and only then
    moves its committed offsets: the record at a committed offset is, for the
    length of a commit, neither acknowledged nor on its way. Commits of many
    seconds happen at peak (a 7.4 s one in the 1,000,000-reading bench of
    2026-12-06 12:12), and two looks of :class:`HeadWatch` inside one sought
    back every partition at once: 127,000 readings judged again.
    """
    tps = list(tps)
    try:
        result: bool = await _installed["commit_tps"](self, tps, start_new_transaction)
        return result
    finally:
        committing = _committing(self)
        for tp in tps:
            committing.pop(tp, None)


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
    owed = _owed(self)
    owed.begin()  # before the first await: records fetched from here on may be from the new start
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
    gapless = _installed["gapless"]
    again = owed.start(
        {
            ensure_TP(tp): starts.get(tp, offset if offset else None)
            for tp, offset in committed.items()
            if acking(tp.topic) and gapless(tp.topic)
        }
    )
    for tp in sorted(again):
        # Faust's own read offset is left as the seek set it: nothing of these was delivered.
        await self._seek(tp, owed.next[tp])
    if again:
        log.info(
            "%d partitions fetched records while they were being sought to their committed"
            " offsets; sought again so those records come: %s",
            len(again),
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(again)),
        )


def _owed(consumer: Any) -> Owed:
    owed = consumer.__dict__.get("_scantrail_owed")
    if owed is None:
        owed = consumer.__dict__["_scantrail_owed"] = Owed()
    return owed  # type: ignore[no-any-return]


async def _getmany(self: Any, timeout: float) -> Any:
    """faust's fetch, each partition of a never-compacted topic delivered without a jump."""
    owed, gapless, acking = _owed(self), _installed["gapless"], self.app.topics.acks_enabled_for
    sought: set[Any] = set()  # partitions sought back during this fetch: the rest of it waits
    async for tp, message in _installed["getmany"](self, timeout):
        if tp in sought:
            continue
        if acking(tp.topic) and gapless(tp.topic):
            if not owed.sought(tp):
                # Assigned, but not yet sought to its committed offset: where its agents
                # stand is not known, so nothing is delivered; the seek that follows
                # (or, during the seek, a second one: Owed.start) fetches these again.
                owed.hold(tp)
                continue
            skipped = owed.check(tp, message.offset)
            if skipped is not None:
                if not await _jump_is_a_loss(self, tp, skipped, message.offset):
                    owed.accept(tp, message.offset)
                else:
                    sought.add(tp)
                    await self._seek(tp, skipped)
                    continue
        yield tp, message


async def _jump_is_a_loss(consumer: Any, tp: Any, owed: int, offset: int) -> bool:
    """Whether the records ``owed..offset-1`` still exist, so must be fetched again (logged)."""
    earliest = (await consumer.earliest_offsets(tp)).get(tp)
    if earliest is not None and earliest > owed:
        log.error(
            "%s[%d]: offsets %d..%d were never processed and are gone from the broker"
            " (retention); going on from %d",
            tp.topic,
            tp.partition,
            owed,
            earliest - 1,
            offset,
        )
        await _installed["add_gap"](consumer, tp, owed, earliest)
        return False
    log.warning(
        "%s[%d]: fetched offset %d while offset %d never reached the agents;"
        " seeking back to %d so they come in order",
        tp.topic,
        tp.partition,
        offset,
        owed,
        owed,
    )
    return True


def _observe(consumer: Any) -> dict[Any, int]:
    """What :func:`waiting_on_lost_records` needs, read from faust's consumer and its client."""
    gapless, acking = _installed["gapless"], consumer.app.topics.acks_enabled_for
    watched = [tp for tp in consumer.assignment() if acking(tp.topic) and gapless(tp.topic)]
    coming: dict[Any, int | None] = {}

    def on_its_way(tp: Any, offset: int) -> None:
        first = coming.get(tp)
        if first is None or offset < first:
            coming[tp] = offset

    for message in list(consumer._unacked_messages):
        on_its_way(message.tp, message.offset)
    read_offset = consumer._read_offset
    for tp, records in (consumer.__dict__.get("_scantrail_fetch") or {}).items():
        last = read_offset.get(tp)
        for record in records:  # the fetch faust is handing out: what is not handed out yet
            # (>=: after a seek faust's read offset is the next offset, not the last one)
            if last is None or record.offset >= last:
                on_its_way(tp, record.offset)
                break
    queued_in_streams(consumer.app.topics._topics, on_its_way)
    positions = _client_view(consumer, watched, on_its_way)
    return waiting_on_lost_records(
        {tp: consumer._committed_offset.get(tp) for tp in watched},
        {tp: consumer._acked.get(tp) or () for tp in watched},
        coming,
        positions,
        dict(_committing(consumer)),
    )


def queued_in_streams(channels: Iterable[Any], on_its_way: Callable[[Any, int], None]) -> None:
    """``on_its_way`` hears every record the conductor queued for a stream that has not taken it.

    faust's fetch loop moves its read offset past a record once the conductor
    has put its event on the queue of every channel subscribed to it; the
    consumer tracks the record as unacknowledged only when a stream takes the
    event off that queue. In between it is on its way, and with the agents
    behind (a full queue waits seconds at a busy stage) it must not look lost.
    """
    for channel in list(channels):
        queue = getattr(channel, "_queue", None)  # None: never iterated, nothing queued
        for event in list(getattr(queue, "_queue", ())):
            message = getattr(event, "message", None)
            if message is not None:
                on_its_way(message.tp, message.offset)


def _client_view(
    consumer: Any, watched: Sequence[Any], on_its_way: Callable[[Any, int], None]
) -> dict[Any, int | None]:
    """:func:`client_positions` of faust's aiokafka client (none while it is not started)."""
    try:
        client = consumer._thread._ensure_consumer()
    except Exception:  # not started yet
        return {}
    return client_positions(client, watched, on_its_way)


def client_positions(
    client: Any, watched: Sequence[Any], on_its_way: Callable[[Any, int], None]
) -> dict[Any, int | None]:
    """An aiokafka consumer's positions; ``on_its_way`` hears the first offset it buffered.

    The position is the next offset the client will hand out (it moves as
    ``getmany`` returns records, not as it fetches).

    Read from the client's own state: no public call answers without
    waiting for a position. If that state is not there (between assignments,
    or another aiokafka), no position is known, so nothing is sought back.
    """
    try:
        assignment = client._subscription.subscription.assignment
        buffered = dict(client._fetcher._records)  # the client's thread may be changing it
    except (AttributeError, RuntimeError):
        return {}
    if assignment is None:
        return {}
    for tp, result in buffered.items():
        records = getattr(result, "_partition_records", None)
        if records is not None:
            on_its_way(tp, records.next_fetch_offset)
    positions: dict[Any, int | None] = {}
    for tp in watched:
        state = assignment.state_value(tp)
        positions[tp] = None if state is None else state._position
    return positions


async def _wait_next_records(self: Any, timeout: float) -> Any:
    """faust's fetch, remembered while faust hands it out (:func:`_observe`)."""
    records, active = await _installed["wait_next_records"](self, timeout)
    self.__dict__["_scantrail_fetch"] = records
    return records, active


async def repair_heads(consumer: Any, watch: HeadWatch, counts: Counter[str]) -> None:
    """One look of :class:`HeadWatch` at faust's consumer, and its seek-backs (counted)."""
    if not consumer.flow_active:
        watch.waited.clear()  # a rebalance seeks to the committed offsets itself
        return
    for tp in watch.look(_observe(consumer)):
        offset = consumer._committed_offset.get(tp)
        if offset is None:
            continue
        earliest = (await consumer.earliest_offsets(tp)).get(tp)
        if earliest is not None and earliest > offset:
            log.error(
                "%s[%d]: offsets %d..%d were never processed and are gone from the"
                " broker (retention); committing past them",
                tp.topic,
                tp.partition,
                offset,
                earliest - 1,
            )
            await _installed["add_gap"](consumer, tp, offset, earliest)
            counts["lost_records_gone"] += earliest - offset
            offset = earliest
            _owed(consumer).jumped[tp] = offset
        else:
            log.warning(
                "%s[%d]: the record at the committed offset %d was fetched but never"
                " reached the agents; seeking back so it comes again",
                tp.topic,
                tp.partition,
                offset,
            )
        consumer._read_offset[tp] = None  # else faust's fetch loop drops what comes again
        _owed(consumer).restart(tp, offset)
        await consumer._seek(tp, offset)
        counts["lost_records_sought_back"] += 1


def watch_heads(app: faust.App, counts: Counter[str]) -> None:
    """Look every :data:`LOOK_S` for commits waiting on lost records (:class:`HeadWatch`).

    ``counts`` (the worker's ``/stats``) gets ``lost_records_sought_back`` (seek-backs)
    and ``lost_records_gone`` (records retention deleted before they were processed).
    """
    watch = HeadWatch()

    async def seek_back_lost_records() -> None:
        await repair_heads(app.consumer, watch, counts)

    app.timer(interval=LOOK_S, name="lost-records")(seek_back_lost_records)


def install(gapless: Callable[[str], bool]) -> None:
    """Patch faust's consumer (once per process); ``gapless(topic)``: never compacted."""
    _installed["gapless"] = gapless
    if "new_offset" in _installed:
        return
    _installed["new_offset"] = Consumer._new_offset
    _installed["add_gap"] = Consumer._add_gap
    _installed["wait_next_records"] = Consumer._wait_next_records
    _installed["getmany"] = Consumer.getmany
    _installed["commit_tps"] = Consumer._commit_tps
    Consumer._new_offset = _new_offset
    Consumer._commit_tps = _commit_tps
    Consumer.getmany = _getmany
    Consumer._wait_next_records = _wait_next_records
    Consumer._add_gap = _add_gap
    Consumer.perform_seek = _perform_seek

"""Batches of a faust stream: many events in, one write per key and one message per partition out.

faust hands an agent one event at a time, and the worker used to answer each
with its own effects: a forward to the next stage, a table write (one RocksDB
put and one changelog record), an awaited alert. Those per-event sends and
writes were most of its cost. Here an agent takes a batch
(``Stream.take_events``, which acks the events only after the batch is done),
runs the pure rules over it event by event, and collects the effects in an
:class:`Effects`, which then makes them durable in the one order that keeps
delivery at-least-once:

1. alerts, dead letters and forwards are sent, and their broker acks awaited;
2. only then are table writes made (a state that remembers an alert, or a
   reorder-buffer row deleted because its readings went on, must never be
   durable before what it remembers), with the values the states had when the
   batch's judging ended, not the values they have by the time the acks come
   (:meth:`Effects.seal`);
3. then the follow-ups run (watermark ticks, which must come after the
   forwards they cover), and faust acks the batch's events, whose offsets it
   commits after flushing the producer.

A crash anywhere re-delivers the batch; every effect is idempotent (states
drop event ids they have seen, alerts carry a deterministic ``alert_id``).

A forward carries many records in one Kafka message: their JSON texts joined
by newlines (a record's JSON never holds a raw newline; one that did would be
re-encoded first). One message per target partition per batch, instead of one
per record, is what lets the later stages keep up.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any, NamedTuple

from faust.streams import _current_event

from processors.agents import EXIT_BROKER_LOST, Outcomes, exit_at_once, is_transient
from processors.app import Topics
from processors.faust_offsets import in_order
from processors.table_writes import Outgoing, TableWrites, Write, Writer, encode_value
from scantrail import contract

log = logging.getLogger(__name__)

BATCH_KEY = b"__batch__"
EXIT_SOFTWARE = 70  # EX_SOFTWARE: a bug while making a batch durable; the restart re-delivers it


@dataclass(frozen=True)
class Batching:
    """How many events an agent takes at once, and how long it waits to fill a batch.

    The wait is added to every stage's latency when traffic is light, so it is
    short; under load batches fill before it runs out. The worker passes its
    settings (``SCANTRAIL_WORKER_BATCH_*``); these defaults are the same.
    """

    max_events: int = 2000
    within_s: float = 0.05
    writer: Writer | None = None
    """How a batch's table writes are made (None: faust's own, one key at a time)."""
    slice_s: float = 0.1
    """The longest a stage judges without letting the other stages run (see run_batched)."""


@contextmanager
def acting_for(event: Any) -> Iterator[None]:
    """Let faust's tables see ``event`` as the one being processed.

    A faust table picks the RocksDB partition and the changelog partition of a
    write from the current event, and ``take_events`` leaves none set in the
    agent (faust-streaming issue 497). Every write here is made under an event
    of the partition that owns the key, as a one-event agent would make it.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


MAX_FORWARD_BYTES = 256 * 1024
"""A forwarded message's size bound, well under Kafka's default 1 MB message limit.

A kiosk catching up after an outage sends a whole batch of readings of nobody
to one partition (they are keyed by the kiosk), so a batch per partition is
not bounded by the batch size alone.
"""


def join_records(records: Sequence[bytes]) -> bytes:
    return b"\n".join(records)


def chunks(records: Sequence[bytes], limit: int = MAX_FORWARD_BYTES) -> Iterator[bytes]:
    """The records joined into messages of at most ``limit`` bytes (a bigger record alone)."""
    start, size = 0, 0
    for i, record in enumerate(records):
        if i > start and size + 1 + len(record) > limit:
            yield join_records(records[start:i])
            start, size = i, 0
        size += len(record) + (1 if i > start else 0)
    if start < len(records):
        yield join_records(records[start:])


def split_records(value: bytes) -> list[bytes]:
    """The records of a forwarded message (a message of one record is that record)."""
    return value.split(b"\n")


def one_line(raw: bytes, encode: Callable[[], bytes]) -> bytes:
    """``raw`` if it can travel in a batch as it is, else its compact re-encoding."""
    return raw if b"\n" not in raw else encode()


class Effects:
    """What one batch will do once it is done deciding (see the module docstring for the order)."""

    def __init__(self, topics: Topics, outcomes: Outcomes, writer: Writer | None = None) -> None:
        self.topics = topics
        self.outcomes = outcomes
        self.writer: Writer = writer or TableWrites()
        self.alerts: list[contract.Alert] = []
        self.letters: list[contract.DeadLetter] = []
        self.forwards: dict[tuple[int, int], tuple[Any, list[bytes]]] = {}
        self.writes: dict[tuple[int, bytes], _Staged] = {}
        self.sealed: list[Write] | None = None
        self.later: list[Callable[[], None]] = []

    def alert(self, alerts: Sequence[contract.Alert]) -> None:
        self.alerts.extend(alerts)

    def dead_letter(self, event: Any, reason: str) -> None:
        message = event.message
        letter = contract.dead_letter(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            reason=reason,
            seen_at=datetime.now(UTC),
        )
        # The letter's reason, not the caller's: on a personal topic it is redacted.
        log.warning(
            "dead letter %s[%s]@%s: %s",
            message.topic,
            message.partition,
            message.offset,
            letter.reason,
        )
        self.letters.append(letter)

    def forward(self, topic: Any, partition: int, record: bytes) -> None:
        key = (id(topic), partition)
        forward = self.forwards.get(key)
        if forward is None:
            self.forwards[key] = (topic, [record])
        else:
            forward[1].append(record)

    def write(self, event: Any, table: Any, key: bytes, value: Callable[[], Any] | None) -> None:
        """A table write for after the sends (``value`` None: a delete).

        A later write of the same key in the batch replaces it; the value is
        made when the batch is sealed, so it is the key's last state in it.
        The key lives in ``event``'s partition, as a one-event agent writes it.
        """
        self._unsealed()
        self.writes[(id(table), key)] = _Staged(table, event.message.partition, key, value, event)

    def discard_write(self, table: Any, key: Any) -> bool:
        """Drop a write not yet made; True if there was one."""
        self._unsealed()
        return self.writes.pop((id(table), key), None) is not None

    def _unsealed(self) -> None:
        if self.sealed is not None:
            raise RuntimeError("a sealed batch takes no more writes")

    def seal(self) -> None:
        """Encode every staged write now, as the last batch judged into this one left it.

        :meth:`flush` calls this before it awaits anything, so it runs as the
        flush takes this object from the :class:`Pipeline`. While its sends
        are being acked, the next batch is judged into a new :class:`Effects`
        and changes the same state objects in place: a value encoded after
        that would carry the next batch's changes (its event ids in a
        duplicate filter, a suspicion it opened) into the store before that
        batch's alerts and forwards are durable, and a crash then would drop
        the re-delivered batch as already seen.
        Encoding here costs the same as encoding at the write: once per key.
        """
        if self.sealed is None:
            self.sealed = [
                Write(
                    s.table,
                    s.partition,
                    s.key,
                    None if s.value is None else encode_value(s.value()),
                    s.event,
                )
                for s in self.writes.values()
            ]

    def outgoing(self) -> list[Outgoing]:
        """What the batch sends before its writes: alerts, dead letters, forwards in chunks."""
        topics = self.topics
        records = [
            Outgoing(topics.alerts, alert.key(), contract.encode(alert), None)
            for alert in self.alerts
        ]
        records += (
            Outgoing(topics.deadletter, letter.key(), contract.encode(letter), None)
            for letter in self.letters
        )
        for (_, partition), (topic, forwarded) in self.forwards.items():
            records += (Outgoing(topic, BATCH_KEY, value, partition) for value in chunks(forwarded))
        return records

    def then(self, step: Callable[[], None]) -> None:
        """Run ``step`` once everything above is durable (e.g. mark how far forwards went)."""
        self.later.append(step)

    async def flush(self) -> None:
        self.seal()  # before the first await (see seal)
        await self.writer.send(self.outgoing())
        self.outcomes.counts["alert"] += len(self.alerts)
        await self.writer.write(self.sealed or [])
        for step in self.later:
            step()


class _Staged(NamedTuple):
    """A write as a batch stages it: its value still to be made (None deletes the key)."""

    table: Any
    partition: int
    key: bytes
    value: Callable[[], Any] | None
    event: Any


Handler = Callable[[Any, Effects], None]


async def run_batched(
    stream: Any,
    handle: Handler,
    topics: Topics,
    outcomes: Outcomes,
    stage: str,
    batching: Batching,
    *,
    after: Callable[[], Any] | None = None,
    trim: Sequence[Any] = (),
    fatal: Callable[[int], Any] = exit_at_once,
    writer: Writer | None = None,
) -> None:
    """Run ``handle`` over each event of each batch, then make the batch's effects durable.

    No failure loses an event (faust acks an event whose agent raised and the
    agent stays dead, faust-streaming issue 315):

    * a bug met by one event dead-letters that event with the error (counted as
      ``<stage>_error``) and the batch goes on, so one bad event cannot stop a
      district's screening;
    * the broker or the network failing, or anything failing while the batch is
      made durable, ends the worker at once, before faust commits the batch:
      the supervisor's restart re-delivers it.

    A record that reaches the stage past a hole in its partition (faust
    dropped the one before it) is not judged: the seek back that fills the
    hole brings it again, in order (``<stage>_out_of_order``,
    :class:`processors.faust_offsets.InOrder`).

    A batch taken from a backlog can take seconds to judge (thousands of
    forwarded messages of many readings each), and every other stage, the web
    views and the acks wait while it runs. So once ``batching.slice_s`` has
    passed, the rest of the batch is judged as the next batch would be, after
    the loop has run what waits (``<stage>_judge_slices`` counts these cuts).
    A slice is handed to the pipeline whole, so the cut changes nothing that
    is decided or written, only when.

    ``<stage>_batches`` and ``<stage>_batched_events`` on ``/stats`` give the
    mean batch size: near one means the stage is idle or starved, not batching.
    ``<stage>_judge_ms`` (running the rules) and ``<stage>_flush_ms`` (sends,
    acks, table writes, ticks) show where a stage's time goes;
    ``<stage>_judge_max_ms`` and ``<stage>_seal_max_ms`` (encoding a group
    commit's writes) are the longest each held the event loop without
    yielding (:mod:`processors.loop_stalls` counts the stalls themselves).
    ``after`` runs once a batch is durable (it may send watermark ticks);
    ``trim`` holds the state caches to bound between batches (never during
    one: a state changed by this batch must stay the object that is written).
    """
    counts = outcomes.counts
    batches, batched = f"{stage}_batches", f"{stage}_batched_events"
    pipeline = Pipeline(stream, stage, outcomes, after, fatal)

    def make() -> Effects:
        return Effects(topics, outcomes, writer or batching.writer)

    admit = in_order(stream, counts, stage)
    async for taken in stream.take_events(batching.max_events, batching.within_s):
        if pipeline.failed:
            return
        events = admit(taken)
        if not events:
            continue
        if pipeline.idle():
            for states in trim:  # nothing judged is unwritten now
                states.trim()
        hold(events)
        counts[batches] += 1
        counts[batched] += len(events)
        if not await pipeline.judge(events, handle, make, batching):
            return
    await pipeline.close()


class Pipeline:
    """Judged batches waiting to be made durable, and the one flush in flight.

    While a flush runs, the batches that arrive are judged into one shared
    :class:`Effects` (a group commit): when the flush ends, they are made
    durable together, one write per key and one message per partition for
    all of them. A flush's cost is mostly waiting for acks, so this is what
    lets a stage keep up; order is kept because flushes run one at a time.
    """

    def __init__(
        self,
        stream: Any,
        stage: str,
        outcomes: Outcomes,
        after: Callable[[], Any] | None,
        fatal: Callable[[int], Any],
    ) -> None:
        self.stream, self.stage, self.outcomes = stream, stage, outcomes
        self.after, self.fatal = after, fatal
        self.waiting: Effects | None = None
        self.events: list[Any] = []
        self.task: asyncio.Future[None] | None = None
        self.failed = False

    def effects(self, make: Callable[[], Effects]) -> Effects:
        if self.waiting is None:
            self.waiting = make()
        return self.waiting

    def add(self, events: Sequence[Any]) -> None:
        self.events.extend(events)

    async def judge(
        self,
        events: Sequence[Any],
        handle: Handler,
        make: Callable[[], Effects],
        batching: Batching,
    ) -> bool:
        """Judge a batch in slices of ``batching.slice_s`` (see run_batched); False: the end."""
        counts, stage = self.outcomes.counts, self.stage
        start = 0
        while start < len(events):
            if start:
                # The slice before is whole (judged and handed to the flush) before the
                # loop runs anything else, as if faust had handed it alone.
                counts[f"{stage}_judge_slices"] += 1
                await asyncio.sleep(0)
                if self.failed:
                    return False
            started = time.perf_counter()
            end = judge_batch(
                events,
                handle,
                self.effects(make),
                stage,
                self.outcomes,
                self.fatal,
                start,
                started + batching.slice_s,
            )
            if end is None:
                return False
            self.add(events[start:end])
            took_ms = round((time.perf_counter() - started) * 1000)
            counts[f"{stage}_judge_ms"] += took_ms
            counts[f"{stage}_judge_max_ms"] = max(counts[f"{stage}_judge_max_ms"], took_ms)
            await self.kick(limit=8 * batching.max_events)
            start = end
        return True

    def idle(self) -> bool:
        return (self.task is None or self.task.done()) and self.waiting is None

    async def kick(self, limit: int) -> None:
        """Start the flush if none runs; wait for it when too much is waiting."""
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._drain())
        elif len(self.events) >= limit:
            await self.task

    async def _drain(self) -> None:
        while self.waiting is not None and not self.failed:
            effects, events = self.waiting, self.events
            self.waiting, self.events = None, []
            # finish() seals the effects before its first await: no batch judged
            # from here on changes what they write (Effects.seal).
            self.outcomes.counts[f"{self.stage}_flushes"] += 1
            ok = await finish(
                self.stream, events, effects, self.stage, self.outcomes, self.after, self.fatal
            )
            self.failed = not ok

    async def close(self) -> None:
        while self.task is not None and not self.task.done():
            await self.task
        if self.waiting is not None and not self.failed:
            await self._drain()


def hold(events: Sequence[Any]) -> None:
    """Keep faust from committing ``events`` when ``take_events`` acks them.

    ``take_events`` acks a batch as soon as the agent asks for the next one.
    One more reference on each message makes that ack not the last, so the
    offset becomes committable only when :func:`finish` acks it again, once
    the batch's effects are durable. The next batch is judged meanwhile.
    """
    for event in events:
        incref = getattr(event.message, "incref", None)
        if incref is not None:
            incref()


def judge_batch(
    events: Sequence[Any],
    handle: Handler,
    effects: Effects,
    stage: str,
    outcomes: Outcomes,
    fatal: Callable[[int], Any],
    start: int = 0,
    deadline: float = math.inf,
) -> int | None:
    """Run the rules over the events from ``start`` until ``deadline`` (``perf_counter``).

    Returns where it stopped (at least one event is judged), or None if the
    worker must end (a broker failure).
    """
    current = _current_event
    end = start
    for event in islice(events, start, None):
        end += 1
        # acting_for(event), without a generator per event (half a percent of the worker).
        token = current.set(weakref.ref(event))
        try:
            handle(event, effects)
        except Exception as exc:
            if is_transient(exc):
                _end(stage, exc, fatal, EXIT_BROKER_LOST)
                return None
            outcomes.counts[f"{stage}_error"] += 1
            log.exception("%s: internal error on an event; dead-lettering it", stage)
            effects.dead_letter(event, f"{stage}: internal error {type(exc).__name__}: {exc}")
        finally:
            current.reset(token)
        if time.perf_counter() >= deadline:
            break
    return end


async def finish(
    stream: Any,
    events: Sequence[Any],
    effects: Effects,
    stage: str,
    outcomes: Outcomes,
    after: Callable[[], Any] | None,
    fatal: Callable[[int], Any],
) -> bool:
    """Make a judged batch durable, then release its events to faust's commit."""
    started = time.perf_counter()
    counts = outcomes.counts
    try:
        effects.seal()  # what flush() does first, timed: it holds the loop
        sealed_ms = round((time.perf_counter() - started) * 1000)
        counts[f"{stage}_seal_max_ms"] = max(counts[f"{stage}_seal_max_ms"], sealed_ms)
        await effects.flush()
        if after is not None:
            await after()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        _end(stage, exc, fatal, EXIT_BROKER_LOST if is_transient(exc) else EXIT_SOFTWARE)
        return False
    outcomes.counts[f"{stage}_flush_ms"] += round((time.perf_counter() - started) * 1000)
    for event in events:
        if hasattr(event.message, "incref"):
            # The reference hold() took: faust's own ack of the batch (and its
            # sensors) already ran, so only the message's count is released.
            event.ack()
    return True


def _end(stage: str, exc: BaseException, fatal: Callable[[int], Any], code: int) -> None:
    log.critical("%s: cannot finish a batch (%r); exiting for a clean re-delivery", stage, exc)
    fatal(code)

"""The screening rules, live: faust agents over plain tables, one per state shard.

The rule modules decide everything; this module moves events to the partition
that owns their state, puts them back into event-time order, and keeps state
in RocksDB-backed tables with changelog topics. faust's windowed tables expire
on the wall clock, so every window here is event time, kept in the pure states.

Topology (``<app>`` is the faust app id; internal topics and tables share one
partition count, so each table partition lives beside the stream that feeds it)::

    scantrail.temperatures (key kiosk) -> kiosks:  KioskState[kiosk]
        every reading, as its sample   -> <app>-by-person (key person, or ~kiosk when unknown)
        watermark ticks                -> every partition of <app>-by-person
    <app>-by-person                    -> persons: reorder buffer, PersonState[person]
        samples and confirmations      -> <app>-by-site (key site), in event-time order
        watermark ticks                -> every partition of <app>-by-site
    <app>-by-site                      -> sites:   reorder buffer, ClusterState, DriftState[site]
    scantrail.scans + .quarantine      -> gates:   GateState[person] (already keyed by person)
        counted out scans              -> <app>-by-household (processors.live_households)
        scan watermark ticks           -> every partition of <app>-by-household

A reading travels between the stages as its sample (``sample/1``,
:mod:`processors.hop_records`): the six fields the person and site rules keep,
checked where they land; the kiosk stage validated the whole reading.

Why reorder: temperatures are keyed by kiosk, so one person's or one site's
readings reach their shard from several source partitions in fetch order, not
in time order, and the re-measure, baseline, cluster and drift rules are
defined in event time. Each shard buffers what it receives (in a changelogged
table, so a crash loses nothing) and judges it in event-time order once the
watermark has passed it (:mod:`processors.watermarks`: the minimum over every
source partition of how far it has certainly delivered). A reading that
arrives behind the watermark (a kiosk catching up after an outage) is judged
on arrival.

Every agent works in batches (:mod:`processors.batching`): it judges a batch
event by event, forwards one message per target partition, and writes each
changed state once. Delivery is at-least-once and every effect idempotent:
alerts and forwards are acknowledged by the broker before the state that
remembers them is written, so a crash may repeat an alert (same ``alert_id``)
but never lose one; every shard drops event ids it has already seen.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import faust
from faust.types import TP

from processors.agents import Outcomes
from processors.app import Topics
from processors.baselines import judge_confirmation_for_site, judge_sample_for_site_drift
from processors.batching import Batching, Effects, run_batched, split_records
from processors.faust_tables import bytes_table
from processors.hop_records import decode_sample, encode_sample, is_compact
from processors.live_state import (
    PendingIndex,
    ReorderBuffer,
    StateTable,
    is_piece_key,
    partition_of,
    time_key,
)
from processors.screening import (
    Verdict,
    apply_quarantine,
    expire_pending,
    judge_kiosk,
    judge_sample_for_person,
    judge_scan_for_gate,
    pending_deadline,
)
from processors.screening_policy import PolicyLike
from processors.screening_state import (
    ClusterState,
    Confirmation,
    DriftState,
    GateState,
    KioskState,
    PersonState,
    Sample,
)
from processors.skew import clock_skew_reason
from processors.table_writes import Outgoing, TableWrites, Writer
from processors.watermarks import (
    IDLE_AFTER_S,
    SourceWatermarks,
    UpstreamWatermark,
    decode_marks,
    encode_marks,
)
from scantrail import contract
from scantrail.contract import decode_as, decode_known
from scantrail.errors import ContractError

log = logging.getLogger(__name__)

ScanHook = Callable[[Any, Effects, contract.ScanEvent], None]

TICK_KEY = b"__watermark__"
RELEASE_STEP = 2000
"""The most buffered records one watermark tick releases at the site stage (about
0.1-0.2 s of its rules in the 1M bench drain); the rest goes on with its own tick."""
TICK_EVERY_S = 0.1
"""How often a stage's timer sends the marks no durable batch has sent (idle sources)."""
# Sources that only follow the clock (idle) tick this often: their marks move
# with every tick, and at 0.1 s two idle workers spent most of a core each on
# ticks (2026-12-05) while the later stages still drained a backlog.
IDLE_TICK_EVERY_S = 1.0


def reading_sort_key(reading: contract.TemperatureReading, rank: int) -> str:
    return reading_sort_key_of(reading.measured_at, reading.event_id, rank)


def reading_sort_key_of(at: datetime, event_id: str, rank: int) -> str:
    # The offline Screener orders by (time, event_id) and, for one reading,
    # judges its confirmation (rank 0) before its drift (rank 1).
    return f"{time_key(at)}|{event_id}|{rank}"


def tick_marks(event: Any) -> dict[str, Any] | None:
    """The marks a watermark tick carries (None: a tick of an older release)."""
    marks = json.loads(event.value).get("marks")
    return marks if isinstance(marks, dict) else None


@dataclass
class Shard:
    """What every stage shares: the app, its topics, the policy, the counts, the batching."""

    app: faust.App
    topics: Topics
    policy: PolicyLike
    outcomes: Outcomes
    partitions: int
    batching: Batching
    idle_after_s: float = IDLE_AFTER_S  # a caught-up, quiet source stops holding time back

    def internal(self, name: str) -> Any:
        """An internal topic with as many partitions as the tables beside it."""
        return self.app.topic(
            f"{self.app.conf.id}-{name}",
            key_serializer="raw",
            value_serializer="raw",
            partitions=self.partitions,
            internal=True,
        )

    def table(self, name: str) -> Any:
        return bytes_table(self.app, name, self.partitions)

    def refused_for_skew(self, event: Any, moment: datetime, effects: Effects) -> bool:
        """Dead-letter an event stamped too far in the future (see processors.skew)."""
        skew = clock_skew_reason(moment, datetime.now(UTC))
        if skew is None:
            return False
        self.outcomes.counts["clock_skew"] += 1
        effects.dead_letter(event, skew)
        return True

    def run(self, source: Any, stage: Stage) -> None:
        """One agent over ``source`` that runs ``stage`` batch by batch."""

        async def agent(stream: Any) -> None:
            await run_batched(
                stream,
                stage.step,
                self.topics,
                self.outcomes,
                stage.name,
                self.batching,
                after=stage.after,
                trim=stage.caches,
            )

        self.app.agent(source, name=stage.name)(agent)


class Stage:
    """One step of the topology: its tables, and what it does with each event of a batch."""

    name = ""
    caches: tuple[Any, ...] = ()

    def step(self, event: Any, effects: Effects) -> None:
        raise NotImplementedError

    async def after(self) -> None:
        """Once a batch is durable (watermark ticks go out here)."""

    def forget(self) -> None:
        """A rebalance re-delivers from committed offsets: in-memory indexes start over."""
        for cache in self.caches:
            cache.forget()


async def broadcast(writer: Writer, topic: Any, partitions: int, payload: dict[str, Any]) -> None:
    """Send one watermark tick to every partition of ``topic`` (after the forwards it covers)."""
    value = json.dumps(payload).encode()
    await writer.send_soon([Outgoing(topic, TICK_KEY, value, p) for p in range(partitions)])


def _text(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def fetch_state(consumer: Any, tp: TP) -> str:
    """Whether faust fetches ``tp`` now, and if not why: what to look at when a partition lags.

    faust stops fetching a partition while its tables recover ("paused") and
    while the stream it feeds is nearly full ("buffer_full"), until the agent
    drains it; a partition that is neither and not fetched is a stuck fetcher.
    """
    try:
        if tp in (consumer._paused_partitions or ()):
            return "paused"
        if tp in (consumer._buffered_partitions or ()):
            return "buffer_full"
        active = consumer._active_partitions
        return "fetching" if active is None or tp in active else "not_fetched"
    except AttributeError:
        return "unknown"


class SourceTicks:
    """How far each owned partition of one source topic has certainly delivered, told downstream.

    The stage that consumes the source calls :meth:`delivered` for every
    message and :meth:`advance` once a batch is durable; the marks go, as
    tick messages, to every partition of ``target``, after the forwards they
    cover (:mod:`processors.watermarks`), as soon as each durable batch has
    moved them: a tick is one small message per target partition per group
    commit, while holding it for a 0.1 s throttle added 40-80 ms to the
    median ``fever_suspected`` alert at 1,000 readings/s (bench/README.md).
    The timer of :meth:`install` sends an idle source's marks.
    """

    def __init__(
        self,
        app: faust.App,
        source: str,
        target: Any,
        partitions: int,
        writer: Writer,
        idle_after_s: float = IDLE_AFTER_S,
    ) -> None:
        self.app, self.name, self.target, self.partitions = app, source, target, partitions
        self.writer = writer
        self.source = SourceWatermarks(idle_after_s=idle_after_s)
        self.sent: dict[int, datetime] = {}
        self.sent_at = 0.0
        # The batch whose records :meth:`delivered` is collecting, and those records.
        self.batch: tuple[Effects, list[tuple[int, int, list[datetime | None]]]] | None = None

    def forget(self) -> None:
        self.sent.clear()
        self.source.reset(time.monotonic())

    def delivered(self, effects: Effects, event: Any) -> list[datetime | None]:
        """Count ``event``'s offset as delivered once its batch is durable, in offset order.

        Returns a cell: the caller puts the event time there if the event
        went on (an event refused or dead-lettered moves the offset only).
        """
        moment: list[datetime | None] = [None]
        batch = self.batch
        if batch is None or batch[0] is not effects:
            # One step per batch, not a closure per record (about 1% of the worker).
            batch = self.batch = (effects, [])
            effects.then(partial(self._record_delivered, batch[1]))
        batch[1].append((event.message.partition, event.message.offset, moment))
        return moment

    def _record_delivered(self, records: list[tuple[int, int, list[datetime | None]]]) -> None:
        """A batch is durable: each of its records counts as delivered, in offset order.

        Told once per partition (its last offset, its newest time): the same
        progress as one call per record, which was 1% of the worker.
        """
        last: dict[int, int] = {}
        newest: dict[int, datetime | None] = {}
        for partition, offset, (at,) in records:
            last[partition] = offset
            if at is not None:
                held = newest.get(partition)
                if held is None or at > held:
                    newest[partition] = at
        wall, delivered = time.monotonic(), self.source.delivered
        for partition, offset in last.items():
            delivered(partition, offset, newest.get(partition), wall)

    def highwater(self, partition: int) -> int | None:
        try:
            value = self.app.consumer.highwater(TP(self.name, partition))
        except Exception:
            return None
        return None if value is None else int(value)

    async def learn_starts(self) -> None:
        """Owned source partitions that have not delivered: where will they start?"""
        consumer = self.app.consumer
        owned = {tp.partition for tp in consumer.assignment() if tp.topic == self.name}
        self.source.assign(owned, time.monotonic())
        for partition in self.source.waiting():
            tp = TP(self.name, partition)
            # faust's record of the committed offset it sought to (None: nothing committed).
            committed = consumer._committed_offset.get(tp)
            if committed is None:
                committed = (await consumer.earliest_offsets(tp)).get(tp)
            if committed is not None:
                self.source.starts_at(partition, int(committed))

    async def advance(self) -> None:
        """Tell the downstream stage how far the source has certainly delivered."""
        wall = time.monotonic()
        marks = self.source.marks(wall, datetime.now(UTC), self.highwater)
        sent = self.sent
        moved = {p: at for p, at in marks.items() if p not in sent or at > sent[p]}
        if moved and wall - self.sent_at < IDLE_TICK_EVERY_S:
            if moved.keys() <= self.source.idle(wall, self.highwater):
                return  # only the clock moved: the next second's tick says it
        if moved:
            sent.update(moved)
            self.sent_at = wall
            await broadcast(
                self.writer, self.target, self.partitions, {"marks": encode_marks(sent)}
            )

    def report(self) -> dict[str, Any]:
        return {
            str(p): {
                "newest": _text(progress.newest),
                "next_offset": progress.next_offset,
                "highwater": self.highwater(p),
                "sent": _text(self.sent.get(p)),
                "fetch": fetch_state(self.app.consumer, TP(self.name, p)),
            }
            for p, progress in sorted(self.source.progress.items())
        }

    def install(self, app: faust.App, name: str) -> None:
        """The tick timer (idle sources move on with the clock) and the start-offset follower."""

        @app.timer(interval=TICK_EVERY_S, name=f"{name}-ticks")
        async def send_due_ticks() -> None:
            await self.advance()

        @app.timer(interval=2.0, name=f"{name}-starts")
        async def follow_assignment() -> None:
            """Learn where newly owned source partitions start (see processors.watermarks)."""
            await self.learn_starts()


class Watermarks:
    """Event-time progress: of the source partitions, and of each stage's partitions.

    The kiosk stage tells the person stage how far every source partition has
    certainly delivered (:class:`SourceTicks`); the person stage tells the
    site stage how far it has judged and forwarded. Ticks are broadcast to
    every partition once each durable batch has moved the marks, and by a
    timer every :data:`TICK_EVERY_S` (:mod:`processors.watermarks`).
    """

    def __init__(self, shard: Shard, by_person: Any, by_site: Any) -> None:
        self.shard = shard
        self.by_person, self.by_site = by_person, by_site
        temperatures = shard.topics.temperatures.get_topic_name()
        self.writer = shard.batching.writer or TableWrites()
        self.ticks = SourceTicks(
            shard.app, temperatures, by_person, shard.partitions, self.writer, shard.idle_after_s
        )
        self.due_sites: dict[int, datetime] = {}  # person partition -> judged up to, not yet told
        # Every internal topic has ``partitions`` partitions, and so has the source topic.
        n = shard.partitions
        self.persons: dict[int, UpstreamWatermark] = defaultdict(lambda: UpstreamWatermark(n))
        self.sites: dict[int, UpstreamWatermark] = defaultdict(lambda: UpstreamWatermark(n))

    def forget(self) -> None:
        self.persons.clear()
        self.sites.clear()
        self.due_sites.clear()
        self.ticks.forget()

    async def advance(self) -> None:
        """Tell the person stage how far the source has certainly delivered."""
        await self.ticks.advance()

    async def tell_sites(self) -> None:
        """Tell the site stage how far person partitions have judged (and forwarded)."""
        if not self.due_sites:
            return
        payload = encode_marks(self.due_sites)
        self.due_sites.clear()
        await broadcast(self.writer, self.by_site, self.shard.partitions, {"marks": payload})

    def report(self) -> dict[str, Any]:
        """Event-time progress of every stage: what an operator checks when alerts lag."""
        return {
            "sources": self.ticks.report(),
            "persons": {str(p): _text(m.passed) for p, m in sorted(self.persons.items())},
            "sites": {str(p): _text(m.passed) for p, m in sorted(self.sites.items())},
        }

    def install(self, app: faust.App) -> None:
        """The tick timers, the start-offset follower and ``/watermarks``."""
        self.ticks.install(app, "temperatures")

        @app.timer(interval=TICK_EVERY_S)
        async def send_due_site_ticks() -> None:
            await self.tell_sites()

        @app.timer(interval=30.0)
        async def log_watermarks() -> None:
            log.info("watermarks: %s", json.dumps(self.report()))

        @app.page("/watermarks")
        async def watermarks_view(web: Any, request: Any) -> Any:
            return web.json(self.report())


class KioskStage(Stage):
    """Validity and unidentified fevers per kiosk; every reading goes on to its person."""

    name = "screen-kiosks"

    def __init__(self, shard: Shard, marks: Watermarks, by_person: Any) -> None:
        self.shard, self.marks, self.by_person = shard, marks, by_person
        self.kiosks = StateTable(shard.table("kiosk-state"), KioskState)
        self.caches = (self.kiosks,)

    def step(self, event: Any, effects: Effects) -> None:
        shard, message = self.shard, event.message
        # Delivered with the reading's time only if the reading went on.
        moment = self.marks.ticks.delivered(effects, event)
        try:
            reading = decode_as(message.value, contract.TemperatureReading)
        except ContractError as exc:
            shard.outcomes.counts["deadletter"] += 1
            effects.dead_letter(event, str(exc))
            return
        if shard.refused_for_skew(event, reading.measured_at, effects):
            return
        shard.outcomes.counts["temperature"] += 1
        state = self.kiosks.load(reading.kiosk_id)
        verdict = judge_kiosk(state, reading, shard.policy)
        effects.alert(verdict.alerts)
        if verdict.changed:
            self.kiosks.save(effects, event, reading.kiosk_id, state)
        # Forwarded whatever the kiosk's duplicate filter says: a crash between
        # the state write and the send must not lose the reading downstream.
        # As its sample: all the person and site stages keep (processors.hop_records).
        owner = (reading.person_id or f"~{reading.kiosk_id}").encode()
        record = encode_sample(Sample.of(reading))
        effects.forward(self.by_person, partition_of(owner, shard.partitions), record)
        moment[0] = reading.measured_at

    async def after(self) -> None:
        await self.marks.advance()


class PersonStage(Stage):
    """Re-measure and baselines per person, in event-time order; readings go on to their site."""

    name = "screen-persons"

    def __init__(self, shard: Shard, marks: Watermarks, by_site: Any) -> None:
        self.shard, self.marks, self.by_site = shard, marks, by_site
        self.table = shard.table("person-state")
        self.persons = StateTable(self.table, PersonState)
        self.buffer = ReorderBuffer(shard.table("person-buffer"), shard.outcomes.counts)
        self.pending = PendingIndex()
        self.caches = (self.persons,)

    def forget(self) -> None:
        super().forget()
        self.buffer.forget()
        self.pending.forget()

    def step(self, event: Any, effects: Effects) -> None:
        partition = event.message.partition
        if partition not in self.pending.indexed:
            _index_pending(self.table, self.pending, self.shard.policy, partition, self.shard)
        if event.key == TICK_KEY:
            self.on_tick(event, effects)
            return
        passed = self.marks.persons[partition].passed
        rows: list[tuple[str, bytes, Sample]] = []
        for record in split_records(event.value):
            sample = sample_of(record)
            if passed is not None and sample.time <= passed:
                self.shard.outcomes.counts[self.late_count(sample)] += 1
                self.judge(event, effects, sample, record)
                self.expire_due(event, effects, passed)
            else:
                rows.append((reading_sort_key_of(sample.time, sample.event_id, 0), record, sample))
        if rows:
            self.buffer.add(effects, event, rows)

    def late_count(self, sample: Sample) -> str:
        """Which count a reading behind its partition's watermark goes to.

        A group that forms or re-forms delivers again from the committed
        offsets, so some readings behind the watermark are repeats the person
        already judged (``late_repeat``); only the rest arrived out of order
        (``late``). A reading without a person, or one older than the duplicate
        filter's horizon, cannot be told apart and counts as ``late``.
        """
        if sample.person_id is not None:
            if sample.event_id in self.persons.load(sample.person_id).seen:
                return "late_repeat"
        return "late"

    def on_tick(self, event: Any, effects: Effects) -> None:
        partition = event.message.partition
        marks = tick_marks(event)
        mark = None if marks is None else self.marks.persons[partition].update(decode_marks(marks))
        if mark is None:
            return
        for record, sample in self.buffer.take_until(effects, event, f"{time_key(mark)}|~"):
            if sample is None:  # rebuilt from the table after a restart
                sample = sample_of(record)
            self.judge(event, effects, sample, record)
        self.expire_due(event, effects, mark)
        # Told only once what was judged up to the mark has been forwarded.
        effects.then(lambda: self.marks.due_sites.__setitem__(partition, mark))

    def judge(self, event: Any, effects: Effects, sample: Sample, record: bytes) -> None:
        partition, policy = event.message.partition, self.shard.policy
        self.expire_due(event, effects, sample.time)
        site_partition = partition_of(sample.site_id.encode(), self.shard.partitions)
        if sample.person_id is not None:
            state = self.persons.load(sample.person_id)
            alerts, confirmations = judge_sample_for_person(state, sample, policy)
            effects.alert(alerts)
            for confirmation in confirmations:
                item = {"confirmation": confirmation.to_dict()}
                effects.forward(self.by_site, site_partition, json.dumps(item).encode())
            deadline = pending_deadline(state, policy)
            if deadline is not None:
                self.pending.push(partition, deadline, sample.person_id)
            self.persons.save(effects, event, sample.person_id, state)
        # The site keeps the same part of the reading: the sample goes on as it came.
        effects.forward(
            self.by_site, site_partition, record if is_compact(record) else encode_sample(sample)
        )

    def expire_due(self, event: Any, effects: Effects, now: datetime) -> None:
        for person_id in self.pending.due(event.message.partition, now):
            state = self.persons.load(person_id)
            alerts = expire_pending(state, now, self.shard.policy)
            if alerts:
                effects.alert(alerts)
                self.persons.save(effects, event, person_id, state)

    async def after(self) -> None:
        await self.marks.tell_sites()


class SiteStage(Stage):
    """Clusters of confirmed fevers and kiosk drift per site, in event-time order.

    A watermark tick can release tens of thousands of buffered records at once
    in a backlog (``site-buffer_released_max`` reached 76,000 in the 1M bench
    drain, a 6.4 s stall of the event loop). A tick judges at most
    :data:`RELEASE_STEP` of them; the partition then counts as judged up to the
    last record taken, so a record that arrives meanwhile ahead of it waits in
    the buffer, in order, instead of being judged late. Once the batch is
    durable the stage sends its own partition a tick with the marks it holds
    (marks only move on, so a repeat is harmless) to go on: the rest waits its
    turn behind what the other stages have to do.
    """

    name = "screen-sites"

    def __init__(self, shard: Shard, marks: Watermarks) -> None:
        self.shard, self.marks = shard, marks
        self.clusters = StateTable(shard.table("cluster-state"), ClusterState)
        self.drifts = StateTable(shard.table("drift-state"), DriftState)
        self.buffer = ReorderBuffer(shard.table("site-buffer"), shard.outcomes.counts)
        self.caches = (self.clusters, self.drifts)
        self.releasing: dict[int, str] = {}  # partition -> the bound a tick set, not yet reached
        self.judged_through: dict[int, str] = {}  # partition -> last sort key judged meanwhile
        self.go_on: set[int] = set()  # partitions to tick once the batch is durable

    def forget(self) -> None:
        super().forget()
        self.buffer.forget()
        self.releasing.clear()
        self.judged_through.clear()
        self.go_on.clear()

    def step(self, event: Any, effects: Effects) -> None:
        partition = event.message.partition
        if event.key == TICK_KEY:
            marks = tick_marks(event)
            # The watermark is complete only once every person partition reported.
            before = (
                None if marks is None else self.marks.sites[partition].update(decode_marks(marks))
            )
            due = self.releasing.get(partition) if before is None else f"{time_key(before)}|~"
            if due is not None:
                self.release(event, effects, due)
            return
        bound = self.judged_through.get(partition)
        if bound is None:
            done = self.marks.sites[partition].passed
            bound = None if done is None else f"{time_key(done)}|~"
        rows: list[tuple[str, bytes, SiteItem]] = []
        for record in split_records(event.value):
            item = parse_site_record(record)
            sort_key = site_sort_key(item)
            if bound is not None and sort_key <= bound:
                self.shard.outcomes.counts[self.late_count(item)] += 1
                self.judge(event, effects, item)
            else:
                rows.append((sort_key, record, item))
        if rows:
            self.buffer.add(effects, event, rows)

    def release(self, event: Any, effects: Effects, due: str) -> None:
        """Judge the buffered records up to ``due``, at most :data:`RELEASE_STEP` of them."""
        partition = event.message.partition
        taken, short_at = self.buffer.take_some(effects, event, due, RELEASE_STEP)
        for record, item in taken:
            self.judge(event, effects, parse_site_record(record) if item is None else item)
        if short_at is None:
            self.releasing.pop(partition, None)
            self.judged_through.pop(partition, None)
        else:
            self.releasing[partition] = due
            self.judged_through[partition] = short_at
            self.go_on.add(partition)
            self.shard.outcomes.counts["site-buffer_release_steps"] += 1

    async def after(self) -> None:
        """Tick the partitions whose release stopped short (see the class docstring)."""
        if not self.go_on:
            return
        partitions, self.go_on = sorted(self.go_on), set()
        await self.marks.writer.send_soon(
            [
                Outgoing(self.marks.by_site, TICK_KEY, self.own_tick(p), p)
                for p in partitions
                if p in self.releasing
            ]
        )

    def own_tick(self, partition: int) -> bytes:
        """A tick of the marks this partition holds: it moves nothing, it carries the release on."""
        held = self.marks.sites[partition].ticks
        return json.dumps({"marks": encode_marks(held)}).encode()

    def late_count(self, item: SiteItem) -> str:
        """``site_late`` or, for an item the site already holds, ``site_late_repeat``.

        The person stage forwards a repeat as it came (its first forward may not
        have been durable), so repeats reach the site after a group re-forms too.
        A reading the site's drift window no longer holds counts as ``site_late``.
        """
        if isinstance(item, Confirmation):
            held = item.event_id in self.clusters.load(item.site_id).seen
        elif isinstance(item, Sample):
            held = self.drifts.load(item.site_id).holds(item.kiosk_id, item.event_id)
        else:
            held = False
        return "site_late_repeat" if held else "site_late"

    def judge(self, event: Any, effects: Effects, item: SiteItem) -> None:
        policy = self.shard.policy
        if isinstance(item, Confirmation):
            cluster = self.clusters.load(item.site_id)
            effects.alert(judge_confirmation_for_site(cluster, item, policy))
            self.clusters.save(effects, event, item.site_id, cluster)
        elif isinstance(item, Sample):
            drift = self.drifts.load(item.site_id)
            effects.alert(judge_sample_for_site_drift(drift, item, policy))
            self.drifts.save(effects, event, item.site_id, drift)


SiteItem = Confirmation | Sample | None
"""What the site stage receives: a confirmation, a reading's sample, or (from a
newer release) something it passes by."""

CONFIRMATION_PREFIX = b'{"confirmation"'


def sample_of(record: bytes) -> Sample:
    """A forwarded reading's sample: a ``sample/1`` record, or a whole reading (earlier release)."""
    if is_compact(record):
        return decode_sample(record)
    return Sample.of(decode_known(record, contract.TemperatureReading))


def parse_site_record(record: bytes) -> SiteItem:
    """A forwarded record, decoded once: the person stage wrote it, the kiosk stage validated it.

    A reading comes as its ``sample/1`` record (:mod:`processors.hop_records`),
    checked there; a confirmation as the JSON object ``{"confirmation": ...}``
    the person stage builds. Any other record is a whole reading, as a worker
    of an earlier release forwarded it, validated again here (strictly, in one
    pass). A record of another schema is passed by (None).
    """
    if is_compact(record):
        return decode_sample(record)
    if record.startswith(CONFIRMATION_PREFIX):
        return Confirmation.from_dict(json.loads(record)["confirmation"])
    try:
        return Sample.of(decode_known(record, contract.TemperatureReading))
    except ContractError:
        obj = json.loads(record)
        if isinstance(obj, dict) and obj.get("schema") != contract.TemperatureReading.SCHEMA:
            return None
        raise  # a broken reading: its message is dead-lettered with the reason


def site_sort_key(item: SiteItem) -> str:
    """Where a forwarded reading or confirmation falls in the site stage's event-time order.

    A confirmation sorts before the drift of its own second reading, as the
    offline Screener judges them; a record passed by sorts first.
    """
    if isinstance(item, Confirmation):
        return reading_sort_key_of(item.second.time, item.second.event_id, 0)
    if isinstance(item, Sample):
        return reading_sort_key_of(item.time, item.event_id, 1)
    return ""


class GateStage(Stage):
    """Quarantine breaches and pass problems per person (scans are already keyed by person).

    :meth:`judge` is the place for a new gate rule: it gets the person's gate
    state and a valid scan, and returns a verdict; the state is written when
    a rule raised an alert or kept an ``out`` scan for a quarantine order that
    may arrive later (a scan that did neither changes only the person's
    duplicate filter: judged again after a restart it raises nothing again).
    A quarantine order raises the breaches of the kept scans it covers.
    """

    name = "screen-gates"

    def __init__(
        self,
        shard: Shard,
        on_scan: ScanHook | None,
        scan_caches: Sequence[Any],
        scan_ticks: SourceTicks | None = None,
    ) -> None:
        self.shard, self.on_scan, self.scan_ticks = shard, on_scan, scan_ticks
        self.gates = StateTable(shard.table("gate-state"), GateState)
        self.caches = (self.gates, *scan_caches)

    def step(self, event: Any, effects: Effects) -> None:
        shard = self.shard
        is_quarantine = event.message.topic.endswith(contract.QUARANTINE)
        # How far the scan partitions have delivered: the household stage's watermark.
        moment = (
            None
            if is_quarantine or self.scan_ticks is None
            else self.scan_ticks.delivered(effects, event)
        )
        if is_quarantine and event.value is None:  # a retention tombstone: forget the record
            self.forget_quarantine(event, effects)
            return
        expect: type[contract.Event] = (
            contract.QuarantineRecord if is_quarantine else contract.ScanEvent
        )
        try:
            decoded = decode_as(event.value, expect)
        except ContractError as exc:
            shard.outcomes.counts["deadletter"] += 1
            effects.dead_letter(event, str(exc))
            return
        if isinstance(decoded, contract.QuarantineRecord):
            shard.outcomes.counts["quarantine"] += 1
            state = self.gates.load(decoded.person_id)
            # Kept out scans the order covers raise their breach now (GateState).
            late = apply_quarantine(state, decoded, shard.policy)
            shard.outcomes.counts["quarantine_breach_late"] += len(late)
            effects.alert(late)
            self.gates.save(effects, event, decoded.person_id, state)
        elif isinstance(decoded, contract.ScanEvent):
            if shard.refused_for_skew(event, decoded.scanned_at, effects):
                return
            if moment is not None:
                moment[0] = decoded.scanned_at
            shard.outcomes.counts["scan"] += 1
            state = self.gates.load(decoded.person_id)
            verdict = self.judge(state, decoded)
            effects.alert(verdict.alerts)
            if verdict.changed:
                self.gates.save(effects, event, decoded.person_id, state)
            if self.on_scan is not None:
                self.on_scan(event, effects, decoded)

    async def after(self) -> None:
        if self.scan_ticks is not None:
            await self.scan_ticks.advance()

    def forget_quarantine(self, event: Any, effects: Effects) -> None:
        """A tombstone on the quarantine topic: the record has passed its retention."""
        person_id = event.message.key.decode()
        state = self.gates.load(person_id)
        state.quarantine = None
        self.gates.save(effects, event, person_id, state)
        self.shard.outcomes.counts["quarantine_forgotten"] += 1

    def judge(self, state: GateState, scan: contract.ScanEvent) -> Verdict:
        return judge_scan_for_gate(state, scan, self.shard.policy)


def install_screening(
    app: faust.App,
    topics: Topics,
    policy: PolicyLike,
    outcomes: Outcomes,
    partitions: int,
    batching: Batching,
    on_scan: ScanHook | None = None,
    scan_caches: Sequence[StateTable] = (),
    scan_ticks: SourceTicks | None = None,
    idle_after_s: float = IDLE_AFTER_S,
) -> None:
    """Wire the screening stages in the order data flows (module docstring).

    ``on_scan`` is also given every valid scan the gate stage judged (the
    worker indexes contact trails there), with ``scan_caches`` its caches;
    ``scan_ticks`` learns how far each scan partition has delivered (the
    household stage's watermark, :mod:`processors.live_households`).
    ``idle_after_s``: :class:`processors.watermarks.SourceWatermarks`.
    """
    shard = Shard(app, topics, policy, outcomes, partitions, batching, idle_after_s)
    by_person, by_site = shard.internal("by-person"), shard.internal("by-site")
    marks = Watermarks(shard, by_person, by_site)
    kiosks = KioskStage(shard, marks, by_person)
    persons = PersonStage(shard, marks, by_site)
    sites = SiteStage(shard, marks)
    gates = GateStage(shard, on_scan, scan_caches, scan_ticks)
    shard.run(topics.temperatures, kiosks)  # -> by-person, and source watermark ticks
    shard.run(by_person, persons)  # -> by-site, and person watermark ticks
    shard.run(by_site, sites)
    shard.run(topics.gate, gates)  # -> on_scan (contact trails)
    marks.install(app)

    @app.on_partitions_assigned.connect
    async def forget_positions(sender: Any, assigned: Any, **kwargs: Any) -> None:
        """A rebalance re-delivers from committed offsets: in-memory indexes start over."""
        for stage in (kiosks, persons, sites, gates):
            stage.forget()
        marks.forget()


def _index_pending(
    persons: Any, pending: PendingIndex, policy: PolicyLike, partition: int, shard: Shard
) -> None:
    """After a start or a rebalance, a partition's deadlines live only in its table."""
    pending.indexed.add(partition)
    count = 0
    for key, raw in list(persons.items()):
        key_bytes = key if isinstance(key, bytes) else str(key).encode()
        if raw is None or is_piece_key(key_bytes):
            continue
        if partition_of(key_bytes, shard.partitions) != partition:
            continue
        deadline = pending_deadline(PersonState.from_dict(raw), policy)
        if deadline is not None:
            pending.push(partition, deadline, key_bytes.decode())
            count += 1
    if count:
        log.info("partition %d: re-indexed %d pending re-measure deadlines", partition, count)

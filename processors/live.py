"""The screening rules, live: faust agents over plain tables, one per state shard.

The rule modules decide everything; this module moves events to the partition
that owns their state, puts them back into event-time order, and keeps state
in RocksDB-backed tables with changelog topics. faust's windowed tables expire
on the wall clock, so every window here is event time, kept in the pure states.

Topology (``<app>`` is the faust app id; internal topics and tables share one
partition count, so each table partition lives beside the stream that feeds it)::

    scantrail.temperatures (key kiosk) -> kiosks:  KioskState[kiosk]
        every reading                  -> <app>-by-person (key person, or ~kiosk when unknown)
        watermark ticks                -> every partition of <app>-by-person
    <app>-by-person                    -> persons: reorder buffer, PersonState[person]
        readings and confirmations     -> <app>-by-site (key site), in event-time order
        watermark ticks                -> every partition of <app>-by-site
    <app>-by-site                      -> sites:   reorder buffer, ClusterState, DriftState[site]
    scantrail.scans + .quarantine      -> gates:   GateState[person] (already keyed by person)

Why reorder: temperatures are keyed by kiosk, so one person's or one site's
readings reach their shard from several source partitions in fetch order, not
in time order, and the re-measure, baseline, cluster and drift rules are
defined in event time. Each shard buffers what it receives (in a changelogged
table, so a crash loses nothing) and judges it in event-time order once the
watermark has passed it (:mod:`processors.watermarks`: the minimum over every
source partition of how far it has certainly delivered). A reading that
arrives behind the watermark (a kiosk catching up after an outage) is judged
on arrival.

Delivery is at-least-once and every effect idempotent: alerts and
confirmations are acknowledged by the broker before the state that remembers
them is written, so a crash may repeat an alert (same ``alert_id``) but never
lose one; every shard drops event ids it has already seen.
"""

from __future__ import annotations

import heapq
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import TP
from kafka.partitioner.default import murmur2

from processors.agents import Outcomes, dead_letter, publish_alerts, run_guarded
from processors.app import Topics
from processors.baselines import judge_confirmation_for_site, judge_reading_for_site_drift
from processors.screening import (
    apply_quarantine,
    expire_pending,
    judge_reading_for_kiosk,
    judge_reading_for_person,
    judge_scan,
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
)
from processors.skew import clock_skew_reason
from processors.watermarks import SourceWatermarks, UpstreamWatermark, decode_marks, encode_marks
from scantrail import contract
from scantrail.contract import decode_as
from scantrail.errors import ContractError

log = logging.getLogger(__name__)

TICK_KEY = b"__watermark__"
TICK_EVERY_S = 0.1
"""At most one watermark tick per stage this often: one per record was most of the traffic."""


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as both kafka-python and aiokafka use it."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class ReorderBuffer:
    """Items waiting for the watermark, one table row each (changelogged, crash-safe).

    Rows are keyed ``buf:<partition>:<sort key>`` so a partition's rows stay in
    that partition's changelog; an in-memory heap indexes them and is rebuilt
    from the table after a restart or a rebalance.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self.heaps: dict[int, list[tuple[str, bytes]]] = defaultdict(list)
        self.indexed: set[int] = set()

    def _index(self, partition: int) -> None:
        if partition in self.indexed:
            return
        self.indexed.add(partition)
        prefix = f"buf:{partition}:".encode()
        for key in list(self.table.keys()):
            if isinstance(key, bytes) and key.startswith(prefix):
                heapq.heappush(self.heaps[partition], (key[len(prefix) :].decode(), key))

    def forget(self) -> None:
        """After a rebalance the table is the truth: rebuild each heap on next use."""
        self.heaps.clear()
        self.indexed.clear()

    def add(self, partition: int, sort_key: str, value: Any) -> None:
        self._index(partition)
        key = f"buf:{partition}:{sort_key}".encode()
        if self.table.get(key) is None:
            heapq.heappush(self.heaps[partition], (sort_key, key))
        self.table[key] = value

    def take_until(self, partition: int, bound: str) -> list[Any]:
        """Remove and return, in order, the rows whose sort key is <= ``bound``."""
        self._index(partition)
        heap = self.heaps[partition]
        out: list[Any] = []
        while heap and heap[0][0] <= bound:
            _, key = heapq.heappop(heap)
            value = self.table.get(key)
            if value is not None:
                out.append(value)
                del self.table[key]
        return out


class StateTable:
    """Decoded shard states by key, written through to a changelogged faust table.

    Decoding a state on every record cost more than the rules themselves (a
    kiosk's duplicate filter holds a day of event ids). The table stays the
    truth: every change is written to it at once, and the cache is dropped
    after a rebalance, when partitions may have changed hands.
    """

    def __init__(self, table: Any, cls: Any, limit: int = 200_000) -> None:
        self.table = table
        self.cls = cls
        self.limit = limit
        self.cache: dict[str, Any] = {}

    def load(self, key: str) -> Any:
        state = self.cache.get(key)
        if state is None:
            raw = self.table.get(key.encode())
            state = self.cls() if raw is None else self.cls.from_dict(raw)
            if len(self.cache) >= self.limit:
                self.cache.clear()
            self.cache[key] = state
        return state

    def save(self, key: str, state: Any) -> None:
        self.table[key.encode()] = state.to_dict()
        self.cache[key] = state

    def forget(self) -> None:
        self.cache.clear()


def time_key(at: datetime) -> str:
    """A sortable text for an instant: UTC microseconds, zero-padded."""
    return f"{int(at.timestamp() * 1_000_000):020d}"


def reading_sort_key(reading: contract.TemperatureReading, rank: int) -> str:
    # The offline Screener orders by (time, event_id) and, for one reading,
    # judges its confirmation (rank 0) before its drift (rank 1).
    return f"{time_key(reading.measured_at)}|{reading.event_id}|{rank}"


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


def install_screening(
    app: faust.App, topics: Topics, policy: PolicyLike, outcomes: Outcomes, partitions: int
) -> None:
    """Create the internal topics, tables and agents of the live screening."""
    app_id = app.conf.id

    def internal(name: str) -> Any:
        return app.topic(
            f"{app_id}-{name}",
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
            internal=True,
        )

    def table(name: str) -> Any:
        # bytes keys are stored raw, so a table's changelog partitions like its source topic.
        return app.Table(name, default=None, key_type=bytes, partitions=partitions)

    by_person, by_site = internal("by-person"), internal("by-site")
    persons_table = table("person-state")
    kiosks = StateTable(table("kiosk-state"), KioskState)
    persons = StateTable(persons_table, PersonState)
    gates = StateTable(table("gate-state"), GateState)
    clusters = StateTable(table("cluster-state"), ClusterState)
    drifts = StateTable(table("drift-state"), DriftState)
    person_buffer = ReorderBuffer(table("person-buffer"))
    site_buffer = ReorderBuffer(table("site-buffer"))
    source = SourceWatermarks()
    sent_marks: dict[int, datetime] = {}
    due_site_marks: dict[int, datetime] = {}  # person partition -> judged up to, not yet told
    tick_sent_at = {"source": 0.0, "person": 0.0}
    # Every internal topic has ``partitions`` partitions, and so has the source topic.
    person_marks: dict[int, UpstreamWatermark] = defaultdict(lambda: UpstreamWatermark(partitions))
    site_marks: dict[int, UpstreamWatermark] = defaultdict(lambda: UpstreamWatermark(partitions))
    pending = PendingIndex()
    temperatures_topic = topics.temperatures.get_topic_name()

    @app.on_partitions_assigned.connect
    async def forget_positions(sender: Any, assigned: Any, **kwargs: Any) -> None:
        """A rebalance re-delivers from committed offsets: in-memory indexes start over."""
        person_buffer.forget()
        site_buffer.forget()
        for states in (kiosks, persons, gates, clusters, drifts):
            states.forget()
        pending.forget()
        person_marks.clear()
        site_marks.clear()
        sent_marks.clear()
        due_site_marks.clear()
        source.reset(time.monotonic())

    async def refused_for_skew(event: Any, moment: datetime) -> bool:
        """Dead-letter an event stamped too far in the future (see processors.skew)."""
        skew = clock_skew_reason(moment, datetime.now(UTC))
        if skew is None:
            return False
        outcomes.counts["clock_skew"] += 1
        await dead_letter(topics, event, skew)
        return True

    async def broadcast(topic: Any, payload: dict[str, Any]) -> None:
        value = json.dumps(payload).encode()
        for partition in range(partitions):
            await topic.send(key=TICK_KEY, value=value, partition=partition)

    # --- kiosks: validity, unidentified fevers; fan out by person ------------------------

    async def screen_kiosks_one(event: Any) -> None:
        message = event.message
        source.delivered(message.partition, message.offset, None, time.monotonic())
        try:
            reading = decode_as(event.value, contract.TemperatureReading)
        except ContractError as exc:
            outcomes.counts["deadletter"] += 1
            await dead_letter(topics, event, str(exc))
            return
        if await refused_for_skew(event, reading.measured_at):
            return
        outcomes.counts["temperature"] += 1
        state = kiosks.load(reading.kiosk_id)
        window = (tuple(state.invalid), state.last_fault_at)
        alerts = judge_reading_for_kiosk(state, reading, policy)
        outcomes.counts["alert"] += await publish_alerts(topics, alerts)
        # A valid reading changes only the kiosk's duplicate filter (a day of ids,
        # the bulk of the state). That is written with the next change that
        # matters, not per reading: what a restart forgets there, the person
        # stage filters again, and an unidentified fever is written at once, so
        # a repeat is at worst the same alert (same alert_id) a crash may repeat.
        if alerts or (tuple(state.invalid), state.last_fault_at) != window:
            kiosks.save(reading.kiosk_id, state)
        # Sent whatever the kiosk's duplicate filter says: a crash between the
        # state write and this send must not lose the reading downstream.
        owner = reading.person_id or f"~{reading.kiosk_id}"
        await by_person.send(key=owner.encode(), value=event.value)
        # Only now, with the reading on its way, may a tick cover its time.
        at = reading.measured_at
        source.delivered(message.partition, message.offset, at, time.monotonic())
        await advance_watermark()

    @app.agent(topics.temperatures, name="screen-kiosks")
    async def screen_kiosks(stream: Any) -> None:
        await run_guarded(stream, screen_kiosks_one, topics, outcomes, "screen-kiosks")

    def highwater(partition: int) -> int | None:
        try:
            value = app.consumer.highwater(TP(temperatures_topic, partition))
        except Exception:
            return None
        return None if value is None else int(value)

    async def learn_starts() -> None:
        """Owned source partitions that have not delivered: where will they start?"""
        consumer = app.consumer
        owned = {tp.partition for tp in consumer.assignment() if tp.topic == temperatures_topic}
        source.assign(owned, time.monotonic())
        for partition in source.waiting():
            tp = TP(temperatures_topic, partition)
            # faust's record of the committed offset it sought to (None: nothing committed).
            committed = consumer._committed_offset.get(tp)
            if committed is None:
                committed = (await consumer.earliest_offsets(tp)).get(tp)
            if committed is not None:
                source.starts_at(partition, int(committed))

    async def advance_watermark(throttled: bool = True) -> None:
        wall = time.monotonic()
        if throttled and wall - tick_sent_at["source"] < TICK_EVERY_S:
            return  # the tick timer sends it shortly
        marks = source.marks(wall, datetime.now(UTC), highwater)
        moved = {p: at for p, at in marks.items() if p not in sent_marks or at > sent_marks[p]}
        if moved:
            sent_marks.update(moved)
            tick_sent_at["source"] = wall
            await broadcast(by_person, {"marks": encode_marks(sent_marks)})

    async def tell_sites(throttled: bool) -> None:
        """Tell the site shards how far person partitions have judged (and forwarded)."""
        wall = time.monotonic()
        if not due_site_marks or throttled and wall - tick_sent_at["person"] < TICK_EVERY_S:
            return
        payload = encode_marks(due_site_marks)
        due_site_marks.clear()
        tick_sent_at["person"] = wall
        await broadcast(by_site, {"marks": payload})

    @app.timer(interval=TICK_EVERY_S)
    async def send_due_ticks() -> None:
        await advance_watermark(throttled=False)
        await tell_sites(throttled=False)

    @app.timer(interval=2.0)
    async def follow_assignment() -> None:
        """Learn where newly owned temperature partitions start (see processors.watermarks)."""
        await learn_starts()

    def watermark_report() -> dict[str, Any]:
        """Event-time progress of every stage: what an operator checks when alerts lag."""

        def text(at: datetime | None) -> str | None:
            return None if at is None else at.isoformat()

        return {
            "sources": {
                str(p): {
                    "newest": text(progress.newest),
                    "next_offset": progress.next_offset,
                    "highwater": highwater(p),
                    "sent": text(sent_marks.get(p)),
                }
                for p, progress in sorted(source.progress.items())
            },
            "persons": {str(p): text(m.passed) for p, m in sorted(person_marks.items())},
            "sites": {str(p): text(m.passed) for p, m in sorted(site_marks.items())},
        }

    @app.timer(interval=30.0)
    async def log_watermarks() -> None:
        log.info("watermarks: %s", json.dumps(watermark_report()))

    @app.page("/watermarks")
    async def watermarks_view(web: Any, request: Any) -> Any:
        return web.json(watermark_report())

    # --- persons: re-measure and baselines, in event-time order ---------------------------

    async def judge_person_reading(partition: int, reading: contract.TemperatureReading) -> None:
        for person_id in pending.due(partition, reading.measured_at):
            await expire_person(partition, person_id, reading.measured_at)
        if reading.person_id is not None:
            state = persons.load(reading.person_id)
            alerts, confirmations = judge_reading_for_person(state, reading, policy)
            outcomes.counts["alert"] += await publish_alerts(topics, alerts)
            for confirmation in confirmations:
                await (
                    await by_site.send(
                        key=confirmation.site_id.encode(),
                        value=json.dumps({"confirmation": confirmation.to_dict()}).encode(),
                    )
                )
            deadline = pending_deadline(state, policy)
            if deadline is not None:
                pending.push(partition, deadline, reading.person_id)
            persons.save(reading.person_id, state)
        await by_site.send(key=reading.site_id.encode(), value=contract.encode(reading))

    async def expire_person(partition: int, person_id: str, now: datetime) -> None:
        state = persons.load(person_id)
        alerts = expire_pending(state, now, policy)
        if alerts:
            outcomes.counts["alert"] += await publish_alerts(topics, alerts)
            persons.save(person_id, state)

    async def screen_persons_one(event: Any) -> None:
        partition = event.message.partition
        if partition not in pending.indexed:
            _index_pending(persons_table, pending, policy, partition, partitions)
        if event.key == TICK_KEY:
            marks = json.loads(event.value).get("marks")
            if not isinstance(marks, dict):
                return  # a tick of an older release: its successor will come
            mark = person_marks[partition].update(decode_marks(marks))
            if mark is None:
                return
            for raw in person_buffer.take_until(partition, f"{time_key(mark)}|~"):
                await judge_person_reading(partition, decode_as(raw, contract.TemperatureReading))
            for person_id in pending.due(partition, mark):
                await expire_person(partition, person_id, mark)
            due_site_marks[partition] = mark
            await tell_sites(throttled=True)
            return
        reading = decode_as(event.value, contract.TemperatureReading)
        passed = person_marks[partition].passed
        if passed is not None and reading.measured_at <= passed:
            outcomes.counts["late"] += 1
            await judge_person_reading(partition, reading)
            for person_id in pending.due(partition, passed):
                await expire_person(partition, person_id, passed)
        else:
            person_buffer.add(partition, reading_sort_key(reading, 0), event.value.decode())

    @app.agent(by_person, name="screen-persons")
    async def screen_persons(stream: Any) -> None:
        await run_guarded(stream, screen_persons_one, topics, outcomes, "screen-persons")

    # --- sites: clusters of confirmed fevers, kiosk drift -----------------------------------

    async def judge_site_item(item: dict[str, Any]) -> None:
        if "confirmation" in item:
            confirmation = Confirmation.from_dict(item["confirmation"])
            cluster = clusters.load(confirmation.site_id)
            alerts = judge_confirmation_for_site(cluster, confirmation, policy)
            outcomes.counts["alert"] += await publish_alerts(topics, alerts)
            clusters.save(confirmation.site_id, cluster)
            return
        reading = contract.from_dict(item)
        if not isinstance(reading, contract.TemperatureReading):
            return
        drift = drifts.load(reading.site_id)
        alerts = judge_reading_for_site_drift(drift, reading, policy)
        outcomes.counts["alert"] += await publish_alerts(topics, alerts)
        drifts.save(reading.site_id, drift)

    async def screen_sites_one(event: Any) -> None:
        partition = event.message.partition
        item = json.loads(event.value)
        if event.key == TICK_KEY:
            if not isinstance(item.get("marks"), dict):
                return  # a tick of an older release
            # The watermark is complete only once every person partition reported.
            before = site_marks[partition].update(decode_marks(item["marks"]))
            if before is not None:
                for row in site_buffer.take_until(partition, f"{time_key(before)}|~"):
                    await judge_site_item(row)
            return
        if "confirmation" in item:
            second = item["confirmation"]["second"]
            sort_key = f"{time_key(datetime.fromisoformat(second['time']))}|{second['event_id']}|0"
        else:
            reading = decode_as(event.value, contract.TemperatureReading)
            sort_key = reading_sort_key(reading, 1)
        done = site_marks[partition].passed
        if done is not None and sort_key <= f"{time_key(done)}|~":
            outcomes.counts["late"] += 1
            await judge_site_item(item)
        else:
            site_buffer.add(partition, sort_key, item)

    @app.agent(by_site, name="screen-sites")
    async def screen_sites(stream: Any) -> None:
        await run_guarded(stream, screen_sites_one, topics, outcomes, "screen-sites")

    # --- gates: quarantine breaches and pass problems (already keyed by person) ---------------

    async def screen_gates_one(event: Any) -> None:
        is_quarantine = event.message.topic.endswith(contract.QUARANTINE)
        expect: type[contract.Event] = (
            contract.QuarantineRecord if is_quarantine else contract.ScanEvent
        )
        try:
            decoded = decode_as(event.value, expect)
        except ContractError as exc:
            outcomes.counts["deadletter"] += 1
            await dead_letter(topics, event, str(exc))
            return
        if isinstance(decoded, contract.QuarantineRecord):
            outcomes.counts["quarantine"] += 1
            state = gates.load(decoded.person_id)
            apply_quarantine(state, decoded)
            gates.save(decoded.person_id, state)
        elif isinstance(decoded, contract.ScanEvent):
            if await refused_for_skew(event, decoded.scanned_at):
                return
            outcomes.counts["scan"] += 1
            state = gates.load(decoded.person_id)
            alerts = judge_scan(state, decoded, policy)
            outcomes.counts["alert"] += await publish_alerts(topics, alerts)
            gates.save(decoded.person_id, state)

    @app.agent(topics.gate, name="screen-gates")
    async def screen_gates(stream: Any) -> None:
        await run_guarded(stream, screen_gates_one, topics, outcomes, "screen-gates")


def _index_pending(
    persons: Any, pending: PendingIndex, policy: PolicyLike, partition: int, partitions: int
) -> None:
    """After a start or a rebalance, a partition's deadlines live only in its table."""
    pending.indexed.add(partition)
    count = 0
    for key, raw in list(persons.items()):
        key_bytes = key if isinstance(key, bytes) else str(key).encode()
        if raw is None or partition_of(key_bytes, partitions) != partition:
            continue
        deadline = pending_deadline(PersonState.from_dict(raw), policy)
        if deadline is not None:
            pending.push(partition, deadline, key_bytes.decode())
            count += 1
    if count:
        log.info("partition %d: re-indexed %d pending re-measure deadlines", partition, count)

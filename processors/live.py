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
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import TP

from processors.agents import Outcomes
from processors.app import Topics
from processors.baselines import judge_confirmation_for_site, judge_reading_for_site_drift
from processors.batching import Batching, Effects, one_line, run_batched, split_records
from processors.live_state import (
    PendingIndex,
    ReorderBuffer,
    StateTable,
    partition_of,
    time_key,
)
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

ScanHook = Callable[[Any, Effects, contract.ScanEvent], None]

TICK_KEY = b"__watermark__"
TICK_EVERY_S = 0.1
"""At most one watermark tick per stage this often: one per record was most of the traffic."""


def reading_sort_key(reading: contract.TemperatureReading, rank: int) -> str:
    # The offline Screener orders by (time, event_id) and, for one reading,
    # judges its confirmation (rank 0) before its drift (rank 1).
    return f"{time_key(reading.measured_at)}|{reading.event_id}|{rank}"


def install_screening(
    app: faust.App,
    topics: Topics,
    policy: PolicyLike,
    outcomes: Outcomes,
    partitions: int,
    batching: Batching,
    on_scan: ScanHook | None = None,
    scan_caches: Sequence[StateTable] = (),
) -> None:
    """Create the internal topics, tables and agents of the live screening.

    ``on_scan`` is also given every valid scan the gate agent judged (the
    worker indexes contact trails there), with ``scan_caches`` its caches.
    """
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

    def refused_for_skew(event: Any, moment: datetime, effects: Effects) -> bool:
        """Dead-letter an event stamped too far in the future (see processors.skew)."""
        skew = clock_skew_reason(moment, datetime.now(UTC))
        if skew is None:
            return False
        outcomes.counts["clock_skew"] += 1
        effects.dead_letter(event, skew)
        return True

    async def broadcast(topic: Any, payload: dict[str, Any]) -> None:
        value = json.dumps(payload).encode()
        for partition in range(partitions):
            await topic.send(key=TICK_KEY, value=value, partition=partition)

    # --- kiosks: validity, unidentified fevers; fan out by person ------------------------

    def screen_kiosk(event: Any, effects: Effects) -> None:
        message = event.message
        partition, offset = message.partition, message.offset
        # The offset counts as delivered once the batch is durable, in offset
        # order, and with the reading's time only if the reading went on.
        moment: list[datetime | None] = [None]
        effects.then(lambda: source.delivered(partition, offset, moment[0], time.monotonic()))
        try:
            reading = decode_as(message.value, contract.TemperatureReading)
        except ContractError as exc:
            outcomes.counts["deadletter"] += 1
            effects.dead_letter(event, str(exc))
            return
        if refused_for_skew(event, reading.measured_at, effects):
            return
        outcomes.counts["temperature"] += 1
        state = kiosks.load(reading.kiosk_id)
        window = (tuple(state.invalid), state.last_fault_at)
        alerts = judge_reading_for_kiosk(state, reading, policy)
        effects.alert(alerts)
        # A valid reading changes only the kiosk's duplicate filter (a day of ids,
        # the bulk of the state). That is written with the next change that
        # matters, not per reading: what a restart forgets there, the person
        # stage filters again, and an unidentified fever is written at once, so
        # a repeat is at worst the same alert (same alert_id) a crash may repeat.
        if alerts or (tuple(state.invalid), state.last_fault_at) != window:
            kiosks.save(effects, event, reading.kiosk_id, state)
        # Forwarded whatever the kiosk's duplicate filter says: a crash between
        # the state write and the send must not lose the reading downstream.
        owner = (reading.person_id or f"~{reading.kiosk_id}").encode()
        record = one_line(message.value, lambda: contract.encode(reading))
        effects.forward(by_person, partition_of(owner, partitions), record)
        moment[0] = reading.measured_at

    @app.agent(topics.temperatures, name="screen-kiosks")
    async def screen_kiosks(stream: Any) -> None:
        await run_batched(
            stream,
            screen_kiosk,
            topics,
            outcomes,
            "screen-kiosks",
            batching,
            after=advance_watermark,
            trim=(kiosks,),
        )

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

    async def tell_sites(throttled: bool = True) -> None:
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

    def judge_person_reading(
        event: Any, effects: Effects, reading: contract.TemperatureReading, record: bytes
    ) -> None:
        partition = event.message.partition
        for person_id in pending.due(partition, reading.measured_at):
            expire_person(event, effects, person_id, reading.measured_at)
        site_partition = partition_of(reading.site_id.encode(), partitions)
        if reading.person_id is not None:
            state = persons.load(reading.person_id)
            alerts, confirmations = judge_reading_for_person(state, reading, policy)
            effects.alert(alerts)
            for confirmation in confirmations:
                item = {"confirmation": confirmation.to_dict()}
                effects.forward(by_site, site_partition, json.dumps(item).encode())
            deadline = pending_deadline(state, policy)
            if deadline is not None:
                pending.push(partition, deadline, reading.person_id)
            persons.save(effects, event, reading.person_id, state)
        effects.forward(by_site, site_partition, record)

    def expire_person(event: Any, effects: Effects, person_id: str, now: datetime) -> None:
        state = persons.load(person_id)
        alerts = expire_pending(state, now, policy)
        if alerts:
            effects.alert(alerts)
            persons.save(effects, event, person_id, state)

    def expire_due(event: Any, effects: Effects, now: datetime) -> None:
        for person_id in pending.due(event.message.partition, now):
            expire_person(event, effects, person_id, now)

    def screen_person_message(event: Any, effects: Effects) -> None:
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
            for text in person_buffer.take_until(effects, event, f"{time_key(mark)}|~"):
                record = text.encode()
                reading = decode_as(record, contract.TemperatureReading)
                judge_person_reading(event, effects, reading, record)
            expire_due(event, effects, mark)
            # Told only once what was judged up to the mark has been forwarded.
            effects.then(lambda: due_site_marks.__setitem__(partition, mark))
            return
        passed = person_marks[partition].passed
        rows: list[tuple[str, str]] = []
        for record in split_records(event.value):
            reading = decode_as(record, contract.TemperatureReading)
            if passed is not None and reading.measured_at <= passed:
                outcomes.counts["late"] += 1
                judge_person_reading(event, effects, reading, record)
                expire_due(event, effects, passed)
            else:
                rows.append((reading_sort_key(reading, 0), record.decode()))
        if rows:
            person_buffer.add(effects, event, rows)

    @app.agent(by_person, name="screen-persons")
    async def screen_persons(stream: Any) -> None:
        await run_batched(
            stream,
            screen_person_message,
            topics,
            outcomes,
            "screen-persons",
            batching,
            after=tell_sites,
            trim=(persons,),
        )

    # --- sites: clusters of confirmed fevers, kiosk drift -----------------------------------

    def judge_site_item(event: Any, effects: Effects, item: dict[str, Any]) -> None:
        if "confirmation" in item:
            confirmation = Confirmation.from_dict(item["confirmation"])
            cluster = clusters.load(confirmation.site_id)
            effects.alert(judge_confirmation_for_site(cluster, confirmation, policy))
            clusters.save(effects, event, confirmation.site_id, cluster)
            return
        reading = contract.from_dict(item)
        if not isinstance(reading, contract.TemperatureReading):
            return
        drift = drifts.load(reading.site_id)
        effects.alert(judge_reading_for_site_drift(drift, reading, policy))
        drifts.save(effects, event, reading.site_id, drift)

    def screen_site_message(event: Any, effects: Effects) -> None:
        partition = event.message.partition
        if event.key == TICK_KEY:
            marks = json.loads(event.value).get("marks")
            if not isinstance(marks, dict):
                return  # a tick of an older release
            # The watermark is complete only once every person partition reported.
            before = site_marks[partition].update(decode_marks(marks))
            if before is not None:
                for text in site_buffer.take_until(effects, event, f"{time_key(before)}|~"):
                    judge_site_item(event, effects, json.loads(text))
            return
        done = site_marks[partition].passed
        bound = None if done is None else f"{time_key(done)}|~"
        rows: list[tuple[str, str]] = []
        for record in split_records(event.value):
            item = json.loads(record)
            if "confirmation" in item:
                second = item["confirmation"]["second"]
                at = datetime.fromisoformat(second["time"])
                sort_key = f"{time_key(at)}|{second['event_id']}|0"
            else:
                reading = decode_as(record, contract.TemperatureReading)
                sort_key = reading_sort_key(reading, 1)
            if bound is not None and sort_key <= bound:
                outcomes.counts["late"] += 1
                judge_site_item(event, effects, item)
            else:
                rows.append((sort_key, record.decode()))
        if rows:
            site_buffer.add(effects, event, rows)

    @app.agent(by_site, name="screen-sites")
    async def screen_sites(stream: Any) -> None:
        await run_batched(
            stream,
            screen_site_message,
            topics,
            outcomes,
            "screen-sites",
            batching,
            trim=(clusters, drifts),
        )

    # --- gates: quarantine breaches and pass problems (already keyed by person) ---------------

    def screen_gate(event: Any, effects: Effects) -> None:
        is_quarantine = event.message.topic.endswith(contract.QUARANTINE)
        if is_quarantine and event.value is None:  # a retention tombstone: forget the record
            state = gates.load(event.message.key.decode())
            state.quarantine = None
            gates.save(effects, event, event.message.key.decode(), state)
            outcomes.counts["quarantine_forgotten"] += 1
            return
        expect: type[contract.Event] = (
            contract.QuarantineRecord if is_quarantine else contract.ScanEvent
        )
        try:
            decoded = decode_as(event.value, expect)
        except ContractError as exc:
            outcomes.counts["deadletter"] += 1
            effects.dead_letter(event, str(exc))
            return
        if isinstance(decoded, contract.QuarantineRecord):
            outcomes.counts["quarantine"] += 1
            state = gates.load(decoded.person_id)
            apply_quarantine(state, decoded)
            gates.save(effects, event, decoded.person_id, state)
        elif isinstance(decoded, contract.ScanEvent):
            if refused_for_skew(event, decoded.scanned_at, effects):
                return
            outcomes.counts["scan"] += 1
            state = gates.load(decoded.person_id)
            alerts = judge_scan(state, decoded, policy)
            effects.alert(alerts)
            # A scan that raises nothing changes only the person's duplicate
            # filter: judged again after a restart it raises nothing again, so
            # that change waits for the next write (as a kiosk's does).
            if alerts:
                gates.save(effects, event, decoded.person_id, state)
            if on_scan is not None:
                on_scan(event, effects, decoded)

    @app.agent(topics.gate, name="screen-gates")
    async def screen_gates(stream: Any) -> None:
        await run_batched(
            stream,
            screen_gate,
            topics,
            outcomes,
            "screen-gates",
            batching,
            trim=(gates, *scan_caches),
        )


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

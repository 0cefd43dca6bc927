"""Contact trails, live: the trail index in faust tables and ``GET /trace`` on the worker.

Two stores, each keyed the way Kafka partitions its input, and each cut into
small event-time buckets:

* ``trails[person_id|day]`` -- a :class:`~processors.trails.Trail` of one
  person's scans on one UTC day, fed by ``scantrail.scans`` (keyed by person)
  through the gate agent, which validates every scan anyway (:class:`LiveTrails`);
* ``visits[site_id|slot]`` -- a :class:`~processors.trails.SiteVisits` of one
  site's visits in one five-minute slot, fed by ``<app>-visits-by-site``
  (keyed by site).

A table value is rewritten (and sent to its changelog) once per batch that
adds to it, so its size is what a scan costs: whole-history values made that cost grow with
the history (an hour bucket of a busy gate held thousands of visits, and the
worker spent its time re-encoding them). A person-day stays a few kilobytes,
and a trace reads a few buckets: a contact window of 15 minutes touches seven
slots. A slot can still hold 1,500 visits at five scans a second, and a live
batch comes every few tens of milliseconds, so a slot is stored as a small
head and pages of ten seconds (:class:`~processors.trails.SiteVisits`): a
batch rewrites the head and the page it added to, and a trace reads the
pages that reach its window. Retention deletes a slot's pages with it.

Both are global tables: every worker restores all partitions from the
changelogs, so whichever worker an epidemiologist's request reaches answers it
in full, with the same pure :func:`processors.contacts.trace` the offline
``scantrail trace`` and ``scantrail replay`` run. The view itself, with its
credential check, bounds and audit, is :mod:`processors.trace_guard`.

Every scan is forwarded to the site stream, as the ``visit/1`` record of
:mod:`processors.hop_records` (what a slot keeps of it), even when the person's trail has
already seen it: a crash between the trail write and the send must not lose
the visit, and the slot drops the duplicate id itself. The forwards of a batch
travel as one message per site partition (:mod:`processors.batching`).

Retention follows event time, like every rule here: once a partition's newest
scan is :data:`~processors.trails.RETENTION` past a bucket, the agent that owns
the partition deletes it (deleting from its own partition keeps each tombstone
in the changelog partition that holds the value), and refuses scans that old.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import faust

from processors.agents import Outcomes
from processors.app import Topics
from processors.batching import Batching, Effects, run_batched, split_records
from processors.faust_tables import bytes_table
from processors.hop_records import Visit, decode_visit, encode_visit, is_compact
from processors.live import ScanHook
from processors.live_state import StateTable, page_key, partition_of
from processors.trails import RETENTION, SiteVisits, Trail, TrailSlice, VisitSlice, to_micros
from scantrail import contract
from scantrail.contract import decode_known

log = logging.getLogger(__name__)

DAY_US = 86_400 * 1_000_000
SLOT_US = 300 * 1_000_000


def trail_key(person_id: str, micros: int) -> bytes:
    return f"{person_id}|{micros // DAY_US}".encode()


def visit_key(site_id: str, micros: int) -> bytes:
    return f"{site_id}|{micros // SLOT_US}".encode()


SliceT = TypeVar("SliceT", TrailSlice, VisitSlice)


def _concat(parts: list[SliceT], empty: SliceT) -> SliceT:
    """Slices of consecutive buckets, joined: still in time order."""
    if not parts:
        return empty
    if len(parts) == 1:
        return parts[0]
    return type(empty)._make([x for part in parts for x in part[i]] for i in range(len(empty)))


class TableIndex:
    """The trace lookups over the two tables (decoded on demand, bucket by bucket)."""

    def __init__(self, trails: Any, visits: Any) -> None:
        self.trails = trails
        self.visits = visits

    def trail_between(self, person_id: str, start: int, end: int) -> TrailSlice:
        parts: list[TrailSlice] = []
        for day in range(start // DAY_US, end // DAY_US + 1):
            raw = self.trails.get(f"{person_id}|{day}".encode())
            if raw is not None:
                parts.append(Trail.from_dict(raw).between(start, end))
        return _concat(parts, TrailSlice([], [], [], []))

    def visits_between(self, site_id: str, start: int, end: int) -> VisitSlice:
        parts: list[VisitSlice] = []
        for slot in range(start // SLOT_US, end // SLOT_US + 1):
            key = f"{site_id}|{slot}"
            raw = self.visits.get(key.encode())
            if raw is not None:
                visits = SiteVisits.from_dict(raw)
                if visits.paged:  # only the pages that reach the window
                    numbers = visits.pages_to_read(start, end)
                    visits.restore_pages(self.visits.get(page_key(key, n)) for n in numbers)
                parts.append(visits.between(start, end))
        return _concat(parts, VisitSlice([], [], [], []))


@dataclass(frozen=True)
class LiveTrails:
    """What the worker's other agents need of the trails: the lookups and the scan hook."""

    index: TableIndex
    index_scan: ScanHook
    caches: tuple[StateTable, ...]  # trimmed between batches by the agent that calls the hook


class RetentionSweep:
    """Deletes one partition's buckets once the partition's event time is past them.

    Runs at most once per event-time day and partition; a bucket key ends in
    ``|<bucket number>`` and begins with the Kafka key that put it in its partition.
    """

    def __init__(self, table: Any, width_us: int, retention_us: int, partitions: int) -> None:
        self.table = table
        self.width_us = width_us
        self.retention_us = retention_us
        self.partitions = partitions
        self.newest: dict[int, int] = {}
        self.swept_day: dict[int, int] = {}

    def too_old(self, partition: int, micros: int) -> bool:
        """Note event time; True for a scan already past retention on this partition."""
        newest = self.newest.get(partition)
        if newest is None or micros > newest:
            self.newest[partition] = newest = micros
        return micros < newest - self.retention_us

    def sweep(self, partition: int) -> int:
        newest = self.newest.get(partition)
        if newest is None or self.swept_day.get(partition) == newest // DAY_US:
            return 0
        self.swept_day[partition] = newest // DAY_US
        old = self._older_than(partition, (newest - self.retention_us) // self.width_us)
        for key in old:
            del self.table[key]
        if old:
            log.info("partition %d: forgot %d buckets past the retention", partition, len(old))
        return len(old)

    def sweep_idle(self, owned: set[int], now_us: int) -> int:
        """Outside stream iteration: delete the owned partitions' buckets older than ``now_us``
        minus the retention, so a partition that receives no scans forgets too.

        faust refuses table writes outside an agent (it takes the changelog
        partition from the current event), so each deletion is sent to the
        changelog partition of its key explicitly and removed from the local store.
        """
        horizon = (now_us - self.retention_us) // self.width_us
        gone = 0
        for partition in sorted(owned):
            for key in self._older_than(partition, horizon):
                self.table.send_changelog(partition, key, None, value_serializer="raw")
                del self.table.data[key]
                gone += 1
        if gone:
            log.info("idle sweep: forgot %d buckets past the retention", gone)
        return gone

    def _older_than(self, partition: int, horizon: int) -> list[bytes]:
        """The keys of ``partition``'s buckets numbered below ``horizon``.

        Read from that partition's own RocksDB when the table has one: faust's
        key view walks the stores of every partition (these are global tables)
        and decodes and checks each key, which made each day's sweep read the
        whole index four times over (5% of the worker's time in a profile of the
        200,000-reading bench, 2026-12-05). Keys without a bucket number (faust
        keeps its persisted offset beside the rows) are not buckets.
        """
        store = getattr(self.table, "data", None)
        db_for_partition = getattr(store, "_db_for_partition", None)
        keys = self.table.keys() if db_for_partition is None else db_for_partition(partition).keys()
        old = []
        for key in keys:
            owner, bar, bucket = key.rpartition(b"|")
            bucket = bucket.partition(b"#")[0]  # a bucket's pages go with it (live_state.page_key)
            if not bar or not bucket.isdigit() or int(bucket) >= horizon:
                continue
            if partition_of(owner, self.partitions) == partition:
                old.append(key)
        return old

    def clock_us(self) -> int | None:
        """The newest event time this worker has seen on any partition."""
        return max(self.newest.values(), default=None)


class TrailStages:
    """The trail index: person-days beside the gate stage, site slots in their own stage.

    A valid scan joins its person-day where the gate stage judged it (that
    agent reads and validates the scans anyway: a second agent on the same
    topic cost a second faust delivery and a second decode of every scan),
    and is forwarded to its site's partition, where the ``trail-sites`` stage
    puts it in its five-minute slot.
    """

    name = "trail-sites"

    def __init__(
        self, app: faust.App, outcomes: Outcomes, partitions: int, retention: timedelta
    ) -> None:
        self.outcomes, self.partitions = outcomes, partitions
        self.visits_topic = app.topic(
            f"{app.conf.id}-visits-by-site",
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
            internal=True,
        )
        trails = bytes_table(app, "trails", partitions, global_table=True)
        visits = bytes_table(app, "visits", partitions, global_table=True)
        self.index = TableIndex(trails, visits)
        keep = to_micros_delta(retention)
        self.trail_sweep = RetentionSweep(trails, DAY_US, keep, partitions)
        self.visit_sweep = RetentionSweep(visits, SLOT_US, keep, partitions)
        # The buckets this worker writes, decoded once: rebuilding a bucket from
        # its table value on every scan was most of these agents' cost. A site
        # slot holds many more visits than a person-day holds scans, hence the
        # smaller bound (a few hours of slots for a district's sites).
        self.person_days = StateTable(trails, Trail, limit=100_000)
        self.site_slots = StateTable(visits, SiteVisits, limit=20_000)

    def forget(self) -> None:
        """After a rebalance another worker may have written a bucket: the table is the truth."""
        self.person_days.forget()
        self.site_slots.forget()

    def index_scan(self, event: Any, effects: Effects, scan: contract.ScanEvent) -> None:
        """Put a valid scan in its person-day and forward it to its site's slot."""
        at = to_micros(scan.scanned_at)
        partition = event.message.partition
        if self.trail_sweep.too_old(partition, at):
            self.outcomes.counts["trail_expired"] += 1
            return
        self.trail_sweep.sweep(partition)
        key = trail_key(scan.person_id, at).decode()
        trail = self.person_days.load(key)
        if trail.add(at, scan.site_id, scan.kiosk_id, scan.direction, scan.event_id):
            self.person_days.save(effects, event, key, trail)
            self.outcomes.counts["trail"] += 1
        # The slot needs only the visit (processors.hop_records), not the whole scan.
        visit = Visit(scan.site_id, at, scan.person_id, scan.kiosk_id, scan.event_id)
        site_partition = partition_of(scan.site_id.encode(), self.partitions)
        effects.forward(self.visits_topic, site_partition, encode_visit(visit))

    def step(self, event: Any, effects: Effects) -> None:
        """The ``trail-sites`` stage: forwarded scans into their site's slots."""
        partition = event.message.partition
        for record in split_records(event.value):
            visit = decode_visit(record) if is_compact(record) else visit_of(record)
            at = visit.at_us
            if self.visit_sweep.too_old(partition, at):
                continue
            self.visit_sweep.sweep(partition)
            key = visit_key(visit.site_id, at).decode()
            bucket = self.site_slots.load(key)
            if bucket.add(at, visit.person_id, visit.kiosk_id, visit.event_id):
                self.site_slots.save(effects, event, key, bucket)
                self.outcomes.counts["visit"] += 1


def install_trails(
    app: faust.App,
    topics: Topics,
    outcomes: Outcomes,
    partitions: int,
    batching: Batching,
    retention: timedelta = RETENTION,
    idle_sweep_s: float = 600.0,
    wall_clock: bool = False,
) -> LiveTrails:
    stages = TrailStages(app, outcomes, partitions, retention)

    @app.timer(interval=idle_sweep_s)
    async def sweep_idle_partitions() -> None:
        """Retention on partitions without new scans: by the newest event time seen on any
        partition (or, with ``wall_clock``, by the clock on the wall, whichever is later)."""
        sweeps = (stages.trail_sweep, stages.visit_sweep)
        clocks = [c for c in (sweep.clock_us() for sweep in sweeps) if c is not None]
        if wall_clock:
            clocks.append(to_micros(datetime.now(UTC)))
        if not clocks:
            return
        now_us = max(clocks)
        actives = app.assignor.assigned_actives()
        scans_topic = topics.scans.get_topic_name()
        owned_scans = {tp.partition for tp in actives if tp.topic == scans_topic}
        visits_topic = stages.visits_topic.get_topic_name()
        owned_visits = {tp.partition for tp in actives if tp.topic == visits_topic}
        if stages.trail_sweep.sweep_idle(owned_scans, now_us):
            stages.person_days.forget()
        if stages.visit_sweep.sweep_idle(owned_visits, now_us):
            stages.site_slots.forget()

    @app.on_partitions_assigned.connect
    async def forget_buckets(sender: Any, assigned: Any, **kwargs: Any) -> None:
        stages.forget()

    @app.agent(stages.visits_topic, name=stages.name)
    async def trail_sites(stream: Any) -> None:
        await run_batched(
            stream,
            stages.step,
            topics,
            outcomes,
            stages.name,
            batching,
            trim=(stages.site_slots,),
        )

    return LiveTrails(stages.index, stages.index_scan, (stages.person_days,))


def visit_of(record: bytes) -> Visit:
    """The visit of a whole scan, as a worker of an earlier release forwarded it (validated)."""
    scan = decode_known(record, contract.ScanEvent)
    at = to_micros(scan.scanned_at)
    return Visit(scan.site_id, at, scan.person_id, scan.kiosk_id, scan.event_id)


def to_micros_delta(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1_000_000)

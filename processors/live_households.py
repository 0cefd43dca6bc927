"""The household outing quota, live: ``out`` scans re-keyed by household, judged in event time.

Scans are keyed by person, but the rule counts the persons of one household,
so the gate agent hands every scan the rule looks at
(:func:`processors.screening.counts_for_outing`) to :meth:`HouseholdStage.forward_scan`,
which forwards it to ``<app>-by-household`` (keyed by ``household_id``). The
household agent judges it with :func:`processors.screening.judge_outing` over
``HouseholdState[household_id]`` in a changelogged table, like every other
shard.

Why reorder: members' scans reach the household's partition from different
person partitions, in fetch order, not in event time. ``judge_outing`` lists
as evidence the scans of (t − 48 h, t] it has seen, so a member's earlier scan
arriving after a later one would be missing from that alert, and an alert
once published cannot be amended. So the stage keeps what it receives in a
reorder buffer (the changelogged table ``household-buffer``) and judges it in
(event time, event id) order, the order ``scantrail screen`` judges it in,
once the scan watermark has passed it: the gate stage records how far each
partition of ``scantrail.scans`` has delivered
(:class:`processors.live.SourceTicks` over :mod:`processors.watermarks`) and,
once a batch's forwards are acknowledged, broadcasts a tick to every
partition of ``<app>-by-household``; so in each partition a tick comes after
every forward it covers. The watermark is the minimum over all scan
partitions, and there is none until each of them has spoken. A scan is
judged once the watermark is past its time (strictly: a partition whose
newest scan is at t may still deliver another one at t).

Latency bound: an outing alert waits until every scan partition has delivered
a scan later than it, or, for a partition that has delivered everything and
is quiet, until ``SCANTRAIL_WORKER_IDLE_AFTER_S`` (30 s) after its
last delivery, when its watermark follows the wall clock less 30 s. With the
worker caught up, the delay added is therefore at most about 30 s plus a tick
(:data:`processors.live.TICK_EVERY_S`, 0.1 s) and a batch wait; in busy hours
it is the gap until the quietest gate partition's next scan. The rule raises
an ``info`` alert for the grid workers' rounds, not a refusal at the gate, so
half a minute costs nothing, and buys evidence equal to the offline command's.
While a scan partition still has a backlog (a worker catching up after a
restart) alerts wait for it, as the fever rules do.

A scan that arrives behind the watermark (a kiosk publishing what it kept
through a broker outage) is judged on arrival, as the person stage does with
late readings: it counts for the later scans not yet judged, alerts already
published keep their evidence. Only such a scan can make the live evidence
differ from offline.

At-least-once: buffer rows and household states are written only after the
batch's alerts are acknowledged, offsets committed after that. A crash
re-delivers the messages and ticks since the last commit: a buffer row still
in the table is not added twice, and a scan judged twice (a gate batch
forwarded again, or a row taken but not yet deleted) is found in the
household's window and ignored, so nothing is counted twice or lost.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import faust

from processors.agents import Outcomes
from processors.app import Topics
from processors.batching import Batching, Effects, one_line, run_batched, split_records
from processors.faust_tables import bytes_table
from processors.live import TICK_KEY, ScanHook, SourceTicks, tick_marks
from processors.live_state import ReorderBuffer, StateTable, partition_of, time_key
from processors.screening import counts_for_outing, judge_outing
from processors.screening_policy import PolicyLike
from processors.screening_state import HouseholdState
from processors.table_writes import TableWrites
from processors.watermarks import IDLE_AFTER_S, UpstreamWatermark, decode_marks
from scantrail import contract
from scantrail.contract import decode_known

log = logging.getLogger(__name__)


def outing_sort_key(scan: contract.ScanEvent) -> str:
    """Where a scan falls in the household stage's order: the offline Screener's (time, id)."""
    return f"{time_key(scan.scanned_at)}|{scan.event_id}"


@dataclass(frozen=True)
class LiveHouseholds:
    forward_scan: ScanHook
    caches: tuple[StateTable, ...]
    ticks: SourceTicks  # the gate stage tells it how far each scan partition delivered


class HouseholdStage:
    """``screen-households``: out scans, forwarded by household, judged in event-time order."""

    name = "screen-households"

    def __init__(
        self,
        topic: Any,
        states: Any,
        buffer: Any,
        policy: PolicyLike,
        outcomes: Outcomes,
        partitions: int,
    ) -> None:
        """``topic`` is ``<app>-by-household``; ``states`` and ``buffer`` its two tables."""
        self.topic, self.policy, self.outcomes = topic, policy, outcomes
        self.partitions = partitions
        self.households = StateTable(states, HouseholdState, limit=100_000)
        self.buffer = ReorderBuffer(buffer, outcomes.counts)
        # Per household partition: the scan watermark, over every scan partition.
        self.marks: dict[int, UpstreamWatermark] = defaultdict(
            lambda: UpstreamWatermark(partitions)
        )

    def forget(self) -> None:
        """A rebalance re-delivers from committed offsets: in-memory indexes start over."""
        self.households.forget()
        self.buffer.forget()
        self.marks.clear()

    def forward_scan(self, event: Any, effects: Effects, scan: contract.ScanEvent) -> None:
        """Called by the gate stage: hand an out scan the rule counts to its household."""
        if scan.household_id is None or not counts_for_outing(scan, self.policy):
            return
        record = one_line(event.message.value, lambda: contract.encode(scan))
        target = partition_of(scan.household_id.encode(), self.partitions)
        effects.forward(self.topic, target, record)

    def step(self, event: Any, effects: Effects) -> None:
        if event.key == TICK_KEY:
            self.on_tick(event, effects)
            return
        passed = self.marks[event.message.partition].passed
        rows: list[tuple[str, bytes, contract.ScanEvent]] = []
        for record in split_records(event.value):
            scan = decode_known(record, contract.ScanEvent)  # validated by the gate stage
            if passed is not None and scan.scanned_at < passed:
                self.outcomes.counts["late_outing"] += 1
                self.judge(event, effects, scan)
            else:
                rows.append((outing_sort_key(scan), record, scan))
        if rows:
            self.buffer.add(effects, event, rows)

    def on_tick(self, event: Any, effects: Effects) -> None:
        """The scan watermark moved: judge, in order, every buffered scan strictly before it."""
        marks = tick_marks(event)
        if marks is None:
            return
        mark = self.marks[event.message.partition].update(decode_marks(marks))
        if mark is None:
            return
        # "<time>|" sorts after every key of an earlier time, before every key at ``mark``.
        for record, scan in self.buffer.take_until(effects, event, f"{time_key(mark)}|"):
            if scan is None:  # rebuilt from the table after a restart
                scan = decode_known(record, contract.ScanEvent)
            self.judge(event, effects, scan)

    def judge(self, event: Any, effects: Effects, scan: contract.ScanEvent) -> None:
        if scan.household_id is None:
            return
        state = self.households.load(scan.household_id)
        before = len(state.outings), len(state.alerted)
        alerts = judge_outing(state, scan, self.policy)
        effects.alert(alerts)
        self.outcomes.counts["outing"] += 1
        if alerts or (len(state.outings), len(state.alerted)) != before:
            self.households.save(effects, event, scan.household_id, state)

    def report(self) -> dict[str, str | None]:
        """How far each household partition has judged (the scan watermark it trusts)."""
        return {
            str(p): None if m.passed is None else m.passed.isoformat()
            for p, m in sorted(self.marks.items())
        }


def install_households(
    app: faust.App,
    topics: Topics,
    policy: PolicyLike,
    outcomes: Outcomes,
    partitions: int,
    batching: Batching,
    idle_after_s: float = IDLE_AFTER_S,
) -> LiveHouseholds:
    """The household stage and the scan watermark it needs (pass ``ticks`` to the gate stage)."""
    topic = app.topic(
        f"{app.conf.id}-by-household",
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        internal=True,
    )

    stage = HouseholdStage(
        topic,
        bytes_table(app, "household-state", partitions),
        bytes_table(app, "household-buffer", partitions),
        policy,
        outcomes,
        partitions,
    )
    writer = batching.writer or TableWrites()
    ticks = SourceTicks(app, topics.scans.get_topic_name(), topic, partitions, writer, idle_after_s)
    ticks.install(app, "scans")

    @app.on_partitions_assigned.connect
    async def forget_households(sender: Any, assigned: Any, **kwargs: Any) -> None:
        stage.forget()
        ticks.forget()

    @app.agent(topic, name=stage.name)
    async def screen_households(stream: Any) -> None:
        await run_batched(
            stream, stage.step, topics, outcomes, stage.name, batching, trim=(stage.households,)
        )

    @app.timer(interval=30.0)
    async def log_household_watermarks() -> None:
        report = {"sources": ticks.report(), "households": stage.report()}
        log.info("household watermarks: %s", json.dumps(report))

    return LiveHouseholds(stage.forward_scan, (stage.households,), ticks)

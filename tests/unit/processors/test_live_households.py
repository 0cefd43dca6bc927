"""The live household stage judges out scans in event-time order, whatever order they arrive in.

The topics and tables are stand-ins for faust's (a dict, a list of sends),
driven the way the live topology drives the stage: the gate stage's batches
come from several scan partitions, each in time order but interleaved at
random, and each batch's forwards are followed by a watermark tick. The stage
must raise exactly the alerts of ``scantrail screen`` (the offline
:class:`Screener`), evidence included. The real broker path is
tests/integration/processors/test_live_districts.py.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from processors.agents import Outcomes
from processors.batching import BATCH_KEY, Effects
from processors.live import TICK_KEY
from processors.live_households import HouseholdStage, outing_sort_key
from processors.live_state import partition_of
from processors.screener import Screener
from processors.screening import judge_outing
from processors.screening_policy import ScreeningPolicy
from processors.screening_state import HouseholdState
from processors.watermarks import encode_marks
from scantrail import contract
from tests.factories import BASE_TIME, make_scan

POLICY = ScreeningPolicy()
PARTITIONS = 3
KIND = "outing_quota_exceeded"
FAR = BASE_TIME + timedelta(days=3650)


@dataclass
class Message:
    partition: int
    offset: int
    value: bytes
    topic: str = "by-household"


@dataclass
class Event:
    key: bytes
    value: bytes
    message: Message


@dataclass
class Topic:
    sent: list[tuple[bytes, bytes, int | None]] = field(default_factory=list)

    async def send(self, key: bytes, value: bytes, partition: int | None = None) -> Any:
        self.sent.append((key, value, partition))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@dataclass
class Topics:
    alerts: Topic = field(default_factory=Topic)
    deadletter: Topic = field(default_factory=Topic)


class Pipeline:
    """The gate side (forwards and ticks) and the household partitions' logs, in memory."""

    def __init__(self) -> None:
        self.forward, self.topics = Topic(), Topics()
        self.states: dict[Any, Any] = {}
        self.buffer: dict[Any, Any] = {}
        self.stage = self.new_stage()
        self.logs: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        self.read: dict[int, int] = defaultdict(int)  # next offset to deliver, per partition
        self.newest: dict[int, datetime] = {}

    def new_stage(self) -> HouseholdStage:
        """A worker (re)started over the same tables: only what they hold survives."""
        self.outcomes = Outcomes()
        return HouseholdStage(
            self.forward, self.states, self.buffer, POLICY, self.outcomes, PARTITIONS
        )

    def gate_batch(self, source: int, scans: list[contract.ScanEvent]) -> None:
        """The gate stage's batch from one scan partition: forwards, then a tick."""
        effects = Effects(self.topics, Outcomes())  # type: ignore[arg-type]
        for scan in scans:
            message = Message(source, 0, contract.encode(scan), "scantrail.scans")
            self.stage.forward_scan(Event(b"k", message.value, message), effects, scan)
        asyncio.run(effects.flush())
        for key, value, partition in self.forward.sent:
            assert key == BATCH_KEY and partition is not None
            self.logs[partition].append((key, value))
        self.forward.sent.clear()
        newest = max(s.scanned_at for s in scans)
        self.newest[source] = max(newest, self.newest.get(source, newest))
        self.tick(self.newest)

    def tick(self, marks: dict[int, datetime]) -> None:
        value = json.dumps({"marks": encode_marks(marks)}).encode()
        for partition in range(PARTITIONS):
            self.logs[partition].append((TICK_KEY, value))

    def deliver(self, rng: random.Random | None = None) -> list[contract.Alert]:
        """Every household partition consumes its log, in an interleaving ``rng`` picks."""
        alerts: list[contract.Alert] = []
        while True:
            ready = [p for p in range(PARTITIONS) if self.read[p] < len(self.logs[p])]
            if not ready:
                return alerts
            partition = rng.choice(ready) if rng else ready[0]
            offset = self.read[partition]
            key, value = self.logs[partition][offset]
            effects = Effects(self.topics, Outcomes())  # type: ignore[arg-type]
            self.stage.step(Event(key, value, Message(partition, offset, value)), effects)
            asyncio.run(effects.flush())
            alerts += effects.alerts
            self.read[partition] = offset + 1


def households(seed: int, count: int = 6, members: int = 3) -> list[contract.ScanEvent]:
    """Out scans of several households over four days, some of them within minutes."""
    rng = random.Random(seed)
    scans = []
    for h in range(count):
        for m in range(members):
            for _ in range(rng.randint(1, 5)):
                at = BASE_TIME + timedelta(minutes=rng.randint(0, 4 * 24 * 60))
                scans.append(
                    make_scan(
                        person_id=f"p-{h}-{m}",
                        pass_id=f"pass-{h}-{m}",
                        direction="out",
                        household_id=f"hh-{h}",
                        scanned_at=at,
                    )
                )
    return scans


def by_source(scans: list[contract.ScanEvent]) -> dict[int, list[contract.ScanEvent]]:
    """Scans as the scan topic holds them: keyed by person, each partition in time order."""
    out: dict[int, list[contract.ScanEvent]] = defaultdict(list)
    for scan in sorted(scans, key=lambda s: (s.scanned_at, s.event_id)):
        out[partition_of(scan.person_id.encode(), PARTITIONS)].append(scan)
    return out


def run_gate(pipeline: Pipeline, scans: list[contract.ScanEvent], rng: random.Random) -> None:
    """Gate batches of one to four scans, from partitions picked at random."""
    queues = by_source(scans)
    while any(queues.values()):
        source = rng.choice([p for p, q in queues.items() if q])
        size = rng.randint(1, 4)
        batch, queues[source] = queues[source][:size], queues[source][size:]
        pipeline.gate_batch(source, batch)


def offline(scans: list[contract.ScanEvent]) -> list[dict[str, Any]]:
    return sorted(
        (a.to_dict() for a in Screener(POLICY).run(scans) if a.kind == KIND),
        key=lambda a: a["alert_id"],
    )


def live(alerts: list[contract.Alert]) -> list[dict[str, Any]]:
    ids = [a.alert_id for a in alerts]
    assert len(ids) == len(set(ids)), "an alert raised twice"
    return sorted((a.to_dict() for a in alerts), key=lambda a: a["alert_id"])


def test_arrival_order_alone_would_lose_evidence() -> None:
    """The scenario the stage exists for: judged as they arrive, alerts differ from offline."""
    scans = households(seed=1)
    rng = random.Random(1)
    queues = by_source(scans)
    arrival: list[contract.ScanEvent] = []
    while any(queues.values()):
        source = rng.choice([p for p, q in queues.items() if q])
        arrival.append(queues[source].pop(0))
    states: dict[str, HouseholdState] = defaultdict(HouseholdState)
    alerts = [a for s in arrival for a in judge_outing(states[str(s.household_id)], s, POLICY)]
    assert live(alerts) != offline(scans)


def test_scans_interleaved_from_several_partitions_raise_offline_alerts_exactly() -> None:
    for seed in range(8):
        scans = households(seed)
        pipeline = Pipeline()
        rng = random.Random(seed)
        run_gate(pipeline, scans, rng)
        alerts = pipeline.deliver(rng)
        pipeline.tick({p: FAR for p in range(PARTITIONS)})  # idle sources: the clock moves on
        alerts += pipeline.deliver(rng)
        expected = offline(scans)
        assert expected, seed
        assert live(alerts) == expected, seed
        assert pipeline.buffer == {}  # every row taken and deleted


def test_nothing_is_judged_before_every_scan_partition_has_spoken() -> None:
    first = make_scan(direction="out", household_id="hh-1", person_id="p-a", pass_id="x")
    pipeline = Pipeline()
    source = partition_of(b"p-a", PARTITIONS)
    pipeline.gate_batch(source, [first])
    assert pipeline.deliver() == [] and pipeline.outcomes.counts["outing"] == 0
    assert len(pipeline.buffer) == 1  # kept in the changelogged table
    # Every partition speaks, but none is past the scan yet: still held.
    pipeline.tick({p: first.scanned_at for p in range(PARTITIONS)})
    pipeline.deliver()
    assert pipeline.outcomes.counts["outing"] == 0
    pipeline.tick({p: first.scanned_at + timedelta(microseconds=1) for p in range(PARTITIONS)})
    pipeline.deliver()
    assert pipeline.outcomes.counts["outing"] == 1 and pipeline.buffer == {}


def test_a_restart_and_redelivered_messages_count_nothing_twice_and_lose_nothing() -> None:
    scans = sorted(households(seed=3), key=outing_sort_key)  # halves as the topic holds them
    pipeline = Pipeline()
    rng = random.Random(3)
    half = len(scans) // 2
    run_gate(pipeline, scans[:half], rng)
    alerts = pipeline.deliver(rng)
    # A crash before the commit: the worker restarts over its tables, its
    # partitions re-deliver the last messages, and the gate forwards its last
    # batch again (at new offsets).
    pipeline.stage = pipeline.new_stage()
    for partition in range(PARTITIONS):
        pipeline.read[partition] = max(0, pipeline.read[partition] - 3)
    queues = by_source(scans[:half])
    last = next(p for p, q in queues.items() if q)
    pipeline.gate_batch(last, queues[last][-2:])
    run_gate(pipeline, scans[half:], rng)
    alerts += pipeline.deliver(rng)
    pipeline.tick({p: FAR for p in range(PARTITIONS)})
    alerts += pipeline.deliver(rng)
    assert live(list({a.alert_id: a for a in alerts}.values())) == offline(scans)
    # The same alert may be sent again after a crash, always with the same content.
    seen: dict[str, contract.Alert] = {}
    for alert in alerts:
        assert seen.setdefault(alert.alert_id, alert) == alert


def test_a_scan_behind_the_watermark_is_judged_on_arrival() -> None:
    early = make_scan(direction="out", household_id="hh-1", person_id="p-a", pass_id="a")
    later = make_scan(
        direction="out",
        household_id="hh-1",
        person_id="p-b",
        pass_id="b",
        scanned_at=early.scanned_at + timedelta(hours=1),
    )
    pipeline = Pipeline()
    pipeline.gate_batch(partition_of(b"p-b", PARTITIONS), [later])
    pipeline.tick({p: later.scanned_at + timedelta(minutes=1) for p in range(PARTITIONS)})
    assert pipeline.deliver() == []  # the second member alone: within the quota
    # A kiosk that kept its scans through an outage publishes them now: the
    # scan is judged at once and counted for the later one, as offline.
    pipeline.gate_batch(partition_of(b"p-a", PARTITIONS), [early])
    alerts = pipeline.deliver()
    assert pipeline.outcomes.counts["late_outing"] == 1
    assert live(alerts) == offline([early, later]) and len(alerts) == 1


def test_the_sort_key_is_the_offline_order() -> None:
    scans = households(seed=5)
    scans.append(make_scan(direction="out", household_id="hh-0", scanned_at=scans[0].scanned_at))
    keys = sorted(scans, key=outing_sort_key)
    assert keys == sorted(scans, key=lambda s: (s.scanned_at, s.event_id))

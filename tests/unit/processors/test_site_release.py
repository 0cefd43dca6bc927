"""The site stage releases a big watermark step a bounded part at a time, in order.

Only the release is under test: the rules are replaced by a recorder (they are
tested on their own), and the tables are plain dicts behind the real
``ReorderBuffer`` and ``StateTable``. The whole stage on a real broker is in
tests/integration/processors/test_live_screening.py.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from processors import live
from processors.agents import Outcomes
from processors.batching import Effects, join_records
from processors.hop_records import encode_sample
from processors.live import TICK_KEY, SiteStage
from processors.live_state import ReorderBuffer, StateTable
from processors.screening_state import ClusterState, DriftState, Sample
from processors.table_writes import Outgoing
from processors.watermarks import UpstreamWatermark, encode_marks

T0 = datetime(2020, 2, 1, 8, tzinfo=UTC)


@dataclass
class Message:
    partition: int
    offset: int


@dataclass
class Event:
    key: bytes
    value: bytes
    message: Message


class Table(dict[Any, Any]):
    name = "site-buffer"


@dataclass
class Writer:
    sent: list[Outgoing] = field(default_factory=list)

    async def send_soon(self, records: list[Outgoing]) -> None:
        self.sent.extend(records)


@dataclass
class Marks:
    writer: Writer = field(default_factory=Writer)
    by_site: str = "by-site"
    sites: dict[int, UpstreamWatermark] = field(
        default_factory=lambda: defaultdict(lambda: UpstreamWatermark(1))
    )


@dataclass
class Shard:
    outcomes: Outcomes = field(default_factory=Outcomes)


def sample(second: float) -> Sample:
    return Sample(f"r{second}", T0 + timedelta(seconds=second), 36.6, "k1", "site-1", "p1")


def stage_with_recorder() -> tuple[SiteStage, list[str], Writer]:
    stage = SiteStage.__new__(SiteStage)
    marks = Marks()
    stage.shard, stage.marks = Shard(), marks  # type: ignore[assignment]
    stage.clusters = StateTable(Table(), ClusterState)
    stage.drifts = StateTable(Table(), DriftState)
    stage.buffer = ReorderBuffer(Table(), stage.shard.outcomes.counts)
    stage.releasing, stage.judged_through, stage.go_on = {}, {}, set()
    judged: list[str] = []

    def judge(event: Any, effects: Effects, item: Any) -> None:
        judged.append(item.event_id)

    stage.judge = judge  # type: ignore[method-assign]
    return stage, judged, marks.writer


def data(offset: int, *seconds: float) -> Event:
    value = join_records([encode_sample(sample(s)) for s in seconds])
    return Event(b"batch", value, Message(0, offset))


def tick(offset: int, until: float) -> Event:
    marks = encode_marks({0: T0 + timedelta(seconds=until)})
    return Event(TICK_KEY, json.dumps({"marks": marks}).encode(), Message(0, offset))


def step(stage: SiteStage, event: Event) -> None:
    stage.step(event, Effects(None, stage.shard.outcomes))  # type: ignore[arg-type]


def test_a_big_release_goes_on_in_bounded_steps_and_keeps_event_time_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live, "RELEASE_STEP", 2)
    stage, judged, writer = stage_with_recorder()
    step(stage, data(0, 1, 2, 3, 4, 5))
    step(stage, tick(1, until=10))
    assert judged == ["r1", "r2"]
    # Ahead of what was judged but behind the tick's mark: it waits its turn.
    # Behind what was judged: judged on arrival, as a late record always was.
    step(stage, data(2, 2.5, 1.5))
    assert judged == ["r1", "r2", "r1.5"]
    assert stage.shard.outcomes.counts["site_late"] == 1
    # Once the batch is durable the stage ticks its own partition to go on.
    asyncio.run(stage.after())
    (own,) = writer.sent
    assert (own.key, own.partition) == (TICK_KEY, 0)
    step(stage, Event(TICK_KEY, own.value, Message(0, 3)))
    assert judged[3:] == ["r2.5", "r3"]
    asyncio.run(stage.after())
    step(stage, Event(TICK_KEY, writer.sent[-1].value, Message(0, 4)))
    assert judged[5:] == ["r4", "r5"]
    # Done: no more ticks of its own, and what comes behind the mark is late again.
    assert stage.releasing == {} and stage.judged_through == {}
    asyncio.run(stage.after())
    assert len(writer.sent) == 2
    step(stage, data(5, 9))
    assert judged[-1] == "r9" and stage.shard.outcomes.counts["site_late"] == 2


def test_a_release_within_the_step_needs_no_tick_of_its_own() -> None:
    stage, judged, writer = stage_with_recorder()
    step(stage, data(0, 1, 2, 3))
    step(stage, tick(1, until=2.5))
    assert judged == ["r1", "r2"]
    asyncio.run(stage.after())
    assert writer.sent == []
    step(stage, tick(2, until=10))
    assert judged == ["r1", "r2", "r3"]

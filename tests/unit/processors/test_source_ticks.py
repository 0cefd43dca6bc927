"""A source partition counts as delivered only once the batch that read it is durable."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from processors.agents import Outcomes
from processors.batching import Effects
from processors.live import SourceTicks
from processors.table_writes import TableWrites

T0 = datetime(2020, 2, 10, tzinfo=UTC)


def event(partition: int, offset: int) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(partition=partition, offset=offset))


def durable(effects: Effects) -> None:
    for step in effects.later:  # what Effects.flush runs once sends and writes are acked
        step()


def test_records_count_once_their_batch_is_durable_with_the_time_the_stage_gave() -> None:
    ticks = SourceTicks(None, "scantrail.temperatures", None, 3, TableWrites())
    first, second = Effects(None, Outcomes()), Effects(None, Outcomes())  # type: ignore[arg-type]
    for offset in range(3):
        cell = ticks.delivered(first, event(0, offset))
        cell[0] = T0 + timedelta(seconds=offset)
    ticks.delivered(first, event(1, 7))  # refused (dead-lettered): moves the offset only
    late = ticks.delivered(second, event(0, 3))
    late[0] = T0 + timedelta(hours=1)
    assert ticks.source.progress == {}  # nothing is durable yet
    assert len(first.later) == len(second.later) == 1  # one step per batch
    durable(first)
    progress = ticks.source.progress
    assert (progress[0].next_offset, progress[0].newest) == (3, T0 + timedelta(seconds=2))
    assert (progress[1].next_offset, progress[1].newest) == (8, None)
    durable(second)
    assert (progress[0].next_offset, progress[0].newest) == (4, T0 + timedelta(hours=1))


def test_a_batch_tells_the_newest_time_of_each_partition_not_its_last() -> None:
    ticks = SourceTicks(None, "scantrail.temperatures", None, 2, TableWrites())
    batch = Effects(None, Outcomes())  # type: ignore[arg-type]
    for offset, seconds in [(0, 2), (1, 5), (2, 1), (3, None)]:  # a kiosk caught up out of order
        cell = ticks.delivered(batch, event(0, offset))
        cell[0] = None if seconds is None else T0 + timedelta(seconds=seconds)
    durable(batch)
    progress = ticks.source.progress[0]
    assert (progress.next_offset, progress.newest) == (4, T0 + timedelta(seconds=5))


class RecordingTopic:
    """Collects the ticks :func:`processors.live.broadcast` sends (no broker in a unit test)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, dict[str, object]]] = []

    async def send(self, key: bytes, value: bytes, partition: int) -> None:
        self.sent.append((partition, json.loads(value)))


def test_every_durable_batch_that_moves_the_marks_ticks_at_once() -> None:
    """No throttle between batches: a held tick is latency added to every person alert."""
    target = RecordingTopic()
    ticks = SourceTicks(None, "scantrail.temperatures", target, 2, TableWrites())
    ticks.source.assign({0}, 0.0)

    async def batch(offset: int, seconds: int) -> None:
        effects = Effects(None, Outcomes())  # type: ignore[arg-type]
        ticks.delivered(effects, event(0, offset))[0] = T0 + timedelta(seconds=seconds)
        durable(effects)
        await ticks.advance()

    async def scenario() -> None:
        await batch(0, 1)
        await batch(1, 2)  # milliseconds later
        await batch(2, 2)  # the same newest time: nothing moved, nothing sent

    asyncio.run(scenario())
    assert [p for p, _ in target.sent] == [0, 1, 0, 1]  # every target partition, twice
    marks = [payload["marks"] for _, payload in target.sent]
    assert marks[0] == marks[1] != marks[2] == marks[3]
    assert marks[3] == {"0": (T0 + timedelta(seconds=2)).isoformat()}

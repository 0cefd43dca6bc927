"""Event-time watermarks for the live shards: how far each source has certainly delivered.

Pure bookkeeping, no faust and no Kafka: the live topology feeds it offsets,
event times and high-water marks, and sends what it answers as tick messages.

The watermark of one source partition is the newest event time it has
delivered, because a kiosk publishes in time order and a partition carries its
kiosks' records in publish order. A partition that has delivered everything it
holds (its next offset has reached the high-water mark) and has been quiet for
``idle_after_s`` (``SCANTRAIL_WORKER_IDLE_AFTER_S``, 30 s) is idle: time still
passes at its gates, so its watermark follows the wall clock (less the same
margin), and a re-measure window closes at night even if nobody else walks
through. A partition that still has records
to deliver, or whose position is not known yet, has no watermark and so holds
every shard back: after a restart or a rebalance on a backlog, the first
partition to deliver must not speak for the others.

Downstream, a shard trusts the minimum over every upstream partition, and only
once every one of them has spoken (:class:`UpstreamWatermark`). Each source
partition is reported by whichever worker owns it, so several workers combine
correctly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

IDLE_AFTER_S = 30.0  # default: a caught-up partition quiet this long no longer holds time back


@dataclass
class PartitionProgress:
    """What one owned source partition has delivered so far."""

    since: float  # wall clock of the last delivery, or of the assignment
    next_offset: int | None = None  # where delivery continues; None until known
    newest: datetime | None = None
    delivering: bool = False  # once true, next_offset is ours, not the committed offset


@dataclass
class SourceWatermarks:
    """Per-partition watermarks of the source partitions this worker owns."""

    progress: dict[int, PartitionProgress] = field(default_factory=dict)
    idle_after_s: float = IDLE_AFTER_S

    def assign(self, partitions: Iterable[int], wall: float) -> list[int]:
        """Own exactly ``partitions`` from now on; returns the newly owned ones.

        A rebalance re-delivers from the committed offset, so what was known of
        a partition before it is forgotten, kept partitions included.
        """
        wanted = set(partitions)
        fresh = sorted(wanted - set(self.progress))
        for partition in list(self.progress):
            if partition not in wanted:
                del self.progress[partition]
        for partition in fresh:
            self.progress[partition] = PartitionProgress(since=wall)
        return fresh

    def reset(self, wall: float) -> None:
        """Forget everything (after a rebalance): owned partitions start over."""
        for partition in self.progress:
            self.progress[partition] = PartitionProgress(since=wall)

    def starts_at(self, partition: int, offset: int) -> None:
        """Where delivery of a not yet delivering partition begins (its committed offset).

        Asked again until the partition delivers: the consumer learns its
        committed offset only once the assignment has settled.
        """
        progress = self.progress.get(partition)
        if progress is not None and not progress.delivering:
            progress.next_offset = offset

    def delivered(self, partition: int, offset: int, at: datetime | None, wall: float) -> None:
        """Record one delivered record; ``at`` is None for records that carry no usable time."""
        progress = self.progress.setdefault(partition, PartitionProgress(since=wall))
        progress.delivering = True
        progress.next_offset = offset + 1
        progress.since = wall
        if at is not None and (progress.newest is None or at > progress.newest):
            progress.newest = at

    def waiting(self) -> list[int]:
        """Owned partitions that have not delivered yet (their start comes from the consumer)."""
        return [p for p, progress in self.progress.items() if not progress.delivering]

    def marks(
        self, wall: float, now: datetime, highwater: Callable[[int], int | None]
    ) -> dict[int, datetime]:
        """The watermark of every owned partition that has one."""
        out: dict[int, datetime] = {}
        idle_mark = now - timedelta(seconds=self.idle_after_s)
        idle = self.idle(wall, highwater)
        for partition, progress in self.progress.items():
            if partition in idle:
                out[partition] = (
                    idle_mark if progress.newest is None else max(progress.newest, idle_mark)
                )
            elif progress.newest is not None:
                out[partition] = progress.newest
        return out

    def idle(self, wall: float, highwater: Callable[[int], int | None]) -> set[int]:
        """Owned partitions that have delivered all they hold and been quiet ``idle_after_s``."""
        out = set()
        for partition, progress in self.progress.items():
            end = highwater(partition)
            caught_up = (
                end is not None and progress.next_offset is not None and progress.next_offset >= end
            )
            if caught_up and wall - progress.since > self.idle_after_s:
                out.add(partition)
        return out


@dataclass
class UpstreamWatermark:
    """The watermark a shard partition may trust: the minimum over every upstream partition."""

    upstreams: int
    ticks: dict[int, datetime] = field(default_factory=dict)
    passed: datetime | None = None

    def update(self, marks: Mapping[int, datetime]) -> datetime | None:
        """Take upstream marks (each only ever moves on); returns the new minimum if it moved."""
        for upstream, at in marks.items():
            if upstream not in self.ticks or at > self.ticks[upstream]:
                self.ticks[upstream] = at
        if len(self.ticks) < self.upstreams:
            return None
        low = min(self.ticks.values())
        if self.passed is not None and low <= self.passed:
            return None
        self.passed = low
        return low


def encode_marks(marks: Mapping[int, datetime]) -> dict[str, str]:
    return {str(partition): at.isoformat() for partition, at in marks.items()}


def decode_marks(raw: Mapping[str, str]) -> dict[int, datetime]:
    return {int(partition): datetime.fromisoformat(at) for partition, at in raw.items()}

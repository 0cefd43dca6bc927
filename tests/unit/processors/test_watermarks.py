"""Source and upstream watermarks: who may speak for event time, and when."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from processors.watermarks import (
    IDLE_AFTER_S,
    SourceWatermarks,
    UpstreamWatermark,
    decode_marks,
    encode_marks,
)

T0 = datetime(2020, 2, 10, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def ends(**by_partition: int) -> Callable[[int], int | None]:
    table = {int(k[1:]): v for k, v in by_partition.items()}
    return lambda partition: table.get(partition)


def test_a_partition_with_a_backlog_holds_time_back_after_a_restart() -> None:
    """The bug a SIGKILL test found: the first partition to deliver spoke for all."""
    source = SourceWatermarks()
    source.assign([0, 1], wall=0.0)
    source.starts_at(0, 100)
    source.starts_at(1, 40)  # committed offset 40, log ends at 90: 50 records to come
    source.delivered(0, 100, T0 + timedelta(minutes=50), wall=100.0)
    marks = source.marks(wall=100.0, now=NOW, highwater=ends(p0=101, p1=90))
    assert marks == {0: T0 + timedelta(minutes=50)}
    # Long quiet does not make a partition with records to deliver idle.
    marks = source.marks(wall=1000.0, now=NOW, highwater=ends(p0=101, p1=90))
    assert 1 not in marks


def test_an_unknown_start_or_end_holds_time_back() -> None:
    source = SourceWatermarks()
    source.assign([0], wall=0.0)
    assert source.marks(wall=1000.0, now=NOW, highwater=ends(p0=5)) == {}
    source.starts_at(0, 5)
    assert source.marks(wall=1000.0, now=NOW, highwater=ends()) == {}


def test_a_caught_up_partition_becomes_idle_only_after_the_quiet_period() -> None:
    source = SourceWatermarks()
    source.assign([0], wall=0.0)
    source.starts_at(0, 7)
    end = ends(p0=7)
    assert source.marks(wall=IDLE_AFTER_S - 1, now=NOW, highwater=end) == {}
    idle = source.marks(wall=IDLE_AFTER_S + 1, now=NOW, highwater=end)
    assert idle == {0: NOW - timedelta(seconds=IDLE_AFTER_S)}


def test_the_quiet_period_is_a_setting() -> None:
    source = SourceWatermarks(idle_after_s=90.0)
    source.assign([0], wall=0.0)
    source.starts_at(0, 7)
    end = ends(p0=7)
    assert source.marks(wall=IDLE_AFTER_S + 1, now=NOW, highwater=end) == {}
    idle = source.marks(wall=91.0, now=NOW, highwater=end)
    assert idle == {0: NOW - timedelta(seconds=90)}


def test_idle_names_the_partitions_that_follow_the_clock() -> None:
    source = SourceWatermarks()
    source.assign([0, 1, 2], wall=0.0)
    source.starts_at(0, 7)  # caught up
    source.starts_at(1, 3)  # behind its end
    end = ends(p0=7, p1=9, p2=4)  # p2: position not known yet
    assert source.idle(wall=IDLE_AFTER_S - 1, highwater=end) == set()
    assert source.idle(wall=IDLE_AFTER_S + 1, highwater=end) == {0}


def test_a_delivering_partition_marks_its_newest_time_until_idle() -> None:
    source = SourceWatermarks()
    source.assign([0], wall=0.0)
    source.delivered(0, 0, T0, wall=1.0)
    source.delivered(0, 1, T0 - timedelta(minutes=5), wall=2.0)  # a late record: no step back
    end = ends(p0=2)
    assert source.marks(wall=3.0, now=NOW, highwater=end) == {0: T0}
    later = source.marks(wall=2.0 + IDLE_AFTER_S + 1, now=NOW, highwater=end)
    assert later == {0: NOW - timedelta(seconds=IDLE_AFTER_S)}
    # The committed offset no longer matters once the partition delivers.
    source.starts_at(0, 0)
    assert source.progress[0].next_offset == 2


def test_a_record_without_time_moves_the_position_but_not_the_mark() -> None:
    source = SourceWatermarks()
    source.assign([0], wall=0.0)
    source.delivered(0, 0, None, wall=1.0)
    assert source.marks(wall=1.0, now=NOW, highwater=ends(p0=1)) == {}
    assert source.progress[0].next_offset == 1


def test_assignment_and_reset_forget_what_a_rebalance_redelivers() -> None:
    source = SourceWatermarks()
    assert source.assign([0, 1], wall=0.0) == [0, 1]
    source.delivered(1, 3, T0, wall=1.0)
    assert source.assign([1, 2], wall=5.0) == [2]
    assert set(source.progress) == {1, 2}
    assert source.progress[1].newest == T0
    source.reset(wall=9.0)
    assert source.waiting() == [1, 2]
    assert source.progress[1].newest is None


def test_upstream_watermark_waits_for_every_upstream_and_only_moves_on() -> None:
    marks = UpstreamWatermark(upstreams=2)
    assert marks.update({0: T0}) is None
    assert marks.update({1: T0 + timedelta(minutes=1)}) == T0
    assert marks.passed == T0
    # An older tick (replayed after a restart) changes nothing.
    assert marks.update({0: T0 - timedelta(hours=1)}) is None
    assert marks.update({0: T0 + timedelta(minutes=5)}) == T0 + timedelta(minutes=1)
    assert marks.update({0: T0 + timedelta(minutes=6)}) is None  # min still held by upstream 1


def test_marks_round_trip_as_json_text() -> None:
    marks = {0: T0, 3: NOW}
    assert decode_marks(encode_marks(marks)) == marks


def test_the_fetch_state_of_a_source_partition_says_why_it_is_not_fetched() -> None:
    from types import SimpleNamespace

    from faust.types import TP

    from processors.live import fetch_state

    a, b, c, d = (TP("scantrail.temperatures", p) for p in range(4))
    consumer = SimpleNamespace(
        _paused_partitions={a}, _buffered_partitions={b}, _active_partitions={c}
    )
    assert [fetch_state(consumer, tp) for tp in (a, b, c, d)] == [
        "paused",
        "buffer_full",
        "fetching",
        "not_fetched",
    ]
    # Before faust first sets its active partitions, every assigned one is fetched.
    fresh = SimpleNamespace(
        _paused_partitions=set(), _buffered_partitions=set(), _active_partitions=None
    )
    assert fetch_state(fresh, d) == "fetching"
    assert fetch_state(object(), d) == "unknown"

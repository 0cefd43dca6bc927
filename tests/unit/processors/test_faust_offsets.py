"""processors.faust_offsets: what may be committed after ``committed``, and which lost records to fetch again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types import TP

from processors import faust_offsets
from processors.faust_offsets import HeadWatch, Owed, head_is_acked, waiting_on_lost_records


def test_a_run_starting_at_the_committed_offset_may_be_committed() -> None:
    assert head_is_acked([5, 6, 7], committed=5)


def test_one_unacked_record_at_the_committed_offset_holds_the_commit_back() -> None:
    # faust's own check (min(acked) - committed > 1) lets exactly this through.
    assert not head_is_acked([6, 7], committed=5)


def test_a_partition_read_from_offset_zero_is_checked_too() -> None:
    # faust skips its check when the committed offset is 0 (falsy).
    assert not head_is_acked([3, 4], committed=0)
    assert head_is_acked([0, 1], committed=0)


def test_nothing_is_committed_while_the_partition_start_is_unknown() -> None:
    assert not head_is_acked([0, 1, 2], committed=None)
    assert not head_is_acked([], committed=0)


def test_a_hole_at_the_head_fetched_past_and_nowhere_on_its_way_is_lost() -> None:
    # Offsets 5..9 were fetched past and dropped; 10.. were delivered and acknowledged.
    lost = waiting_on_lost_records({"t0": 5}, {"t0": [10, 11]}, {}, fetched_to={"t0": 12})
    assert lost == {"t0": 5}


def test_a_record_on_its_way_at_or_below_the_hole_is_not_lost() -> None:
    committed, acked, position = {"t0": 5}, {"t0": [10, 11]}, {"t0": 14}
    assert waiting_on_lost_records(committed, acked, {"t0": 5}, position) == {}
    assert waiting_on_lost_records(committed, acked, {"t0": 3}, position) == {}
    # On its way, but only above the hole: the hole is still lost.
    assert waiting_on_lost_records(committed, acked, {"t0": 12}, position) == {"t0": 5}


def test_a_partition_not_fetched_past_its_commit_waits_its_turn() -> None:
    # A backlog: nothing delivered yet, and the client has not fetched this far.
    assert waiting_on_lost_records({"t0": 5}, {}, {}, fetched_to={"t0": 5}) == {}
    assert waiting_on_lost_records({"t0": 5}, {}, {}, fetched_to={}) == {}
    # Fetched past, nothing delivered, nothing buffered: a stalled partition.
    assert waiting_on_lost_records({"t0": 5}, {}, {}, fetched_to={"t0": 9}) == {"t0": 5}


def test_acknowledged_heads_and_unknown_starts_wait_on_nothing() -> None:
    committed = {"acked": 4, "start-unknown": None}
    acked = {"acked": [4, 5], "start-unknown": [7]}
    assert waiting_on_lost_records(committed, acked, {}, {"acked": 9, "start-unknown": 9}) == {}


def test_a_partition_is_sought_back_after_waiting_on_one_offset_for_every_look() -> None:
    watch = HeadWatch(looks=3)
    assert watch.look({"t0": 5}) == []
    assert watch.look({"t0": 6}) == []  # the commit moved: the count starts again
    assert watch.look({"t0": 6}) == []
    assert watch.look({"t0": 6}) == ["t0"]
    assert watch.look({"t0": 6}) == []  # counted afresh after a seek-back
    assert watch.look({}) == []  # it came: nothing waits
    assert watch.look({"t0": 6}) == []


def test_records_in_order_are_delivered_and_a_jump_names_the_offset_owed() -> None:
    owed = Owed()
    owed.start({"t0": 5, "t1": None})
    assert owed.check("t0", 5) is None
    assert owed.check("t0", 6) is None
    assert owed.check("t0", 9) == 7  # 7 and 8 never reached the agents: not delivered
    assert owed.check("t0", 10) == 7  # still owed
    assert owed.check("t0", 7) is None  # fetched again after the seek back
    assert owed.check("t1", 40) is None  # where it starts was not known: taken as it comes


def test_a_seek_back_or_records_gone_move_what_is_owed() -> None:
    owed = Owed()
    owed.start({"t0": 5})
    owed.restart("t0", 3)  # HeadWatch sought back to the committed offset
    assert owed.check("t0", 4) == 3
    assert owed.check("t0", 3) is None
    owed.accept("t0", 20)  # 4..19 deleted by retention
    assert owed.check("t0", 21) is None
    owed.start({})  # a rebalance: nothing owed until the next seek says where
    assert owed.check("t0", 99) is None


def test_only_partitions_sought_since_the_last_assignment_deliver() -> None:
    owed = Owed()
    owed.start({"t0": 1540, "t1": None})
    assert owed.sought("t0") and owed.sought("t1")
    assert not owed.sought("t2")  # assigned since: its start is not known yet
    assert owed.check("t1", 7) is None  # sought, start unknown: taken as it comes


def test_records_held_back_while_the_seek_runs_are_fetched_again() -> None:
    owed = Owed()
    owed.hold("stale")  # fetched from where another worker had read: the seek fetches it again
    owed.begin()  # faust's seek to the committed offsets starts
    owed.hold("t0")  # already sought on the consumer's thread, its start not known here yet
    owed.hold("not-owed")  # compacted, or assigned since: no start to seek to
    owed.hold("t1")
    again = owed.start({"t0": 1540, "t1": None, "stale": 7})
    assert again == ["t0"]  # t1: start unknown, taken as it comes; stale: held before the seek
    assert owed.start({"t0": 1541}) == []  # held back once, fetched again once


def test_events_queued_for_a_stream_are_on_their_way() -> None:
    """A real faust channel's queue: what the conductor put there and no stream took yet."""
    import faust
    from faust.events import Event
    from faust.types import TP, Message

    from processors.faust_offsets import queued_in_streams

    app = faust.App("queued-test", broker="memory://")
    taken, waiting, idle = app.channel(), app.channel(), app.channel()
    for offset in (7, 5, 9):  # several partitions' records share one queue, in delivery order
        message = Message("by-person", 0, offset, 0.0, 0, {}, b"k", b"v", None)
        waiting.queue.force_put_nowait(Event(app, b"k", b"v", {}, message))
    other = Message("by-person", 1, 40, 0.0, 0, {}, b"k", b"v", None)
    taken.queue.force_put_nowait(Event(app, b"k", b"v", {}, other))
    taken.queue.get_nowait()  # a stream took it: tracked as unacknowledged instead

    heard: dict[TP, int] = {}

    def on_its_way(tp: TP, offset: int) -> None:
        heard[tp] = min(offset, heard.get(tp, offset))

    queued_in_streams([taken, waiting, idle], on_its_way)
    assert heard == {TP("by-person", 0): 5}
    lost = waiting_on_lost_records(
        {TP("by-person", 0): 5}, {TP("by-person", 0): ()}, heard, {TP("by-person", 0): 10}
    )
    assert lost == {}  # queued, so not lost: before the fix it was sought back


def test_a_head_a_commit_in_flight_moves_past_is_not_lost() -> None:
    # faust took 5..11 off the acknowledged list and is committing 12: 5 is done, not lost.
    committed, position = {"t0": 5}, {"t0": 14}
    assert waiting_on_lost_records(committed, {}, {}, position, committing={"t0": 12}) == {}
    # A commit that does not move past the head (or another partition's) changes nothing.
    assert waiting_on_lost_records(committed, {}, {}, position, {"t0": 5}) == {"t0": 5}
    assert waiting_on_lost_records(committed, {}, {}, position, {"t1": 12}) == {"t0": 5}


T0 = TP("t", 0)


class _Committer:
    """The parts of faust's consumer that ``_new_offset`` and ``_commit_tps`` touch."""

    def __init__(self, acked: list[int], committed: int) -> None:
        self._acked: dict[Any, list[int]] = {T0: acked}
        self._gap: dict[Any, object] = {}
        self._committed_offset: dict[Any, int] = {T0: committed}


def _faust_new_offset(consumer: _Committer, tp: Any) -> int | None:
    batch = consumer._acked[tp]
    consumer._acked[tp] = []
    return batch[-1] + 1 if batch else None


async def _faust_commit_tps(consumer: _Committer, tps: list[Any], new: bool) -> bool:
    for tp in tps:
        offset = faust_offsets._new_offset(consumer, tp)
        # While faust flushes and commits, the head is neither acknowledged nor committed.
        assert offset is not None
        lost = waiting_on_lost_records(
            consumer._committed_offset,
            consumer._acked,
            {},
            {tp: 99},
            faust_offsets._committing(consumer),
        )
        assert lost == {}
        if offset == 13:
            raise RuntimeError("the broker refused the commit")
        consumer._committed_offset[tp] = offset
    return True


def test_offsets_are_marked_committing_only_while_a_commit_runs(monkeypatch: Any) -> None:
    monkeypatch.setitem(faust_offsets._installed, "gapless", lambda topic: True)
    monkeypatch.setitem(faust_offsets._installed, "new_offset", _faust_new_offset)
    monkeypatch.setitem(faust_offsets._installed, "commit_tps", _faust_commit_tps)
    consumer = _Committer([5, 6, 7], committed=5)
    assert asyncio.run(faust_offsets._commit_tps(consumer, [T0], True))
    assert consumer._committed_offset == {T0: 8}
    assert faust_offsets._committing(consumer) == {}
    # A commit that fails leaves the head unacknowledged and uncommitted: it may look lost again.
    consumer._acked[T0] = [8, 9, 10, 11, 12]
    with pytest.raises(RuntimeError):
        asyncio.run(faust_offsets._commit_tps(consumer, [T0], True))
    assert faust_offsets._committing(consumer) == {}
    assert waiting_on_lost_records(consumer._committed_offset, consumer._acked, {}, {T0: 99}) == {
        T0: 8
    }


def test_a_stage_takes_its_partition_in_offset_order_and_leaves_what_jumps_a_hole() -> None:
    from processors.faust_offsets import InOrder

    order = InOrder()
    order.regenerate(3)
    assert order.admit("t0", 666, start=666, jumped=None)  # where the partition was sought to
    assert order.admit("t0", 667, start=666, jumped=None)
    # faust dropped 668 on its way: what comes behind it waits for the seek back.
    assert not order.admit("t0", 669, start=666, jumped=None)
    assert not order.admit("t0", 1801, start=666, jumped=None)
    # The seek back brings 668 and then the rest again, in order.
    assert [order.admit("t0", o, start=666, jumped=None) for o in (668, 669, 670)] == [True] * 3
    # A seek back to before what the stage has judged: taken (stages drop what they saw) ...
    assert order.admit("t0", 667, start=666, jumped=None)
    # ... without moving what it is owed back.
    assert not order.admit("t0", 672, start=666, jumped=None)
    # The first record of a partition sought past its start is a hole too.
    assert not order.admit("t1", 10, start=4, jumped=None)
    # Unless the fetch delivered it as a jump over records retention deleted.
    assert order.admit("t1", 10, start=4, jumped=10)
    assert order.admit("t1", 11, start=4, jumped=10)
    # Nothing committed and no start known: the first record starts the count.
    assert order.admit("t2", 50, start=None, jumped=None)
    assert not order.admit("t2", 52, start=None, jumped=None)
    # A rebalance seeks every partition to its committed offset: the count starts over.
    order.regenerate(4)
    assert order.admit("t0", 668, start=668, jumped=None)


class _Stream:
    """What :func:`faust_offsets.in_order` reads of a faust stream: its app's consumer."""

    def __init__(self, committed: dict[Any, int]) -> None:
        from types import SimpleNamespace

        self.acked: list[Any] = []
        consumer = SimpleNamespace(
            _committed_offset=committed, _unacked_messages=set(), ack=self.ack
        )
        topics = SimpleNamespace(acks_enabled_for=lambda topic: True)
        self.app = SimpleNamespace(consumer=consumer, topics=topics)

    def ack(self, message: Any) -> bool:
        """faust's ``Consumer.ack``: the offset goes on the list commits are made from."""
        self.app.consumer._unacked_messages.discard(message)
        self.acked.append(message.offset)
        return True


def test_a_record_past_a_hole_is_let_go_without_its_offset_counting_as_acknowledged(
    monkeypatch: Any,
) -> None:
    from collections import Counter
    from types import SimpleNamespace

    from faust.types.tuples import ConsumerMessage

    monkeypatch.setitem(faust_offsets._installed, "gapless", lambda topic: topic != "quarantine")
    stream = _Stream({T0: 5, TP("quarantine", 0): 0})

    def event(topic: str, offset: int, generation: int = 1) -> Any:
        message = ConsumerMessage(
            topic, 0, offset, 0.0, 0, {}, b"k", b"v", None, generation_id=generation
        )
        stream.app.consumer._unacked_messages.add(message)
        return SimpleNamespace(message=message)

    counts: Counter[str] = Counter()
    admit = faust_offsets.in_order(stream, counts, "screen-persons")
    batch = [event(T0.topic, 5), event(T0.topic, 7), event("quarantine", 3), event(T0.topic, 8)]
    kept = admit(batch)
    # A compacted topic may have holes (faust's rule stands there); by-person may not.
    assert [(e.message.topic, e.message.offset) for e in kept] == [(T0.topic, 5), ("quarantine", 3)]
    assert counts["screen-persons_out_of_order"] == 2
    # A rebalance waits for the records the stages hold, not for those let go.
    assert {m.offset for m in stream.app.consumer._unacked_messages} == {5, 3}
    for e in batch:  # faust acks the whole batch it handed out
        e.message.ack(stream.app.consumer)
    assert stream.acked == [5, 3]  # 7 and 8 stay off the list a commit is made from
    # The seek back brings 6, 7 and 8: now they are judged.
    assert [e.message.offset for e in admit([event(T0.topic, o) for o in (6, 7, 8)])] == [6, 7, 8]
    # Another worker owned the partition for a while and committed 20: after the rebalance
    # that gives it back, the count starts where the partition was sought to.
    stream.app.consumer._committed_offset[T0] = 20
    assert [e.message.offset for e in admit([event(T0.topic, 20, generation=2)])] == [20]

"""The batch loop: a failing event is dead-lettered or ends the worker, never dropped.

The stream and topics here are stand-ins for faust's, only to drive the control
flow and the order of effects; the real path (a poisoned internal topic on a
real broker, a SIGKILL mid-stream) is in
tests/integration/processors/test_live_screening.py.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaTimeoutError

from processors.agents import EXIT_BROKER_LOST, Outcomes
from processors.batching import (
    BATCH_KEY,
    EXIT_SOFTWARE,
    Batching,
    Effects,
    chunks,
    one_line,
    run_batched,
    split_records,
)
from processors.live_state import ReorderBuffer, StateTable, Taken
from processors.table_writes import TableWrites, decode_value
from scantrail import contract


@dataclass
class Message:
    topic: str = "scantrail.temperatures"
    partition: int = 0
    offset: int = 0
    key: bytes | None = b"k"
    value: bytes = b"{}"


@dataclass
class Event:
    message: Message


class Stream:
    """Yields its events in batches of ``size``, as ``Stream.take_events`` does."""

    def __init__(self, count: int, size: int = 2) -> None:
        self.items = [Event(Message(offset=i)) for i in range(count)]
        self.size = size

    async def take_events(self, max_events: int, within: float) -> Any:
        for start in range(0, len(self.items), self.size):
            yield self.items[start : start + self.size]


@dataclass
class Topic:
    """Records what was sent, in order, into a journal shared with the tables."""

    name: str
    journal: list[tuple[str, Any]]
    broken: bool = False

    async def send(self, key: bytes, value: bytes, partition: int | None = None) -> Any:
        if self.broken:
            raise KafkaTimeoutError()
        self.journal.append((self.name, (key, value, partition)))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class Table(dict[Any, Any]):
    def __init__(self, journal: list[tuple[str, Any]]) -> None:
        super().__init__()
        self.journal = journal

    def __setitem__(self, key: Any, value: Any) -> None:
        self.journal.append(("table", key))
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self.journal.append(("table-del", key))
        super().__delitem__(key)


@dataclass
class Topics:
    journal: list[tuple[str, Any]] = field(default_factory=list)
    broken: bool = False

    def __post_init__(self) -> None:
        self.alerts = Topic("alerts", self.journal)
        self.deadletter = Topic("deadletter", self.journal, broken=self.broken)
        self.forward = Topic("forward", self.journal)

    def letters(self) -> list[contract.DeadLetter]:
        return [
            contract.decode_as(value, contract.DeadLetter)
            for name, (_, value, _) in self.journal
            if name == "deadletter"
        ]


def run(
    handle: Any, count: int = 3, broken: bool = False, size: int = 2
) -> tuple[Topics, Outcomes, list[int]]:
    topics, outcomes, exits = Topics(broken=broken), Outcomes(), []
    asyncio.run(
        run_batched(
            Stream(count, size),
            handle,
            topics,  # type: ignore[arg-type]
            outcomes,
            "screen-x",
            Batching(),
            fatal=exits.append,  # type: ignore[arg-type]
        )
    )
    return topics, outcomes, exits


def test_a_bug_on_one_event_dead_letters_it_and_the_batch_goes_on() -> None:
    handled: list[int] = []

    def handle(event: Event, effects: Effects) -> None:
        if event.message.offset == 1:
            raise KeyError("no such field")
        handled.append(event.message.offset)

    topics, outcomes, exits = run(handle)
    assert handled == [0, 2]
    assert [(d.offset, d.reason) for d in topics.letters()] == [
        (1, "screen-x: internal error KeyError: 'no such field'")
    ]
    assert outcomes.counts["screen-x_error"] == 1 and exits == []


def test_a_broker_failure_ends_the_worker_instead_of_acking_the_batch() -> None:
    def handle(event: Event, effects: Effects) -> None:
        raise KafkaTimeoutError()

    topics, outcomes, exits = run(handle, count=1)
    assert exits == [EXIT_BROKER_LOST] and topics.letters() == []


def test_when_even_the_dead_letter_fails_the_worker_ends() -> None:
    def handle(event: Event, effects: Effects) -> None:
        raise ValueError("bug")

    topics, outcomes, exits = run(handle, count=1, broken=True)
    assert exits == [EXIT_BROKER_LOST] and outcomes.counts["screen-x_error"] == 1


def test_a_failure_while_writing_a_batch_ends_the_worker() -> None:
    class Broken:
        def __setitem__(self, key: Any, value: Any) -> None:
            raise RuntimeError("disk full")

    def handle(event: Event, effects: Effects) -> None:
        effects.write(event, Broken(), b"k", lambda: Broken().__setitem__(b"k", 1))

    topics, outcomes, exits = run(handle, count=1)
    assert exits == [EXIT_SOFTWARE]


class Count:
    """A state for StateTable: counts what it was told."""

    def __init__(self, n: int = 0) -> None:
        self.n = n

    @classmethod
    def from_dict(cls, raw: dict[str, int]) -> Count:
        return cls(raw["n"])

    def to_dict(self) -> dict[str, int]:
        return {"n": self.n}


def alert(event_id: str) -> contract.Alert:
    moment = datetime(2020, 2, 10, tzinfo=UTC)
    return contract.Alert(
        alert_id=contract.alert_id("fever_unidentified", [event_id]),
        kind="fever_unidentified",
        severity="critical",
        site_id="s1",
        event_time=moment,
        raised_at=moment,
        evidence=[event_id],
    )


def test_sends_are_acked_before_any_write_and_each_key_is_written_once_per_batch() -> None:
    topics = Topics()
    table = Table(topics.journal)
    states = StateTable(table, Count)

    def handle(event: Event, effects: Effects) -> None:
        state = states.load("kiosk-1")
        state.n += 1
        states.save(effects, event, "kiosk-1", state)
        effects.alert([alert(f"e{event.message.offset}")])
        effects.forward(topics.forward, event.message.offset % 2, b'{"n": 1}')

    asyncio.run(
        run_batched(
            Stream(4, size=4),
            handle,
            topics,
            Outcomes(),
            "x",
            Batching(),
            fatal=print,  # type: ignore[arg-type]
        )
    )
    names = [name for name, _ in topics.journal]
    # Four alerts, one forward per target partition, then one write of the key.
    assert names == ["alerts"] * 4 + ["forward"] * 2 + ["table"]
    forwards = [detail for name, detail in topics.journal if name == "forward"]
    assert [(key, split_records(value), p) for key, value, p in forwards] == [
        (BATCH_KEY, [b'{"n": 1}', b'{"n": 1}'], 0),
        (BATCH_KEY, [b'{"n": 1}', b'{"n": 1}'], 1),
    ]
    assert table[b"kiosk-1"] == {"n": 4}


def records(taken: list[Taken]) -> list[bytes]:
    return [t.record for t in taken]


def test_a_reorder_row_taken_in_its_own_batch_is_never_written() -> None:
    topics = Topics()
    table = Table(topics.journal)
    buffer = ReorderBuffer(table)
    event = Event(Message(partition=3, offset=7))
    effects = Effects(topics, Outcomes())  # type: ignore[arg-type]
    buffer.add(effects, event, [("002", b"b", "B"), ("001", b"a", "A"), ("003", b"c", "C")])
    # Taken in sort-key order, each with what the stage decoded on arrival.
    assert buffer.take_until(effects, event, "002") == [Taken(b"a", "A"), Taken(b"b", "B")]
    asyncio.run(effects.flush())
    assert table == {b"buf:3:7": [["002", "b"], ["001", "a"], ["003", "c"]]}

    # The next batch takes the last record: the row goes, once.
    later = Effects(topics, Outcomes())  # type: ignore[arg-type]
    assert records(buffer.take_until(later, event, "999")) == [b"c"]
    asyncio.run(later.flush())
    assert table == {} and topics.journal[-1] == ("table-del", b"buf:3:7")

    # A row added and fully taken within one batch costs no write at all.
    writes = len(topics.journal)
    third = Effects(topics, Outcomes())  # type: ignore[arg-type]
    buffer.add(third, Event(Message(partition=3, offset=8)), [("004", b"d", None)])
    assert records(buffer.take_until(third, event, "999")) == [b"d"]
    asyncio.run(third.flush())
    assert len(topics.journal) == writes and table == {}


def test_records_with_one_sort_key_come_back_in_arrival_order() -> None:
    """A re-delivered reading has its first copy's sort key: the decoded items are never compared."""
    topics = Topics()
    buffer = ReorderBuffer(Table(topics.journal))
    effects = Effects(topics, Outcomes())  # type: ignore[arg-type]
    event = Event(Message(partition=0, offset=1))
    unorderable = [object(), object()]
    buffer.add(effects, event, [("001", b"x", unorderable[0]), ("001", b"x", unorderable[1])])
    assert [t.item for t in buffer.take_until(effects, event, "999")] == unorderable


def test_a_reorder_buffer_rebuilt_after_a_restart_gives_back_what_was_not_taken() -> None:
    topics = Topics()
    table = Table(topics.journal)
    event = Event(Message(partition=1, offset=5))
    first = ReorderBuffer(table)
    effects = Effects(topics, Outcomes())  # type: ignore[arg-type]
    first.add(effects, event, [("001", b"a", "A"), ("002", b"b", "B")])
    asyncio.run(effects.flush())
    # A new worker (or a rebalance): the heap comes from the table alone, with
    # nothing decoded (the stage decodes the record again).
    second = ReorderBuffer(table)
    assert second.take_until(Effects(topics, Outcomes()), event, "999") == [  # type: ignore[arg-type]
        Taken(b"a", None),
        Taken(b"b", None),
    ]


def test_a_reorder_buffer_tells_how_many_records_wait_for_the_watermark() -> None:
    """Gauges for operators and the bench's drain: records held, and the most one tick let go."""
    topics = Topics()
    table = Table(topics.journal)
    gauges: dict[str, int] = {}
    buffer = ReorderBuffer(table, gauges)
    effects = Effects(topics, Outcomes())  # type: ignore[arg-type]
    buffer.add(
        effects, Event(Message(partition=1, offset=5)), [("001", b"a", "A"), ("003", b"c", "C")]
    )
    buffer.add(effects, Event(Message(partition=2, offset=9)), [("002", b"b", "B")])
    assert gauges["buffer_waiting"] == 3
    assert records(buffer.take_until(effects, Event(Message(partition=1, offset=5)), "002")) == [
        b"a"
    ]
    assert gauges["buffer_waiting"] == 2
    asyncio.run(effects.flush())

    # After a rebalance nothing is counted until a partition is indexed again.
    buffer.forget()
    assert gauges["buffer_waiting"] == 0
    assert (
        buffer.take_until(Effects(topics, Outcomes()), Event(Message(partition=2, offset=9)), "001")
        == []
    )  # type: ignore[arg-type]
    assert gauges["buffer_waiting"] == 1
    # The row of partition 1 still holds "a" (taken, its row not yet gone): it comes back.
    later = Effects(topics, Outcomes())  # type: ignore[arg-type]
    assert records(buffer.take_until(later, Event(Message(partition=1, offset=5)), "999")) == [
        b"a",
        b"c",
    ]
    assert gauges["buffer_waiting"] == 1
    # The most one step released (what a stage judges without yielding): a then c.
    assert gauges["buffer_released_max"] == 2
    buffer.take_until(later, Event(Message(partition=2, offset=9)), "999")
    assert gauges["buffer_released_max"] == 2  # one record now: the most stays


def test_records_travel_on_one_line() -> None:
    assert one_line(b'{"a": 1}', lambda: b"never") == b'{"a": 1}'
    assert one_line(b'{\n"a": 1}', lambda: b'{"a":1}') == b'{"a":1}'
    assert split_records(b"x") == [b"x"]


def test_forwards_are_cut_into_messages_under_the_size_bound() -> None:
    records = [b"a" * 40, b"b" * 40, b"c" * 40, b"d" * 200]
    out = list(chunks(records, limit=100))
    assert out == [b"a" * 40 + b"\n" + b"b" * 40, b"c" * 40, b"d" * 200]
    assert [r for value in out for r in split_records(value)] == records
    assert list(chunks([b"x"], limit=100)) == [b"x"]
    assert list(chunks([], limit=100)) == []


@dataclass
class CountedMessage(Message):
    """A message with faust's reference count: the offset is committable at zero."""

    refcount: int = 1
    committable: bool = False

    def incref(self) -> None:
        self.refcount += 1


@dataclass
class CountedEvent:
    message: CountedMessage

    def ack(self) -> None:
        self.message.refcount -= 1
        self.message.committable = self.message.refcount == 0


class AckingStream:
    """Acks each batch when the next is asked for, as ``take_events`` does; a slow writer."""

    def __init__(self, count: int, journal: list[tuple[str, Any]]) -> None:
        self.items = [CountedEvent(CountedMessage(offset=i)) for i in range(count)]
        self.journal = journal

    async def take_events(self, max_events: int, within: float) -> Any:
        for event in self.items:
            yield [event]
            event.ack()  # faust's ack of the batch: not the last reference
            self.journal.append(("taken", event.message.committable))
            await asyncio.sleep(0)


class SlowWrites(TableWrites):
    def __init__(self, journal: list[tuple[str, Any]]) -> None:
        self.journal = journal

    async def write(self, writes: Any) -> None:
        await asyncio.sleep(0.01)
        self.journal.append(("written", sorted(w.key for w in writes)))


def test_events_are_committable_only_once_their_batch_is_durable() -> None:
    topics = Topics()
    stream = AckingStream(4, topics.journal)
    table = Table(topics.journal)
    states = StateTable(table, Count)

    def handle(event: Any, effects: Effects) -> None:
        key = f"k{event.message.offset}"
        state = states.load(key)
        state.n += 1
        states.save(effects, event, key, state)

    asyncio.run(
        run_batched(
            stream,
            handle,
            topics,  # type: ignore[arg-type]
            Outcomes(),
            "x",
            Batching(writer=SlowWrites(topics.journal)),
            fatal=print,  # type: ignore[arg-type]
        )
    )
    # faust's own ack never made an event committable: only the write did.
    assert all(detail is False for name, detail in topics.journal if name == "taken")
    assert all(event.message.committable for event in stream.items)
    # While the first batch's write was in flight, the next batches were judged
    # and then written together (a group commit), each key once.
    written = [detail for name, detail in topics.journal if name == "written"]
    assert written[0] == [b"k0"]
    assert sorted(key for keys in written for key in keys) == [b"k0", b"k1", b"k2", b"k3"]
    assert len(written) < 4


class SlowTopic(Topic):
    """A topic whose broker takes a while to ack: the next batch is judged meanwhile."""

    async def send(self, key: bytes, value: bytes, partition: int | None = None) -> Any:
        self.journal.append((self.name, (key, value, partition)))
        return asyncio.ensure_future(asyncio.sleep(0.02))


class RecordingWrites(TableWrites):
    """Keeps each write's stored value as the writer is handed it (sends go to the topics)."""

    def __init__(self) -> None:
        self.values: list[tuple[bytes, Any]] = []

    async def write(self, writes: Any) -> None:
        self.values.extend((w.key, decode_value(w.value)) for w in writes)


def test_a_batch_writes_its_own_state_not_the_next_batchs() -> None:
    """While batch 1's alert is being acked, batch 2 is judged and changes the same
    state. Batch 1's write must carry batch 1's state: had it carried batch 2's too,
    a crash right after it would re-deliver batch 2 to a state that has already seen
    it, and its alert would never be sent."""
    topics = Topics()
    topics.alerts = SlowTopic("alerts", topics.journal)
    stream = AckingStream(2, topics.journal)
    states = StateTable(Table(topics.journal), Count)
    writer = RecordingWrites()

    def handle(event: Any, effects: Effects) -> None:
        state = states.load("kiosk-1")
        state.n += 1
        states.save(effects, event, "kiosk-1", state)
        effects.alert([alert(f"e{event.message.offset}")])

    asyncio.run(
        run_batched(
            stream,
            handle,
            topics,  # type: ignore[arg-type]
            Outcomes(),
            "x",
            Batching(writer=writer),
            fatal=print,  # type: ignore[arg-type]
        )
    )
    # Two flushes (the second batch was judged while the first was in flight).
    assert writer.values == [(b"kiosk-1", {"n": 1}), (b"kiosk-1", {"n": 2})]


def test_the_longest_judging_and_sealing_of_a_stage_are_counted() -> None:
    """What held the event loop, per stage: the rules of one batch, the encoding of its writes."""
    topics = Topics()
    table = Table(topics.journal)
    outcomes = Outcomes()

    def slow_value() -> dict[str, int]:
        time.sleep(0.12)
        return {"n": 1}

    def handle(event: Event, effects: Effects) -> None:
        if event.message.offset == 1:
            time.sleep(0.25)
        effects.write(event, table, b"k", slow_value)

    asyncio.run(
        run_batched(
            Stream(2, size=1),
            handle,
            topics,  # type: ignore[arg-type]
            outcomes,
            "x",
            Batching(),
            fatal=print,  # type: ignore[arg-type]
        )
    )
    counts = outcomes.counts
    assert 250 <= counts["x_judge_max_ms"] < 1000, counts
    assert counts["x_judge_max_ms"] <= counts["x_judge_ms"] < 2 * counts["x_judge_max_ms"]
    assert 120 <= counts["x_seal_max_ms"] < 1000, counts
    assert table[b"k"] == {"n": 1}


def test_a_long_batch_is_judged_in_slices_that_let_the_other_stages_run() -> None:
    """One batch taken from a backlog must not hold the event loop for all its events:
    past ``slice_s`` the rest is judged as the next batch, after the loop has run
    what waits (another stage, a web view), and every event is still judged once,
    in order, and written."""
    topics = Topics()
    table = Table(topics.journal)
    outcomes = Outcomes()
    handled: list[int] = []
    seen_between: list[int] = []

    def handle(event: Event, effects: Effects) -> None:
        time.sleep(0.03)
        handled.append(event.message.offset)
        effects.write(event, table, f"k{event.message.offset}".encode(), lambda: {"n": 1})

    async def other_stage(stop: asyncio.Event) -> None:
        while not stop.is_set():
            seen_between.append(len(handled))
            await asyncio.sleep(0)

    async def main() -> None:
        stop = asyncio.Event()
        other = asyncio.ensure_future(other_stage(stop))
        await asyncio.sleep(0)
        await run_batched(
            Stream(6, size=6),
            handle,
            topics,  # type: ignore[arg-type]
            outcomes,
            "x",
            Batching(slice_s=0.05),
            fatal=print,  # type: ignore[arg-type]
        )
        stop.set()
        await other

    asyncio.run(main())
    assert handled == [0, 1, 2, 3, 4, 5]
    # The other stage ran after each slice of two events (30 ms each, 50 ms a slice).
    assert {2, 4} <= set(seen_between), seen_between
    counts = outcomes.counts
    assert counts["x_batches"] == 1 and counts["x_judge_slices"] == 2, counts
    assert counts["x_judge_max_ms"] < 150 <= counts["x_judge_ms"], counts
    assert sorted(table) == [f"k{i}".encode() for i in range(6)]

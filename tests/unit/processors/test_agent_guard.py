"""The agent guard: a failing event is dead-lettered or ends the worker, never dropped.

The stream and topic here are stand-ins for faust's, only to drive the control
flow; the real path (a poisoned internal topic on a real broker) is in
tests/integration/processors/test_live_screening.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaTimeoutError

from processors.agents import EXIT_BROKER_LOST, Outcomes, run_guarded
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
    def __init__(self, count: int) -> None:
        self.items = [Event(Message(offset=i)) for i in range(count)]

    async def events(self) -> Any:
        for item in self.items:
            yield item


@dataclass
class DeadLetters:
    sent: list[contract.DeadLetter] = field(default_factory=list)
    broken: bool = False

    async def send(self, key: bytes, value: bytes) -> Any:
        if self.broken:
            raise KafkaTimeoutError()
        self.sent.append(contract.decode_as(value, contract.DeadLetter))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@dataclass
class Topics:
    deadletter: DeadLetters


def run(
    handle: Any, count: int = 3, broken: bool = False
) -> tuple[DeadLetters, Outcomes, list[int]]:
    letters, outcomes, exits = DeadLetters(broken=broken), Outcomes(), []
    asyncio.run(
        run_guarded(
            Stream(count),
            handle,
            Topics(letters),
            outcomes,
            "screen-x",
            fatal=exits.append,  # type: ignore[arg-type]
        )
    )
    return letters, outcomes, exits


def test_a_bug_on_one_event_dead_letters_it_and_the_stream_goes_on() -> None:
    handled: list[int] = []

    async def handle(event: Event) -> None:
        if event.message.offset == 1:
            raise KeyError("no such field")
        handled.append(event.message.offset)

    letters, outcomes, exits = run(handle)
    assert handled == [0, 2]
    assert [(d.offset, d.reason) for d in letters.sent] == [
        (1, "screen-x: internal error KeyError: 'no such field'")
    ]
    assert outcomes.counts["screen-x_error"] == 1 and exits == []


def test_a_broker_failure_ends_the_worker_instead_of_acking_the_event() -> None:
    async def handle(event: Event) -> None:
        raise KafkaTimeoutError()

    letters, outcomes, exits = run(handle, count=1)
    assert exits == [EXIT_BROKER_LOST] and letters.sent == []


def test_when_even_the_dead_letter_fails_the_worker_ends() -> None:
    async def handle(event: Event) -> None:
        raise ValueError("bug")

    letters, outcomes, exits = run(handle, count=1, broken=True)
    assert exits == [EXIT_BROKER_LOST] and outcomes.counts["screen-x_error"] == 1

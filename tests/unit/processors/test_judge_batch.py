"""Each event is judged as faust's current event, and one failing event is dead-lettered alone."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from faust.streams import current_event

from processors.agents import Outcomes
from processors.batching import Effects, judge_batch


class Event(SimpleNamespace):
    """Weak references are taken to events (faust's own Event allows them too)."""

    __hash__ = object.__hash__


def event(offset: int) -> Event:
    return Event(
        message=SimpleNamespace(
            topic="scantrail.temperatures", partition=0, offset=offset, key=b"k", value=b"{}"
        )
    )


def test_every_event_is_current_while_judged_and_none_after() -> None:
    events = [event(offset) for offset in range(3)]
    seen: list[Any] = []
    outcomes = Outcomes()

    def handle(e: Any, effects: Effects) -> None:
        seen.append(current_event())
        if e.message.offset == 1:
            raise ValueError("a rule's bug")

    effects = Effects(None, outcomes)  # type: ignore[arg-type]
    assert judge_batch(
        events, handle, effects, "screen-kiosks", outcomes, lambda code: None
    ) == len(events)
    assert seen == events
    assert current_event() is None
    assert outcomes.counts["screen-kiosks_error"] == 1
    assert [letter.offset for letter in effects.letters] == [1]

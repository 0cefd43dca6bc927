"""The duplicate filter forgets by its horizon and its bound, whatever order events come in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.screening_state import SeenIds

T0 = datetime(2020, 2, 10, tzinfo=UTC)


def reference(events: list[tuple[int, int]], horizon_s: int, max_ids: int) -> list[bool]:
    """What the filter must answer: a plain list of (id, microseconds), oldest arrival first."""
    held: list[tuple[str, int]] = []
    newest: int | None = None
    answers = []
    for number, second in events:
        event_id, at = f"e-{number}", second * 1_000_000
        if any(held_id == event_id for held_id, _ in held):
            answers.append(False)
            continue
        held.append((event_id, at))
        newest = at if newest is None else max(newest, at)
        while held and (held[0][1] < newest - horizon_s * 1_000_000 or len(held) > max_ids):
            held.pop(0)
        answers.append(True)
    return answers


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 200)), max_size=60),
    st.integers(1, 100),
    st.integers(1, 20),
)
def test_answers_as_a_plain_list_would(
    events: list[tuple[int, int]], horizon_s: int, max_ids: int
) -> None:
    seen = SeenIds()
    horizon = timedelta(seconds=horizon_s)
    got = [
        seen.check_and_add(f"e-{n}", T0 + timedelta(seconds=s), horizon, max_ids) for n, s in events
    ]
    assert got == reference(
        [(n, s + int((T0 - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())) for n, s in events],
        horizon_s,
        max_ids,
    )

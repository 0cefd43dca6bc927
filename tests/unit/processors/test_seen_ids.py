"""The duplicate filter forgets by its horizon and its bound, whatever order events come in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from processors import screening_state
from processors.screening_state import SeenIds

T0 = datetime(2020, 2, 10, tzinfo=UTC)


def reference(
    events: list[tuple[int, int]], horizon_s: int, max_ids: int
) -> tuple[list[bool], list[tuple[str, int]], int]:
    """What the filter must answer, hold and have forgotten: a plain list, oldest arrival first."""
    held: list[tuple[str, int]] = []
    forgotten = 0
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
            forgotten += 1
        answers.append(True)
    return answers, held, forgotten


EPOCH_S = int((T0 - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 200)), max_size=60),
    st.integers(1, 100),
    st.integers(1, 20),
    st.sampled_from([2, 3, 256]),
)
def test_answers_and_holds_as_a_plain_list_would(
    events: list[tuple[int, int]], horizon_s: int, max_ids: int, rebuild_after: int
) -> None:
    """Also when the dict is rebuilt without its forgotten slots every few ids."""
    seen = SeenIds()
    horizon = timedelta(seconds=horizon_s)
    with patch.object(screening_state, "SEEN_REBUILD_AFTER", rebuild_after):
        got = [
            seen.check_and_add(f"e-{n}", T0 + timedelta(seconds=s), horizon, max_ids)
            for n, s in events
        ]
    answers, held, forgotten = reference([(n, s + EPOCH_S) for n, s in events], horizon_s, max_ids)
    assert got == answers
    assert list(seen.ids.items()) == held
    assert seen.first == forgotten  # arrival numbers stay contiguous across rebuilds

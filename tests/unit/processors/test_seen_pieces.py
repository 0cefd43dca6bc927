"""A long duplicate filter is stored in pieces, so a batch rewrites only its newest ids.

A kiosk's filter holds up to 5,000 event ids, and the live worker writes the
kiosk's state after every batch that touches it. These check the pure split
(processors.screening_state.SeenIds) and the table layout StateTable gives it
(processors.live_state), through faust-like tables and the real batch effects.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from processors.agents import Outcomes
from processors.batching import Effects
from processors.live_state import StateTable, is_piece_key, piece_key
from processors.screening_state import SEEN_CHUNK, KioskState, SeenIds, pieces_of
from processors.table_writes import encode_value

BASE = datetime(2020, 2, 10, 8, 0, tzinfo=UTC)
HORIZON = timedelta(hours=24)


def filled(n: int, cap: int, start: int = 0) -> SeenIds:
    seen = SeenIds()
    for i in range(start, start + n):
        assert seen.check_and_add(f"e-{i}", BASE + timedelta(seconds=i), HORIZON, cap)
    return seen


def stored_and_back(seen: SeenIds) -> SeenIds:
    """Through JSON as a chunked store keeps it: the record, then its pieces."""
    seen.chunked = True
    record = json.loads(json.dumps(seen.to_dict()))
    pieces = {n: json.loads(json.dumps(seen.piece(n))) for n in seen.pieces()}
    back = SeenIds.from_dict(record)
    count, wanted = pieces_of(record)
    assert list(wanted) == sorted(pieces)
    assert back.restore(count, [pieces[n] for n in wanted]) == 0
    return back


def test_a_short_filter_stays_whole_in_its_record() -> None:
    seen = filled(SEEN_CHUNK - 1, cap=5000)
    assert seen.pieces() == range(0)
    seen.chunked = True
    assert len(seen.to_dict()["ids"]) == SEEN_CHUNK - 1
    back = stored_and_back(seen)
    assert back == seen and list(back.ids) == list(seen.ids) and back.first == 0


def test_a_capped_filter_keeps_only_its_newest_ids_in_the_record() -> None:
    seen = filled(7000, cap=5000)  # 2,000 forgotten from the front
    assert len(seen.ids) == 5000 and seen.first == 2000 and "e-1999" not in seen
    seen.chunked = True
    record = seen.to_dict()
    assert len(record["ids"]) < SEEN_CHUNK  # the record is small...
    assert record["ids"][-1] == "e-6999"
    back = stored_and_back(seen)  # ...and the pieces give back every id, in arrival order
    assert list(back.ids.items()) == list(seen.ids.items()) and back.first == seen.first
    # The restored filter goes on forgetting exactly as the original does.
    for s in (seen, back):
        s.check_and_add("e-new", BASE + timedelta(seconds=7000), HORIZON, 5000)
    assert list(back.ids) == list(seen.ids)


def test_the_unchunked_dict_is_unchanged_for_the_offline_snapshots() -> None:
    seen = filled(600, cap=5000)
    assert seen.to_dict().keys() == {"newest", "ids", "at_us"}
    assert SeenIds.from_dict(json.loads(json.dumps(seen.to_dict()))) == seen


def test_a_missing_piece_forgets_it_and_everything_older() -> None:
    seen = filled(1000, cap=5000)
    seen.chunked = True
    record = json.loads(json.dumps(seen.to_dict()))
    count, wanted = pieces_of(record)
    pieces: list[Any] = [seen.piece(n) for n in wanted]
    pieces[1] = None
    back = SeenIds.from_dict(record)
    lost = back.restore(count, pieces)
    assert lost == 2 * SEEN_CHUNK and len(back.ids) == 1000 - lost
    assert "e-511" not in back and "e-512" in back and back.first == 512


# --- through StateTable and the batch effects ----------------------------------------------


class Table(dict[Any, Any]):
    """A faust table as StateTable sees it without RocksDB: get, set, delete (recorded)."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def __setitem__(self, key: Any, value: Any) -> None:
        self.written.append(key)
        super().__setitem__(key, value)


@dataclass
class Message:
    partition: int = 0


@dataclass
class Event:
    message: Message


def one_batch(states: StateTable, kiosk: str, ids: range) -> None:
    effects = Effects(None, Outcomes())  # type: ignore[arg-type]
    event = Event(Message())
    state = states.load(kiosk)
    for i in ids:
        state.seen.check_and_add(f"e-{i}", BASE + timedelta(seconds=i), HORIZON, 5000)
        states.save(effects, event, kiosk, state)
    asyncio.run(effects.flush())


def test_a_kiosk_state_is_stored_in_a_small_record_and_pieces() -> None:
    table = Table()
    states = StateTable(table, KioskState)
    one_batch(states, "kiosk-1", range(0, 5600))
    record = table[b"kiosk-1"]
    assert len(record["seen"]["ids"]) < SEEN_CHUNK
    pieces = sorted(k for k in table if is_piece_key(k))
    # 600 forgotten: the two pieces of arrival numbers below 512 are gone.
    assert pieces == sorted(piece_key("kiosk-1", n) for n in range(2, 5600 // SEEN_CHUNK))

    # A later batch of a few readings writes the record and nothing else.
    table.written.clear()
    one_batch(states, "kiosk-1", range(5600, 5610))
    assert table.written == [b"kiosk-1"]

    # A worker that has never seen the kiosk reads the same filter back.
    fresh = StateTable(table, KioskState).load("kiosk-1")
    kept = states.load("kiosk-1")
    assert list(fresh.seen.ids.items()) == list(kept.seen.ids.items())
    assert fresh.seen.first == kept.seen.first == 610


def test_pieces_forgotten_by_the_filter_are_deleted_from_the_table() -> None:
    table = Table()
    states = StateTable(table, KioskState)
    one_batch(states, "kiosk-1", range(0, 5000))
    assert piece_key("kiosk-1", 0) in table
    states.forget()  # as after a rebalance: the next load reads the table
    one_batch(states, "kiosk-1", range(5000, 5000 + SEEN_CHUNK))
    assert piece_key("kiosk-1", 0) not in table and piece_key("kiosk-1", 1) in table
    assert len(encode_value(table[b"kiosk-1"])) < 20_000


def test_reloading_between_any_batches_forgets_exactly_what_staying_in_memory_does() -> None:
    """Random ids (repeats, times out of order, the horizon and the cap both at work),
    random batch ends, and after some batches the cache dropped, as a rebalance or a
    trim does: the filter read back always equals one that was never written."""
    import random

    rng = random.Random(12)
    table = Table()
    states = StateTable(table, KioskState)
    reference = SeenIds()
    horizon, cap = timedelta(minutes=30), 700
    verdicts: list[tuple[bool, bool]] = []
    i = 0
    for _ in range(120):
        effects = Effects(None, Outcomes())  # type: ignore[arg-type]
        event = Event(Message())
        state = states.load("kiosk-1")
        for _ in range(rng.randint(1, 60)):
            i += 1
            event_id = f"e-{rng.randint(max(0, i - 900), i)}"  # some come back
            when = BASE + timedelta(seconds=i + rng.randint(-300, 60))
            verdicts.append(
                (
                    state.seen.check_and_add(event_id, when, horizon, cap),
                    reference.check_and_add(event_id, when, horizon, cap),
                )
            )
            states.save(effects, event, "kiosk-1", state)
        asyncio.run(effects.flush())
        if rng.random() < 0.4:
            states.forget()
            back = states.load("kiosk-1").seen
            assert list(back.ids.items()) == list(reference.ids.items())
            assert back.first == reference.first
    assert all(a == b for a, b in verdicts)
    assert any(not new for new, _ in verdicts) and reference.first > 0  # both paths ran
    pieces = {k for k in table if is_piece_key(k)}
    assert pieces == {piece_key("kiosk-1", n) for n in reference.pieces()}

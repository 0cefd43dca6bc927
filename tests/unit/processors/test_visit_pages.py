"""A site's five-minute slot of visits is stored in pages, so a batch rewrites seconds of visits.

At five scans a second a slot ends at 1,500 visits, and the live worker wrote
the whole slot after every batch that added to it. These check the pure
paging (processors.trails.SiteVisits), the table layout StateTable gives it
(processors.live_state), the trace lookups over it and its retention
(processors.live_trails), through a faust-like table and the real batch effects.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from processors.agents import Outcomes
from processors.batching import Effects
from processors.live_state import StateTable, is_piece_key, page_key
from processors.live_trails import SLOT_US, RetentionSweep, TableIndex, visit_key
from processors.table_writes import encode_value
from processors.trails import VISIT_PAGE_US, SiteVisits
from tests.unit.processors.test_seen_pieces import Event, Message, Table

T0 = 1_581_321_600_000_000  # 2020-02-10 08:00 UTC, a slot boundary
SEC = 1_000_000

Visit = tuple[int, str, str, str]  # time, person, kiosk, event id


def one_batch(states: StateTable, visits: list[Visit], site: str = "site-1") -> None:
    effects = Effects(None, Outcomes())  # type: ignore[arg-type]
    event = Event(Message())
    for t, person, kiosk, event_id in visits:
        key = visit_key(site, t).decode()
        slot = states.load(key)
        if slot.add(t, person, kiosk, event_id):
            states.save(effects, event, key, slot)
    asyncio.run(effects.flush())


def visit(i: int, t: int) -> Visit:
    return (t, f"p-{i % 97}", f"kiosk-{i % 2}", f"s-{i}")


def test_a_batch_rewrites_the_head_and_the_page_it_added_to_not_the_slot() -> None:
    table = Table()
    states = StateTable(table, SiteVisits)
    one_batch(states, [visit(i, T0 + i * SEC // 5) for i in range(1400)])  # 280 s of a slot
    key = visit_key("site-1", T0)
    head = table[key]
    assert head["paged"] is True and head["pages"] == list(
        range(T0 // VISIT_PAGE_US, T0 // VISIT_PAGE_US + 28)
    )
    assert len(encode_value(head)) < 600

    table.written.clear()
    one_batch(states, [visit(2000 + i, T0 + 285 * SEC + i) for i in range(5)])
    assert table.written == [key, page_key(key.decode(), (T0 + 285 * SEC) // VISIT_PAGE_US)]
    assert len(encode_value(table[table.written[1]])) < 1_000

    # A worker that never saw the slot reads every visit back, and so does a trace.
    fresh = StateTable(table, SiteVisits).load(key.decode())
    kept = states.load(key.decode())
    assert fresh.between(T0, T0 + SLOT_US) == kept.between(T0, T0 + SLOT_US)
    index = TableIndex(Table(), table)
    assert index.visits_between("site-1", T0 + 100 * SEC, T0 + 130 * SEC) == kept.between(
        T0 + 100 * SEC, T0 + 130 * SEC
    )


def test_a_whole_slot_from_before_pages_is_read_and_then_stored_in_pages() -> None:
    table = Table()
    whole = SiteVisits()
    for i in range(50):
        whole.add(*visit(i, T0 + i * SEC))
    key = visit_key("site-1", T0)
    table[key] = json.loads(json.dumps(whole.to_dict()))
    index = TableIndex(Table(), table)
    assert index.visits_between("site-1", T0, T0 + SLOT_US) == whole.between(T0, T0 + SLOT_US)

    one_batch(StateTable(table, SiteVisits), [visit(99, T0 + 60 * SEC)])
    assert table[key]["paged"] is True
    whole.add(*visit(99, T0 + 60 * SEC))
    assert index.visits_between("site-1", T0, T0 + SLOT_US) == whole.between(T0, T0 + SLOT_US)


def test_retention_deletes_a_slot_with_its_pages() -> None:
    table = Table()
    one_batch(StateTable(table, SiteVisits), [visit(i, T0 + i * 7 * SEC) for i in range(80)])
    assert any(is_piece_key(k) for k in table)
    sweep = RetentionSweep(table, SLOT_US, retention_us=3600 * SEC, partitions=1)
    assert not sweep.too_old(0, T0 + 7200 * SEC)
    held = len(table)  # two slots' heads and their pages
    assert sweep.sweep(0) == held and not table


def test_reloading_and_tracing_between_any_batches_give_what_one_slot_in_memory_does() -> None:
    """Visits a little out of order, repeats, random batch ends and the cache dropped now
    and then: every slot read back, and every window traced, equals the visits kept in memory."""
    rng = random.Random(3)
    table = Table()
    states = StateTable(table, SiteVisits)
    reference: dict[bytes, SiteVisits] = {}
    clock, i = T0, 0
    for _ in range(120):
        batch = []
        for _ in range(rng.randint(1, 30)):
            i += 1
            clock += rng.randint(SEC // 10, 2 * SEC)
            t = clock - (rng.randint(0, 40 * SEC) if rng.random() < 0.1 else 0)
            v = visit(i, t)
            if rng.random() < 0.05:  # a repeat of an earlier scan, as re-delivery brings
                j = rng.randint(max(1, i - 40), i)
                v = (v[0], v[1], v[2], f"s-{j}")
            batch.append(v)
            reference.setdefault(visit_key("site-1", t), SiteVisits()).add(*v)
        one_batch(states, batch)
        if rng.random() < 0.3:
            states.forget()
    index = TableIndex(Table(), table)
    for _ in range(40):
        start = rng.randint(T0, clock)
        end = start + rng.randint(0, 20 * 60 * SEC)
        expected = _join([slot.between(start, end) for _, slot in sorted(reference.items())])
        assert index.visits_between("site-1", start, end) == expected
    for key, slot in reference.items():
        back = StateTable(table, SiteVisits).load(key.decode())
        assert back.between(T0, clock) == slot.between(T0, clock)
    assert max(len(encode_value(v)) for v in table.values()) < 4_000


def _join(parts: list[Any]) -> Any:
    from processors.live_trails import _concat
    from processors.trails import VisitSlice

    return _concat(parts, VisitSlice([], [], [], []))

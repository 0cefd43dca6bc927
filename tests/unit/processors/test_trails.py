"""The per-person and per-site stores: order, ranges, duplicates, retention, round trips."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from processors.trails import (
    SiteVisits,
    Trail,
    TrailIndex,
    from_micros,
    to_micros,
)

S = 1_000_000  # microseconds per second
T0 = to_micros(datetime(2020, 2, 10, tzinfo=UTC))


def test_micros_round_trip_is_exact_and_needs_an_offset() -> None:
    moment = datetime(2020, 2, 10, 8, 0, 0, 123456, tzinfo=timezone(timedelta(hours=8)))
    assert from_micros(to_micros(moment), moment.tzinfo) == moment
    assert from_micros(to_micros(moment), moment.tzinfo).isoformat() == moment.isoformat()
    assert to_micros(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)) == S
    with pytest.raises(ValueError, match="naive"):
        to_micros(datetime(2020, 2, 10))


def test_trail_sorts_late_scans_on_first_query() -> None:
    trail = Trail()
    trail.add(T0 + 30 * S, "s1", "k1", "in", "b")
    trail.add(T0 + 10 * S, "s2", "k2", "out", "a")
    trail.add(T0 + 30 * S, "s1", "k1", "out", "a2")  # same time: event id breaks the tie
    got = trail.between(T0, T0 + 60 * S)
    assert got.times == [T0 + 10 * S, T0 + 30 * S, T0 + 30 * S]
    assert got.event_ids == ["a", "a2", "b"]
    assert got.sites == ["s2", "s1", "s1"]
    assert [s.direction for s in trail.scans()] == ["out", "out", "in"]


def test_between_is_inclusive_at_both_ends() -> None:
    visits = SiteVisits()
    for i in range(5):
        visits.add(T0 + i * S, f"p{i}", "k", f"e{i}")
    assert visits.between(T0 + S, T0 + 3 * S).persons == ["p1", "p2", "p3"]
    assert visits.between(T0 + S + 1, T0 + 3 * S - 1).persons == ["p2"]
    assert visits.between(T0 + 10 * S, T0 + 20 * S).persons == []


def test_stores_ignore_a_repeated_event_id() -> None:
    trail, visits = Trail(), SiteVisits()
    assert trail.add(T0, "s", "k", "in", "e1")
    assert not trail.add(T0, "s", "k", "in", "e1")
    assert visits.add(T0, "p", "k", "e1")
    assert not visits.add(T0 + S, "p", "k", "e1")
    assert len(trail) == 1 and len(visits) == 1


def test_index_ignores_an_event_id_seen_for_another_person() -> None:
    index = TrailIndex()
    assert index.add(T0, "p1", "s1", "k1", "in", "e1")
    assert not index.add(T0, "p2", "s2", "k2", "in", "e1")
    assert index.trail_between("p2", T0 - S, T0 + S).times == []
    assert index.visits_between("s1", T0 - S, T0 + S).persons == ["p1"]
    assert (index.added, index.ignored) == (1, 1)


def test_expire_forgets_old_scans_and_refuses_late_old_ones() -> None:
    index = TrailIndex()
    index.add(T0, "old", "s1", "k1", "in", "e1")
    index.add(T0 + 100 * S, "new", "s1", "k1", "in", "e2")
    assert index.expire(T0 + 50 * S) == 1
    assert not index.knows("old")
    assert index.visits_between("s1", T0, T0 + 200 * S).persons == ["new"]
    # An expired event id is no longer remembered, so an old re-send is refused by time.
    assert not index.add(T0, "old", "s1", "k1", "in", "e1")
    assert not index.add(T0 + 10 * S, "late", "s1", "k1", "in", "e9")
    assert index.add(T0 + 60 * S, "late", "s1", "k1", "in", "e9")
    assert len(index) == 2


def test_expire_on_a_store_returns_the_dropped_ids() -> None:
    trail = Trail()
    for t in [5, 1, 3]:
        trail.add(T0 + t * S, "s", "k", "in", f"e{t}")
    assert trail.expire(T0 + 4 * S) == ["e1", "e3"]
    assert [s.event_id for s in trail.scans()] == ["e5"]
    # After expiry the id can be used again only for a time within retention.
    assert not trail.add(T0, "s", "k", "in", "e1")


def test_trail_round_trips_through_json() -> None:
    trail = Trail()
    trail.add(T0 + 2 * S, "s1", "k1", "in", "e2")
    trail.add(T0 + 1 * S, "s2", "k2", "out", "e1")
    trail.expire(T0)
    doc = json.loads(json.dumps(trail.to_dict()))
    again = Trail.from_dict(doc)
    assert list(again.scans()) == list(trail.scans())
    assert again.horizon == T0
    assert again.to_dict() == doc
    assert not again.add(T0 + 1 * S, "s2", "k2", "out", "e1")  # ids rebuilt


def test_site_visits_round_trip_through_json() -> None:
    visits = SiteVisits()
    visits.add(T0 + 2 * S, "p2", "k1", "e2")
    visits.add(T0 + 1 * S, "p1", "k2", "e1")
    doc = json.loads(json.dumps(visits.to_dict()))
    assert doc["persons"] == ["p1", "p2"]
    again = SiteVisits.from_dict(doc)
    assert again.between(T0, T0 + 5 * S) == visits.between(T0, T0 + 5 * S)
    assert again.horizon == visits.horizon
    with pytest.raises(ValueError):
        SiteVisits.from_dict({**doc, "kiosks": ["k1"]})


def test_index_interns_ids() -> None:
    index = TrailIndex()
    a = "".join(["pers", "on"])
    b = "".join(["per", "son"])
    assert a is not b
    index.add(T0, a, "s1", "k1", "in", "e1")
    index.add(T0 + S, b, "s1", "k1", "in", "e2")
    persons = index.visits_between("s1", T0, T0 + S).persons
    assert persons[0] is persons[1]


def test_a_large_batch_gives_the_same_index_as_one_row_at_a_time() -> None:
    """add_many takes big batches apart by column; it must agree with add, row by row."""
    rng = random.Random(7)
    rows = []
    for i in range(400):
        at = T0 + rng.randrange(0, 3600) * S
        rows.append((at, f"p{rng.randrange(15)}", f"s{rng.randrange(3)}", "k1", "in", f"e{i}"))
    rows += rng.sample(rows, 40)  # re-sent within the batch
    rows.append((T0 - 10 * S, "p99", "s9", "k9", "in", "e-old"))  # refused by the horizon
    rows.append((T0 + 5 * S, "p98", "s9", "k9", "in", "e-old"))  # same id, in time: kept
    rng.shuffle(rows)
    batched, single = TrailIndex(), TrailIndex()
    batched.horizon = single.horizon = T0
    assert batched.add_many(rows) == sum(single.add(*row) for row in rows)
    assert (batched.added, batched.ignored) == (single.added, single.ignored)
    for person in [f"p{i}" for i in range(15)] + ["p98", "p99"]:
        assert batched.trail_between(person, T0, T0 + 3600 * S) == single.trail_between(
            person, T0, T0 + 3600 * S
        )
    for site in ["s0", "s1", "s2", "s9"]:
        assert batched.visits_between(site, T0, T0 + 3600 * S) == single.visits_between(
            site, T0, T0 + 3600 * S
        )

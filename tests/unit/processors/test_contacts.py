"""Contact tracing: worked examples, and a property test against an O(n²) brute force."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.contacts import ContactPolicy, Trace, trace
from processors.trails import SiteVisits, Trail, TrailIndex, TrailSlice, VisitSlice, to_micros

T0 = datetime(2020, 2, 10, 8, 0, tzinfo=timezone(timedelta(hours=8)))
MIN = timedelta(minutes=1)
Row = tuple[datetime, str, str, str, str, str]  # time, person, site, kiosk, direction, event_id


def build(rows: list[Row]) -> TrailIndex:
    index = TrailIndex()
    for t, person, site, kiosk, direction, event in rows:
        index.add(to_micros(t), person, site, kiosk, direction, event)
    return index


def run(rows: list[Row], person: str, since: datetime, until: datetime, **kw: Any) -> Trace:
    """The trace over the index's coded stores, checked against its string lookups."""
    index = build(rows)
    policy = ContactPolicy(**kw)
    coded = trace(person, since, until, stores=index, policy=policy)
    plain = trace(
        person,
        since,
        until,
        trail_of=index.trail_between,
        visits_at=index.visits_between,
        policy=policy,
    )
    assert coded == plain
    return coded


def brute(rows: list[Row], person: str, since: datetime, until: datetime, **kw: Any) -> list[dict]:
    """The definition, read literally: every pair of scans compared, O(n²)."""
    policy = ContactPolicy(**kw)
    seen: set[str] = set()
    scans = []
    for row in rows:
        if row[5] not in seen:
            seen.add(row[5])
            scans.append(row)

    def met(a: Row, b: Row) -> bool:
        return (
            a[2] == b[2]
            and abs(a[0] - b[0]) <= policy.window
            and (not policy.same_kiosk or a[3] == b[3])
        )

    def spread(sources: list[Row], exclude: set[str]) -> dict[str, list[tuple[Row, Row]]]:
        found: dict[str, list[tuple[Row, Row]]] = {}
        for s in sources:
            for v in scans:
                if v[1] != s[1] and v[1] not in exclude and met(s, v):
                    found.setdefault(v[1], []).append((s, v))
        return found

    def summarise(p: str, degree: int, pairs: list[tuple[Row, Row]]) -> dict:
        return {
            "person_id": p,
            "degree": degree,
            "first_contact": min(v[0] for _, v in pairs).astimezone(since.tzinfo).isoformat(),
            "encounters": len({(s[5], v[5]) for s, v in pairs}),
            "sites": sorted({v[2] for _, v in pairs}),
            "evidence": [list(x) for x in sorted({(s[5], v[5]) for s, v in pairs})],
        }

    index_scans = [s for s in scans if s[1] == person and since <= s[0] <= until]
    first = spread(index_scans, {person})
    out = [summarise(p, 1, pairs) for p, pairs in first.items()]
    if policy.depth == 2:
        second: dict[str, list[tuple[Row, Row]]] = {}
        for p, pairs in first.items():
            start = min(v[0] for _, v in pairs)
            own = [s for s in scans if s[1] == p and start <= s[0] <= until]
            for q, more in spread(own, {person, *first}).items():
                second.setdefault(q, []).extend(more)
        out += [summarise(p, 2, pairs) for p, pairs in second.items()]
    out.sort(
        key=lambda c: (c["degree"], datetime.fromisoformat(c["first_contact"]), c["person_id"])
    )
    return out


def test_window_edge_is_inclusive() -> None:
    rows: list[Row] = [
        (T0, "idx", "s1", "k1", "in", "e0"),
        (T0 + 15 * MIN, "edge", "s1", "k1", "in", "e1"),
        (T0 + 15 * MIN + timedelta(seconds=1), "late", "s1", "k1", "in", "e2"),
        (T0 - 15 * MIN, "early", "s1", "k1", "in", "e3"),
        (T0 - 15 * MIN - timedelta(microseconds=1), "earlier", "s1", "k1", "in", "e4"),
    ]
    result = run(rows, "idx", T0, T0 + timedelta(hours=1))
    assert [c.person_id for c in result.contacts] == ["early", "edge"]


def test_other_site_and_other_period_are_not_contacts() -> None:
    rows: list[Row] = [
        (T0, "idx", "s1", "k1", "in", "e0"),
        (T0 + MIN, "elsewhere", "s2", "k9", "in", "e1"),
        (T0 + timedelta(days=2), "idx", "s1", "k1", "out", "e2"),
        (T0 + timedelta(days=2), "later", "s1", "k1", "in", "e3"),
    ]
    result = run(rows, "idx", T0, T0 + timedelta(days=1))
    assert result.contacts == ()
    assert result.index_scans == 1


def test_same_kiosk_flag_narrows_contacts() -> None:
    rows: list[Row] = [
        (T0, "idx", "s1", "north", "in", "e0"),
        (T0 + MIN, "a", "s1", "north", "in", "e1"),
        (T0 + MIN, "b", "s1", "south", "in", "e2"),
    ]
    until = T0 + timedelta(hours=1)
    assert {c.person_id for c in run(rows, "idx", T0, until).contacts} == {"a", "b"}
    assert [c.person_id for c in run(rows, "idx", T0, until, same_kiosk=True).contacts] == ["a"]


def test_depth_two_merges_evidence_from_several_first_degree_contacts() -> None:
    rows: list[Row] = [
        (T0, "idx", "home", "k1", "out", "i1"),
        (T0 + 5 * MIN, "a", "home", "k1", "out", "a1"),
        (T0 + 6 * MIN, "b", "home", "k1", "out", "b1"),
        (T0 + timedelta(hours=2), "a", "market", "m1", "in", "a2"),
        (T0 + timedelta(hours=2, minutes=3), "b", "market", "m1", "in", "b2"),
        (T0 + timedelta(hours=2, minutes=10), "z", "market", "m2", "in", "z1"),
        # z met a before a's first contact with idx: that scan does not count.
        (T0 - timedelta(hours=3), "a", "pharmacy", "p1", "in", "a0"),
        (T0 - timedelta(hours=3), "y", "pharmacy", "p1", "in", "y0"),
    ]
    result = run(rows, "idx", T0, T0 + timedelta(days=1), depth=2)
    doc = result.to_dict()
    assert [(c["person_id"], c["degree"]) for c in doc["contacts"]] == [
        ("a", 1),
        ("b", 1),
        ("z", 2),
    ]
    z = doc["contacts"][2]
    assert z["evidence"] == [["a2", "z1"], ["b2", "z1"]]
    assert z["encounters"] == 2
    assert z["sites"] == ["market"]
    assert z["first_contact"] == "2020-02-10T10:10:00+08:00"
    assert result.contacts[2].via == ("a", "b")
    # a and b met each other at the market, but both are first-degree already.
    assert doc["contacts"][0]["evidence"] == [["i1", "a1"]]


def test_duplicates_are_ignored() -> None:
    rows: list[Row] = [
        (T0, "idx", "s1", "k1", "in", "e0"),
        (T0 + MIN, "a", "s1", "k1", "in", "e1"),
        (T0 + MIN, "a", "s1", "k1", "in", "e1"),
        (T0, "idx", "s1", "k1", "in", "e0"),
    ]
    result = run(rows, "idx", T0, T0 + timedelta(hours=1))
    assert [(c.person_id, c.encounters) for c in result.contacts] == [("a", 1)]


def test_to_dict_shape_and_offset() -> None:
    rows: list[Row] = [
        (T0, "idx", "s1", "k1", "in", "e0"),
        (T0.astimezone(UTC) + MIN, "a", "s1", "k1", "in", "e1"),
    ]
    doc = run(rows, "idx", T0, T0 + timedelta(hours=1)).to_dict()
    assert {"index", "since", "until", "contacts"} <= set(doc)
    assert doc["index"] == "idx"
    assert doc["since"] == "2020-02-10T08:00:00+08:00"
    assert doc["contacts"] == [
        {
            "person_id": "a",
            "degree": 1,
            "first_contact": "2020-02-10T08:01:00+08:00",
            "encounters": 1,
            "sites": ["s1"],
            "evidence": [["e0", "e1"]],
        }
    ]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="depth"):
        ContactPolicy(depth=3)
    with pytest.raises(ValueError, match="negative"):
        ContactPolicy(window=-MIN)
    with pytest.raises(ValueError, match="after until"):
        run([], "idx", T0, T0 - MIN)


def test_same_data_gives_same_trace() -> None:
    rows: list[Row] = [(T0 + i * MIN, f"p{i % 7}", "s1", "k1", "in", f"e{i}") for i in range(60)]
    one = run(rows, "p0", T0, T0 + timedelta(hours=2), depth=2).to_dict()
    two = run(list(reversed(rows)), "p0", T0, T0 + timedelta(hours=2), depth=2).to_dict()
    assert one == two
    assert one["contacts"]


# Scans on a coarse grid of seconds around exact window edges (0, 899, 900, 901 s
# apart), few persons, sites and kiosks, so contacts, ties and duplicates are common.
_OFFSETS = st.sampled_from([0, 1, 299, 300, 600, 899, 900, 901, 1200, 1800, 1801, 3600, 5400])
_scan = st.tuples(
    st.integers(0, 8).map(lambda n: n * 450) | _OFFSETS,
    st.sampled_from(["p0", "p0", "p1", "p2", "p3", "p4", "p5", "p6"]),  # p0 twice as often
    st.sampled_from(["s0", "s1"]),
    st.sampled_from(["k0", "k1"]),
    st.sampled_from(["in", "out"]),
    st.integers(0, 40).map(lambda n: f"e{n:02d}"),
)


@settings(max_examples=500, deadline=None)
@given(
    raw=st.lists(_scan, min_size=6, max_size=40),
    since=st.integers(0, 2700),
    span=st.integers(0, 7200),
    depth=st.sampled_from([1, 2]),
    same_kiosk=st.booleans(),
    window_s=st.sampled_from([0, 900, 901]),
)
def test_matches_brute_force(
    raw: list[tuple[int, str, str, str, str, str]],
    since: int,
    span: int,
    depth: int,
    same_kiosk: bool,
    window_s: int,
) -> None:
    rows: list[Row] = [(T0 + timedelta(seconds=s), *rest) for s, *rest in raw]
    start = T0 + timedelta(seconds=since)
    end = start + timedelta(seconds=span)
    kw = {"depth": depth, "same_kiosk": same_kiosk, "window": timedelta(seconds=window_s)}
    got = run(rows, "p0", start, end, **kw).to_dict()["contacts"]
    assert got == brute(rows, "p0", start, end, **kw)


def test_sharded_tables_give_the_same_trace_as_the_index() -> None:
    """The live layout: JSON values in a person-keyed and a site-keyed table."""
    rows: list[Row] = [
        (T0 + (i * 7 % 90) * MIN, f"p{i % 9}", f"s{i % 4}", f"k{i % 2}", "in", f"e{i}")
        for i in range(70)
    ]
    rows += rows[:20]  # re-sent: same event, same person, same site
    person_table: dict[str, dict] = {}
    site_table: dict[str, dict] = {}
    for t, person, site, kiosk, direction, event in rows:
        trail = Trail.from_dict(person_table[person]) if person in person_table else Trail()
        if trail.add(to_micros(t), site, kiosk, direction, event):  # new: forward by site
            visits = SiteVisits.from_dict(site_table[site]) if site in site_table else SiteVisits()
            visits.add(to_micros(t), person, kiosk, event)
            site_table[site] = json.loads(json.dumps(visits.to_dict()))
        person_table[person] = json.loads(json.dumps(trail.to_dict()))

    def trail_of(person: str, start: int, end: int) -> TrailSlice:
        return Trail.from_dict(person_table.get(person, EMPTY_TRAIL)).between(start, end)

    def visits_at(site: str, start: int, end: int) -> VisitSlice:
        return SiteVisits.from_dict(site_table.get(site, EMPTY_VISITS)).between(start, end)

    since, until = T0, T0 + timedelta(hours=1)
    policy = ContactPolicy(depth=2)
    sharded = trace("p0", since, until, trail_of=trail_of, visits_at=visits_at, policy=policy)
    assert sharded.to_dict() == run(rows, "p0", since, until, depth=2).to_dict()
    assert sharded.of_degree(1) and sharded.of_degree(2)


EMPTY_TRAIL = Trail().to_dict()
EMPTY_VISITS = SiteVisits().to_dict()


def test_trace_leaves_the_garbage_collector_as_it_found_it() -> None:
    import gc

    rows: list[Row] = [(T0, "idx", "s1", "k1", "in", "e0"), (T0, "a", "s1", "k1", "in", "e1")]
    assert gc.isenabled()
    run(rows, "idx", T0, T0 + MIN, depth=2)
    assert gc.isenabled()
    gc.disable()
    try:
        run(rows, "idx", T0, T0 + MIN)
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(ValueError):
        run(rows, "idx", T0 + MIN, T0)
    assert gc.isenabled()

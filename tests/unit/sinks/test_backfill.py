"""The pure parts of the watched-bucket backfill: planning, chunking, Flux text, rows to lines.

The property test is the guarantee the sink relies on: whatever order watches
and readings are handled in, every reading of a day some watch covers ends up
in the watched bucket, live or through a planned backfill.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from scantrail.contract import TemperatureReading
from sinks.backfill import (
    PERSONS_PER_QUERY,
    BackfillTask,
    Point,
    Watch,
    chunks,
    fetch_fields_flux,
    fever_window,
    find_points_flux,
    matching_points,
    plan,
    quarantine_window,
    watched_lines,
)
from sinks.lines import timestamp_ns, watched_temperature_line

SHANGHAI = ZoneInfo("Asia/Shanghai")
D = date(2020, 2, 1)


def day(n: int) -> date:
    return D + timedelta(days=n)


# --- plan --------------------------------------------------------------------------


def test_a_new_person_is_backfilled_over_the_whole_window() -> None:
    assert plan(None, day(0), day(14)) == (Watch(day(14), day(0)), [(day(0), day(14))])


def test_a_redelivered_watch_plans_nothing() -> None:
    watch, _ = plan(None, day(0), day(14))
    assert plan(watch, day(0), day(14)) == (watch, [])
    assert plan(watch, day(3), day(10)) == (watch, [])  # inside: nothing new either


def test_an_extended_watch_backfills_only_the_new_days() -> None:
    watch = Watch(until=day(14), covered_from=day(5))
    assert plan(watch, day(0), day(20)) == (
        Watch(day(20), day(0)),
        [(day(0), day(5)), (day(14), day(20))],
    )
    assert plan(watch, day(14), day(20)) == (Watch(day(20), day(5)), [(day(14), day(20))])


def test_a_later_window_with_a_gap_moves_the_claim() -> None:
    # The days between the two windows were never backfilled: claim only the new one.
    watch = Watch(until=day(10), covered_from=day(0))
    assert plan(watch, day(20), day(30)) == (Watch(day(30), day(20)), [(day(20), day(30))])


def test_an_older_window_apart_is_backfilled_but_not_claimed() -> None:
    watch = Watch(until=day(30), covered_from=day(20))
    assert plan(watch, day(0), day(10)) == (watch, [(day(0), day(10))])


def test_a_watch_from_before_backfills_existed_is_backfilled_up_to_its_end() -> None:
    legacy = Watch(until=day(40), covered_from=day(40))  # claims nothing
    assert plan(legacy, day(0), day(14)) == (Watch(day(40), day(0)), [(day(0), day(40))])


def test_an_empty_window_watches_without_a_backfill() -> None:
    assert plan(None, day(5), day(5)) == (Watch(day(5), day(5)), [])


def test_an_empty_window_does_not_stretch_the_claim() -> None:
    # Hypothesis found it: an empty window after an empty window claimed [0, 1)
    # unbackfilled, and the real window [0, 1) then backfilled nothing.
    watch, _ = plan(None, day(0), day(0))
    watch, spans = plan(watch, day(1), day(1))
    assert spans == [] and watch == Watch(day(0), day(0))
    assert plan(watch, day(0), day(1)) == (Watch(day(1), day(0)), [(day(0), day(1))])


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("watch"), st.integers(0, 40), st.integers(0, 20)),
            st.tuples(st.just("reading"), st.integers(0, 60), st.just(0)),
        ),
        max_size=30,
    )
)
def test_every_covered_reading_reaches_the_watched_bucket(
    steps: list[tuple[str, int, int]],
) -> None:
    """Model: readings handled live when watched, backfills copy every earlier reading."""
    watch: Watch | None = None
    handled: list[tuple[int, bool]] = []  # (day, written live to the watched bucket)
    backfilled: set[int] = set()  # indexes into ``handled``
    windows: list[tuple[int, int, int]] = []  # (start, stop, readings handled before it)
    for kind, a, b in steps:
        if kind == "reading":
            handled.append((a, watch is not None and day(a) < watch.until))
            continue
        watch, spans = plan(watch, day(a), day(a + b))
        windows.append((a, a + b, len(handled)))
        for i, (d, _) in enumerate(handled):
            if any(low <= day(d) < high for low, high in spans):
                backfilled.add(i)
    for start, stop, before in windows:
        for i, (d, live) in enumerate(handled[:before]):
            if start <= d < stop:
                assert live or i in backfilled, (start, stop, d, steps)
    for i, (d, _) in enumerate(handled):  # and every reading handled after a watch
        if any(start <= d < stop and before <= i for start, stop, before in windows):
            assert handled[i][1]


# --- windows -------------------------------------------------------------------------


def test_fever_window_is_14_days_back_and_28_ahead_in_local_days() -> None:
    at = datetime(2020, 2, 10, 17, 0, tzinfo=UTC)  # 01:00 on the 11th in Shanghai
    assert fever_window(at, SHANGHAI, timedelta(days=28)) == (date(2020, 1, 28), date(2020, 3, 10))


def test_quarantine_window_goes_back_at_most_14_days_before_today() -> None:
    starts, ends = date(2020, 2, 1), date(2020, 3, 1)
    assert quarantine_window(starts, ends, today=date(2020, 2, 10)) == (starts, ends)
    assert quarantine_window(starts, ends, today=date(2020, 2, 25)) == (date(2020, 2, 11), ends)
    # A replayed quarantine that ended long ago: its last 14 days.
    assert quarantine_window(starts, ends, today=date(2026, 1, 1)) == (date(2020, 2, 16), ends)


# --- queries -------------------------------------------------------------------------


def test_chunks_cap_the_persons_per_query_and_keep_windows_close() -> None:
    many = [BackfillTask(f"p-{i}", day(0), day(14)) for i in range(PERSONS_PER_QUERY + 1)]
    assert [len(c) for c in chunks(many)] == [PERSONS_PER_QUERY, 1]
    far = [BackfillTask("a", day(0), day(14)), BackfillTask("b", day(300), day(314))]
    assert [[t.person_id for t in c] for c in chunks(far)] == [["a"], ["b"]]
    two_of_one = [BackfillTask("a", day(0), day(5)), BackfillTask("a", day(9), day(14))]
    assert chunks(two_of_one) == [two_of_one]


def test_find_points_flux_spans_local_days_and_escapes_names() -> None:
    tasks = [BackfillTask("p.1/x", day(0), day(14)), BackfillTask("p-2", day(2), day(20))]
    flux = find_points_flux("main", tasks, SHANGHAI)
    # Local midnight in Shanghai is 16:00 UTC the day before.
    assert (
        "range(start: 2020-01-31T16:00:00.000000000Z, stop: 2020-02-20T16:00:00.000000000Z)" in flux
    )
    assert r"r._value =~ /(?:p\-2|p\.1\/x)/" in flux
    assert 'r._field == "person_id"' in flux and "int(v: r._time)" in flux


def test_matching_points_keeps_exact_persons_inside_their_windows_once() -> None:
    tasks = [BackfillTask("p-1", day(0), day(2))]
    inside = datetime(2020, 2, 1, 9, tzinfo=SHANGHAI)
    outside = datetime(2020, 2, 3, 9, tzinfo=SHANGHAI)

    def row(person: str, at: datetime, jitter: int = 7) -> dict[str, object]:
        ns = int(at.timestamp()) * 10**9 + jitter
        return {"_value": person, "ns": ns, "site_id": "s", "kiosk_id": "k", "method": "oral"}

    rows = [
        row("p-1", inside),
        row("p-1", inside),  # the same point twice (two chunks, two tasks)
        row("p-10", inside),  # the unanchored regex also matches this one
        row("p-1", outside),
        {"_value": "p-1", "ns": 5, "site_id": "s", "kiosk_id": "k"},  # no method tag
    ]
    expect = Point(int(inside.timestamp()) * 10**9 + 7, "s", "k", "oral", "p-1")
    assert matching_points(rows, tasks, SHANGHAI) == [expect]


def test_fetch_fields_flux_reads_one_nanosecond_per_point() -> None:
    flux = fetch_fields_flux("main", [Point(1_581_296_400_123_456_789, "s-1", "k-1", "oral", "p")])
    assert "range(start: 2020-02-10T01:00:00.123456789Z, stop: 2020-02-10T01:00:00.123456790Z)" in (
        flux
    )
    assert 'r.site_id == "s-1" and r.kiosk_id == "k-1" and r.method == "oral"' in flux
    # Flux's union needs two streams or more: one point is read on its own.
    assert flux.startswith("from(") and "union(" not in flux
    two = fetch_fields_flux(
        "main", [Point(1, "s", "k", "oral", "p"), Point(2, "s", "k", "oral", "p")]
    )
    assert two.startswith("union(tables: [") and two.count("from(") == 2


def test_watched_lines_are_the_live_lines_byte_for_byte() -> None:
    reading = TemperatureReading(
        event_id="k-1-t9",
        kiosk_id="kiosk:1",
        site_id="site/0",
        measured_at=datetime(2020, 2, 10, 1, 2, 3, 456789, tzinfo=UTC),
        celsius=38.25,
        method="oral",
        person_id="p-1",
    )
    ts = timestamp_ns(reading.measured_at, reading.event_id)
    point = Point(ts, reading.site_id, reading.kiosk_id, reading.method, "p-1")
    key = {"ns": ts, "site_id": "site/0", "kiosk_id": "kiosk:1", "method": "oral"}
    rows = [
        {**key, "_field": "celsius", "_value": 38.25},
        {**key, "_field": "event_id", "_value": "k-1-t9"},
    ]
    missing = point._replace(ts_ns=ts + 1)
    assert watched_lines([point, missing], rows) == [watched_temperature_line(reading, "p-1"), None]


# --- the sink state ---------------------------------------------------------------------


def test_sink_state_keeps_watches_and_pending_backfills(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sinks.backfill import FOREVER
    from sinks.sink_state import SinkState

    state = SinkState(tmp_path / "state.db")
    tasks = state.record_watches(
        {"a": Watch(day(14), day(0)), "b": Watch(FOREVER, FOREVER)},
        [("a", day(0), day(14)), ("b", day(3), FOREVER)],
    )
    assert [t.id for t in tasks] == [1, 2]
    state.close()
    state = SinkState(tmp_path / "state.db")  # what a restart sees
    assert state.watched() == {"a": Watch(day(14), day(0)), "b": Watch(FOREVER, FOREVER)}
    assert state.pending_backfills() == tasks
    assert state.is_watched("a", day(13)) and not state.is_watched("a", day(14))
    assert state.is_watched("b", date(2100, 1, 1))
    state.finish_backfills([tasks[0].id])
    assert state.pending_backfills() == tasks[1:]


def test_sink_state_from_before_backfills_is_migrated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    from sinks.sink_state import SinkState

    old = sqlite3.connect(tmp_path / "state.db")
    old.execute("CREATE TABLE watched (person_id TEXT PRIMARY KEY, until_day TEXT)")
    old.execute("INSERT INTO watched VALUES ('a', '2020-02-15'), ('b', NULL)")
    old.commit()
    old.close()
    state = SinkState(tmp_path / "state.db")
    from sinks.backfill import FOREVER

    # Nothing is claimed as backfilled, so the next watch of them backfills.
    assert state.watched() == {
        "a": Watch(date(2020, 2, 15), date(2020, 2, 15)),
        "b": Watch(FOREVER, FOREVER),
    }

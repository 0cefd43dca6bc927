"""A site's drift window is stored in pages of event time, so a batch rewrites seconds, not an hour.

The live worker writes a site's drift state after every batch that brings it
a reading. Whole, that record is the site's hour of readings: 18,000 samples
at five readings a second. These check the pure paging (processors.screening_state.DriftState)
and the table layout StateTable gives it (processors.live_state), through a
faust-like table and the real batch effects.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import timedelta

from processors.agents import Outcomes
from processors.baselines import judge_reading_for_site_drift
from processors.batching import Effects
from processors.live_state import StateTable, is_piece_key, page_key
from processors.screening_policy import ScreeningPolicy
from processors.screening_state import _COLUMNS, DRIFT_PAGE_US, DriftState, Sample
from processors.table_writes import encode_value
from scantrail.contract import Alert, TemperatureReading
from tests.factories import BASE_TIME, make_reading
from tests.unit.processors.test_seen_pieces import Event, Message, Table

SEC = timedelta(seconds=1)
POLICY = ScreeningPolicy()
SHORT = ScreeningPolicy(
    drift_window=timedelta(minutes=5),
    drift_min_readings=5,
    drift_cooldown=timedelta(minutes=2),
)


def reading(i: int, kiosk: str, at: timedelta, celsius: float = 36.5) -> TemperatureReading:
    return make_reading(
        event_id=f"r-{i}", kiosk_id=kiosk, measured_at=BASE_TIME + at, celsius=celsius
    )


def page_of(r: TemperatureReading) -> int:
    return int(r.measured_at.timestamp() * 1_000_000) // DRIFT_PAGE_US


def one_batch(
    states: StateTable, readings: list[TemperatureReading], policy: ScreeningPolicy = POLICY
) -> list[Alert]:
    effects = Effects(None, Outcomes())  # type: ignore[arg-type]
    event = Event(Message())
    alerts: list[Alert] = []
    for r in readings:
        state = states.load(r.site_id)
        alerts += judge_reading_for_site_drift(state, r, policy)
        states.save(effects, event, r.site_id, state)
    asyncio.run(effects.flush())
    return alerts


def samples(state: DriftState) -> dict[str, list[tuple[str, int, float]]]:
    return {
        k: sorted((s.event_id, s.time_us, s.celsius) for s in ss)
        for k, ss in state.readings.items()
    }


def test_a_batch_rewrites_the_head_and_the_pages_it_touched_not_the_hour() -> None:
    table = Table()
    states = StateTable(table, DriftState)
    hour = [reading(i, f"kiosk-{i % 4}", i * 0.2 * SEC) for i in range(18_000)]
    one_batch(states, hour)
    site = hour[0].site_id
    head = table[site.encode()]
    assert head["paged"] is True and "columns" not in head
    assert len(encode_value(head)) < 1_000

    table.written.clear()
    later = [reading(18_000 + i, "kiosk-1", 3600 * SEC + i * 0.2 * SEC) for i in range(5)]
    one_batch(states, later)
    rewritten = [k for k in table.written if k != site.encode()]
    assert rewritten == sorted({page_key(site, page_of(r)) for r in later})
    assert max(len(encode_value(table[k])) for k in rewritten) < 5_000

    # A worker that never saw the site reads the same window back.
    fresh = StateTable(table, DriftState).load(site)
    assert samples(fresh) == samples(states.load(site))
    assert fresh.newest == states.load(site).newest


def test_pages_the_window_has_left_are_deleted() -> None:
    table = Table()
    states = StateTable(table, DriftState)
    one_batch(states, [reading(i, "kiosk-1", i * 30 * SEC) for i in range(20)])  # 10 minutes
    site = "site-1"
    first_page = page_key(site, page_of(reading(0, "kiosk-1", 0 * SEC)))
    assert first_page in table
    # Two hours later: the window (an hour) holds none of them.
    late = reading(100, "kiosk-1", 7200 * SEC)
    one_batch(states, [late])
    pages = [k for k in table if is_piece_key(k)]
    assert first_page not in table
    assert pages == [page_key(site, page_of(late))]


def test_a_whole_record_from_before_pages_is_read_and_then_stored_in_pages() -> None:
    table = Table()
    whole = DriftState()
    for i in range(30):
        judge_reading_for_site_drift(whole, reading(i, f"kiosk-{i % 2}", i * 20 * SEC), POLICY)
    table[b"site-1"] = json.loads(json.dumps(whole.to_dict()))
    assert "columns" in table[b"site-1"]  # what an older worker wrote

    states = StateTable(table, DriftState)
    one_batch(states, [reading(99, "kiosk-0", 700 * SEC)])
    assert "columns" not in table[b"site-1"]
    back = StateTable(table, DriftState).load("site-1")
    assert len(back.readings["kiosk-1"]) == 15 and len(back.readings["kiosk-0"]) == 16


def test_the_unpaged_record_is_unchanged_for_the_offline_snapshots() -> None:
    state = DriftState()
    for i in range(10):
        judge_reading_for_site_drift(state, reading(i, "kiosk-1", i * SEC), POLICY)
    record = state.to_dict()
    assert record.keys() == {"columns", "last_drift_at", "newest"}
    assert samples(DriftState.from_dict(json.loads(json.dumps(record)))) == samples(state)


def test_reloading_between_any_batches_judges_exactly_as_staying_in_memory() -> None:
    """Three kiosks, one drifting now and then; times out of order and repeats; random
    batch ends, and the cache dropped after some batches, as a rebalance or a trim does.
    The alerts are the same as over a state never written, and so is the window."""
    rng = random.Random(7)
    table = Table()
    states = StateTable(table, DriftState)
    reference = DriftState()
    expected: list[Alert] = []
    got: list[Alert] = []
    clock, i = 0.0, 0
    for _ in range(150):
        batch = []
        for _ in range(rng.randint(1, 40)):
            i += 1
            clock += rng.uniform(0.5, 4.0)
            kiosk = f"kiosk-{rng.randint(1, 3)}"
            hot = kiosk == "kiosk-1" and (clock // 600) % 2 == 1
            celsius = round(rng.gauss(37.6 if hot else 36.5, 0.1), 2)
            at = clock - (rng.uniform(0, 90) if rng.random() < 0.1 else 0)
            r = reading(i, kiosk, at * SEC, celsius)
            if rng.random() < 0.05 and i > 50:  # a repeat of something sent before
                r = r.model_copy(update={"event_id": f"r-{rng.randint(i - 50, i - 1)}"})
            batch.append(r)
        for r in batch:
            expected += judge_reading_for_site_drift(reference, r, SHORT)
        got += one_batch(states, batch, SHORT)
        if rng.random() < 0.4:
            states.forget()
            back = states.load("site-1")
            assert samples(back) == samples(reference)
            assert back.last_drift_at == reference.last_drift_at
    assert [a.alert_id for a in got] == [a.alert_id for a in expected]
    assert len(expected) >= 3  # the drifting stretches were found
    # Only pages the window still reaches are stored, and they hold every sample kept.
    stored = sorted(int(k.rsplit(b"#page", 1)[1]) for k in table if is_piece_key(k))
    assert stored and all(not reference.dead(n) for n in stored)
    assert len(stored) <= SHORT.drift_window.total_seconds() * 1e6 // DRIFT_PAGE_US + 2


def test_a_page_holds_exactly_the_samples_of_its_span_through_adds_and_prunes() -> None:
    """Pages are cut from columns kept beside the samples: they must follow every add
    and prune, in order or not, and match the samples a page's span holds, one for one."""
    rng = random.Random(11)
    state = DriftState(paged=True)
    clock, first, last, checked = 0.0, 1 << 62, 0, 0
    for i in range(3_000):
        kiosk = f"kiosk-{rng.randrange(3)}"
        late = rng.random() < (0.3 if kiosk == "kiosk-2" else 0.0)  # kiosk-2 arrives out of order
        at = clock - rng.uniform(0, 40) if late else clock
        clock += rng.uniform(0, 0.5)
        r = reading(i, kiosk, at * SEC, celsius=round(rng.gauss(36.5, 0.3), 2))
        sample = Sample.of(r)
        state.add(sample)
        first = min(first, sample.time_us // DRIFT_PAGE_US)
        last = max(last, sample.time_us // DRIFT_PAGE_US)
        if i % 97 == 0:
            state.prune(BASE_TIME + (clock - rng.uniform(60, 200)) * SEC)
        if i % 13:
            continue
        for number in range(first, last + 1):  # pruned pages too: they must come out empty
            lo, hi = number * DRIFT_PAGE_US, (number + 1) * DRIFT_PAGE_US
            want = {
                kiosk: [
                    (s.event_id, s.time_us, s.celsius, s.site_id, s.person_id)
                    for s in held
                    if lo <= s.time_us < hi
                ]
                for kiosk, held in state.readings.items()
            }
            got = {
                kiosk: list(zip(*(c[name] for name in _COLUMNS), strict=True))
                for kiosk, c in state.page(number)["columns"].items()
            }
            assert got == {k: v for k, v in want.items() if v}
            checked += len(got)
    assert checked > 1_000
    assert not state._is_in_order("kiosk-2") and state._is_in_order("kiosk-0")

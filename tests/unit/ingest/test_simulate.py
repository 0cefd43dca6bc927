"""Synthetic gates: deterministic, the plain profile frozen, the realistic day as described."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ingest.simulate import GateWorld, simulate_events, traffic_weight
from scantrail import contract

START = datetime(2020, 2, 10, 0, 30, tzinfo=UTC)  # 08:30 in Shanghai
MIDNIGHT = datetime(2020, 2, 9, 16, 0, tzinfo=UTC)  # 00:00 in Shanghai
SHANGHAI = ZoneInfo("Asia/Shanghai")

# sha256 over the encoded events (one per line) of call patterns other tests rely on.
PLAIN_CASES = [
    (
        GateWorld(kiosks=4, residents=120, seed=7),
        50.0,
        timedelta(seconds=40),
        3885,
        "5f812b3f91654241316f8399d753dccd6ffa83cc47cb985f3578cfd52894b297",
    ),
    (
        GateWorld(kiosks=4, residents=60, seed=11, fever_share=0.1, sensor_error_rate=0.02),
        1.0,
        timedelta(seconds=1800),
        3639,
        "f644c738b249865b45ab80ad71540819ba6b97ea79cf5b2bf75c8aa4730083e4",
    ),
    (
        GateWorld(kiosks=6, residents=150, seed=21),
        1.0,
        timedelta(minutes=90),
        10614,
        "ef424c4b40c4f652527c18cedbd82bcb18940a209c60bd5192f3ebe1d1c2afc1",
    ),
]


def run(
    world: GateWorld, start: datetime, rate: float, duration: timedelta
) -> list[contract.Event]:
    return list(simulate_events(world, start, rate, duration))


def scans(events: list[contract.Event]) -> list[contract.ScanEvent]:
    return [e for e in events if isinstance(e, contract.ScanEvent)]


def stamp(event: contract.Event) -> datetime:
    assert isinstance(event, contract.ScanEvent | contract.TemperatureReading)
    return event.time


def realistic_day(seed: int = 5) -> tuple[GateWorld, list[contract.Event]]:
    world = GateWorld.realistic(kiosks=6, residents=300, seed=seed)
    return world, run(world, MIDNIGHT, 0.05, timedelta(hours=24))


@pytest.mark.parametrize(("world", "rate", "duration", "count", "digest"), PLAIN_CASES)
def test_plain_profile_is_unchanged(
    world: GateWorld, rate: float, duration: timedelta, count: int, digest: str
) -> None:
    h = hashlib.sha256()
    events = run(world, START, rate, duration)
    for event in events:
        h.update(contract.encode(event))
        h.update(b"\n")
    assert (len(events), h.hexdigest()) == (count, digest)


def test_plain_profile_is_in_event_time_order() -> None:
    events = run(GateWorld(kiosks=4, residents=120, seed=7), START, 50.0, timedelta(seconds=40))
    times = [stamp(e) for e in events if not isinstance(e, contract.QuarantineRecord)]
    assert times == sorted(times)


@pytest.mark.parametrize(
    "world",
    [
        GateWorld(kiosks=4, residents=120, seed=3),
        GateWorld.realistic(kiosks=4, residents=120, seed=3),
    ],
    ids=["plain", "realistic"],
)
def test_same_seed_same_events_other_seed_other_events(world: GateWorld) -> None:
    first = run(world, START, 2.0, timedelta(minutes=20))
    again = run(world, START, 2.0, timedelta(minutes=20))
    other = run(replace(world, seed=4), START, 2.0, timedelta(minutes=20))
    assert [contract.encode(e) for e in first] == [contract.encode(e) for e in again]
    assert [contract.encode(e) for e in first] != [contract.encode(e) for e in other]


def test_realistic_peak_hours_are_busier_than_night() -> None:
    _, events = realistic_day()
    local = [s.scanned_at.astimezone(SHANGHAI) for s in scans(events)]
    per_half_hour = Counter(at.hour * 2 + at.minute // 30 for at in local)
    morning = sum(per_half_hour[slot] for slot in range(15, 18)) / 3  # 07:30–09:00
    evening = sum(per_half_hour[slot] for slot in range(35, 39)) / 4  # 17:30–19:30
    night = sum(per_half_hour[slot] for slot in range(0, 10)) / 10  # 00:00–05:00
    midday = sum(per_half_hour[slot] for slot in range(26, 34)) / 8  # 13:00–17:00
    assert morning > 2 * midday > 10 * night
    assert evening > 2 * midday
    # A 24 h run at 0.05 outings per second: about 4,320 outings, some in groups.
    assert 4000 < len(scans(events)) < 6500


def test_traffic_weight_averages_to_one_over_a_day() -> None:
    weights = [traffic_weight(MIDNIGHT + timedelta(minutes=30 * i)) for i in range(48)]
    assert sum(weights) / 48 == pytest.approx(1.0)
    assert traffic_weight(datetime(2020, 2, 10, 8, 15, tzinfo=SHANGHAI)) > 2
    assert traffic_weight(datetime(2020, 2, 10, 3, 0, tzinfo=SHANGHAI)) < 0.1


def test_household_members_go_out_together() -> None:
    world, events = realistic_day()
    household_of = {
        world.person_id(r): h for h, members in enumerate(world.households()) for r in members
    }
    sizes = Counter(len(members) for members in world.households())
    assert set(sizes) == {1, 2, 3, 4, 5}
    by_kiosk: dict[str, list[contract.ScanEvent]] = {}
    for s in scans(events):
        by_kiosk.setdefault(s.kiosk_id, []).append(s)
    together = 0
    for kiosk_scans in by_kiosk.values():
        for a, b in zip(kiosk_scans, kiosk_scans[1:], strict=False):
            if (
                b.scanned_at - a.scanned_at <= timedelta(seconds=10)
                and a.direction == b.direction
                and a.person_id != b.person_id
                and household_of[a.person_id] == household_of[b.person_id]
            ):
                together += 1
    assert together > 100


def test_plain_world_has_no_households() -> None:
    world = GateWorld(residents=50)
    assert world.households() == [[r] for r in range(50)]
    assert world.clock_skew() == {}
    assert world.kiosk_outages(START, timedelta(hours=1)) == []


def test_skewed_kiosks_stamp_a_constant_offset() -> None:
    world = replace(GateWorld.realistic(kiosks=8, residents=300, seed=9), outages=0)
    true_clock = replace(world, skewed_kiosk_share=0.0)
    skewed = run(world, START, 1.0, timedelta(hours=2))
    truth = {
        e.event_id: e
        for e in run(true_clock, START, 1.0, timedelta(hours=2))
        if isinstance(e, contract.ScanEvent | contract.TemperatureReading)
    }
    skew = world.clock_skew()
    assert len(skew) == 2
    assert all(
        timedelta(minutes=2) <= abs(offset) <= timedelta(minutes=10) for offset in skew.values()
    )
    offsets: dict[str, set[timedelta]] = {}
    for event in skewed:
        if isinstance(event, contract.ScanEvent | contract.TemperatureReading):
            offsets.setdefault(event.kiosk_id, set()).add(event.time - stamp(truth[event.event_id]))
    assert {kiosk: seen for kiosk, seen in offsets.items() if seen != {timedelta(0)}} == {
        kiosk: {offset} for kiosk, offset in skew.items()
    }
    # Yielded in true-time order, so the kiosks' own stamps are out of order.
    stamps = [stamp(e) for e in skewed if not isinstance(e, contract.QuarantineRecord)]
    assert stamps != sorted(stamps)


def test_outage_events_are_yielded_late_with_their_original_times() -> None:
    world = replace(GateWorld.realistic(kiosks=4, residents=200, seed=2), outages=1)
    online = replace(world, outages=0)
    duration = timedelta(hours=2)
    (outage,) = world.kiosk_outages(START, duration)
    skew = world.clock_skew()
    late = run(world, START, 1.0, duration)
    on_time = run(online, START, 1.0, duration)
    # The same events with the same times: only the yield (publish) order differs.
    assert sorted(contract.encode(e) for e in late) == sorted(contract.encode(e) for e in on_time)

    def true_time(event: contract.Event) -> datetime:
        assert isinstance(event, contract.ScanEvent | contract.TemperatureReading)
        return event.time - skew.get(event.kiosk_id, timedelta(0))

    def offline(event: contract.Event) -> bool:
        return (
            isinstance(event, contract.ScanEvent | contract.TemperatureReading)
            and event.kiosk_id == outage.kiosk_id
            and outage.starts_at <= true_time(event) < outage.ends_at
        )

    held = [e for e in late if offline(e)]
    assert len(held) > 20
    assert [e for e in on_time if offline(e)] == held  # spooled in their own order
    first = late.index(held[0])
    # The spool comes out in one burst ...
    assert late[first : first + len(held)] == held
    # ... only once the outage is over (the next event is past its end) ...
    assert true_time(late[first + len(held)]) >= outage.ends_at
    # ... after other kiosks' events from the whole outage were yielded.
    before = late[first - 1]
    assert true_time(before) > true_time(held[-1])
    assert on_time.index(held[0]) < first


def test_every_hot_reading_of_a_fever_is_remeasured_in_the_realistic_day() -> None:
    world = replace(GateWorld.realistic(kiosks=4, residents=100, seed=6), fever_share=0.1)
    events = run(world, START, 1.0, timedelta(hours=2))
    readings = {e.event_id: e for e in events if isinstance(e, contract.TemperatureReading)}
    hot_first = [r for r in readings.values() if r.event_id.endswith("-t0") and r.celsius >= 37.4]
    assert hot_first
    for reading in hot_first:
        if reading.celsius > 42.0:
            continue  # a sensor error, not a fever
        assert reading.event_id[:-1] + "1" in readings


@pytest.mark.parametrize(
    "world",
    [
        GateWorld(kiosks=4, residents=120, seed=8),
        GateWorld.realistic(kiosks=6, residents=200, seed=8),
    ],
    ids=["plain", "realistic"],
)
def test_every_event_passes_the_contract(world: GateWorld) -> None:
    events = run(world, START, 2.0, timedelta(minutes=30))
    assert any(isinstance(e, contract.QuarantineRecord) for e in events)
    for event in events:
        assert contract.decode(contract.encode(event), expect=type(event)) == event


def test_start_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next(simulate_events(GateWorld(), datetime(2020, 2, 10), 1.0, timedelta(seconds=10)))


def test_districts_world_shows_every_new_alert_kind_and_passes_the_contract() -> None:
    from processors.screener import Screener

    world = GateWorld.districts(kiosks=6, residents=400, seed=2020, remeasure_s=(15.0, 45.0))
    events = list(
        simulate_events(world, datetime(2020, 2, 10, 1, tzinfo=UTC), 20.0, timedelta(seconds=60))
    )
    for event in events:
        assert contract.decode(contract.encode(event)) == event
    scans = [e for e in events if isinstance(e, contract.ScanEvent)]
    assert {s.venue_kind for s in scans} >= {"market", "pharmacy"}
    visitors = [s for s in scans if s.person_kind == "visitor"]
    assert visitors and all(s.person_id.startswith("v-") and s.visiting for s in visitors)
    visitor_readings = [
        e
        for e in events
        if isinstance(e, contract.TemperatureReading) and (e.person_id or "").startswith("v-")
    ]
    assert len(visitor_readings) == len(visitors)
    assert all(s.household_id for s in scans if s.person_kind is None)
    kinds = Counter(a.kind for a in Screener().run(events))
    for kind in ("outing_quota_exceeded", "health_code_yellow", "health_code_red"):
        assert kinds[kind] > 0, kinds
    # the check-ins enter trails at the venue like kiosk scans
    from processors.trails import TrailIndex

    index = TrailIndex()
    for scan in scans:
        index.add_event(scan)
    venue = next(s for s in scans if s.venue_kind == "market")
    assert index.knows(venue.person_id)

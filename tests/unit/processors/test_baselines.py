"""Personal baselines, site clusters and kiosk drift at their boundaries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.baselines import judge_confirmation_for_site, judge_reading_for_site_drift
from processors.screener import Screener
from processors.screening import judge_reading_for_person
from processors.screening_policy import ScreeningPolicy, SitePolicies
from processors.screening_state import ClusterState, Confirmation, DriftState, PersonState, Sample
from scantrail.contract import Alert, TemperatureReading
from tests.factories import BASE_TIME, make_reading

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MIN = timedelta(minutes=1)
SEC = timedelta(seconds=1)
POLICY = ScreeningPolicy()


def feed_person(
    readings: list[TemperatureReading], policy: ScreeningPolicy = POLICY
) -> tuple[list[Alert], PersonState]:
    state = PersonState()
    alerts: list[Alert] = []
    for r in readings:
        found, _ = judge_reading_for_person(state, r, policy)
        alerts += found
    return alerts, state


def history(*offsets: timedelta, celsius: float = 36.2) -> list[TemperatureReading]:
    return [make_reading(measured_at=BASE_TIME + o, celsius=celsius) for o in offsets]


# --- personal baseline --------------------------------------------------------------------


@pytest.mark.parametrize(("celsius", "raised"), [(37.0, True), (36.99, False), (37.29, True)])
def test_anomaly_needs_median_plus_point_eight(celsius: float, raised: bool) -> None:
    past = history(-3 * DAY, -2 * DAY, -DAY)
    now = make_reading(celsius=celsius)
    alerts, _ = feed_person([*past, now])
    if raised:
        [alert] = alerts
        assert (alert.kind, alert.severity) == ("temperature_anomaly", "info")
        assert alert.evidence == [now.event_id]
        assert alert.detail["baseline_median_c"] == 36.2
        assert alert.detail["baseline_dates"] == 3
    else:
        assert alerts == []


def test_two_dates_are_not_a_baseline() -> None:
    past = history(-2 * DAY, -DAY, -DAY + HOUR, -DAY + 2 * HOUR)
    alerts, _ = feed_person([*past, make_reading(celsius=37.2)])
    assert alerts == []


def test_readings_of_the_same_local_date_are_not_baseline() -> None:
    past = history(-2 * DAY, -DAY, -HOUR, -2 * HOUR)
    alerts, _ = feed_person([*past, make_reading(celsius=37.2)])
    assert alerts == []


def test_fever_readings_are_not_anomalies_but_join_the_baseline() -> None:
    past = history(-3 * DAY, -2 * DAY, -DAY)
    fever = make_reading(celsius=37.5)
    alerts, state = feed_person([*past, fever])
    assert [a.kind for a in alerts] == ["fever_suspected"]
    assert (fever.measured_at, 37.5) in state.history


def test_anomaly_at_most_once_per_local_date() -> None:
    past = history(*(-d * DAY + h * HOUR for d in (1, 2, 3) for h in (0, 1, 2)))
    same_day = [make_reading(measured_at=BASE_TIME + h * HOUR, celsius=37.1) for h in (0, 1, 2)]
    next_day = make_reading(measured_at=BASE_TIME + DAY, celsius=37.1)
    alerts, state = feed_person([*past, *same_day, next_day])
    assert [a.evidence for a in alerts] == [[same_day[0].event_id], [next_day.event_id]]
    assert state.last_anomaly_on == (BASE_TIME + DAY).date()


def test_local_date_boundary_is_midnight_in_shanghai() -> None:
    # 2020-02-10 15:59:59 UTC is 23:59:59 on the 10th in Shanghai; 16:00 UTC is the 11th.
    before = datetime(2020, 2, 10, 15, 59, 59, tzinfo=UTC)
    midnight = datetime(2020, 2, 10, 16, 0, 0, tzinfo=UTC)
    past = [
        make_reading(measured_at=before - 2 * DAY, celsius=36.2),
        make_reading(measured_at=before - DAY, celsius=36.2),
        make_reading(measured_at=before, celsius=36.2),
    ]
    now = make_reading(measured_at=midnight, celsius=37.0)
    alerts, _ = feed_person([*past, now])
    assert [a.kind for a in alerts] == ["temperature_anomaly"]
    assert alerts[0].detail["local_date"] == "2020-02-11"
    # In UTC the last baseline reading is on the same date as `now`: only two dates remain.
    utc_alerts, _ = feed_person([*past, now], ScreeningPolicy(timezone="UTC"))
    assert utc_alerts == []


def test_anomalies_on_both_sides_of_local_midnight() -> None:
    base = datetime(2020, 2, 10, 4, 0, tzinfo=UTC)
    past = history(base - BASE_TIME - 3 * DAY, base - BASE_TIME - 2 * DAY, base - BASE_TIME - DAY)
    late = make_reading(measured_at=datetime(2020, 2, 10, 15, 59, 59, tzinfo=UTC), celsius=37.1)
    early = make_reading(measured_at=datetime(2020, 2, 10, 16, 0, 0, tzinfo=UTC), celsius=37.1)
    alerts, _ = feed_person([*past, late, early])
    assert [a.evidence for a in alerts] == [[late.event_id], [early.event_id]]


@pytest.mark.parametrize(("oldest", "raised"), [(-14 * DAY, True), (-14 * DAY - SEC, False)])
def test_baseline_reaches_back_exactly_fourteen_days(oldest: timedelta, raised: bool) -> None:
    past = history(oldest, -2 * DAY, -DAY)
    alerts, _ = feed_person([*past, make_reading(celsius=37.1)])
    assert bool(alerts) is raised


def test_history_is_pruned_to_fourteen_days() -> None:
    readings = [make_reading(measured_at=BASE_TIME + d * DAY, celsius=36.5) for d in range(40)]
    _, state = feed_person(readings)
    assert min(t for t, _ in state.history) == BASE_TIME + 25 * DAY
    assert len(state.history) == 15


def test_invalid_readings_are_not_baseline() -> None:
    past = history(-3 * DAY, -2 * DAY) + history(-DAY, celsius=33.0)
    alerts, state = feed_person([*past, make_reading(celsius=37.2)])
    assert alerts == []
    assert len(state.history) == 3


# --- clusters -----------------------------------------------------------------------------


def confirmation(person: str, when: datetime, site: str = "site-1") -> Confirmation:
    stamp = int(when.timestamp())
    first = Sample(f"{person}-{stamp}-a", when - MIN, 37.6, "kiosk-1", site, person)
    second = Sample(f"{person}-{stamp}-b", when, 37.5, "kiosk-1", site, person)
    return Confirmation(site, person, first, second)


def feed_site(confirmations: list[Confirmation], state: ClusterState | None = None) -> list[Alert]:
    state = state if state is not None else ClusterState()
    alerts: list[Alert] = []
    for c in confirmations:
        alerts += judge_confirmation_for_site(state, c, POLICY)
    return alerts


def test_three_persons_within_a_day_make_a_cluster() -> None:
    confs = [confirmation(p, BASE_TIME + i * HOUR) for i, p in enumerate(["a", "b", "c"])]
    [alert] = feed_site(confs)
    assert (alert.kind, alert.severity) == ("fever_cluster", "critical")
    assert alert.person_id is None and alert.kiosk_id is None
    assert alert.evidence == sorted(c.second.event_id for c in confs)
    assert alert.event_time == confs[-1].time
    assert alert.detail["persons"] == 3


@pytest.mark.parametrize(("gap", "raised"), [(24 * HOUR - SEC, True), (24 * HOUR, False)])
def test_cluster_window_is_twenty_four_hours_open_at_the_start(
    gap: timedelta, raised: bool
) -> None:
    confs = [
        confirmation("a", BASE_TIME),
        confirmation("b", BASE_TIME + HOUR),
        confirmation("c", BASE_TIME + gap),
    ]
    assert len(feed_site(confs)) == int(raised)


def test_one_person_confirmed_three_times_is_no_cluster() -> None:
    assert feed_site([confirmation("a", BASE_TIME + i * HOUR) for i in range(3)]) == []


def confirmed_pair(person: str, when: datetime, site: str) -> list[TemperatureReading]:
    return [
        make_reading(person_id=person, site_id=site, measured_at=when, celsius=37.8),
        make_reading(person_id=person, site_id=site, measured_at=when + 5 * MIN, celsius=37.6),
    ]


def test_sites_are_counted_apart() -> None:
    readings = confirmed_pair("p-1", BASE_TIME, "site-1") + confirmed_pair(
        "p-2", BASE_TIME + HOUR, "site-1"
    )
    other_site = confirmed_pair("p-3", BASE_TIME + 2 * HOUR, "site-2")
    kinds = [a.kind for a in Screener().run(readings + other_site)]
    assert kinds.count("fever_confirmed") == 3
    assert "fever_cluster" not in kinds
    third_here = confirmed_pair("p-3", BASE_TIME + 2 * HOUR, "site-1")
    assert "fever_cluster" in [a.kind for a in Screener().run(readings + third_here)]


def test_cluster_cooldown_ends_after_exactly_twenty_four_hours() -> None:
    state = ClusterState()
    start = [confirmation(p, BASE_TIME + i * MIN) for i, p in enumerate("abc")]  # cluster at 2 min
    assert len(feed_site(start, state)) == 1
    t = BASE_TIME + 2 * MIN + 24 * HOUR
    more = [confirmation(p, t - 2 * HOUR + i * MIN) for i, p in enumerate("def")]
    assert feed_site(more, state) == []  # window holds d, e, f but still cooling down
    [alert] = feed_site([confirmation("g", t)], state)
    assert alert.event_time == t
    assert alert.detail["persons"] == 4


def test_duplicate_confirmation_is_ignored() -> None:
    c = confirmation("a", BASE_TIME)
    assert feed_site([c, c, confirmation("b", BASE_TIME + MIN)]) == []


def test_cluster_from_readings_end_to_end() -> None:
    readings: list[TemperatureReading] = []
    for i, person in enumerate(["p-1", "p-2", "p-3"]):
        readings += confirmed_pair(person, BASE_TIME + i * HOUR, "site-1")
    alerts = Screener().run(readings)
    assert [a.kind for a in alerts].count("fever_confirmed") == 3
    [cluster] = [a for a in alerts if a.kind == "fever_cluster"]
    assert cluster.evidence == sorted(r.event_id for r in readings[1::2])
    assert cluster.event_time == readings[-1].measured_at


# --- kiosk drift --------------------------------------------------------------------------


def drift_run(
    kiosk_c: float, kiosk_n: int, other_n: int = 20, other_c: float = 36.5
) -> list[Alert]:
    state = DriftState()
    readings = [
        make_reading(
            kiosk_id=f"kiosk-{2 + i % 2}", measured_at=BASE_TIME + i * SEC, celsius=other_c
        )
        for i in range(other_n)
    ] + [
        make_reading(kiosk_id="kiosk-1", measured_at=BASE_TIME + MIN + i * SEC, celsius=kiosk_c)
        for i in range(kiosk_n)
    ]
    alerts: list[Alert] = []
    for r in readings:
        alerts += judge_reading_for_site_drift(state, r, POLICY)
    return alerts


@pytest.mark.parametrize(
    ("kiosk_c", "raised"), [(37.21, True), (37.2, False), (35.79, True), (35.8, False)]
)
def test_drift_needs_more_than_point_seven(kiosk_c: float, raised: bool) -> None:
    alerts = drift_run(kiosk_c, 20)
    if raised:
        [alert] = alerts
        assert (alert.kind, alert.severity, alert.kiosk_id) == (
            "sensor_drift",
            "warning",
            "kiosk-1",
        )
        assert alert.detail["site_median_c"] == 36.5
        assert abs(alert.detail["difference_c"]) == 0.71
    else:
        assert alerts == []


@pytest.mark.parametrize(
    ("kiosk_n", "other_n", "raised"), [(19, 20, False), (20, 19, False), (20, 20, True)]
)
def test_drift_needs_twenty_readings_on_each_side(kiosk_n: int, other_n: int, raised: bool) -> None:
    assert len(drift_run(37.5 - 0.2, kiosk_n, other_n)) == int(raised)


def test_drift_at_most_once_per_kiosk_per_hour() -> None:
    state = DriftState()
    alerts: list[Alert] = []
    for m in range(100):  # both kiosks read once a minute; kiosk-1 a degree low
        for kiosk, offset, celsius in (("kiosk-2", 0, 36.5), ("kiosk-1", 30, 35.5)):
            when = BASE_TIME + m * MIN + offset * SEC
            reading = make_reading(kiosk_id=kiosk, measured_at=when, celsius=celsius)
            alerts += judge_reading_for_site_drift(state, reading, POLICY)
    # With two kiosks each one is "the others" of the other, so kiosk-2 is flagged too.
    assert {a.kiosk_id for a in alerts} == {"kiosk-1", "kiosk-2"}
    alerts = [a for a in alerts if a.kiosk_id == "kiosk-1"]
    first = BASE_TIME + 19 * MIN + 30 * SEC  # kiosk-1's 20th reading
    assert [a.event_time for a in alerts] == [first, first + HOUR]
    assert alerts[0].detail["difference_c"] == -1.0
    assert len(alerts[1].evidence) == 60


def test_drift_window_forgets_readings_older_than_an_hour() -> None:
    state = DriftState()
    for i in range(20):
        judge_reading_for_site_drift(
            state, make_reading(kiosk_id="kiosk-2", measured_at=BASE_TIME + i * SEC), POLICY
        )
    out: list[Alert] = []
    for i in range(20):
        when = BASE_TIME + HOUR + 19 * SEC + i * SEC
        r = make_reading(kiosk_id="kiosk-1", measured_at=when, celsius=38.0)
        out += judge_reading_for_site_drift(state, r, POLICY)
    assert out == []
    assert set(state.readings) == {"kiosk-1"}


def test_invalid_readings_do_not_count_for_drift() -> None:
    state = DriftState()
    for i in range(25):
        judge_reading_for_site_drift(
            state,
            make_reading(kiosk_id="kiosk-2", measured_at=BASE_TIME + i * SEC, celsius=30.0),
            POLICY,
        )
    assert state.readings == {}


def test_a_repeated_reading_changes_no_drift_window() -> None:
    """The window is its own duplicate filter: a repeat counts once, and raises nothing new."""
    once, twice = DriftState(), DriftState()
    readings = [
        make_reading(kiosk_id=f"kiosk-{1 + i % 2}", measured_at=BASE_TIME + i * SEC)
        for i in range(30)
    ]
    for r in readings:
        judge_reading_for_site_drift(once, r, POLICY)
        judge_reading_for_site_drift(twice, r, POLICY)
        assert judge_reading_for_site_drift(twice, r, POLICY) == []
    assert twice == once
    assert sum(len(samples) for samples in twice.readings.values()) == 30


def test_a_reading_a_window_older_than_the_newest_is_passed_by() -> None:
    """Only a kiosk catching up can deliver it; the window holds nothing of its hour."""
    state = DriftState()
    judge_reading_for_site_drift(
        state, make_reading(kiosk_id="kiosk-2", measured_at=BASE_TIME + HOUR), POLICY
    )
    before = DriftState.from_dict(state.to_dict())
    stale = make_reading(kiosk_id="kiosk-1", measured_at=BASE_TIME, celsius=39.0)
    assert judge_reading_for_site_drift(state, stale, POLICY) == []
    assert state == before
    # One microsecond inside the window it counts.
    inside = make_reading(
        kiosk_id="kiosk-1", measured_at=BASE_TIME + timedelta(microseconds=1), celsius=36.6
    )
    judge_reading_for_site_drift(state, inside, POLICY)
    assert [s.event_id for s in state.readings["kiosk-1"]] == [inside.event_id]


def test_a_busy_sites_drift_record_holds_only_its_window() -> None:
    state = DriftState()
    for i in range(3000):  # two readings a second for 25 minutes
        reading = make_reading(kiosk_id=f"kiosk-{i % 4}", measured_at=BASE_TIME + i * SEC / 2)
        judge_reading_for_site_drift(state, reading, POLICY)
    record = json.dumps(state.to_dict())
    assert "seen" not in state.to_dict()
    assert record.count(state.readings["kiosk-0"][0].event_id) == 1


# The memo of local dates a person's state keeps (PersonState.local_dates) changes no
# judgement: a state carried from reading to reading judges as a fresh copy of it does,
# across sites in zones whose dates differ (Sao Paulo's day ends eleven hours after
# Shanghai's).
ZONED = SitePolicies(
    default=ScreeningPolicy(baseline_min_dates=2),
    sites={"site-sp": ScreeningPolicy(baseline_min_dates=2, timezone="America/Sao_Paulo")},
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 6 * 24),  # hours after BASE_TIME
            st.sampled_from(["site-1", "site-sp"]),
            st.sampled_from([36.0, 36.2, 36.5, 37.0, 37.1]),  # none a fever: all baseline
        ),
        max_size=30,
    )
)
def test_dates_kept_between_readings_judge_as_dates_made_afresh(
    steps: list[tuple[int, str, float]],
) -> None:
    kept, got, want = PersonState(), [], []
    for n, (hours, site, celsius) in enumerate(steps):
        reading = make_reading(
            event_id=f"e-{n}",
            person_id="p-1",
            site_id=site,
            measured_at=BASE_TIME + timedelta(hours=hours),
            celsius=celsius,
        )
        afresh = PersonState.from_dict(json.loads(json.dumps(kept.to_dict())))
        got += judge_reading_for_person(kept, reading, ZONED)[0]
        want += judge_reading_for_person(afresh, reading, ZONED)[0]
        assert kept.to_dict() == afresh.to_dict()
    assert [a.model_dump() for a in got] == [a.model_dump() for a in want]

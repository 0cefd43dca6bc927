"""Policy loading and state serialisation: what the shell and faust tables depend on."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from processors.screening import judge_reading_for_kiosk, judge_reading_for_person
from processors.screening_policy import PolicyError, ScreeningPolicy, SitePolicies, resolve
from processors.screening_state import (
    ClusterState,
    Confirmation,
    DriftState,
    GateState,
    KioskState,
    PersonState,
    Sample,
    SeenIds,
)
from tests.factories import BASE_TIME, make_reading


def test_defaults_are_the_2020_gate_rules() -> None:
    p = ScreeningPolicy()
    assert (p.valid_min_c, p.valid_max_c, p.fever_c) == (34.0, 42.0, 37.3)
    assert p.remeasure_window == timedelta(minutes=20)
    assert (p.fault_count, p.fault_window) == (3, timedelta(minutes=10))
    assert (p.baseline_days, p.baseline_min_dates, p.anomaly_delta_c) == (14, 3, 0.8)
    assert (p.drift_min_readings, p.drift_delta_c) == (20, 0.7)
    assert p.timezone == "Asia/Shanghai"


def test_local_date_turns_at_shanghai_midnight() -> None:
    p = ScreeningPolicy()
    assert p.local_date(datetime(2020, 2, 10, 15, 59, 59, tzinfo=UTC)) == date(2020, 2, 10)
    assert p.local_date(datetime(2020, 2, 10, 16, 0, 0, tzinfo=UTC)) == date(2020, 2, 11)


def test_from_mapping_overrides_default_then_sites() -> None:
    policies = SitePolicies.from_mapping(
        {
            "default": {"fever_c": 37.5, "remeasure_window": "15m", "fault_cooldown": 300},
            "sites": {"site-2": {"fever_c": 38, "timezone": "UTC"}},
        },
        timezone="Europe/Berlin",
    )
    assert policies.default.fever_c == 37.5
    assert policies.default.remeasure_window == timedelta(minutes=15)
    assert policies.default.fault_cooldown == timedelta(minutes=5)
    assert policies.default.timezone == "Europe/Berlin"
    site2 = resolve(policies, "site-2")
    assert (site2.fever_c, site2.timezone) == (38.0, "UTC")
    assert site2.remeasure_window == timedelta(minutes=15)  # inherited from the default
    assert resolve(policies, "elsewhere") is policies.default


def test_empty_policy_file_means_defaults() -> None:
    assert SitePolicies.from_mapping(None) == SitePolicies()


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"default": {"fevr_c": 37.5}}, "unknown policy field 'fevr_c'"),
        ({"defaults": {}}, "unknown policy section"),
        ({"default": {"fever_c": "hot"}}, "default.fever_c: expected float"),
        ({"default": {"fault_count": True}}, "expected int"),
        ({"default": {"remeasure_window": "soon"}}, "expected seconds"),
        ({"default": {"remeasure_window": 0}}, "positive duration"),
        ({"default": {"valid_min_c": 43.0}}, "valid_min_c must be below"),
        ({"default": {"timezone": "Mars/Olympus"}}, "unknown time zone"),
        ({"sites": {"s": {"drift_delta_c": -1}}}, "sites.s"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_bad_policy_values_name_the_field(obj: object, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        SitePolicies.from_mapping(obj)


def test_policy_is_frozen_and_comparable() -> None:
    p = ScreeningPolicy(fever_c=37.5)
    with pytest.raises(AttributeError):
        p.fever_c = 38.0  # type: ignore[misc]
    assert p == ScreeningPolicy(fever_c=37.5)
    assert p != ScreeningPolicy()


def roundtrip(state: object) -> object:
    obj = json.loads(json.dumps(state.to_dict()))  # type: ignore[attr-defined]
    return type(state).from_dict(obj)  # type: ignore[attr-defined]


def test_every_state_round_trips_through_json() -> None:
    sample = Sample.of(make_reading(celsius=37.6))
    later = Sample.of(make_reading(celsius=37.4, measured_at=BASE_TIME + timedelta(minutes=3)))
    seen = SeenIds()
    seen.check_and_add("e-1", BASE_TIME, timedelta(hours=1), 10)
    states = [
        KioskState([sample], BASE_TIME, seen),
        PersonState(sample, [(BASE_TIME, 36.5)], date(2020, 2, 9), seen),
        GateState({"site_id": "s", "starts_on": "2020-02-01", "ends_on": "2020-02-15"}, seen),
        ClusterState([Confirmation("site-1", "p-001", sample, later)], BASE_TIME, seen),
        DriftState({"kiosk-1": [sample]}, {"kiosk-1": BASE_TIME}, BASE_TIME),
        KioskState(),
        PersonState(),
    ]
    for state in states:
        assert roundtrip(state) == state


def test_round_tripped_state_keeps_judging_the_same() -> None:
    state = PersonState()
    judge_reading_for_person(state, make_reading(celsius=37.5), ScreeningPolicy())
    restored = PersonState.from_dict(json.loads(json.dumps(state.to_dict())))
    second = make_reading(celsius=37.6, measured_at=BASE_TIME + timedelta(minutes=10))
    assert judge_reading_for_person(
        restored, second, ScreeningPolicy()
    ) == judge_reading_for_person(state, second, ScreeningPolicy())
    assert restored == state


def test_seen_ids_forget_after_the_horizon_and_cap() -> None:
    seen = SeenIds()
    horizon = timedelta(hours=1)
    assert seen.check_and_add("a", BASE_TIME, horizon, 3)
    assert not seen.check_and_add("a", BASE_TIME, horizon, 3)
    assert seen.check_and_add("b", BASE_TIME + horizon, horizon, 3)
    assert "a" in seen  # exactly at the horizon: still remembered
    assert seen.check_and_add("c", BASE_TIME + horizon + timedelta(seconds=1), horizon, 3)
    assert "a" not in seen and "c" in seen
    for i in range(5):
        seen.check_and_add(f"x{i}", BASE_TIME + horizon * 1.5, horizon, 3)
    assert len(seen.ids) == 3


def test_kiosk_state_is_bounded_to_the_fault_window() -> None:
    state = KioskState()
    for i in range(50):
        reading = make_reading(celsius=30.0, measured_at=BASE_TIME + timedelta(minutes=i))
        judge_reading_for_kiosk(state, reading, ScreeningPolicy())
    assert len(state.invalid) == 10


def test_states_written_in_the_first_layout_still_load() -> None:
    """Tables written before the columnar layout hold {id: ISO time} and sample dicts."""
    sample = Sample.of(make_reading(celsius=36.9))
    seen = SeenIds()
    seen.check_and_add("e-1", BASE_TIME, timedelta(hours=1), 10)
    old_seen = {"newest": BASE_TIME.isoformat(), "ids": {"e-1": BASE_TIME.isoformat()}}
    assert SeenIds.from_dict(old_seen) == seen
    old_drift = {
        "readings": {"kiosk-1": [sample.to_dict()]},
        "last_drift_at": {},
        "seen": old_seen,
    }
    # The duplicate filter of those records has become the window itself; its newest time stays.
    assert DriftState.from_dict(old_drift) == DriftState({"kiosk-1": [sample]}, {}, BASE_TIME)
    # The new layout is columns: no per-sample objects in the table value.
    assert set(DriftState({"kiosk-1": [sample]}).to_dict()["columns"]["kiosk-1"]) == {
        "event_id",
        "time_us",
        "celsius",
        "site_id",
        "person_id",
    }

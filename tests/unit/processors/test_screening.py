"""Gate and fever rules at their boundaries: validity, faults, suspect/settle, gates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import pytest

from processors.screener import Screener
from processors.screening import (
    Verdict,
    apply_quarantine,
    expire_pending,
    judge_reading_for_kiosk,
    judge_reading_for_person,
    judge_scan,
    judge_scan_for_gate,
)
from processors.screening_policy import ScreeningPolicy, SitePolicies
from processors.screening_state import GateState, KioskState, PersonState
from scantrail.contract import Alert, QuarantineRecord, ScanEvent, TemperatureReading
from tests.factories import BASE_TIME, make_quarantine, make_reading, make_scan

MIN = timedelta(minutes=1)
SEC = timedelta(seconds=1)
POLICY = ScreeningPolicy()
FORGED = "forged"  # a variable, so ruff does not take a pass status for a password


def screen(
    events: Sequence[ScanEvent | TemperatureReading | QuarantineRecord],
    policy: ScreeningPolicy | SitePolicies | None = None,
) -> list[Alert]:
    return Screener(policy).run(events)


def kinds(alerts: list[Alert]) -> list[str]:
    return [a.kind for a in alerts]


def at(offset: timedelta, **kw: object) -> TemperatureReading:
    return make_reading(measured_at=BASE_TIME + offset, **kw)


# --- validity -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("celsius", "suspected"),
    [(37.29, False), (37.3, True), (42.0, True), (42.01, False), (45.0, False)],
)
def test_fever_threshold_and_upper_validity_bound(celsius: float, suspected: bool) -> None:
    state = PersonState()
    alerts, _ = judge_reading_for_person(state, make_reading(celsius=celsius), POLICY)
    assert kinds(alerts) == (["fever_suspected"] if suspected else [])
    assert (state.pending is not None) is suspected


@pytest.mark.parametrize(("celsius", "settles"), [(34.0, True), (33.99, False), (42.01, False)])
def test_only_valid_readings_settle_a_suspicion(celsius: float, settles: bool) -> None:
    first = at(timedelta(0), celsius=38.0)
    second = at(5 * MIN, celsius=celsius)
    alerts = screen([first, second])
    if settles:
        assert kinds(alerts) == ["fever_suspected", "fever_cleared"]
    else:
        assert kinds(alerts) == ["fever_suspected", "fever_unconfirmed"]


def test_invalid_reading_never_counts_as_fever_even_without_person() -> None:
    alerts = screen([at(timedelta(0), celsius=42.5, person_id=None), at(MIN, celsius=43.0)])
    assert alerts == []


# --- sensor_fault -------------------------------------------------------------------------


def invalid(offset: timedelta, kiosk: str = "kiosk-1") -> TemperatureReading:
    return at(offset, celsius=30.0, kiosk_id=kiosk)


def test_three_invalid_within_ten_minutes_is_a_sensor_fault() -> None:
    readings = [invalid(timedelta(0)), invalid(5 * MIN), invalid(10 * MIN - SEC)]
    alerts = screen(readings)
    assert kinds(alerts) == ["sensor_fault"]
    fault = alerts[0]
    assert fault.severity == "warning"
    assert fault.person_id is None
    assert fault.kiosk_id == "kiosk-1"
    assert fault.event_time == BASE_TIME + 10 * MIN - SEC
    assert fault.evidence == sorted(r.event_id for r in readings)
    assert fault.detail["invalid_readings"] == 3


def test_reading_exactly_ten_minutes_old_is_outside_the_fault_window() -> None:
    assert screen([invalid(timedelta(0)), invalid(5 * MIN), invalid(10 * MIN)]) == []


def test_invalid_readings_are_counted_per_kiosk() -> None:
    readings = [invalid(timedelta(0)), invalid(MIN), invalid(2 * MIN, kiosk="kiosk-2")]
    assert screen(readings) == []


def test_sensor_fault_cooldown_ends_after_exactly_ten_minutes() -> None:
    readings = [invalid(m * MIN) for m in (0, 1, 2, 3, 4)]  # fault at 2 min
    readings.append(invalid(12 * MIN - SEC))  # window holds 3, 4, 11:59 but still cooling down
    last = invalid(12 * MIN)
    readings.append(last)
    alerts = screen(readings)
    assert kinds(alerts) == ["sensor_fault", "sensor_fault"]
    assert alerts[0].event_time == BASE_TIME + 2 * MIN
    assert alerts[1].event_time == BASE_TIME + 12 * MIN
    assert last.event_id in alerts[1].evidence
    assert len(alerts[1].evidence) == 4


def test_valid_readings_do_not_reset_or_feed_the_fault_window() -> None:
    state = KioskState()
    out = []
    for i, c in enumerate([30.0, 36.5, 36.6, 30.0]):
        out += judge_reading_for_kiosk(state, at(i * MIN, celsius=c), POLICY)
    assert out == []
    assert len(state.invalid) == 2


# --- suspect and settle -------------------------------------------------------------------


def test_suspicion_is_a_warning_with_the_reading_as_evidence() -> None:
    reading = make_reading(celsius=37.3)
    [alert] = screen([reading, at(MIN, celsius=36.6)])[:1]
    assert alert.kind == "fever_suspected"
    assert alert.severity == "warning"
    assert alert.person_id == "p-001"
    assert alert.evidence == [reading.event_id]
    assert alert.raised_at == alert.event_time == reading.measured_at
    assert alert.detail["celsius"] == 37.3


def test_remeasure_exactly_twenty_minutes_later_confirms() -> None:
    first, second = at(timedelta(0), celsius=37.5), at(20 * MIN, celsius=37.3, kiosk_id="kiosk-2")
    alerts = screen([first, second])
    assert kinds(alerts) == ["fever_suspected", "fever_confirmed"]
    confirmed = alerts[1]
    assert confirmed.severity == "critical"
    assert confirmed.evidence == sorted([first.event_id, second.event_id])
    assert confirmed.event_time == second.measured_at
    assert confirmed.kiosk_id == "kiosk-2"
    assert confirmed.detail["first_c"] == 37.5
    assert confirmed.detail["second_c"] == 37.3


def test_remeasure_below_threshold_clears() -> None:
    first, second = at(timedelta(0), celsius=37.5), at(3 * MIN, celsius=37.29)
    alerts = screen([first, second])
    assert kinds(alerts) == ["fever_suspected", "fever_cleared"]
    assert alerts[1].severity == "info"
    assert alerts[1].evidence == sorted([first.event_id, second.event_id])


def test_remeasure_one_second_too_late_is_unconfirmed_then_judged_afresh() -> None:
    first, second = at(timedelta(0), celsius=37.5), at(20 * MIN + SEC, celsius=37.6)
    alerts = screen([first, second])
    assert kinds(alerts) == ["fever_suspected", "fever_unconfirmed", "fever_suspected"] + [
        "fever_unconfirmed"
    ]
    unconfirmed = alerts[1]
    assert unconfirmed.severity == "critical"
    assert unconfirmed.evidence == [first.event_id]
    assert unconfirmed.event_time == BASE_TIME + 20 * MIN
    assert alerts[2].evidence == [second.event_id]
    assert alerts[3].event_time == second.measured_at + 20 * MIN


def test_late_normal_reading_does_not_settle_and_starts_nothing() -> None:
    alerts = screen([at(timedelta(0), celsius=37.5), at(21 * MIN, celsius=36.5)])
    assert kinds(alerts) == ["fever_suspected", "fever_unconfirmed"]


def test_without_any_remeasure_finish_reports_unconfirmed() -> None:
    screener = Screener()
    reading = make_reading(celsius=38.2)
    assert kinds(screener.feed(reading)) == ["fever_suspected"]
    [alert] = screener.finish()
    assert alert.kind == "fever_unconfirmed"
    assert alert.event_time == reading.measured_at + 20 * MIN
    assert screener.finish() == []


def test_expire_pending_fires_only_after_the_window() -> None:
    state = PersonState()
    reading = make_reading(celsius=37.8)
    judge_reading_for_person(state, reading, POLICY)
    assert expire_pending(state, reading.measured_at + 20 * MIN, POLICY) == []
    [alert] = expire_pending(
        state, reading.measured_at + 20 * MIN + timedelta(microseconds=1), POLICY
    )
    assert alert.kind == "fever_unconfirmed"
    assert state.pending is None


def test_a_later_event_of_anyone_acts_as_watermark_for_unconfirmed() -> None:
    screener = Screener()
    screener.feed(make_reading(celsius=37.8))
    assert screener.feed(make_scan(scanned_at=BASE_TIME + 20 * MIN)) == []
    later = screener.feed(make_scan(person_id="p-999", scanned_at=BASE_TIME + 20 * MIN + SEC))
    assert kinds(later) == ["fever_unconfirmed"]


def test_another_persons_reading_does_not_settle() -> None:
    alerts = screen([at(timedelta(0), celsius=37.5), at(MIN, celsius=37.5, person_id="p-002")])
    assert kinds(alerts).count("fever_suspected") == 2
    assert kinds(alerts).count("fever_unconfirmed") == 2
    assert "fever_confirmed" not in kinds(alerts)


def test_after_confirmation_a_new_fever_starts_a_new_suspicion() -> None:
    readings = [at(m * MIN, celsius=37.6) for m in (0, 5, 10)]
    state = PersonState()
    out: list[str] = []
    confirmations = []
    for r in readings:
        alerts, found = judge_reading_for_person(state, r, POLICY)
        out += kinds(alerts)
        confirmations += found
    assert out == ["fever_suspected", "fever_confirmed", "fever_suspected"]
    assert len(confirmations) == 1
    assert confirmations[0].second.event_id == readings[1].event_id
    assert state.pending is not None and state.pending.event_id == readings[2].event_id


def test_same_instant_remeasure_settles() -> None:
    alerts = screen([make_reading(event_id="a", celsius=37.5), make_reading(event_id="b")])
    assert kinds(alerts) == ["fever_cleared", "fever_suspected"]


def test_duplicate_reading_is_ignored_and_does_not_settle() -> None:
    first = make_reading(celsius=37.5)
    alerts = screen([first, first, first.model_copy()])
    assert kinds(alerts) == ["fever_suspected", "fever_unconfirmed"]


# --- nobody known -------------------------------------------------------------------------


@pytest.mark.parametrize(("celsius", "raised"), [(37.29, False), (37.3, True), (42.01, False)])
def test_fever_without_person_is_unidentified_at_once(celsius: float, raised: bool) -> None:
    reading = make_reading(celsius=celsius, person_id=None)
    alerts = judge_reading_for_kiosk(KioskState(), reading, POLICY)
    if raised:
        [alert] = alerts
        assert (alert.kind, alert.severity) == ("fever_unidentified", "critical")
        assert alert.kiosk_id == "kiosk-1" and alert.person_id is None
        assert alert.event_time == reading.measured_at
    else:
        assert alerts == []


def test_person_shard_ignores_readings_without_person() -> None:
    state = PersonState()
    assert judge_reading_for_person(state, make_reading(person_id=None, celsius=39.0), POLICY) == (
        [],
        [],
    )
    assert state.history == []


# --- quarantine ---------------------------------------------------------------------------


def out_scan_at(when: datetime, **kw: object) -> ScanEvent:
    return make_scan(direction="out", scanned_at=when, **kw)


def local(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=BASE_TIME.tzinfo)


@pytest.mark.parametrize(
    ("when", "breach"),
    [
        (local(2020, 2, 9, 23, 59, 59), False),
        (local(2020, 2, 10), True),
        (local(2020, 2, 14, 23, 59, 59), True),
        (local(2020, 2, 15), False),
        # midnight in Shanghai is 16:00 UTC
        (datetime(2020, 2, 14, 15, 59, 59, tzinfo=UTC), True),
        (datetime(2020, 2, 14, 16, 0, 0, tzinfo=UTC), False),
    ],
)
def test_quarantine_covers_starts_on_up_to_but_not_ends_on(when: datetime, breach: bool) -> None:
    record = make_quarantine(starts_on=date(2020, 2, 10), ends_on=date(2020, 2, 15))
    scan = out_scan_at(when)
    alerts = screen([scan, record])  # record given after the scan still applies first
    if breach:
        [alert] = alerts
        assert (alert.kind, alert.severity) == ("quarantine_breach", "critical")
        assert alert.evidence == [scan.event_id]
        assert alert.person_id == "p-001"
        assert alert.detail["starts_on"] == "2020-02-10"
    else:
        assert alerts == []


def test_quarantine_local_date_follows_the_policy_time_zone() -> None:
    record = make_quarantine(starts_on=date(2020, 2, 10), ends_on=date(2020, 2, 15))
    scan = out_scan_at(datetime(2020, 2, 14, 16, 0, 0, tzinfo=UTC))
    assert kinds(screen([record, scan], ScreeningPolicy(timezone="UTC"))) == ["quarantine_breach"]


def test_walking_in_is_no_breach_and_other_people_are_not_affected() -> None:
    record = make_quarantine()
    scans = [make_scan(direction="in"), out_scan_at(BASE_TIME, person_id="p-002")]
    assert screen([record, *scans]) == []


def test_latest_quarantine_record_wins() -> None:
    state = GateState()
    apply_quarantine(state, make_quarantine())
    apply_quarantine(state, make_quarantine(starts_on=date(2020, 1, 1), ends_on=date(2020, 1, 15)))
    assert judge_scan(state, out_scan_at(BASE_TIME), POLICY) == []


def test_no_record_no_breach() -> None:
    assert judge_scan(GateState(), out_scan_at(BASE_TIME), POLICY) == []


def test_an_order_that_arrives_after_the_out_scans_it_covers_raises_their_breaches() -> None:
    """Live, the order may be read after the scans (another topic), or published late."""
    record = make_quarantine(starts_on=date(2020, 2, 10), ends_on=date(2020, 2, 15))
    covered = out_scan_at(local(2020, 2, 11, 9), event_id="scan-covered")
    before = out_scan_at(local(2020, 2, 9, 9), event_id="scan-before")
    walking_in = make_scan(direction="in", scanned_at=local(2020, 2, 11, 10), event_id="scan-in")
    state = GateState()
    for scan in (before, covered, walking_in):
        assert judge_scan(state, scan, POLICY) == []
    late = apply_quarantine(state, record, POLICY)
    # Exactly what judging the scans after the order gives, alert ids included.
    assert late == screen([record, before, covered, walking_in])
    [alert] = late
    assert (alert.kind, alert.evidence, alert.person_id) == (
        "quarantine_breach",
        ["scan-covered"],
        "p-001",
    )
    # Raised once: the same order again (a re-delivery) or a longer one raises nothing more.
    assert apply_quarantine(state, record, POLICY) == []
    longer = make_quarantine(starts_on=date(2020, 2, 1), ends_on=date(2020, 2, 15))
    assert kinds(apply_quarantine(state, longer, POLICY)) == ["quarantine_breach"]  # the 9th
    assert apply_quarantine(state, longer, POLICY) == []


def test_a_scan_says_when_the_gate_state_must_be_written() -> None:
    state = GateState()
    assert judge_scan_for_gate(state, make_scan(direction="in"), POLICY).changed is False
    kept = judge_scan_for_gate(state, out_scan_at(BASE_TIME, event_id="out-1"), POLICY)
    assert kept == Verdict([], True) and [o.event_id for o in state.outs] == ["out-1"]
    again = judge_scan_for_gate(state, out_scan_at(BASE_TIME, event_id="out-1"), POLICY)
    assert again == Verdict([], False)  # a duplicate changes nothing
    assert GateState.from_dict(state.to_dict()) == state


def test_out_scans_are_kept_for_the_late_quarantine_window_only() -> None:
    policy = ScreeningPolicy(late_quarantine_window=timedelta(days=2))
    state = GateState()
    for day in (1, 2, 3, 4):
        judge_scan(state, out_scan_at(local(2020, 2, day, 9), event_id=f"out-{day}"), policy)
    assert [o.event_id for o in state.outs] == ["out-3", "out-4"]
    record = make_quarantine(starts_on=date(2020, 2, 1), ends_on=date(2020, 2, 15))
    late = apply_quarantine(state, record, policy)
    assert [a.evidence for a in late] == [["out-3"], ["out-4"]]
    assert state.outs == []


# --- passes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("valid", []),
        ("unknown", []),
        ("forged", [("pass_forged", "warning")]),
        ("revoked", [("pass_refused", "info")]),
        ("expired", [("pass_refused", "info")]),
    ],
)
def test_pass_statuses(status: str, expected: list[tuple[str, str]]) -> None:
    scan = make_scan(pass_status=status)
    alerts = judge_scan(GateState(), scan, POLICY)
    assert [(a.kind, a.severity) for a in alerts] == expected
    for alert in alerts:
        assert alert.evidence == [scan.event_id]
        assert alert.detail["pass_status"] == status


def test_forged_pass_of_quarantined_person_walking_out_raises_both() -> None:
    alerts = screen([make_quarantine(), out_scan_at(BASE_TIME, pass_status=FORGED)])
    assert sorted(kinds(alerts)) == ["pass_forged", "quarantine_breach"]


def test_duplicate_scan_raises_once() -> None:
    scan = make_scan(pass_status=FORGED)
    assert kinds(screen([scan, scan])) == ["pass_forged"]


# --- per-site policy ----------------------------------------------------------------------


def test_site_override_changes_threshold_only_there() -> None:
    policies = SitePolicies(sites={"site-2": ScreeningPolicy(fever_c=37.5)})
    here = make_reading(celsius=37.4, person_id="p-1")
    there = make_reading(celsius=37.4, person_id="p-2", site_id="site-2")
    assert [
        a.person_id for a in screen([here, there], policies) if a.kind == "fever_suspected"
    ] == ["p-1"]

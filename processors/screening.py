"""Gate and fever rules: validity, suspect → re-measure, unidentified, quarantine, passes.

A forehead reading is a screening result, not a diagnosis: a reading of
37.3 °C or more only makes a person *suspected* until a second valid reading
within 20 minutes settles it (IEC 80601-2-59 and the 2020 practice at Chinese
compound gates). Readings outside 34–42 °C are placement or sensor errors; they
never count as fever or as normal, but many of them at one kiosk are a
``sensor_fault`` an officer must fix.

Step functions, one per state shard (see :mod:`processors.screening_state` for
which Kafka key each state needs). They change the state in place, return the
alerts, and are pure: no I/O, no clock; time is the events' own time.

* :func:`judge_reading_for_kiosk` – ``KioskState`` keyed by ``kiosk_id``, the
  native key of ``scantrail.temperatures``: ``sensor_fault``,
  ``fever_unidentified``.
* :func:`judge_reading_for_person` – ``PersonState`` keyed by ``person_id``
  (repartition temperatures by ``person_id``): ``fever_suspected``,
  ``fever_confirmed``/``fever_cleared``/``fever_unconfirmed`` and the personal
  baseline. Returns :class:`Confirmation` values to forward, keyed by
  ``site_id``, to :func:`processors.baselines.judge_confirmation_for_site`.
* :func:`expire_pending` – the same shard's timer: call it with a watermark
  (event time, never the wall clock) to raise ``fever_unconfirmed`` for
  suspicions nobody re-measured.
* :func:`apply_quarantine` and :func:`judge_scan` – ``GateState`` keyed by
  ``person_id``, the native key of ``scantrail.scans`` and
  ``scantrail.quarantine``: ``quarantine_breach``, ``pass_forged``,
  ``pass_refused``, ``health_code_yellow``/``health_code_red``.
* :func:`judge_outing` – ``HouseholdState`` keyed by ``household_id`` (scans
  repartitioned by household): ``outing_quota_exceeded``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from processors.baselines import judge_baseline
from processors.screening_policy import PolicyLike, ScreeningPolicy, resolve
from processors.screening_state import (
    Confirmation,
    GateState,
    HouseholdState,
    KioskState,
    Outing,
    OutScan,
    PersonState,
    Sample,
    SeenIds,
    make_alert,
)
from scantrail.contract import (
    Alert,
    QuarantineRecord,
    ScanEvent,
    Severity,
    TemperatureReading,
    alert_id,
)

__all__ = [
    "apply_quarantine",
    "expire_pending",
    "judge_reading_for_kiosk",
    "judge_kiosk",
    "Verdict",
    "judge_reading_for_person",
    "judge_sample_for_person",
    "judge_outing",
    "judge_scan",
    "judge_scan_for_gate",
    "pending_deadline",
]


def _is_new(seen: SeenIds, event_id: str, when: datetime, policy: ScreeningPolicy) -> bool:
    return seen.check_and_add(event_id, when, policy.seen_horizon, policy.seen_max)


# --- kiosk shard ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What a rule decided: its alerts, and whether the state changed in a way that must be kept.

    ``changed`` is False when the only change is to the duplicate filter and
    no alert was raised: a restart that forgets it judges the event again and
    raises nothing again, so the shell may leave that write for later.
    """

    alerts: list[Alert]
    changed: bool


def judge_kiosk(state: KioskState, reading: TemperatureReading, policy: PolicyLike) -> Verdict:
    """Validity per kiosk (``sensor_fault``) and fevers nobody can be named for."""
    p = resolve(policy, reading.site_id)
    t = reading.measured_at
    if not _is_new(state.seen, reading.event_id, t, p):
        return Verdict([], False)
    if p.is_valid(reading.celsius):
        if reading.person_id is None and reading.celsius >= p.fever_c:
            return Verdict([_unidentified(reading, p)], True)
        return Verdict([], False)
    state.invalid.append(Sample.of(reading))
    newest = max(s.time for s in state.invalid)
    state.invalid = [s for s in state.invalid if s.time > newest - p.fault_window]
    recent = [s for s in state.invalid if t - p.fault_window < s.time <= t]
    if len(recent) < p.fault_count:
        return Verdict([], True)
    if state.last_fault_at is not None and t - state.last_fault_at < p.fault_cooldown:
        return Verdict([], True)
    state.last_fault_at = t
    return Verdict([_sensor_fault(reading, recent, p)], True)


def judge_reading_for_kiosk(
    state: KioskState, reading: TemperatureReading, policy: PolicyLike
) -> list[Alert]:
    """The alerts of :func:`judge_kiosk`."""
    return judge_kiosk(state, reading, policy).alerts


def _sensor_fault(reading: TemperatureReading, recent: list[Sample], p: ScreeningPolicy) -> Alert:
    return make_alert(
        "sensor_fault",
        "warning",
        site_id=reading.site_id,
        kiosk_id=reading.kiosk_id,
        event_time=reading.measured_at,
        evidence=[s.event_id for s in recent],
        detail={
            "invalid_readings": len(recent),
            "celsius": [s.celsius for s in sorted(recent, key=lambda s: (s.time, s.event_id))],
            "valid_range_c": [p.valid_min_c, p.valid_max_c],
            "min_count": p.fault_count,
            "window_s": p.fault_window.total_seconds(),
        },
    )


def _unidentified(reading: TemperatureReading, p: ScreeningPolicy) -> Alert:
    return make_alert(
        "fever_unidentified",
        "critical",
        site_id=reading.site_id,
        kiosk_id=reading.kiosk_id,
        event_time=reading.measured_at,
        evidence=[reading.event_id],
        detail={"celsius": reading.celsius, "threshold_c": p.fever_c},
    )


# --- person shard --------------------------------------------------------------------------


def judge_reading_for_person(
    state: PersonState, reading: TemperatureReading, policy: PolicyLike
) -> tuple[list[Alert], list[Confirmation]]:
    """:func:`judge_sample_for_person` of the reading's :class:`Sample`."""
    return judge_sample_for_person(state, Sample.of(reading), policy)


def judge_sample_for_person(
    state: PersonState, sample: Sample, policy: PolicyLike
) -> tuple[list[Alert], list[Confirmation]]:
    """Suspect, settle and baseline for one person's reading.

    Judged on the part of the reading a person's state keeps: the live person
    stage receives only that (:mod:`processors.hop_records`), the offline
    screener the whole reading (:func:`judge_reading_for_person`).

    A reading without ``person_id`` belongs to no person shard and is ignored.
    A reading older than the pending suspicion (late on Kafka) settles nothing;
    it only joins the baseline history.
    """
    person_id = sample.person_id
    if person_id is None:
        return [], []
    p = resolve(policy, sample.site_id)
    t = sample.time
    if not _is_new(state.seen, sample.event_id, t, p) or not p.is_valid(sample.celsius):
        return [], []
    alerts = expire_pending(state, t, policy)
    confirmations: list[Confirmation] = []
    fever = sample.celsius >= p.fever_c
    pending = state.pending
    if pending is not None and t >= pending.time:
        state.pending = None
        alerts.append(_settle(pending, sample, fever, p))
        if fever:
            confirmations.append(Confirmation(sample.site_id, person_id, pending, sample))
    elif pending is None and fever:
        state.pending = sample
        alerts.append(
            make_alert(
                "fever_suspected",
                "warning",
                site_id=sample.site_id,
                kiosk_id=sample.kiosk_id,
                person_id=person_id,
                event_time=t,
                evidence=[sample.event_id],
                detail={
                    "celsius": sample.celsius,
                    "threshold_c": p.fever_c,
                    "remeasure_within_s": p.remeasure_window.total_seconds(),
                },
            )
        )
    if not fever:
        alerts.extend(judge_baseline(state, sample, p))
    _remember(state, sample, p)
    return alerts, confirmations


def _settle(pending: Sample, second: Sample, fever: bool, p: ScreeningPolicy) -> Alert:
    return make_alert(
        "fever_confirmed" if fever else "fever_cleared",
        "critical" if fever else "info",
        site_id=second.site_id,
        kiosk_id=second.kiosk_id,
        person_id=second.person_id,
        event_time=second.time,
        evidence=[pending.event_id, second.event_id],
        detail={
            "first_c": pending.celsius,
            "second_c": second.celsius,
            "threshold_c": p.fever_c,
            "seconds_between": (second.time - pending.time).total_seconds(),
            "first_kiosk_id": pending.kiosk_id,
        },
    )


def _remember(state: PersonState, sample: Sample, p: ScreeningPolicy) -> None:
    """Add to the baseline history and drop what is older than the baseline span."""
    state.history.append((sample.time, sample.celsius))
    # The cutoff once, not per entry: this runs on every reading of the person.
    cutoff = max(t for t, _ in state.history) - p.baseline_span
    state.history = [(t, c) for t, c in state.history if t >= cutoff]


def expire_pending(state: PersonState, now: datetime, policy: PolicyLike) -> list[Alert]:
    """Raise ``fever_unconfirmed`` if the pending suspicion's window closed before ``now``.

    ``now`` is an event time or watermark. A re-measure exactly at the end of
    the window still settles, so the window closes only when ``now`` is past it.
    The alert's event time is the end of the window, whenever this runs.
    """
    pending = state.pending
    if pending is None:
        return []
    p = resolve(policy, pending.site_id)
    deadline = pending.time + p.remeasure_window
    if now <= deadline:
        return []
    state.pending = None
    return [
        make_alert(
            "fever_unconfirmed",
            "critical",
            site_id=pending.site_id,
            kiosk_id=pending.kiosk_id,
            person_id=pending.person_id,
            event_time=deadline,
            evidence=[pending.event_id],
            detail={
                "celsius": pending.celsius,
                "threshold_c": p.fever_c,
                "remeasure_window_s": p.remeasure_window.total_seconds(),
                "suspected_at": pending.time.isoformat(),
            },
        )
    ]


def pending_deadline(state: PersonState, policy: PolicyLike) -> datetime | None:
    """When :func:`expire_pending` would fire (for scheduling a timer), if anything is pending."""
    if state.pending is None:
        return None
    return state.pending.time + resolve(policy, state.pending.site_id).remeasure_window


# --- gate shard (scans and quarantine, keyed by person) -------------------------------------


def apply_quarantine(
    state: GateState, record: QuarantineRecord, policy: PolicyLike | None = None
) -> list[Alert]:
    """Remember the person's latest quarantine record (the compacted topic's last value).

    With ``policy``, the person's kept ``out`` scans that the record covers
    raise their ``quarantine_breach`` now, once each: the order came after
    them (see :class:`~processors.screening_state.GateState`).
    """
    state.quarantine = {
        "site_id": record.site_id,
        "starts_on": record.starts_on.isoformat(),
        "ends_on": record.ends_on.isoformat(),
    }
    if policy is None or not state.outs:
        return []
    alerts: list[Alert] = []
    kept: list[OutScan] = []
    for out in state.outs:
        breach = _breach(state.quarantine, out, record.person_id, resolve(policy, out.site_id))
        if breach is None:
            kept.append(out)
        else:
            alerts.append(breach)
    state.outs = kept
    return alerts


MAX_KEPT_OUTS = 500
"""Bound on a person's kept ``out`` scans (a fortnight of outings is a few dozen)."""


def _breach(
    record: dict[str, Any], out: OutScan, person_id: str, p: ScreeningPolicy
) -> Alert | None:
    """``quarantine_breach`` if ``record`` covers the local date of ``out``."""
    today = p.local_date(out.time)
    starts = date.fromisoformat(record["starts_on"])
    ends = date.fromisoformat(record["ends_on"])
    if not starts <= today < ends:
        return None
    detail = {
        "local_date": today.isoformat(),
        "starts_on": record["starts_on"],
        "ends_on": record["ends_on"],
        "quarantine_site_id": record["site_id"],
        "days_left": (ends - today).days,
    }
    return make_alert(
        "quarantine_breach",
        "critical",
        site_id=out.site_id,
        kiosk_id=out.kiosk_id,
        person_id=person_id,
        event_time=out.time,
        evidence=[out.event_id],
        detail=detail,
    )


def _keep_out(state: GateState, out: OutScan, p: ScreeningPolicy) -> None:
    """Keep ``out`` for an order that may still come; forget what is past the window."""
    since = out.time - p.late_quarantine_window
    outs = [o for o in state.outs if o.time > since]
    outs.append(out)
    outs.sort(key=lambda o: o.time)
    state.outs = outs[-MAX_KEPT_OUTS:]


# A forged pass is someone trying to get in; a revoked or expired one is routine.
_PASS_ALERTS: dict[str, tuple[str, Severity]] = {
    "forged": ("pass_forged", "warning"),
    "revoked": ("pass_refused", "info"),
    "expired": ("pass_refused", "info"),
}


def judge_scan(state: GateState, scan: ScanEvent, policy: PolicyLike) -> list[Alert]:
    """Pass problems and quarantined people walking out."""
    return judge_scan_for_gate(state, scan, policy).alerts


def judge_scan_for_gate(state: GateState, scan: ScanEvent, policy: PolicyLike) -> Verdict:
    """:func:`judge_scan`, saying whether the state must be written.

    It must when an alert was raised or an ``out`` scan was kept for a
    quarantine order that may come later; a scan that did neither changed
    only the duplicate filter.
    """
    p = resolve(policy, scan.site_id)
    if not _is_new(state.seen, scan.event_id, scan.scanned_at, p):
        return Verdict([], False)
    alerts: list[Alert] = []
    kept = False
    refusal = _PASS_ALERTS.get(scan.pass_status)
    if refusal is not None:
        alerts.append(_scan_alert(*refusal, scan, _pass_detail(scan)))
    if scan.direction == "out":
        out = OutScan(scan.event_id, scan.scanned_at, scan.site_id, scan.kiosk_id)
        record = state.quarantine
        breach = None if record is None else _breach(record, out, scan.person_id, p)
        if breach is None:
            _keep_out(state, out, p)
            kept = True
        else:
            alerts.append(breach)
    colour = scan.health_code
    if colour is not None and colour != "green" and colour in p.health_codes_alerted:
        kind, severity = _HEALTH_ALERTS[colour]
        alerts.append(_scan_alert(kind, severity, scan, _health_detail(scan)))
    return Verdict(alerts, bool(alerts) or kept)


# Yellow: up to 7 days of home isolation; red: 14 days, or a test (field notes).
_HEALTH_ALERTS: dict[str, tuple[str, Severity]] = {
    "yellow": ("health_code_yellow", "warning"),
    "red": ("health_code_red", "critical"),
}


def _health_detail(scan: ScanEvent) -> dict[str, Any]:
    return {
        "health_code": scan.health_code,
        "direction": scan.direction,
        "pass_id": scan.pass_id,
        "pass_status": scan.pass_status,
        "venue_kind": scan.venue_kind,
        "advice": "home isolation up to 7 days"
        if scan.health_code == "yellow"
        else "home quarantine 14 days or a test",
    }


# --- household shard (out scans keyed by household) ---------------------------------------


def _outing_identity(event_id: str, alert: Alert) -> Alert:
    return alert.model_copy(update={"alert_id": alert_id(alert.kind, [event_id])})


def counts_for_outing(scan: ScanEvent, policy: PolicyLike) -> bool:
    """Whether the household rule looks at this scan at all.

    Only ``out`` scans of a valid pass that names its household count; a
    refused pass did not go out, an old event without ``household_id`` is
    skipped, and exempt pass kinds (a worker's pass) are neither counted nor
    judged.
    """
    if scan.direction != "out" or scan.household_id is None or scan.pass_status != "valid":
        return False
    p = resolve(policy, scan.site_id)
    return scan.pass_kind is None or scan.pass_kind not in p.outing_exempt_pass_kinds


def judge_outing(state: HouseholdState, scan: ScanEvent, policy: PolicyLike) -> list[Alert]:
    """One person per household every two days.

    An ``out`` scan at time t raises ``outing_quota_exceeded`` when the
    distinct persons of its household with an ``out`` scan in (t − window, t],
    this one included, are more than the quota. Evidence: the ``out`` scans
    counted. A scan arriving late is counted for the later scans it falls
    before, and each scan raises the alert at most once.
    """
    if not counts_for_outing(scan, policy):
        return []
    p = resolve(policy, scan.site_id)
    if any(o.event_id == scan.event_id for o in state.outings):
        return []  # a re-delivery
    state.outings.append(
        Outing(scan.event_id, scan.scanned_at, scan.person_id, scan.site_id, scan.kiosk_id)
    )
    state.outings.sort(key=lambda o: (o.time, o.event_id))
    alerts: list[Alert] = []
    for outing in state.outings:
        if outing.time < scan.scanned_at or outing.event_id in state.alerted:
            continue  # only this scan and later ones can change their count
        if not outing.time - p.outing_window < scan.scanned_at:
            continue
        counted = [
            o for o in state.outings if outing.time - p.outing_window < o.time <= outing.time
        ]
        persons = sorted({o.person_id for o in counted})
        if len(persons) <= p.outing_quota:
            continue
        state.alerted.append(outing.event_id)
        # Identity: the out scan that broke the quota, not the whole evidence.
        # The live shard judges scans in event-time order behind a watermark
        # (processors.live_households), but one arriving behind it (a kiosk
        # catching up after an outage) can be missing from an alert already
        # raised; the alert is still the same alert (same id) as offline.
        alerts.append(
            _outing_identity(
                outing.event_id,
                make_alert(
                    "outing_quota_exceeded",
                    "info",
                    site_id=outing.site_id,
                    kiosk_id=outing.kiosk_id,
                    person_id=outing.person_id,
                    event_time=outing.time,
                    evidence=[o.event_id for o in counted],
                    detail={
                        "household_id": scan.household_id,
                        "persons": persons,
                        "quota": p.outing_quota,
                        "window_h": p.outing_window.total_seconds() / 3600,
                        "outings": [
                            {
                                "person_id": o.person_id,
                                "at": o.time.isoformat(),
                                "event_id": o.event_id,
                            }
                            for o in counted
                        ],
                    },
                ),
            )
        )
    newest = state.outings[-1].time
    state.outings = [o for o in state.outings if o.time > newest - p.outing_window * 2]
    kept = {o.event_id for o in state.outings}
    state.alerted = [i for i in state.alerted if i in kept]
    return alerts


def _scan_alert(kind: str, severity: Severity, scan: ScanEvent, detail: dict[str, Any]) -> Alert:
    return make_alert(
        kind,
        severity,
        site_id=scan.site_id,
        kiosk_id=scan.kiosk_id,
        person_id=scan.person_id,
        event_time=scan.scanned_at,
        evidence=[scan.event_id],
        detail=detail,
    )


def _pass_detail(scan: ScanEvent) -> dict[str, Any]:
    return {
        "pass_status": scan.pass_status,
        "pass_id": scan.pass_id,
        "direction": scan.direction,
        "health_code": scan.health_code,
    }

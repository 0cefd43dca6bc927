"""Rules that compare a reading with others: personal baseline, site clusters, kiosk drift.

* Personal baseline: a person's usual forehead reading differs from the
  population's; a rise of 0.8 °C over their own median of earlier days can
  flag a fever before it crosses 37.3 °C (continuous-temperature studies
  flagged COVID days before testing). Info only: it asks an officer to look.
* Cluster: several people confirmed with fever at one site within a day is
  what the district "big data" screens flagged on their own in 2020.
* Drift: a whole kiosk reading high or low together against the other kiosks
  of its site is a sensor or reference problem, not an outbreak.

Step functions (pure; they change the state in place and return alerts):

* :func:`judge_baseline` – part of the person shard (``PersonState``, key
  ``person_id``); called by :func:`processors.screening.judge_reading_for_person`.
* :func:`judge_confirmation_for_site` – ``ClusterState`` keyed by ``site_id``,
  fed by the confirmations the person shard emits (repartition by site_id).
* :func:`judge_reading_for_site_drift` – ``DriftState`` keyed by ``site_id``,
  fed by temperatures repartitioned by ``site_id``.
"""

from __future__ import annotations

from statistics import median

from processors.screening_policy import PRECISION, PolicyLike, ScreeningPolicy, resolve
from processors.screening_state import (
    ClusterState,
    Confirmation,
    DriftState,
    PersonState,
    Sample,
    make_alert,
    rounded_median,
)
from scantrail.contract import Alert, TemperatureReading

__all__ = [
    "judge_baseline",
    "judge_confirmation_for_site",
    "judge_reading_for_site_drift",
    "judge_sample_for_site_drift",
]


def judge_baseline(state: PersonState, sample: Sample, policy: PolicyLike) -> list[Alert]:
    """``temperature_anomaly`` for a normal reading well above the person's own median.

    The baseline is the person's valid readings of the ``baseline_days`` before
    the reading that fall on earlier local dates (today's readings would hide
    today's rise); it needs ``baseline_min_dates`` distinct dates. At most one
    anomaly per person per local date. Call it *before* adding the sample to
    ``state.history``; it does not check validity or the fever threshold.
    """
    p = resolve(policy, sample.site_id)
    today = p.local_date(sample.time)
    if state.last_anomaly_on == today:
        return []
    since = sample.time - p.baseline_span
    # Each reading's local date once, and kept: a person's history is looked at on
    # every reading (2% of the worker in the 1,000,000-reading drain, 2026-12-07).
    memo = state.local_dates(p.zone)
    dated = []
    for t, c in state.history:
        if since <= t:
            day = memo.get(t)
            if day is None:
                day = memo[t] = p.local_date(t)
            dated.append((day, c))
    prior = [c for day, c in dated if day < today]
    dates = {day for day, _ in dated if day < today}
    if len(dates) < p.baseline_min_dates:
        return []
    med = rounded_median(prior)
    rise = round(sample.celsius - med, PRECISION)
    if rise < p.anomaly_delta_c:
        return []
    state.last_anomaly_on = today
    return [
        make_alert(
            "temperature_anomaly",
            "info",
            site_id=sample.site_id,
            kiosk_id=sample.kiosk_id,
            person_id=sample.person_id,
            event_time=sample.time,
            evidence=[sample.event_id],
            detail={
                "celsius": sample.celsius,
                "baseline_median_c": med,
                "rise_c": rise,
                "min_rise_c": p.anomaly_delta_c,
                "baseline_dates": len(dates),
                "baseline_readings": len(prior),
                "local_date": today.isoformat(),
            },
        )
    ]


def judge_confirmation_for_site(
    state: ClusterState, confirmation: Confirmation, policy: PolicyLike
) -> list[Alert]:
    """``fever_cluster`` when enough distinct persons were confirmed at a site in a window."""
    p = resolve(policy, confirmation.site_id)
    t = confirmation.time
    if not state.seen.check_and_add(confirmation.event_id, t, p.seen_horizon, p.seen_max):
        return []
    state.confirmations.append(confirmation)
    newest = max(c.time for c in state.confirmations)
    state.confirmations = [c for c in state.confirmations if c.time > newest - p.cluster_window]
    recent = [c for c in state.confirmations if t - p.cluster_window < c.time <= t]
    persons = sorted({c.person_id for c in recent})
    if len(persons) < p.cluster_persons:
        return []
    if state.last_cluster_at is not None and t - state.last_cluster_at < p.cluster_cooldown:
        return []
    state.last_cluster_at = t
    return [
        make_alert(
            "fever_cluster",
            "critical",
            site_id=confirmation.site_id,
            event_time=t,
            evidence=[c.second.event_id for c in recent],
            detail={
                "persons": len(persons),
                "person_ids": persons,
                "confirmations": len(recent),
                "min_persons": p.cluster_persons,
                "window_s": p.cluster_window.total_seconds(),
            },
        )
    ]


def judge_reading_for_site_drift(
    state: DriftState, reading: TemperatureReading, policy: PolicyLike
) -> list[Alert]:
    """:func:`judge_sample_for_site_drift` of the reading's :class:`Sample`."""
    return judge_sample_for_site_drift(state, Sample.of(reading), policy)


def judge_sample_for_site_drift(
    state: DriftState, sample: Sample, policy: PolicyLike
) -> list[Alert]:
    """``sensor_drift`` when this reading's kiosk median strays from its site's other kiosks.

    Judged on the part of the reading the state keeps: the live site stage
    receives only that (:mod:`processors.hop_records`), the offline screener
    the whole reading (:func:`judge_reading_for_site_drift`).

    Both medians cover the window ``(t - drift_window, t]`` and each side needs
    ``drift_min_readings`` valid readings. Only the kiosk of the incoming
    reading is judged, at most once per ``drift_cooldown``.

    A reading already in the window is a repeat and changes nothing. A reading
    a whole window or more older than the newest one the site has seen (only a
    kiosk catching up after an outage can deliver one; in event-time order it
    cannot happen) is passed by: the window holds no readings of its hour any
    more, so no median could be computed for it.
    """
    p = resolve(policy, sample.site_id)
    t = sample.time
    kiosk = sample.kiosk_id
    if state.newest is not None and t <= state.newest - p.drift_window:
        return []
    if state.holds(kiosk, sample.event_id):
        return []
    if state.newest is None or t > state.newest:
        state.newest = t
    if not p.is_valid(sample.celsius):
        return []
    state.add(sample)
    _prune_drift(state, p)
    since = t - p.drift_window
    # In event-time order the reading is the newest, and the state keeps exactly
    # its window: the medians are order statistics the state keeps sorted. A
    # reading that arrived late is judged over its own window, by scans.
    newest = t == state.newest
    own = state.readings[kiosk] if newest else state.window(kiosk, since, t)
    if len(own) < p.drift_min_readings:
        return []
    # Every way out below but the last changes nothing, so the cheap ones go first.
    last = state.last_drift_at.get(kiosk)
    if last is not None and t - last < p.drift_cooldown:
        return []
    if newest:
        own_median, others_median, n_others = state.medians(kiosk)
    else:
        others = [
            s.celsius for k in state.readings if k != kiosk for s in state.window(k, since, t)
        ]
        n_others = len(others)
        own_median = median(s.celsius for s in own)
        others_median = median(others) if others else None
    if n_others < p.drift_min_readings or others_median is None:
        return []
    kiosk_median = round(own_median, PRECISION)
    site_median = round(others_median, PRECISION)
    difference = round(kiosk_median - site_median, PRECISION)
    if abs(difference) <= p.drift_delta_c:
        return []
    state.last_drift_at[kiosk] = t
    return [
        make_alert(
            "sensor_drift",
            "warning",
            site_id=sample.site_id,
            kiosk_id=kiosk,
            event_time=t,
            evidence=[s.event_id for s in own],
            detail={
                "kiosk_median_c": kiosk_median,
                "site_median_c": site_median,
                "difference_c": difference,
                "max_difference_c": p.drift_delta_c,
                "kiosk_readings": len(own),
                "other_readings": n_others,
                "window_s": p.drift_window.total_seconds(),
            },
        )
    ]


def _prune_drift(state: DriftState, p: ScreeningPolicy) -> None:
    """Keep only readings and cool-downs that can still matter at the newest event time."""
    newest = state.newest
    if newest is None:
        return
    state.prune(newest - p.drift_window)
    for kiosk, last in list(state.last_drift_at.items()):
        if newest - last >= p.drift_cooldown:
            del state.last_drift_at[kiosk]

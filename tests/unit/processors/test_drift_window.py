"""The drift window's indexed reads against the plain scans they replaced.

``DriftState`` keeps, beside its samples, whether each kiosk's samples are
in time order and their event ids, so a busy site's hour is not re-read for
every reading. The rule must judge exactly as the plain scans did, with
readings in any order, repeats, invalid temperatures and reloads from the
stored record between readings: same alerts, same stored record.
"""

from __future__ import annotations

import json
from datetime import timedelta
from statistics import median

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.baselines import judge_reading_for_site_drift
from processors.screening_policy import PRECISION, ScreeningPolicy, resolve
from processors.screening_state import DriftState, Sample, rounded_median
from scantrail.contract import TemperatureReading
from tests.factories import BASE_TIME, make_reading

POLICY = ScreeningPolicy(drift_min_readings=3, drift_window=timedelta(minutes=10))


Judged = tuple[str, list[str], float, float, int]


def plain_drift(
    state: DriftState, reading: TemperatureReading, policy: ScreeningPolicy
) -> list[Judged]:
    """The rule as it was before the index: every read is a scan of the window.

    It answers each alert's kiosk, evidence, both medians and the other
    kiosks' count (the parts the window decides), so the oracle stays short.
    """
    p = resolve(policy, reading.site_id)
    t, kiosk = reading.measured_at, reading.kiosk_id
    if state.newest is not None and t <= state.newest - p.drift_window:
        return []
    if any(s.event_id == reading.event_id for s in state.readings.get(kiosk, ())):
        return []
    if state.newest is None or t > state.newest:
        state.newest = t
    if not p.is_valid(reading.celsius):
        return []
    state.readings.setdefault(kiosk, []).append(Sample.of(reading))
    bound = state.newest - p.drift_window
    for k, samples in list(state.readings.items()):
        kept = [s for s in samples if s.time > bound]
        if kept:
            state.readings[k] = kept
        else:
            del state.readings[k]
    for k, last in list(state.last_drift_at.items()):
        if state.newest - last >= p.drift_cooldown:
            del state.last_drift_at[k]
    since = t - p.drift_window
    own = [s for s in state.readings[kiosk] if since < s.time <= t]
    last = state.last_drift_at.get(kiosk)
    if len(own) < p.drift_min_readings or (last is not None and t - last < p.drift_cooldown):
        return []
    others = [
        s.celsius
        for k, samples in state.readings.items()
        if k != kiosk
        for s in samples
        if since < s.time <= t
    ]
    if len(others) < p.drift_min_readings:
        return []
    kiosk_median, site_median = rounded_median(s.celsius for s in own), rounded_median(others)
    if abs(round(kiosk_median - site_median, PRECISION)) <= p.drift_delta_c:
        return []
    state.last_drift_at[kiosk] = t
    # Alerts carry sorted evidence.
    return [(kiosk, sorted({s.event_id for s in own}), kiosk_median, site_median, len(others))]


READING = st.tuples(
    st.integers(0, 40),  # minutes after BASE_TIME: out of order, and beyond the window
    st.sampled_from(["k-1", "k-2", "k-3"]),
    st.sampled_from([30.0, 36.2, 36.5, 37.0, 37.4, 38.0]),  # 30.0 is not a valid reading
    st.integers(0, 25),  # event id: small, so repeats happen
    st.booleans(),  # reload the state from its stored record before this reading
)


@settings(max_examples=300, deadline=None)
@given(st.lists(READING, max_size=60))
def test_indexed_window_judges_as_the_plain_scans(
    steps: list[tuple[int, str, float, int, bool]],
) -> None:
    indexed, plain = DriftState(), DriftState()
    for minute, kiosk, celsius, n, reload in steps:
        if reload:
            indexed = DriftState.from_dict(json.loads(json.dumps(indexed.to_dict())))
        reading = make_reading(
            event_id=f"e-{n}-{kiosk}-{minute}" if n % 3 else f"e-{n}",
            kiosk_id=kiosk,
            measured_at=BASE_TIME + timedelta(minutes=minute, seconds=n),
            celsius=celsius,
        )
        got = judge_reading_for_site_drift(indexed, reading, POLICY)
        want = plain_drift(plain, reading, POLICY)
        assert [
            (
                a.kiosk_id,
                list(a.evidence),
                a.detail["kiosk_median_c"],
                a.detail["site_median_c"],
                a.detail["other_readings"],
            )
            for a in got
        ] == want
        # The oracle changes its samples behind the state's back: its record is made afresh.
        fresh = DriftState(plain.readings, plain.last_drift_at, plain.newest)
        assert indexed.to_dict() == fresh.to_dict()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["k-1", "k-2", "k-3"]), st.sampled_from([36.1, 36.5, 37.0, 38.2])
        ),
        min_size=1,
        max_size=40,
    ),
    st.integers(0, 39),
)
def test_kept_medians_are_the_medians_of_the_kept_samples(
    values: list[tuple[str, float]], cut: int
) -> None:
    """Order statistics over the sorted caches, after adds and a prune, equal sorting."""
    state = DriftState()
    for i, (kiosk, celsius) in enumerate(values):
        state.add(Sample(f"e-{i}", BASE_TIME + timedelta(seconds=i), celsius, kiosk, "site-1"))
        if i == cut:
            state.medians(kiosk)  # caches built midway are kept up to date from here on
    state.prune(BASE_TIME + timedelta(seconds=cut // 2))
    for kiosk, samples in state.readings.items():
        own = [s.celsius for s in samples]
        others = [s.celsius for k, ss in state.readings.items() if k != kiosk for s in ss]
        want = (median(own), median(others) if others else None, len(others))
        assert state.medians(kiosk) == want

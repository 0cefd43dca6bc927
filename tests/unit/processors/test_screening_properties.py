"""Properties the live worker relies on: order, duplicates and restarts change nothing."""

from __future__ import annotations

import json
import random
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.screener import Screener, ScreenEvent, event_order
from processors.screening_policy import ScreeningPolicy, SitePolicies
from scantrail.contract import Alert, QuarantineRecord, ScanEvent, TemperatureReading, alert_id
from tests.factories import BASE_TIME, make_quarantine, make_reading, make_scan

# Small numbers so random streams reach every rule: drift, clusters and baselines included.
POLICY = SitePolicies(
    default=ScreeningPolicy(
        drift_min_readings=3,
        cluster_persons=2,
        baseline_min_dates=2,
        seen_horizon=timedelta(days=5),
    ),
    sites={"s-2": ScreeningPolicy(fever_c=37.5, drift_min_readings=2, cluster_persons=2)},
)
PERSONS = ["p-1", "p-2", "p-3", "p-4"]
CELSIUS = [33.5, 34.0, 36.2, 36.5, 36.9, 37.1, 37.29, 37.3, 37.6, 38.5, 42.0, 42.5]
MINUTES = st.one_of(
    st.integers(0, 12),  # bursts: sensor faults
    st.integers(0, 90),  # re-measures, clusters, drift
    st.builds(lambda d, m: d * 24 * 60 + m, st.integers(0, 4), st.integers(0, 60)),  # baselines
)


@st.composite
def streams(draw: st.DrawFn) -> list[ScreenEvent]:
    events: list[ScreenEvent] = []
    n = draw(st.integers(1, 60))
    for i in range(n):
        when = BASE_TIME + timedelta(minutes=draw(MINUTES))
        site = draw(st.sampled_from(["s-1", "s-2"]))
        kiosk = f"{site}-k{draw(st.integers(1, 3))}"
        if draw(st.integers(0, 4)) == 0:
            events.append(
                make_scan(
                    event_id=f"e-{i}",
                    site_id=site,
                    kiosk_id=kiosk,
                    person_id=draw(st.sampled_from(PERSONS)),
                    direction=draw(st.sampled_from(["in", "out"])),
                    pass_status=draw(
                        st.sampled_from(["valid", "expired", "revoked", "forged", "unknown"])
                    ),
                    scanned_at=when,
                )
            )
        else:
            events.append(
                make_reading(
                    event_id=f"e-{i}",
                    site_id=site,
                    kiosk_id=kiosk,
                    person_id=draw(st.sampled_from([*PERSONS, None])),
                    celsius=draw(st.sampled_from(CELSIUS)),
                    measured_at=when,
                )
            )
    for person in draw(st.lists(st.sampled_from(PERSONS), unique=True, max_size=2)):
        start = BASE_TIME.date() + timedelta(days=draw(st.integers(-1, 2)))
        events.append(
            make_quarantine(
                person_id=person,
                starts_on=start,
                ends_on=start + timedelta(days=draw(st.integers(0, 3))),
            )
        )
    return events


def screen(events: list[ScreenEvent]) -> list[Alert]:
    return Screener(POLICY).run(events)


def dump(alerts: list[Alert]) -> list[dict[str, object]]:
    return [a.to_dict() for a in alerts]


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(streams(), st.randoms(use_true_random=False))
def test_input_order_does_not_matter(events: list[ScreenEvent], rnd: random.Random) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert dump(screen(shuffled)) == dump(screen(events))


@SETTINGS
@given(streams(), st.data())
def test_duplicates_are_ignored(events: list[ScreenEvent], data: st.DataObject) -> None:
    again = data.draw(st.lists(st.sampled_from(events), max_size=10))
    copies = [e.model_copy() for e in again]
    assert dump(screen(events + copies)) == dump(screen(events))


@SETTINGS
@given(streams())
def test_alerts_are_sorted_unique_and_ids_come_from_kind_and_evidence(
    events: list[ScreenEvent],
) -> None:
    alerts = screen(events)
    ids = [a.alert_id for a in alerts]
    assert len(set(ids)) == len(ids)
    assert ids == [a.alert_id for a in screen(events)]
    for a in alerts:
        assert a.alert_id == alert_id(a.kind, a.evidence)
        assert a.raised_at == a.event_time
    keys = [(a.event_time, a.kind) for a in alerts]
    assert keys == sorted(keys)


@SETTINGS
@given(streams(), st.data())
def test_state_round_trips_through_json_mid_stream(
    events: list[ScreenEvent], data: st.DataObject
) -> None:
    records = [e for e in events if isinstance(e, QuarantineRecord)]
    ordered: list[ScanEvent | TemperatureReading] = sorted(
        (e for e in events if not isinstance(e, QuarantineRecord)), key=event_order
    )
    cut = data.draw(st.integers(0, len(ordered)))

    first = Screener(POLICY)
    for r in records:
        first.apply_quarantine(r)
    alerts = [a for e in ordered[:cut] for a in first.feed(e)]
    snapshot = json.loads(json.dumps(first.to_dict()))
    second = Screener.from_dict(snapshot, POLICY)
    assert second.to_dict() == snapshot
    for e in ordered[cut:]:
        alerts += second.feed(e)
    alerts += second.finish()

    expected = screen(events)
    assert sorted(
        dump(alerts), key=lambda a: (a["event_time"], a["kind"], a["alert_id"])
    ) == sorted(dump(expected), key=lambda a: (a["event_time"], a["kind"], a["alert_id"]))


def test_the_property_streams_reach_the_interesting_rules() -> None:
    """Guard against a generator that silently stops exercising rules."""
    seen: set[str] = set()

    @settings(max_examples=200, deadline=None, database=None, derandomize=True)
    @given(streams())
    def collect(events: list[ScreenEvent]) -> None:
        seen.update(a.kind for a in screen(events))

    collect()
    assert {
        "fever_suspected",
        "fever_confirmed",
        "fever_cleared",
        "fever_unconfirmed",
        "fever_unidentified",
        "sensor_fault",
        "pass_forged",
        "pass_refused",
        "quarantine_breach",
        "sensor_drift",
        "fever_cluster",
        "temperature_anomaly",
    } <= seen

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest.pairing import Pairer
from scantrail.contract import ScanEvent, TemperatureReading

T0 = datetime(2020, 2, 10, 8, 0, tzinfo=UTC)


def scan(at_s: float, person: str = "p-1", kiosk: str = "kiosk-001", eid: str = "s-1") -> ScanEvent:
    return ScanEvent(
        event_id=eid,
        kiosk_id=kiosk,
        site_id="site-001",
        direction="in",
        person_id=person,
        pass_id="ps-1",
        pass_status="valid",
        scanned_at=T0 + timedelta(seconds=at_s),
        seq=0,
    )


def reading(at_s: float, celsius: float = 36.5, kiosk: str = "kiosk-001") -> TemperatureReading:
    return TemperatureReading(
        event_id=f"t-{at_s}",
        kiosk_id=kiosk,
        site_id="site-001",
        measured_at=T0 + timedelta(seconds=at_s),
        celsius=celsius,
        method="forehead_ir",
    )


@pytest.mark.parametrize(
    ("gap", "paired"), [(0, True), (3, True), (10, True), (10.5, False), (60, False)]
)
def test_reading_after_scan_pairs_within_10_seconds(gap: float, paired: bool):
    pairer = Pairer()
    pairer.add_scan(scan(0))
    out = pairer.add_reading(reading(gap)) + pairer.release(T0 + timedelta(seconds=gap + 11))
    assert len(out) == 1
    assert (out[0].person_id == "p-1") is paired
    assert (out[0].scan_event_id == "s-1") is paired


def test_reading_before_scan_is_held_then_claimed():
    pairer = Pairer()
    assert pairer.add_reading(reading(0)) == []
    claimed = pairer.add_scan(scan(4))
    assert [r.person_id for r in claimed] == ["p-1"]
    assert pairer.held == 0


def test_reading_at_another_gate_is_not_paired():
    pairer = Pairer()
    pairer.add_scan(scan(0, kiosk="kiosk-002"))
    assert pairer.add_reading(reading(2)) == []
    out = pairer.release(T0 + timedelta(seconds=30))
    assert len(out) == 1 and out[0].person_id is None


def test_nearest_scan_wins():
    pairer = Pairer()
    pairer.add_scan(scan(0, person="p-a", eid="s-a"))
    pairer.add_scan(scan(6, person="p-b", eid="s-b"))
    assert pairer.add_reading(reading(8))[0].person_id == "p-b"


@pytest.mark.parametrize("celsius", [31.2, 33.9, 42.6, 55.0, 36.7])
def test_values_are_published_as_measured(celsius: float):
    pairer = Pairer()
    pairer.add_scan(scan(0))
    out = pairer.add_reading(reading(1, celsius))
    assert out[0].celsius == celsius


def test_flush_returns_every_held_reading():
    pairer = Pairer()
    pairer.add_reading(reading(0))
    pairer.add_reading(reading(1))
    assert len(pairer.flush()) == 2 and pairer.held == 0

"""Shared test builders: valid contract events with overridable fields.

Each builder returns a valid event with tz-aware defaults (a February 2020
morning at a Shanghai compound gate); pass keyword overrides for what a test
is about. Event ids default to a fresh ``<kind>-<n>`` so two built events never
collide by accident. Add new builders below; keep existing signatures.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone
from typing import Any

from scantrail.contract import QuarantineRecord, ScanEvent, TemperatureReading

SHANGHAI = timezone(timedelta(hours=8), "CST")
BASE_TIME = datetime(2020, 2, 10, 9, 0, tzinfo=SHANGHAI)

_ids = itertools.count(1)


def next_id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def make_scan(**overrides: Any) -> ScanEvent:
    fields: dict[str, Any] = {
        "event_id": next_id("scan"),
        "kiosk_id": "kiosk-1",
        "site_id": "site-1",
        "direction": "in",
        "person_id": "p-001",
        "pass_id": "pass-001",
        "pass_status": "valid",
        "health_code": "green",
        "scanned_at": BASE_TIME,
        "seq": 0,
    }
    fields.update(overrides)
    return ScanEvent(**fields)


def make_reading(**overrides: Any) -> TemperatureReading:
    fields: dict[str, Any] = {
        "event_id": next_id("temp"),
        "kiosk_id": "kiosk-1",
        "site_id": "site-1",
        "measured_at": BASE_TIME,
        "celsius": 36.5,
        "method": "forehead_ir",
        "person_id": "p-001",
    }
    fields.update(overrides)
    return TemperatureReading(**fields)


def make_quarantine(**overrides: Any) -> QuarantineRecord:
    fields: dict[str, Any] = {
        "person_id": "p-001",
        "site_id": "site-1",
        "starts_on": date(2020, 2, 1),
        "ends_on": date(2020, 2, 15),
        "reason": "returned from another city",
    }
    fields.update(overrides)
    return QuarantineRecord(**fields)

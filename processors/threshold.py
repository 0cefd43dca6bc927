"""The first fever rule alone: a valid reading at or above the threshold is reported.

Kept as the worker's judge until the full screening rules (re-measure,
baselines, clusters) take over; pure, so it is tested without a broker.
"""

from __future__ import annotations

from scantrail.contract import Alert, TemperatureReading, alert_id

FEVER_C = 37.3
VALID_RANGE_C = (34.0, 42.0)


def hot_reading_alerts(reading: TemperatureReading) -> list[Alert]:
    low, high = VALID_RANGE_C
    if not (low <= reading.celsius <= high) or reading.celsius < FEVER_C:
        return []
    kind = "fever_suspected" if reading.person_id else "fever_unidentified"
    return [
        Alert(
            alert_id=alert_id(kind, [reading.event_id]),
            kind=kind,
            severity="warning" if reading.person_id else "critical",
            site_id=reading.site_id,
            kiosk_id=reading.kiosk_id,
            person_id=reading.person_id,
            event_time=reading.measured_at,
            raised_at=reading.measured_at,
            evidence=[reading.event_id],
            detail={"celsius": reading.celsius, "threshold": FEVER_C},
        )
    ]

"""Contract events to InfluxDB line protocol: pure and deterministic.

InfluxDB overwrites a point with the same measurement, tag set and timestamp,
so a re-delivered event must map to exactly the same line. Timestamps are the
event time in nanoseconds plus a few nanoseconds derived from the event id:
two different readings in the same microsecond at one kiosk stay two points,
and the same reading delivered twice stays one.

Person ids are fields, never tags: a tag per resident would explode the
series cardinality of the main bucket.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime

from scantrail.contract import SCHEMAS, Alert, KioskHeartbeat, TemperatureReading

VALID_RANGE_C = (34.0, 42.0)
_VALID_LOW, _VALID_HIGH = VALID_RANGE_C


def _escape_key(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def _escape_str(value: str) -> str:
    if "\\" not in value and '"' not in value:  # every contract identifier (the hot path)
        return value
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _field(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return f'"{_escape_str(str(value))}"'


_blake2b = hashlib.blake2b


def timestamp_ns(at: datetime, event_id: str) -> int:
    """Event time in ns, with sub-microsecond jitter fixed by the event id."""
    micros = int(at.timestamp()) * 1_000_000 + at.microsecond
    jitter = int.from_bytes(_blake2b(event_id.encode(), digest_size=2).digest()) % 1000
    return micros * 1000 + jitter


def line(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, object], ts_ns: int
) -> str:
    tag_part = "".join(f",{_escape_key(k)}={_escape_key(v)}" for k, v in sorted(tags.items()) if v)
    field_part = ",".join(
        f"{_escape_key(k)}={_field(v)}" for k, v in sorted(fields.items()) if v is not None
    )
    return f"{_escape_key(measurement)}{tag_part} {field_part} {ts_ns}"


def temperature_line_reference(reading: TemperatureReading) -> str:
    """The definition of a temperature point, through the generic :func:`line`."""
    low, high = VALID_RANGE_C
    fields: dict[str, object] = {
        "celsius": float(reading.celsius),
        "valid": low <= reading.celsius <= high,
        "event_id": reading.event_id,
        "person_id": reading.person_id,
        "ambient_c": None if reading.ambient_c is None else float(reading.ambient_c),
    }
    tags = {"site_id": reading.site_id, "kiosk_id": reading.kiosk_id, "method": reading.method}
    return line("temperature", tags, fields, timestamp_ns(reading.measured_at, reading.event_id))


_TEMPERATURE_PREFIXES: dict[tuple[str, str, str], str] = {}


def temperature_line(reading: TemperatureReading) -> str:
    """The same line as :func:`temperature_line_reference`, built faster (the hot path).

    The measurement and tag set are escaped once per (site, kiosk, method) and
    the fields are written in the sorted order :func:`line` uses.
    """
    key = (reading.site_id, reading.kiosk_id, reading.method)
    prefix = _TEMPERATURE_PREFIXES.get(key)
    if prefix is None:
        tags = {"site_id": key[0], "kiosk_id": key[1], "method": key[2]}
        prefix = "temperature" + "".join(
            f",{_escape_key(k)}={_escape_key(v)}" for k, v in sorted(tags.items()) if v
        )
        if len(_TEMPERATURE_PREFIXES) < 100_000:
            _TEMPERATURE_PREFIXES[key] = prefix
    # One f-string, no list and join: this runs once per reading the sink stores.
    celsius = reading.celsius
    ambient = reading.ambient_c
    person = reading.person_id
    event_id = reading.event_id
    ambient_part = "" if ambient is None else f"ambient_c={float(ambient)!r},"
    person_part = "" if person is None else f'person_id="{_escape_str(person)}",'
    valid = "true" if _VALID_LOW <= celsius <= _VALID_HIGH else "false"
    return (
        f"{prefix} {ambient_part}celsius={float(celsius)!r},"
        f'event_id="{_escape_str(event_id)}",{person_part}valid={valid} '
        f"{timestamp_ns(reading.measured_at, event_id)}"
    )


def alert_line(alert: Alert) -> str:
    tags = {"site_id": alert.site_id, "kind": alert.kind, "severity": alert.severity}
    fields: dict[str, object] = {
        "alert_id": alert.alert_id,
        "person_id": alert.person_id,
        "kiosk_id": alert.kiosk_id,
        "count": 1,
    }
    return line("alerts", tags, fields, timestamp_ns(alert.event_time, alert.alert_id))


def passage_line(site_id: str, kiosk_id: str, direction: str, minute: int, count: int) -> str:
    """The count of distinct scans in one minute; rewriting it replaces the old count."""
    tags = {"site_id": site_id, "kiosk_id": kiosk_id, "direction": direction}
    return line("passages", tags, {"count": count}, minute * 1_000_000_000)


def kiosk_health_line(beat: KioskHeartbeat) -> str:
    fields: dict[str, object] = {
        "spool_depth": beat.spool_depth,
        "scans_since_start": beat.scans_since_start,
        "decode_failures": beat.decode_failures,
        "frames_dropped": beat.frames_dropped,
        "frames_too_large": beat.frames_too_large,
        "frames_over_budget": beat.frames_over_budget,
        "revocations_error": beat.revocations_error,
        "version": beat.version,
        "last_scan_age_s": None
        if beat.last_scan_at is None
        else round((beat.sent_at - beat.last_scan_at).total_seconds(), 3),
    }
    tags = {"site_id": beat.site_id, "kiosk_id": beat.kiosk_id}
    return line("kiosk_health", tags, fields, timestamp_ns(beat.sent_at, beat.kiosk_id))


def watched_temperature_line(reading: TemperatureReading, person_id: str) -> str:
    """A watched person's curve: person as a tag, but only in the small watched bucket."""
    return watched_temperature_point(
        person_id,
        reading.site_id,
        reading.kiosk_id,
        float(reading.celsius),
        reading.event_id,
        timestamp_ns(reading.measured_at, reading.event_id),
    )


def watched_temperature_point(
    person_id: str, site_id: str, kiosk_id: str, celsius: float, event_id: str, ts_ns: int
) -> str:
    """:func:`watched_temperature_line` from a point's parts.

    The backfill (:mod:`sinks.backfill`) rebuilds lines from points read back
    from the main bucket; sharing this builder keeps them byte for byte the
    lines the live path writes, so either may rewrite the other's point.
    """
    low, high = VALID_RANGE_C
    fields: dict[str, object] = {
        "celsius": celsius,
        "valid": low <= celsius <= high,
        "event_id": event_id,
        "site_id": site_id,
        "kiosk_id": kiosk_id,
    }
    return line("watched_temperature", {"person_id": person_id}, fields, ts_ns)


_KNOWN_SCHEMAS = frozenset(SCHEMAS)
_REASON_KINDS = (
    ("not JSON", "not JSON"),
    ("not a JSON object", "not a JSON object"),
    ("missing schema", "missing schema"),
    ("unknown schema", "unknown schema"),
    ("schema ", "schema on the wrong topic"),
    ("no value", "tombstone"),
)


def reason_kind(reason: str) -> str:
    """A dead letter's reason as a tag of few values: what failed, never the hostile text itself.

    ``invalid temperature/1: celsius: ...`` becomes ``invalid temperature/1``;
    anything unforeseen is ``other``.
    """
    for prefix, kind in _REASON_KINDS:
        if reason.startswith(prefix):
            return kind
    head = reason.partition(":")[0]
    if head.startswith("invalid ") and head[len("invalid ") :] in _KNOWN_SCHEMAS:
        return head
    return "other"


def dead_letter_line(topic: str, reason: str, partition: int, offset: int, at_ms: int) -> str:
    """One dead letter, counted per topic and reason kind for the dashboard.

    The timestamp is the failed record's own Kafka timestamp plus nanoseconds
    derived from its partition and offset, so a re-delivered record rewrites
    its point instead of counting twice.
    """
    jitter = (partition * 1_000_003 + offset) % 1_000_000
    tags = {"topic": topic, "reason": reason_kind(reason)}
    fields: dict[str, object] = {"count": 1, "partition": partition, "offset": offset}
    return line("deadletters", tags, fields, at_ms * 1_000_000 + jitter)

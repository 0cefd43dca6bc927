"""The event contract: every field round-trips, every bad value is refused with a reason."""

from __future__ import annotations

import json
from copy import deepcopy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from scantrail import contract
from scantrail.errors import ContractError

VALID: dict[str, dict[str, Any]] = {
    "scan/1": {
        "schema": "scan/1",
        "event_id": "kiosk-1-s00000001",
        "kiosk_id": "kiosk-1",
        "site_id": "site-1",
        "direction": "in",
        "person_id": "p-000001",
        "pass_id": "pass-1",
        "pass_status": "valid",
        "health_code": "green",
        "scanned_at": "2020-02-10T08:00:00+08:00",
        "seq": 1,
    },
    "temperature/1": {
        "schema": "temperature/1",
        "event_id": "kiosk-1-t1",
        "kiosk_id": "kiosk-1",
        "site_id": "site-1",
        "measured_at": "2020-02-10T00:00:05Z",
        "celsius": 36.6,
        "method": "forehead_ir",
        "person_id": "p-000001",
        "scan_event_id": "kiosk-1-s00000001",
        "ambient_c": -1.5,
    },
    "quarantine/1": {
        "schema": "quarantine/1",
        "person_id": "p-000002",
        "site_id": "site-1",
        "starts_on": "2020-02-01",
        "ends_on": "2020-02-15",
        "reason": "returned from Wuhan",
    },
    "alert/1": {
        "schema": "alert/1",
        "alert_id": "fever_confirmed:abc",
        "kind": "fever_confirmed",
        "severity": "critical",
        "site_id": "site-1",
        "kiosk_id": "kiosk-1",
        "person_id": "p-000001",
        "event_time": "2020-02-10T08:10:00+08:00",
        "raised_at": "2020-02-10T08:10:01+08:00",
        "evidence": ["t1", "t2"],
        "detail": {"celsius": [37.8, 37.9]},
    },
    "kiosk/1": {
        "schema": "kiosk/1",
        "kiosk_id": "kiosk-1",
        "site_id": "site-1",
        "sent_at": "2020-02-10T08:00:30+08:00",
        "spool_depth": 0,
        "last_scan_at": "2020-02-10T08:00:00+08:00",
        "scans_since_start": 12,
        "decode_failures": 1,
        "version": "0.1.0",
    },
    "page/1": {
        "schema": "page/1",
        "alert_id": "fever_confirmed:abc",
        "action": "delivered",
        "site_id": "site-1",
        "severity": "critical",
        "at": "2020-02-10T08:10:02+08:00",
        "step": 0,
        "officer_id": "officer-li",
        "channel": "webhook",
        "attempt": 1,
        "reason": "",
        "alert": None,
    },
    "audit/1": {
        "schema": "audit/1",
        "audit_id": "0f1e2d3c",
        "at": "2020-02-11T09:30:00+08:00",
        "actor": "token:epi-1",
        "role": "analyst",
        "channel": "http",
        "action": "trace",
        "outcome": "allowed",
        "reason": "",
        "person_id": "p-1-000042",
        "since": "2020-02-10T00:00:00+08:00",
        "until": "2020-02-12T00:00:00+08:00",
        "depth": 2,
        "contacts_returned": 3,
        "detail": {},
    },
    "deadletter/1": {
        "schema": "deadletter/1",
        "topic": "scantrail.scans",
        "partition": 0,
        "offset": 42,
        "key_b64": "cDE=",
        "value_b64": "e30=",
        "reason": "invalid",
        "seen_at": "2020-02-10T08:00:00Z",
    },
}

# (schema, field, bad value) — each must be refused. None means "remove the field".
INVALID: list[tuple[str, str, Any]] = [
    ("scan/1", "event_id", None),
    ("scan/1", "event_id", ""),
    ("scan/1", "event_id", 7),
    ("scan/1", "event_id", "has space"),
    ("scan/1", "kiosk_id", None),
    ("scan/1", "site_id", None),
    ("scan/1", "direction", "sideways"),
    ("scan/1", "person_id", None),
    ("scan/1", "person_id", "13800138000"),  # a phone number, not a pseudonym
    ("scan/1", "person_id", "+8613800138000"),
    ("scan/1", "pass_id", 5),
    ("scan/1", "pass_status", "stolen"),
    ("scan/1", "pass_status", None),
    ("scan/1", "health_code", "blue"),
    ("scan/1", "scanned_at", "2020-02-10T08:00:00"),  # naive
    ("scan/1", "scanned_at", "yesterday"),
    ("scan/1", "scanned_at", None),
    ("scan/1", "seq", -1),
    ("scan/1", "seq", "1"),
    ("scan/1", "seq", 1.5),
    ("scan/1", "seq", None),
    ("temperature/1", "event_id", None),
    ("temperature/1", "kiosk_id", ""),
    ("temperature/1", "site_id", None),
    ("temperature/1", "measured_at", "2020-02-10 08:00"),
    ("temperature/1", "celsius", "36.6"),
    ("temperature/1", "celsius", True),
    ("temperature/1", "celsius", None),
    ("temperature/1", "celsius", 150.0),  # no thermometer reports this
    ("temperature/1", "method", "telepathy"),
    ("temperature/1", "person_id", "13800138000"),
    ("temperature/1", "scan_event_id", 3),
    ("temperature/1", "ambient_c", "cold"),
    ("quarantine/1", "person_id", None),
    ("quarantine/1", "site_id", None),
    ("quarantine/1", "starts_on", "2020-02-30"),
    ("quarantine/1", "starts_on", None),
    ("quarantine/1", "ends_on", "2020-01-01"),  # before starts_on
    ("quarantine/1", "reason", None),
    ("alert/1", "alert_id", None),
    ("alert/1", "kind", "Fever Confirmed"),
    ("alert/1", "severity", "urgent"),
    ("alert/1", "site_id", None),
    ("alert/1", "event_time", "2020-02-10T08:10:00"),
    ("alert/1", "raised_at", None),
    ("alert/1", "evidence", "t1"),
    ("alert/1", "evidence", [1, 2]),
    ("alert/1", "detail", [1]),
    ("kiosk/1", "spool_depth", -3),
    ("kiosk/1", "scans_since_start", "12"),
    ("kiosk/1", "decode_failures", None),
    ("kiosk/1", "version", ""),
    ("kiosk/1", "sent_at", "now"),
    ("kiosk/1", "last_scan_at", "2020-02-10T08:00:00"),
    ("deadletter/1", "topic", None),
    ("deadletter/1", "reason", None),
    ("deadletter/1", "seen_at", "2020"),
]


@pytest.mark.parametrize("schema", sorted(VALID))
def test_valid_events_round_trip(schema: str) -> None:
    raw = json.dumps(VALID[schema]).encode()
    event = contract.decode(raw)
    assert event.SCHEMA == schema
    again = contract.decode(contract.encode(event))
    assert again == event
    assert json.loads(contract.encode(event))["schema"] == schema


@pytest.mark.parametrize(("schema", "field", "value"), INVALID)
def test_invalid_field_is_refused_with_its_name(schema: str, field: str, value: Any) -> None:
    obj = deepcopy(VALID[schema])
    if value is None:
        obj.pop(field)
    else:
        obj[field] = value
    with pytest.raises(ContractError) as info:
        contract.decode(json.dumps(obj))
    assert field in str(info.value) or "ends_on" in str(info.value)


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        ("scan/1", "pass_id"),
        ("scan/1", "health_code"),
        ("temperature/1", "person_id"),
        ("temperature/1", "scan_event_id"),
        ("temperature/1", "ambient_c"),
        ("alert/1", "kiosk_id"),
        ("alert/1", "person_id"),
        ("kiosk/1", "last_scan_at"),
    ],
)
def test_nullable_fields_may_be_absent_or_null(schema: str, field: str) -> None:
    absent = deepcopy(VALID[schema])
    absent.pop(field)
    null = deepcopy(VALID[schema])
    null[field] = None
    assert getattr(contract.decode(json.dumps(absent)), field) is None
    assert contract.decode(json.dumps(null)) == contract.decode(json.dumps(absent))


def test_extra_fields_are_preserved_through_a_round_trip() -> None:
    obj = deepcopy(VALID["scan/1"])
    obj["gate_lane"] = 2
    obj["added_in_v1_1"] = {"nested": [1, 2]}
    out = json.loads(contract.encode(contract.decode(json.dumps(obj))))
    assert out["gate_lane"] == 2
    assert out["added_in_v1_1"] == {"nested": [1, 2]}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{oops", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"scan"', "not a JSON object"),
        (b"{}", "missing schema"),
        (b'{"schema": "scan/2"}', "unknown schema"),
        (b'{"schema": 1}', "missing schema"),
    ],
)
def test_unreadable_messages_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(ContractError, match=reason):
        contract.decode(raw)


def test_expect_refuses_an_event_on_the_wrong_topic() -> None:
    with pytest.raises(ContractError, match="does not belong"):
        contract.decode(json.dumps(VALID["scan/1"]), expect=contract.TemperatureReading)


def test_times_compare_as_instants_whatever_their_offset() -> None:
    shanghai = deepcopy(VALID["scan/1"])
    utc = deepcopy(VALID["scan/1"])
    utc["scanned_at"] = "2020-02-10T00:00:00Z"
    a = contract.decode(json.dumps(shanghai))
    b = contract.decode(json.dumps(utc))
    assert isinstance(a, contract.ScanEvent) and isinstance(b, contract.ScanEvent)
    assert a.scanned_at == b.scanned_at
    assert a.scanned_at.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-02-10t00:00:00z", datetime(2020, 2, 10, tzinfo=UTC)),
        ("2020-02-10 08:00:00+08:00", datetime(2020, 2, 10, tzinfo=UTC)),
        ("2020-02-10T00:00:00.123456789Z", datetime(2020, 2, 10, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2020-02-10T00:00:00.5+00:00", datetime(2020, 2, 10, 0, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_rfc3339_spellings_read_as_the_same_instant(text: str, expected: datetime) -> None:
    obj = deepcopy(VALID["scan/1"])
    obj["scanned_at"] = text
    event = contract.decode(json.dumps(obj))
    assert isinstance(event, contract.ScanEvent) and event.scanned_at == expected


def test_integer_celsius_is_a_number() -> None:
    obj = deepcopy(VALID["temperature/1"])
    obj["celsius"] = 37
    event = contract.decode(json.dumps(obj))
    assert isinstance(event, contract.TemperatureReading)
    assert event.celsius == 37.0


def test_keys_partition_as_the_topic_table_says() -> None:
    assert contract.decode(json.dumps(VALID["scan/1"])).key() == b"p-000001"
    assert contract.decode(json.dumps(VALID["temperature/1"])).key() == b"kiosk-1"
    assert contract.decode(json.dumps(VALID["quarantine/1"])).key() == b"p-000002"
    assert contract.decode(json.dumps(VALID["alert/1"])).key() == b"site-1"


def test_alert_id_depends_on_kind_and_evidence_set_only() -> None:
    a = contract.alert_id("fever_confirmed", ["t1", "t2"])
    assert a == contract.alert_id("fever_confirmed", ["t2", "t1"])
    assert a != contract.alert_id("fever_cleared", ["t1", "t2"])
    assert a != contract.alert_id("fever_confirmed", ["t1", "t3"])


def test_dead_letter_keeps_the_original_bytes() -> None:
    record = contract.dead_letter(
        topic="scantrail.kiosks",  # no personal data: kept whole for a replay
        partition=3,
        offset=9,
        key=b"p1",
        value=b"\xff not json",
        reason="not JSON",
        seen_at=datetime(2020, 2, 10, tzinfo=UTC),
    )
    again = contract.decode(contract.encode(record))
    assert isinstance(again, contract.DeadLetter)
    assert again.value == b"\xff not json"
    assert again.partition == 3 and again.offset == 9


def test_naive_datetimes_are_refused_in_python_too() -> None:
    with pytest.raises(ValueError):
        contract.ScanEvent(
            event_id="e",
            kiosk_id="k",
            site_id="s",
            direction="in",
            person_id="p",
            pass_status="valid",
            scanned_at=datetime(2020, 2, 10, 8),
            seq=1,
        )
    ok = contract.ScanEvent(
        event_id="e",
        kiosk_id="k",
        site_id="s",
        direction="in",
        person_id="p",
        pass_status="valid",
        scanned_at=datetime(2020, 2, 10, 8, tzinfo=timezone(timedelta(hours=8))),
        seq=1,
    )
    assert ok.time.utcoffset() == timedelta(hours=8)


def test_json_schema_covers_every_kind_and_required_field() -> None:
    schemas = contract.json_schemas()
    assert set(schemas) == set(VALID)
    assert "scanned_at" in schemas["scan/1"]["required"]
    assert schemas["scan/1"]["properties"]["schema"] == {"const": "scan/1", "title": "Schema"}
    assert schemas["temperature/1"]["x-topic"] == contract.TEMPERATURES

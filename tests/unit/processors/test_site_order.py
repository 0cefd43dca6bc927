"""The site stage orders readings by their own fields exactly as by the decoded reading."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from processors.live import reading_sort_key, site_sort_key
from scantrail import contract
from scantrail.errors import ContractError


def raw_reading(measured_at: str, event_id: str = "k-1-s1-t0") -> bytes:
    return json.dumps(
        {
            "schema": "temperature/1",
            "event_id": event_id,
            "kiosk_id": "k-1",
            "site_id": "site-1",
            "measured_at": measured_at,
            "celsius": 36.6,
            "method": "forehead_ir",
            "person_id": "p-1",
        }
    ).encode()


@pytest.mark.parametrize(
    "measured_at",
    [
        "2020-02-10T00:00:03.324915Z",
        "2020-02-10T08:00:03.324915+08:00",
        "2020-02-10T00:00:03Z",
        "2020-02-10T00:00:03.5+00:00",
        "2020-02-09T19:30:00-04:30",
    ],
)
def test_the_cheap_order_is_the_decoded_order(measured_at: str) -> None:
    raw = raw_reading(measured_at)
    decoded = contract.decode_as(raw, contract.TemperatureReading)
    assert site_sort_key(json.loads(raw), raw) == reading_sort_key(decoded, 1)


def test_one_instant_in_two_zones_sorts_the_same() -> None:
    at = datetime(2020, 2, 10, 3, 4, 5, 678901, tzinfo=UTC)
    east = at.astimezone(timezone(timedelta(hours=8))).isoformat()
    west = at.isoformat().replace("+00:00", "Z")
    assert site_sort_key(json.loads(raw_reading(east)), raw_reading(east)) == site_sort_key(
        json.loads(raw_reading(west)), raw_reading(west)
    )


def test_a_reading_the_cheap_path_cannot_read_is_decoded_and_refused_as_the_contract_says() -> None:
    raw = raw_reading("yesterday")
    with pytest.raises(ContractError):
        site_sort_key(json.loads(raw), raw)


def test_decode_known_validates_the_kind_and_the_fields() -> None:
    raw = raw_reading("2020-02-10T00:00:03Z")
    assert contract.decode_known(raw, contract.TemperatureReading).event_id == "k-1-s1-t0"
    with pytest.raises(ContractError):
        contract.decode_known(raw, contract.ScanEvent)  # the schema field is checked
    with pytest.raises(ContractError):
        contract.decode_known(raw.replace(b"36.6", b'"36.6"'), contract.TemperatureReading)

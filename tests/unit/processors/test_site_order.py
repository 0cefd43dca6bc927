"""The site stage decodes each forwarded record once and orders it as the offline Screener does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from processors.hop_records import encode_sample
from processors.live import parse_site_record, reading_sort_key, site_sort_key
from processors.screening_state import Confirmation, Sample
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
def test_a_forwarded_reading_is_decoded_once_and_sorted_after_its_confirmation(
    measured_at: str,
) -> None:
    raw = raw_reading(measured_at)
    reading = contract.decode_as(raw, contract.TemperatureReading)
    sample = Sample.of(reading)
    # As the person stage forwards it now, and as an earlier release did (the whole reading).
    for forwarded_reading in (encode_sample(sample), raw):
        item = parse_site_record(forwarded_reading)
        assert item == sample
        assert isinstance(item, Sample)
        assert item.time.utcoffset() == reading.measured_at.utcoffset()
        assert site_sort_key(item) == reading_sort_key(reading, 1)

    confirmation = Confirmation("site-1", "p-1", sample, sample)
    forwarded = json.dumps({"confirmation": confirmation.to_dict()}).encode()
    parsed = parse_site_record(forwarded)
    assert parsed == confirmation
    # The offline Screener judges a reading's confirmation before its drift.
    assert site_sort_key(parsed) == reading_sort_key(reading, 0) < site_sort_key(sample)


def test_one_instant_in_two_zones_sorts_the_same() -> None:
    at = datetime(2020, 2, 10, 3, 4, 5, 678901, tzinfo=UTC)
    east = at.astimezone(timezone(timedelta(hours=8))).isoformat()
    west = at.isoformat().replace("+00:00", "Z")
    assert site_sort_key(parse_site_record(raw_reading(east))) == site_sort_key(
        parse_site_record(raw_reading(west))
    )


def test_a_broken_reading_is_refused_as_the_contract_says() -> None:
    with pytest.raises(ContractError):
        parse_site_record(raw_reading("yesterday"))


def test_a_record_of_another_schema_is_passed_by_first() -> None:
    newer = json.dumps({"schema": "site-note/9", "site_id": "site-1"}).encode()
    assert parse_site_record(newer) is None
    assert site_sort_key(None) == ""


def test_decode_known_validates_the_kind_and_the_fields() -> None:
    raw = raw_reading("2020-02-10T00:00:03Z")
    assert contract.decode_known(raw, contract.TemperatureReading).event_id == "k-1-s1-t0"
    with pytest.raises(ContractError):
        contract.decode_known(raw, contract.ScanEvent)  # the schema field is checked
    with pytest.raises(ContractError):
        contract.decode_known(raw.replace(b"36.6", b'"36.6"'), contract.TemperatureReading)

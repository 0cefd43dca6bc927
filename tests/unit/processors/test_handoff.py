"""A validated event handed to the next stage in the same process (processors.handoff)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from processors.agents import Outcomes
from processors.batching import Effects
from processors.handoff import Handoff
from processors.live import parse_site_record
from scantrail import contract
from scantrail.errors import ContractError

TOPIC = object()


def raw_reading(
    event_id: str = "k-1-s1-t0", celsius: object = 36.6, indent: int | None = None
) -> bytes:
    fields = {
        "schema": "temperature/1",
        "event_id": event_id,
        "kiosk_id": "k-1",
        "site_id": "site-1",
        "measured_at": "2020-02-10T00:00:03.324915Z",
        "celsius": celsius,
        "method": "forehead_ir",
        "person_id": "p-1",
    }
    return json.dumps(fields, indent=indent).encode()


def forwarded(effects: Effects) -> list[bytes]:
    return [record for _, records in effects.forwards.values() for record in records]


def test_the_reader_takes_back_the_very_event_the_forwarder_validated() -> None:
    counts: Counter[str] = Counter()
    hop = Handoff(contract.TemperatureReading, counts)
    effects = Effects(None, Outcomes())  # type: ignore[arg-type]
    raw = raw_reading()
    reading = contract.decode_as(raw, contract.TemperatureReading)
    hop.forward(effects, TOPIC, 3, raw, reading)
    assert forwarded(effects) == [raw]
    arrived = bytes(bytearray(raw))  # what Kafka delivers is another bytes object
    assert hop.take(arrived) is reading
    assert counts == {"handoff_reused": 1}
    # Taken once: the same bytes again (a repeat delivery) are validated again.
    again = hop.take(arrived)
    assert again == reading and again is not reading
    assert counts == {"handoff_reused": 1, "handoff_validated": 1}
    assert len(hop) == 0


def test_bytes_this_process_did_not_forward_are_validated_strictly() -> None:
    counts: Counter[str] = Counter()
    hop = Handoff(contract.TemperatureReading, counts)
    raw = raw_reading()
    hop.keep(raw, contract.decode_as(raw, contract.TemperatureReading))
    # The same event with one byte changed by whoever wrote the topic: not the kept one.
    forged = raw_reading(celsius=39.9)
    assert hop.take(forged).celsius == 39.9
    with pytest.raises(ContractError, match="celsius"):
        hop.take(raw_reading(celsius="36.6"))  # strict, as decode_known is
    with pytest.raises(ContractError, match="expected schema"):
        Handoff(contract.ScanEvent, counts).take(raw)
    assert counts == {"handoff_validated": 3}


def test_a_record_that_cannot_travel_as_it_is_goes_re_encoded_and_is_not_kept() -> None:
    counts: Counter[str] = Counter()
    hop = Handoff(contract.TemperatureReading, counts)
    effects = Effects(None, Outcomes())  # type: ignore[arg-type]
    raw = raw_reading(indent=1)
    reading = contract.decode_as(raw, contract.TemperatureReading)
    hop.forward(effects, TOPIC, 0, raw, reading)
    (record,) = forwarded(effects)
    assert b"\n" not in record and record != raw
    assert len(hop) == 0
    assert hop.take(record) == reading
    assert counts == {"handoff_validated": 1}


def test_held_events_are_bounded_and_the_oldest_go_first() -> None:
    counts: Counter[str] = Counter()
    hop = Handoff(contract.TemperatureReading, counts, limit=4)
    raws = [raw_reading(f"k-1-s1-t{i}") for i in range(10)]
    for raw in raws:
        hop.keep(raw, contract.decode_as(raw, contract.TemperatureReading))
        assert len(hop) <= 4
    for raw in raws[:6]:
        hop.take(raw)
    assert counts == {"handoff_validated": 6}
    for raw in raws[6:]:
        hop.take(raw)
    assert counts == {"handoff_validated": 6, "handoff_reused": 4}


def test_the_site_stage_takes_readings_from_its_hop_and_confirmations_as_they_are() -> None:
    counts: Counter[str] = Counter()
    hop = Handoff(contract.TemperatureReading, counts)
    raw = raw_reading()
    reading = contract.decode_as(raw, contract.TemperatureReading)
    hop.keep(raw, reading)
    assert parse_site_record(raw, hop.take) is reading
    newer = json.dumps({"schema": "temperature/2", "event_id": "x"}).encode()
    assert parse_site_record(newer, hop.take) is None  # a newer release's record: passed by
    assert counts == {"handoff_reused": 1, "handoff_validated": 1}

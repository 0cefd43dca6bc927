"""Compact hop records carry exactly what the next stage keeps, and are checked where they land."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.hop_records import (
    Visit,
    decode_sample,
    decode_visit,
    encode_sample,
    encode_visit,
    is_compact,
)
from processors.live import sample_of
from processors.live_trails import visit_of
from processors.screening_state import Sample
from processors.trails import to_micros
from scantrail import contract
from scantrail.errors import ContractError

ids = st.from_regex(r"[A-Za-z0-9._:@/-]{1,40}", fullmatch=True)
offsets = st.sampled_from(
    [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-4, minutes=-30))]
)
moments = st.builds(
    lambda us, tz: (datetime(1970, 1, 2, tzinfo=UTC) + timedelta(microseconds=us)).astimezone(tz),
    st.integers(0, 9_000_000_000_000_000),
    offsets,
)
samples = st.builds(
    Sample, ids, moments, st.floats(-50, 100, allow_nan=False), ids, ids, st.none() | ids
)


@settings(max_examples=300, deadline=None)
@given(samples)
def test_a_sample_comes_back_as_it_went_with_its_offset(sample: Sample) -> None:
    record = encode_sample(sample)
    assert is_compact(record) and b"\n" not in record  # it travels in a batch of lines
    back = decode_sample(record)
    assert back == sample
    assert back.time.utcoffset() == sample.time.utcoffset()
    assert back.time_us == sample.time_us


@settings(max_examples=300, deadline=None)
@given(ids, st.integers(86_400_000_000, 9_000_000_000_000_000), ids, ids, ids)
def test_a_visit_comes_back_as_it_went(site: str, at: int, person: str, kiosk: str, e: str) -> None:
    visit = Visit(site, at, person, kiosk, e)
    assert decode_visit(encode_visit(visit)) == visit


def test_a_whole_scan_from_an_earlier_release_gives_the_same_visit() -> None:
    scan = contract.ScanEvent(
        event_id="s-1",
        kiosk_id="k-1",
        site_id="site-1",
        direction="out",
        person_id="p-1",
        pass_status="valid",
        scanned_at=datetime(2020, 2, 10, 8, 0, 3, 250000, tzinfo=timezone(timedelta(hours=8))),
        seq=1,
    )
    record = contract.encode(scan)
    assert not is_compact(record)
    expected = Visit("site-1", to_micros(scan.scanned_at), "p-1", "k-1", "s-1")
    assert visit_of(record) == expected == decode_visit(encode_visit(expected))


def test_a_whole_reading_from_an_earlier_release_gives_the_same_sample() -> None:
    reading = contract.TemperatureReading(
        event_id="t-1",
        kiosk_id="k-1",
        site_id="site-1",
        measured_at=datetime(2020, 2, 10, 8, 0, 3, tzinfo=timezone(timedelta(hours=8))),
        celsius=37.4,
        method="forehead_ir",
        person_id="p-1",
        ambient_c=12.0,
    )
    sample = Sample.of(reading)
    for record in (contract.encode(reading), encode_sample(sample)):  # the person stage's input
        assert sample_of(record) == sample


GOOD_SAMPLE = ["sample/1", "t-1", "2020-02-10T08:00:00+08:00", 36.6, "k-1", "s-1", "p-1"]
GOOD_VISIT = ["visit/1", "s-1", 1_581_292_800_000_000, "p-1", "k-1", "e-1"]


def test_the_good_records_below_are_good() -> None:
    assert decode_sample(json.dumps(GOOD_SAMPLE).encode()).celsius == 36.6
    assert decode_visit(json.dumps(GOOD_VISIT).encode()).at_us == 1_581_292_800_000_000


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (0, "sample/2"),  # a version this release does not know
        (1, "t 1"),  # not an identifier
        (1, ""),
        (1, "x" * 129),
        (1, 7),
        (2, "2020-02-10T08:00:00"),  # no offset
        (2, "2262-04-12T00:00:00+00:00"),  # beyond the contract's window
        (2, "yesterday"),
        (2, 1_581_292_800),
        (3, "36.6"),
        (3, 100.5),
        (3, True),
        (3, None),
        (4, None),
        (6, "+86 138 0013 8000"),
    ],
)
def test_a_broken_sample_is_refused(index: int, value: object) -> None:
    fields = list(GOOD_SAMPLE)
    fields[index] = value
    with pytest.raises(ContractError):
        decode_sample(json.dumps(fields).encode())


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (0, "visit/0"),
        (1, "s/1 x"),
        (2, 1.5e15),
        (2, "1581292800000000"),
        (2, True),
        (2, 0),  # before the contract's window
        (2, 2**63),
        (3, None),
        (5, ["e-1"]),
    ],
)
def test_a_broken_visit_is_refused(index: int, value: object) -> None:
    fields = list(GOOD_VISIT)
    fields[index] = value
    with pytest.raises(ContractError):
        decode_visit(json.dumps(fields).encode())


@pytest.mark.parametrize(
    "record",
    [b"", b"[", b"[]", b'{"schema":"visit/1"}', b"[1e999]", b'["visit/1"]', b"null", b"[NaN]"],
)
def test_malformed_records_are_refused_not_crashed_on(record: bytes) -> None:
    for decode in (decode_sample, decode_visit):
        with pytest.raises(ContractError):
            decode(record)

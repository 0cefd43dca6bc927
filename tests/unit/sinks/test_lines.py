"""The fast temperature line is byte for byte the reference line.

A re-delivered reading must rewrite exactly the point written before, so the
hot-path builder may not differ from the definition through ``line()`` in tags,
fields or timestamp, whatever the values.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scantrail.contract import TemperatureReading
from sinks.lines import (
    dead_letter_line,
    reason_kind,
    temperature_line,
    temperature_line_reference,
)

identifiers = st.from_regex(r"[A-Za-z0-9._:@/-]{1,24}", fullmatch=True)
pseudonyms = identifiers.filter(lambda s: not s.lstrip("+").isdigit())


@given(
    event_id=identifiers,
    kiosk_id=identifiers,
    site_id=identifiers,
    seconds=st.integers(min_value=0, max_value=10**9),
    micros=st.integers(min_value=0, max_value=999_999),
    celsius=st.floats(min_value=-50.0, max_value=100.0, allow_nan=False),
    method=st.sampled_from(["forehead_ir", "wrist_ir", "ear_ir", "oral", "axillary"]),
    person_id=st.none() | pseudonyms,
    ambient_c=st.none() | st.floats(min_value=-60.0, max_value=70.0, allow_nan=False),
)
def test_fast_temperature_line_equals_the_reference(
    event_id: str,
    kiosk_id: str,
    site_id: str,
    seconds: int,
    micros: int,
    celsius: float,
    method: str,
    person_id: str | None,
    ambient_c: float | None,
) -> None:
    reading = TemperatureReading(
        event_id=event_id,
        kiosk_id=kiosk_id,
        site_id=site_id,
        measured_at=datetime(1990, 1, 1, tzinfo=UTC)
        + timedelta(seconds=seconds, microseconds=micros),
        celsius=celsius,
        method=method,  # type: ignore[arg-type]
        person_id=person_id,
        ambient_c=ambient_c,
    )
    assert temperature_line(reading) == temperature_line_reference(reading)
    assert temperature_line(reading) == temperature_line(reading)  # cached prefix, same line


def test_valid_flag_and_escaping_in_a_known_line() -> None:
    reading = TemperatureReading(
        event_id="k-1-t1",
        kiosk_id="kiosk-001",
        site_id="site-000",
        measured_at=datetime(2020, 2, 10, tzinfo=UTC),
        celsius=45.5,
        method="forehead_ir",
    )
    line = temperature_line(reading)
    assert line.startswith("temperature,kiosk_id=kiosk-001,method=forehead_ir,site_id=site-000 ")
    assert 'celsius=45.5,event_id="k-1-t1",valid=false ' in line
    assert "person_id" not in line and "ambient_c" not in line


def test_sink_state_forgets_old_minutes_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    from sinks.sink_state import MinuteKey, SinkState, minute_of

    state = SinkState(tmp_path / "state.db")
    old = datetime(2020, 2, 1, 8, 0, tzinfo=UTC)
    new = datetime(2020, 2, 10, 8, 0, tzinfo=UTC)
    k_old = MinuteKey("s", "k", "in", minute_of(old))
    k_new = MinuteKey("s", "k", "in", minute_of(new))
    assert state.add_passages([(k_old, "a"), (k_old, "b"), (k_new, "c")]) == {k_old: 2, k_new: 1}
    assert state.prune(new, timedelta(days=7)) == 2
    # The recent minute still knows its scan: a re-delivery does not raise it.
    assert state.add_passages([(k_new, "c")]) == {k_new: 1}
    assert state.add_passages([(k_new, "d")]) == {k_new: 2}


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("not JSON: Expecting value: line 1 column 1 (char 0)", "not JSON"),
        (
            "invalid temperature/1: celsius: Input should be a finite number",
            "invalid temperature/1",
        ),
        ("unknown schema 'x, y=1 z'", "unknown schema"),
        ("schema 'scan/1' does not belong here (expected 'alert/1')", "schema on the wrong topic"),
        ("no value (a tombstone); nothing to write", "tombstone"),
        ("invalid evil, tag=1: x", "other"),  # hostile text never becomes a tag
    ],
)
def test_dead_letter_reasons_become_few_tag_values(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind


def test_a_redelivered_dead_letter_rewrites_its_point() -> None:
    first = dead_letter_line("t.scantrail.scans", "not JSON: x", 2, 41, 1_600_000_000_000)
    again = dead_letter_line("t.scantrail.scans", "not JSON: y", 2, 41, 1_600_000_000_000)
    other = dead_letter_line("t.scantrail.scans", "not JSON: x", 2, 42, 1_600_000_000_000)
    assert first == again
    assert first.split(" ")[-1] != other.split(" ")[-1]
    assert first.startswith("deadletters,reason=not\\ JSON,topic=t.scantrail.scans count=1i,")

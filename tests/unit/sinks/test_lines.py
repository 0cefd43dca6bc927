"""The fast temperature line is byte for byte the reference line.

A re-delivered reading must rewrite exactly the point written before, so the
hot-path builder may not differ from the definition through ``line()`` in tags,
fields or timestamp, whatever the values.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from scantrail.contract import TemperatureReading
from sinks.lines import temperature_line, temperature_line_reference

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

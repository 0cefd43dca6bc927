from __future__ import annotations

import os
import tty
from datetime import UTC, datetime

import pytest

from ingest.thermometer import SerialThermometer, SimulatedThermometer, format_line, parse_line
from scantrail.clock import FixedClock

T0 = datetime(2020, 2, 10, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "celsius", "ambient", "method"),
    [
        ("T=36.7;AMB=12.5;M=forehead_ir", 36.7, 12.5, "forehead_ir"),
        ("T=33.1", 33.1, None, "forehead_ir"),
        ("SN=A7;T=55.0;BAT=80;M=wrist_ir", 55.0, None, "wrist_ir"),
        ("t=28.4;amb=-3.0", 28.4, -3.0, "forehead_ir"),
    ],
)
def test_parse_line(line: str, celsius: float, ambient: float | None, method: str):
    s = parse_line(line, T0)
    assert (s.celsius, s.ambient_c, s.method, s.measured_at) == (celsius, ambient, method, T0)


@pytest.mark.parametrize("line", ["", "hello", "AMB=3.0", "T=abc", "T=nan", "T=36.6;M=armpit"])
def test_lines_without_a_reading_are_rejected(line: str):
    with pytest.raises(ValueError):
        parse_line(line, T0)


def test_format_line_round_trips():
    line = format_line(38.2, 4.0, "ear_ir").decode()
    assert line.endswith("\r\n")
    assert parse_line(line, T0).celsius == 38.2


def test_serial_thermometer_over_a_pseudo_terminal():
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        thermo = SerialThermometer(os.ttyname(slave), clock=FixedClock(T0))
        os.write(master, b"# booting\r\nT=36.7;AMB=12.5;M=forehead_ir\r\ngarbage\r\nT=31.9\r\n")
        first = thermo.read(timeout=2.0)
        second = thermo.read(timeout=2.0)
        assert first is not None and (first.celsius, first.ambient_c) == (36.7, 12.5)
        assert second is not None and second.celsius == 31.9  # implausible, kept as measured
        assert thermo.malformed_lines == 1
        assert thermo.read(timeout=0.2) is None
        thermo.close()
    finally:
        os.close(master)
        os.close(slave)


def test_simulated_is_seeded():
    a = [SimulatedThermometer(seed=5, clock=FixedClock(T0)).measure().celsius for _ in range(1)]
    b = [SimulatedThermometer(seed=5, clock=FixedClock(T0)).measure().celsius for _ in range(1)]
    assert a == b


def test_simulated_cold_street_reads_low_then_recovers():
    sim = SimulatedThermometer(
        seed=1, ambient_c=0.0, fever_rate=0, error_rate=0, clock=FixedClock(T0)
    )
    at_door = sorted(sim.measure(0).celsius for _ in range(200))[100]
    after_5 = sorted(sim.measure(5).celsius for _ in range(200))[100]
    assert 32.5 < at_door < 34.0
    assert 35.6 < after_5 < 36.6


def test_simulated_has_fevers_and_sensor_errors():
    sim = SimulatedThermometer(
        seed=2, ambient_c=18.0, fever_rate=0.05, error_rate=0.02, clock=FixedClock(T0)
    )
    values = [sim.measure(10).celsius for _ in range(2000)]
    assert any(v >= 37.3 and v <= 42 for v in values)
    assert any(v < 34 or v > 42 for v in values)

"""Thermometers behind one small interface: a serial device and a simulated one.

Serial line protocol (ASCII, one reading per line, ``\\r\\n`` or ``\\n``)::

    T=36.7;AMB=12.5;M=forehead_ir\\r\\n

* ``T`` — the measured temperature in °C (required), a decimal number as
  reported, however implausible (28.1 and 55.0 are published as they are).
* ``AMB`` — ambient temperature in °C (optional).
* ``M`` — method (optional, default ``forehead_ir``): one of the contract's
  ``forehead_ir``, ``wrist_ir``, ``ear_ir``, ``oral``, ``axillary``.
* Other ``KEY=value`` fields are ignored (devices add serial numbers, battery).
* Lines starting with ``#`` are device chatter; a line without a usable ``T``
  is counted in ``malformed_lines`` and skipped (it is not a reading).

9600 baud, 8N1 by default. The kiosk stamps ``measured_at`` from its own clock
when the line arrives: cheap devices have no clock worth trusting.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, get_args

from scantrail.clock import Clock, SystemClock
from scantrail.contract import Method

__all__ = [
    "Sample",
    "SerialThermometer",
    "SimulatedThermometer",
    "Thermometer",
    "format_line",
    "parse_line",
]

_METHODS: tuple[str, ...] = get_args(Method)


@dataclass(frozen=True)
class Sample:
    """One measurement as the device gave it; the kiosk turns it into a TemperatureReading."""

    celsius: float
    measured_at: datetime
    method: Method = "forehead_ir"
    ambient_c: float | None = None


class Thermometer(Protocol):
    def read(self, timeout: float = 1.0) -> Sample | None:
        """The next measurement, or None if none arrived within ``timeout`` seconds."""
        ...

    def close(self) -> None: ...


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def parse_line(line: str, measured_at: datetime) -> Sample:
    """Parse one protocol line; ValueError if it carries no reading."""
    fields: dict[str, str] = {}
    for part in line.strip().split(";"):
        if "=" in part:
            key, _, value = part.partition("=")
            fields[key.strip().upper()] = value.strip()
    if "T" not in fields:
        raise ValueError(f"no T= field in {line!r}")
    method = fields.get("M", "forehead_ir")
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}")
    return Sample(
        celsius=_number(fields["T"]),
        measured_at=measured_at,
        method=method,  # type: ignore[arg-type]
        ambient_c=_number(fields["AMB"]) if "AMB" in fields else None,
    )


def format_line(
    celsius: float, ambient_c: float | None = None, method: str = "forehead_ir"
) -> bytes:
    """What a device sends (used by the simulator and tests)."""
    parts = [f"T={celsius:.1f}"]
    if ambient_c is not None:
        parts.append(f"AMB={ambient_c:.1f}")
    parts.append(f"M={method}")
    return (";".join(parts) + "\r\n").encode("ascii")


class SerialThermometer:
    """A thermometer on a serial port speaking the line protocol above (pyserial)."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        clock: Clock | None = None,
        serial_factory: Any = None,
    ) -> None:
        if serial_factory is None:
            import serial  # the pure modules and tests that do not need a port never import it

            serial_factory = serial.Serial
        self._port = serial_factory(port, baudrate=baudrate, timeout=1.0)
        self._clock: Clock = clock or SystemClock()
        self._buffer = b""
        self.malformed_lines = 0

    def read(self, timeout: float = 1.0) -> Sample | None:
        self._port.timeout = timeout
        while True:
            line = self._port.readline()
            if not line:
                return None
            if not line.endswith(b"\n"):  # timed out mid-line: keep the start for next time
                self._buffer += line
                return None
            line, self._buffer = self._buffer + line, b""
            text = line.decode("ascii", errors="replace").strip()
            if not text or text.startswith("#"):
                continue
            try:
                return parse_line(text, self._clock.now())
            except ValueError:
                self.malformed_lines += 1

    def close(self) -> None:
        self._port.close()


@dataclass
class SimulatedThermometer:
    """Seeded, realistic forehead readings at a winter gate (see field notes).

    * Core temperature ~ N(36.8, 0.25); ``fever_rate`` of people run 37.8–39.8 °C.
    * Forehead IR reads below core, much more so for someone straight off a cold
      street: at 0 °C ambient about 33.2 °C at once, 34.9 after 1 min, 36.1 after
      5 min. The deficit scales with how cold it is outside and decays with
      ``minutes_indoors``.
    * ``error_rate`` of readings are sensor or placement errors outside 34–42 °C
      (a hand in the way, a hair fringe, a glitch): published as measured.
    """

    seed: int = 1
    ambient_c: float = 2.0
    fever_rate: float = 0.02
    error_rate: float = 0.01
    clock: Clock = field(default_factory=SystemClock)
    method: Method = "forehead_ir"

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - simulation, not security

    def measure(self, minutes_indoors: float | None = None) -> Sample:
        rng = self._rng
        now = self.clock.now()
        if rng.random() < self.error_rate:
            value = rng.choice([rng.uniform(20.0, 33.9), rng.uniform(42.1, 60.0)])
            return Sample(round(value, 1), now, self.method, round(self.ambient_c, 1))
        if minutes_indoors is None:
            minutes_indoors = rng.expovariate(1.0)  # most walk straight in from the street
        core = rng.gauss(36.8, 0.25)
        if rng.random() < self.fever_rate:
            core = rng.uniform(37.8, 39.8)
        skin = core - 0.6  # forehead skin reads below core even when warm
        cold = max(0.0, (20.0 - self.ambient_c) / 20.0) * 3.0  # deficit at arrival
        deficit = cold * math.exp(-minutes_indoors / 1.5)
        value = skin - deficit + rng.gauss(0, 0.15)
        return Sample(round(value, 1), now, self.method, round(self.ambient_c, 1))

    def read(self, timeout: float = 1.0) -> Sample | None:
        return self.measure()

    def close(self) -> None:
        return None

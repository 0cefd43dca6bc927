"""Pair thermometer readings with the scan they belong to. Pure.

A reading taken within ``window`` (10 s) of a scan at the same gate (same
``kiosk_id``) is that person's reading: ``person_id`` and ``scan_event_id`` are
set from the scan. Everything else is published unpaired. Nothing is dropped and
no value is touched: a 31.2 °C cold-street reading or a 55 °C sensor glitch is
published exactly as measured, paired or not.

Gate practice is "scan, then measure", but staff sometimes measure first. So:

* :meth:`Pairer.add_reading` pairs at once with the nearest earlier scan within
  the window and returns it for publishing; with no such scan the reading is
  held;
* :meth:`Pairer.add_scan` returns held readings that this scan now claims;
* :meth:`Pairer.release` returns held readings whose window has closed,
  unpaired; :meth:`Pairer.flush` returns every held reading (shutdown).

Hold time is at most ``window``, so a fever reading is never delayed by more
than 10 s.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scantrail.contract import ScanEvent, TemperatureReading

__all__ = ["PAIRING_WINDOW", "Pairer", "pair_reading"]

PAIRING_WINDOW = timedelta(seconds=10)


def pair_reading(reading: TemperatureReading, scan: ScanEvent) -> TemperatureReading:
    """The reading with the scan's person attached; the measurement is untouched."""
    return reading.model_copy(update={"person_id": scan.person_id, "scan_event_id": scan.event_id})


def _nearest(
    reading: TemperatureReading, scans: list[ScanEvent], window: timedelta
) -> ScanEvent | None:
    best: ScanEvent | None = None
    best_gap: timedelta | None = None
    for scan in scans:
        if scan.kiosk_id != reading.kiosk_id:
            continue
        gap = abs(reading.measured_at - scan.scanned_at)
        if gap <= window and (best_gap is None or gap < best_gap):
            best, best_gap = scan, gap
    return best


@dataclass
class Pairer:
    window: timedelta = PAIRING_WINDOW
    _scans: deque[ScanEvent] = field(default_factory=deque, init=False)
    _held: list[TemperatureReading] = field(default_factory=list, init=False)

    def add_scan(self, scan: ScanEvent) -> list[TemperatureReading]:
        """Remember a scan; return held readings it claims (now paired)."""
        self._scans.append(scan)
        self._forget_before(scan.scanned_at - 2 * self.window)
        claimed, kept = [], []
        for reading in self._held:
            if _nearest(reading, [scan], self.window) is scan:
                claimed.append(pair_reading(reading, scan))
            else:
                kept.append(reading)
        self._held = kept
        return claimed

    def add_reading(self, reading: TemperatureReading) -> list[TemperatureReading]:
        """Pair with the nearest scan at the gate within the window, or hold it."""
        if reading.person_id is not None:  # already attributed (e.g. a handheld with its own id)
            return [reading]
        earlier = [s for s in self._scans if s.scanned_at <= reading.measured_at]
        scan = _nearest(reading, earlier, self.window)
        if scan is not None:
            return [pair_reading(reading, scan)]
        self._held.append(reading)
        return []

    def restore(self, readings: list[TemperatureReading]) -> None:
        """Hold readings again after a restart (their scans, if any, were not kept)."""
        self._held.extend(r for r in readings if r.person_id is None)

    def release(self, now: datetime) -> list[TemperatureReading]:
        """Held readings whose window has closed, unpaired, oldest first."""
        due = [r for r in self._held if now - r.measured_at > self.window]
        self._held = [r for r in self._held if now - r.measured_at <= self.window]
        return sorted(due, key=lambda r: r.measured_at)

    def flush(self) -> list[TemperatureReading]:
        """Every held reading, unpaired (kiosk shutdown): nothing is ever dropped."""
        out, self._held = sorted(self._held, key=lambda r: r.measured_at), []
        return out

    @property
    def held(self) -> int:
        return len(self._held)

    def _forget_before(self, cutoff: datetime) -> None:
        while self._scans and self._scans[0].scanned_at < cutoff:
            self._scans.popleft()

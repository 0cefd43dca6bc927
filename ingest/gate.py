"""A real gate's loop: camera frames and thermometer samples in, spooled events out.

For each frame: decode the QR codes, verify each pass offline, merge repeat
sightings of one pass (3 s), and record a scan. Thermometer samples become
readings paired with the scan they belong to (10 s, same gate) or published
unpaired. Nothing here talks to Kafka: everything goes to the spool, and the
publisher thread takes it from there.

A QR that is not a pass (``unknown``) names nobody, so it is counted in the
heartbeat's ``decode_failures`` rather than published as a scan; forged,
expired and revoked passes are published, because officers must see them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from ingest.admission import admit
from ingest.camera import Frame
from ingest.decode import FrameDecoder
from ingest.dedupe import ScanDeduplicator
from ingest.kiosk import Kiosk, ScanExtras
from ingest.kiosk_runner import HeartbeatTimer
from ingest.pairing import Pairer
from ingest.passes import PassVerifier
from ingest.thermometer import Thermometer
from scantrail.clock import Clock
from scantrail.contract import Direction, ScanEvent, TemperatureReading

log = logging.getLogger(__name__)


@dataclass
class GateCounts:
    frames: int = 0
    scans: int = 0
    repeats: int = 0
    unknown_codes: int = 0
    readings: int = 0
    paired: int = 0
    refused: int = 0  # scans recorded but refused entry (pass problems, red/yellow codes)


class Gate:
    def __init__(
        self,
        kiosk: Kiosk,
        verifier: PassVerifier,
        clock: Clock,
        *,
        decoder: FrameDecoder | None = None,
        direction: Direction = "in",
        thermometer: Thermometer | None = None,
        measure_after_scan: bool = False,
    ) -> None:
        self.kiosk = kiosk
        self.verifier = verifier
        self.clock = clock
        self.decoder = decoder or FrameDecoder()
        self.direction: Direction = direction
        self.thermometer = thermometer
        # A simulated thermometer answers every read; it is asked once per scan
        # instead, as staff do, rather than once per camera frame.
        self.measure_after_scan = measure_after_scan
        self.dedupe = ScanDeduplicator()
        self.pairer = Pairer()
        self.counts = GateCounts()
        # Readings that waited for a scan when the kiosk last stopped: their scans
        # are gone from memory, so they go out unpaired once their window closes.
        recovered = kiosk.held_readings()
        self._spool(r for r in recovered if r.person_id is not None)
        self.pairer.restore(recovered)
        if recovered:
            log.info("recovered %d readings held at the last stop", len(recovered))

    def on_frame(self, frame: Frame) -> list[ScanEvent]:
        self.counts.frames += 1
        now = self.clock.now()
        scans: list[ScanEvent] = []
        for text in self.decoder.decode(frame.image):
            verdict = self.verifier.verify(text, now)
            if verdict.status == "unknown":
                self.counts.unknown_codes += 1
                self.kiosk.decode_failures += 1
                continue
            key = verdict.pass_id or hashlib.sha256(text.encode()).hexdigest()
            if not self.dedupe.admit(key, frame.at):
                self.counts.repeats += 1
                continue
            person = (
                verdict.person_id or f"unknown-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
            )
            scan = self.kiosk.record_scan(
                person_id=person,
                direction=self.direction,
                pass_status=verdict.status,
                pass_id=verdict.pass_id,
                health_code=verdict.health_code,
                at=now,
                extra=ScanExtras(household_id=verdict.household_id, pass_kind=verdict.pass_kind),
            )
            self.counts.scans += 1
            decision = admit(verdict)
            if not decision.admit:
                # What the gate shows: the scan is recorded either way (officers see it).
                self.counts.refused += 1
                log.warning(
                    "REFUSED %s at %s: %s",
                    scan.event_id,
                    self.kiosk.gate.kiosk_id,
                    decision.message(),
                )
            scans.append(scan)
            self._spool(self.pairer.add_scan(scan))
            if self.measure_after_scan:
                self._read_thermometer(0.0)
        return scans

    def poll_thermometer(self, timeout: float = 0.0) -> None:
        if not self.measure_after_scan:
            self._read_thermometer(timeout)
        self._spool(self.pairer.release(self.clock.now()))

    def _read_thermometer(self, timeout: float) -> None:
        if self.thermometer is not None:
            sample = self.thermometer.read(timeout)
            if sample is not None:
                reading = self.kiosk.new_reading(
                    celsius=sample.celsius,
                    method=sample.method,
                    at=sample.measured_at,
                    ambient_c=sample.ambient_c,
                )
                self.counts.readings += 1
                self._spool(self.pairer.add_reading(reading))

    def close(self) -> None:
        self._spool(self.pairer.flush())

    def _spool(self, readings: Iterable[TemperatureReading]) -> None:
        for reading in readings:
            if reading.scan_event_id is not None:
                self.counts.paired += 1
            self.kiosk.spool_reading(reading)


def run_gate(gate: Gate, frames: Iterable[Frame], heartbeat_s: float = 30.0) -> GateCounts:
    """Process every frame of a source; heartbeats on the way; flush held readings at the end."""
    heartbeat = HeartbeatTimer(gate.kiosk, gate.clock, heartbeat_s)

    def note_dropped() -> None:  # a live camera counts the frames it had to skip
        dropped = getattr(frames, "dropped", None)
        if isinstance(dropped, int) and getattr(frames, "live", False):
            gate.kiosk.frames_dropped = dropped

    def note_health() -> None:  # what the heartbeat says about the list and the decoder
        note_dropped()
        revocations = gate.verifier.revocations
        gate.kiosk.revocations_error = None if revocations is None else revocations.last_error
        refused = [getattr(gate.decoder, "too_large", None), getattr(frames, "too_large", None)]
        counted = [n for n in refused if isinstance(n, int)]
        gate.kiosk.frames_too_large = sum(counted) if counted else None
        gate.kiosk.frames_over_budget = getattr(gate.decoder, "over_budget", None)

    try:
        for frame in frames:
            note_health()
            heartbeat.tick()
            gate.on_frame(frame)
            gate.poll_thermometer()
    finally:
        gate.close()
        note_health()
        gate.kiosk.heartbeat(gate.clock.now())
    return gate.counts

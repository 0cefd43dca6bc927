"""One gate: turns what the camera and thermometer saw into spooled contract events.

The kiosk makes every id itself (``event_id`` from its own durable counters,
``seq`` increasing per kiosk), writes each event to the spool before anything
else, and leaves sending to :class:`ingest.publisher.SpoolPublisher`. A scan is
therefore recorded even when the network is down, and it keeps its identity
when it is re-sent after a crash.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from ingest.spool import Spool
from scantrail import __version__, contract
from scantrail.contract import (
    Direction,
    HealthCode,
    Method,
    PassStatus,
    PersonKind,
    VenueKind,
)


@dataclass(frozen=True)
class ScanExtras:
    """Optional ``scan/1`` fields added within version 1 (absent when None)."""

    household_id: str | None = None
    pass_kind: str | None = None
    venue_kind: VenueKind | None = None
    venue_site_id: str | None = None
    person_kind: PersonKind | None = None
    visiting: str | None = None

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class GateIdentity:
    kiosk_id: str
    site_id: str


class Kiosk:
    """Records scans, readings and heartbeats of one gate into its spool."""

    def __init__(
        self, gate: GateIdentity, spool: Spool, *, event_prefix: str | None = None
    ) -> None:
        self.gate = gate
        self.spool = spool
        # Event ids start with the kiosk id; a check-in server that records for
        # many venues into one spool names them by server and venue instead.
        self.event_prefix = event_prefix or gate.kiosk_id
        self.scans_since_start = 0
        self.decode_failures = 0
        self.frames_dropped: int | None = None  # live sources only (ingest.camera)
        self.revocations_error: str | None = None  # set by the gate (ingest.passes)
        self.frames_too_large: int | None = None  # set by the gate (ingest.decode)
        self.frames_over_budget: int | None = None
        self.last_scan_at: datetime | None = None

    def record_scan(
        self,
        *,
        person_id: str,
        direction: Direction,
        pass_status: PassStatus,
        at: datetime,
        pass_id: str | None = None,
        health_code: HealthCode | None = None,
        extra: ScanExtras | None = None,
    ) -> contract.ScanEvent:
        """Spool one scan; ``extra`` carries the optional fields (household, venue, visitor)."""
        more = extra.fields() if extra is not None else {}

        def build(seq: int) -> contract.ScanEvent:
            return contract.ScanEvent(
                event_id=f"{self.event_prefix}-s{seq:010d}",
                kiosk_id=self.gate.kiosk_id,
                site_id=self.gate.site_id,
                direction=direction,
                person_id=person_id,
                pass_id=pass_id,
                pass_status=pass_status,
                health_code=health_code,
                scanned_at=at,
                seq=seq,
                **more,
            )

        event = self.spool.append_numbered("scan_seq", build)
        self.scans_since_start += 1
        self.last_scan_at = at
        return event

    def record_visitor(
        self,
        *,
        visitor_id: str,
        direction: Direction,
        at: datetime,
        visiting: str | None = None,
        celsius: float | None = None,
        method: Method = "forehead_ir",
        extra: ScanExtras | None = None,
    ) -> tuple[contract.ScanEvent, contract.TemperatureReading | None]:
        """Spool a visitor's passage (no pass: ``pass_status`` unknown) and their reading.

        ``visitor_id`` is already the keyed hash (:func:`ingest.visitors.visitor_id`):
        what the visitor showed never reaches the kiosk's spool.
        """
        base = extra or ScanExtras()
        scan = self.record_scan(
            person_id=visitor_id,
            direction=direction,
            pass_status="unknown",
            at=at,
            extra=replace(base, person_kind="visitor", visiting=visiting),
        )
        reading = None
        if celsius is not None:
            reading = self.record_reading(
                celsius=celsius,
                method=method,
                at=at,
                person_id=visitor_id,
                scan_event_id=scan.event_id,
            )
        return scan, reading

    def record_reading(
        self,
        *,
        celsius: float,
        method: Method,
        at: datetime,
        person_id: str | None = None,
        scan_event_id: str | None = None,
        ambient_c: float | None = None,
    ) -> contract.TemperatureReading:
        """Spool a reading exactly as measured: judging it is the processors' job."""

        def build(number: int) -> contract.TemperatureReading:
            return self._reading(number, celsius, method, at, ambient_c, person_id, scan_event_id)

        return self.spool.append_numbered("reading", build)

    def new_reading(
        self,
        *,
        celsius: float,
        method: Method,
        at: datetime,
        ambient_c: float | None = None,
    ) -> contract.TemperatureReading:
        """A reading with a reserved id, held on disk while it waits up to 10 s for its scan.

        Number and hold are one transaction, so a kiosk killed while the
        reading waits neither reuses the id nor loses the reading: the next
        start finds it in :meth:`held_readings` and publishes it.
        """
        return self.spool.hold_numbered(
            "reading",
            lambda number: self._reading(number, celsius, method, at, ambient_c, None, None),
        )

    def _reading(
        self,
        number: int,
        celsius: float,
        method: Method,
        at: datetime,
        ambient_c: float | None,
        person_id: str | None,
        scan_event_id: str | None,
    ) -> contract.TemperatureReading:
        return contract.TemperatureReading(
            event_id=f"{self.event_prefix}-t{number:010d}",
            kiosk_id=self.gate.kiosk_id,
            site_id=self.gate.site_id,
            measured_at=at,
            celsius=celsius,
            method=method,
            person_id=person_id,
            scan_event_id=scan_event_id,
            ambient_c=ambient_c,
        )

    def spool_reading(self, reading: contract.TemperatureReading) -> None:
        """Queue a reading for the broker (paired or not); it is no longer held."""
        self.spool.release(reading)

    def held_readings(self) -> list[contract.TemperatureReading]:
        """Readings that were still waiting for a scan when the kiosk stopped."""
        return self.spool.held()

    def heartbeat(self, now: datetime) -> contract.KioskHeartbeat:
        event = contract.KioskHeartbeat(
            kiosk_id=self.gate.kiosk_id,
            site_id=self.gate.site_id,
            sent_at=now,
            spool_depth=self.spool.depth(),
            last_scan_at=self.last_scan_at,
            scans_since_start=self.scans_since_start,
            decode_failures=self.decode_failures,
            version=__version__,
            frames_dropped=self.frames_dropped,
            revocations_error=None
            if self.revocations_error is None
            else self.revocations_error[:500],
            frames_too_large=self.frames_too_large,
            frames_over_budget=self.frames_over_budget,
        )
        self.spool.append(event)
        return event

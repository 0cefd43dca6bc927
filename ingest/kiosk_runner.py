"""Drive a kiosk: its publisher thread, heartbeats, and a source of passages.

Two sources exist: the camera and thermometer of a real gate (see
:mod:`ingest.gate`), and a simulated queue of residents for load and fault
tests. Both feed the same :class:`ingest.kiosk.Kiosk`, so the spool and the
publisher are exercised exactly as at a real gate.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta

from ingest.kiosk import Kiosk
from ingest.publisher import SpoolPublisher
from scantrail.clock import Clock

log = logging.getLogger(__name__)


@dataclass
class HeartbeatTimer:
    """Emits a heartbeat every ``every_s`` seconds of the given clock."""

    kiosk: Kiosk
    clock: Clock
    every_s: float = 30.0
    _last: float = float("-inf")

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.kiosk.heartbeat(self.clock.now())


def run_simulated(
    kiosk: Kiosk,
    publisher: SpoolPublisher,
    clock: Clock,
    *,
    scans: int,
    rate: float,
    residents: int = 500,
    seed: int = 1,
    heartbeat_s: float = 30.0,
) -> None:
    """Record ``scans`` passages at ``rate`` per second, each with a paired reading."""
    rng = random.Random(f"{seed}-{kiosk.gate.kiosk_id}")
    heartbeat = HeartbeatTimer(kiosk, clock, heartbeat_s)
    started = time.monotonic()
    for i in range(scans):
        due = started + i / rate if rate > 0 else 0.0
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        heartbeat.tick()
        now = clock.now()
        resident = rng.randrange(residents)
        scan = kiosk.record_scan(
            person_id=f"p-sim-{resident:06d}",
            direction=rng.choice(("in", "out")),
            pass_status="valid",
            pass_id=f"pass-sim-{resident:06d}",
            health_code="green",
            at=now,
        )
        kiosk.record_reading(
            celsius=round(rng.gauss(36.4, 0.3), 2),
            method="forehead_ir",
            at=now + timedelta(seconds=2),
            person_id=scan.person_id,
            scan_event_id=scan.event_id,
            ambient_c=round(rng.uniform(-3, 5), 1),
        )
        if i and i % 1000 == 0:
            log.info("recorded %d scans; %d events spooled", i, kiosk.spool.depth())
    kiosk.heartbeat(clock.now())

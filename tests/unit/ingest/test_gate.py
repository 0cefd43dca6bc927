"""A gate's loop on real QR images and a real spool: scans, verdicts, repeats, pairing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from ingest.camera import Frame
from ingest.gate import Gate
from ingest.kiosk import GateIdentity, Kiosk
from ingest.pass_sheet import write_pass_png
from ingest.passes import GatePass, PassVerifier, generate_key, issue_pass
from ingest.spool import Spool
from ingest.thermometer import Sample
from scantrail import contract
from scantrail.clock import FixedClock

NOW = datetime(2020, 2, 10, 8, 0, tzinfo=UTC)


def pass_frame(tmp_path: Path, text: str, name: str) -> np.ndarray:  # type: ignore[type-arg]
    path = write_pass_png(text, tmp_path / f"{name}.png")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    canvas = np.full((720, 1280, 3), 235, dtype=np.uint8)
    h, w = image.shape[:2]
    canvas[100 : 100 + h, 200 : 200 + w] = image
    return canvas


class OneReading:
    """A thermometer that has exactly the samples it is given."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def read(self, timeout: float = 1.0) -> Sample | None:
        return self.samples.pop(0) if self.samples else None

    def close(self) -> None:
        return None


def spooled(spool: Spool) -> list[contract.Event]:
    return [contract.decode(row.value) for row in spool.peek(1000)]


def test_a_gate_records_verdicts_merges_repeats_and_pairs_readings(tmp_path: Path) -> None:
    issuer = generate_key()
    valid = issue_pass(
        GatePass(
            "pass-1",
            "p-000001",
            "site-a",
            "hh-1",
            NOW - timedelta(days=1),
            NOW + timedelta(days=13),
        ),
        issuer,
    )
    expired = issue_pass(
        GatePass(
            "pass-2",
            "p-000002",
            "site-a",
            "hh-2",
            NOW - timedelta(days=20),
            NOW - timedelta(days=6),
        ),
        issuer,
    )
    forged = issue_pass(
        GatePass(
            "pass-3", "p-000003", "site-a", "hh-3", NOW - timedelta(days=1), NOW + timedelta(days=1)
        ),
        generate_key(),  # signed by someone else
    )
    clock = FixedClock(NOW)
    spool = Spool(tmp_path / "spool.db")
    kiosk = Kiosk(GateIdentity("kiosk-1", "site-a"), spool)
    thermometer = OneReading(
        [Sample(37.9, NOW + timedelta(seconds=3)), Sample(36.2, NOW + timedelta(minutes=5))]
    )
    gate = Gate(kiosk, PassVerifier(issuer.public_key()), clock, thermometer=thermometer)

    frames = [
        Frame(pass_frame(tmp_path, valid, "v"), 0.0, "f0"),
        Frame(pass_frame(tmp_path, valid, "v"), 1.0, "f1"),  # the same pass, 1 s later: one scan
        Frame(pass_frame(tmp_path, expired, "e"), 2.0, "f2"),
        Frame(pass_frame(tmp_path, forged, "x"), 3.0, "f3"),
        Frame(pass_frame(tmp_path, "https://example.org/menu", "u"), 4.0, "f4"),  # not a pass
    ]
    gate.on_frame(frames[0])
    clock.advance(timedelta(seconds=3))
    gate.poll_thermometer()  # 37.9 at +3 s: pairs with the valid scan
    for frame in frames[1:]:
        gate.on_frame(frame)
    clock.advance(timedelta(minutes=5))
    gate.poll_thermometer()  # 36.2 five minutes later: nobody's, published unpaired
    clock.advance(timedelta(seconds=11))
    gate.poll_thermometer()
    gate.close()

    events = spooled(spool)
    scans = [e for e in events if isinstance(e, contract.ScanEvent)]
    readings = [e for e in events if isinstance(e, contract.TemperatureReading)]
    assert [(s.person_id, s.pass_status) for s in scans[:2]] == [
        ("p-000001", "valid"),
        ("p-000002", "expired"),
    ]
    # A forged pass's claimed identity is not trusted: the scan gets a stable placeholder.
    assert scans[2].pass_status == "forged"
    assert scans[2].person_id.startswith("unknown-")
    assert [s.seq for s in scans] == [1, 2, 3]
    assert gate.counts.repeats == 1
    assert gate.counts.unknown_codes == 1
    assert kiosk.decode_failures == 1
    assert [(r.celsius, r.person_id, r.scan_event_id) for r in readings] == [
        (37.9, "p-000001", scans[0].event_id),
        (36.2, None, None),
    ]


def test_a_reading_waiting_for_its_scan_survives_a_kiosk_crash(tmp_path: Path) -> None:
    """Killed while a reading waits for a scan: the restart publishes it, once, unpaired."""
    path = tmp_path / "spool.db"
    clock = FixedClock(NOW)
    verifier = PassVerifier(generate_key().public_key())
    first = Gate(
        Kiosk(GateIdentity("kiosk-1", "site-a"), Spool(path)),
        verifier,
        clock,
        thermometer=OneReading([Sample(38.4, NOW)]),
    )
    first.poll_thermometer()  # measured; no scan yet, so it waits
    assert first.pairer.held == 1 and spooled(first.kiosk.spool) == []
    first.kiosk.spool.close()  # the process dies here: no close(), no flush

    spool = Spool(path)
    second = Gate(
        Kiosk(GateIdentity("kiosk-1", "site-a"), spool),
        verifier,
        clock,
        thermometer=OneReading([Sample(36.6, NOW + timedelta(seconds=20))]),
    )
    assert second.pairer.held == 1
    clock.advance(timedelta(seconds=11))  # its pairing window closes
    second.poll_thermometer()
    second.close()
    readings = [e for e in spooled(spool) if isinstance(e, contract.TemperatureReading)]
    assert [(r.event_id, r.celsius, r.person_id) for r in readings] == [
        ("kiosk-1-t0000000001", 38.4, None),
        ("kiosk-1-t0000000002", 36.6, None),  # the number was not reused
    ]
    assert spool.held() == []


class LiveFrames:
    """A live source that skipped some frames before each one it hands out."""

    live = True

    def __init__(self, frames: list[Frame], skipped_before_each: int) -> None:
        self.frames = frames
        self.step = skipped_before_each
        self.dropped = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        for frame in self.frames:
            self.dropped += self.step
            yield frame


def test_a_live_cameras_skipped_frames_reach_the_heartbeat(tmp_path: Path) -> None:
    from ingest.gate import run_gate
    from sinks.lines import kiosk_health_line

    blank = np.full((72, 128, 3), 235, dtype=np.uint8)
    frames = [Frame(image=blank, at=i / 10, name=f"cam#{i}") for i in range(3)]
    spool = Spool(tmp_path / "spool.db")
    gate = Gate(
        Kiosk(GateIdentity("kiosk-1", "site-a"), spool),
        PassVerifier(generate_key().public_key()),
        FixedClock(NOW),
    )
    run_gate(gate, LiveFrames(frames, skipped_before_each=4), heartbeat_s=30.0)
    beats = [e for e in spooled(spool) if isinstance(e, contract.KioskHeartbeat)]
    assert beats and beats[-1].frames_dropped == 12
    assert "frames_dropped=12i" in kiosk_health_line(beats[-1])


def test_a_recording_reports_no_skipped_frames(tmp_path: Path) -> None:
    from ingest.gate import run_gate
    from sinks.lines import kiosk_health_line

    blank = np.full((72, 128, 3), 235, dtype=np.uint8)
    spool = Spool(tmp_path / "spool.db")
    gate = Gate(
        Kiosk(GateIdentity("kiosk-1", "site-a"), spool),
        PassVerifier(generate_key().public_key()),
        FixedClock(NOW),
    )
    run_gate(gate, [Frame(image=blank, at=0.0, name="f#0")], heartbeat_s=30.0)
    beat = [e for e in spooled(spool) if isinstance(e, contract.KioskHeartbeat)][-1]
    assert beat.frames_dropped is None
    assert "frames_dropped" not in kiosk_health_line(beat)


def test_a_red_code_is_recorded_with_its_household_and_refused_at_the_gate(
    tmp_path: Path,
) -> None:
    issuer = generate_key()
    red = issue_pass(
        GatePass(
            "pass-r",
            "p-000009",
            "site-a",
            "hh-9",
            NOW - timedelta(days=1),
            NOW + timedelta(days=13),
            health_code="red",
            kind="worker",
        ),
        issuer,
    )
    spool = Spool(tmp_path / "spool.db")
    kiosk = Kiosk(GateIdentity("kiosk-1", "site-a"), spool)
    gate = Gate(kiosk, PassVerifier(issuer.public_key()), FixedClock(NOW), direction="out")
    [scan] = gate.on_frame(Frame(pass_frame(tmp_path, red, "red"), 0.0, "red.png"))
    assert (scan.health_code, scan.household_id, scan.pass_kind) == ("red", "hh-9", "worker")
    assert gate.counts.refused == 1
    assert [e.to_dict()["household_id"] for e in spooled(spool)] == ["hh-9"]

"""`scantrail kiosk --source FOLDER`: frames of real passes to events on the real broker."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.pass_sheet import write_pass_png
from ingest.passes import (
    GatePass,
    generate_key,
    issue_pass,
    write_public_key,
    write_revocations,
)
from scantrail import contract
from scantrail.settings import KafkaSettings
from tests.support import consume_all, scantrail_cmd, service_env

pytestmark = pytest.mark.integration


def test_a_folder_of_pass_images_becomes_scans_with_paired_readings(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    issuer = generate_key()
    write_public_key(issuer, tmp_path / "issuer.pub")
    # A camera kiosk checks passes only against a readable revocation list (fail closed).
    write_revocations(tmp_path / "revoked.json", {})
    now = datetime.now(UTC)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(5):
        text = issue_pass(
            GatePass(
                f"pass-{i}",
                f"p-{i:06d}",
                "site-a",
                f"hh-{i}",
                now - timedelta(days=1),
                now + timedelta(days=13),
            ),
            issuer,
        )
        # Each pass held up for three frames (0.3 s at 10 fps): one scan each.
        for k in range(3):
            write_pass_png(text, frames / f"{i:03d}-{k}.png")
    env = service_env(kafka_settings)
    result = subprocess.run(
        scantrail_cmd(
            "kiosk",
            "--kiosk-id",
            "kiosk-cam",
            "--site-id",
            "site-a",
            "--spool",
            str(tmp_path / "spool.db"),
            "--source",
            str(frames),
            "--pass-key",
            str(tmp_path / "issuer.pub"),
            "--revocations",
            str(tmp_path / "revoked.json"),
            "--thermometer",
            "simulated",
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["scans"] == 5
    assert summary["repeats"] == 10
    assert summary["spool_depth"] == 0
    scans = [
        contract.decode_as(m.value, contract.ScanEvent)
        for m in consume_all(kafka_settings, contract.SCANS, expect=5)
    ]
    assert sorted(s.person_id for s in scans) == [f"p-{i:06d}" for i in range(5)]
    assert {s.pass_status for s in scans} == {"valid"}
    readings = [
        contract.decode_as(m.value, contract.TemperatureReading)
        for m in consume_all(kafka_settings, contract.TEMPERATURES, expect=5)
    ]
    assert len(readings) == 5
    assert {r.scan_event_id for r in readings} == {s.event_id for s in scans}
    beats = [
        contract.decode_as(m.value, contract.KioskHeartbeat)
        for m in consume_all(kafka_settings, contract.KIOSKS)
    ]
    assert beats[0].scans_since_start == 0  # the first heartbeat, at start
    assert beats[-1].scans_since_start == 5  # the last one, at exit
    assert beats[-1].last_scan_at is not None

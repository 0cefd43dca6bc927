"""A kiosk never loses a scan: broker outages and SIGKILL, against a real broker."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from scantrail import contract
from scantrail.broker import ensure_topics
from scantrail.settings import KafkaSettings
from tests.support import PrivateKafka, consume_all, scantrail_cmd

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def kiosk_cmd(spool: Path, scans: int, rate: float) -> list[str]:
    return scantrail_cmd(
        "kiosk",
        "--kiosk-id",
        "kiosk-a",
        "--site-id",
        "site-a",
        "--spool",
        str(spool),
        "--simulated",
        "--scans",
        str(scans),
        "--rate",
        str(rate),
        "--heartbeat",
        "5",
    )


def event_ids(settings: KafkaSettings, topic: str, expect: int) -> Counter[str]:
    # Read until quiet, not until `expect` messages: re-sent duplicates count too.
    messages = consume_all(settings, topic, timeout_s=90)
    assert len(messages) >= expect
    ids: Counter[str] = Counter()
    for m in messages:
        event = contract.decode(m.value)
        ids[getattr(event, "event_id")] += 1  # noqa: B009
    return ids


@pytest.fixture
def private_kafka(tmp_path: Path):  # type: ignore[no-untyped-def]
    broker = PrivateKafka(tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


def test_broker_down_for_30s_while_scanning_loses_nothing(
    private_kafka: PrivateKafka, tmp_path: Path
) -> None:
    settings = KafkaSettings(bootstrap=private_kafka.bootstrap, partitions=2)
    ensure_topics(settings)
    env = dict(private_kafka.env, SCANTRAIL_KAFKA_BOOTSTRAP=private_kafka.bootstrap)
    scans, rate = 1200, 20.0  # 60 s of scanning
    with (tmp_path / "kiosk.log").open("wb") as log:  # the child keeps its own descriptor
        kiosk = subprocess.Popen(
            kiosk_cmd(tmp_path / "spool.db", scans, rate),
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    time.sleep(10)
    private_kafka.stop()
    time.sleep(30)  # the kiosk keeps scanning into its spool
    assert kiosk.poll() is None, "the kiosk must survive the outage"
    private_kafka.start()
    out, _ = kiosk.communicate(timeout=180)
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["scans_recorded"] == scans
    assert summary["spool_depth"] == 0
    scans_seen = event_ids(settings, contract.SCANS, scans)
    readings_seen = event_ids(settings, contract.TEMPERATURES, scans)
    assert set(scans_seen) == {f"kiosk-a-s{i:010d}" for i in range(1, scans + 1)}
    assert set(readings_seen) == {f"kiosk-a-t{i:010d}" for i in range(1, scans + 1)}
    assert "publish failed" in (tmp_path / "kiosk.log").read_text()


def test_sigkill_mid_batch_then_restart_delivers_everything(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    env_extra = {
        "SCANTRAIL_KAFKA_NAMESPACE": kafka_settings.namespace,
        "SCANTRAIL_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
    }
    import os

    env = dict(os.environ, **env_extra)
    spool = tmp_path / "spool.db"
    first = subprocess.Popen(
        # Nothing of the killed run is read: a pipe left unread and unclosed is a ResourceWarning.
        kiosk_cmd(spool, 3000, 500.0),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(4)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL

    from ingest.spool import Spool

    before = Spool(spool)
    recorded_before = before.counter("scan_seq")
    before.close()
    assert 0 < recorded_before < 3000, "the kill should land mid-run"

    second = subprocess.run(
        kiosk_cmd(spool, 200, 200.0), env=env, capture_output=True, timeout=180, check=True
    )
    summary = json.loads(second.stdout.decode().strip().splitlines()[-1])
    total = summary["last_seq"]
    assert total == recorded_before + 200
    assert summary["spool_depth"] == 0

    seen = event_ids(kafka_settings, contract.SCANS, total)
    assert set(seen) == {f"kiosk-a-s{i:010d}" for i in range(1, total + 1)}
    # Any duplicate is a re-send of the very same event (same id, counted twice).
    assert all(n <= 2 for n in seen.values())
    # Every reading that was spooled arrives (the kill may land between a scan
    # and its reading, in which case that reading was never taken).
    after = Spool(spool)
    spooled_readings = after.counter("reading")
    after.close()
    assert total - 1 <= spooled_readings <= total
    readings = event_ids(kafka_settings, contract.TEMPERATURES, spooled_readings)
    assert set(readings) == {f"kiosk-a-t{i:010d}" for i in range(1, spooled_readings + 1)}

"""The districts' rules live: household outing quota and health codes, as `scantrail screen` has them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ingest.simulate import GateWorld, simulate_events
from scantrail import contract
from scantrail.settings import KafkaSettings
from tests.integration.processors.test_live_screening import (
    START,
    assert_same_alerts,
    live_alerts,
    offline_alerts,
    sentinel,
    worker_env,
)
from tests.support import publish, start_scantrail

pytestmark = pytest.mark.integration

NEW_KINDS = ("outing_quota_exceeded", "health_code_yellow", "health_code_red")


def test_live_outing_and_health_code_alerts_equal_offline(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    world = GateWorld.districts(
        kiosks=4, residents=60, seed=16, fever_share=0.05, yellow_share=0.1, red_share=0.05
    )
    events: list[contract.Event] = list(simulate_events(world, START, 0.5, timedelta(seconds=1800)))
    events.append(sentinel(START + timedelta(hours=2)))
    expected = offline_alerts(events)
    kinds = {a.kind for a in expected.values()}
    assert set(NEW_KINDS) <= kinds, kinds
    publish(kafka_settings, events)
    worker = start_scantrail(
        "worker", env=worker_env(kafka_settings, tmp_path), log=tmp_path / "w.log"
    )
    try:
        got = live_alerts(kafka_settings, expect=len(expected))
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    log = (tmp_path / "w.log").read_text()[-4000:]

    def verdicts(alerts: dict[str, contract.Alert], kind: str) -> dict[str, tuple[object, ...]]:
        return {
            k: (a.person_id, a.event_time, a.site_id, a.kiosk_id, a.severity)
            for k, a in alerts.items()
            if a.kind == kind
        }

    # Every kind: the same alerts (same ids) with the same verdicts.
    for kind in sorted(kinds):
        assert verdicts(got, kind) == verdicts(expected, kind), (kind, log)
    # Byte for byte, outing alerts included: members' out scans reach the
    # household shard from different partitions, and the shard judges them in
    # event-time order once the scan watermark has passed them
    # (processors.live_households), so every alert lists offline's evidence.
    outings = [a for a in got.values() if a.kind == NEW_KINDS[0]]
    differ = [a.alert_id for a in outings if a.evidence != expected[a.alert_id].evidence]
    assert differ == [], (f"{len(differ)} of {len(outings)} outing alerts differ", log)
    assert_same_alerts(got, expected, log)

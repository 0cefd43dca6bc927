"""Quarantine records past their retention become tombstones on the compacted topic."""

from __future__ import annotations

import json
import subprocess
from datetime import date, timedelta
from typing import Any

import pytest

from scantrail import contract
from scantrail.retention import latest_records
from tests.factories import make_quarantine
from tests.support import consume_all, publish, scantrail_cmd, service_env

pytestmark = pytest.mark.integration


def run_sweep(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run(
        scantrail_cmd("retention", "quarantine", *args),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_ended_quarantines_are_tombstoned_once_past_their_retention(kafka_settings: Any) -> None:
    today = date.today()
    records = [
        make_quarantine(
            person_id="p-long-ago",
            starts_on=today - timedelta(days=54),
            ends_on=today - timedelta(days=40),
        ),
        make_quarantine(
            person_id="p-last-week",
            starts_on=today - timedelta(days=20),
            ends_on=today - timedelta(days=6),
        ),
        make_quarantine(
            person_id="p-now",
            starts_on=today - timedelta(days=3),
            ends_on=today + timedelta(days=11),
        ),
    ]
    publish(kafka_settings, records)
    env = service_env(kafka_settings)

    first = run_sweep(env)  # the default: 28 days after the end
    assert (first["records"], first["persons"], first["tombstoned"]) == (3, 3, 1)
    latest, _ = latest_records(kafka_settings)
    assert latest[b"p-long-ago"] is None
    assert latest[b"p-last-week"] is not None and latest[b"p-now"] is not None
    assert run_sweep(env)["tombstoned"] == 0  # nothing more the second time

    # A test-sized retention: gone the day after the end.
    assert run_sweep(env, "--days", "0")["tombstoned"] == 1
    latest, _ = latest_records(kafka_settings)
    assert {k for k, r in latest.items() if r is not None} == {b"p-now"}
    tombstones = [
        m.key for m in consume_all(kafka_settings, contract.QUARANTINE, expect=5) if m.value is None
    ]
    assert sorted(tombstones) == [b"p-last-week", b"p-long-ago"]


@pytest.mark.timeout(300)
def test_the_worker_forgets_a_tombstoned_quarantine_without_a_dead_letter(
    kafka_settings: Any, tmp_path: Any
) -> None:
    import time
    import urllib.request

    from kafka import KafkaProducer

    from tests.support import free_port, start_scantrail

    publish(kafka_settings, [make_quarantine(person_id="p-gone")])
    producer = KafkaProducer(bootstrap_servers=kafka_settings.servers, acks="all")
    producer.send(kafka_settings.topic(contract.QUARANTINE), key=b"p-gone", value=None).get(30)
    producer.close()
    port = free_port()
    env = service_env(
        kafka_settings,
        SCANTRAIL_WORKER_APP_ID=f"{kafka_settings.namespace}worker",
        SCANTRAIL_WORKER_WEB_PORT=str(port),
        SCANTRAIL_WORKER_DATA_DIR=str(tmp_path / "worker-data"),
    )
    worker = start_scantrail("worker", env=env, log=tmp_path / "worker.log")
    stats: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not stats.get("quarantine_forgotten"):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
                    stats = json.loads(r.read())
            except OSError:
                pass
            time.sleep(1)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    assert stats.get("quarantine") == 1 and stats.get("quarantine_forgotten") == 1, stats
    assert not consume_all(kafka_settings, contract.DEADLETTER, timeout_s=5)

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

"""Contact trails: the worker's GET /trace, `scantrail replay` and the offline engine agree."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ingest.simulate import GateWorld, simulate_events
from processors.contacts import ContactPolicy, trace
from processors.trails import TrailIndex
from scantrail import contract
from scantrail.credentials import TRACE, credential_line, hash_token
from scantrail.settings import KafkaSettings
from tests.support import (
    consume_all,
    free_port,
    publish,
    scantrail_cmd,
    service_env,
    start_scantrail,
)

pytestmark = pytest.mark.integration

START = datetime(2020, 2, 10, 0, 0, tzinfo=UTC)
SINCE = START + timedelta(minutes=20)
UNTIL = START + timedelta(minutes=70)


def scans() -> list[contract.ScanEvent]:
    world = GateWorld(kiosks=6, residents=150, seed=21)
    events = simulate_events(world, START, 1.0, timedelta(minutes=90))
    return [e for e in events if isinstance(e, contract.ScanEvent)]


def offline(
    events: list[contract.ScanEvent], person: str, window_minutes: float, depth: int
) -> dict:  # type: ignore[type-arg]
    index = TrailIndex()
    for scan in events:
        index.add_event(scan)
    index.settle()
    policy = ContactPolicy(window=timedelta(minutes=window_minutes), depth=depth)
    result = trace(
        person,
        SINCE,
        UNTIL,
        trail_of=index.trail_between,
        visits_at=index.visits_between,
        policy=policy,
    )
    return result.to_dict()


TOKEN = "trace-test-token"


def get_json(url: str) -> dict:  # type: ignore[type-arg]
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        return json.loads(response.read())  # type: ignore[no-any-return]


def wait_for_stats(port: int, key: str, want: int, timeout_s: float = 120) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout_s
    stats: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        try:
            stats = get_json(f"http://127.0.0.1:{port}/stats")
            if stats.get(key, 0) >= want:
                return stats
        except OSError:
            pass
        time.sleep(1)
    return stats


def busiest_person(events: list[contract.ScanEvent]) -> str:
    counts: dict[str, int] = {}
    for scan in events:
        if SINCE <= scan.scanned_at <= UNTIL:
            counts[scan.person_id] = counts.get(scan.person_id, 0) + 1
    return max(sorted(counts), key=lambda p: counts[p])


def test_live_trace_equals_offline_and_replay(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    events = scans()
    duplicate = next(s for s in events if s.scanned_at >= SINCE)
    publish(kafka_settings, [*events, duplicate])  # a re-sent scan must not count twice
    person = busiest_person(events)
    port = free_port()
    env = service_env(
        kafka_settings,
        SCANTRAIL_WORKER_APP_ID=f"{kafka_settings.namespace}worker",
        SCANTRAIL_WORKER_WEB_PORT=str(port),
        SCANTRAIL_WORKER_DATA_DIR=str(tmp_path / "worker-data"),
        SCANTRAIL_CREDENTIALS=credential_line("epi", [TRACE], hash_token(TOKEN)),
    )
    worker = start_scantrail("worker", env=env, log=tmp_path / "worker.log")
    try:
        stats = wait_for_stats(port, "visit", len(events))
        assert stats.get("trail") == len(events), stats
        # Processing means recovery is over: the readiness probe agrees.
        assert get_json(f"http://127.0.0.1:{port}/ready") == {
            "ready": True,
            "tables_recovered": True,
            "in_recovery": False,
            "rebalancing": False,
        }
        query = f"person={person}&since={SINCE.isoformat()}&until={UNTIL.isoformat()}".replace(
            "+", "%2B"
        )
        live1 = get_json(f"http://127.0.0.1:{port}/trace?{query}&depth=1")
        live2 = get_json(f"http://127.0.0.1:{port}/trace?{query}&depth=2&window_minutes=5")
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    expected1 = offline(events, person, 15, 1)
    assert expected1["contacts"], "the index person should have contacts"
    assert live1 == expected1, (tmp_path / "worker.log").read_text()[-3000:]
    assert live2 == offline(events, person, 5, 2)

    out = tmp_path / "replay"
    result = subprocess.run(
        scantrail_cmd(
            "replay",
            "--since",
            SINCE.isoformat(),
            "--until",
            UNTIL.isoformat(),
            "--out",
            str(out),
            "--person",
            person,
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    in_period = [s for s in events if SINCE <= s.scanned_at <= UNTIL]
    assert summary["scans_in_period"] == len(in_period)
    assert summary["duplicates_ignored"] >= 1
    replayed = json.loads((out / "traces" / f"{person}.json").read_text())
    assert replayed == live1
    table = pq.read_table(out / "trails.parquet")
    assert table.num_rows == len(in_period)
    assert set(table.column("event_id").to_pylist()) == {s.event_id for s in in_period}
    assert (out / "traces" / f"{person}.csv").read_text().count("\n") == len(live1["contacts"]) + 1
    assert (out / "summary.png").stat().st_size > 10_000
    assert (out / "traces" / f"{person}.png").stat().st_size > 10_000

    # What if the window were 5 minutes? The replay answers it without the live system.
    what_if = tmp_path / "what-if"
    subprocess.run(
        scantrail_cmd(
            "replay",
            "--since",
            SINCE.isoformat(),
            "--until",
            UNTIL.isoformat(),
            "--out",
            str(what_if),
            "--person",
            person,
            "--window-minutes",
            "5",
            "--depth",
            "2",
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert json.loads((what_if / "traces" / f"{person}.json").read_text()) == live2

    # Two live traces and two replayed ones: four audit records, each with what came back.
    audits = [
        contract.decode_as(m.value, contract.AuditRecord)
        for m in consume_all(kafka_settings, contract.AUDIT, expect=4, timeout_s=30)
    ]
    assert sorted((a.channel, a.depth, a.contacts_returned) for a in audits) == sorted(
        [
            ("http", 1, len(live1["contacts"])),
            ("http", 2, len(live2["contacts"])),
            ("replay", 1, len(live1["contacts"])),
            ("replay", 2, len(live2["contacts"])),
        ]
    )
    assert {a.person_id for a in audits} == {person}
    assert {a.actor for a in audits if a.channel == "http"} == {"epi"}


def wait_until_ready(port: int, worker: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and worker.poll() is None:
        try:
            if get_json(f"http://127.0.0.1:{port}/ready")["ready"]:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"worker not ready within {timeout_s} s (exit code {worker.poll()})")


def test_a_worker_on_an_empty_data_dir_restores_its_tables_in_bulk_and_answers_the_same(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """A restarted worker rebuilds its tables from the changelogs before faust starts.

    The second worker's data directory is empty: its trails exist only in the
    changelogs the first one wrote. It must answer ``/trace`` as the first
    did, with the records read by the bulk restore and none left for faust's
    own (record by record) recovery; the third, with the bulk restore turned
    off, is the control: faust's recovery alone gives the same answer.
    """
    events = scans()
    publish(kafka_settings, events)
    person = busiest_person(events)
    query = f"person={person}&since={SINCE.isoformat()}&until={UNTIL.isoformat()}".replace(
        "+", "%2B"
    )

    def run(name: str, data: str, **extra: str) -> tuple[dict, str]:  # type: ignore[type-arg]
        port = free_port()
        env = service_env(
            kafka_settings,
            SCANTRAIL_WORKER_APP_ID=f"{kafka_settings.namespace}worker",
            SCANTRAIL_WORKER_WEB_PORT=str(port),
            SCANTRAIL_WORKER_DATA_DIR=str(tmp_path / data),
            SCANTRAIL_CREDENTIALS=credential_line("epi", [TRACE], hash_token(TOKEN)),
            **extra,
        )
        log = tmp_path / f"{name}.log"
        worker = start_scantrail("worker", env=env, log=log)
        try:
            if name == "first":
                stats = wait_for_stats(port, "visit", len(events))
                assert stats.get("trail") == len(events), stats
            wait_until_ready(port, worker)
            answer = get_json(f"http://127.0.0.1:{port}/trace?{query}&depth=2")
        finally:
            worker.terminate()
            worker.wait(timeout=60)
        return answer, log.read_text()

    first, _ = run("first", "first-data")
    assert first["contacts"], "the index person should have contacts"
    restored, log = run("restored", "restored-data")
    assert restored == first, log[-3000:]
    match = re.search(r"changelog restore: (\d+) records into (\d+) partitions", log)
    assert match is not None and int(match[1]) > 0, log[-3000:]
    # Everything came from the bulk restore: faust found its stores up to date.
    assert "Restoring state from changelog topics" not in log, log[-3000:]

    again, log = run("again", "restored-data")  # the same data dir: nothing left to read
    assert again == first
    match = re.search(r"changelog restore: (\d+) records", log)
    assert match is not None and int(match[1]) == 0, log[-3000:]

    control, log = run("control", "control-data", SCANTRAIL_WORKER_BULK_RESTORE="false")
    assert "changelog restore" not in log
    assert "Restoring state from changelog topics" in log, log[-3000:]
    assert control == first

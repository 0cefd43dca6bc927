"""The live worker runs the same rules as `scantrail screen`, against a real broker."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from ingest.simulate import GateWorld, simulate_events
from processors.screener import Screener
from scantrail import contract
from scantrail.settings import KafkaSettings
from tests.factories import make_quarantine, make_scan
from tests.support import consume_all, free_port, publish, service_env, start_scantrail

pytestmark = pytest.mark.integration

START = datetime(2020, 2, 10, 0, 0, tzinfo=UTC)


def offline_alerts(events: list[contract.Event]) -> dict[str, contract.Alert]:
    alerts = Screener().run(events)  # type: ignore[arg-type]
    return {a.alert_id: a for a in alerts}


class LiveAlerts(dict[str, contract.Alert]):
    """Alerts read from the topic, by id; ``versions`` holds every distinct body an id came with.

    At-least-once may raise an alert twice, but always with the same body: an id
    that came with two bodies is a fault of its own (a consumer deduplicating by
    id keeps one of them), which :func:`alert_differences` reports.
    """

    def __init__(self) -> None:
        super().__init__()
        self.versions: dict[str, list[dict[str, object]]] = {}

    def read(self, settings: KafkaSettings) -> None:
        for m in consume_all(settings, contract.ALERTS, timeout_s=10):
            alert = contract.decode_as(m.value, contract.Alert)
            body = alert.to_dict()
            bodies = self.versions.setdefault(alert.alert_id, [])
            if body not in bodies:
                bodies.append(body)
            self[alert.alert_id] = alert


def live_alerts(settings: KafkaSettings, expect: int, timeout_s: float = 150) -> LiveAlerts:
    """Alerts on the topic, by id, once at least ``expect`` distinct ones arrived (then a little more)."""
    out = LiveAlerts()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out.read(settings)
        if len(out) >= expect:
            time.sleep(3)  # any extra alert would show up now
            out.read(settings)
            return out
        time.sleep(2)
    return out


def world_events(seed: int, seconds: float, rate: float) -> list[contract.Event]:
    world = GateWorld(kiosks=4, residents=60, seed=seed, fever_share=0.1, sensor_error_rate=0.02)
    return list(simulate_events(world, START, rate, timedelta(seconds=seconds)))


def sentinel(at: datetime) -> contract.TemperatureReading:
    """A late, normal reading that moves event time on, so every open re-measure window closes."""
    return contract.TemperatureReading(
        event_id="sentinel-1",
        kiosk_id="kiosk-sentinel",
        site_id="site-sentinel",
        measured_at=at,
        celsius=36.5,
        method="forehead_ir",
    )


def worker_env(settings: KafkaSettings, tmp_path: Path) -> dict[str, str]:
    return service_env(
        settings,
        SCANTRAIL_WORKER_APP_ID=f"{settings.namespace}worker",
        SCANTRAIL_WORKER_WEB_PORT=str(free_port()),
        SCANTRAIL_WORKER_DATA_DIR=str(tmp_path / "worker-data"),
    )


def worker_stats(env: dict[str, str]) -> dict[str, int]:
    url = f"http://127.0.0.1:{env['SCANTRAIL_WORKER_WEB_PORT']}/stats"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def wait_for_count(
    env: dict[str, str], key: str, want: int, timeout_s: float = 60
) -> dict[str, int]:
    """The worker's ``/stats`` once ``key`` reached ``want`` (asserted, with the last counts)."""
    deadline = time.monotonic() + timeout_s
    stats = worker_stats(env)
    while stats.get(key, 0) < want and time.monotonic() < deadline:
        time.sleep(1)
        stats = worker_stats(env)
    assert stats.get(key, 0) >= want, stats
    return stats


def held_back(stats: dict[str, int]) -> dict[str, int]:
    """The reorder buffers' counts of records waiting for the watermark."""
    return {k: v for k, v in stats.items() if k.endswith("-buffer_waiting")}


def alert_differences(
    got: dict[str, contract.Alert], expected: dict[str, contract.Alert]
) -> list[str]:
    """Each way the live alerts differ from offline's, one short line each.

    A failure must say which alert and which field, within the last lines
    CI prints: a diff of two dicts of a thousand alerts, in different orders,
    shows whole alerts as moved and hides what differs.
    """
    lines = [f"missing {k}: {expected[k].to_dict()}" for k in sorted(expected.keys() - got.keys())]
    lines += [f"extra {k}: {got[k].to_dict()}" for k in sorted(got.keys() - expected.keys())]
    for k in sorted(got.keys() & expected.keys()):
        live, offline = got[k].to_dict(), expected[k].to_dict()
        fields = {f: (live.get(f), offline.get(f)) for f in live.keys() | offline.keys()}
        differ = {f: pair for f, pair in sorted(fields.items()) if pair[0] != pair[1]}
        if differ:
            lines.append(f"differs {k} (field: (live, offline)): {differ}")
    for k, bodies in sorted(getattr(got, "versions", {}).items()):
        if len(bodies) > 1:
            lines.append(f"{k} came with {len(bodies)} different bodies: {bodies}")
    return lines


def assert_same_alerts(
    got: dict[str, contract.Alert], expected: dict[str, contract.Alert], log: str = ""
) -> None:
    """The live alerts are offline's, byte for byte; if not, the differences close the message."""
    differences = alert_differences(got, expected)
    shown = "\n".join(differences[:12])
    more = f"\n... and {len(differences) - 12} more" if len(differences) > 12 else ""
    assert not differences, f"{log}\n{len(differences)} difference(s):\n{shown}{more}"


def poison_internal_topic(settings: KafkaSettings, topic: str) -> None:
    """Write a record no agent can handle (not JSON) where only the worker itself writes."""
    admin = KafkaAdminClient(bootstrap_servers=settings.servers)
    try:
        deadline = time.monotonic() + 90
        while topic not in admin.list_topics():  # the worker creates its internal topics
            assert time.monotonic() < deadline, f"{topic} never appeared"
            time.sleep(1)
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=settings.servers)
    producer.send(topic, key=b"site-poison", value=b"\x00 not json")
    producer.flush()
    producer.close()


def test_live_alerts_equal_offline_screen_for_an_in_order_stream(kafka_settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    events = world_events(seed=11, seconds=1800, rate=1.0)
    events.append(sentinel(START + timedelta(hours=2)))
    expected = offline_alerts(events)
    kinds = {a.kind for a in expected.values()}
    assert {"fever_suspected", "fever_confirmed"} <= kinds, kinds
    publish(kafka_settings, events)
    env = worker_env(kafka_settings, tmp_path)
    worker = start_scantrail("worker", env=env, log=tmp_path / "w.log")
    try:
        # An event that makes an agent fail must neither stop the stream nor vanish.
        poison_internal_topic(kafka_settings, f"{kafka_settings.namespace}worker-by-site")
        got = live_alerts(kafka_settings, expect=len(expected))
        # Every alert is out, so nothing waits for the watermark any more (the
        # counts exist: readings waited in both buffers on the way).
        waiting = held_back(worker_stats(env))
        deadline = time.monotonic() + 30
        while any(waiting.values()) and time.monotonic() < deadline:
            time.sleep(1)
            waiting = held_back(worker_stats(env))
        assert {"person-buffer_waiting", "site-buffer_waiting"} <= waiting.keys(), waiting
        assert not any(waiting.values()), waiting
        # The loop watcher runs in the worker (a worker that answers at all woke it).
        stats = worker_stats(env)
        assert stats.get("loop_stall_max_ms", -1) >= 0
        # The loop thread judged every stage, so it used CPU, and the process at least as much.
        assert 0 < stats["loop_thread_cpu_ms"] <= stats["process_cpu_ms"], stats
        assert stats["loop_thread_cpu_ms"] <= stats["uptime_ms"] + 1, stats
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    log = (tmp_path / "w.log").read_text()[-4000:]
    assert_same_alerts(got, expected, log)
    letters = [
        contract.decode_as(m.value, contract.DeadLetter)
        for m in consume_all(kafka_settings, contract.DEADLETTER, timeout_s=10)
    ]
    poisoned = [d for d in letters if "screen-sites: internal error" in d.reason]
    assert len(poisoned) == 1, [d.reason for d in letters]


@pytest.mark.slow
def test_sigkill_mid_stream_gives_the_same_alert_set(kafka_settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    events = world_events(seed=12, seconds=3600, rate=2.0)
    events.append(sentinel(START + timedelta(hours=3)))
    expected = offline_alerts(events)
    half = len(events) // 2
    env = worker_env(kafka_settings, tmp_path)
    publish(kafka_settings, events[:half])
    first = start_scantrail("worker", env=env, log=tmp_path / "w1.log")
    time.sleep(25)  # mid-stream: part of the first half processed, state written
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    publish(kafka_settings, events[half:])
    second = start_scantrail("worker", env=env, log=tmp_path / "w2.log")
    try:
        got = live_alerts(kafka_settings, expect=len(expected), timeout_s=420)
    finally:
        second.terminate()
        second.wait(timeout=60)
    assert_same_alerts(got, expected, (tmp_path / "w2.log").read_text()[-4000:])


def test_a_kiosk_catching_up_after_two_hours_is_still_judged(kafka_settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Other kiosks move event time two hours on; then the offline kiosk's backlog arrives."""
    others = [
        contract.TemperatureReading(
            event_id=f"other-{i}",
            kiosk_id="kiosk-other",
            site_id="site-a",
            measured_at=START + timedelta(minutes=i),
            celsius=36.4,
            method="forehead_ir",
            person_id=f"p-other-{i % 7}",
        )
        for i in range(0, 150, 2)
    ]
    late_hot = contract.TemperatureReading(
        event_id="late-hot-1",
        kiosk_id="kiosk-late",
        site_id="site-a",
        measured_at=START + timedelta(minutes=5),
        celsius=38.4,
        method="forehead_ir",
        person_id="p-late-1",
    )
    late_unknown = late_hot.model_copy(
        update={
            "event_id": "late-hot-2",
            "person_id": None,
            "measured_at": START + timedelta(minutes=6),
        }
    )
    env = worker_env(kafka_settings, tmp_path)
    publish(kafka_settings, others)
    worker = start_scantrail("worker", env=env, log=tmp_path / "w.log")
    try:
        time.sleep(15)
        future = late_hot.model_copy(
            update={"event_id": "future-1", "measured_at": datetime.now(UTC) + timedelta(hours=1)}
        )
        publish(kafka_settings, [late_hot, late_unknown, future])
        got = live_alerts(kafka_settings, expect=3, timeout_s=120)
        # The fever_unconfirmed alert means the person partition's watermark passed the late
        # reading: sent again (a kiosk re-sending its spool), it is a repeat, counted apart.
        before = worker_stats(env)
        publish(kafka_settings, [late_hot])
        after = wait_for_count(env, "late_repeat", before.get("late_repeat", 0) + 1)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    kinds = {a.kind: a for a in got.values()}
    assert kinds["fever_suspected"].evidence == ["late-hot-1"]
    assert kinds["fever_unidentified"].evidence == ["late-hot-2"]
    # Nobody re-measured the late person and event time is long past the window.
    assert kinds["fever_unconfirmed"].evidence == ["late-hot-1"]
    assert kinds["fever_unconfirmed"].event_time == late_hot.measured_at + timedelta(minutes=20)
    assert after.get("late", 0) == before.get("late", 0)
    assert set(live_alerts(kafka_settings, expect=len(got))) == set(
        got
    )  # the repeat raised nothing
    # A kiosk clock an hour ahead is refused with a reason, not judged.
    dead = [
        contract.decode_as(m.value, contract.DeadLetter)
        for m in consume_all(kafka_settings, contract.DEADLETTER)
    ]
    assert [d.reason.split(":")[0] for d in dead] == ["clock skew"]
    # A personal topic's dead letter: identifiers hashed, the event id kept to find it.
    assert dead[0].value is None and (dead[0].redacted or {}).get("event_id") == "future-1"


def test_a_quarantine_order_read_after_the_out_scan_it_covers_still_raises_the_breach(  # type: ignore[no-untyped-def]
    kafka_settings, tmp_path
) -> None:
    """The order is on another topic: a worker catching up can read the scan first, and an
    order can be published late with a past start date. The breach must come all the same,
    equal to `scantrail screen`'s (which judges every scan against the latest order)."""
    scan = make_scan(
        event_id="scan-before-order",
        person_id="p-late-order",
        direction="out",
        pass_status="forged",  # its pass_forged alert shows the scan has been judged
        scanned_at=START + timedelta(hours=9),
    )
    order = make_quarantine(
        person_id="p-late-order", starts_on=START.date(), ends_on=START.date() + timedelta(days=14)
    )
    expected = offline_alerts([scan, order])
    assert sorted(a.kind for a in expected.values()) == ["pass_forged", "quarantine_breach"]
    publish(kafka_settings, [scan])
    worker = start_scantrail(
        "worker", env=worker_env(kafka_settings, tmp_path), log=tmp_path / "w.log"
    )
    try:
        judged = live_alerts(kafka_settings, expect=1)
        assert [a.kind for a in judged.values()] == ["pass_forged"]
        publish(kafka_settings, [order])
        got = live_alerts(kafka_settings, expect=2)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    log = (tmp_path / "w.log").read_text()[-4000:]
    assert_same_alerts(got, expected, log)

"""Helpers for integration tests: subprocesses of ScanTrail roles and Kafka reads."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# A test namespace carries its creation time, so a run can tell the leftovers
# of killed runs (older than STALE_AFTER_S) from those of a run going on now.
STALE_AFTER_S = 3 * 3600
_TEST_NAMESPACE = re.compile(r"^(t(?P<born>[0-9a-f]{8})[0-9a-f]{6}\.)")
_OLD_TEST_NAMESPACE = re.compile(r"^(t[0-9a-f]{10}\.)")  # before names carried a time


def new_test_namespace(now: float) -> str:
    return f"t{int(now):08x}{uuid.uuid4().hex[:6]}."


def stale_test_namespaces(topics: list[str], now: float) -> set[str]:
    """The namespaces, among these topic names, that killed test runs left behind."""
    stale = set()
    for topic in topics:
        if match := _TEST_NAMESPACE.match(topic):
            if now - int(match["born"], 16) > STALE_AFTER_S:
                stale.add(match[1])
        elif match := _OLD_TEST_NAMESPACE.match(topic):
            stale.add(match[1])
    return stale


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(kafka_settings, influx_settings=None, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Environment for a ScanTrail subprocess pointed at this test's namespace and bucket."""
    env = dict(os.environ)
    env["SCANTRAIL_KAFKA_BOOTSTRAP"] = kafka_settings.bootstrap
    env["SCANTRAIL_KAFKA_NAMESPACE"] = kafka_settings.namespace
    env["SCANTRAIL_KAFKA_PARTITIONS"] = str(kafka_settings.partitions)
    if influx_settings is not None:
        env["SCANTRAIL_INFLUX_URL"] = influx_settings.url
        env["SCANTRAIL_INFLUX_ORG"] = influx_settings.org
        env["SCANTRAIL_INFLUX_BUCKET"] = influx_settings.bucket
        env["SCANTRAIL_INFLUX_WATCHED_BUCKET"] = influx_settings.watched_bucket
        env["SCANTRAIL_INFLUX_TOKEN"] = influx_settings.token.get_secret_value()
    env.update(extra)
    return env


def scantrail_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "scantrail.cli", *args]


def start_scantrail(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # The child keeps its own copy of the descriptor; closing ours leaks nothing
    # (an unclosed file is a ResourceWarning, and warnings fail the tests).
    with log.open("ab") as handle:
        return subprocess.Popen(
            scantrail_cmd(*args), env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT
        )


def drain_with_sink(env: dict[str, str], log: Path, idle_exit_s: int = 10) -> None:
    """Run ``scantrail sink influx`` until it has been idle ``idle_exit_s`` and exits 0."""
    sink = start_scantrail("sink", "influx", "--idle-exit", str(idle_exit_s), env=env, log=log)
    try:
        assert sink.wait(timeout=180) == 0, log.read_text()[-3000:]
    finally:
        if sink.poll() is None:
            sink.kill()


def drain(
    sink: Any, expect: dict[str, int], timeout_s: float = 120.0, stop_s: float = 240.0
) -> None:
    """Run an in-process sink until it has handled ``expect`` events per schema, then stop it.

    The counts move when a poll is decoded, before its points are written;
    stopping finishes, stores and commits the batch in flight (its watched-person
    backfill queries included, slow on a busy machine), so everything counted is
    stored once the thread has ended, which is why the join waits up to ``stop_s``.
    """
    import threading

    errors: list[BaseException] = []

    def target() -> None:
        try:
            sink.run()
        except BaseException as exc:  # re-raised in the test thread
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and thread.is_alive():
            if all(sink.stats.counts[k] >= v for k, v in expect.items()):
                break
            time.sleep(0.2)
    finally:
        sink.stop()
        thread.join(timeout=stop_s)
    assert not errors, errors
    assert not thread.is_alive(), (
        f"the sink did not stop within {stop_s} s: {dict(sink.stats.counts)}"
    )
    got = {k: sink.stats.counts[k] for k in expect}
    assert got == expect, f"handled {got}, expected {expect}"


def consume_all(
    settings: Any, topic: str, *, expect: int | None = None, timeout_s: float = 60.0
) -> list[Any]:
    """Read a topic of this test's namespace from the start.

    Stops when ``expect`` messages arrived (or, without ``expect``, when the
    topic has been quiet for a few seconds), or at the timeout.
    """
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            got = False
            for message in consumer:
                out.append(message)
                got = True
                if expect is not None and len(out) >= expect:
                    return out
            if expect is None and not got and out:
                return out
    finally:
        consumer.close()
    return out


class PrivateKafka:
    """A broker of the test's own, on free ports, that the test may stop and restart.

    Fault tests stop brokers; doing that to the shared one would break every
    other test, so they get a separate KRaft node from the same cached jars.
    """

    def __init__(self, state: Path) -> None:
        self.state = state
        self.port = free_port()
        self.sasl_ssl_port = free_port()
        self.env = dict(os.environ)
        self.env.update(
            SCANTRAIL_STATE=str(state),
            SCANTRAIL_KAFKA_PORT=str(self.port),
            SCANTRAIL_KAFKA_CONTROLLER_PORT=str(free_port()),
            SCANTRAIL_KAFKA_SASL_PORT=str(free_port()),
            SCANTRAIL_KAFKA_SASL_SSL_PORT=str(self.sasl_ssl_port),
            SCANTRAIL_PYTHON=sys.executable,
        )
        self.script = ROOT / "deploy" / "local" / "kafka" / "kafka.sh"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, verb: str) -> None:
        subprocess.run(["bash", str(self.script), verb], env=self.env, check=True, timeout=180)

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")


class PrivateInflux:
    """An influxd of the test's own, on a free port, that the test may stop and restart.

    Outage tests stop InfluxDB; stopping the shared one would break every other
    test, so they start a separate instance (same cached binary, own state
    directory, onboarded with its own token by ``influxdb.sh start``).
    """

    def __init__(self, state: Path) -> None:
        self.state = state
        self.port = free_port()
        self.env = dict(os.environ)
        self.env.update(SCANTRAIL_STATE=str(state), SCANTRAIL_INFLUX_PORT=str(self.port))
        self.script = ROOT / "deploy" / "local" / "influxdb" / "influxdb.sh"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self, verb: str) -> None:
        subprocess.run(["bash", str(self.script), verb], env=self.env, check=True, timeout=180)

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")

    def settings(self, bucket: str = "scantrail", watched_bucket: str = "scantrail_watched") -> Any:
        """InfluxSettings for this instance, from the influx.env its onboarding wrote."""
        from pydantic import SecretStr

        from scantrail.settings import InfluxSettings

        values: dict[str, str] = {}
        for row in (self.state / "influx.env").read_text().splitlines():
            name, sep, value = row.partition("=")
            if sep:
                values[name.strip()] = value.strip()
        return InfluxSettings(
            _env_file=None,  # type: ignore[call-arg]
            url=values["SCANTRAIL_INFLUX_URL"],
            org=values["SCANTRAIL_INFLUX_ORG"],
            bucket=bucket,
            watched_bucket=watched_bucket,
            token=SecretStr(values["SCANTRAIL_INFLUX_TOKEN"]),
        )


def publish(settings: Any, events: Any) -> None:
    """Publish contract events to this test's namespace, keyed and timestamped as kiosks do."""
    from kafka import KafkaProducer

    from scantrail import contract

    producer = KafkaProducer(bootstrap_servers=settings.servers, acks="all", linger_ms=5)
    for event in events:
        producer.send(
            settings.topic(event.TOPIC),
            key=event.key(),
            value=contract.encode(event),
            timestamp_ms=event.timestamp_ms(),
        )
    producer.flush()
    producer.close()

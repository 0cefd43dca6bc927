"""Kafka secured for real: SASL_SSL (SCRAM-SHA-512 over TLS), the StandardAuthorizer, a
principal per role with least-privilege ACLs. On a broker of this module's own (the
shared one serves other tests), started by the same deploy/local/kafka/kafka.sh.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka.errors import TopicAuthorizationFailedError
from pydantic import SecretStr

from scantrail import contract
from scantrail.audit import AuditLog, audit_record
from scantrail.broker import (
    LoginRefused,
    check_login,
    connection,
    ensure_topics,
    explain_refusal,
    make_producer,
)
from scantrail.console.sources import Follower, load_trail_index
from scantrail.kafka_acls import ROLES, ensure_access, role_password
from scantrail.settings import KafkaSettings
from tests.factories import make_reading, make_scan
from tests.support import PrivateKafka, drain_with_sink, free_port, start_scantrail

pytestmark = pytest.mark.integration

NS = "sec."


class Secured:
    def __init__(self, broker: PrivateKafka) -> None:
        self.broker = broker
        self.plain = KafkaSettings(
            bootstrap=broker.bootstrap, namespace=NS, partitions=2, retention_days=0
        )
        self.users = broker.state / "kafka-users"
        self.cafile = broker.state / "kafka-tls" / "ca.crt"

    def role(self, name: str, password: str | None = None) -> KafkaSettings:
        return KafkaSettings(
            bootstrap=f"127.0.0.1:{self.broker.sasl_ssl_port}",
            namespace=NS,
            partitions=2,
            retention_days=0,
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=name,
            sasl_password=SecretStr(password or role_password(self.users, name)),
            ssl_cafile=self.cafile,
        )

    def env(self, name: str, **extra: str) -> dict[str, str]:
        settings = self.role(name)
        env = dict(os.environ)
        env.update(
            SCANTRAIL_KAFKA_BOOTSTRAP=settings.bootstrap,
            SCANTRAIL_KAFKA_NAMESPACE=NS,
            SCANTRAIL_KAFKA_PARTITIONS="2",
            SCANTRAIL_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
            SCANTRAIL_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
            SCANTRAIL_KAFKA_SASL_USERNAME=name,
            SCANTRAIL_KAFKA_SASL_PASSWORD=settings.sasl_password.get_secret_value(),
            SCANTRAIL_KAFKA_SSL_CAFILE=str(self.cafile),
        )
        env.update(extra)
        return env


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    broker = PrivateKafka(tmp_path_factory.mktemp("secured-kafka"))
    broker.start()
    try:
        world = Secured(broker)
        ensure_topics(world.plain)  # as the admin (the loopback listener's super user)
        report = ensure_access(world.plain, world.plain, world.users, app_id=f"{NS}worker")
        assert sorted(report.users) == sorted([*ROLES, "admin"])
        again = ensure_access(world.plain, world.plain, world.users, app_id=f"{NS}worker")
        assert again.acls == report.acls  # idempotent
        yield world
    finally:
        broker.stop()


def test_state_files_are_private_and_the_ca_is_made_locally(secured: Secured) -> None:
    state = secured.broker.state
    assert (state / "kafka-tls" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (state / "kafka-tls").stat().st_mode & 0o777 == 0o700
    for role in [*ROLES, "admin"]:
        assert (secured.users / f"{role}.env").stat().st_mode & 0o777 == 0o600
    assert (state / "kafka" / "data").stat().st_mode & 0o077 == 0


def denied(secured: Secured, principal: str, operation: str) -> bool:
    """The broker's authorizer log names who was denied which operation."""
    text = (secured.broker.state / "kafka" / "server.log").read_text()
    return f"Principal = User:{principal} is Denied operation = {operation}" in text


def reader(settings: KafkaSettings, topic: str) -> KafkaConsumer:
    """A group-less consumer of ``topic`` from its start, as ``settings``' principal."""
    return KafkaConsumer(
        settings.topic(topic),
        **connection(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=5000,
    )


def refuses_writes(producer: Any, settings: KafkaSettings, topics: tuple[str, ...]) -> None:
    for topic in topics:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(settings.topic(topic), key=b"k", value=b"{}").get(timeout=30)


def test_a_kiosk_may_only_produce_its_own_events(secured: Secured) -> None:
    kiosk = secured.role("kiosk")
    producer = make_producer(kiosk, linger_ms=0)
    try:
        scan = make_scan()
        producer.send(kiosk.topic(contract.SCANS), key=scan.key(), value=contract.encode(scan)).get(
            timeout=30
        )
        alert_topic = kiosk.topic(contract.ALERTS)
        with pytest.raises(TopicAuthorizationFailedError) as refused:
            producer.send(alert_topic, key=b"site-1", value=b"{}").get(timeout=30)
        said = explain_refusal(refused.value, "WRITE", alert_topic, kiosk)
        assert said.startswith(f"Kafka refused WRITE on {alert_topic} to User:kiosk")
    finally:
        producer.close()
    assert denied(secured, "kiosk", "WRITE")

    consumer = reader(kiosk, contract.SCANS)
    try:
        with pytest.raises(TopicAuthorizationFailedError) as refused:
            for _ in range(10):
                consumer.poll(timeout_ms=1000)
        said = explain_refusal(refused.value, "READ", kiosk.topic(contract.SCANS), kiosk)
        assert "Kafka refused READ on" in said and "User:kiosk" in said
    finally:
        consumer.close()
    assert denied(secured, "kiosk", "READ")


def test_an_analyst_reads_but_cannot_produce(secured: Secured) -> None:
    analyst = secured.role("analyst")
    producer = make_producer(analyst, linger_ms=0)
    try:
        refuses_writes(producer, analyst, (contract.SCANS, contract.ALERTS, contract.QUARANTINE))
    finally:
        producer.close()
    consumer = reader(analyst, contract.SCANS)
    try:
        assert [m for m in consumer], "the analyst reads the scans the kiosk wrote"
    finally:
        consumer.close()


def test_the_console_follows_its_topics_and_writes_only_pages_and_audit(
    secured: Secured,
) -> None:
    """The console's own principal runs the console's own adapters, and nothing more."""
    console = secured.role("console")
    follower = Follower(console, on_event=lambda event: None)
    follower.start()
    try:
        assert follower.caught_up.wait(60), "the console could not follow alerts, pages, quarantine"
    finally:
        follower.stop()
    now = datetime.now(UTC)
    load_trail_index(console, now - timedelta(hours=1), now)  # reads scans for a trace
    audit = AuditLog(console)
    try:
        audit.append(
            audit_record(
                at=now, actor="console:li", channel="console", action="case", outcome="allowed"
            )
        )
    finally:
        audit.close()
    page = contract.PageRecord(
        alert_id="alert-console-1",
        action="acknowledged",
        site_id="site-1",
        severity="critical",
        at=now,
    )
    producer = make_producer(console, linger_ms=0)
    try:
        producer.send(
            console.topic(contract.PAGES), key=page.key(), value=contract.encode(page)
        ).get(timeout=30)
        refuses_writes(producer, console, (contract.ALERTS, contract.SCANS, contract.QUARANTINE))
    finally:
        producer.close()
    consumer = reader(console, contract.TEMPERATURES)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            for _ in range(10):
                consumer.poll(timeout_ms=1000)
    finally:
        consumer.close()
    assert denied(secured, "console", "READ") and denied(secured, "console", "WRITE")


def test_a_wrong_password_is_refused_fast(secured: Secured) -> None:
    began = time.monotonic()
    with pytest.raises(LoginRefused, match="refused the login of 'kiosk'"):
        check_login(secured.role("kiosk", password="not-the-password"))
    assert time.monotonic() - began < 10
    check_login(secured.role("kiosk"))


@pytest.mark.timeout(420)
def test_kiosk_to_worker_to_sink_over_sasl_ssl(
    secured: Secured, influx_settings: Any, tmp_path: Path
) -> None:
    kiosk = secured.role("kiosk")
    producer = make_producer(kiosk)
    hot = make_reading(person_id=None, celsius=38.4, kiosk_id="kiosk-e2e")
    normal = make_reading(celsius=36.5, kiosk_id="kiosk-e2e")
    for event in (hot, normal):
        producer.send(kiosk.topic(event.TOPIC), key=event.key(), value=contract.encode(event))
    producer.flush()
    producer.close()

    worker = start_scantrail(
        "worker",
        env=secured.env(
            "worker",
            SCANTRAIL_WORKER_APP_ID=f"{NS}worker",
            SCANTRAIL_WORKER_WEB_PORT=str(free_port()),
            SCANTRAIL_WORKER_DATA_DIR=str(tmp_path / "worker"),
        ),
        log=tmp_path / "worker.log",
    )
    analyst = secured.role("analyst")
    try:
        consumer = KafkaConsumer(
            analyst.topic(contract.ALERTS),
            **connection(analyst),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            consumer_timeout_ms=2000,
        )
        kinds: set[str] = set()
        deadline = time.monotonic() + 240
        try:
            while "fever_unidentified" not in kinds and time.monotonic() < deadline:
                for message in consumer:
                    kinds.add(contract.decode_as(message.value, contract.Alert).kind)
        finally:
            consumer.close()
        assert "fever_unidentified" in kinds, (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        worker.terminate()
        worker.wait(timeout=60)

    env = secured.env(
        "sink",
        SCANTRAIL_INFLUX_URL=influx_settings.url,
        SCANTRAIL_INFLUX_ORG=influx_settings.org,
        SCANTRAIL_INFLUX_BUCKET=influx_settings.bucket,
        SCANTRAIL_INFLUX_WATCHED_BUCKET=influx_settings.watched_bucket,
        SCANTRAIL_INFLUX_TOKEN=influx_settings.token.get_secret_value(),
    )
    drain_with_sink(env, tmp_path / "sink.log")
    from influxdb_client import InfluxDBClient

    with InfluxDBClient(
        url=influx_settings.url,
        token=influx_settings.token.get_secret_value(),
        org=influx_settings.org,
    ) as client:
        tables = client.query_api().query(
            f'from(bucket: "{influx_settings.bucket}") '
            "|> range(start: 2020-01-01T00:00:00Z, stop: 2021-01-01T00:00:00Z) "
            '|> filter(fn: (r) => r._measurement == "temperature" and r._field == "celsius") '
            "|> group() |> count()"
        )
        stored = sum(int(r.get_value()) for t in tables for r in t.records)
    assert stored == 2, (tmp_path / "sink.log").read_text()[-3000:]

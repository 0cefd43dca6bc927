"""Every Kafka client of the project through the local broker's SASL/PLAIN listener.

The settings path is the one an operator uses: ``SCANTRAIL_KAFKA_SECURITY_PROTOCOL``,
the user name and a password file. kafka-python (admin, producer, the replay
and pager consumers), aiokafka under faust (the worker) and librdkafka (the
InfluxDB sink) all have to log in, or nothing flows.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from influxdb_client import InfluxDBClient
from kafka import KafkaConsumer
from pydantic import SecretStr

from scantrail import contract
from scantrail.broker import (
    LoginRefused,
    admin_client,
    check_login,
    connection,
    ensure_topics,
    make_producer,
)
from scantrail.settings import KafkaSettings, state_dir
from tests.factories import make_reading
from tests.support import drain_with_sink, free_port, service_env, start_scantrail

pytestmark = pytest.mark.integration


def sasl_settings(kafka_settings: KafkaSettings) -> KafkaSettings:
    """This test's namespace, reached through the SASL listener ``make up`` started."""
    env_file = state_dir() / "kafka-sasl.env"
    if not env_file.exists():
        pytest.skip(f"no {env_file}: the tests run against a Kafka that `make up` did not start")
    creds = dict(line.split("=", 1) for line in env_file.read_text().split())
    plain_port = int(kafka_settings.servers[0].rsplit(":", 1)[1])
    port = int(os.environ.get("SCANTRAIL_KAFKA_SASL_PORT", plain_port + 2))
    return kafka_settings.model_copy(
        update={
            "bootstrap": f"127.0.0.1:{port}",
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": creds["SCANTRAIL_KAFKA_SASL_USERNAME"],
            "sasl_password": SecretStr(creds["SCANTRAIL_KAFKA_SASL_PASSWORD"]),
        }
    )


def read_alerts(settings: KafkaSettings, want: set[str], timeout_s: float) -> set[str]:
    consumer = KafkaConsumer(
        settings.topic(contract.ALERTS),
        **connection(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
    )
    kinds: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while not want <= kinds and time.monotonic() < deadline:
            for message in consumer:
                kinds.add(contract.decode_as(message.value, contract.Alert).kind)
    finally:
        consumer.close()
    return kinds


@pytest.mark.timeout(420)
def test_the_worker_and_the_sink_log_in_and_process(
    kafka_settings: Any, influx_settings: Any, tmp_path: Path
) -> None:
    sasl = sasl_settings(kafka_settings)
    ensure_topics(sasl)  # the admin client logs in (the topics exist: nothing is created)
    hot = make_reading(person_id=None, celsius=38.4)
    normal = make_reading(celsius=36.5)
    producer = make_producer(sasl)
    for event in (hot, normal):
        producer.send(sasl.topic(event.TOPIC), key=event.key(), value=contract.encode(event))
    producer.flush()
    producer.close()

    password_file = tmp_path / "kafka-password"
    password_file.write_text(sasl.sasl_password.get_secret_value() + "\n")
    password_file.chmod(0o600)
    env = service_env(
        sasl,
        influx_settings,
        SCANTRAIL_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        SCANTRAIL_KAFKA_SASL_MECHANISM="PLAIN",
        SCANTRAIL_KAFKA_SASL_USERNAME=sasl.sasl_username,
        SCANTRAIL_KAFKA_SASL_PASSWORD_FILE=str(password_file),
        SCANTRAIL_WORKER_APP_ID=f"{sasl.namespace}worker",
        SCANTRAIL_WORKER_WEB_PORT=str(free_port()),
        SCANTRAIL_WORKER_DATA_DIR=str(tmp_path / "worker"),
    )
    env.pop("SCANTRAIL_KAFKA_SASL_PASSWORD", None)
    worker = start_scantrail("worker", env=env, log=tmp_path / "worker.log")
    try:
        kinds = read_alerts(sasl, {"fever_unidentified"}, timeout_s=180)
        assert "fever_unidentified" in kinds, (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        worker.terminate()
        worker.wait(timeout=60)

    drain_with_sink(env, tmp_path / "sink.log")
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
    assert stored == 2


@pytest.mark.timeout(120)
def test_a_wrong_password_is_refused_at_once_with_a_message_that_says_so(
    kafka_settings: Any,
) -> None:
    """kafka-python alone would retry the refused login for 30 s and report a timeout."""
    sasl = sasl_settings(kafka_settings)
    wrong = sasl.model_copy(update={"sasl_password": SecretStr("not-the-password")})
    for open_client in (admin_client, make_producer):  # every role starts through one
        began = time.monotonic()
        with pytest.raises(LoginRefused, match="refused the login of 'scantrail'") as refused:
            open_client(wrong)
        assert time.monotonic() - began < 10
        assert "Invalid username or password" in str(refused.value)
        assert "not-the-password" not in str(refused.value)
    check_login(sasl)  # the right password passes
    admin = admin_client(sasl)
    try:
        assert sasl.topic(contract.SCANS) in admin.list_topics()
    finally:
        admin.close()


def test_an_unreachable_broker_is_not_called_a_refused_login(kafka_settings: Any) -> None:
    """Nobody listens: the check gives up at once and leaves the outage to the client."""
    nobody = sasl_settings(kafka_settings).model_copy(
        update={"bootstrap": f"127.0.0.1:{free_port()}"}
    )
    began = time.monotonic()
    check_login(nobody)  # no LoginRefused
    assert time.monotonic() - began < 3

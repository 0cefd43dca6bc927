"""Fixtures shared by unit and integration tests.

Integration tests talk to the real Kafka broker and InfluxDB that `make up`
starts (or those named by SCANTRAIL_KAFKA_BOOTSTRAP / SCANTRAIL_INFLUX_*).
Each test gets its own topic namespace, consumer groups and InfluxDB bucket,
so tests never see each other's data, and each cleans up after itself: a
broker left with thousands of dead test partitions takes minutes to start.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.support import new_test_namespace, stale_test_namespaces


@pytest.fixture(scope="session")
def kafka_settings_base():  # type: ignore[no-untyped-def]
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from scantrail.broker import drop_namespaces
    from scantrail.settings import KafkaSettings

    settings = KafkaSettings()
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.servers, request_timeout_ms=5000)
    except KafkaError as exc:
        pytest.fail(f"Kafka at {settings.bootstrap} is not answering ({exc}): run `make up`")
    try:
        stale = stale_test_namespaces(admin.list_topics(), time.time())
    finally:
        admin.close()
    drop_namespaces(settings, stale)
    return settings


@pytest.fixture
def namespace() -> str:
    return new_test_namespace(time.time())


@pytest.fixture
def kafka_settings(kafka_settings_base, namespace):  # type: ignore[no-untyped-def]
    """Settings for this test's namespace; its topics (faust's too) are dropped afterwards."""
    from scantrail.broker import drop_namespaces, ensure_topics

    # Tests replay February 2020; records are stamped with their event times, so
    # a 28-day retention would let the broker delete them mid-test. Keep forever.
    settings = kafka_settings_base.model_copy(update={"namespace": namespace, "retention_days": 0})
    ensure_topics(settings)
    yield settings
    # SCANTRAIL_TEST_KEEP_NAMESPACE=1 leaves a test's topics behind to be read after
    # a failure (the next session's start drops them once they are stale).
    if not os.environ.get("SCANTRAIL_TEST_KEEP_NAMESPACE"):
        drop_namespaces(settings, [namespace])


@pytest.fixture(scope="session")
def influx_settings_base():  # type: ignore[no-untyped-def]
    from influxdb_client import InfluxDBClient

    from scantrail.settings import InfluxSettings

    settings = InfluxSettings()
    if not settings.token.get_secret_value():
        pytest.fail("no InfluxDB token (SCANTRAIL_INFLUX_TOKEN or influx.env): run `make up`")
    with InfluxDBClient(url=settings.url, token=settings.token.get_secret_value()) as client:
        # ping() is /ping, which answers only once the server is up (health() is deprecated).
        if not client.ping():
            pytest.fail(f"InfluxDB at {settings.url} does not answer /ping: run `make up`")
    return settings


@pytest.fixture
def influx_settings(influx_settings_base) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A fresh bucket per test, deleted afterwards."""
    from influxdb_client import InfluxDBClient

    base = influx_settings_base
    name = f"test_{uuid.uuid4().hex[:10]}"
    with InfluxDBClient(url=base.url, token=base.token.get_secret_value(), org=base.org) as client:
        buckets = client.buckets_api()
        created = [buckets.create_bucket(bucket_name=n, org=base.org) for n in (name, f"{name}_w")]
        yield base.model_copy(update={"bucket": name, "watched_bucket": f"{name}_w"})
        for bucket in created:
            buckets.delete_bucket(bucket)


@pytest.fixture
def browser_factory():  # type: ignore[no-untyped-def]
    """Open headless Chromium windows (see tests/browser.py); all are closed after the test."""
    from contextlib import ExitStack

    from tests.browser import open_browser

    with ExitStack() as stack:

        def factory(**kwargs):  # type: ignore[no-untyped-def]
            return stack.enter_context(open_browser(**kwargs))

        yield factory

"""Least-privilege InfluxDB tokens: the sink writes with its own, dashboards read with theirs.

Runs on the shared InfluxDB with this test's buckets; the tokens it makes are
deleted afterwards (the setup token is never touched).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from scantrail.influx_access import ensure_role_tokens
from tests.factories import make_reading
from tests.support import drain_with_sink, publish, service_env

pytestmark = pytest.mark.integration

COUNT = 'from(bucket: "{b}") |> range(start: -2d)'


def rows(client: InfluxDBClient, bucket: str) -> int:
    tables = client.query_api().query(COUNT.format(b=bucket))
    return sum(len(t.records) for t in tables)


@pytest.mark.timeout(300)
def test_the_sink_writes_with_a_write_token_and_dashboards_read_with_a_read_token(
    kafka_settings: Any, influx_settings: Any, tmp_path: Path
) -> None:
    admin = influx_settings
    made = ensure_role_tokens(admin, retention_days=28, base=tmp_path)
    tokens = {m.role: m.token for m in made}
    try:
        assert {m.role for m in made} == {"sink", "dashboard"} and all(m.created for m in made)
        for m in made:
            assert m.path.stat().st_mode & 0o777 == 0o600
            assert admin.token.get_secret_value() not in m.path.read_text()
        again = ensure_role_tokens(admin, retention_days=28, base=tmp_path)
        assert [(m.role, m.token, m.created) for m in again] == [
            (m.role, m.token, False) for m in made
        ]  # idempotent

        with InfluxDBClient(url=admin.url, token=admin.token.get_secret_value()) as root:
            bucket = root.buckets_api().find_bucket_by_name(admin.bucket)
            assert [r.every_seconds for r in bucket.retention_rules] == [28 * 86400]

        # The sink role, as `scantrail sink influx` runs it: no token in the
        # environment, its own from influx-sink.env under the state dir.
        # Recent readings: the 28-day bucket refuses points older than its retention.
        recent = datetime.now(UTC) - timedelta(hours=1)
        publish(
            kafka_settings,
            [make_reading(celsius=c, measured_at=recent) for c in (36.6, 38.9)],
        )
        env = service_env(kafka_settings, influx_settings, SCANTRAIL_STATE=str(tmp_path))
        env.pop("SCANTRAIL_INFLUX_TOKEN")
        (tmp_path / "influx.env").write_text(f"SCANTRAIL_INFLUX_URL={admin.url}\n")
        drain_with_sink(env, tmp_path / "sink.log", idle_exit_s=5)
        assert "no InfluxDB token" not in (tmp_path / "sink.log").read_text()

        with InfluxDBClient(url=admin.url, token=tokens["dashboard"], org=admin.org) as dash:
            assert rows(dash, admin.bucket) >= 2  # the sink's writes, read by the dashboard
            with pytest.raises(ApiException) as refused:
                dash.write_api(write_options=SYNCHRONOUS).write(
                    bucket=admin.bucket, record="x v=1i 1580000000000000000"
                )
            assert refused.value.status in (401, 403, 404)
            with pytest.raises(ApiException):
                rows(dash, admin.watched_bucket)  # not a dashboard's bucket

        with InfluxDBClient(url=admin.url, token=tokens["sink"], org=admin.org) as sink:
            with pytest.raises(ApiException):
                rows(sink, "scantrail")  # the shared main bucket is not the sink's here
            with pytest.raises(ApiException) as refused:
                sink.buckets_api().create_bucket(bucket_name="not-allowed", org=bucket.org_id)
            assert refused.value.status in (401, 403)
            assert not sink.authorizations_api().find_authorizations()  # sees no tokens
    finally:
        with InfluxDBClient(url=admin.url, token=admin.token.get_secret_value()) as root:
            auths = root.authorizations_api()
            for a in auths.find_authorizations():
                if a.token in tokens.values():
                    auths.delete_authorization(a)


@pytest.mark.timeout(300)
def test_person_level_points_past_the_retention_are_deleted(tmp_path: Path) -> None:
    """On an influxd of the test's own that checks retention every second.

    Points 40 days old are written while the bucket still keeps everything (as
    a bucket made before this change did); ``influx-setup``'s retention of 28
    days (the default) then deletes them, and a point of an hour ago stays.
    """
    from tests.support import PrivateInflux

    server = PrivateInflux(tmp_path / "state")
    server.env["SCANTRAIL_INFLUX_RETENTION_CHECK"] = "1s"
    server.start()
    try:
        admin = server.settings()
        now = datetime.now(UTC)
        old = make_reading(person_id="p-old", measured_at=now - timedelta(days=40))
        new = make_reading(person_id="p-new", measured_at=now - timedelta(hours=1))
        from sinks.lines import temperature_line

        with InfluxDBClient(
            url=admin.url, token=admin.token.get_secret_value(), org=admin.org
        ) as c:
            c.write_api(write_options=SYNCHRONOUS).write(
                bucket=admin.bucket, record=[temperature_line(old), temperature_line(new)]
            )
            persons = (
                f'from(bucket: "{admin.bucket}") |> range(start: -60d)'
                ' |> filter(fn: (r) => r._field == "person_id")'
            )

            def stored() -> set[str]:
                return {r.get_value() for t in c.query_api().query(persons) for r in t.records}

            assert stored() == {"p-old", "p-new"}
            ensure_role_tokens(admin, retention_days=28, base=tmp_path)
            deadline = time.monotonic() + 120
            while stored() != {"p-new"} and time.monotonic() < deadline:
                time.sleep(1)
            assert stored() == {"p-new"}
        assert (tmp_path / "state" / "influxdb").stat().st_mode & 0o777 == 0o700
    finally:
        server.stop()

"""Dropping a namespace removes its topics, faust's included, and nothing else."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from scantrail.broker import TopicSpec, drop_namespaces, ensure_topics, namespaces
from scantrail.cli import cli
from scantrail.settings import KafkaSettings

pytestmark = pytest.mark.integration


def topics_of(settings: KafkaSettings, prefix: str) -> set[str]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.servers)
    try:
        return {t for t in admin.list_topics() if t.startswith(prefix)}
    finally:
        admin.close()


def test_drop_takes_one_namespace_and_leaves_its_neighbour(kafka_settings: KafkaSettings) -> None:
    doomed = kafka_settings.namespace
    neighbour = kafka_settings.model_copy(update={"namespace": f"{doomed[:-1]}x."})
    ensure_topics(neighbour)
    # A faust changelog lives under the same prefix and must go with it.
    ensure_topics(kafka_settings, [TopicSpec(f"{doomed}worker-table-changelog")])
    try:
        assert {doomed, neighbour.namespace} <= namespaces(kafka_settings)
        before = topics_of(kafka_settings, doomed)
        assert f"{doomed}worker-table-changelog" in before

        dropped = drop_namespaces(kafka_settings, [doomed])

        assert set(dropped) == before
        deadline = time.monotonic() + 30
        while topics_of(kafka_settings, doomed) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert topics_of(kafka_settings, doomed) == set()
        assert doomed not in namespaces(kafka_settings)
        assert len(topics_of(kafka_settings, neighbour.namespace)) == len(before) - 1
    finally:
        drop_namespaces(kafka_settings, [neighbour.namespace])


def test_the_empty_namespace_is_refused(kafka_settings: KafkaSettings) -> None:
    with pytest.raises(ValueError, match="empty namespace"):
        drop_namespaces(kafka_settings, ["t.", ""])
    assert topics_of(kafka_settings, kafka_settings.namespace)


def test_the_cli_drops_only_namespaces_that_exist(kafka_settings: KafkaSettings) -> None:
    runner = CliRunner()
    env = {"SCANTRAIL_KAFKA_BOOTSTRAP": kafka_settings.bootstrap}
    refused = runner.invoke(cli, ["topics", "--drop", "scantrail."], env=env)
    assert refused.exit_code == 2
    assert "not a namespace" in refused.output

    listed = runner.invoke(cli, ["topics", "--list-namespaces"], env=env)
    assert listed.exit_code == 0
    assert kafka_settings.namespace in listed.output.split()

    dropped = runner.invoke(cli, ["topics", "--drop", kafka_settings.namespace], env=env)
    assert dropped.exit_code == 0, dropped.output
    assert f"{kafka_settings.topic('scantrail.scans')}: deleted" in dropped.output

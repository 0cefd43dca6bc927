"""``scantrail topics``: create the project's topics (broker auto-creation is off)."""

from __future__ import annotations

import click

from scantrail.broker import ensure_topics, topic_specs
from scantrail.settings import KafkaSettings


@click.command()
def topics() -> None:
    """Create missing ScanTrail topics with their partitions and retention.

    Existing topics are left untouched. The broker comes from
    SCANTRAIL_KAFKA_BOOTSTRAP (default 127.0.0.1:9092).
    """
    settings = KafkaSettings()
    created = ensure_topics(settings)
    for spec in topic_specs(settings):
        state = "created" if spec.name in created else "exists"
        click.echo(f"{spec.name}: {state}")

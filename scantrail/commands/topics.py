"""``scantrail topics``: create the project's topics (broker auto-creation is off)."""

from __future__ import annotations

import click

from scantrail.broker import drop_namespaces, ensure_topics, namespaces, topic_specs
from scantrail.settings import KafkaSettings


@click.command()
@click.option("--list-namespaces", is_flag=True, help="Print the namespaces on the broker.")
@click.option(
    "--drop",
    "drop",
    multiple=True,
    metavar="NAMESPACE",
    help="Delete every topic under NAMESPACE (e.g. demo-20261123064641.); repeatable.",
)
def topics(list_namespaces: bool, drop: tuple[str, ...]) -> None:
    """Create missing ScanTrail topics with their partitions and retention.

    Existing topics are left untouched. The broker comes from
    SCANTRAIL_KAFKA_BOOTSTRAP (default 127.0.0.1:9092), the namespace from
    SCANTRAIL_KAFKA_NAMESPACE. --list-namespaces and --drop tidy up after
    demo runs instead.
    """
    settings = KafkaSettings()
    if list_namespaces or drop:
        present = namespaces(settings)
        for name in drop:
            if name not in present:
                raise click.BadParameter(
                    f"{name!r} is not a namespace on the broker (see --list-namespaces)",
                    param_hint="--drop",
                )
        for topic in drop_namespaces(settings, drop):
            click.echo(f"{topic}: deleted")
        if list_namespaces:
            for name in sorted(namespaces(settings)):
                click.echo(name)
        return
    created = ensure_topics(settings)
    for spec in topic_specs(settings):
        state = "created" if spec.name in created else "exists"
        click.echo(f"{spec.name}: {state}")

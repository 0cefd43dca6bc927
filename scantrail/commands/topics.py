"""``scantrail topics``: create the project's topics (broker auto-creation is off)."""

from __future__ import annotations

from pathlib import Path

import click

from scantrail.broker import drop_namespaces, ensure_topics, namespaces, topic_specs
from scantrail.settings import KafkaSettings


@click.command()
@click.option("--list-namespaces", is_flag=True, help="Print the namespaces on the broker.")
@click.option(
    "--acls",
    is_flag=True,
    help="Also create a SCRAM-SHA-512 principal per role and its ACLs (idempotent).",
)
@click.option(
    "--users-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Role credential files (default <state dir>/kafka-users; made 600 when missing).",
)
@click.option(
    "--client-bootstrap",
    default=None,
    help="SASL_SSL address written into the role files (default: local broker, port + 3).",
)
@click.option(
    "--drop",
    "drop",
    multiple=True,
    metavar="NAMESPACE",
    help="Delete every topic under NAMESPACE (e.g. demo-20261123064641.); repeatable.",
)
def topics(
    list_namespaces: bool,
    drop: tuple[str, ...],
    acls: bool,
    users_dir: Path | None,
    client_bootstrap: str | None,
) -> None:
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
    if acls:
        _ensure_acls(settings, users_dir, client_bootstrap)


def _ensure_acls(settings: KafkaSettings, users: Path | None, client_bootstrap: str | None) -> None:
    """Principals and ACLs, as the admin these settings log in as (locally: loopback super user)."""
    from scantrail import kafka_acls
    from scantrail.settings import WorkerSettings, state_dir

    directory = users or kafka_acls.users_dir()
    report = kafka_acls.ensure_access(settings, settings, directory, WorkerSettings().app_id)
    if client_bootstrap is None:
        host, _, port = settings.servers[0].rpartition(":")
        client_bootstrap = f"{host}:{int(port) + 3}"
    cafile = state_dir() / "kafka-tls" / "ca.crt"
    for role in report.users:
        path = kafka_acls.write_client_env(
            directory, role, client_bootstrap, cafile if cafile.exists() else None
        )
        click.echo(f"principal {role}: credentials in {path}")
    click.echo(f"{report.acls} ACL bindings present")

"""``scantrail sink``: the consumers that move events out of Kafka."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from types import FrameType

import click


@click.group()
def sink() -> None:
    """Run a sink; each has its own consumer group and commits only what it stored."""


@sink.command()
@click.option("--group", default="scantrail-sink-influx", show_default=True, help="Consumer group.")
@click.option(
    "--idle-exit",
    type=float,
    default=None,
    help="Exit after this many seconds without a message (demos, batch catch-up).",
)
@click.option(
    "--health-port",
    type=int,
    default=None,
    envvar="SCANTRAIL_SINK_HEALTH_PORT",
    help="Serve GET /healthz and /stats on 127.0.0.1 at this port (0: any free port).",
)
@click.option(
    "--health-host", default="127.0.0.1", show_default=True, envvar="SCANTRAIL_SINK_HEALTH_HOST"
)
def influx(group: str, idle_exit: float | None, health_port: int | None, health_host: str) -> None:
    """Write temperatures and alerts to InfluxDB (SCANTRAIL_INFLUX_*).

    Offsets are committed only after InfluxDB acknowledged the batch; while
    InfluxDB is down the sink pauses and retries with backoff. With
    --health-port, /healthz answers 503 when the loop has stopped turning
    (hung), for a liveness probe.
    """
    from scantrail.settings import KafkaSettings, influx_for_role
    from sinks.health import HealthServer
    from sinks.influx import InfluxSink

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The sink's own write token (influx-sink.env), not the setup token.
    runner = InfluxSink(KafkaSettings(), influx_for_role("sink"), group_id=group)
    if health_port is not None:
        HealthServer(health_host, health_port, runner.health).start()

    def stop(signum: int, frame: FrameType | None) -> None:
        runner.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runner.run(idle_exit_s=idle_exit)
    click.echo(json.dumps(runner.stats.as_dict()))


@sink.command()
@click.option(
    "--roster",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Roster YAML (default SCANTRAIL_PAGER_ROSTER or deploy/roster.example.yaml).",
)
@click.option("--group", default=None, help="Consumer group (default SCANTRAIL_PAGER_GROUP).")
@click.option("--port", type=int, default=None, help="Port of the ack/queue HTTP server.")
@click.option(
    "--ack-timeout", type=float, default=None, help="Seconds before an unacked page escalates."
)
def pager(
    roster: Path | None, group: str | None, port: int | None, ack_timeout: float | None
) -> None:
    """Page officers about alerts by webhook and email (SCANTRAIL_PAGER_*).

    Critical alerts page the first officer on duty and escalate when nobody
    acknowledges (POST to the ack link in the page); warnings wait in GET
    /queue/{site}?officer=ID; info is only recorded. Acks and the queue need
    a token (see `scantrail sink pager-token`). Every step is written to scantrail.pages, and an
    alert's offset is committed only after its outcome is recorded there.
    """
    from scantrail.settings import KafkaSettings
    from sinks.channels import PagerSettings, load_roster, resolve_secrets
    from sinks.pager import Pager

    log_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.INFO, format=log_format)
    overrides = {"roster": roster, "group": group, "port": port, "ack_timeout_s": ack_timeout}
    settings = PagerSettings().model_copy(
        update={k: v for k, v in overrides.items() if v is not None}
    )
    loaded = load_roster(settings.roster)
    runner = Pager(KafkaSettings(), settings, loaded, resolve_secrets(loaded))

    def stop(signum: int, frame: FrameType | None) -> None:
        runner.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runner.run()
    click.echo(json.dumps(dict(sorted(runner.stats.items()))))


@sink.command("pager-token")
@click.argument("officer_id")
def pager_token(officer_id: str) -> None:
    """Print OFFICER_ID's bearer token for the pager's queue and acks.

    Hand it to the officer with the duty roster. The pager checks it with its
    ack secret (SCANTRAIL_PAGER_ACK_SECRET, _ACK_SECRET_FILE, or the one it
    created under the state directory), so run this where the pager runs.
    Changing the secret revokes every token and every ack link at once.
    """
    from sinks.ack_tokens import officer_token
    from sinks.channels import PagerSettings

    click.echo(officer_token(PagerSettings().load_ack_secret(), officer_id))

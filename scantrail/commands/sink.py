"""``scantrail sink``: the consumers that move events out of Kafka."""

from __future__ import annotations

import json
import logging
import signal
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
def influx(group: str, idle_exit: float | None) -> None:
    """Write temperatures and alerts to InfluxDB (SCANTRAIL_INFLUX_*).

    Offsets are committed only after InfluxDB acknowledged the batch; while
    InfluxDB is down the sink pauses and retries with backoff.
    """
    from scantrail.settings import InfluxSettings, KafkaSettings
    from sinks.influx import InfluxSink

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    runner = InfluxSink(KafkaSettings(), InfluxSettings(), group_id=group)

    def stop(signum: int, frame: FrameType | None) -> None:
        runner.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runner.run(idle_exit_s=idle_exit)
    click.echo(json.dumps(runner.stats.as_dict()))

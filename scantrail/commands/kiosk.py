"""``scantrail kiosk``: one gate, spooling every event before publishing it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click


@click.command()
@click.option("--kiosk-id", required=True, help="This gate's id, e.g. kiosk-007.")
@click.option("--site-id", required=True, help="The community (site) the gate guards.")
@click.option(
    "--spool",
    "spool_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite spool file; default <state dir>/kiosk/<kiosk-id>.db.",
)
@click.option("--simulated", is_flag=True, help="Simulated residents instead of a camera.")
@click.option("--scans", default=100, show_default=True, help="With --simulated: passages.")
@click.option("--rate", default=5.0, show_default=True, help="With --simulated: scans per second.")
@click.option(
    "--heartbeat",
    "heartbeat_s",
    default=30.0,
    show_default=True,
    help="Seconds between heartbeats.",
)
@click.option(
    "--drain-timeout",
    default=120.0,
    show_default=True,
    help="Seconds to wait for the spool to empty at exit.",
)
def kiosk(
    kiosk_id: str,
    site_id: str,
    spool_path: Path | None,
    simulated: bool,
    scans: int,
    rate: float,
    heartbeat_s: float,
    drain_timeout: float,
) -> None:
    """Run one gate kiosk.

    Every scan and reading is written to a durable local spool first and sent
    to Kafka (SCANTRAIL_KAFKA_BOOTSTRAP) by a background publisher that
    deletes a row only after the broker acknowledged it: a kiosk that loses
    its network keeps scanning and catches up later.
    """
    from ingest.kiosk import GateIdentity, Kiosk
    from ingest.kiosk_runner import run_simulated
    from ingest.publisher import SpoolPublisher
    from ingest.spool import Spool
    from scantrail.clock import SystemClock
    from scantrail.settings import KafkaSettings, state_dir

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)
    path = spool_path or state_dir() / "kiosk" / f"{kiosk_id}.db"
    spool = Spool(path)
    gate = Kiosk(GateIdentity(kiosk_id=kiosk_id, site_id=site_id), spool)
    publisher = SpoolPublisher(spool, KafkaSettings())
    publisher.start()
    if not simulated:
        raise click.UsageError("camera mode: pass --source (see ingest.gate); or use --simulated")
    run_simulated(gate, publisher, SystemClock(), scans=scans, rate=rate, heartbeat_s=heartbeat_s)
    publisher.stop(drain_s=drain_timeout)
    click.echo(
        json.dumps(
            {
                "kiosk_id": kiosk_id,
                "scans_recorded": gate.scans_since_start,
                "last_seq": spool.counter("scan_seq"),
                "spool_depth": spool.depth(),
                "sent": publisher.stats.sent,
            }
        )
    )

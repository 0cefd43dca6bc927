"""``scantrail checkin``: the page a venue poster opens, spooling check-ins for Kafka."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from scantrail.commands.pass_ import _issuer_dir, pub_option, revocations_option


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback).")
@click.option("--port", default=8090, show_default=True, type=click.IntRange(1, 65535))
@click.option("--server-id", default="checkin-1", show_default=True, help="Prefix of event ids.")
@click.option(
    "--spool",
    "spool_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite spool file; default <state dir>/checkin/<server-id>.db.",
)
@click.option("--per-pass", default=3, show_default=True, help="Check-ins per pass per window.")
@click.option("--per-address", default=30, show_default=True, help="Requests per address.")
@click.option("--window", "window_s", default=60.0, show_default=True, help="Seconds.")
@click.option(
    "--drain-timeout", default=30.0, show_default=True, help="Seconds to empty the spool at exit."
)
@pub_option
@revocations_option
def checkin(
    host: str,
    port: int,
    server_id: str,
    spool_path: Path | None,
    per_pass: int,
    per_address: int,
    window_s: float,
    drain_timeout: float,
    pub_path: Path | None,
    revocations: Path | None,
) -> None:
    """Serve venue check-in pages: verify phone tokens offline, spool scans, publish.

    Visitors can register when SCANTRAIL_VISITOR_SECRET (or _SECRET_FILE) is
    set. Counts of what was refused are at /stats.
    """
    from aiohttp import web

    from ingest.checkin import CheckinLimits, CheckinService, make_app
    from ingest.passes import PassVerifier, RevocationList, load_public_key
    from ingest.publisher import SpoolPublisher
    from ingest.spool import Spool
    from scantrail.settings import KafkaSettings, VisitorSettings, state_dir

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)
    verifier = PassVerifier(
        load_public_key(pub_path or _issuer_dir() / "issuer.pub"),
        RevocationList(revocations or _issuer_dir() / "revoked.json"),
    )
    visitors = VisitorSettings()
    secret = None
    if visitors.secret.get_secret_value() or visitors.secret_file is not None:
        try:
            secret = visitors.key()
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    spool = Spool(spool_path or state_dir() / "checkin" / f"{server_id}.db")
    publisher = SpoolPublisher(spool, KafkaSettings())
    service = CheckinService(
        verifier,
        spool,
        server_id=server_id,
        limits=CheckinLimits(per_pass=per_pass, per_address=per_address, window_s=window_s),
        visitor_secret=secret,
        clock=lambda: datetime.now(UTC),
        monotonic=time.monotonic,
    )
    publisher.start()
    app = make_app(service, on_cleanup=lambda: publisher.stop(drain_s=drain_timeout))
    click.echo(f"check-in pages on http://{host}:{port}/v/<venue code>", err=True)
    web.run_app(app, host=host, port=port, print=None)

"""``scantrail visitor``: register a visitor without a pass at a kiosk."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click


@click.command()
@click.option("--kiosk-id", required=True, help="The gate registering the visitor.")
@click.option("--site-id", required=True, help="The community (site) of the gate.")
@click.option(
    "--phone",
    prompt=True,
    hide_input=True,
    help="The number the visitor shows; only its keyed hash is kept (prompted if not given).",
)
@click.option("--visiting", default=None, help="Whom they visit: a person or household id.")
@click.option("--celsius", type=float, default=None, help="Their temperature at the gate.")
@click.option("--direction", type=click.Choice(["in", "out"]), default="in", show_default=True)
@click.option(
    "--spool",
    "spool_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The kiosk's spool; default <state dir>/kiosk/<kiosk-id>.db (the kiosk's own).",
)
@click.option(
    "--publish-timeout",
    default=10.0,
    show_default=True,
    help="Seconds to try sending now; 0 leaves it to the kiosk's publisher.",
)
def visitor(
    kiosk_id: str,
    site_id: str,
    phone: str,
    visiting: str | None,
    celsius: float | None,
    direction: str,
    spool_path: Path | None,
    publish_timeout: float,
) -> None:
    """Record a visitor's passage and reading in the kiosk's spool.

    The visitor's id is an HMAC of the phone number under the deployment's
    SCANTRAIL_VISITOR_SECRET (or _SECRET_FILE): the same visitor has the same
    id at every gate, and the number itself is never stored or sent.
    """
    from ingest.kiosk import GateIdentity, Kiosk
    from ingest.publisher import SpoolPublisher
    from ingest.spool import Spool
    from ingest.visitors import visitor_id
    from scantrail.settings import KafkaSettings, VisitorSettings, state_dir

    try:
        who = visitor_id(phone, VisitorSettings().key())
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    spool = Spool(spool_path or state_dir() / "kiosk" / f"{kiosk_id}.db")
    kiosk = Kiosk(GateIdentity(kiosk_id=kiosk_id, site_id=site_id), spool)
    scan, reading = kiosk.record_visitor(
        visitor_id=who,
        direction="out" if direction == "out" else "in",
        at=datetime.now(UTC),
        visiting=visiting,
        celsius=celsius,
    )
    sent = 0
    if publish_timeout > 0:
        publisher = SpoolPublisher(spool, KafkaSettings())
        publisher.start()
        publisher.stop(drain_s=publish_timeout)
        sent = publisher.stats.sent
    click.echo(
        json.dumps(
            {
                "person_id": who,
                "scan_event_id": scan.event_id,
                "reading_event_id": None if reading is None else reading.event_id,
                "sent": sent,
                "spool_depth": spool.depth(),
            }
        )
    )

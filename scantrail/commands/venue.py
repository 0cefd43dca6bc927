"""``scantrail venue``: signed venue codes and their printable posters."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from scantrail.commands.pass_ import _issuer_dir, key_option


@click.group("venue")
def venue_group() -> None:
    """Venue codes for phone check-in at compounds, markets, pharmacies, buses, workplaces."""


@venue_group.command()
@click.option("--venue-id", required=True, help="The venue's id (its kiosk and site in scans).")
@click.option("--site", "site_id", required=True, help="The community (site) it belongs to.")
@click.option(
    "--kind",
    type=click.Choice(["compound_gate", "market", "pharmacy", "bus", "workplace"]),
    required=True,
)
@click.option("--name", default="", help="What the poster calls it (any language).")
@click.option("--days", type=click.IntRange(1, 366), default=30, show_default=True)
@click.option(
    "--base-url",
    default="http://127.0.0.1:8090",
    show_default=True,
    help="Where phones reach `scantrail checkin` (the poster's QR opens <base-url>/v/<code>).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("venues"),
    show_default=True,
)
@key_option
def issue(
    venue_id: str,
    site_id: str,
    kind: str,
    name: str,
    days: int,
    base_url: str,
    out_dir: Path,
    key_path: Path | None,
) -> None:
    """Sign a venue code and write its A4 poster PDF (QR, Chinese and English)."""
    from ingest.passes import load_private_key
    from ingest.venues import Venue, checkin_url, issue_venue, write_poster

    issuer = load_private_key(key_path or _issuer_dir() / "issuer.key")
    start = datetime.now(UTC).replace(microsecond=0)
    venue = Venue(
        venue_id=venue_id,
        site_id=site_id,
        kind=kind,  # type: ignore[arg-type]  # click.Choice holds the VenueKind values
        valid_from=start,
        valid_until=start + timedelta(days=days),
        name=name,
    )
    code = issue_venue(venue, issuer)
    url = checkin_url(base_url, code)
    poster = write_poster(venue, code, url, out_dir / f"{venue_id}.pdf")
    click.echo(json.dumps({"venue_id": venue_id, "code": code, "url": url, "poster": str(poster)}))

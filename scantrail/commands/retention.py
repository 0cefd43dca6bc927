"""``scantrail retention``: remove personal data past its retention where no broker setting does."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from zoneinfo import ZoneInfo

import click


@click.group()
def retention() -> None:
    """Retention jobs (run daily)."""


@retention.command()
@click.option(
    "--days", type=float, default=None, help="Default SCANTRAIL_RETENTION_QUARANTINE_DAYS."
)
def quarantine(days: float | None) -> None:
    """Tombstone quarantine records that ended more than DAYS ago (idempotent)."""
    from scantrail.retention import tombstone_expired_quarantines
    from scantrail.settings import KafkaSettings, RetentionSettings, WorkerSettings

    keep = RetentionSettings().quarantine_days if days is None else days
    today = datetime.now(ZoneInfo(WorkerSettings().timezone)).date()
    result = tombstone_expired_quarantines(KafkaSettings(), today, keep)
    click.echo(json.dumps({**asdict(result), "today": today.isoformat(), "keep_days": keep}))

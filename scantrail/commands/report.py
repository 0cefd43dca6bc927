"""``scantrail report``: the afternoon report of a day, as PDF and JSON."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click


@click.command()
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The local day to report (YYYY-MM-DD); default today.",
)
@click.option("--site", default=None, help="Only this site (default: every site).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write report-<date>[-<site>].pdf and .json (default SCANTRAIL_REPORT_DIR).",
)
@click.option(
    "--daily",
    is_flag=True,
    help="Keep running: make today's report every day at SCANTRAIL_REPORT_AT (default 16:00).",
)
def report(day: datetime | None, site: str | None, out_dir: Path | None, daily: bool) -> None:
    """Write the daily report: passages, readings, fevers and how they were settled,
    clusters, quarantine breaches, outing-quota and health-code alerts, silent
    kiosks, and the 14-day curves of the persons with a fever that day.

    Built from InfluxDB (what the sink stored) and the alerts topic. Reading the
    curves reads personal data, so each report appends an audit record.
    """
    from processors.daily_report import next_run
    from scantrail.settings import ReportSettings

    settings = ReportSettings()
    zone = ZoneInfo(settings.timezone)
    target = out_dir or settings.resolved_dir()
    if not daily:
        local_day = day.date() if day is not None else datetime.now(zone).date()
        click.echo(json.dumps(_make(local_day, site, target, zone)))
        return
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger("scantrail.report")
    while True:
        due = next_run(datetime.now(UTC), settings.at, zone)
        log.info("next report at %s", due.isoformat())
        while (wait := (due - datetime.now(UTC)).total_seconds()) > 0:
            time.sleep(min(wait, 60.0))
        try:
            click.echo(json.dumps(_make(due.date(), site, target, zone)))
        except Exception:  # the schedule must outlive one failed report; it is logged
            log.exception("the report of %s failed; next one tomorrow", due.date())


def _make(local_day: date, site: str | None, out_dir: Path, zone: ZoneInfo) -> dict[str, object]:
    from scantrail.audit import AuditLog, audit_record, local_actor
    from scantrail.settings import InfluxSettings, KafkaSettings
    from sinks.daily_report import make_report, write_report

    kafka = KafkaSettings()
    made_at = datetime.now(UTC)
    figures = make_report(
        local_day, zone, site=site, kafka=kafka, influx=InfluxSettings(), made_at=made_at
    )
    audit = AuditLog(kafka)
    try:
        audit.append(
            audit_record(
                at=made_at,
                actor=local_actor(),
                channel="cli",
                action="daily_report",
                outcome="allowed",
                detail={
                    "date": local_day.isoformat(),
                    "site": site,
                    "curves_of_persons": len(figures["curves"]),
                },
            )
        )
    finally:
        audit.close()
    pdf, json_path = write_report(figures, out_dir)
    return {"pdf": str(pdf), "json": str(json_path), "totals": figures["totals"]}

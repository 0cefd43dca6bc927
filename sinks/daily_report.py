"""The daily report's shell: rows from InfluxDB, alerts from Kafka, a PDF and a JSON file.

The figures are :func:`processors.daily_report.build_report`'s; this module
only reads and draws. Alerts are read from the alerts topic from the first
record whose timestamp (the alert's event time, see the contract) is in the
day, up to the end offsets found when the read started, and deduplicated by
``alert_id`` (at-least-once delivery may repeat one).
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from processors.daily_report import (
    CURVE_DAYS,
    CountRow,
    Heartbeat,
    ReportInputs,
    build_report,
    day_bounds,
    fever_persons,
)
from scantrail import contract
from scantrail.broker import connection
from scantrail.errors import ContractError
from scantrail.settings import InfluxSettings, KafkaSettings

log = logging.getLogger(__name__)


def read_alerts(kafka: KafkaSettings, start: datetime, end: datetime) -> list[contract.Alert]:
    """Alerts whose record timestamp is in [start, end), as the topic holds them now."""
    from kafka import KafkaConsumer, TopicPartition

    topic = kafka.topic(contract.ALERTS)
    consumer = KafkaConsumer(**connection(kafka), enable_auto_commit=False, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return []
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        starts = consumer.offsets_for_times(
            {tp: int(start.timestamp() * 1000) for tp in partitions}
        )
        todo = {}
        for tp in partitions:
            found = starts.get(tp)
            if found is None or found.offset >= ends[tp]:
                continue
            consumer.seek(tp, found.offset)
            todo[tp] = ends[tp]
        alerts: list[contract.Alert] = []
        bad = 0
        while todo:
            batch = consumer.poll(timeout_ms=2000, max_records=5000)
            if not batch:
                break
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= todo.get(tp, 0):
                        continue
                    try:
                        alert = contract.decode_as(record.value, contract.Alert)
                    except ContractError:
                        bad += 1
                        continue
                    if start <= alert.event_time < end:
                        alerts.append(alert)
                if consumer.position(tp) >= todo.get(tp, 0):
                    todo.pop(tp, None)
        if bad:
            log.warning("%d undecodable records on %s were left out of the report", bad, topic)
        return alerts
    finally:
        consumer.close()


def _flux_time(at: datetime) -> str:
    return at.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")


def _site_filter(site: str | None) -> str:
    if site is None:
        return ""
    escaped = site.replace("\\", "\\\\").replace('"', '\\"')
    return f' |> filter(fn: (r) => r.site_id == "{escaped}")'


def read_influx(
    influx: InfluxSettings, start: datetime, end: datetime, site: str | None, persons: list[str]
) -> ReportInputs:
    """Passages and readings by hour, heartbeats, and the persons' 14-day curves."""
    from influxdb_client import InfluxDBClient

    span = f"range(start: {_flux_time(start)}, stop: {_flux_time(end)})"
    where = _site_filter(site)
    inputs = ReportInputs()
    with InfluxDBClient(
        url=influx.url, token=influx.token.get_secret_value(), org=influx.org, timeout=60_000
    ) as client:
        api = client.query_api()

        def rows(flux: str) -> list[dict[str, Any]]:
            return [r.values for t in api.query(flux, org=influx.org) for r in t.records]

        passages = rows(
            f'from(bucket: "{influx.bucket}") |> {span}'
            ' |> filter(fn: (r) => r._measurement == "passages" and r._field == "count")'
            f'{where} |> group(columns: ["site_id", "direction"])'
            ' |> aggregateWindow(every: 1h, fn: sum, createEmpty: false, timeSrc: "_start")'
        )
        inputs.passages = [
            CountRow(str(r["site_id"]), r["_time"], int(r["_value"]), str(r["direction"]))
            for r in passages
        ]
        readings = rows(
            f'from(bucket: "{influx.bucket}") |> {span}'
            ' |> filter(fn: (r) => r._measurement == "temperature" and r._field == "valid")'
            f"{where}"
            ' |> map(fn: (r) => ({r with valid: if r._value then "valid" else "invalid"}))'
            ' |> group(columns: ["site_id", "valid"])'
            ' |> aggregateWindow(every: 1h, fn: count, createEmpty: false, timeSrc: "_start")'
        )
        inputs.readings = [
            CountRow(str(r["site_id"]), r["_time"], int(r["_value"]), str(r["valid"]))
            for r in readings
        ]
        beats = rows(
            f'from(bucket: "{influx.bucket}")'
            f" |> range(start: {_flux_time(start - timedelta(days=1))}, stop: {_flux_time(end)})"
            ' |> filter(fn: (r) => r._measurement == "kiosk_health" and r._field == "spool_depth")'
            f'{where} |> keep(columns: ["_time", "site_id", "kiosk_id"])'
        )
        inputs.heartbeats = [
            Heartbeat(str(r["site_id"]), str(r["kiosk_id"]), r["_time"]) for r in beats
        ]
        if persons:
            names = "[" + ", ".join(json.dumps(p) for p in persons) + "]"
            curves = rows(
                f'from(bucket: "{influx.watched_bucket}")'
                f" |> range(start: {_flux_time(end - timedelta(days=CURVE_DAYS))},"
                f" stop: {_flux_time(end)})"
                ' |> filter(fn: (r) => r._measurement == "watched_temperature"'
                ' and r._field == "celsius")'
                f" |> filter(fn: (r) => contains(value: r.person_id, set: {names}))"
            )
            for r in curves:
                inputs.curves.setdefault(str(r["person_id"]), []).append(
                    (r["_time"], float(r["_value"]))
                )
    return inputs


def make_report(
    day: date,
    zone: ZoneInfo,
    *,
    site: str | None,
    kafka: KafkaSettings,
    influx: InfluxSettings,
    made_at: datetime,
) -> dict[str, Any]:
    start, end = day_bounds(day, zone)
    alerts = read_alerts(kafka, start, end)
    inputs = read_influx(
        influx, start, end, site, fever_persons(a for a in alerts if site in (None, a.site_id))
    )
    inputs.alerts = alerts
    return build_report(inputs, day, zone, site=site, made_at=made_at)


def write_report(figures: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``report-<date>[-<site>].pdf`` and ``.json`` in ``out_dir``; returns both paths."""
    stem = f"report-{figures['date']}" + (f"-{figures['site']}" if figures["site"] else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(json_path)
    pdf_path = render_pdf(figures, out_dir / f"{stem}.pdf")
    return pdf_path, json_path


def render_pdf(figures: dict[str, Any], path: Path) -> Path:
    """A4 landscape pages: the summary table, one page per site, the fever curves."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    tmp = path.with_suffix(".pdf.tmp")
    size = (11.69, 8.27)
    title = f"ScanTrail daily report · {figures['date']} ({figures['timezone']})"
    if figures["site"]:
        title += f" · site {figures['site']}"
    with PdfPages(tmp, metadata={"Title": title, "Creator": "scantrail report"}) as pdf:
        fig = plt.figure(figsize=size)
        fig.suptitle(title, fontsize=16, x=0.02, ha="left")
        _summary(fig, figures)
        pdf.savefig(fig)
        plt.close(fig)
        for name, entry in figures["sites"].items():
            fig = plt.figure(figsize=size)
            fig.suptitle(f"{title}\nsite {name}", fontsize=13, x=0.02, ha="left")
            _site_page(fig, entry)
            pdf.savefig(fig)
            plt.close(fig)
        fig = plt.figure(figsize=size)
        fig.suptitle(
            f"{title}\n14-day curves of the persons with a fever alert",
            fontsize=13,
            x=0.02,
            ha="left",
        )
        _curves(fig, figures)
        pdf.savefig(fig)
        plt.close(fig)
    tmp.replace(path)
    return path


def _summary(fig: Any, figures: dict[str, Any]) -> None:
    totals = figures["totals"]
    ax = fig.add_axes((0.03, 0.05, 0.94, 0.8))
    ax.axis("off")
    header = [
        "site",
        "in",
        "out",
        "readings",
        "invalid",
        "fevers",
        "settled*",
        "clusters",
        "breaches",
        "outing",
        "code y/r",
        "silent",
    ]
    rows = []
    for name, e in figures["sites"].items():
        settled = e["fevers_settled"]
        alerts = e["alerts"]
        rows.append(
            [
                name,
                e["passages_in_total"],
                e["passages_out_total"],
                e["readings_total"],
                e["readings_invalid"],
                sum(e["fevers"].values()),
                "/".join(
                    str(settled.get(k, 0)) for k in ("confirmed", "cleared", "unconfirmed", "open")
                ),
                len(e["clusters"]),
                len(e["quarantine_breaches"]),
                len(e["outing_quota"]),
                f"{alerts.get('health_code_yellow', 0)}/{alerts.get('health_code_red', 0)}",
                len(e["silent_kiosks"]),
            ]
        )
    rows.append(
        [
            "district",
            totals["passages_in"],
            totals["passages_out"],
            totals["readings"],
            "",
            sum(v for k, v in totals["alerts"].items() if k.startswith("fever_")),
            "",
            totals["alerts"].get("fever_cluster", 0),
            totals["alerts"].get("quarantine_breach", 0),
            totals["alerts"].get("outing_quota_exceeded", 0),
            f"{totals['alerts'].get('health_code_yellow', 0)}/"
            f"{totals['alerts'].get('health_code_red', 0)}",
            totals["silent_kiosks"],
        ]
    )
    shown = rows[:-1][:12] + rows[-1:]  # the rest are on their own pages and in the JSON
    table = ax.table(
        cellText=[[str(c) for c in r] for r in shown], colLabels=header, loc="upper center"
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.3)
    made = figures["made_at"] or "end of day"
    ax.text(
        0,
        0.5,
        "* suspicions settled: confirmed / cleared / unconfirmed / still open;"
        f" silent: kiosk silences over 5 min. Made at {made}.",
        fontsize=8,
        transform=ax.transAxes,
    )
    kinds = totals["alerts"]
    bars = fig.add_axes((0.25, 0.06, 0.7, 0.36))
    if kinds:
        names = list(kinds)
        bars.barh(names, [kinds[n] for n in names], color="tab:red")
        bars.invert_yaxis()
        bars.tick_params(labelsize=8)
    bars.set_title("alerts by kind, whole district", fontsize=10)


def _site_page(fig: Any, e: dict[str, Any]) -> None:
    hours = list(range(24))
    ax1 = fig.add_axes((0.06, 0.55, 0.42, 0.32))
    ax1.bar([h - 0.2 for h in hours], e["passages_in"], width=0.4, label="in")
    ax1.bar([h + 0.2 for h in hours], e["passages_out"], width=0.4, label="out")
    ax1.set_title("passages by hour", fontsize=10)
    ax1.set_xticks(range(0, 24, 3))
    ax1.legend(fontsize=8)
    ax2 = fig.add_axes((0.55, 0.55, 0.42, 0.32))
    ax2.bar(hours, e["readings"], color="tab:green")
    ax2.set_title(f"readings by hour ({e['readings_invalid']} out of range)", fontsize=10)
    ax2.set_xticks(range(0, 24, 3))
    for ax in (ax1, ax2):  # counts: never below zero, and an empty day still has an axis
        ax.set_ylim(0, max(1.0, ax.get_ylim()[1]))
    ax3 = fig.add_axes((0.03, 0.03, 0.94, 0.45))
    ax3.axis("off")
    fevers = ", ".join(f"{k} {v}" for k, v in e["fevers"].items()) or "none"
    settled = ", ".join(f"{k} {v}" for k, v in e["fevers_settled"].items()) or "-"
    lines = [f"fevers: {fevers}", f"suspicions settled: {settled}"]
    for key, label in (
        ("clusters", "clusters"),
        ("quarantine_breaches", "quarantine breaches"),
        ("outing_quota", "outing quota"),
        ("health_codes", "health codes"),
    ):
        items = e[key]
        lines.append(f"{label}: {len(items)}")
        for item in items[:4]:
            lines.append(f"    {item['at'][11:19]} {item['kind']} {item['person_id'] or ''}")
        if len(items) > 4:
            lines.append(f"    ... and {len(items) - 4} more (see the JSON)")
    silent = e["silent_kiosks"]
    lines.append(f"silent kiosks: {len(silent)}")
    for item in silent[:3]:
        span = f"{item['from'][11:16]}-{item['to'][11:16]}"
        lines.append(f"    {item['kiosk_id']} {span} ({item['minutes']} min)")
    ax3.text(0, 1, "\n".join(lines), fontsize=8, va="top", family="monospace")


def _curves(fig: Any, figures: dict[str, Any]) -> None:
    curves = figures["curves"]
    ax = fig.add_axes((0.07, 0.1, 0.88, 0.72))
    if not curves:
        ax.axis("off")
        ax.text(0.5, 0.5, "no fever alerts this day", ha="center", fontsize=14)
        return
    for person, points in list(curves.items())[:12]:
        if points:
            times = [datetime.fromisoformat(t) for t, _ in points]
            ax.plot(times, [c for _, c in points], marker=".", label=person)
    ax.axhline(37.3, color="red", linestyle="--", linewidth=1, label="37.3 °C")
    ax.set_ylabel("°C")
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.autofmt_xdate()

"""The afternoon report: a district's day in figures, per site (pure).

A command centre totted up its data every afternoon: passages, fevers,
clusters, the curves of the persons it watched (field notes). This module
turns rows read from InfluxDB and alerts read from the alerts topic into the
figures of one local day; :mod:`sinks.daily_report` reads the rows, writes the
JSON and draws the PDF. No I/O, no clock: the same rows give the same figures.

Figures, per site (a check-in venue is a site of its own):

* passages in and out by local hour (the sink's per-minute ``passages`` counts);
* readings by local hour, and how many were out of the valid range;
* fevers by alert kind, and how each suspicion was settled (confirmed,
  cleared, unconfirmed, or still open when the report was made);
* clusters, quarantine breaches, outing-quota alerts, health-code alerts;
* silent kiosks: a kiosk that had sent heartbeats and then fell silent for
  longer than ``silence`` (default 5 minutes; heartbeats come every 30 s);
* the persons with a fever alert that day, with their 14-day curves.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from scantrail.contract import Alert

FEVER_KINDS = (
    "fever_suspected",
    "fever_confirmed",
    "fever_cleared",
    "fever_unconfirmed",
    "fever_unidentified",
    "temperature_anomaly",
)
SETTLING = ("fever_confirmed", "fever_cleared", "fever_unconfirmed")
SECTIONS: dict[str, tuple[str, ...]] = {
    "clusters": ("fever_cluster",),
    "quarantine_breaches": ("quarantine_breach",),
    "outing_quota": ("outing_quota_exceeded",),
    "health_codes": ("health_code_yellow", "health_code_red"),
}
CURVE_DAYS = 14
DEFAULT_SILENCE = timedelta(minutes=5)


class CountRow(NamedTuple):
    """A count at a time (an hour's window start, or a minute) for a site."""

    site_id: str
    at: datetime
    value: int
    label: str = ""  # direction of passages; "valid"/"invalid" for readings


class Heartbeat(NamedTuple):
    site_id: str
    kiosk_id: str
    at: datetime


@dataclass
class ReportInputs:
    passages: list[CountRow] = field(default_factory=list)
    readings: list[CountRow] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    heartbeats: list[Heartbeat] = field(default_factory=list)
    # person -> [(time, celsius)] over the 14 days up to the report's end
    curves: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """Start (inclusive) and end (exclusive) of a local day, as aware datetimes."""
    start = datetime.combine(day, time(0), zone)
    end = datetime.combine(day + timedelta(days=1), time(0), zone)
    return start, end


def next_run(now: datetime, at: str, zone: ZoneInfo) -> datetime:
    """The next local ``HH:MM`` strictly after ``now`` (the daily schedule)."""
    hour, minute = (int(x) for x in at.split(":"))
    local = now.astimezone(zone)
    candidate = datetime.combine(local.date(), time(hour, minute), zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), time(hour, minute), zone)
    return candidate


def fever_persons(alerts: Iterable[Alert]) -> list[str]:
    """Persons with a fever alert, whose curves the report draws."""
    return sorted(
        {a.person_id for a in alerts if a.kind in FEVER_KINDS and a.person_id is not None}
    )


def silences(
    beats: Sequence[datetime], start: datetime, end: datetime, longer_than: timedelta
) -> list[tuple[datetime, datetime]]:
    """Gaps between heartbeats (and from the last one to ``end``) inside [start, end)."""
    times = sorted(beats)
    gaps: list[tuple[datetime, datetime]] = []
    for before, after in zip(times, [*times[1:], end], strict=True):
        lo, hi = max(before, start), min(after, end)
        if hi - lo > longer_than and before < end:
            gaps.append((lo, hi))
    return gaps


def _hour(at: datetime, zone: ZoneInfo) -> int:
    return at.astimezone(zone).hour


def build_report(
    inputs: ReportInputs,
    day: date,
    zone: ZoneInfo,
    *,
    site: str | None = None,
    made_at: datetime | None = None,
    silence: timedelta = DEFAULT_SILENCE,
) -> dict[str, Any]:
    """The figures of one local day (JSON-able), per site and for the whole district."""
    start, end = day_bounds(day, zone)
    until = min(end, made_at) if made_at is not None else end

    def wanted(site_id: str, at: datetime) -> bool:
        return (site is None or site_id == site) and start <= at < end

    sites: dict[str, dict[str, Any]] = defaultdict(_empty_site)
    for row in inputs.passages:
        if wanted(row.site_id, row.at) and row.label in ("in", "out"):
            sites[row.site_id][f"passages_{row.label}"][_hour(row.at, zone)] += row.value
    for row in inputs.readings:
        if wanted(row.site_id, row.at):
            entry = sites[row.site_id]
            entry["readings"][_hour(row.at, zone)] += row.value
            if row.label == "invalid":
                entry["readings_invalid"] += row.value
    alerts = sorted(
        (a for a in inputs.alerts if wanted(a.site_id, a.event_time)),
        key=lambda a: (a.event_time, a.kind, a.alert_id),
    )
    unique: dict[str, Alert] = {a.alert_id: a for a in alerts}
    for alert in unique.values():
        entry = sites[alert.site_id]
        entry["alerts"][alert.kind] += 1
        if alert.kind in FEVER_KINDS:
            entry["fevers"][alert.kind] += 1
        for section, kinds in SECTIONS.items():
            if alert.kind in kinds:
                entry[section].append(_alert_line(alert, zone))
    settled = _settlement(unique.values())
    for site_id, outcome in settled:
        sites[site_id]["fevers_settled"][outcome] += 1
    for site_id, gap in _silent_kiosks(inputs.heartbeats, site, start, until, silence, zone):
        sites[site_id]["silent_kiosks"].append(gap)
    persons = fever_persons(unique.values())
    curves = {
        person: [
            [t.astimezone(zone).isoformat(), c]
            for t, c in sorted(inputs.curves.get(person, []))
            if end - timedelta(days=CURVE_DAYS) <= t < end
        ]
        for person in persons
    }
    out_sites = {name: _finish(entry) for name, entry in sorted(sites.items())}
    totals = _totals(out_sites.values())
    return {
        "date": day.isoformat(),
        "timezone": zone.key,
        "site": site,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "made_at": None if made_at is None else made_at.astimezone(zone).isoformat(),
        "totals": totals,
        "sites": out_sites,
        "fever_persons": persons,
        "curves": curves,
    }


def _silent_kiosks(
    heartbeats: Iterable[Any],
    site: str | None,
    start: datetime,
    until: datetime,
    silence: timedelta,
    zone: ZoneInfo,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(site, gap) for every silence of a kiosk that was heard from before ``until``."""
    by_kiosk: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for beat in heartbeats:
        if site is None or beat.site_id == site:
            by_kiosk[(beat.site_id, beat.kiosk_id)].append(beat.at)
    for (site_id, kiosk_id), beats in sorted(by_kiosk.items()):
        if not any(b < until for b in beats):
            continue
        for lo, hi in silences(beats, start, until, silence):
            yield (
                site_id,
                {
                    "kiosk_id": kiosk_id,
                    "from": lo.astimezone(zone).isoformat(),
                    "to": hi.astimezone(zone).isoformat(),
                    "minutes": round((hi - lo).total_seconds() / 60, 1),
                },
            )


def _empty_site() -> dict[str, Any]:
    return {
        "passages_in": [0] * 24,
        "passages_out": [0] * 24,
        "readings": [0] * 24,
        "readings_invalid": 0,
        "alerts": Counter(),
        "fevers": Counter(),
        "fevers_settled": Counter(),
        "clusters": [],
        "quarantine_breaches": [],
        "outing_quota": [],
        "health_codes": [],
        "silent_kiosks": [],
    }


def _finish(entry: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(entry)
    for key in ("alerts", "fevers", "fevers_settled"):
        out[key] = dict(sorted(entry[key].items()))
    out["passages_in_total"] = sum(entry["passages_in"])
    out["passages_out_total"] = sum(entry["passages_out"])
    out["readings_total"] = sum(entry["readings"])
    return out


def _totals(sites: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    alerts: Counter[str] = Counter()
    totals = {"passages_in": 0, "passages_out": 0, "readings": 0, "silent_kiosks": 0}
    for entry in sites:
        totals["passages_in"] += entry["passages_in_total"]
        totals["passages_out"] += entry["passages_out_total"]
        totals["readings"] += entry["readings_total"]
        totals["silent_kiosks"] += len(entry["silent_kiosks"])
        alerts.update(entry["alerts"])
    return {**totals, "alerts": dict(sorted(alerts.items()))}


def _alert_line(alert: Alert, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "kind": alert.kind,
        "at": alert.event_time.astimezone(zone).isoformat(),
        "person_id": alert.person_id,
        "kiosk_id": alert.kiosk_id,
        "alert_id": alert.alert_id,
    }


def _settlement(alerts: Iterable[Alert]) -> list[tuple[str, str]]:
    """(site, outcome) of every fever suspicion: the alert that settled it, or open."""
    alerts = list(alerts)
    settled_by: dict[str, str] = {}
    for alert in alerts:
        if alert.kind in SETTLING:
            for event_id in alert.evidence:
                settled_by.setdefault(event_id, alert.kind.removeprefix("fever_"))
    out = []
    for alert in alerts:
        if alert.kind == "fever_suspected":
            out.append((alert.site_id, settled_by.get(alert.evidence[0], "open")))
    return out

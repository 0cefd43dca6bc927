"""Who gets paged for an alert, and when the page moves on: pure, no I/O, ``now`` passed in.

The roster says, per site, which officers answer alerts, in escalation order,
how to reach them and when they are on duty. From it and an alert this module
decides: a critical alert pages the first officer on duty now (or, when nobody
is, the first in escalation order: a confirmed fever must wake somebody up),
a warning waits in the site's queue, info is only recorded. When nobody
acknowledges a critical page in time it escalates to the next officer not yet
paged, on-duty officers first.

:class:`Ledger` folds the ``page/1`` audit records into the pager's state
(which alerts are handled, which warnings are queued, which escalations are
open), so the same code rebuilds that state from the topic after a restart and
keeps it current while running.

Secrets never appear here: a webhook names an environment variable or a file
holding its HMAC key, and the adapter reads it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scantrail.contract import Alert, PageRecord
from scantrail.errors import ScanTrailError

DEFAULT_TIMEZONE = "Asia/Shanghai"
FALLBACK_SITE = "*"  # roster entry used for sites without their own
_ID = re.compile(r"^[A-Za-z0-9._:@/-]{1,128}$")
_RANGE = re.compile(r"^\s*(\d{2}):(\d{2})\s*-\s*(\d{2}):(\d{2})\s*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RosterError(ScanTrailError, ValueError):
    """The roster is invalid; the message names the site, officer and field."""


@dataclass(frozen=True)
class DutyRange:
    """A daily range ``[start, end)`` in local time; ``start > end`` runs overnight."""

    start: time
    end: time | None  # None: until midnight ("24:00")

    def contains(self, t: time) -> bool:
        if self.end is None:
            return t >= self.start
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # overnight, e.g. 20:00-08:00


@dataclass(frozen=True)
class Webhook:
    url: str
    secret_env: str | None = None
    secret_file: str | None = None


@dataclass(frozen=True)
class Officer:
    id: str
    hours: tuple[DutyRange, ...]  # empty: always on duty
    timezone: str = DEFAULT_TIMEZONE
    webhook: Webhook | None = None
    email: str | None = None

    def on_duty(self, now: datetime) -> bool:
        if now.tzinfo is None:
            raise ValueError("on_duty needs a timezone-aware instant")
        if not self.hours:
            return True
        local = now.astimezone(ZoneInfo(self.timezone)).time().replace(tzinfo=None)
        return any(r.contains(local) for r in self.hours)


@dataclass(frozen=True)
class Roster:
    sites: Mapping[str, tuple[Officer, ...]]

    def officers(self, site_id: str) -> tuple[Officer, ...]:
        return self.sites.get(site_id) or self.sites.get(FALLBACK_SITE, ())

    def officer(self, site_id: str, officer_id: str) -> Officer | None:
        return next((o for o in self.officers(site_id) if o.id == officer_id), None)


# --- parsing -----------------------------------------------------------------


def parse_hours(value: object, where: str) -> tuple[DutyRange, ...]:
    """``"08:00-20:00"``, ``"20:00-08:00"`` (overnight), a comma list or a YAML list."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise RosterError(f"{where}: hours must be 'HH:MM-HH:MM' or a list of them")
    ranges = []
    for item in items:
        match = _RANGE.match(item) if isinstance(item, str) else None
        if not match:
            raise RosterError(f"{where}: hours {item!r} is not 'HH:MM-HH:MM'")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
            raise RosterError(f"{where}: hours {item!r} is not a valid time of day")
        start, end = time(h1, m1), None if h2 == 24 else time(h2, m2)
        if end == start:
            raise RosterError(f"{where}: hours {item!r} is empty; use 00:00-24:00 for all day")
        ranges.append(DutyRange(start, end))
    return tuple(ranges)


def _parse_webhook(value: object, where: str) -> Webhook:
    if not isinstance(value, Mapping):
        raise RosterError(f"{where}: webhook must be a mapping with url and secret_env/secret_file")
    if "secret" in value:
        raise RosterError(f"{where}: never put a secret in the roster; name it with secret_env")
    unknown = set(value) - {"url", "secret_env", "secret_file"}
    if unknown:
        raise RosterError(f"{where}: unknown webhook field(s) {sorted(unknown)}")
    url = value.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise RosterError(f"{where}: webhook url must be an http(s) URL")
    env, file = value.get("secret_env"), value.get("secret_file")
    if (env is None) == (file is None):
        raise RosterError(f"{where}: webhook needs exactly one of secret_env or secret_file")
    if env is not None and (not isinstance(env, str) or not _ENV_NAME.match(env)):
        raise RosterError(f"{where}: secret_env {env!r} is not an environment variable name")
    if file is not None and (not isinstance(file, str) or not file):
        raise RosterError(f"{where}: secret_file must be a path")
    return Webhook(url=url, secret_env=env, secret_file=file)


def _parse_officer(value: object, where: str, default_tz: str) -> Officer:
    if not isinstance(value, Mapping):
        raise RosterError(f"{where}: an officer must be a mapping")
    unknown = set(value) - {"id", "hours", "timezone", "webhook", "email"}
    if unknown:
        raise RosterError(f"{where}: unknown field(s) {sorted(unknown)}")
    officer_id = value.get("id")
    if not isinstance(officer_id, str) or not _ID.match(officer_id):
        raise RosterError(f"{where}: id must be 1-128 of A-Z a-z 0-9 . _ : @ / -")
    where = f"{where} ({officer_id})"
    tz = value.get("timezone", default_tz)
    _check_timezone(tz, where)
    webhook = None if value.get("webhook") is None else _parse_webhook(value["webhook"], where)
    email = value.get("email")
    if email is not None and (not isinstance(email, str) or not _EMAIL.match(email)):
        raise RosterError(f"{where}: email {email!r} is not an address")
    if webhook is None and email is None:
        raise RosterError(f"{where}: needs at least one channel (webhook or email)")
    hours = parse_hours(value.get("hours"), where)
    return Officer(id=officer_id, hours=hours, timezone=tz, webhook=webhook, email=email)


def _check_timezone(tz: object, where: str) -> None:
    if not isinstance(tz, str):
        raise RosterError(f"{where}: timezone must be an IANA name")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise RosterError(f"{where}: unknown timezone {tz!r}") from None


def parse_roster(data: object) -> Roster:
    """Validate a loaded roster document; every problem names where it is."""
    if not isinstance(data, Mapping) or not isinstance(data.get("sites"), Mapping):
        raise RosterError("roster: expected a mapping with a 'sites' mapping")
    unknown = set(data) - {"sites", "timezone"}
    if unknown:
        raise RosterError(f"roster: unknown top-level field(s) {sorted(unknown)}")
    default_tz = data.get("timezone", DEFAULT_TIMEZONE)
    _check_timezone(default_tz, "roster")
    sites: dict[str, tuple[Officer, ...]] = {}
    for site_id, officers in data["sites"].items():
        if not isinstance(site_id, str) or not (site_id == FALLBACK_SITE or _ID.match(site_id)):
            raise RosterError(f"roster: site id {site_id!r} is not an identifier")
        if not isinstance(officers, list) or not officers:
            raise RosterError(f"site {site_id}: needs a non-empty list of officers")
        parsed = tuple(
            _parse_officer(o, f"site {site_id}, officer {i + 1}", default_tz)
            for i, o in enumerate(officers)
        )
        ids = [o.id for o in parsed]
        if len(set(ids)) != len(ids):
            raise RosterError(f"site {site_id}: officer ids repeat ({ids})")
        sites[site_id] = parsed
    return Roster(sites=sites)


# --- decisions ---------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    officer: Officer
    step: int
    on_duty: bool


@dataclass(frozen=True)
class Queue:
    site_id: str


@dataclass(frozen=True)
class Skip:
    reason: str


Decision = Page | Queue | Skip


def escalation_order(roster: Roster, site_id: str, now: datetime) -> list[Officer]:
    """Officers on duty now in roster order, then the off-duty ones, also in roster order."""
    officers = roster.officers(site_id)
    return [o for o in officers if o.on_duty(now)] + [o for o in officers if not o.on_duty(now)]


def next_page(
    roster: Roster, site_id: str, paged: Collection[str], step: int, now: datetime
) -> Page | None:
    """The next officer to page, skipping those already paged; None when all were."""
    for officer in escalation_order(roster, site_id, now):
        if officer.id not in paged:
            return Page(officer=officer, step=step, on_duty=officer.on_duty(now))
    return None


def decide(alert: Alert, roster: Roster, now: datetime) -> Decision:
    """Page, queue or skip one alert, by severity."""
    if alert.severity == "info":
        return Skip("info alerts are recorded, not paged")
    if not roster.officers(alert.site_id):
        return Skip(f"no officers for site {alert.site_id} in the roster")
    if alert.severity == "warning":
        return Queue(alert.site_id)
    return next_page(roster, alert.site_id, (), 0, now) or Skip("no officers")


def escalation_due(step_started: datetime, ack_timeout: timedelta) -> datetime:
    """When a step without an acknowledgement escalates, whether or not it was delivered."""
    return step_started + ack_timeout


# --- the ledger ----------------------------------------------------------------


@dataclass
class AlertState:
    """What the audit records say about one alert."""

    alert_id: str
    site_id: str
    severity: str
    alert: dict[str, Any] | None = None
    handled: bool = False  # the outcome is recorded: redelivery is a duplicate
    step: int = 0
    step_started: datetime | None = None
    officer_id: str | None = None  # officer of the current step
    step_delivered: bool = False
    paged: list[str] = field(default_factory=list)
    queued_at: datetime | None = None
    acked_by: str | None = None
    exhausted: bool = False

    @property
    def open(self) -> bool:
        """A critical page still waiting for somebody to answer."""
        return (
            self.handled
            and self.severity == "critical"
            and self.acked_by is None
            and not self.exhausted
            and self.officer_id is not None
        )


class Ledger:
    """The pager's state as a fold over ``page/1`` records (from the topic or just written)."""

    def __init__(self) -> None:
        self.alerts: dict[str, AlertState] = {}

    def apply(self, rec: PageRecord) -> AlertState:
        state = self.alerts.get(rec.alert_id)
        if state is None:
            state = AlertState(rec.alert_id, rec.site_id, rec.severity)
            self.alerts[rec.alert_id] = state
        if rec.alert is not None:
            state.alert = rec.alert
        if rec.action in ("attempt", "escalated") and rec.officer_id is not None:
            if rec.step != state.step or state.step_started is None:
                state.step, state.step_started, state.step_delivered = rec.step, rec.at, False
            state.officer_id = rec.officer_id
            if rec.officer_id not in state.paged:
                state.paged.append(rec.officer_id)
        if rec.action in (
            "delivered",
            "queued",
            "skipped",
            "escalated",
            "acknowledged",
            "exhausted",
        ):
            state.handled = True
        if rec.action == "delivered" and rec.step == state.step:
            state.step_delivered = True
        elif rec.action == "queued":
            state.queued_at = rec.at
        elif rec.action == "acknowledged":
            state.acked_by = rec.officer_id
        elif rec.action == "exhausted":
            state.exhausted = True
        return state

    def is_handled(self, alert_id: str) -> bool:
        state = self.alerts.get(alert_id)
        return state is not None and state.handled

    def queue(self, site_id: str) -> list[AlertState]:
        """Queued warnings of a site nobody has acknowledged yet, oldest first."""
        waiting = [
            s
            for s in self.alerts.values()
            if s.site_id == site_id and s.queued_at is not None and s.acked_by is None
        ]
        return sorted(waiting, key=lambda s: s.queued_at or datetime.min)

    def open_pages(self) -> list[AlertState]:
        return [s for s in self.alerts.values() if s.open]

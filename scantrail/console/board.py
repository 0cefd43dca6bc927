"""The alert board: alerts and their page records folded into one row per alert. Pure.

The console reads ``scantrail.alerts`` and ``scantrail.pages`` from the start
and applies every record here, so a restart rebuilds the same board and a
reload shows the same rows. The pager's own state comes from
:class:`sinks.routing.Ledger` (the same fold the pager runs), so "paged",
"escalated" and "acknowledged" mean here exactly what they mean to the pager;
the console adds who an alert is assigned to and whether it is resolved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scantrail.contract import Alert, PageRecord
from sinks.routing import AlertState, Ledger

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
STATUSES = ("new", "paged", "queued", "escalated", "exhausted", "acknowledged", "resolved")
#: The statuses of an alert the pager escalated and nobody has answered yet.
ESCALATED = ("escalated", "exhausted")
#: The queue's "escalations" filter: both of them, the section supervisors work from.
ESCALATIONS = "escalations"


@dataclass
class Row:
    alert: Alert
    history: list[PageRecord] = field(default_factory=list)
    assigned_to: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    note: str = ""

    @property
    def alert_id(self) -> str:
        return self.alert.alert_id


@dataclass(frozen=True)
class Filters:
    site: str = ""
    severity: str = ""
    kind: str = ""
    status: str = ""
    show_closed: bool = False

    @classmethod
    def of(cls, query: Any) -> Filters:
        return cls(
            site=str(query.get("site", "")),
            severity=str(query.get("severity", "")),
            kind=str(query.get("kind", "")),
            status=str(query.get("status", "")),
            show_closed=query.get("closed", "") == "1",
        )


class Board:
    def __init__(self) -> None:
        self.ledger = Ledger()
        self.rows: dict[str, Row] = {}
        self.version = 0  # bumped on every change; the SSE stream sends it

    def add_alert(self, alert: Alert) -> None:
        if alert.alert_id in self.rows:
            return  # redelivered: the first copy stands (alert ids are content-derived)
        self.rows[alert.alert_id] = Row(alert)
        self.version += 1

    def apply(self, record: PageRecord) -> None:
        self.ledger.apply(record)
        row = self.rows.get(record.alert_id)
        if row is None and record.alert is not None:
            try:
                alert = Alert.model_validate(record.alert)
            except ValueError:
                alert = None
            if alert is not None:
                row = self.rows[record.alert_id] = Row(alert)
        if row is None:
            self.version += 1
            return
        row.history.append(record)
        if record.action == "assigned":
            row.assigned_to = record.officer_id
        elif record.action == "resolved":
            row.resolved_by, row.resolved_at, row.note = record.by, record.at, record.reason
        self.version += 1

    def state(self, alert_id: str) -> AlertState | None:
        return self.ledger.alerts.get(alert_id)

    def status(self, row: Row) -> str:
        if row.resolved_by is not None:
            return "resolved"
        state = self.state(row.alert_id)
        if state is None:
            return "new"
        if state.acked_by is not None:
            return "acknowledged"
        if state.exhausted:
            return "exhausted"
        if state.step > 0:
            return "escalated"
        if state.queued_at is not None:
            return "queued"
        if state.officer_id is not None:
            return "paged"
        return "new"

    def is_open(self, row: Row) -> bool:
        return self.status(row) not in ("acknowledged", "resolved") and (
            row.alert.severity != "info"
        )

    def visible(self, sees_site: Any, filters: Filters) -> list[Row]:
        """Rows this account may see, filtered; open critical first, newest first within."""
        rows = [
            r
            for r in self.rows.values()
            if sees_site(r.alert.site_id)
            and (not filters.site or r.alert.site_id == filters.site)
            and (not filters.severity or r.alert.severity == filters.severity)
            and (not filters.kind or r.alert.kind == filters.kind)
            and self._status_matches(r, filters.status)
            and (filters.show_closed or filters.status or self.is_open(r))
        ]
        # Open first; among them, what nobody answered (escalated, exhausted) on top.
        rows.sort(key=lambda r: r.alert.event_time, reverse=True)
        rows.sort(
            key=lambda r: (
                not self.is_open(r),
                self.status(r) not in ("escalated", "exhausted"),
                SEVERITY_ORDER.get(r.alert.severity, 9),
            )
        )
        return rows

    def _status_matches(self, row: Row, status: str) -> bool:
        if status == ESCALATIONS:
            return self.status(row) in ESCALATED
        return not status or self.status(row) == status

    def escalations(self, sees_site: Any) -> list[Row]:
        """Escalated alerts nobody has answered that this account may see, latest step first.

        What a supervisor is told about: the pager went past the first officer
        (``escalated``) or ran out of people to page (``exhausted``).
        """
        rows = [
            r
            for r in self.rows.values()
            if sees_site(r.alert.site_id) and self.status(r) in ESCALATED
        ]

        def since(row: Row) -> datetime:
            state = self.state(row.alert_id)
            return (state.step_started if state else None) or row.alert.event_time

        return sorted(rows, key=since, reverse=True)

    def sites(self, sees_site: Any) -> list[str]:
        return sorted({r.alert.site_id for r in self.rows.values() if sees_site(r.alert.site_id)})

    def kinds(self) -> list[str]:
        return sorted({r.alert.kind for r in self.rows.values()})

    def open_critical(self, sees_site: Any = lambda _s: True) -> list[Row]:
        return [
            r
            for r in self.rows.values()
            if r.alert.severity == "critical" and self.is_open(r) and sees_site(r.alert.site_id)
        ]


def fold(alerts: Iterable[Alert], records: Iterable[PageRecord]) -> Board:
    board = Board()
    for alert in alerts:
        board.add_alert(alert)
    for record in records:
        board.apply(record)
    return board

"""All screening shards composed in memory: the offline twin of the live worker.

The live worker keeps each state in a faust table under its own key and moves
readings and confirmations between partitions; :class:`Screener` keeps the same
states in dicts and calls the same step functions in the same order, so a file
screened offline raises exactly the alerts the live pipeline raises.

Feed events in event-time order (:meth:`Screener.run` sorts them), quarantine
records first; :meth:`Screener.finish` then closes every open suspicion as
``fever_unconfirmed``. :meth:`Screener.to_dict`/:meth:`Screener.from_dict`
snapshot all shards, as a worker restart restores its tables.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeAlias

from processors.baselines import judge_confirmation_for_site, judge_reading_for_site_drift
from processors.screening import (
    apply_quarantine,
    expire_pending,
    judge_outing,
    judge_reading_for_kiosk,
    judge_reading_for_person,
    judge_scan,
    pending_deadline,
)
from processors.screening_policy import PolicyLike, SitePolicies
from processors.screening_state import (
    ClusterState,
    DriftState,
    GateState,
    HouseholdState,
    KioskState,
    PersonState,
)
from scantrail.contract import Alert, QuarantineRecord, ScanEvent, TemperatureReading, encode

ScreenEvent: TypeAlias = ScanEvent | TemperatureReading | QuarantineRecord

_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def event_order(event: ScanEvent | TemperatureReading) -> tuple[datetime, str, bytes]:
    """Sort key: event time, then id and content, so ties never depend on input order."""
    return (event.time, event.event_id, encode(event))


def alert_order(alert: Alert) -> tuple[datetime, str, str]:
    """Output order of alerts: event time, then kind (then id, for total determinism)."""
    return (alert.event_time, alert.kind, alert.alert_id)


class Screener:
    """Runs every screening rule over events in memory.

    Parameters:

    * ``policy`` – a :class:`ScreeningPolicy` for all sites, or
      :class:`SitePolicies` with per-site overrides.
    """

    def __init__(self, policy: PolicyLike | None = None) -> None:
        self.policy: PolicyLike = policy if policy is not None else SitePolicies()
        self.kiosks: dict[str, KioskState] = {}
        self.persons: dict[str, PersonState] = {}
        self.gates: dict[str, GateState] = {}
        self.clusters: dict[str, ClusterState] = {}
        self.drifts: dict[str, DriftState] = {}
        self.households: dict[str, HouseholdState] = {}
        self._deadlines: list[tuple[datetime, str]] = []

    def apply_quarantine(self, record: QuarantineRecord) -> list[Alert]:
        """The person's latest order; breaches of the ``out`` scans it covers that came before."""
        gate = self.gates.setdefault(record.person_id, GateState())
        return apply_quarantine(gate, record, self.policy)

    def feed(self, event: ScreenEvent) -> list[Alert]:
        """Judge one event; events must arrive in event-time order."""
        if isinstance(event, QuarantineRecord):
            return self.apply_quarantine(event)
        alerts = self.advance(event.time)
        if isinstance(event, ScanEvent):
            gate = self.gates.setdefault(event.person_id, GateState())
            alerts += judge_scan(gate, event, self.policy)
            if event.household_id is not None:
                household = self.households.setdefault(event.household_id, HouseholdState())
                alerts += judge_outing(household, event, self.policy)
            return alerts
        alerts += judge_reading_for_kiosk(
            self.kiosks.setdefault(event.kiosk_id, KioskState()), event, self.policy
        )
        if event.person_id is not None:
            person = self.persons.setdefault(event.person_id, PersonState())
            found, confirmations = judge_reading_for_person(person, event, self.policy)
            alerts += found
            self._schedule(event.person_id, person)
            for confirmation in confirmations:
                cluster = self.clusters.setdefault(confirmation.site_id, ClusterState())
                alerts += judge_confirmation_for_site(cluster, confirmation, self.policy)
        drift = self.drifts.setdefault(event.site_id, DriftState())
        alerts += judge_reading_for_site_drift(drift, event, self.policy)
        return alerts

    def advance(self, watermark: datetime) -> list[Alert]:
        """Expire the suspicions whose re-measure window closed before ``watermark``."""
        alerts: list[Alert] = []
        while self._deadlines and self._deadlines[0][0] < watermark:
            _, person_id = heapq.heappop(self._deadlines)
            alerts += expire_pending(self.persons[person_id], watermark, self.policy)
        return alerts

    def finish(self) -> list[Alert]:
        """End of input: every open suspicion was never re-measured."""
        alerts = self.advance(_END_OF_TIME)
        for person in self.persons.values():  # belt and braces: the heap covers all
            alerts += expire_pending(person, _END_OF_TIME, self.policy)
        return alerts

    def run(self, events: Iterable[ScreenEvent]) -> list[Alert]:
        """Screen a whole batch: quarantine first, the rest by event time; alerts sorted."""
        others: list[ScanEvent | TemperatureReading] = []
        for event in events:
            if isinstance(event, QuarantineRecord):
                self.apply_quarantine(event)
            else:
                others.append(event)
        alerts: list[Alert] = []
        for event in sorted(others, key=event_order):
            alerts += self.feed(event)
        alerts += self.finish()
        return sorted(alerts, key=alert_order)

    def _schedule(self, person_id: str, person: PersonState) -> None:
        deadline = pending_deadline(person, self.policy)
        if deadline is not None and (deadline, person_id) not in self._deadlines:
            heapq.heappush(self._deadlines, (deadline, person_id))

    def to_dict(self) -> dict[str, Any]:
        """Every shard's state as plain JSON-able dicts, keyed as the live tables are."""
        return {
            "kiosks": {k: s.to_dict() for k, s in self.kiosks.items()},
            "persons": {k: s.to_dict() for k, s in self.persons.items()},
            "gates": {k: s.to_dict() for k, s in self.gates.items()},
            "clusters": {k: s.to_dict() for k, s in self.clusters.items()},
            "drifts": {k: s.to_dict() for k, s in self.drifts.items()},
            "households": {k: s.to_dict() for k, s in self.households.items()},
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], policy: PolicyLike | None = None) -> Screener:
        screener = cls(policy)
        screener.kiosks = {k: KioskState.from_dict(v) for k, v in obj["kiosks"].items()}
        screener.persons = {k: PersonState.from_dict(v) for k, v in obj["persons"].items()}
        screener.gates = {k: GateState.from_dict(v) for k, v in obj["gates"].items()}
        screener.clusters = {k: ClusterState.from_dict(v) for k, v in obj["clusters"].items()}
        screener.drifts = {k: DriftState.from_dict(v) for k, v in obj["drifts"].items()}
        screener.households = {
            k: HouseholdState.from_dict(v) for k, v in obj.get("households", {}).items()
        }
        for person_id, person in screener.persons.items():
            screener._schedule(person_id, person)
        return screener

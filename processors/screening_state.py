"""Shard states of the screening rules, and the alerts they raise.

Each state belongs to exactly one Kafka key, so the live worker keeps it in a
faust table next to the partition that feeds it:

==================  ===========  ====================================================
state               table key    fed by
==================  ===========  ====================================================
``KioskState``      kiosk_id     ``scantrail.temperatures`` (already keyed by kiosk)
``PersonState``     person_id    temperatures repartitioned by person_id
``GateState``       person_id    ``scantrail.scans`` and ``scantrail.quarantine``
``ClusterState``    site_id      confirmations (from PersonState) keyed by site_id
``DriftState``      site_id      temperatures repartitioned by site_id
==================  ===========  ====================================================

States are mutable dataclasses changed in place by the step functions, and
round-trip through plain JSON-able dicts (``to_dict``/``from_dict``), which is
what a faust table stores. Everything is bounded: windows are pruned by event
time and the duplicate filter (:class:`SeenIds`) forgets ids past a horizon.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from statistics import median
from typing import Any

from processors.screening_policy import PRECISION
from scantrail.contract import Alert, Severity, TemperatureReading, alert_id


def _t(value: datetime) -> str:
    return value.isoformat()


def _dt(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


def make_alert(
    kind: str,
    severity: Severity,
    *,
    site_id: str,
    event_time: datetime,
    evidence: Iterable[str],
    kiosk_id: str | None = None,
    person_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> Alert:
    """An alert whose id comes from kind and evidence, raised "at" its event time.

    ``raised_at`` equals ``event_time`` on purpose: wall-clock time would make a
    replay or the offline command disagree with what the live worker produced.
    """
    ids = sorted(set(evidence))
    return Alert(
        alert_id=alert_id(kind, ids),
        kind=kind,
        severity=severity,
        site_id=site_id,
        kiosk_id=kiosk_id,
        person_id=person_id,
        event_time=event_time,
        raised_at=event_time,
        evidence=ids,
        detail=dict(detail or {}),
    )


def rounded_median(values: Iterable[float]) -> float:
    return round(median(values), PRECISION)


@dataclass(frozen=True)
class Sample:
    """The part of a temperature reading the rules keep in state."""

    event_id: str
    time: datetime
    celsius: float
    kiosk_id: str
    site_id: str
    person_id: str | None = None

    @classmethod
    def of(cls, reading: TemperatureReading) -> Sample:
        return cls(
            reading.event_id,
            reading.measured_at,
            reading.celsius,
            reading.kiosk_id,
            reading.site_id,
            reading.person_id,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "time": _t(self.time),
            "celsius": self.celsius,
            "kiosk_id": self.kiosk_id,
            "site_id": self.site_id,
            "person_id": self.person_id,
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Sample:
        person = obj.get("person_id")
        return cls(
            str(obj["event_id"]),
            _dt(obj["time"]),
            float(obj["celsius"]),
            str(obj["kiosk_id"]),
            str(obj["site_id"]),
            None if person is None else str(person),
        )


@dataclass(frozen=True)
class Confirmation:
    """A confirmed fever, passed from the person shard to its site's shard.

    Live, it travels on a repartition topic keyed by ``site_id``; its identity
    (for duplicates) is the second reading's event id.
    """

    site_id: str
    person_id: str
    first: Sample
    second: Sample

    @property
    def event_id(self) -> str:
        return self.second.event_id

    @property
    def time(self) -> datetime:
        return self.second.time

    def to_dict(self) -> dict[str, Any]:
        return {
            "site_id": self.site_id,
            "person_id": self.person_id,
            "first": self.first.to_dict(),
            "second": self.second.to_dict(),
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Confirmation:
        return cls(
            str(obj["site_id"]),
            str(obj["person_id"]),
            Sample.from_dict(obj["first"]),
            Sample.from_dict(obj["second"]),
        )


@dataclass
class SeenIds:
    """Event ids already processed by one shard, forgotten after a horizon.

    Kafka delivers at least once, so every shard drops what it has seen before
    changing state. Ids are kept in arrival order; those older than ``horizon``
    before the newest event (or beyond ``max_ids``) are forgotten from the
    front, which bounds the table at constant cost per event.
    """

    ids: dict[str, datetime] = field(default_factory=dict)
    newest: datetime | None = None

    def check_and_add(
        self, event_id: str, when: datetime, horizon: timedelta, max_ids: int
    ) -> bool:
        """True if new (and now remembered), False for a duplicate."""
        if event_id in self.ids:
            return False
        self.ids[event_id] = when
        if self.newest is None or when > self.newest:
            self.newest = when
        cutoff = self.newest - horizon
        while self.ids:
            oldest = next(iter(self.ids))
            if self.ids[oldest] >= cutoff and len(self.ids) <= max_ids:
                break
            del self.ids[oldest]
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "newest": None if self.newest is None else _t(self.newest),
            "ids": {k: _t(v) for k, v in self.ids.items()},
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SeenIds:
        newest = obj.get("newest")
        return cls(
            {str(k): _dt(v) for k, v in obj.get("ids", {}).items()},
            None if newest is None else _dt(newest),
        )


@dataclass
class KioskState:
    """Per kiosk: recent invalid readings and the last ``sensor_fault``."""

    invalid: list[Sample] = field(default_factory=list)
    last_fault_at: datetime | None = None
    seen: SeenIds = field(default_factory=SeenIds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "invalid": [s.to_dict() for s in self.invalid],
            "last_fault_at": None if self.last_fault_at is None else _t(self.last_fault_at),
            "seen": self.seen.to_dict(),
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> KioskState:
        last = obj.get("last_fault_at")
        return cls(
            [Sample.from_dict(s) for s in obj.get("invalid", [])],
            None if last is None else _dt(last),
            SeenIds.from_dict(obj.get("seen", {})),
        )


@dataclass
class PersonState:
    """Per person: the pending suspicion and the baseline history.

    ``history`` holds (time, °C) of valid readings of the last ``baseline_days``.
    """

    pending: Sample | None = None
    history: list[tuple[datetime, float]] = field(default_factory=list)
    last_anomaly_on: date | None = None
    seen: SeenIds = field(default_factory=SeenIds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pending": None if self.pending is None else self.pending.to_dict(),
            "history": [[_t(t), c] for t, c in self.history],
            "last_anomaly_on": None
            if self.last_anomaly_on is None
            else self.last_anomaly_on.isoformat(),
            "seen": self.seen.to_dict(),
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> PersonState:
        pending = obj.get("pending")
        last = obj.get("last_anomaly_on")
        return cls(
            None if pending is None else Sample.from_dict(pending),
            [(_dt(t), float(c)) for t, c in obj.get("history", [])],
            None if last is None else date.fromisoformat(str(last)),
            SeenIds.from_dict(obj.get("seen", {})),
        )


@dataclass
class GateState:
    """Per person: the latest quarantine record (as a dict) and seen scan ids."""

    quarantine: dict[str, Any] | None = None
    seen: SeenIds = field(default_factory=SeenIds)

    def to_dict(self) -> dict[str, Any]:
        return {"quarantine": self.quarantine, "seen": self.seen.to_dict()}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> GateState:
        record = obj.get("quarantine")
        return cls(None if record is None else dict(record), SeenIds.from_dict(obj.get("seen", {})))


@dataclass
class ClusterState:
    """Per site: confirmations of the last ``cluster_window`` and the last cluster."""

    confirmations: list[Confirmation] = field(default_factory=list)
    last_cluster_at: datetime | None = None
    seen: SeenIds = field(default_factory=SeenIds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "confirmations": [c.to_dict() for c in self.confirmations],
            "last_cluster_at": None if self.last_cluster_at is None else _t(self.last_cluster_at),
            "seen": self.seen.to_dict(),
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> ClusterState:
        last = obj.get("last_cluster_at")
        return cls(
            [Confirmation.from_dict(c) for c in obj.get("confirmations", [])],
            None if last is None else _dt(last),
            SeenIds.from_dict(obj.get("seen", {})),
        )


@dataclass
class DriftState:
    """Per site: valid readings of the last ``drift_window`` per kiosk, last drift per kiosk."""

    readings: dict[str, list[Sample]] = field(default_factory=dict)
    last_drift_at: dict[str, datetime] = field(default_factory=dict)
    seen: SeenIds = field(default_factory=SeenIds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "readings": {k: [s.to_dict() for s in v] for k, v in self.readings.items()},
            "last_drift_at": {k: _t(v) for k, v in self.last_drift_at.items()},
            "seen": self.seen.to_dict(),
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> DriftState:
        return cls(
            {str(k): [Sample.from_dict(s) for s in v] for k, v in obj.get("readings", {}).items()},
            {str(k): _dt(v) for k, v in obj.get("last_drift_at", {}).items()},
            SeenIds.from_dict(obj.get("seen", {})),
        )

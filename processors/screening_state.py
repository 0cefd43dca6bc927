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
``HouseholdState``  household_id scans repartitioned by household_id (``out`` scans only)
==================  ===========  ====================================================

States are mutable dataclasses changed in place by the step functions, and
round-trip through plain JSON-able dicts (``to_dict``/``from_dict``), which is
what a faust table stores. Everything is bounded: windows are pruned by event
time and the duplicate filter (:class:`SeenIds`) forgets ids past a horizon.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cached_property
from itertools import islice, pairwise
from statistics import median
from typing import Any

from processors.screening_policy import PRECISION
from scantrail.contract import Alert, Severity, TemperatureReading, alert_id

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _us(value: datetime) -> int:
    """UTC microseconds since the epoch, exact."""
    return (value - _EPOCH) // _MICROSECOND


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


def _sample_time(sample: Sample) -> datetime:
    return sample.time


@dataclass(frozen=True)
class Sample:
    """The part of a temperature reading the rules keep in state."""

    event_id: str
    time: datetime
    celsius: float
    kiosk_id: str
    site_id: str
    person_id: str | None = None

    @cached_property
    def time_us(self) -> int:
        """UTC microseconds of ``time``, computed once (states are re-encoded often)."""
        return _us(self.time)

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

    @cached_property
    def record(self) -> dict[str, Any]:
        """:meth:`to_dict`, built once: a site's day of confirmations is re-encoded on
        every batch that touches the site, and rebuilding each one's dicts was 1.7% of
        the worker in the 1,000,000-reading drain (py-spy, 2026-12-07). Not to be changed.
        """
        return self.to_dict()

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

    Times are UTC microseconds: a kiosk holds a day of ids and the live worker
    writes them on every reading, so they are stored as two plain columns.

    Each id has an arrival number: the i-th id held has ``first + i`` (ids
    come at the end and are forgotten from the front). A store may keep a long
    filter in pieces by it, :data:`SEEN_CHUNK` arrival numbers each
    (:mod:`processors.live_state`): a full piece never changes again, so a
    batch rewrites a kiosk's newest ids, not all 5,000 of them. With
    ``chunked`` set, :meth:`to_dict` leaves the full pieces out and
    :meth:`from_dict` gives a filter that :meth:`restore` completes; the
    offline screener's snapshots leave it unset and keep every id.
    """

    ids: dict[str, int] = field(default_factory=dict)
    newest: datetime | None = None
    first: int = field(default=0, compare=False)
    chunked: bool = field(default=False, compare=False, repr=False)
    # Ids forgotten since ``ids`` was last rebuilt (see check_and_add).
    forgotten: int = field(default=0, compare=False, repr=False)

    def check_and_add(
        self, event_id: str, when: datetime, horizon: timedelta, max_ids: int
    ) -> bool:
        """True if new (and now remembered), False for a duplicate."""
        ids = self.ids
        if event_id in ids:
            return False
        at = ids[event_id] = _us(when)
        if self.newest is None or when > self.newest:
            self.newest = when
            # The usual case, in integers (a timedelta is whole microseconds): one
            # conversion fewer on every event every stage judges.
            cutoff = at - horizon // _MICROSECOND
        else:
            cutoff = _us(self.newest - horizon)
        while ids:
            oldest = next(iter(ids))
            if ids[oldest] >= cutoff and len(ids) <= max_ids:
                break
            del ids[oldest]
            self.first += 1
            self.forgotten += 1
        if self.forgotten >= SEEN_REBUILD_AFTER:
            # A dict keeps a forgotten id's slot until it grows, and finding the
            # oldest id walks every such slot: a full kiosk (5,000 ids, one
            # forgotten per reading) took 5.3 us a check against 2.0 us. A copy
            # leaves the slots behind.
            self.ids = dict(ids)
            self.forgotten = 0
        return True

    def __contains__(self, event_id: object) -> bool:
        """Whether ``event_id`` is still remembered (it is forgotten after the horizon)."""
        return event_id in self.ids

    def pieces(self) -> range:
        """The full pieces a chunked store keeps apart (none while the filter is short).

        A person's day of ids stays whole in its state's record.
        """
        return _pieces(self.first, len(self.ids))

    def piece(self, number: int) -> dict[str, Any]:
        """Piece ``number``'s ids still held (none once they are all forgotten)."""
        held = self.first + len(self.ids)
        lo = max(self.first, number * SEEN_CHUNK)
        hi = max(lo, min(held, (number + 1) * SEEN_CHUNK))
        items = list(islice(self.ids.items(), lo - self.first, hi - self.first))
        return {"from": lo, "ids": [i for i, _ in items], "at_us": [us for _, us in items]}

    def restore(self, count: int, pieces: Sequence[Mapping[str, Any] | None]) -> int:
        """Put back, before a chunked record's own ids, the pieces it left out; how many were lost.

        ``count`` is how many ids the record said the filter held, ``pieces``
        are :meth:`pieces` of it, oldest first. A piece is written with the
        record that first leaves it out, so none should be missing; if one is,
        it and every older id are forgotten (arrival numbers stay contiguous),
        as the horizon would forget them.
        """
        held = self.first + count  # the arrival number after the newest id
        ids: dict[str, int] = {}
        for piece in pieces:
            if piece is None:
                ids = {}
                continue
            skip = max(0, self.first - int(piece["from"]))
            pairs = zip(piece["ids"], piece["at_us"], strict=True)
            ids.update((str(e), int(us)) for e, us in islice(pairs, skip, None))
        lost = count - len(self.ids) - len(ids)
        ids.update(self.ids)
        self.ids = ids
        self.first = held - len(ids)
        return max(0, lost)

    def to_dict(self) -> dict[str, Any]:
        return self._record(None if self.newest is None else _t(self.newest))

    def to_record(self) -> dict[str, Any]:
        """:meth:`to_dict` with the newest time left to orjson, which writes it as ``isoformat``.

        Formatting it in Python was half a percent of the worker: every
        person and gate state written carries a filter.
        """
        return self._record(self.newest)

    def _record(self, newest: str | datetime | None) -> dict[str, Any]:
        if not self.chunked:
            return {"newest": newest, "ids": list(self.ids), "at_us": list(self.ids.values())}
        apart = self.pieces()
        own = len(self.ids) if not apart else self.first + len(self.ids) - apart.stop * SEEN_CHUNK
        tail = list(islice(reversed(self.ids.items()), own))
        tail.reverse()
        return {
            "newest": newest,
            "first": self.first,
            "count": len(self.ids),
            "ids": [i for i, _ in tail],
            "at_us": [us for _, us in tail],
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SeenIds:
        """The filter a record holds; a chunked one then needs :meth:`restore`."""
        newest = obj.get("newest")
        ids = obj.get("ids", {})
        if isinstance(ids, Mapping):  # the first layout: {id: ISO time}
            seen = {str(k): _us(_dt(v)) for k, v in ids.items()}
        else:
            seen = {str(k): int(us) for k, us in zip(ids, obj.get("at_us", []), strict=True)}
        out = cls(seen, None if newest is None else _dt(newest))
        if "first" in obj:  # a chunked record: its own ids are the newest, then restore()
            out.chunked = True
            out.first = int(obj["first"])
        return out


SEEN_CHUNK = 256
SEEN_REBUILD_AFTER = 256
"""Forgotten ids after which a duplicate filter's dict is copied without their slots."""
"""Arrival numbers per stored piece of a duplicate filter (11 kB with the simulator's ids)."""


def _pieces(first: int, count: int) -> range:
    if count < SEEN_CHUNK:
        return range(0)
    return range(first // SEEN_CHUNK, (first + count) // SEEN_CHUNK)


def pieces_of(record: Mapping[str, Any]) -> tuple[int, range]:
    """For a chunked record of a filter: (ids it held, the pieces to read back)."""
    if "first" not in record:
        return len(record.get("ids", ())), range(0)
    first, count = int(record["first"]), int(record["count"])
    return count, _pieces(first, count)


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
    # Derived, never stored: the local date of each history time, in one zone
    # (see local_dates).
    _dates: dict[datetime, date] = field(default_factory=dict, compare=False, repr=False)
    _dates_zone: tzinfo | None = field(default=None, compare=False, repr=False)

    def local_dates(self, zone: tzinfo) -> dict[datetime, date]:
        """A memo of history times' calendar dates in ``zone``, kept between readings.

        The baseline rule dates every reading of the person's last fortnight on
        each new reading; a date is an ``astimezone`` (0.4 us), a look-up here
        about a tenth of that, and a history of 40 readings is dated on every
        reading. The memo is only ever filled with ``zone``'s dates; it starts
        over when asked for another zone, and drops the times the history no
        longer holds once it is twice the history's size.
        """
        if self._dates_zone is not zone:
            self._dates, self._dates_zone = {}, zone
        elif len(self._dates) > 2 * len(self.history) + 8:
            dates = self._dates
            self._dates = {t: dates[t] for t, _ in self.history if t in dates}
        return self._dates

    def to_dict(self) -> dict[str, Any]:
        return {
            "pending": None if self.pending is None else self.pending.to_dict(),
            "history": [[_t(t), c] for t, c in self.history],
            "last_anomaly_on": None
            if self.last_anomaly_on is None
            else self.last_anomaly_on.isoformat(),
            "seen": self.seen.to_dict(),
        }

    def to_record(self) -> dict[str, Any]:
        """:meth:`to_dict` as the live table stores it: the same bytes once orjson encodes it.

        The times and the day are left to orjson, which writes them as
        ``isoformat`` does, and the history's (time, °C) tuples as the pairs
        :meth:`to_dict` builds: a person's history is re-encoded on every
        batch that judges them, and building it in Python was 2% of the worker.
        """
        return {
            "pending": None if self.pending is None else self.pending.to_dict(),
            "history": self.history,
            "last_anomaly_on": self.last_anomaly_on,
            "seen": self.seen.to_record(),
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


@dataclass(frozen=True)
class OutScan:
    """An ``out`` scan a later quarantine order could still cover (what its breach alert needs)."""

    event_id: str
    time: datetime
    site_id: str
    kiosk_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "time": _t(self.time),
            "site_id": self.site_id,
            "kiosk_id": self.kiosk_id,
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> OutScan:
        return cls(
            str(obj["event_id"]), _dt(obj["time"]), str(obj["site_id"]), str(obj["kiosk_id"])
        )


@dataclass
class GateState:
    """Per person: the latest quarantine record (as a dict), seen scan ids, and recent ``out``
    scans no quarantine covered when they were judged (oldest first).

    A quarantine order can reach the gate shard after scans it covers: it is
    on another topic, so a worker catching up may read the scans first, and an
    order can be published late with a start date in the past. Kept ``out``
    scans are judged again when an order arrives, as ``scantrail screen``
    judges every scan against the person's latest order.
    """

    quarantine: dict[str, Any] | None = None
    seen: SeenIds = field(default_factory=SeenIds)
    outs: list[OutScan] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "quarantine": self.quarantine,
            "seen": self.seen.to_dict(),
            "outs": [out.to_dict() for out in self.outs],
        }

    def to_record(self) -> dict[str, Any]:
        """:meth:`to_dict` as the live table stores it: the same bytes once orjson encodes it.

        orjson writes each kept :class:`OutScan` (a dataclass of plain fields
        and a time) as :meth:`OutScan.to_dict` does, without a dict per scan.
        """
        return {"quarantine": self.quarantine, "seen": self.seen.to_record(), "outs": self.outs}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> GateState:
        record = obj.get("quarantine")
        return cls(
            None if record is None else dict(record),
            SeenIds.from_dict(obj.get("seen", {})),
            [OutScan.from_dict(out) for out in obj.get("outs", [])],
        )


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

    def to_record(self) -> dict[str, Any]:
        """:meth:`to_dict` as the live table stores it: the same bytes once orjson encodes it.

        Each confirmation's dict is built once (:attr:`Confirmation.record`),
        and the times are left to orjson, which writes them as ``isoformat``.
        """
        return {
            "confirmations": [c.record for c in self.confirmations],
            "last_cluster_at": self.last_cluster_at,
            "seen": self.seen.to_record(),
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
    """Per site: valid readings of the last ``drift_window`` per kiosk, last drift per kiosk.

    No separate duplicate filter: a repeat of a reading inside the window is
    found among the window's own samples, and anything older than the window
    before the site's newest reading cannot move the hour's medians, so the
    drift rule passes it by (:func:`processors.baselines.judge_reading_for_site_drift`).
    A day of seen ids had been most of this record: about 270 kB for a busy
    site, written once per batch.

    The hour itself is too much to rewrite per batch: at five readings a
    second a site's hour is 18,000 samples, about a megabyte, and a live
    worker takes a batch every few tens of milliseconds. With ``paged`` set
    (the live store sets it), :meth:`to_dict` keeps only the head (cool-downs,
    the newest time, how far the window was pruned) and the samples are stored
    in pages of :data:`DRIFT_PAGE_US` of event time (:meth:`page`): a batch
    rewrites the pages its readings fell in, and a page the window has left
    wholly is deleted (:meth:`dead`). :meth:`restore_pages` puts the samples
    back. The offline screener's snapshots leave it unset and keep every sample.
    """

    readings: dict[str, list[Sample]] = field(default_factory=dict)
    last_drift_at: dict[str, datetime] = field(default_factory=dict)
    newest: datetime | None = None  # the newest reading's time, valid or not
    # The latest bound :meth:`prune` was given (UTC microseconds): every sample
    # held is newer, so a stored page's older samples are not read back.
    pruned_us: int | None = field(default=None, compare=False)
    paged: bool = field(default=False, compare=False, repr=False)
    # Pages that samples were added to since :meth:`take_touched` (paged only).
    _touched: set[int] = field(default_factory=set, compare=False, repr=False)
    # Derived from ``readings``, never stored, built on first use: whether a kiosk's
    # samples are in time order (they are unless a kiosk caught up out of order), and
    # its event ids. Every reading of a busy site used to re-read the site's whole hour
    # three times (the repeat check, the prune, the kiosk's window): in the
    # 1,000,000-reading bench that was half the worker's time once its sources were read.
    # Change ``readings`` only through :meth:`add` and :meth:`prune`, or these go stale.
    _in_order: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)
    _ids: dict[str, Counter[str]] = field(default_factory=dict, compare=False, repr=False)
    # Also derived: each kiosk's temperatures sorted, and the whole site's, so the
    # medians of an in-order reading are order statistics, not an hour sorted twice
    # (at 3,000 readings a site-hour that sort was 0.9 ms of every reading).
    _sorted: dict[str, list[float]] = field(default_factory=dict, compare=False, repr=False)
    _site_sorted: list[float] | None = field(default=None, compare=False, repr=False)
    # And each kiosk's stored columns (see to_dict), kept beside its samples: the site's
    # hour is written after every batch, and rebuilding its columns each time was a
    # tenth of the worker's time once the 1,000,000-reading bench had read its sources.
    _columns: dict[str, dict[str, list[Any]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def holds(self, kiosk_id: str, event_id: str) -> bool:
        """Whether the window already has this reading."""
        return event_id in self._ids_of(kiosk_id)

    def add(self, sample: Sample) -> None:
        """Append ``sample`` to its kiosk's window (arrival order is kept)."""
        kiosk = sample.kiosk_id
        samples = self.readings.get(kiosk)
        if samples is None:
            samples = self.readings[kiosk] = []
            self._in_order[kiosk], self._ids[kiosk] = True, Counter()
        elif samples and samples[-1].time > sample.time:
            self._in_order[kiosk] = False
        ids = self._ids.get(kiosk)
        if ids is not None:
            ids[sample.event_id] += 1
        samples.append(sample)
        if kiosk in self._sorted:
            insort(self._sorted[kiosk], sample.celsius)
        if self._site_sorted is not None:
            insort(self._site_sorted, sample.celsius)
        columns = self._columns.get(kiosk)
        if columns is not None:
            for name, value in _columns_of_sample(sample):
                columns[name].append(value)
        if self.paged:
            self._touched.add(sample.time_us // DRIFT_PAGE_US)

    def prune(self, bound: datetime) -> None:
        """Drop every sample at or before ``bound``, and kiosks left with none."""
        bound_us = _us(bound)
        if self.pruned_us is None or bound_us > self.pruned_us:
            self.pruned_us = bound_us
        for kiosk, samples in list(self.readings.items()):
            if self._is_in_order(kiosk):
                # Usually no sample leaves, or one: the bound moves with every
                # reading of the site, and a sample leaves once it is a window
                # old. So no search and no slicing unless one leaves, and then a
                # walk from the oldest (in integer microseconds), which costs what
                # the slicing costs anyway. Searching and slicing every kiosk on
                # every reading was about 4% of the worker in the 1,000,000-reading
                # drain, and the bisection's key calls still 1% (py-spy, 2026-12-06).
                cut, held = 0, len(samples)
                while cut < held and samples[cut].time_us <= bound_us:
                    cut += 1
                if held and not cut:
                    continue
                gone = samples[:cut]
                del samples[:cut]
                for column in self._columns.get(kiosk, {}).values():
                    del column[:cut]
            else:
                kept = [s for s in samples if s.time > bound]
                gone = [s for s in samples if s.time <= bound]
                samples[:] = kept
                self._in_order.pop(kiosk, None)  # it may be in order now: looked at again
                self._columns.pop(kiosk, None)
            self._forget_sorted(kiosk, gone)
            if not samples:
                del self.readings[kiosk]
                self._in_order.pop(kiosk, None)
                self._ids.pop(kiosk, None)
                self._sorted.pop(kiosk, None)
                self._columns.pop(kiosk, None)
                continue
            ids = self._ids.get(kiosk)
            if ids is not None:
                for s in gone:
                    left = ids[s.event_id] - 1
                    if left > 0:
                        ids[s.event_id] = left
                    else:
                        ids.pop(s.event_id, None)

    def window(self, kiosk_id: str, since: datetime, until: datetime) -> list[Sample]:
        """The kiosk's samples with ``since < time <= until``, in arrival order."""
        samples = self.readings.get(kiosk_id)
        if not samples:
            return []
        if self._is_in_order(kiosk_id):
            lo = bisect_right(samples, since, key=_sample_time)
            return samples[lo : bisect_right(samples, until, lo=lo, key=_sample_time)]
        return [s for s in samples if since < s.time <= until]

    def medians(self, kiosk_id: str) -> tuple[float, float | None, int]:
        """The median of the kiosk's window, of the other kiosks' and how many those hold.

        Over everything the state keeps, which is the window of a reading as
        new as the newest (the rule's in-order case). The values are exactly
        ``statistics.median``'s: the same middle elements, averaged the same way.
        """
        own = self._sorted_of(kiosk_id)
        own_median = _middle(len(own), own.__getitem__)
        if len(self.readings) == 2 and kiosk_id in self.readings:
            # One other kiosk (a gate's two lanes): its own sorted hour is the others'.
            # The site's list is then never built, and the search below, two
            # bisections a step, was most of judging a reading: 22.5 us a reading
            # against 7.5 us with this (a two-kiosk site's full hour, 2026-12-07).
            other = self._sorted_of(next(k for k in self.readings if k != kiosk_id))
            return own_median, _middle(len(other), other.__getitem__), len(other)
        site = self._site()
        others = len(site) - len(own)
        if others == 0:
            return own_median, None, 0
        return own_median, _middle(others, lambda k: _kth_excluding(site, own, k)), others

    def _sorted_of(self, kiosk_id: str) -> list[float]:
        values = self._sorted.get(kiosk_id)
        if values is None:
            values = sorted(s.celsius for s in self.readings.get(kiosk_id, ()))
            if kiosk_id in self.readings:
                self._sorted[kiosk_id] = values
        return values

    def _site(self) -> list[float]:
        if self._site_sorted is None:
            self._site_sorted = sorted(s.celsius for ss in self.readings.values() for s in ss)
        return self._site_sorted

    def _forget_sorted(self, kiosk_id: str, gone: Iterable[Sample]) -> None:
        for values in (self._sorted.get(kiosk_id), self._site_sorted):
            if values is not None:
                for s in gone:
                    del values[bisect_left(values, s.celsius)]

    def _columns_of(self, kiosk_id: str) -> dict[str, list[Any]]:
        columns = self._columns.get(kiosk_id)
        if columns is None:
            columns = {name: [] for name in _COLUMNS}
            for sample in self.readings[kiosk_id]:
                for name, value in _columns_of_sample(sample):
                    columns[name].append(value)
            self._columns[kiosk_id] = columns
        return columns

    def _is_in_order(self, kiosk_id: str) -> bool:
        known = self._in_order.get(kiosk_id)
        if known is None:
            samples = self.readings.get(kiosk_id, [])
            known = self._in_order[kiosk_id] = all(a.time <= b.time for a, b in pairwise(samples))
        return known

    def _ids_of(self, kiosk_id: str) -> Counter[str]:
        ids = self._ids.get(kiosk_id)
        if ids is None:
            ids = Counter(s.event_id for s in self.readings.get(kiosk_id, ()))
            if kiosk_id in self.readings:
                self._ids[kiosk_id] = ids
        return ids

    def to_dict(self) -> dict[str, Any]:
        # Each kiosk's samples are columns (times in UTC microseconds: the rule
        # only compares them; alerts take their times from the reading judged).
        head = {
            "last_drift_at": {k: _t(v) for k, v in self.last_drift_at.items()},
            "newest": None if self.newest is None else _t(self.newest),
        }
        if self.paged:
            return {**head, "paged": True, "pruned_us": self.pruned_us}
        return {"columns": {kiosk: self._columns_of(kiosk) for kiosk in self.readings}, **head}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> DriftState:
        """The state a record holds; a paged one then needs :meth:`restore_pages`."""
        readings = {
            str(k): [Sample.from_dict(s) for s in v] for k, v in obj.get("readings", {}).items()
        }
        readings.update(_samples_of_columns(obj.get("columns", {})))
        # Records written before the window became its own filter carry "seen".
        newest = obj.get("newest", (obj.get("seen") or {}).get("newest"))
        pruned = obj.get("pruned_us")
        return cls(
            readings,
            {str(k): _dt(v) for k, v in obj.get("last_drift_at", {}).items()},
            None if newest is None else _dt(newest),
            None if pruned is None else int(pruned),
            paged=bool(obj.get("paged", False)),
        )

    # --- pages of a paged state (see the class docstring) ---------------------------------

    def pages_to_read(self) -> range:
        """The pages that can hold samples of the window: from the pruned bound to the newest."""
        if self.newest is None or self.pruned_us is None:
            return range(0)
        return range((self.pruned_us + 1) // DRIFT_PAGE_US, _us(self.newest) // DRIFT_PAGE_US + 1)

    def page(self, number: int) -> dict[str, Any]:
        """The samples held with event time in page ``number``, as columns per kiosk."""
        lo, hi = number * DRIFT_PAGE_US, (number + 1) * DRIFT_PAGE_US
        columns: dict[str, dict[str, list[Any]]] = {}
        for kiosk, samples in self.readings.items():
            if self._is_in_order(kiosk):
                # Slices of the kiosk's kept columns (they follow its samples one
                # for one): a live batch rewrites the newest page of every site it
                # touched, and building that page sample by sample was a third of
                # encoding a batch's writes in the latency bench (py-spy, 2026-12-07).
                kept = self._columns_of(kiosk)
                times = kept["time_us"]
                start = bisect_left(times, lo)
                end = bisect_left(times, hi, lo=start)
                if start < end:
                    columns[kiosk] = {name: kept[name][start:end] for name in _COLUMNS}
                continue
            inside = [s for s in samples if lo <= s.time_us < hi]
            if inside:
                columns[kiosk] = {name: [] for name in _COLUMNS}
                for sample in inside:
                    for name, value in _columns_of_sample(sample):
                        columns[kiosk][name].append(value)
        return {"columns": columns}

    def restore_pages(self, pages: Iterable[Mapping[str, Any] | None]) -> None:
        """Put back the samples of stored pages (oldest page first; None: a page not stored).

        A page keeps samples the window dropped after it was written; those at
        or before the pruned bound are left out, as :meth:`prune` left them.
        """
        bound = -1 if self.pruned_us is None else self.pruned_us
        for page in pages:
            if page is None:
                continue
            for samples in _samples_of_columns(page.get("columns", {})).values():
                for sample in samples:
                    if sample.time_us > bound:
                        self.add(sample)
        self._touched.clear()

    def take_touched(self) -> set[int]:
        """The pages samples were added to since the last call (each must be rewritten)."""
        touched = self._touched
        if touched:
            self._touched = set()
        return touched

    def touch_all(self) -> None:
        """Mark every sample's page: a state read from a whole record must store its pages."""
        held = self.readings.values()
        self._touched.update(s.time_us // DRIFT_PAGE_US for samples in held for s in samples)

    def dead(self, number: int) -> bool:
        """Whether page ``number`` is wholly at or before the pruned bound (it can be deleted)."""
        return self.pruned_us is not None and (number + 1) * DRIFT_PAGE_US - 1 <= self.pruned_us


DRIFT_PAGE_US = 10 * 1_000_000
"""Event time per stored page of a :class:`DriftState`: fifty samples at five readings a second."""


def _sample_us(sample: Sample) -> int:
    return sample.time_us


def _samples_of_columns(columns: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Sample]]:
    return {
        str(kiosk): [
            Sample(
                str(event_id),
                _EPOCH + timedelta(microseconds=int(us)),
                float(celsius),
                str(kiosk),
                str(site),
                None if person is None else str(person),
            )
            for event_id, us, celsius, site, person in zip(
                c["event_id"], c["time_us"], c["celsius"], c["site_id"], c["person_id"], strict=True
            )
        ]
        for kiosk, c in columns.items()
    }


_COLUMNS = ("event_id", "time_us", "celsius", "site_id", "person_id")


def _columns_of_sample(sample: Sample) -> tuple[tuple[str, Any], ...]:
    """A sample's value in each of :class:`DriftState`'s stored columns."""
    return (
        ("event_id", sample.event_id),
        ("time_us", sample.time_us),
        ("celsius", sample.celsius),
        ("site_id", sample.site_id),
        ("person_id", sample.person_id),
    )


def _middle(n: int, kth: Callable[[int], float]) -> float:
    """``statistics.median`` of ``n`` sorted values, given the k-th smallest (0-based)."""
    if n % 2:
        return float(kth(n // 2))
    return float((kth(n // 2 - 1) + kth(n // 2)) / 2)


def _kth_excluding(site: list[float], own: list[float], k: int) -> float:
    """The k-th smallest (0-based) of ``site`` less ``own``; both sorted, ``own`` within ``site``.

    The first value of ``site`` with more than ``k`` of the others at or below
    it: a binary search over ``site`` whose every step counts with two more.
    It lies between ``site[k]`` (at least ``k + 1`` values are at or below it)
    and ``site[k + len(own)]`` (at most ``k`` others and every own value are
    below it), so the search starts there: a kiosk's hour is a tenth of a
    busy site's, which saves a quarter of the steps.
    """
    lo, hi = k, min(k + len(own), len(site) - 1)
    while lo < hi:
        mid = (lo + hi) // 2
        value = site[mid]
        if bisect_right(site, value) - bisect_right(own, value) > k:
            hi = mid
        else:
            lo = mid + 1
    return site[lo]


@dataclass(frozen=True)
class Outing:
    """An ``out`` scan the household rule keeps: who went out, when, by which scan."""

    event_id: str
    time: datetime
    person_id: str
    site_id: str
    kiosk_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "time": _t(self.time),
            "person_id": self.person_id,
            "site_id": self.site_id,
            "kiosk_id": self.kiosk_id,
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Outing:
        return cls(
            str(obj["event_id"]),
            _dt(obj["time"]),
            str(obj["person_id"]),
            str(obj["site_id"]),
            str(obj["kiosk_id"]),
        )


@dataclass
class HouseholdState:
    """Per household: its members' ``out`` scans of the last outing window.

    ``alerted`` holds the ids of the scans that already raised
    ``outing_quota_exceeded`` (each scan raises it at most once, whatever
    arrives later). Both are pruned to the window before the newest scan, so
    the record stays a handful of entries; the window's own scans are its
    duplicate filter, as the drift window is.
    """

    outings: list[Outing] = field(default_factory=list)
    alerted: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"outings": [o.to_dict() for o in self.outings], "alerted": list(self.alerted)}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> HouseholdState:
        return cls(
            [Outing.from_dict(o) for o in obj.get("outings", [])],
            [str(i) for i in obj.get("alerted", [])],
        )

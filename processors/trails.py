"""Trail and visit stores: who was scanned where and when, kept lean and shardable.

Contact tracing asks two questions of the scan history, and each one is
answered by its own store so that the live system can shard it by a Kafka key:

* *Where was this person?*  A :class:`Trail` holds one person's scans in event
  time (time, site, kiosk, direction, event id). The scans topic is keyed by
  ``person_id``, so a faust table keyed by ``person_id`` holds one trail per
  key: ``trails[person_id] = trail.to_dict()``.
* *Who else was at this site around then?*  A :class:`SiteVisits` holds one
  site's scans in event time (time, person, kiosk, event id). Contacts need a
  per-site view, so the worker re-keys each *new* scan by ``site_id`` (a
  repartition topic) and a table keyed by ``site_id`` holds one visit list per
  key: ``visits[site_id] = site_visits.to_dict()``.

:class:`TrailIndex` is the two stores side by side in memory (a dict per
store), used by the offline ``scantrail trace`` command, replays, tests and the
bench. :mod:`processors.contacts` searches either form through two lookup
callables, so the very same algorithm runs over these dicts and over faust
tables.

Why it looks like this:

* Times are int epoch **microseconds**: exact for every ``datetime`` (so the
  15-minute window edge is exact), 8 bytes in an ``array('q')`` instead of a
  56-byte object, and comparisons are int comparisons.
* Parallel arrays per key instead of an object per scan; ids are interned
  (``sys.intern``) so a person, site or kiosk id is stored once however often
  it is scanned. Five million scans fit in a few hundred MB per store (bench/README.md).
* Scans arrive mostly in order, so appends are O(1) and a store is only marked
  *dirty* when a scan arrives out of order; it is sorted (by time, then event
  id, so ties are deterministic) on the first query after that.
* A query is two bisects and a slice: its cost follows the size of the answer,
  not the size of the data.
* Each store ignores an event id it already holds, so an at-least-once
  redelivery (kiosk spool re-send, worker restart) never counts a scan twice.
  A re-send carries the same person and site, so per-key sets catch it in the
  sharded form; an id wrongly re-used for another person is caught only by
  :class:`TrailIndex`, whose one index-wide set replaces the per-key ones.
* ``expire(before)`` forgets scans older than the retention (28 days by
  default, :data:`RETENTION`), and afterwards refuses scans older than that
  horizon, because their duplicates could no longer be recognised.

Pure: standard library and :mod:`scantrail.contract` only; no clock, no I/O.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from scantrail.contract import ScanEvent

RETENTION = timedelta(days=28)
"""How long the live system keeps scans (field notes: purge after 2–4 weeks)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_IN, _OUT = 0, 1
_DIRECTIONS = ("in", "out")
_MIN_TIME = -(2**63)


def to_micros(moment: datetime) -> int:
    """An aware datetime as int epoch microseconds (exact)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: times must carry an offset")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int, tz: Any = UTC) -> datetime:
    """Int epoch microseconds back to an aware datetime in ``tz``."""
    return (_EPOCH + timedelta(microseconds=micros)).astimezone(tz)


class TrailSlice(NamedTuple):
    """One person's scans in a time range, as parallel sequences in time order."""

    times: list[int]
    sites: list[str]
    kiosks: list[str]
    event_ids: list[str]


class VisitSlice(NamedTuple):
    """One site's visits in a time range, as parallel sequences in time order."""

    times: list[int]
    persons: list[str]
    kiosks: list[str]
    event_ids: list[str]


class Scan(NamedTuple):
    """One scan of a trail, for reading (``Trail.scans()``)."""

    time: int
    site_id: str
    kiosk_id: str
    direction: str
    event_id: str


def _order(times: array[int], event_ids: list[str]) -> list[int]:
    """Positions in (time, event id) order: two stable C-keyed sorts, no per-item tuples."""
    order = sorted(range(len(times)), key=event_ids.__getitem__)
    order.sort(key=times.__getitem__)
    return order


class _TimeOrdered:
    """Events as parallel columns in event-time order, with a horizon and a duplicate filter.

    Shared by :class:`Trail` (per person) and :class:`SiteVisits` (per site):
    they differ only in their other columns (``_COLUMNS``). Appends are cheap;
    an event older than the last marks the columns for one sort before the
    next read, so a mostly in-order stream rarely sorts.
    """

    __slots__ = ("_dirty", "_ids", "_times", "event_ids", "horizon")
    _COLUMNS: tuple[str, ...] = ()  # the subclass's other per-event columns (lists or bytearray)

    def __init__(self, *, track_ids: bool = True) -> None:
        self._times: array[int] = array("q")
        self.event_ids: list[str] = []
        self._ids: set[str] | None = set() if track_ids else None
        self._dirty = False
        self.horizon = _MIN_TIME

    def __len__(self) -> int:
        return len(self._times)

    def _admit(self, time: int, event_id: str) -> bool:
        """Append time and id, unless the id is already held or the time is past retention."""
        if time < self.horizon:
            return False
        ids = self._ids
        if ids is not None:
            if event_id in ids:
                return False
            ids.add(event_id)
        times = self._times
        if times and time < times[-1]:
            self._dirty = True
        times.append(time)
        self.event_ids.append(event_id)
        return True

    def _sort(self) -> None:
        order = _order(self._times, self.event_ids)
        self._times = array("q", [self._times[i] for i in order])
        self.event_ids = [self.event_ids[i] for i in order]
        for name in self._COLUMNS:
            column = getattr(self, name)
            ordered = [column[i] for i in order]
            setattr(self, name, bytearray(ordered) if isinstance(column, bytearray) else ordered)
        self._dirty = False

    def _span(self, start: int, end: int) -> tuple[int, int]:
        """Indexes of the events with ``start <= time <= end`` (microseconds)."""
        if self._dirty:
            self._sort()
        return bisect_left(self._times, start), bisect_right(self._times, end)

    def expire(self, before: int) -> list[str]:
        """Forget events older than ``before``; return the dropped event ids."""
        self.horizon = max(self.horizon, before)
        if self._dirty:
            self._sort()
        cut = bisect_left(self._times, before)
        dropped = self.event_ids[:cut]
        if cut:
            if self._ids is not None:
                self._ids.difference_update(dropped)
            del self._times[:cut]
            del self.event_ids[:cut]
            for name in self._COLUMNS:
                del getattr(self, name)[:cut]
        return dropped

    def _columns_dict(self, **columns: list[Any]) -> dict[str, Any]:
        return {
            "times": self._times.tolist(),
            **columns,
            "event_ids": list(self.event_ids),
            "horizon": None if self.horizon == _MIN_TIME else self.horizon,
        }


class Trail(_TimeOrdered):
    """One person's scans, in event-time order: the value of the per-person table."""

    __slots__ = ("_dirs", "_kiosks", "_sites")
    _COLUMNS = ("_sites", "_kiosks", "_dirs")

    def __init__(self, *, track_ids: bool = True) -> None:
        super().__init__(track_ids=track_ids)
        self._sites: list[str] = []
        self._kiosks: list[str] = []
        self._dirs = bytearray()

    def add(self, time: int, site_id: str, kiosk_id: str, direction: str, event_id: str) -> bool:
        """Record a scan; False if its event id is already held or it is past retention."""
        if not self._admit(time, event_id):
            return False
        self._sites.append(site_id)
        self._kiosks.append(kiosk_id)
        self._dirs.append(_OUT if direction == "out" else _IN)
        return True

    def between(self, start: int, end: int) -> TrailSlice:
        """The scans with ``start <= time <= end`` (microseconds), in time order."""
        lo, hi = self._span(start, end)
        return TrailSlice(
            self._times[lo:hi].tolist(),
            self._sites[lo:hi],
            self._kiosks[lo:hi],
            self.event_ids[lo:hi],
        )

    def scans(self) -> Iterator[Scan]:
        """Every scan held, in time order (ties by event id)."""
        if self._dirty:
            self._sort()
        for i in range(len(self._times)):
            yield Scan(
                self._times[i],
                self._sites[i],
                self._kiosks[i],
                _DIRECTIONS[self._dirs[i]],
                self.event_ids[i],
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able value for a table keyed by person_id."""
        if self._dirty:
            self._sort()
        return self._columns_dict(
            sites=list(self._sites),
            kiosks=list(self._kiosks),
            directions=[_DIRECTIONS[d] for d in self._dirs],
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trail:
        """Rebuild a trail from :meth:`to_dict` output (duplicates dropped again)."""
        trail = cls()
        for t, s, k, d, e in zip(
            data["times"],
            data["sites"],
            data["kiosks"],
            data["directions"],
            data["event_ids"],
            strict=True,
        ):
            trail.add(int(t), sys.intern(s), sys.intern(k), d, e)
        if data.get("horizon") is not None:
            trail.horizon = int(data["horizon"])
        return trail


class SiteVisits(_TimeOrdered):
    """One site's visits, in event-time order: the value of the per-site table."""

    __slots__ = ("_kiosks", "_persons")
    _COLUMNS = ("_persons", "_kiosks")

    def __init__(self, *, track_ids: bool = True) -> None:
        super().__init__(track_ids=track_ids)
        self._persons: list[str] = []
        self._kiosks: list[str] = []

    def add(self, time: int, person_id: str, kiosk_id: str, event_id: str) -> bool:
        """Record a visit; False if its event id is already held or it is past retention."""
        if not self._admit(time, event_id):
            return False
        self._persons.append(person_id)
        self._kiosks.append(kiosk_id)
        return True

    def between(self, start: int, end: int) -> VisitSlice:
        """The visits with ``start <= time <= end`` (microseconds), in time order."""
        lo, hi = self._span(start, end)
        return VisitSlice(
            self._times[lo:hi].tolist(),
            self._persons[lo:hi],
            self._kiosks[lo:hi],
            self.event_ids[lo:hi],
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able value for a table keyed by site_id."""
        if self._dirty:
            self._sort()
        return self._columns_dict(persons=list(self._persons), kiosks=list(self._kiosks))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SiteVisits:
        """Rebuild a visit list from :meth:`to_dict` output."""
        visits = cls()
        for t, p, k, e in zip(
            data["times"], data["persons"], data["kiosks"], data["event_ids"], strict=True
        ):
            visits.add(int(t), sys.intern(p), sys.intern(k), e)
        if data.get("horizon") is not None:
            visits.horizon = int(data["horizon"])
        return visits


_EMPTY_TRAIL = TrailSlice([], [], [], [])
_EMPTY_VISITS = VisitSlice([], [], [], [])


class TrailIndex:
    """Both stores in memory: ``trails[person_id]`` and ``sites[site_id]``.

    Duplicates are recognised by one index-wide set of event ids (so the
    per-key stores need none of their own); ``trail_between`` and
    ``visits_between`` are the two lookups :func:`processors.contacts.trace`
    takes.
    """

    def __init__(self) -> None:
        self.trails: dict[str, Trail] = {}
        self.sites: dict[str, SiteVisits] = {}
        self.horizon = _MIN_TIME
        self.added = 0
        self.ignored = 0
        self._seen: set[str] = set()

    def __len__(self) -> int:
        return self.added

    def add(
        self,
        time: int,
        person_id: str,
        site_id: str,
        kiosk_id: str,
        direction: str,
        event_id: str,
    ) -> bool:
        """Record one scan (time in epoch microseconds); False if a duplicate or expired."""
        return self.add_many(((time, person_id, site_id, kiosk_id, direction, event_id),)) == 1

    def add_event(self, event: ScanEvent) -> bool:
        """Record a decoded contract scan."""
        return self.add(
            to_micros(event.scanned_at),
            event.person_id,
            event.site_id,
            event.kiosk_id,
            event.direction,
            event.event_id,
        )

    def add_many(self, rows: Iterable[tuple[int, str, str, str, str, str]]) -> int:
        """Record ``(time, person, site, kiosk, direction, event_id)`` rows; return the new count.

        The hot path of a build, so it is one flat loop: the appends are
        inlined rather than going through ``Trail.add`` and ``SiteVisits.add``
        (same effect, about half the time), as the index-wide set has already
        ruled out duplicates.
        """
        seen = self._seen
        horizon = self.horizon
        intern = sys.intern
        trails = self.trails
        sites = self.sites
        added = 0
        for time, person_id, site_id, kiosk_id, direction, event_id in rows:
            if event_id in seen or time < horizon:
                self.ignored += 1
                continue
            seen.add(event_id)
            person_id = intern(person_id)
            site_id = intern(site_id)
            kiosk_id = intern(kiosk_id)
            trail = trails.get(person_id)
            if trail is None:
                trail = trails[person_id] = Trail(track_ids=False)
            times = trail._times
            if times and time < times[-1]:
                trail._dirty = True
            times.append(time)
            trail._sites.append(site_id)
            trail._kiosks.append(kiosk_id)
            trail._dirs.append(_OUT if direction == "out" else _IN)
            trail.event_ids.append(event_id)
            visits = sites.get(site_id)
            if visits is None:
                visits = sites[site_id] = SiteVisits(track_ids=False)
            times = visits._times
            if times and time < times[-1]:
                visits._dirty = True
            times.append(time)
            visits._persons.append(person_id)
            visits._kiosks.append(kiosk_id)
            visits.event_ids.append(event_id)
            added += 1
        self.added += added
        return added

    def expire(self, before: datetime | int) -> int:
        """Forget every scan older than ``before`` (retention); return how many.

        Later scans older than ``before`` are refused, as their duplicates
        could no longer be recognised.
        """
        cut = before if isinstance(before, int) else to_micros(before)
        self.horizon = max(self.horizon, cut)
        dropped = 0
        for person in list(self.trails):
            trail = self.trails[person]
            gone = trail.expire(cut)
            self._seen.difference_update(gone)
            dropped += len(gone)
            if not trail:
                del self.trails[person]
        for site in list(self.sites):
            visits = self.sites[site]
            visits.expire(cut)
            if not visits:
                del self.sites[site]
        self.added -= dropped
        return dropped

    def settle(self) -> None:
        """Sort every store now instead of on its first query.

        For a process that loads a whole file or topic and then answers many
        traces: after ``settle()`` the stores no longer change, so the caller
        can ``gc.freeze()`` them and the garbage collector stops re-scanning
        millions of references on every collection (bench/README.md).
        """
        for trail in self.trails.values():
            if trail._dirty:
                trail._sort()
        for visits in self.sites.values():
            if visits._dirty:
                visits._sort()

    def trail_between(self, person_id: str, start: int, end: int) -> TrailSlice:
        """Lookup for :func:`processors.contacts.trace`: a person's scans in a range."""
        trail = self.trails.get(person_id)
        return _EMPTY_TRAIL if trail is None else trail.between(start, end)

    def visits_between(self, site_id: str, start: int, end: int) -> VisitSlice:
        """Lookup for :func:`processors.contacts.trace`: a site's visits in a range."""
        visits = self.sites.get(site_id)
        return _EMPTY_VISITS if visits is None else visits.between(start, end)

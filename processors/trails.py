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

import gc
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

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
    """One site's visits, in event-time order: the value of the per-site table.

    The live worker keeps one per site and five-minute slot and rewrites it
    after every batch that adds to it; at five scans a second a slot ends at
    1,500 visits. With ``paged`` set (the live store sets it), :meth:`to_dict`
    gives only a head naming the pages that hold visits, and the visits are
    stored in pages of :data:`VISIT_PAGE_US` of event time (:meth:`page`), so
    a batch rewrites the head and the pages it added to. :meth:`restore_pages`
    puts them back. Offline indexes leave it unset.
    """

    __slots__ = ("_kiosks", "_pages", "_persons", "_touched", "paged")
    _COLUMNS = ("_persons", "_kiosks")

    def __init__(self, *, track_ids: bool = True) -> None:
        super().__init__(track_ids=track_ids)
        self._persons: list[str] = []
        self._kiosks: list[str] = []
        self.paged = False
        self._pages: set[int] = set()  # pages holding visits (paged only)
        self._touched: set[int] = set()  # pages added to since take_touched (paged only)

    def add(self, time: int, person_id: str, kiosk_id: str, event_id: str) -> bool:
        """Record a visit; False if its event id is already held or it is past retention."""
        if not self._admit(time, event_id):
            return False
        self._persons.append(person_id)
        self._kiosks.append(kiosk_id)
        if self.paged:
            page = time // VISIT_PAGE_US
            self._pages.add(page)
            self._touched.add(page)
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
        if self.paged:
            horizon = None if self.horizon == _MIN_TIME else self.horizon
            return {"paged": True, "pages": sorted(self._pages), "horizon": horizon}
        if self._dirty:
            self._sort()
        return self._columns_dict(persons=list(self._persons), kiosks=list(self._kiosks))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SiteVisits:
        """Rebuild a visit list from :meth:`to_dict` output (a paged one: :meth:`restore_pages`)."""
        visits = cls()
        if data.get("paged"):
            visits.paged = True
            visits._pages = {int(n) for n in data.get("pages", ())}
        else:
            visits._add_columns(data)
        if data.get("horizon") is not None:
            visits.horizon = int(data["horizon"])
        return visits

    def _add_columns(self, data: dict[str, Any]) -> None:
        for t, p, k, e in zip(
            data["times"], data["persons"], data["kiosks"], data["event_ids"], strict=True
        ):
            self.add(int(t), sys.intern(p), sys.intern(k), e)

    # --- pages of a paged slot (see the class docstring) ------------------------------------

    def pages_to_read(self, start: int = _MIN_TIME, end: int = -_MIN_TIME) -> list[int]:
        """The stored pages that hold visits, those that reach ``[start, end]`` only."""
        first, last = start // VISIT_PAGE_US, end // VISIT_PAGE_US
        return sorted(n for n in self._pages if first <= n <= last)

    def page(self, number: int) -> dict[str, Any]:
        """The visits with event time in page ``number``, as columns."""
        lo, hi = self._span(number * VISIT_PAGE_US, (number + 1) * VISIT_PAGE_US - 1)
        return {
            "times": self._times[lo:hi].tolist(),
            "persons": self._persons[lo:hi],
            "kiosks": self._kiosks[lo:hi],
            "event_ids": self.event_ids[lo:hi],
        }

    def restore_pages(self, pages: Iterable[dict[str, Any] | None]) -> None:
        """Put back the visits of stored pages (None: a page that was not stored)."""
        for page in pages:
            if page is not None:
                self._add_columns(page)
        self._pages = {t // VISIT_PAGE_US for t in self._times}  # a page not found is not held
        self._touched.clear()

    def take_touched(self) -> set[int]:
        """The pages visits were added to since the last call (each must be rewritten)."""
        touched = self._touched
        if touched:
            self._touched = set()
        return touched

    def touch_all(self) -> None:
        """Mark every visit's page: a slot read from a whole record must store its pages."""
        self._pages.update(t // VISIT_PAGE_US for t in self._times)
        self._touched.update(self._pages)

    def dead(self, number: int) -> bool:
        """A slot's pages go with the slot (retention deletes them together)."""
        return False


VISIT_PAGE_US = 10 * 1_000_000
"""Event time per stored page of a live :class:`SiteVisits` slot: thirty pages a slot."""


_EMPTY_TRAIL = TrailSlice([], [], [], [])
_EMPTY_VISITS = VisitSlice([], [], [], [])

Codes = npt.NDArray[np.int64]
"""Int codes (of persons, sites, kiosks or scans), or times, as a numpy column."""

_NO_CODES: Codes = np.zeros(0, dtype=np.int64)


class CodedTrail(NamedTuple):
    """One person's scans in a time range, as int columns in time order (``event_ids`` are rows)."""

    times: Codes
    sites: Codes
    kiosks: Codes
    events: Codes


class CodedVisits(NamedTuple):
    """One site's visits in a time range, as int columns in time order."""

    times: Codes
    persons: Codes
    kiosks: Codes
    events: Codes


_NO_TRAIL = CodedTrail(_NO_CODES, _NO_CODES, _NO_CODES, _NO_CODES)
_NO_VISITS = CodedVisits(_NO_CODES, _NO_CODES, _NO_CODES, _NO_CODES)


EventIds = npt.NDArray[np.object_]
"""Event id strings by row: a numpy object column, so a trace gathers its evidence in C."""


class _Column:
    """A growable numpy column (amortised doubling), indexed by row."""

    __slots__ = ("data", "size")

    def __init__(self, dtype: type = np.int64) -> None:
        self.data: Any = np.zeros(1024, dtype=dtype)
        self.size = 0

    def _reserve(self, size: int) -> None:
        if size > len(self.data):
            grown = np.zeros(max(size, 2 * len(self.data)), dtype=self.data.dtype)
            grown[: self.size] = self.data[: self.size]
            self.data = grown

    def append(self, value: int | str) -> None:
        self._reserve(self.size + 1)
        self.data[self.size] = value
        self.size += 1

    def extend(self, values: Codes | Sequence[str]) -> None:
        end = self.size + len(values)
        self._reserve(end)
        self.data[self.size : end] = values
        self.size = end


class Names:
    """Ids and their dense int codes, in the order first seen.

    The index stores a person, site or kiosk as an int and its string once, so
    a trace can match, exclude and group scans as numpy columns and turn codes
    back into strings only for the contacts it returns (a gather from an
    object column, in C).
    """

    __slots__ = ("_ids", "_rank", "codes")

    def __init__(self) -> None:
        self._ids = _Column(object)
        self.codes: dict[str, int] = {}
        self._rank: Codes = _NO_CODES

    def __len__(self) -> int:
        return self._ids.size

    def code(self, name: str) -> int:
        code = self.codes.get(name)
        if code is None:
            code = self.codes[name] = self._ids.size
            self._ids.append(name)
        return code

    def code_all(self, names: Sequence[str]) -> Codes:
        # New names are found among the distinct ones (a C-level dedupe), so the
        # per-name work is one dict lookup done by map, not a Python loop.
        codes = self.codes
        new = [name for name in dict.fromkeys(names) if name not in codes]
        if new:
            size = self._ids.size
            codes.update(zip(new, range(size, size + len(new)), strict=True))
            self._ids.extend(new)
        return np.fromiter(map(codes.__getitem__, names), np.int64, len(names))

    def names(self, codes: Codes) -> list[str]:
        names: list[str] = self._ids.data[codes].tolist()
        return names

    def rank(self, codes: Codes) -> Codes:
        """Sort keys in the ids' string order (all ids are ranked once, again after new ones)."""
        if len(self._rank) != self._ids.size:
            ids: list[str] = self._ids.data[: self._ids.size].tolist()
            rank = np.empty(len(ids), dtype=np.int64)
            rank[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
            self._rank = rank
        return self._rank[codes]


class _Keyed:
    """Per key (a person or a site code): its scans' times and rows, kept in (time, event id) order.

    Two ``array('q')`` per key rather than objects per scan: they are not
    tracked by the garbage collector and hold 16 bytes a scan. A key that got a
    scan older than its last is *dirty* and is sorted before its next read.
    """

    __slots__ = ("dirty", "rows", "times")

    def __init__(self) -> None:
        self.times: list[array[int]] = []
        self.rows: list[array[int]] = []
        self.dirty: set[int] = set()

    def grow(self, keys: int) -> None:
        while len(self.times) < keys:
            self.times.append(array("q"))
            self.rows.append(array("q"))

    def append(self, key: int, time: int, row: int) -> None:
        times = self.times[key]
        if times and time < times[-1]:
            self.dirty.add(key)
        times.append(time)
        self.rows[key].append(row)

    def extend(self, keys: Codes, times: Codes, rows: Codes) -> None:
        """Append scans given in arrival order, grouped by key with one stable sort."""
        order = np.argsort(keys, kind="stable")
        keys, times, rows = keys[order], times[order], rows[order]
        cut = np.flatnonzero(keys[1:] != keys[:-1]) + 1
        starts = np.concatenate(([0], cut))
        ends = np.concatenate((cut, [len(keys)]))
        late = np.flatnonzero((times[1:] < times[:-1]) & (keys[1:] == keys[:-1]))
        self.dirty.update(keys[late].tolist())
        all_times, all_rows = self.times, self.rows
        dirty = self.dirty
        time_bytes = memoryview(times.tobytes())
        row_bytes = memoryview(rows.tobytes())
        for key, start, end, first in zip(
            keys[starts].tolist(),
            (starts * 8).tolist(),
            (ends * 8).tolist(),
            times[starts].tolist(),
            strict=True,
        ):
            held = all_times[key]
            if held and first < held[-1]:
                dirty.add(key)
            held.frombytes(time_bytes[start:end])
            all_rows[key].frombytes(row_bytes[start:end])

    def span(self, key: int, start: int, end: int, event_ids: EventIds) -> tuple[Codes, Codes]:
        """Times and rows of the key's scans with ``start <= time <= end``."""
        if key in self.dirty:
            self._sort(key, event_ids)
        times = self.times[key]
        lo, hi = bisect_left(times, start), bisect_right(times, end)
        return (
            np.frombuffer(times[lo:hi], dtype=np.int64),
            np.frombuffer(self.rows[key][lo:hi], dtype=np.int64),
        )

    def spans(
        self, key: int, starts: Codes, ends: Codes, event_ids: EventIds
    ) -> tuple[Codes, Codes]:
        """Times and rows of the key's scans in any of the sorted, disjoint spans (inclusive)."""
        if key in self.dirty:
            self._sort(key, event_ids)
        # Views of the arrays live only in this call (an array exporting its
        # buffer cannot grow); the fancy indexing below copies.
        times = np.frombuffer(self.times[key], dtype=np.int64)
        lo = np.searchsorted(times, starts, side="left")
        count = np.searchsorted(times, ends, side="right") - lo
        at = np.arange(int(count.sum())) + np.repeat(lo - (np.cumsum(count) - count), count)
        return times[at], np.frombuffer(self.rows[key], dtype=np.int64)[at]

    def _sort(self, key: int, event_ids: EventIds) -> None:
        rows = self.rows[key]
        order = _order(self.times[key], [event_ids[row] for row in rows])
        self.times[key] = array("q", [self.times[key][i] for i in order])
        self.rows[key] = array("q", [rows[i] for i in order])
        self.dirty.discard(key)

    def settle(self, event_ids: EventIds) -> None:
        for key in sorted(self.dirty):
            self._sort(key, event_ids)

    def expire(self, key: int, before: int, event_ids: EventIds) -> list[int]:
        """Drop the key's scans older than ``before``; return their rows."""
        if key in self.dirty:
            self._sort(key, event_ids)
        cut = bisect_left(self.times[key], before)
        rows = self.rows[key][:cut].tolist()
        del self.times[key][:cut]
        del self.rows[key][:cut]
        return rows


_SMALL_BATCH = 32
"""Below this many rows, ``add_many`` adds row by row: numpy's per-call cost would dominate."""


class TrailIndex:
    """Both stores in memory, as int-coded columns: per person and per site.

    A scan is a *row*: its time, person, site and kiosk codes are numpy
    columns, and so is its event id (an object column). Each person and each site
    keeps its rows in time order (:class:`_Keyed`). The trace reads these codes
    directly (``person_code``, ``trail_codes``, ``visit_codes`` and the
    ``*_names`` methods, :class:`processors.contacts.Stores`): a depth-2 trace
    touches a hundred thousand visits, and as ints they are matched and
    grouped in numpy instead of one Python object at a time. ``trail_between``
    and ``visits_between`` give the same data as string slices, like the live
    tables do.

    Duplicates are recognised by one index-wide set of event ids. An expired
    scan leaves its row in the columns (unreferenced), as renumbering would
    cost more than the 40 bytes it keeps.
    """

    def __init__(self) -> None:
        self.horizon = _MIN_TIME
        self.added = 0
        self.ignored = 0
        self._events = _Column(object)
        self._seen: set[str] = set()
        self._persons = Names()
        self._sites = Names()
        self._kiosks = Names()
        self._time = _Column()
        self._person = _Column()
        self._site = _Column()
        self._kiosk = _Column()
        self._trails = _Keyed()
        self._visits = _Keyed()

    def __len__(self) -> int:
        return self.added

    def knows(self, person_id: str) -> bool:
        """Whether the index holds any scan of ``person_id``."""
        code = self._persons.codes.get(person_id)
        return code is not None and len(self._trails.times[code]) > 0

    def add(
        self,
        time: int,
        person_id: str,
        site_id: str,
        kiosk_id: str,
        direction: str,
        event_id: str,
    ) -> bool:
        """Record one scan (time in epoch microseconds); False if a duplicate or expired.

        The direction is accepted for the row's shape but not kept: no query reads it.
        """
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

        The hot path of a build. A large batch is taken apart column by column
        (the duplicate check and the id coding are C-level maps over the
        columns) and appended to each person and site with one numpy grouping,
        so no Python code runs per scan; a small one goes row by row.
        """
        batch = rows if isinstance(rows, (list, tuple)) else list(rows)
        if len(batch) < _SMALL_BATCH:
            added = sum(self._add_one(t, p, s, k, e) for t, p, s, k, _, e in batch)
        else:
            # The columns and dicts built here hold no cycles, but their
            # allocations would start collections that re-scan the caller's
            # rows and the index (a third of the build time at 5M scans).
            paused = gc.isenabled()
            if paused:
                gc.disable()
            try:
                added = self._add_batch(batch)
            finally:
                if paused:
                    gc.enable()
        self.added += added
        return added

    def _add_one(self, time: int, person_id: str, site_id: str, kiosk_id: str, event: str) -> bool:
        if event in self._seen or time < self.horizon:
            self.ignored += 1
            return False
        self._seen.add(event)
        row = self._events.size
        self._events.append(event)
        person = self._persons.code(person_id)
        site = self._sites.code(site_id)
        kiosk = self._kiosks.code(kiosk_id)
        self._time.append(time)
        self._person.append(person)
        self._site.append(site)
        self._kiosk.append(kiosk)
        self._trails.grow(len(self._persons))
        self._visits.grow(len(self._sites))
        self._trails.append(person, time, row)
        self._visits.append(site, time, row)
        return True

    def _add_batch(self, batch: Sequence[tuple[int, str, str, str, str, str]]) -> int:
        n = len(batch)
        # One C-level pass per column: zip(*batch) would make an iterator per row.
        times_in, persons_in, sites_in, kiosks_in, events_in = (
            list(map(itemgetter(column), batch)) for column in (0, 1, 2, 3, 5)
        )
        times = np.fromiter(times_in, np.int64, n)
        seen = self._seen
        # A row is kept if its id is new to the index and to the rows before it
        # in this batch, and it is within retention (a refused row's id stays unseen).
        fresh = ~np.fromiter(map(seen.__contains__, events_in), bool, n) & (times >= self.horizon)
        candidates = np.flatnonzero(fresh)
        cand_events = (
            events_in
            if len(candidates) == n
            else tuple(map(events_in.__getitem__, candidates.tolist()))
        )
        first_at = dict(
            zip(reversed(cand_events), range(len(cand_events) - 1, -1, -1), strict=True)
        )
        if len(first_at) < len(cand_events):
            firsts = np.fromiter(map(first_at.__getitem__, cand_events), np.int64, len(cand_events))
            keep = candidates[firsts == np.arange(len(cand_events))]
        else:
            keep = candidates
        kept = len(keep)
        self.ignored += n - kept
        if not kept:
            return 0
        events = (
            cand_events
            if kept == len(cand_events)
            else tuple(map(events_in.__getitem__, keep.tolist()))
        )
        seen.update(events)
        first_row = self._events.size
        self._events.extend(events)
        rows = np.arange(first_row, first_row + kept, dtype=np.int64)
        persons = self._persons.code_all(persons_in)[keep]
        sites = self._sites.code_all(sites_in)[keep]
        kiosks = self._kiosks.code_all(kiosks_in)[keep]
        times = times[keep]
        self._time.extend(times)
        self._person.extend(persons)
        self._site.extend(sites)
        self._kiosk.extend(kiosks)
        self._trails.grow(len(self._persons))
        self._visits.grow(len(self._sites))
        self._trails.extend(persons, times, rows)
        self._visits.extend(sites, times, rows)
        return kept

    def expire(self, before: datetime | int) -> int:
        """Forget every scan older than ``before`` (retention); return how many.

        Later scans older than ``before`` are refused, as their duplicates
        could no longer be recognised.
        """
        cut = before if isinstance(before, int) else to_micros(before)
        self.horizon = max(self.horizon, cut)
        dropped = 0
        for person in range(len(self._trails.times)):
            rows = self._trails.expire(person, cut, self._events.data)
            self._seen.difference_update(self._events.data[rows].tolist())
            dropped += len(rows)
        for site in range(len(self._visits.times)):
            self._visits.expire(site, cut, self._events.data)
        self.added -= dropped
        return dropped

    def settle(self) -> None:
        """Sort every store now instead of on its first query.

        For a process that loads a whole file or topic and then answers many
        traces: after ``settle()`` the stores no longer change, so the caller
        can ``gc.freeze()`` them and the garbage collector stops re-scanning
        them on every collection (bench/README.md).
        """
        self._trails.settle(self._events.data)
        self._visits.settle(self._events.data)
        self._persons.rank(_NO_CODES)

    # The coded lookups that processors.contacts.trace searches.

    def person_code(self, person_id: str) -> int:
        code = self._persons.codes.get(person_id)
        return -1 if code is None else code

    def trail_codes(self, person: int, start: int, end: int) -> CodedTrail:
        if not 0 <= person < len(self._trails.times):
            return _NO_TRAIL
        times, rows = self._trails.span(person, start, end, self._events.data)
        return CodedTrail(times, self._site.data[rows], self._kiosk.data[rows], rows)

    def visit_codes(self, site: int, starts: Codes, ends: Codes) -> CodedVisits:
        if not 0 <= site < len(self._visits.times):
            return _NO_VISITS
        times, rows = self._visits.spans(site, starts, ends, self._events.data)
        return CodedVisits(times, self._person.data[rows], self._kiosk.data[rows], rows)

    def person_names(self, codes: Codes) -> list[str]:
        return self._persons.names(codes)

    def person_order(self, codes: Codes) -> Codes:
        return self._persons.rank(codes)

    def site_names(self, codes: Codes) -> list[str]:
        return self._sites.names(codes)

    def event_names(self, codes: Codes) -> list[str]:
        names: list[str] = self._events.data[codes].tolist()
        return names

    # The string lookups, as the live tables give them.

    def trail_between(self, person_id: str, start: int, end: int) -> TrailSlice:
        """A person's scans in a range, as strings."""
        code = self._persons.codes.get(person_id)
        if code is None:
            return _EMPTY_TRAIL
        found = self.trail_codes(code, start, end)
        return TrailSlice(
            found.times.tolist(),
            self._sites.names(found.sites),
            self._kiosks.names(found.kiosks),
            self.event_names(found.events),
        )

    def visits_between(self, site_id: str, start: int, end: int) -> VisitSlice:
        """A site's visits in a range, as strings."""
        code = self._sites.codes.get(site_id)
        if code is None:
            return _EMPTY_VISITS
        found = self.visit_codes(code, np.array([start]), np.array([end]))
        return VisitSlice(
            found.times.tolist(),
            self._persons.names(found.persons),
            self._kiosks.names(found.kiosks),
            self.event_names(found.events),
        )

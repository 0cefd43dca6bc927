"""Contact tracing over the trail and visit stores: who met the index person, and whom they met.

Two persons are *in contact* when they were scanned at the same site within
``window`` of each other (``|t1 - t2| <= window``, inclusive; 15 minutes by
default), optionally only at the same kiosk.

Tracing an index person over ``[since, until]`` (inclusive):

1. take the index's scans in that period;
2. every other person with a scan at the same site within the window of one of
   them is a **first-degree** contact;
3. with ``depth=2``, each first-degree contact's scans from their first
   contact time up to ``until`` are traced the same way, and the persons found
   who are neither the index nor first-degree contacts are **second-degree**
   contacts (a person reached through several first-degree contacts appears
   once, with all the evidence).

The search never walks the data: it asks two lookups, both inclusive time
ranges in epoch microseconds, and its cost follows the index's scans and the
visitors around them::

    trail_of(person_id, start, end) -> TrailSlice   # the per-person store
    visits_at(site_id, start, end)  -> VisitSlice   # the per-site store

The live worker passes these over its faust tables keyed by ``person_id`` and
``site_id``. :class:`processors.trails.TrailIndex` is passed whole
(``stores=index``): it answers the same questions with int codes
(:class:`Stores`), and string lookups are coded on the fly by
:class:`LookupStores`, so both run the one search below.

Why the search works on int columns: a depth-2 trace can match a hundred
thousand visits and return tens of thousands of contacts. Matching,
excluding and grouping are numpy operations on codes; strings are touched
only for the answer, and string order (evidence, sites, ``via``, ties between
persons) is taken from the few source scans or from ranks, never by sorting a
hundred thousand strings. Pure and deterministic: the same stores give the
same :class:`Trace`, byte for byte, whichever way they are passed.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from itertools import repeat
from typing import Any, NamedTuple, Protocol

import numpy as np

from processors.trails import (
    CodedTrail,
    CodedVisits,
    Codes,
    TrailSlice,
    VisitSlice,
    from_micros,
    to_micros,
)

TrailLookup = Callable[[str, int, int], TrailSlice]
VisitLookup = Callable[[str, int, int], VisitSlice]

DEFAULT_WINDOW = timedelta(minutes=15)

_NO_CODES: Codes = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, kw_only=True)
class ContactPolicy:
    """What counts as a contact, built by the shell from settings or CLI options.

    Parameters:

    * ``window`` — the largest time difference between two scans at one site
      that still counts (inclusive).
    * ``depth`` — 1 for contacts, 2 for contacts of contacts.
    * ``same_kiosk`` — count only scans at the same kiosk (one gate of a site).
    """

    window: timedelta = DEFAULT_WINDOW
    depth: int = 1
    same_kiosk: bool = False

    def __post_init__(self) -> None:
        if self.window < timedelta(0):
            raise ValueError(f"window must not be negative, got {self.window}")
        if self.depth not in (1, 2):
            raise ValueError(f"depth must be 1 or 2, got {self.depth}")


class Contact(NamedTuple):
    """One person found by a trace, with the evidence that links them.

    A named tuple rather than a dataclass: a depth-2 trace can return tens of
    thousands of contacts, and a tuple is built several times faster.

    ``evidence`` holds sorted ``(source_event_id, contact_event_id)`` pairs; the
    source is the index's scan for degree 1 and the first-degree contact's scan
    for degree 2. ``via`` names those first-degree contacts (empty for degree 1)
    and ``times`` the contact's matching scan times; both are for reports and
    plots and are not part of :meth:`to_dict`.
    """

    person_id: str
    degree: int
    first_contact: int
    encounters: int
    sites: tuple[str, ...]
    evidence: tuple[tuple[str, str], ...]
    via: tuple[str, ...] = ()
    times: tuple[int, ...] = ()

    def first_contact_at(self, tz: Any) -> datetime:
        return from_micros(self.first_contact, tz)

    def to_dict(self, tz: Any) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "degree": self.degree,
            "first_contact": self.first_contact_at(tz).isoformat(),
            "encounters": self.encounters,
            "sites": list(self.sites),
            "evidence": [list(pair) for pair in self.evidence],
        }


@dataclass(frozen=True)
class Trace:
    """The result of one trace; ``to_dict()`` is the JSON document tracers receive.

    Contacts are sorted by degree, then first contact, then person id. Times
    are written in the offset of ``since``, so a trace asked in +08:00 reads
    in +08:00.
    """

    index: str
    since: datetime
    until: datetime
    policy: ContactPolicy
    contacts: tuple[Contact, ...]
    index_times: tuple[int, ...] = ()

    @property
    def index_scans(self) -> int:
        """How many of the index's scans fall in the period."""
        return len(self.index_times)

    def to_dict(self) -> dict[str, Any]:
        tz = self.since.tzinfo
        return {
            "index": self.index,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "window_minutes": self.policy.window.total_seconds() / 60,
            "depth": self.policy.depth,
            "same_kiosk": self.policy.same_kiosk,
            "contacts": [contact.to_dict(tz) for contact in self.contacts],
        }

    def of_degree(self, degree: int) -> list[Contact]:
        return [c for c in self.contacts if c.degree == degree]


class Stores(Protocol):
    """The coded view of both stores that the search runs on.

    :class:`processors.trails.TrailIndex` is one; :class:`LookupStores` makes
    one of two string lookups (the live tables). Codes are dense ints per kind
    (persons, sites, kiosks, scans); only the ``*_names`` methods give strings.
    """

    def person_code(self, person_id: str) -> int: ...

    def trail_codes(self, person: int, start: int, end: int) -> CodedTrail: ...

    def visit_codes(self, site: int, starts: Codes, ends: Codes) -> CodedVisits:
        """The site's visits in any of the sorted, disjoint spans ``[starts[i], ends[i]]``."""
        ...

    def person_names(self, codes: Codes) -> list[str]: ...

    def person_order(self, codes: Codes) -> Codes:
        """Non-negative int sort keys in the order of the persons' strings."""
        ...

    def site_names(self, codes: Codes) -> list[str]: ...

    def event_names(self, codes: Codes) -> list[str]: ...


class _Vocabulary(dict[str, int]):
    """Codes for the strings one trace meets, given on first sight."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def __missing__(self, name: str) -> int:
        code = self[name] = len(self.ids)
        self.ids.append(name)
        return code

    def codes(self, names: list[str]) -> Codes:
        return np.fromiter(map(self.__getitem__, names), np.int64, len(names))

    def names(self, codes: Codes) -> list[str]:
        return list(map(self.ids.__getitem__, codes.tolist()))


class LookupStores:
    """:class:`Stores` over the two string lookups, with codes made up for one trace.

    The live worker's tables hold strings (JSON values), so their slices are
    coded here as they are read; the search is then the same as over the index.
    """

    def __init__(self, trail_of: TrailLookup, visits_at: VisitLookup) -> None:
        self._trail_of = trail_of
        self._visits_at = visits_at
        self._persons = _Vocabulary()
        self._sites = _Vocabulary()
        self._kiosks = _Vocabulary()
        self._events = _Vocabulary()

    def person_code(self, person_id: str) -> int:
        return self._persons[person_id]

    def trail_codes(self, person: int, start: int, end: int) -> CodedTrail:
        found = self._trail_of(self._persons.ids[person], start, end)
        return CodedTrail(
            np.array(found.times, dtype=np.int64),
            self._sites.codes(found.sites),
            self._kiosks.codes(found.kiosks),
            self._events.codes(found.event_ids),
        )

    def visit_codes(self, site: int, starts: Codes, ends: Codes) -> CodedVisits:
        site_id = self._sites.ids[site]
        found = [
            self._visits_at(site_id, start, end)
            for start, end in zip(starts.tolist(), ends.tolist(), strict=True)
        ]
        return CodedVisits(
            np.array([t for part in found for t in part.times], dtype=np.int64),
            self._persons.codes([p for part in found for p in part.persons]),
            self._kiosks.codes([k for part in found for k in part.kiosks]),
            self._events.codes([e for part in found for e in part.event_ids]),
        )

    def person_names(self, codes: Codes) -> list[str]:
        return self._persons.names(codes)

    def person_order(self, codes: Codes) -> Codes:
        return _string_rank(codes, self.person_names)[0]

    def site_names(self, codes: Codes) -> list[str]:
        return self._sites.names(codes)

    def event_names(self, codes: Codes) -> list[str]:
        return self._events.names(codes)


class _Scans(NamedTuple):
    """Scans to search from, as parallel int columns (any order)."""

    times: Codes
    sites: Codes
    kiosks: Codes
    events: Codes
    persons: Codes


class _Pairs(NamedTuple):
    """Every (source scan, contact scan) match, as parallel int columns.

    ``sources`` are positions in the :class:`_Scans` searched from; the rest
    describe the contact's scan.
    """

    sources: Codes
    persons: Codes
    events: Codes
    times: Codes


def _concat(parts: list[Codes]) -> Codes:
    return np.concatenate(parts) if parts else _NO_CODES


def _spread(stores: Stores, src: _Scans, exclude: Codes, window: int, same_kiosk: bool) -> _Pairs:
    """Every visit, by a person not in ``exclude`` (sorted codes), within ``window`` of a source.

    Per site, the sources' windows are merged into disjoint spans and each span
    is fetched once, so every visit is seen at most once; the sources matching
    each visit are then a contiguous run of the time-sorted sources
    (``searchsorted``), and the runs are expanded into pairs with
    ``repeat``/``cumsum``. Nothing here builds a Python object per visit.
    """
    if not len(src.times):
        return _Pairs(*(_NO_CODES for _ in _Pairs._fields))
    order = np.lexsort((src.times, src.sites))
    s_sites, s_times = src.sites[order], src.times[order]
    s_kiosks = src.kiosks[order]
    cut = np.flatnonzero(s_sites[1:] != s_sites[:-1]) + 1
    starts, ends = np.concatenate(([0], cut)).tolist(), np.concatenate((cut, [len(order)])).tolist()
    out: dict[str, list[Codes]] = {name: [] for name in _Pairs._fields}
    for a, b in zip(starts, ends, strict=True):
        site = int(s_sites[a])
        times = s_times[a:b]
        gap = np.flatnonzero(times[1:] - times[:-1] > 2 * window) + 1
        visits = stores.visit_codes(
            site,
            times[np.concatenate(([0], gap))] - window,
            times[np.concatenate((gap - 1, [len(times) - 1]))] + window,
        )
        v_times, v_persons = visits.times, visits.persons
        if len(exclude):
            at = np.minimum(np.searchsorted(exclude, v_persons), len(exclude) - 1)
            keep = np.flatnonzero(exclude[at] != v_persons)
            v_times, v_persons = v_times[keep], v_persons[keep]
        else:
            keep = None
        first = np.searchsorted(times, v_times - window, side="left")
        count = np.searchsorted(times, v_times + window, side="right") - first
        total = int(count.sum())
        if not total:
            continue
        visit = np.repeat(np.arange(len(v_times)), count)
        source = a + np.arange(total) - np.repeat(np.cumsum(count) - count - first, count)
        v_kiosks, v_events = visits.kiosks, visits.events
        if keep is not None:
            v_kiosks, v_events = v_kiosks[keep], v_events[keep]
        if same_kiosk:
            same = np.flatnonzero(s_kiosks[source] == v_kiosks[visit])
            source, visit = source[same], visit[same]
        out["sources"].append(order[source])
        out["persons"].append(v_persons[visit])
        out["events"].append(v_events[visit])
        out["times"].append(v_times[visit])
    return _Pairs(*(_concat(out[name]) for name in _Pairs._fields))


def _string_rank(codes: Codes, names: Callable[[Codes], list[str]]) -> tuple[Codes, int]:
    """For each code, the rank of its string among the distinct strings given; and their count."""
    distinct, inverse = np.unique(codes, return_inverse=True)
    strings = names(distinct)
    rank = np.empty(len(distinct), dtype=np.int64)
    rank[sorted(range(len(strings)), key=strings.__getitem__)] = np.arange(len(distinct))
    return rank[inverse], len(distinct)


def _runs(keys: list[Codes]) -> tuple[Codes, Codes]:
    """For rows sorted by ``keys``: a run number per row, and whether its run has company."""
    n = len(keys[0])
    new = np.ones(n, dtype=bool)
    if n:
        new[1:] = False
        for key in keys:
            new[1:] |= key[1:] != key[:-1]
    shared = ~new
    shared[:-1] |= ~new[1:]
    return np.cumsum(new), shared


def _by_string_within(
    order: Codes, keys: list[Codes], codes: Codes, names: Callable[[Codes], list[str]]
) -> Codes:
    """``order`` (sorted by ``keys``) with ties put in the string order of ``codes``.

    Only the tied rows are ranked by string: the strings of a hundred thousand
    scans would cost more to sort than everything else in a trace.
    """
    run, shared = _runs([key[order] for key in keys])
    tied = np.flatnonzero(shared)
    if not len(tied):
        return order
    rank = _string_rank(codes[order[tied]], names)[0]
    # Runs are contiguous, so reordering the tied rows among themselves is enough.
    order = order.copy()
    order[tied] = order[tied][np.lexsort((rank, run[tied]))]
    return order


_KEY_LIMIT = 2**62


def _sort_pairs(major: Codes, minor: Codes, minor_size: int) -> Codes:
    """The order by (major, minor), both non-negative: one int64 argsort when the key fits.

    Not stable: callers order ties themselves, or have none.
    """
    if len(major) and (int(major.max()) + 1) * minor_size < _KEY_LIMIT:
        return np.argsort(major * minor_size + minor)
    return np.lexsort((minor, major))


def _distinct(group: Codes, value: Codes, size: int) -> tuple[Codes, Codes]:
    """Per group (ints from 0, each present), its distinct ``value``s (ints below ``size``), sorted.

    Returns the values, flat, and where each group's values start (plus the
    end). One int64 sort of ``group * size + value`` when that fits, which is
    several times faster than a two-key ``lexsort``.
    """
    if len(group) and (int(group.max()) + 1) * size < _KEY_LIMIT:
        keys = np.sort(group * size + value)
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
        groups, values = keys // size, keys % size
    else:
        order = np.lexsort((value, group))
        groups, values = group[order], value[order]
        fresh = np.concatenate(([True], (groups[1:] != groups[:-1]) | (values[1:] != values[:-1])))
        groups, values = groups[fresh], values[fresh]
    return values, _bounds(groups)


def _bounds(groups: Codes) -> Codes:
    """Where each run of equal (sorted) ``groups`` starts, and the end."""
    return np.append(
        np.flatnonzero(np.concatenate(([True], groups[1:] != groups[:-1]))), len(groups)
    )


def _tuples(values: Iterable[Any], bounds: Codes) -> list[tuple[Any, ...]]:
    """``values[bounds[i]:bounds[i + 1]]`` as a tuple, for each i (slicing a tuple, in C)."""
    flat = values if isinstance(values, tuple) else tuple(values)
    return list(map(flat.__getitem__, map(slice, bounds[:-1].tolist(), bounds[1:].tolist())))


def _few_tuples(names: list[str], ranks: Codes, bounds: Codes) -> list[tuple[str, ...]]:
    """Like :func:`_tuples` for values drawn from a few ``names`` (by rank).

    Most contacts have one site, and many one first-degree contact in
    ``via``: those share one 1-tuple per name instead of each getting its own.
    """
    ones = np.fromiter(zip(names), dtype=object, count=len(names))
    starts = bounds[:-1]
    out = ones[ranks[starts]]
    larger = np.flatnonzero(np.diff(bounds) > 1)
    if len(larger):
        flat = tuple(np.array(names, dtype=object)[ranks].tolist())
        out[larger] = np.fromiter(
            map(flat.__getitem__, map(slice, starts[larger].tolist(), bounds[larger + 1].tolist())),
            dtype=object,
            count=len(larger),
        )
    tuples: list[tuple[str, ...]] = out.tolist()
    return tuples


_new_contact: Callable[[tuple[Any, ...]], Contact] = partial(tuple.__new__, Contact)
"""Builds a :class:`Contact` from one tuple in C: tens of thousands per trace."""


def _contacts(
    stores: Stores, degree: int, src: _Scans, pairs: _Pairs
) -> tuple[list[Contact], Codes, Codes]:
    """The contacts found in ``pairs``; also their person codes and first contact times.

    Everything a contact's fields need a string order for (source events,
    sites, first-degree persons) comes from the sources, which are few: their
    strings are ranked once and the pairs take the ranks by source.
    """
    if not len(pairs.persons):
        return [], _NO_CODES, _NO_CODES
    src_names = stores.event_names(src.events)
    src_rank = np.empty(len(src_names), dtype=np.int64)
    src_rank[sorted(range(len(src_names)), key=src_names.__getitem__)] = np.arange(len(src_names))
    # Evidence order: by contact, then source event id, then contact event id.
    order = _sort_pairs(pairs.persons, src_rank[pairs.sources], len(src_names))
    order = _by_string_within(
        order, [pairs.persons, src_rank[pairs.sources]], pairs.events, stores.event_names
    )
    persons, sources, events = pairs.persons[order], pairs.sources[order], pairs.events[order]
    new = np.concatenate(([True], persons[1:] != persons[:-1]))
    starts = np.flatnonzero(new)
    group = np.cumsum(new) - 1
    codes = persons[starts]
    times = pairs.times[order]
    firsts = np.minimum.reduceat(times, starts)
    # The same pair twice (a scan held twice by the live tables) is one encounter.
    src_events = src.events[sources]
    once = new.copy()
    once[1:] |= (src_events[1:] != src_events[:-1]) | (events[1:] != events[:-1])
    kept = np.flatnonzero(once)
    k_bounds = np.append(np.flatnonzero(new[kept]), len(kept))
    encounters = np.diff(k_bounds)
    names = np.array(src_names, dtype=object)
    flat = zip(names[sources[kept]].tolist(), stores.event_names(events[kept]), strict=True)
    evidence = _tuples(flat, k_bounds)

    site_rank, site_count = _string_rank(src.sites, stores.site_names)
    site_by_rank = np.empty(site_count, dtype=np.int64)
    site_by_rank[site_rank] = src.sites
    ranks, bounds = _distinct(group, site_rank[sources], site_count)
    sites = _few_tuples(stores.site_names(site_by_rank), ranks, bounds)
    base = int(times.min())
    offsets, bounds = _distinct(group, times - base, int(times.max()) - base + 1)
    seen_at = _tuples((offsets + base).tolist(), bounds)
    if degree > 1:
        via_rank, via_count = _string_rank(src.persons, stores.person_names)
        via_by_rank = np.empty(via_count, dtype=np.int64)
        via_by_rank[via_rank] = src.persons
        ranks, bounds = _distinct(group, via_rank[sources], via_count)
        via: Iterable[tuple[str, ...]] = _few_tuples(
            stores.person_names(via_by_rank), ranks, bounds
        )
    else:
        via = repeat(())
    found = list(
        map(
            _new_contact,
            zip(
                stores.person_names(codes),
                repeat(degree),
                firsts.tolist(),
                encounters.tolist(),
                sites,
                evidence,
                via,
                seen_at,
            ),
        )
    )
    return found, codes, firsts


def _in_order(
    stores: Stores, contacts: list[Contact], codes: Codes, firsts: Codes
) -> list[Contact]:
    """One degree's contacts by first contact, then person id."""
    if not contacts:
        return contacts
    keys = stores.person_order(codes)
    order = _sort_pairs(firsts - int(firsts.min()), keys, int(keys.max()) + 1)
    return list(map(contacts.__getitem__, order.tolist()))


def trace(
    person_id: str,
    since: datetime,
    until: datetime,
    *,
    trail_of: TrailLookup | None = None,
    visits_at: VisitLookup | None = None,
    stores: Stores | None = None,
    policy: ContactPolicy = ContactPolicy(),
) -> Trace:
    """Find the contacts of ``person_id`` over ``[since, until]`` (inclusive).

    Give either ``stores`` (a :class:`~processors.trails.TrailIndex`) or the
    two string lookups ``trail_of`` and ``visits_at`` described in the module
    docstring; both give the same trace.
    """
    if since > until:
        raise ValueError(f"since ({since.isoformat()}) is after until ({until.isoformat()})")
    if stores is None:
        if trail_of is None or visits_at is None:
            raise ValueError("give either stores or both trail_of and visits_at")
        stores = LookupStores(trail_of, visits_at)
    # A depth-2 trace allocates tens of thousands of small containers and no
    # reference cycles; CPython's collector would re-scan the growing result
    # again and again, so it is paused for the search and restored as it was,
    # whatever happens.
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        return _trace(person_id, since, until, stores, policy)
    finally:
        if paused:
            gc.enable()


def _trace(
    person_id: str,
    since: datetime,
    until: datetime,
    stores: Stores,
    policy: ContactPolicy,
) -> Trace:
    start, end = to_micros(since), to_micros(until)
    window = policy.window // timedelta(microseconds=1)

    me = stores.person_code(person_id)
    own = stores.trail_codes(me, start, end)
    index_scans = _Scans(*own, np.full(len(own.times), me, dtype=np.int64))
    excluded = np.array([me], dtype=np.int64)
    pairs = _spread(stores, index_scans, excluded, window, policy.same_kiosk)
    first, codes, firsts = _contacts(stores, 1, index_scans, pairs)
    contacts = _in_order(stores, first, codes, firsts)

    if policy.depth >= 2 and len(codes):
        scans = [
            stores.trail_codes(p, f, end)
            for p, f in zip(codes.tolist(), firsts.tolist(), strict=True)
        ]
        sources = _Scans(
            _concat([s.times for s in scans]),
            _concat([s.sites for s in scans]),
            _concat([s.kiosks for s in scans]),
            _concat([s.events for s in scans]),
            np.repeat(codes, [len(s.times) for s in scans]),
        )
        excluded = np.unique(np.append(codes, me))
        pairs = _spread(stores, sources, excluded, window, policy.same_kiosk)
        second, codes2, firsts2 = _contacts(stores, 2, sources, pairs)
        contacts.extend(_in_order(stores, second, codes2, firsts2))

    return Trace(
        index=person_id,
        since=since,
        until=until,
        policy=policy,
        contacts=tuple(contacts),
        index_times=tuple(own.times.tolist()),
    )

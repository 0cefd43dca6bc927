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

:class:`processors.trails.TrailIndex` provides both over in-memory dicts
(``index.trail_between``, ``index.visits_between``); the live worker passes
lookups over its faust tables keyed by ``person_id`` and ``site_id``. Pure and
deterministic: the same stores give the same :class:`Trace`, byte for byte.
"""

from __future__ import annotations

import gc
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from processors.trails import TrailSlice, VisitSlice, from_micros, to_micros

TrailLookup = Callable[[str, int, int], TrailSlice]
VisitLookup = Callable[[str, int, int], VisitSlice]

DEFAULT_WINDOW = timedelta(minutes=15)


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


class _Found:
    """Evidence gathered for one person while searching (mutable, private)."""

    __slots__ = ("first", "pairs", "sites", "times", "via")

    def __init__(self, first: int) -> None:
        self.first = first
        self.pairs: list[tuple[str, str]] = []
        self.sites: set[str] = set()
        self.times: list[int] = []
        self.via: set[str] = set()


class _Sources:
    """The scans to search from at one site, in time order (parallel lists)."""

    __slots__ = ("event_ids", "kiosks", "persons", "times")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.event_ids: list[str] = []
        self.kiosks: list[str] = []
        self.persons: list[str] = []

    def sort(self) -> None:
        order = sorted(range(len(self.times)), key=lambda i: (self.times[i], self.event_ids[i]))
        self.times = [self.times[i] for i in order]
        self.event_ids = [self.event_ids[i] for i in order]
        self.kiosks = [self.kiosks[i] for i in order]
        self.persons = [self.persons[i] for i in order]


def _group(person: str, scans: TrailSlice, by_site: dict[str, _Sources]) -> None:
    for t, site, kiosk, event in zip(
        scans.times, scans.sites, scans.kiosks, scans.event_ids, strict=True
    ):
        group = by_site.get(site)
        if group is None:
            group = by_site[site] = _Sources()
        group.times.append(t)
        group.event_ids.append(event)
        group.kiosks.append(kiosk)
        group.persons.append(person)


def _spread(
    by_site: dict[str, _Sources],
    exclude: set[str],
    visits_at: VisitLookup,
    window: int,
    same_kiosk: bool,
    found: dict[str, _Found],
) -> None:
    """Add to ``found`` every person, not in ``exclude``, met by the source scans.

    Per site, the sources' windows are merged into disjoint spans and each span
    is fetched once; each visit then finds its matching sources by bisecting
    the time-sorted sources. A visit by an excluded person (at depth 2, the
    many neighbours who are first-degree contacts already) costs one set
    lookup, however many sources it is near, so a trace costs the visits
    around the sources plus the evidence it returns.
    """
    for site in sorted(by_site):
        src = by_site[site]
        src.sort()
        s_times, s_events, s_kiosks, s_persons = src.times, src.event_ids, src.kiosks, src.persons
        spans: list[list[int]] = []
        for t in s_times:
            if spans and t - window <= spans[-1][1]:
                spans[-1][1] = t + window
            else:
                spans.append([t - window, t + window])
        for lo, hi in spans:
            visits = visits_at(site, lo, hi)
            for vt, person, vkiosk, event in zip(
                visits.times, visits.persons, visits.kiosks, visits.event_ids, strict=True
            ):
                if person in exclude:
                    continue
                first = bisect_left(s_times, vt - window)
                last = bisect_right(s_times, vt + window)
                hit = found.get(person)
                matched = False
                for i in range(first, last):
                    if same_kiosk and s_kiosks[i] != vkiosk:
                        continue
                    if hit is None:
                        hit = found[person] = _Found(vt)
                    hit.pairs.append((s_events[i], event))
                    hit.via.add(s_persons[i])
                    matched = True
                if matched and hit is not None:
                    if vt < hit.first:
                        hit.first = vt
                    hit.sites.add(site)
                    hit.times.append(vt)


def _contact(person: str, degree: int, hit: _Found) -> Contact:
    # Positional, and no sorting of one-element lists: most second-degree
    # contacts have a single encounter, and there can be tens of thousands.
    pairs = hit.pairs
    if len(pairs) == 1:
        return Contact(
            person,
            degree,
            hit.first,
            1,
            tuple(hit.sites),
            (pairs[0],),
            tuple(hit.via) if degree > 1 else (),
            (hit.times[0],),
        )
    evidence = tuple(sorted(set(pairs)))
    return Contact(
        person,
        degree,
        hit.first,
        len(evidence),
        tuple(sorted(hit.sites)),
        evidence,
        tuple(sorted(hit.via)) if degree > 1 else (),
        tuple(sorted(set(hit.times))),
    )


def trace(
    person_id: str,
    since: datetime,
    until: datetime,
    *,
    trail_of: TrailLookup,
    visits_at: VisitLookup,
    policy: ContactPolicy = ContactPolicy(),
) -> Trace:
    """Find the contacts of ``person_id`` over ``[since, until]`` (inclusive).

    ``trail_of`` and ``visits_at`` are the per-person and per-site lookups
    described in the module docstring.
    """
    if since > until:
        raise ValueError(f"since ({since.isoformat()}) is after until ({until.isoformat()})")
    # A depth-2 trace allocates tens of thousands of small containers and no
    # reference cycles; CPython's collector would re-scan the growing result
    # again and again (about a third of the time in the bench), so it is
    # paused for the search and restored as it was, whatever happens.
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        return _trace(person_id, since, until, trail_of, visits_at, policy)
    finally:
        if paused:
            gc.enable()


def _trace(
    person_id: str,
    since: datetime,
    until: datetime,
    trail_of: TrailLookup,
    visits_at: VisitLookup,
    policy: ContactPolicy,
) -> Trace:
    start, end = to_micros(since), to_micros(until)
    window = policy.window // timedelta(microseconds=1)

    index_scans = trail_of(person_id, start, end)
    by_site: dict[str, _Sources] = {}
    _group(person_id, index_scans, by_site)
    first: dict[str, _Found] = {}
    _spread(by_site, {person_id}, visits_at, window, policy.same_kiosk, first)
    contacts = [_contact(p, 1, hit) for p, hit in first.items()]

    if policy.depth >= 2:
        by_site = {}
        for person in sorted(first):
            _group(person, trail_of(person, first[person].first, end), by_site)
        exclude = set(first)
        exclude.add(person_id)
        second: dict[str, _Found] = {}
        _spread(by_site, exclude, visits_at, window, policy.same_kiosk, second)
        contacts.extend(_contact(p, 2, hit) for p, hit in second.items())

    contacts.sort(key=lambda c: (c.degree, c.first_contact, c.person_id))
    return Trace(
        index=person_id,
        since=since,
        until=until,
        policy=policy,
        contacts=tuple(contacts),
        index_times=tuple(index_scans.times),
    )

"""Synthetic gates: a deterministic stream of scans, readings and quarantine orders.

The generator is pure (a seed and a start time in, events out) so the demo,
load tests and benchmarks all draw from the same, repeatable picture of a day
at the gates:

* residents live at one site (community) and mostly pass its gates;
* a paired forehead reading follows each scan a few seconds later, colder on
  the way in (people walk in from a winter street);
* a few residents run a fever and are re-measured at the gate;
* a few readings are sensor errors (outside 34–42 °C);
* some residents are under home quarantine; a few of them walk out anyway.

The default :class:`GateWorld` is the *plain* profile: a steady arrival rate
and events yielded in event-time order. :meth:`GateWorld.realistic` opts in to
a realistic day, each part behind its own field (their defaults switch it off):

* ``day_shape``: the arrival rate follows the local hour (``timezone``,
  Asia/Shanghai): busy 07:30–09:00 and 17:30–19:30, quiet at night. ``rate``
  is then the mean over a whole day and the run ends at ``start + duration``;
* ``household_max``/``group_outing_share``: residents live in households of
  1–5 and some outings are 2–3 members of one household passing together:
  scans a few seconds apart, same kiosk, same direction;
* ``skewed_kiosk_share``/``skew_s``: some kiosks' clocks are off by a constant
  offset (see :meth:`GateWorld.clock_skew`). Their events are stamped with the
  kiosk's clock, so **stamps are no longer in order** across kiosks (events
  are still yielded in true-time order apart from outages);
* ``outages``/``outage_s``: a kiosk goes offline for a while (see
  :meth:`GateWorld.kiosk_outages`); it keeps scanning into its spool, and those
  events are yielded *late*, all together right after the outage ends, with
  their original event times, as a kiosk catching up would publish them.

What the districts did beyond the gates, also opt in (each off by default, so
the plain profile's stream is unchanged; :meth:`GateWorld.districts` turns
them all on):

* ``household_ids``: scans carry the household from the pass, for the
  one-person-per-household outing rule (households going out together, or
  one after the other, break the quota);
* ``yellow_share``/``red_share``: residents whose health code is yellow or red;
* ``venues``/``venue_share``: markets, pharmacies and other posted venue codes,
  where a share of the residents who go out check in by phone a little later
  (a ``scan/1`` with the venue as kiosk and site, ``venue_kind`` set);
* ``visitor_share``: of the arrivals, the share that are visitors without a
  pass, registered with a keyed-hash id, whom they visit and a reading.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from scantrail.contract import (
    Direction,
    Event,
    QuarantineRecord,
    ScanEvent,
    TemperatureReading,
    VenueKind,
)

# Relative gate traffic per local half hour (00:00, 00:30, ... 23:30); scaled so
# the mean is 1, i.e. ``rate`` stays the average over a whole day.
_HALF_HOURS = (
    (0.04,) * 10  # 00:00–05:00 asleep
    + (0.1, 0.2, 0.4, 0.6, 0.9)  # 05:00–07:30 waking
    + (2.6, 3.0, 2.6)  # 07:30–09:00 morning peak
    + (1.4, 1.1) + (0.9,) * 4 + (1.1, 1.1) + (0.8,) * 8 + (1.3,)  # 09:00–17:30 day
    + (2.6, 3.0, 2.8, 2.2)  # 17:30–19:30 evening peak
    + (1.4, 1.0, 0.8, 0.6, 0.4, 0.25, 0.15, 0.08, 0.05)  # 19:30–24:00 winding down
)  # fmt: skip
_DAY_SHAPE = tuple(w * len(_HALF_HOURS) / sum(_HALF_HOURS) for w in _HALF_HOURS)
_SLOT_S = 1800.0
# Household sizes 1..5 (urban China averaged under three people per household).
_HOUSEHOLD_WEIGHTS = (0.18, 0.32, 0.28, 0.14, 0.08)


@dataclass(frozen=True)
class KioskOutage:
    """A kiosk offline from ``starts_at`` to ``ends_at`` (true time, not its clock)."""

    kiosk_id: str
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class GateWorld:
    """The population and gates being simulated (defaults: the plain profile)."""

    kiosks: int = 4
    residents: int = 200
    seed: int = 1
    fever_share: float = 0.02  # residents who run a temperature
    sensor_error_rate: float = 0.003  # readings out of range
    quarantine_share: float = 0.05  # residents under home quarantine
    breach_rate: float = 0.2  # of quarantined residents' passages, those that happen anyway
    # Seconds after a hot reading until the re-measure (after warming up indoors).
    remeasure_s: tuple[float, float] = (240.0, 600.0)
    # --- realistic day, opt in (see the module docstring) ---
    day_shape: bool = False  # rate follows the local hour; run ends at start + duration
    timezone: str = "Asia/Shanghai"
    household_max: int = 1  # largest household; 1 = everyone lives alone
    group_outing_share: float = 0.0  # outings where 2–3 household members go together
    group_gap_s: tuple[float, float] = (2.0, 10.0)  # between scans of one group
    skewed_kiosk_share: float = 0.0  # kiosks whose clock is off
    skew_s: tuple[float, float] = (120.0, 600.0)  # size of the offset, either sign
    outages: int = 0  # kiosk outages over the run (each on a different kiosk)
    outage_s: tuple[float, float] = (600.0, 2400.0)
    # --- the districts' extras, opt in (see the module docstring) ---
    household_ids: bool = False
    yellow_share: float = 0.0
    red_share: float = 0.0
    venues: int = 0
    venue_share: float = 0.0  # of outings, those followed by a phone check-in at a venue
    visitor_share: float = 0.0  # of arrivals at a gate, those that are visitors
    worker_share: float = 0.0  # residents with a worker's pass (exempt from the outing quota)

    @classmethod
    def districts(
        cls, *, kiosks: int = 4, residents: int = 200, seed: int = 1, **more: Any
    ) -> GateWorld:
        """Households with ids, yellow and red codes, venues with check-ins, and visitors."""
        extras: dict[str, Any] = {
            "household_max": 4,
            "group_outing_share": 0.0,  # group gaps would stretch a fast demo's clock
            "household_ids": True,
            "yellow_share": 0.03,
            "red_share": 0.01,
            "venues": 3,
            "venue_share": 0.3,
            "visitor_share": 0.05,
            "worker_share": 0.6,
        }
        return cls(kiosks=kiosks, residents=residents, seed=seed, **{**extras, **more})

    def household_id(self, household: int) -> str:
        return f"hh-{self.seed:x}-{household:05d}"

    def venue(self, index: int) -> tuple[str, VenueKind]:
        kinds: tuple[VenueKind, ...] = ("market", "pharmacy", "bus", "workplace")
        kind = kinds[index % len(kinds)]
        return f"{kind}-{index:02d}", kind

    def visitor_id(self, n: int) -> str:
        # What ingest.visitors.visitor_id makes of a phone number: a keyed hash.
        digest = hashlib.sha256(f"sim-visitor-{self.seed}-{n}".encode()).hexdigest()
        return f"v-{digest[:32]}"

    @classmethod
    def realistic(cls, *, kiosks: int = 4, residents: int = 200, seed: int = 1) -> GateWorld:
        """A realistic day: peaks, households, a few skewed clocks and an outage."""
        return cls(
            kiosks=kiosks,
            residents=residents,
            seed=seed,
            day_shape=True,
            household_max=5,
            group_outing_share=0.35,
            skewed_kiosk_share=0.25,
            outages=max(1, kiosks // 4),
        )

    @property
    def sites(self) -> int:
        return max(1, self.kiosks // 2)

    def site_of_kiosk(self, kiosk: int) -> str:
        return f"site-{kiosk % self.sites:03d}"

    def kiosk_id(self, kiosk: int) -> str:
        return f"kiosk-{kiosk:03d}"

    def person_id(self, resident: int) -> str:
        # Pseudonymous: stable per seed, meaningless outside the system.
        return f"p-{self.seed:x}-{resident:06d}"

    def households(self) -> list[list[int]]:
        """Residents (by index) grouped into households of 1..``household_max``."""
        if self.household_max <= 1:
            return [[r] for r in range(self.residents)]
        rng = random.Random(f"households-{self.seed}")
        sizes = list(range(1, self.household_max + 1))
        weights = [_HOUSEHOLD_WEIGHTS[min(s, len(_HOUSEHOLD_WEIGHTS)) - 1] for s in sizes]
        groups: list[list[int]] = []
        r = 0
        while r < self.residents:
            size = rng.choices(sizes, weights)[0]
            groups.append(list(range(r, min(r + size, self.residents))))
            r += size
        return groups

    def clock_skew(self) -> dict[str, timedelta]:
        """Constant clock offset of each skewed kiosk (kiosk stamp = true time + offset)."""
        if self.skewed_kiosk_share <= 0 or self.kiosks <= 0:
            return {}
        rng = random.Random(f"clock-skew-{self.seed}")
        n = min(self.kiosks, max(1, round(self.kiosks * self.skewed_kiosk_share)))
        return {
            self.kiosk_id(k): timedelta(
                seconds=round(rng.choice((-1, 1)) * rng.uniform(*self.skew_s))
            )
            for k in sorted(rng.sample(range(self.kiosks), n))
        }

    def kiosk_outages(self, start: datetime, duration: timedelta) -> list[KioskOutage]:
        """The outages of a run from ``start``, ordered by their end."""
        if self.outages <= 0 or self.kiosks <= 0:
            return []
        rng = random.Random(f"outages-{self.seed}")
        span = duration.total_seconds()
        plan = []
        for k in rng.sample(range(self.kiosks), min(self.outages, self.kiosks)):
            length = min(rng.uniform(*self.outage_s), span)
            begins = start + timedelta(seconds=rng.uniform(0.0, max(0.0, span - length)))
            plan.append(KioskOutage(self.kiosk_id(k), begins, begins + timedelta(seconds=length)))
        return sorted(plan, key=lambda o: (o.ends_at, o.kiosk_id))


def traffic_weight(at: datetime, timezone: str = "Asia/Shanghai") -> float:
    """Gate traffic at ``at`` relative to the day's mean (local half hour in ``timezone``)."""
    local = at.astimezone(ZoneInfo(timezone))
    return _DAY_SHAPE[(local.hour * 60 + local.minute) // 30]


def simulate_events(
    world: GateWorld, start: datetime, rate: float, duration: timedelta
) -> Iterator[Event]:
    """Yield quarantine orders first, then scans and readings.

    ``rate`` is scans per second over all gates (readings come on top); with
    ``day_shape`` it is outings per second averaged over a day (a group outing
    adds a scan per companion). Events come in event-time order unless the
    world has skewed clocks or outages (see the module docstring).
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    outages = world.kiosk_outages(start, duration)
    timeline = _timeline(world, start, rate, duration)
    if not outages:
        for _, _, event in timeline:
            yield event
        return
    yield from _through_outages(timeline, outages)


def _timeline(
    world: GateWorld, start: datetime, rate: float, duration: timedelta
) -> Iterator[tuple[datetime, str, Event]]:
    """(true time, kiosk id or "", event) in true-time order."""
    rng = random.Random(world.seed)
    residents = list(range(world.residents))
    fevered = set(rng.sample(residents, k=int(world.residents * world.fever_share)))
    quarantined = set(rng.sample(residents, k=int(world.residents * world.quarantine_share)))
    home_site = {r: f"site-{r % world.sites:03d}" for r in residents}
    household: dict[int, list[int]] = {}
    household_of: dict[int, str] = {}
    if world.household_max > 1:
        for h, members in enumerate(world.households()):
            for r in members:
                home_site[r] = f"site-{h % world.sites:03d}"
                household[r] = members
                if world.household_ids:
                    household_of[r] = world.household_id(h)
    # The districts' extras draw from their own generator, so the gates' own
    # stream (and the plain profile) is the same with or without them.
    extra = random.Random(f"districts-{world.seed}")
    colour: dict[int, str] = {}
    if world.yellow_share > 0 or world.red_share > 0:
        for r in residents:
            roll = extra.random()
            if roll < world.red_share:
                colour[r] = "red"
            elif roll < world.red_share + world.yellow_share:
                colour[r] = "yellow"
    venue_seq: dict[str, int] = {}
    visitors = 0
    workers: set[int] = set()
    if world.worker_share > 0:
        workers = {r for r in residents if extra.random() < world.worker_share}
    kiosks_of_site: dict[str, list[int]] = {}
    for k in range(world.kiosks):
        kiosks_of_site.setdefault(world.site_of_kiosk(k), []).append(k)
    outside: dict[int, bool] = dict.fromkeys(residents, False)
    seq = dict.fromkeys(range(world.kiosks), 0)
    skew = world.clock_skew()
    offset = {k: skew.get(world.kiosk_id(k), timedelta(0)) for k in range(world.kiosks)}
    local_day: date = start.date()

    for r in sorted(quarantined):
        yield (
            start,
            "",
            QuarantineRecord(
                person_id=world.person_id(r),
                site_id=home_site[r],
                starts_on=local_day - timedelta(days=3),
                ends_on=local_day + timedelta(days=11),
                reason="returned from another city",
            ),
        )

    # Readings due later, kept ordered by true time: (true time, tiebreak, kiosk, event).
    pending: list[tuple[datetime, int, int, Event]] = []
    total = int(rate * duration.total_seconds())
    end = start + duration
    zone = ZoneInfo(world.timezone)
    counter = 0
    t = start
    mean_gap = 1.0 / rate if rate > 0 else 1.0
    while True:
        if world.day_shape:
            if rate <= 0:
                break
            t = _next_arrival(rng, t, rate, zone)
            if t >= end:
                break
        else:
            if total <= 0:
                break
            total -= 1
            t = t + timedelta(seconds=rng.expovariate(1.0) * mean_gap)
        r = rng.choice(residents)
        if r in quarantined and not outside[r] and rng.random() > world.breach_rate:
            continue  # stays home, as asked
        site = home_site[r]
        k = rng.choice(kiosks_of_site.get(site) or [0])
        direction: Direction = "in" if outside[r] else "out"
        party = [r]
        if r in household and rng.random() < world.group_outing_share:
            along = [
                m
                for m in household[r]
                if m != r and m not in quarantined and outside[m] == outside[r]
            ]
            party += rng.sample(along, min(len(along), rng.choice((1, 1, 2))))
        for i_member, member in enumerate(party):
            if i_member:
                t = t + timedelta(seconds=rng.uniform(*world.group_gap_s))
            while pending and pending[0][0] <= t:
                due, _, pk, event = pending.pop(0)
                yield due, world.kiosk_id(pk) if pk >= 0 else "", event
            outside[member] = not outside[member]
            seq[k] += 1
            counter += 1
            scan_id = f"{world.kiosk_id(k)}-s{seq[k]:08d}"
            hh = household_of.get(member)
            yield (
                t,
                world.kiosk_id(k),
                ScanEvent(
                    event_id=scan_id,
                    kiosk_id=world.kiosk_id(k),
                    site_id=world.site_of_kiosk(k),
                    direction=direction,
                    person_id=world.person_id(member),
                    pass_id=f"pass-{world.person_id(member)}",
                    pass_status="valid",
                    health_code=colour.get(member, "green"),  # type: ignore[arg-type]
                    scanned_at=t + offset[k],
                    seq=seq[k],
                    household_id=hh,
                    pass_kind="worker" if member in workers else None,
                ),
            )
            if direction == "out" and world.venues > 0 and extra.random() < world.venue_share:
                venue_id, kind = world.venue(extra.randrange(world.venues))
                venue_seq[venue_id] = venue_seq.get(venue_id, 0) + 1
                due = t + timedelta(seconds=extra.uniform(5.0, 40.0))
                checkin = ScanEvent(
                    event_id=f"checkin-sim.{venue_id}-s{venue_seq[venue_id]:08d}",
                    kiosk_id=venue_id,
                    site_id=venue_id,
                    direction="in",
                    person_id=world.person_id(member),
                    pass_id=f"pass-{world.person_id(member)}",
                    pass_status="valid",
                    health_code=colour.get(member, "green"),  # type: ignore[arg-type]
                    scanned_at=due,
                    seq=venue_seq[venue_id],
                    venue_kind=kind,
                    venue_site_id=world.site_of_kiosk(k),
                    household_id=hh,
                    pass_kind="worker" if member in workers else None,
                )
                _insert_ordered(pending, due, counter * 4 + 3, -1, checkin)
            if direction == "in" and world.visitor_share > 0:
                if extra.random() < world.visitor_share:
                    visitors += 1
                    vt = t + timedelta(seconds=extra.uniform(1.0, 20.0))
                    seq[k] += 1
                    visitor_scan = ScanEvent(
                        event_id=f"{world.kiosk_id(k)}-s{seq[k]:08d}",
                        kiosk_id=world.kiosk_id(k),
                        site_id=world.site_of_kiosk(k),
                        direction="in",
                        person_id=world.visitor_id(visitors),
                        pass_status="unknown",
                        scanned_at=vt + offset[k],
                        seq=seq[k],
                        person_kind="visitor",
                        visiting=world.person_id(member),
                    )
                    _insert_ordered(pending, vt, counter * 4 + 3, k, visitor_scan)
                    celsius = round(extra.gauss(36.3, 0.3), 2)
                    reading = TemperatureReading(
                        event_id=f"{visitor_scan.event_id}-t0",
                        kiosk_id=world.kiosk_id(k),
                        site_id=world.site_of_kiosk(k),
                        measured_at=vt + timedelta(seconds=3) + offset[k],
                        celsius=celsius,
                        method="forehead_ir",
                        person_id=visitor_scan.person_id,
                        scan_event_id=visitor_scan.event_id,
                    )
                    _insert_ordered(pending, vt + timedelta(seconds=3), counter * 4 + 3, k, reading)
            readings = _readings_for(rng, world, member in fevered, direction)
            for i, (delay, celsius) in enumerate(readings):
                due = t + timedelta(seconds=delay)
                reading = TemperatureReading(
                    event_id=f"{scan_id}-t{i}",
                    kiosk_id=world.kiosk_id(k),
                    site_id=world.site_of_kiosk(k),
                    measured_at=due + offset[k],
                    celsius=celsius,
                    method="forehead_ir",
                    person_id=world.person_id(member),
                    scan_event_id=scan_id,
                    ambient_c=round(rng.uniform(-2.0, 6.0), 1),
                )
                _insert_ordered(pending, due, counter * 4 + i, k, reading)
    for due, _, pk, event in pending:
        yield due, world.kiosk_id(pk) if pk >= 0 else "", event


def _next_arrival(rng: random.Random, t: datetime, rate: float, zone: ZoneInfo) -> datetime:
    """The next arrival after ``t`` of a Poisson process whose rate follows the local hour."""
    need = rng.expovariate(1.0)  # unit-rate work, spent at rate * weight per second
    while True:
        utc_offset = t.astimezone(zone).utcoffset() or timedelta(0)
        local_s = t.timestamp() + utc_offset.total_seconds()
        slot = int(local_s // _SLOT_S)
        left = (slot + 1) * _SLOT_S - local_s
        speed = rate * _DAY_SHAPE[slot % len(_DAY_SHAPE)]
        if need <= speed * left:
            return t + timedelta(seconds=need / speed)
        need -= speed * left
        t = t + timedelta(seconds=left)


def _through_outages(
    timeline: Iterator[tuple[datetime, str, Event]], outages: list[KioskOutage]
) -> Iterator[Event]:
    """Hold each offline kiosk's events and release them once its outage is over."""
    spools: list[list[Event]] = [[] for _ in outages]
    for at, kiosk_id, event in timeline:
        for i, outage in enumerate(outages):
            if spools[i] and at >= outage.ends_at:
                yield from spools[i]
                spools[i] = []
        for i, outage in enumerate(outages):
            if kiosk_id == outage.kiosk_id and outage.starts_at <= at < outage.ends_at:
                spools[i].append(event)
                break
        else:
            yield event
    for spool in spools:
        yield from spool


def _readings_for(
    rng: random.Random, world: GateWorld, fevered: bool, direction: str
) -> list[tuple[float, float]]:
    """(seconds after the scan, celsius) for one passage's readings."""
    if rng.random() < world.sensor_error_rate:
        return [(rng.uniform(2, 8), round(rng.choice([rng.uniform(28, 33.9), 45.5]), 2))]
    base = rng.gauss(36.5, 0.25)
    if direction == "in":
        base -= rng.uniform(0.0, 0.6)  # cold street: forehead reads low
    if fevered:
        first = round(rng.uniform(37.4, 38.6), 2)
        second = round(first + rng.uniform(-0.3, 0.2), 2)
        return [(rng.uniform(2, 8), first), (rng.uniform(*world.remeasure_s), second)]
    return [(rng.uniform(2, 8), round(base, 2))]


def _insert_ordered(
    pending: list[tuple[datetime, int, int, Event]],
    at: datetime,
    tiebreak: int,
    kiosk: int,
    event: Event,
) -> None:
    item = (at, tiebreak, kiosk, event)
    lo, hi = 0, len(pending)
    while lo < hi:
        mid = (lo + hi) // 2
        if pending[mid][:2] <= item[:2]:
            lo = mid + 1
        else:
            hi = mid
    pending.insert(lo, item)

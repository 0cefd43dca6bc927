"""Synthetic gates: a deterministic stream of scans, readings and quarantine orders.

The generator is pure (a seed and a start time in, events out, in event-time
order) so the demo, load tests and benchmarks all draw from the same, repeatable
picture of a day at the gates:

* residents live at one site (community) and mostly pass its gates;
* a paired forehead reading follows each scan a few seconds later, colder on
  the way in (people walk in from a winter street);
* a few residents run a fever and are re-measured at the gate;
* a few readings are sensor errors (outside 34–42 °C);
* some residents are under home quarantine; a few of them walk out anyway.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from scantrail.contract import Direction, Event, QuarantineRecord, ScanEvent, TemperatureReading


@dataclass(frozen=True)
class GateWorld:
    """The population and gates being simulated."""

    kiosks: int = 4
    residents: int = 200
    seed: int = 1
    fever_share: float = 0.02  # residents who run a temperature
    sensor_error_rate: float = 0.003  # readings out of range
    quarantine_share: float = 0.05  # residents under home quarantine
    breach_rate: float = 0.2  # of quarantined residents' passages, those that happen anyway
    # Seconds after a hot reading until the re-measure (after warming up indoors).
    remeasure_s: tuple[float, float] = (240.0, 600.0)

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


def simulate_events(
    world: GateWorld, start: datetime, rate: float, duration: timedelta
) -> Iterator[Event]:
    """Yield quarantine orders first, then scans and readings in event-time order.

    ``rate`` is scans per second over all gates (readings come on top).
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    rng = random.Random(world.seed)
    residents = list(range(world.residents))
    fevered = set(rng.sample(residents, k=int(world.residents * world.fever_share)))
    quarantined = set(rng.sample(residents, k=int(world.residents * world.quarantine_share)))
    home_site = {r: f"site-{r % world.sites:03d}" for r in residents}
    kiosks_of_site: dict[str, list[int]] = {}
    for k in range(world.kiosks):
        kiosks_of_site.setdefault(world.site_of_kiosk(k), []).append(k)
    outside: dict[int, bool] = dict.fromkeys(residents, False)
    seq = dict.fromkeys(range(world.kiosks), 0)
    local_day: date = start.date()

    for r in sorted(quarantined):
        yield QuarantineRecord(
            person_id=world.person_id(r),
            site_id=home_site[r],
            starts_on=local_day - timedelta(days=3),
            ends_on=local_day + timedelta(days=11),
            reason="returned from another city",
        )

    pending: list[tuple[datetime, int, Event]] = []  # readings due later, kept ordered
    total = int(rate * duration.total_seconds())
    counter = 0
    t = start
    mean_gap = 1.0 / rate if rate > 0 else 1.0
    for _ in range(total):
        t = t + timedelta(seconds=rng.expovariate(1.0) * mean_gap)
        while pending and pending[0][0] <= t:
            yield pending.pop(0)[2]
        r = rng.choice(residents)
        if r in quarantined and not outside[r] and rng.random() > world.breach_rate:
            continue  # stays home, as asked
        site = home_site[r]
        k = rng.choice(kiosks_of_site.get(site) or [0])
        direction: Direction = "in" if outside[r] else "out"
        outside[r] = not outside[r]
        seq[k] += 1
        counter += 1
        scan_id = f"{world.kiosk_id(k)}-s{seq[k]:08d}"
        yield ScanEvent(
            event_id=scan_id,
            kiosk_id=world.kiosk_id(k),
            site_id=world.site_of_kiosk(k),
            direction=direction,
            person_id=world.person_id(r),
            pass_id=f"pass-{world.person_id(r)}",
            pass_status="valid",
            health_code="green",
            scanned_at=t,
            seq=seq[k],
        )
        readings = _readings_for(rng, world, r in fevered, direction)
        for i, (delay, celsius) in enumerate(readings):
            reading = TemperatureReading(
                event_id=f"{scan_id}-t{i}",
                kiosk_id=world.kiosk_id(k),
                site_id=world.site_of_kiosk(k),
                measured_at=t + timedelta(seconds=delay),
                celsius=celsius,
                method="forehead_ir",
                person_id=world.person_id(r),
                scan_event_id=scan_id,
                ambient_c=round(rng.uniform(-2.0, 6.0), 1),
            )
            _insert_ordered(pending, reading.measured_at, counter * 4 + i, reading)
    for _, _, event in pending:
        yield event


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
    pending: list[tuple[datetime, int, Event]], at: datetime, tiebreak: int, event: Event
) -> None:
    item = (at, tiebreak, event)
    lo, hi = 0, len(pending)
    while lo < hi:
        mid = (lo + hi) // 2
        if pending[mid][:2] <= item[:2]:
            lo = mid + 1
        else:
            hi = mid
    pending.insert(lo, item)

"""The garbage collector: its share of the worker's time on ``/stats``, and kept small.

A profiler charges a collection to whatever line allocated when it began
(py-spy showed an empty ``Trail()`` costing more than a RocksDB read), so the
collector's cost is only visible when it is measured where it happens:
:class:`CollectorClock` brackets every collection through ``gc.callbacks``.

Measured so (2026-12-05, 60,000 readings and their scans drained): the
collector took 10.3 s of a 72 s drain, mostly 34 full collections of about
231 ms, each walking the worker's state caches. Two thresholds keep it
small (:func:`collector_thresholds`; both are worker settings):

* young collections every 100,000 new objects instead of 700
  (``SCANTRAIL_WORKER_GC_YOUNG_THRESHOLD``), so the objects of the batches in
  flight die young instead of being walked again and promoted;
* a full collection after 100 middle ones instead of 10
  (``SCANTRAIL_WORKER_GC_FULL_EVERY``).

On 200,000 readings and their scans (the same bench phase, run back to back,
2026-12-05 14:10-14:21): 700 and 10 spent 31.8 s in the collector (52 full
collections, 26.1 s) at 2,219 inputs/s; 10,000 and 10 spent 11.8 s (17 full,
5.8 s) at 2,676 inputs/s; 10,000 and 100 spent 5.9 s (11 full, 0.5 s).

On 1,000,000 readings and their scans (2026-12-06) the young and middle
collections were the cost: 10,000 and 100 spent 46 to 48 s in the
collector in three drains (young 21 to 25 s, middle 12 to 16 s, two full
collections of about 3 s), each young collection about 10 ms for 10,000
new objects, because the objects of the batches in flight (events, decoded
records, staged writes) outlive several young collections and are walked
in each. No cyclic garbage was found (``gc.DEBUG_SAVEALL`` for 5 s of a
drain kept nothing): the time is all walking live objects. 100,000 and 100
spent 21.8 s (125 young collections, 14.9 s; 11 middle, 7.0 s; no full
one) and drained at 4,343 inputs/s against 4,018 to 4,437 for 10,000.
A young collection then takes about 0.1 s and a middle one about 0.6 s,
at most a few a minute at peak: the latency phase (1,000 + 1,000/s) made
3 young collections in its 60 s.

Freezing what survives each full collection (``gc.freeze()``) cut the
collector to 2.9 s, but it is not used: faust closes a revoked partition's
RocksDB by dropping it and calling ``gc.collect()``, which cannot free a
frozen object, and with the freeze a worker of two in one group hung opening
its partitions at a rebalance (tests/integration/processors/test_two_workers.py,
2 failures in 3 runs).
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from typing import Any


def young_objects_before_collection(threshold: int) -> None:
    """Python's first threshold; the older generations keep their defaults (10 and 10).

    At the default of 700 the young collection ran every few events and
    promoted the objects of the batch in hand (events, records, states) toward
    the full collections.
    """
    collector_thresholds(young=threshold)


def collector_thresholds(young: int, full_every: int | None = None) -> None:
    """Set the young threshold and, if given, the middle collections between two full ones.

    A full collection walks every state the worker caches, and its cost grows
    with them; it only frees cycles that outlived two younger collections,
    which a worker whose states are freed by reference counting rarely makes.
    Python's 10 middle collections per full one made 46 full collections of
    about 400 ms in a 200,000-reading drain (2026-12-05), a sixth of it.
    Python still skips a full collection while the survivors since the last
    one are under a quarter of the objects it would walk.
    """
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old if full_every is None else full_every)


class CollectorClock:
    """Adds each collection's milliseconds and count, by generation, to ``counts``."""

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts
        self._started = 0.0
        self._seconds = [0.0, 0.0, 0.0]

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info.get("generation", 0)
        self._seconds[generation] += time.perf_counter() - self._started
        self.counts[f"gc_gen{generation}_ms"] = int(self._seconds[generation] * 1000)
        self.counts[f"gc_gen{generation}_collections"] += 1

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)

"""The garbage collector: its share of the worker's time on ``/stats``, and kept small.

A profiler charges a collection to whatever line allocated when it began
(py-spy showed an empty ``Trail()`` costing more than a RocksDB read), so the
collector's cost is only visible when it is measured where it happens:
:class:`CollectorClock` brackets every collection through ``gc.callbacks``.

Measured so (2026-12-05, 60,000 readings and their scans drained): the
collector took 10.3 s of a 72 s drain, mostly 34 full collections of about
231 ms, each walking the worker's state caches. Young collections every
10,000 new objects instead of 700 (:func:`young_objects_before_collection`,
``SCANTRAIL_WORKER_GC_YOUNG_THRESHOLD``; the default is still Python's 700)
let the objects of the batch in hand die young instead of being promoted.

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
    _, middle, old = gc.get_threshold()
    gc.set_threshold(threshold, middle, old)


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

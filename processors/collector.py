"""The garbage collector: its share of the worker's time on ``/stats``, and kept small.

A profiler charges a collection to whatever line allocated when it began
(py-spy showed an empty ``Trail()`` costing more than a RocksDB read), so the
collector's cost is only visible when it is measured where it happens:
:class:`CollectorClock` brackets every collection through ``gc.callbacks``.

Measured so (2026-12-05, 60,000 readings and their scans drained): 34 full
collections took 7.9 s, about a tenth of the drain. Each one walks every
object the worker holds, and the worker holds many on purpose: its caches of
person states, trails and site slots (:class:`processors.live_state.StateTable`).
:class:`SurvivorFreeze` moves what survived a full collection out of the
collector's sight (``gc.freeze()``), so the next one walks only what is new
since. Objects frozen so are still freed by their reference counts when a
cache lets go of them (the states hold no cycles); only a cycle that dies
while frozen waits, until ``gc.unfreeze()`` every ``unfreeze_s`` lets one full
collection look at everything again.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Callable
from typing import Any


def young_objects_before_collection(threshold: int) -> None:
    """Python's first threshold; the older generations keep their defaults (10 and 10).

    At the default of 700 the young collection ran every few events and
    promoted the objects of the batch in hand (events, records, states) toward
    the full collections: with 10,000, the same drain spent 2.9 s in the
    collector instead of 10.3 s (with :class:`SurvivorFreeze`).
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


class SurvivorFreeze:
    """Freezes the survivors of each full collection; unfreezes every ``unfreeze_s``.

    Call :meth:`tick` from a timer: the freezing happens there, on the event
    loop, never inside a collection.
    """

    def __init__(
        self,
        counts: Counter[str],
        unfreeze_s: float,
        clock: Callable[[], float] = time.monotonic,
        full_collections: Callable[[], int] = lambda: gc.get_stats()[2]["collections"],
    ) -> None:
        self.counts = counts
        self.unfreeze_s = unfreeze_s
        self.clock = clock
        self.full_collections = full_collections
        self._seen = full_collections()
        self._unfrozen_at = clock()

    def tick(self) -> str | None:
        """Freeze after a full collection, unfreeze when due; what it did, if anything."""
        now = self.clock()
        if now - self._unfrozen_at >= self.unfreeze_s:
            self._unfrozen_at = now
            self._seen = self.full_collections()
            gc.unfreeze()
            self.counts["gc_unfreezes"] += 1
            return "unfrozen"
        done = self.full_collections()
        if done == self._seen:
            return None
        self._seen = done
        gc.freeze()
        self.counts["gc_freezes"] += 1
        self.counts["gc_frozen_objects"] = gc.get_freeze_count()
        return "frozen"

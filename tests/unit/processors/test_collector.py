"""The collector's time, counted per generation for /stats (processors.collector)."""

from __future__ import annotations

import gc
from collections import Counter

from processors.collector import CollectorClock, SurvivorFreeze, young_objects_before_collection


def test_every_collection_is_counted_and_timed_by_its_generation() -> None:
    counts: Counter[str] = Counter()
    clock = CollectorClock(counts)
    clock.install()
    clock.install()  # once only
    gc.disable()  # only the collections below
    try:
        garbage = [[i] for i in range(200_000)]
        for item in garbage:
            item.append(item)  # cycles: only the collector frees them
        del garbage, item
        gc.collect(2)
        gc.collect(0)
    finally:
        clock.remove()
        gc.enable()
    assert counts["gc_gen2_collections"] == 1
    assert counts["gc_gen0_collections"] >= 1
    assert counts["gc_gen2_ms"] >= 1  # freeing 200,000 cycles takes milliseconds
    gc.collect(2)
    assert counts["gc_gen2_collections"] == 1  # removed: no longer counted


def test_survivors_of_a_full_collection_are_frozen_and_unfrozen_when_due() -> None:
    counts: Counter[str] = Counter()
    now = [0.0]
    full = [5]
    survivors = SurvivorFreeze(
        counts, unfreeze_s=600, clock=lambda: now[0], full_collections=lambda: full[0]
    )
    kept = [[i] for i in range(1000)]  # tracked objects alive across the freeze
    try:
        assert survivors.tick() is None  # no full collection since it started
        full[0] = 6
        assert survivors.tick() == "frozen"
        assert gc.get_freeze_count() >= len(kept)
        assert survivors.tick() is None  # the same collection is not frozen twice
        now[0] = 600.0
        assert survivors.tick() == "unfrozen"
        assert gc.get_freeze_count() == 0
        full[0] = 7
        now[0] = 601.0
        assert survivors.tick() == "frozen"
    finally:
        gc.unfreeze()
    assert counts["gc_freezes"] == 2 and counts["gc_unfreezes"] == 1
    assert counts["gc_frozen_objects"] >= len(kept)


def test_the_young_threshold_leaves_the_older_generations_alone() -> None:
    before = gc.get_threshold()
    try:
        young_objects_before_collection(10_000)
        assert gc.get_threshold() == (10_000, before[1], before[2])
    finally:
        gc.set_threshold(*before)

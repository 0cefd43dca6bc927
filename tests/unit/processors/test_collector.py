"""The collector's time, counted per generation for /stats (processors.collector)."""

from __future__ import annotations

import gc
from collections import Counter

from processors.collector import (
    CollectorClock,
    collector_thresholds,
    young_objects_before_collection,
)


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


def test_the_young_threshold_leaves_the_older_generations_alone() -> None:
    before = gc.get_threshold()
    try:
        young_objects_before_collection(10_000)
        assert gc.get_threshold() == (10_000, before[1], before[2])
    finally:
        gc.set_threshold(*before)


def test_the_full_collections_are_spaced_only_when_asked() -> None:
    before = gc.get_threshold()
    try:
        collector_thresholds(10_000, 100)
        assert gc.get_threshold() == (10_000, before[1], 100)
        collector_thresholds(5_000)
        assert gc.get_threshold() == (5_000, before[1], 100)
    finally:
        gc.set_threshold(*before)

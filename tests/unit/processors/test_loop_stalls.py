"""The event loop's stalls as /stats counts them."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from processors.loop_stalls import note_lateness, watch


def test_lateness_keeps_the_longest_stall_and_counts_the_long_ones() -> None:
    counts: Counter[str] = Counter()
    for late_s in (0.002, 0.15, 1.2, 0.4, 0.0):
        note_lateness(counts, late_s)
    assert counts == {
        "loop_stall_max_ms": 1200,
        "loop_stalls_over_100ms": 3,
        "loop_stalls_over_1s": 1,
    }


def test_the_gauge_is_there_from_the_first_wake_up() -> None:
    counts: Counter[str] = Counter()
    note_lateness(counts, 0.0)
    assert counts == {"loop_stall_max_ms": 0}


def test_the_watcher_sees_a_callback_that_holds_the_loop() -> None:
    counts: Counter[str] = Counter()

    async def main() -> None:
        watcher = asyncio.ensure_future(watch(counts, tick_s=0.01))
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # a batch judged without yielding
        await asyncio.sleep(0.05)
        watcher.cancel()

    asyncio.run(main())
    assert 250 <= counts["loop_stall_max_ms"] < 1000, counts
    assert counts["loop_stalls_over_100ms"] == 1 and counts["loop_stalls_over_1s"] == 0

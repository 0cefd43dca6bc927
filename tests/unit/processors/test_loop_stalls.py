"""The event loop's stalls as /stats counts them."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

from processors.loop_stalls import Clocks, loop_load, note_lateness, watch


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


def spin(seconds: float) -> None:
    """Use ``seconds`` of this thread's CPU (CPU, not wall time: CI machines are shared)."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


def test_loop_load_counts_the_calling_threads_cpu_apart_from_the_others() -> None:
    spin(0.1)  # before the start: not counted
    started = Clocks.now()
    before = loop_load(started)
    assert before["loop_thread_cpu_ms"] < 50 and before["uptime_ms"] < 50, before
    other = threading.Thread(target=spin, args=(0.3,))
    other.start()
    other.join()  # another thread's CPU: the process's, not this thread's
    after_other = loop_load(started)
    spin(0.3)  # this thread's own
    after_own = loop_load(started)
    assert after_other["loop_thread_cpu_ms"] - before["loop_thread_cpu_ms"] < 100
    assert after_other["process_cpu_ms"] - before["process_cpu_ms"] >= 200
    assert after_own["loop_thread_cpu_ms"] - after_other["loop_thread_cpu_ms"] >= 200
    assert after_own["uptime_ms"] - before["uptime_ms"] >= 550
    # A thread cannot use more CPU than the time that passed.
    assert after_own["loop_thread_cpu_ms"] <= after_own["uptime_ms"] + 1, after_own

"""How long the worker's event loop goes without answering: on ``/stats`` for operators.

Every stage, the web views (``/ready``, ``/stats``, ``/trace``), faust's
commit timer and the watermark ticks share one event loop, and a stage judges
a batch without yielding it. A batch of the internal hops can hold thousands
of records per message, so in a backlog one batch can keep everything else
waiting for seconds: a readiness probe times out, alerts of live readings
wait behind a kiosk's catch-up. Nothing showed it; these counts do.

A watcher sleeps :data:`TICK_S` at a time and counts how much later than
asked it woke (:func:`note_lateness`): ``loop_stall_max_ms`` (the longest
since start), ``loop_stalls_over_100ms`` and ``loop_stalls_over_1s``.

A stall says the loop was held, not whether the worker has run out of
interpreter: every stage runs on the loop's one thread, so a worker whose
loop thread is busy all the time can go no faster in that process, however
idle the machine's other cores. :func:`loop_load` gives what ``/stats`` adds
for that: ``loop_thread_cpu_ms`` (CPU of the thread that asked, the loop's),
``process_cpu_ms`` (all threads: librdkafka's, RocksDB's, faust's consumer
thread) and ``uptime_ms``, all since the worker was built. Two reads a minute
apart give the loop thread's busy share; near 1.0 the way on is another
process in the group, not more CPU (in the 1,000,000-reading bench drain of
2026-12-07 it was 0.98 throughout, with the machine's second core half idle).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from typing import NamedTuple

TICK_S = 0.05
"""The watcher's sleep: short enough to see a stall a tenth of a second long."""


def note_lateness(counts: MutableMapping[str, int], late_s: float) -> None:
    """Count one wake-up that came ``late_s`` after it was due."""
    late_ms = round(late_s * 1000)
    counts["loop_stall_max_ms"] = max(late_ms, counts.get("loop_stall_max_ms", 0))
    if late_ms >= 100:
        counts["loop_stalls_over_100ms"] = counts.get("loop_stalls_over_100ms", 0) + 1
    if late_ms >= 1000:
        counts["loop_stalls_over_1s"] = counts.get("loop_stalls_over_1s", 0) + 1


async def watch(counts: MutableMapping[str, int], tick_s: float = TICK_S) -> None:
    """Run for ever: sleep ``tick_s``, note how late the wake-up was."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(tick_s)
        note_lateness(counts, max(0.0, loop.time() - asked - tick_s))


class Clocks(NamedTuple):
    """The wall clock and the CPU clocks of one thread and of the process, read together."""

    wall: float
    thread_cpu: float
    process_cpu: float

    @classmethod
    def now(cls) -> Clocks:
        return cls(time.monotonic(), time.thread_time(), time.process_time())


def loop_load(started: Clocks) -> dict[str, int]:
    """Milliseconds since ``started``: CPU of the calling thread, of the process, and wall.

    ``started`` is read on the loop's thread when the worker is built, and this
    is called on it too (a web view's handler runs there), so the thread's CPU
    can never run ahead of the uptime: the imports before the start are left out.
    """
    now = Clocks.now()
    return {
        "loop_thread_cpu_ms": round((now.thread_cpu - started.thread_cpu) * 1000),
        "process_cpu_ms": round((now.process_cpu - started.process_cpu) * 1000),
        "uptime_ms": round((now.wall - started.wall) * 1000),
    }

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
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping

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

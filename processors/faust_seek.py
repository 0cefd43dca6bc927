"""Seeks run on the consumer's own thread, never beside its fetch.

faust runs aiokafka in a thread of its own and calls it through
``call_thread`` (positions, commits, ``seek_to_committed``), except for one
call: ``Consumer._seek`` calls aiokafka's ``seek`` from the worker's main
thread. aiokafka's seek drops the partition's buffered fetch
(``del Fetcher._records[tp]``) while the consumer thread may be in
``Fetcher.fetched_records``, between listing the buffered partitions and
reading one of them. It then raises ``KeyError`` for that partition, the
Fetcher service crashes and the worker stops. The bench of 2026-12-05 21:04
lost one of its two workers this way, 2 s after the second had joined, while
the worker sought partitions with nothing committed back to their first
offsets (:mod:`processors.faust_offsets` seeks there, and its ``HeadWatch``
seeks back lost records, both from the main thread).

:func:`install` routes faust's ``_seek`` through ``call_thread``, as faust
routes every other consumer call, so the seek runs on the consumer thread's
event loop between two of its steps and never inside ``fetched_records``.
A seek asked for on the consumer thread itself runs at once (queueing it
behind itself would wait forever).
"""

from __future__ import annotations

import asyncio
from typing import Any


def on_consumer_thread(thread: Any) -> bool:
    """Whether the running event loop is the consumer thread's own."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return False
    return running is getattr(thread, "thread_loop", None)


async def seek(consumer: Any, partition: Any, offset: int) -> None:
    """faust's ``Consumer._seek``, run on the consumer thread."""
    thread = consumer._thread
    if on_consumer_thread(thread):
        thread.seek(partition, offset)
        return
    await thread.call_thread(thread.seek, partition, offset)


def install() -> None:
    """Replace the aiokafka driver's ``Consumer._seek``, once, process-wide."""
    from faust.transport.drivers.aiokafka import Consumer

    Consumer._seek = seek

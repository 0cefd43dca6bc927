"""faust's seeks run on the consumer's own thread (processors.faust_seek).

The thread is mode's ``QueueServiceThread``, the class faust's aiokafka
consumer thread is built on, started for real: its ``call_thread`` is what
the seek now goes through.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from mode.threads import QueueServiceThread

from processors import faust_seek


class ConsumerThread(QueueServiceThread):
    """Records which thread each seek ran on, as aiokafka's seek would run there."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seeks: list[tuple[Any, int, str]] = []

    def seek(self, partition: Any, offset: int) -> None:
        self.seeks.append((partition, offset, threading.current_thread().name))


class Consumer:
    def __init__(self, thread: ConsumerThread) -> None:
        self._thread = thread


def test_a_seek_from_the_main_thread_runs_on_the_consumer_thread() -> None:
    async def scenario() -> list[tuple[Any, int, str]]:
        thread = ConsumerThread()
        await thread.start()
        try:
            await faust_seek.seek(Consumer(thread), "by-person[0]", 7)
            return thread.seeks
        finally:
            await thread.stop()

    seeks = asyncio.run(scenario())
    assert len(seeks) == 1
    partition, offset, ran_on = seeks[0]
    assert (partition, offset) == ("by-person[0]", 7)
    assert ran_on != threading.current_thread().name  # not the caller's (main) thread


def test_a_seek_on_the_consumer_thread_itself_runs_at_once() -> None:
    async def scenario() -> list[tuple[Any, int, str]]:
        thread = ConsumerThread()
        await thread.start()
        try:
            # Asked for from the consumer thread's own loop: queueing it would wait forever.
            future = asyncio.run_coroutine_threadsafe(
                asyncio.wait_for(faust_seek.seek(Consumer(thread), "t[1]", 3), 5),
                thread.thread_loop,
            )
            await asyncio.wrap_future(future)
            return thread.seeks
        finally:
            await thread.stop()

    seeks = asyncio.run(scenario())
    assert [(p, o) for p, o, _ in seeks] == [("t[1]", 3)]


def test_outside_any_event_loop_is_not_the_consumer_thread() -> None:
    assert faust_seek.on_consumer_thread(object()) is False


def test_install_replaces_fausts_seek() -> None:
    from faust.transport.drivers.aiokafka import Consumer as FaustConsumer

    faust_seek.install()
    assert FaustConsumer._seek is faust_seek.seek

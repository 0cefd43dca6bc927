"""Each fetched message handed to the agents without four tasks, when the handing need not wait.

faust's fetch loop gives every message to the conductor through
``Consumer.wait_first(callback(message), suspend_flow.wait())``, so that a
delivery blocked on a full stream queue is abandoned when a rebalance
suspends the flow or the consumer stops. Per message that is four tasks
(the delivery, the suspension, the consumer's stop and its crash), an
``asyncio.wait`` and three cancellations. A py-spy profile of the worker
reading its sources (2026-12-05) put about a quarter of the main thread
there: more than the kiosk rules took.

Nearly every delivery finishes without waiting: the conductor decodes the
message and puts it on stream queues with room, and nothing it awaits is
blocked. :func:`install` therefore runs the delivery's coroutine one step
in place. If that step finishes it, the message is delivered exactly as the
first step of faust's task would have delivered it (faust's task runs that
same step before ``asyncio.wait`` can return, whatever else is set). Only a
delivery that has to wait (a full queue, flow control, the producer's
buffer) goes on through faust's ``wait_first`` as before: its remaining
steps run in :func:`resume`, which drives the started coroutine as a task
would, so a suspension or a stop still abandons it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine
from typing import Any


async def resume(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    """Finish a coroutine already stepped once, which yielded ``waiting_on``.

    As an asyncio task would: wait for the future it yielded (``None`` is a
    bare yield, as ``asyncio.sleep(0)`` gives), then let it read the
    future's outcome itself; a cancellation of this coroutine that did not
    come through that future is thrown into it.
    """
    while True:
        thrown: BaseException | None = None
        try:
            if waiting_on is None:
                await asyncio.sleep(0)
            else:
                waiting_on._asyncio_future_blocking = False  # taken over, as a task does
                await waiting_on
        except BaseException as exc:  # handed to the coroutine either way
            if not _outcome_of(waiting_on, exc):
                thrown = exc
        try:
            waiting_on = coro.send(None) if thrown is None else coro.throw(thrown)
        except StopIteration as done:
            return done.value


def _outcome_of(future: Any, exc: BaseException) -> bool:
    """Whether ``exc`` is the future's own outcome (the coroutine reads it when sent ``None``)."""
    if future is None or not future.done():
        return False
    return future.cancelled() if isinstance(exc, asyncio.CancelledError) else True


def install() -> None:
    """Give faust's ``Consumer.wait_first`` the in-place first step, once, process-wide."""
    from faust.transport.consumer import Consumer
    from mode.services import WaitResults

    original = Consumer.wait_first
    if getattr(original, "_scantrail_in_place", False):
        return

    async def wait_first(self: Any, *coros: Any, timeout: Any = None) -> Any:
        if len(coros) != 2 or timeout is not None or not inspect.iscoroutine(coros[0]):
            return await original(self, *coros, timeout=timeout)
        delivery, suspended = coros
        try:
            waiting_on = delivery.send(None)
        except StopIteration as done:
            _close(suspended)
            return WaitResults([delivery], [done.value], False)
        except BaseException:
            _close(suspended)
            raise
        return await original(self, resume(delivery, waiting_on), suspended)

    wait_first._scantrail_in_place = True  # type: ignore[attr-defined]
    Consumer.wait_first = wait_first


def _close(waitable: Any) -> None:
    """A coroutine that will never run is closed, so Python does not warn it was never awaited."""
    if inspect.iscoroutine(waitable):
        waitable.close()

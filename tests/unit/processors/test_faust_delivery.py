"""Deliveries stepped in place, and the rest of a delivery that must wait (processors.faust_delivery)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from mode import Service

from processors import faust_delivery

faust_delivery.install()


async def _deliver(log: list[str], gate: asyncio.Future[Any] | None = None) -> str:
    log.append("started")
    try:
        if gate is not None:
            await gate
        return "delivered"
    finally:
        log.append("finished")


def test_a_delivery_that_never_waits_is_done_in_place_without_a_task() -> None:
    async def scenario() -> tuple[Any, int]:
        log: list[str] = []
        suspended = asyncio.Event()
        before = len(asyncio.all_tasks())
        result = await Consumer.wait_first(Service(), _deliver(log), suspended.wait())
        return result, len(asyncio.all_tasks()) - before, log

    result, new_tasks, log = asyncio.run(scenario())
    assert result.results == ["delivered"] and not result.stopped
    assert new_tasks == 0
    assert log == ["started", "finished"]


def test_a_delivery_that_waits_is_finished_by_faust_with_its_outcome() -> None:
    async def scenario() -> Any:
        log: list[str] = []
        gate: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, gate.set_result, None)
        result = await Consumer.wait_first(Service(), _deliver(log, gate), asyncio.Event().wait())
        return result.results, log

    results, log = asyncio.run(scenario())
    assert results == ["delivered"]
    assert log == ["started", "finished"]


def test_a_waiting_delivery_is_abandoned_when_the_flow_is_suspended() -> None:
    """As faust's own ``wait_first`` does: the suspension wins, the delivery is cancelled."""

    async def scenario() -> tuple[Any, list[str]]:
        log: list[str] = []
        gate: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        suspended = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, suspended.set)
        result = await Consumer.wait_first(Service(), _deliver(log, gate), suspended.wait())
        await asyncio.sleep(0)  # let the cancelled delivery run its finally
        return result.results, log, gate.cancelled()

    results, log, gate_cancelled = asyncio.run(scenario())
    assert results == [True]  # only the suspension's wait finished
    assert log == ["started", "finished"]
    assert gate_cancelled


def test_an_error_of_a_delivery_reaches_the_fetch_loop_either_way() -> None:
    async def fails_at_once() -> None:
        raise ValueError("bad at once")

    async def fails_later(gate: asyncio.Future[Any]) -> None:
        await gate
        raise ValueError("bad later")

    async def scenario() -> None:
        with pytest.raises(ValueError, match="bad at once"):
            await Consumer.wait_first(Service(), fails_at_once(), asyncio.Event().wait())
        gate: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, gate.set_result, None)
        with pytest.raises(ValueError, match="bad later"):
            await Consumer.wait_first(Service(), fails_later(gate), asyncio.Event().wait())

    asyncio.run(scenario())


def test_resume_passes_a_future_s_exception_and_a_cancellation_into_the_coroutine() -> None:
    async def reads(gate: asyncio.Future[Any], log: list[str]) -> str:
        try:
            await gate
        except KeyError:
            log.append("read the error")
        await asyncio.sleep(0)  # a bare yield after the future
        await asyncio.sleep(3600)
        return "never"

    async def scenario() -> list[str]:
        log: list[str] = []
        gate: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        coro = reads(gate, log)
        task = asyncio.ensure_future(faust_delivery.resume(coro, coro.send(None)))
        gate.set_exception(KeyError("k"))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        log.append(f"closed={coro.cr_frame is None}")
        return log

    assert asyncio.run(scenario()) == ["read the error", "closed=True"]


def test_install_is_idempotent() -> None:
    patched = Consumer.wait_first
    faust_delivery.install()
    assert Consumer.wait_first is patched

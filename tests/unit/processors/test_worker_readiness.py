"""/ready: a worker is ready only with its tables restored and no rebalance running."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from processors.worker import readiness


def app_state(*, recovered: bool, in_recovery: bool, rebalancing: bool) -> Any:
    completed = asyncio.Event()
    if recovered:
        completed.set()
    recovery = SimpleNamespace(completed=completed)
    return SimpleNamespace(
        tables=SimpleNamespace(recovery=recovery), in_recovery=in_recovery, rebalancing=rebalancing
    )


@pytest.mark.parametrize(
    ("recovered", "in_recovery", "rebalancing", "ready"),
    [
        (True, False, False, True),
        (False, False, False, False),  # started, tables not restored yet
        (True, True, False, False),  # restoring again after a later assignment
        (True, False, True, False),  # a rebalance is moving partitions
    ],
)
def test_ready_only_when_restored_and_settled(
    recovered: bool, in_recovery: bool, rebalancing: bool, ready: bool
) -> None:
    state = readiness(
        app_state(recovered=recovered, in_recovery=in_recovery, rebalancing=rebalancing)
    )
    assert state["ready"] is ready
    assert state["tables_recovered"] is recovered

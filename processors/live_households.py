"""The household outing quota, live: ``out`` scans re-keyed by household, one state each.

Scans are keyed by person, but the rule counts the persons of one household,
so the gate agent hands every scan the rule looks at
(:func:`processors.screening.counts_for_outing`) to :meth:`LiveHouseholds.forward_scan`,
which forwards it to ``<app>-by-household`` (keyed by ``household_id``). The
household agent judges it with :func:`processors.screening.judge_outing` over
``HouseholdState[household_id]`` in a changelogged table, like every other
shard: alerts are acknowledged before the state that remembers them is
written, and a re-delivered scan is found in the window and ignored.

Members' scans reach the household's partition in the order they arrive, not
strictly in event time (they come from different person partitions); the
rule counts a late scan for the later ones it falls before, and each scan
raises its alert at most once (see :func:`processors.screening.judge_outing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from processors.agents import Outcomes
from processors.app import Topics
from processors.batching import Batching, Effects, one_line, run_batched, split_records
from processors.live import ScanHook
from processors.live_state import StateTable, partition_of
from processors.screening import counts_for_outing, judge_outing
from processors.screening_policy import PolicyLike
from processors.screening_state import HouseholdState
from scantrail import contract
from scantrail.contract import decode_as


@dataclass(frozen=True)
class LiveHouseholds:
    forward_scan: ScanHook
    caches: tuple[StateTable, ...]


def install_households(
    app: faust.App,
    topics: Topics,
    policy: PolicyLike,
    outcomes: Outcomes,
    partitions: int,
    batching: Batching,
) -> LiveHouseholds:
    by_household = app.topic(
        f"{app.conf.id}-by-household",
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        internal=True,
    )
    table = app.Table("household-state", default=None, key_type=bytes, partitions=partitions)
    households = StateTable(table, HouseholdState, limit=100_000)

    @app.on_partitions_assigned.connect
    async def forget_households(sender: Any, assigned: Any, **kwargs: Any) -> None:
        households.forget()

    def forward_scan(event: Any, effects: Effects, scan: contract.ScanEvent) -> None:
        if scan.household_id is None or not counts_for_outing(scan, policy):
            return
        record = one_line(event.message.value, lambda: contract.encode(scan))
        target = partition_of(scan.household_id.encode(), partitions)
        effects.forward(by_household, target, record)

    def judge_household(event: Any, effects: Effects) -> None:
        for record in split_records(event.value):
            scan = decode_as(record, contract.ScanEvent)
            if scan.household_id is None:
                continue
            state = households.load(scan.household_id)
            before = len(state.outings), len(state.alerted)
            alerts = judge_outing(state, scan, policy)
            effects.alert(alerts)
            outcomes.counts["outing"] += 1
            if alerts or (len(state.outings), len(state.alerted)) != before:
                households.save(effects, event, scan.household_id, state)

    @app.agent(by_household, name="screen-households")
    async def screen_households(stream: Any) -> None:
        await run_batched(
            stream,
            judge_household,
            topics,
            outcomes,
            "screen-households",
            batching,
            trim=(households,),
        )

    return LiveHouseholds(forward_scan, (households,))

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


class HouseholdStage:
    """``screen-households``: out scans, forwarded by household, judged against its window."""

    name = "screen-households"

    def __init__(
        self, app: faust.App, policy: PolicyLike, outcomes: Outcomes, partitions: int
    ) -> None:
        self.policy, self.outcomes, self.partitions = policy, outcomes, partitions
        self.topic = app.topic(
            f"{app.conf.id}-by-household",
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
            internal=True,
        )
        table = app.Table("household-state", default=None, key_type=bytes, partitions=partitions)
        self.households = StateTable(table, HouseholdState, limit=100_000)

    def forward_scan(self, event: Any, effects: Effects, scan: contract.ScanEvent) -> None:
        """Called by the gate stage: hand an out scan the rule counts to its household."""
        if scan.household_id is None or not counts_for_outing(scan, self.policy):
            return
        record = one_line(event.message.value, lambda: contract.encode(scan))
        target = partition_of(scan.household_id.encode(), self.partitions)
        effects.forward(self.topic, target, record)

    def step(self, event: Any, effects: Effects) -> None:
        for record in split_records(event.value):
            scan = decode_as(record, contract.ScanEvent)
            if scan.household_id is None:
                continue
            state = self.households.load(scan.household_id)
            before = len(state.outings), len(state.alerted)
            alerts = judge_outing(state, scan, self.policy)
            effects.alert(alerts)
            self.outcomes.counts["outing"] += 1
            if alerts or (len(state.outings), len(state.alerted)) != before:
                self.households.save(effects, event, scan.household_id, state)


def install_households(
    app: faust.App,
    topics: Topics,
    policy: PolicyLike,
    outcomes: Outcomes,
    partitions: int,
    batching: Batching,
) -> LiveHouseholds:
    stage = HouseholdStage(app, policy, outcomes, partitions)

    @app.on_partitions_assigned.connect
    async def forget_households(sender: Any, assigned: Any, **kwargs: Any) -> None:
        stage.households.forget()

    @app.agent(stage.topic, name=stage.name)
    async def screen_households(stream: Any) -> None:
        await run_batched(
            stream, stage.step, topics, outcomes, stage.name, batching, trim=(stage.households,)
        )

    return LiveHouseholds(stage.forward_scan, (stage.households,))

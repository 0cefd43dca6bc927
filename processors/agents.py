"""Stream agents: raw message in, pure rule call, alerts or dead letters out.

Agents stay thin: decoding and every decision happen in pure modules so the
offline tools and replays reach the same verdicts as the live worker.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from processors.app import Topics
from scantrail import contract

log = logging.getLogger(__name__)


class Outcomes:
    """What the worker did with each message; served on /stats for operators."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


async def dead_letter(topics: Topics, event: Any, reason: str) -> None:
    """Put the failed message on the dead-letter topic and wait for the broker's ack."""
    message = event.message
    record = contract.dead_letter(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        reason=reason,
        seen_at=datetime.now(UTC),
    )
    log.warning(
        "dead letter %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason
    )
    await (await topics.deadletter.send(key=record.key(), value=contract.encode(record)))


async def publish_alerts(topics: Topics, alerts: Iterable[contract.Alert]) -> int:
    sent = 0
    for alert in alerts:
        # Awaiting the delivery future keeps alerts ahead of the offset commit.
        await (await topics.alerts.send(key=alert.key(), value=contract.encode(alert)))
        sent += 1
    return sent

"""Stream agents: raw message in, pure rule call, alerts or dead letters out.

Agents stay thin: decoding and every decision happen in pure modules so the
offline tools and replays reach the same verdicts as the live worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, NoReturn

from aiokafka.errors import KafkaError

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


EXIT_BROKER_LOST = 75  # EX_TEMPFAIL: the supervisor restarts the worker, Kafka re-delivers


def exit_at_once(code: int) -> NoReturn:
    """Leave without running faust's shutdown, which would commit the offsets it acked."""
    logging.shutdown()
    os._exit(code)


def is_transient(exc: BaseException) -> bool:
    """Failures of the broker or the network: the event is fine, the moment is not."""
    return isinstance(exc, KafkaError | OSError | TimeoutError)


async def run_guarded(
    stream: Any,
    handle: Callable[[Any], Awaitable[None]],
    topics: Topics,
    outcomes: Outcomes,
    stage: str,
    *,
    fatal: Callable[[int], Any] = exit_at_once,
) -> None:
    """Run ``handle`` on each event of an agent's stream, so that no failure loses an event.

    faust acks an event whose agent raised, and the agent stays dead: its
    offset is committed and every later event waits forever (faust-streaming
    issue 315). So an agent never raises here:

    * the broker or the network failed (an alert or a forward could not be
      sent): the event may be half-done, so the worker exits at once, before
      faust commits anything, and the supervisor's restart re-delivers it
      (every effect is idempotent);
    * anything else is a bug met by this one event: it is dead-lettered with
      the error and counted as ``<stage>_error``, and the stream goes on, so
      one bad event cannot stop a district's screening. If even the dead letter
      cannot be written, the worker exits as above.
    """
    async for event in stream.events():
        try:
            await handle(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await _failed(event, exc, topics, outcomes, stage, fatal)


async def _failed(
    event: Any,
    exc: Exception,
    topics: Topics,
    outcomes: Outcomes,
    stage: str,
    fatal: Callable[[int], Any],
) -> None:
    if is_transient(exc):
        log.critical(
            "%s: broker or network failure (%r); exiting for a clean re-delivery", stage, exc
        )
        fatal(EXIT_BROKER_LOST)
        return
    outcomes.counts[f"{stage}_error"] += 1
    log.exception("%s: internal error on an event; dead-lettering it", stage, exc_info=exc)
    try:
        await dead_letter(topics, event, f"{stage}: internal error {type(exc).__name__}: {exc}")
    except Exception as again:
        log.critical("%s: cannot dead-letter (%r); exiting for a clean re-delivery", stage, again)
        fatal(EXIT_BROKER_LOST)

"""What every stream agent shares: its outcome counts and how it gives up.

Agents stay thin: decoding and every decision happen in pure modules so the
offline tools and replays reach the same verdicts as the live worker; the
batch loop that runs them is :func:`processors.batching.run_batched`.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from typing import NoReturn

from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)


class Outcomes:
    """What the worker did with each message; served on /stats for operators."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


EXIT_BROKER_LOST = 75  # EX_TEMPFAIL: the supervisor restarts the worker, Kafka re-delivers


def exit_at_once(code: int) -> NoReturn:
    """Leave without running faust's shutdown, which would commit the offsets it acked."""
    logging.shutdown()
    os._exit(code)


def is_transient(exc: BaseException) -> bool:
    """Failures of the broker or the network: the event is fine, the moment is not."""
    return isinstance(exc, KafkaError | OSError | TimeoutError)

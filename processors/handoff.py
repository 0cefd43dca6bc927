"""Events one stage validated, handed to the next stage in the same process by their bytes.

Every record on an internal topic was validated by the stage that forwarded
it, and is validated again by the stage that reads it (:func:`scantrail.contract.decode_known`):
a forward travels through Kafka, and another process, an older release or
anyone with the topic's credential may have written what arrives. In one
worker, though, most forwards are read back by the same process a moment
later, and validating them again was about 7% of the worker's time in a
profile of the 1,000,000-reading drain (2026-12-06): a reading is validated
by the kiosk, person and site stages, a scan by the gate, trail and household
stages.

So the forwarding stage keeps the event it validated under the exact bytes it
forwarded, and the reading stage takes it back when the same bytes arrive.
Same bytes, same strict validation, same answer: nothing is trusted that
was not validated in this process. Bytes this process did not forward (another
worker's, or forwarded before a restart) are validated as before.

Held events are bounded: the reading stage usually takes them within a batch
or two, and what another worker reads is never taken here. Two generations
of at most ``limit // 2`` each, swapped when the newer fills, drop the oldest
without scanning them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Generic, TypeVar

from processors.batching import Effects, one_line
from scantrail import contract
from scantrail.contract import Event, decode_known

E = TypeVar("E", bound=Event)

HANDOFF_LIMIT = 20_000
"""Events held per hop. Far more than a hop has in flight inside one process
(a few batches), and small next to the worker's tables (a reading is about 1 KB)."""


class Handoff(Generic[E]):
    """One internal hop's validated events, from the stage that forwards to the stage that reads."""

    def __init__(self, kind: type[E], counts: Counter[str], limit: int = HANDOFF_LIMIT) -> None:
        self.kind = kind
        self.counts = counts
        self.half = max(1, limit // 2)
        self.newer: dict[bytes, E] = {}
        self.older: dict[bytes, E] = {}

    def forward(self, effects: Effects, topic: Any, partition: int, raw: bytes, event: E) -> None:
        """Forward ``raw``, which validated to ``event``, and keep ``event`` for the reader.

        A record that cannot travel as it is (:func:`~processors.batching.one_line`)
        goes re-encoded and is validated on arrival.
        """
        record = one_line(raw, lambda: contract.encode(event))
        effects.forward(topic, partition, record)
        if record is raw:
            self.keep(record, event)

    def keep(self, record: bytes, event: E) -> None:
        """``event`` is what validating ``record`` as :attr:`kind` gives; it is being forwarded."""
        if len(self.newer) >= self.half:
            self.older, self.newer = self.newer, {}
        self.newer[record] = event

    def take(self, record: bytes) -> E:
        """The event ``record`` validates to: kept by this process, or validated now.

        Raises :class:`~scantrail.errors.ContractError` as ``decode_known`` does.
        """
        event = self.newer.pop(record, None)
        if event is None:
            event = self.older.pop(record, None)
        if event is None:
            self.counts["handoff_validated"] += 1
            return decode_known(record, self.kind)
        self.counts["handoff_reused"] += 1
        return event

    def __len__(self) -> int:
        return len(self.newer) + len(self.older)

"""Polls of a bounded size in which every buffered partition gets its share.

faust hands each poll's records to the agents through one loop (taking the
partitions round-robin), and polls again only once all are delivered. By
default a poll takes every record aiokafka has buffered (up to a fetch,
1 MiB, per partition), so while a source topic has a backlog the later stages
(person, site, trails) receive their few large forwarded messages only
between whole source fetches: in the bench of 2026-12-04 the person stage
received nothing for 130 s while the kiosk stage read 90,000 readings, and
its alerts waited as long.

A bound per poll (faust's ``broker_max_poll_records``) alone made it worse in
another way: aiokafka's ``Fetcher.fetched_records`` fills the bound from its
buffered partitions in the order they were fetched, so the first partitions
took every poll; one source partition delivered nothing for 80 s (and the
person watermark, a minimum over source partitions, stood still), and the
quarantine partitions, read in the same poll as the first scans without a
bound, came after thousands of scans they should have been judged with.

:func:`install` makes a bounded poll fair: it takes at most
``bound / n`` records (rounded) from each of the ``n`` partitions that have
records buffered, so every one of them is in every poll, as in faust's
unbounded poll. Which records are delivered, and their order within a
partition, is aiokafka's; only how many each poll takes from each partition
changes.

:func:`tune` sets how much each fetch asks the broker to gather, and for how
long, by whether records are flowing (:class:`FetchFlow`): faust's consumer
asks for one byte, and under a steady trickle that is one fetch per round
trip.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any


def shares(bound: int, ready: int) -> list[int]:
    """Records one poll takes from each of ``ready`` buffered partitions: ``bound`` split evenly.

    A bound below the number of partitions gives the first ones a record
    each and the rest none this poll (keep the bound well above it).
    """
    base, extra = divmod(bound, max(ready, 1))
    return [base + 1] * min(extra, ready) + [base] * (ready - min(extra, ready))


def install() -> None:
    """Wrap aiokafka's ``Fetcher.fetched_records`` once, process-wide."""
    from aiokafka.consumer.fetcher import Fetcher, FetchResult

    original = Fetcher.fetched_records
    if getattr(original, "_scantrail_fair", False):
        return

    async def fetched_records(
        self: Any,
        partitions: Collection[Any] | None,
        timeout: float = 0,
        max_records: int | None = None,
    ) -> Any:
        if max_records is None:
            return await original(self, partitions, timeout=timeout, max_records=None)
        # Only partitions holding records: an error is left for aiokafka to
        # raise on the plain path below, before anything else was taken.
        ready = [
            tp
            for tp, held in self._records.items()
            if type(held) is FetchResult and (not partitions or tp in partitions)
        ]
        drained: dict[Any, Any] = {}
        for tp, each in zip(ready, shares(max_records, len(ready)), strict=True):
            if each:
                drained.update(await original(self, {tp}, timeout=0, max_records=each))
        if drained:
            return drained
        return await original(self, partitions, timeout=timeout, max_records=max_records)

    fetched_records._scantrail_fair = True  # type: ignore[attr-defined]
    Fetcher.fetched_records = fetched_records


@dataclass(frozen=True)
class FetchFlow:
    """What a fetch asks the broker for, by whether the fetch before it brought records.

    While records flow, a fetch asks for ``min_bytes`` within ``max_wait_ms``,
    so a steady trickle arrives in a few fetches a second instead of one fetch
    per round trip. After a fetch that brought nothing, the next asks for one
    byte within ``idle_wait_ms``: the first record after a quiet spell comes
    at once, and an idle worker does not ask the broker every ``max_wait_ms``.
    """

    min_bytes: int
    max_wait_ms: int
    idle_wait_ms: int

    def next_fetch(self, brought_records: bool) -> tuple[int, int]:
        """The (minimum bytes, wait in ms) of the fetch after one that brought records or none."""
        if brought_records:
            return self.min_bytes, self.max_wait_ms
        return 1, self.idle_wait_ms


def follow_flow(consumer: Any, flow: FetchFlow) -> None:
    """Make ``consumer`` (an aiokafka consumer, not started) fetch by ``flow``.

    aiokafka builds every fetch request from its fetcher's two fields and
    reports, per fetch, whether it buffered records; both are read here. The
    fetcher is made when the consumer starts, so the hook goes in then.
    """
    consumer._fetch_min_bytes, consumer._fetch_max_wait_ms = flow.next_fetch(False)
    consumer.scantrail_fetch_flow = flow
    start = consumer.start

    async def started() -> None:
        await start()
        fetcher = consumer._fetcher
        fetch = fetcher._proc_fetch_request

        async def fetch_and_adapt(assignment: Any, node_id: Any, request: Any) -> bool:
            brought = bool(await fetch(assignment, node_id, request))
            fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms = flow.next_fetch(brought)
            return brought

        fetcher._proc_fetch_request = fetch_and_adapt

    consumer.start = started


def tune(flow: FetchFlow) -> None:
    """Make faust's worker consumer fetch by ``flow`` (:func:`follow_flow`).

    faust builds its aiokafka consumer with aiokafka's 1-byte minimum (and a
    1.5 s wait) and offers no setting for either. Under a steady trickle every
    such fetch carries a few records and faust's consumer thread fetches as
    fast as the broker answers: in the latency bench (1,000 readings and 1,000
    scans a second, 2026-12-07) that thread was about a fifth of a core, and
    the broker answered several hundred fetches a second.
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = getattr(AIOKafkaConsumerThread._create_worker_consumer, "_scantrail_original", None)
    original = original or AIOKafkaConsumerThread._create_worker_consumer

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        follow_flow(consumer, flow)
        return consumer

    create_worker_consumer._scantrail_original = original  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer

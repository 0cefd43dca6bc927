"""A bounded poll reaches every buffered partition (processors.faust_fetch), on the real broker.

Three partitions hold a backlog and one holds five records, the way a source
topic's backlog sits beside a quarantine or internal partition in the worker.
aiokafka alone fills the bound from the first partition it buffered; with
the fair share every partition is in the first poll, and nothing is lost or
reordered.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaProducer

from processors import faust_fetch
from scantrail import contract

BACKLOG = 2000
FEW = 5
BOUND = 40


def _fill(settings, topic: str) -> dict[int, int]:  # type: ignore[no-untyped-def]
    counts = {0: BACKLOG, 1: BACKLOG, 2: BACKLOG, 3: FEW}
    producer = KafkaProducer(bootstrap_servers=settings.servers, linger_ms=20)
    for partition, count in counts.items():
        for n in range(count):
            producer.send(topic, value=str(n).encode(), partition=partition)
    producer.flush()
    producer.close()
    return counts


async def _drain(settings, topic: str, expected: int) -> list[dict[int, list[int]]]:  # type: ignore[no-untyped-def]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=",".join(settings.servers),
        enable_auto_commit=False,
        max_poll_records=BOUND,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(4)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        await asyncio.sleep(1.0)  # aiokafka fetches in the background: let it buffer all four
        polls: list[dict[int, list[int]]] = []
        got = 0
        async with asyncio.timeout(60):
            while got < expected:
                batch = await consumer.getmany(timeout_ms=1000)
                if not batch:
                    continue
                polls.append({tp.partition: [int(r.value) for r in rs] for tp, rs in batch.items()})
                got += sum(len(rs) for rs in batch.values())
        return polls
    finally:
        await consumer.stop()


def test_a_bounded_poll_takes_its_share_of_every_buffered_partition(kafka_settings) -> None:  # type: ignore[no-untyped-def]
    faust_fetch.install()
    topic = kafka_settings.topic(contract.TEMPERATURES)
    counts = _fill(kafka_settings, topic)
    polls = asyncio.run(_drain(kafka_settings, topic, sum(counts.values())))

    first = polls[0]
    # One broker answers one fetch for all four partitions: all are in the first poll,
    # each with at most its share of the bound.
    assert set(first) == {0, 1, 2, 3}
    assert first[3] == list(range(FEW))
    assert all(len(records) <= BOUND // 4 for records in first.values())
    assert all(sum(len(r) for r in poll.values()) <= BOUND for poll in polls)
    # Every record once, in order within its partition.
    seen: dict[int, list[int]] = {p: [] for p in counts}
    for poll in polls:
        for partition, records in poll.items():
            seen[partition].extend(records)
    assert seen == {p: list(range(n)) for p, n in counts.items()}

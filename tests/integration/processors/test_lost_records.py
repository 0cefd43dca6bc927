"""What HeadWatch reads from aiokafka (processors.faust_offsets), on the real broker.

HeadWatch calls a record lost when the client has handed it out (its position
is past it) and it is nowhere on its way. Both come from aiokafka's own state,
which no public call exposes without waiting; this test pins that reading to
the installed aiokafka: a backlog fetched into the client's buffer is on its
way from its first offset while the position stays at the start (aiokafka
moves it as it hands records out), and once all are handed out the buffer is
empty and the position at the end.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaProducer

from processors.faust_offsets import client_positions, waiting_on_lost_records
from scantrail import contract

RECORDS = 50


def _fill(settings: Any, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.servers, linger_ms=20)
    for n in range(RECORDS):
        producer.send(topic, value=str(n).encode(), partition=0)
    producer.flush()
    producer.close()


async def _look(settings: Any, topic: str) -> tuple[Any, Any, Any, Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=",".join(settings.servers))
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        await consumer.position(tp)
        buffered: dict[Any, int] = {}
        async with asyncio.timeout(30):
            while not buffered:  # aiokafka fetches in the background
                await asyncio.sleep(0.2)
                buffered.clear()
                before = client_positions(consumer, [tp], buffered.__setitem__)
        got = 0
        async with asyncio.timeout(30):
            while got < RECORDS:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                got += sum(len(records) for records in batch.values())
        after_buffered: dict[Any, int] = {}
        after = client_positions(consumer, [tp], after_buffered.__setitem__)
        return (before, dict(buffered), after, after_buffered)
    finally:
        await consumer.stop()


def test_the_client_shows_what_it_buffered_and_how_far_it_fetched(kafka_settings: Any) -> None:
    topic = kafka_settings.topic(contract.TEMPERATURES)
    _fill(kafka_settings, topic)
    before, buffered, after, after_buffered = asyncio.run(_look(kafka_settings, topic))
    tp = TopicPartition(topic, 0)

    assert buffered == {tp: 0}  # fetched, not handed out: on its way from offset 0
    assert before == {tp: 0}  # nothing handed out yet
    assert after_buffered == {}
    assert after == {tp: RECORDS}
    # As HeadWatch would judge a commit at 0 with nothing acknowledged:
    assert waiting_on_lost_records({tp: 0}, {}, buffered, before) == {}  # buffered: coming
    assert waiting_on_lost_records({tp: 0}, {}, after_buffered, after) == {tp: 0}  # gone

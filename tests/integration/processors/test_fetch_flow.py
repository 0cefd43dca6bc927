"""A worker's fetches follow the flow of records (processors.faust_fetch.FetchFlow), on the real broker.

faust's consumer asks every fetch for one byte, so a trickle of records costs
one fetch per broker round trip. With the flow, a fetch after records waits
(here up to 10 ms) for more, and a fetch after none asks for one byte and
waits long, so an idle consumer hardly asks at all. Nothing is lost or
reordered either way.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaProducer

from processors import faust_fetch
from scantrail import contract

FLOW = faust_fetch.FetchFlow(min_bytes=16384, max_wait_ms=10, idle_wait_ms=800)
TRICKLE = 400  # records, one every 2 ms: 500 a second, a few bytes each


async def _watch(settings, topic: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=",".join(settings.servers), enable_auto_commit=False
    )
    faust_fetch.follow_flow(consumer, FLOW)
    await consumer.start()
    fetches: list[tuple[float, int, int]] = []  # (when, min bytes, wait) of each fetch sent
    fetcher = consumer._fetcher
    adapted = fetcher._proc_fetch_request

    async def counted(assignment, node_id, request):  # type: ignore[no-untyped-def]
        fetches.append((time.monotonic(), request._min_bytes, request._max_wait_ms))
        return await adapted(assignment, node_id, request)

    fetcher._proc_fetch_request = counted
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await asyncio.sleep(0.5)
        idle_from = time.monotonic()
        await asyncio.sleep(2.0)
        idle = [f for f in fetches if f[0] >= idle_from]

        producer = KafkaProducer(bootstrap_servers=settings.servers, linger_ms=0)
        loop = asyncio.get_running_loop()
        trickle_from = time.monotonic()

        def trickle() -> None:
            for n in range(TRICKLE):
                producer.send(topic, value=str(n).encode(), partition=0)
                producer.flush()
                time.sleep(0.002)

        sending = loop.run_in_executor(None, trickle)
        values: list[int] = []
        async with asyncio.timeout(60):
            while len(values) < TRICKLE:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                values += [int(r.value) for r in batch.get(tp, [])]
        await sending
        trickle_to = time.monotonic()
        producer.close()
        await asyncio.sleep(1.0)
        return {
            "idle": idle,
            "trickle": [f for f in fetches if trickle_from <= f[0] <= trickle_to],
            "after": fetches[-1],
            "values": values,
            "trickle_s": trickle_to - trickle_from,
        }
    finally:
        await consumer.stop()


def test_fetches_wait_for_more_while_records_flow_and_for_any_when_idle(kafka_settings) -> None:  # type: ignore[no-untyped-def]
    seen = asyncio.run(_watch(kafka_settings, kafka_settings.topic(contract.TEMPERATURES)))

    # Idle for 2 s: each fetch asked for one byte within 0.8 s, so at most a few went out.
    idle = seen["idle"]
    assert 1 <= len(idle) <= 4, idle
    assert all((minimum, wait) == (1, 800) for _, minimum, wait in idle)

    # A trickle of 500 records a second: fetches after records waited for 16 kB within
    # 10 ms, so far fewer fetches than records went out (one byte each: about one per record).
    trickle = seen["trickle"]
    flowing = [f for f in trickle if (f[1], f[2]) == (16384, 10)]
    assert len(flowing) >= len(trickle) // 2, trickle
    assert len(trickle) < TRICKLE / 2, (len(trickle), seen["trickle_s"])

    # The trickle over, the fetch after an empty one is idle again.
    assert seen["after"][1:] == (1, 800)
    assert seen["values"] == list(range(TRICKLE))

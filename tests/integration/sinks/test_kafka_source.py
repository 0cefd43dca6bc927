"""The sink's librdkafka consumer against the real broker: batches, pauses, commits, rebalances."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kafka import KafkaProducer

from scantrail import contract
from sinks.kafka_source import SinkConsumer

pytestmark = pytest.mark.integration

N = 400


def publish_numbers(kafka_settings: Any, n: int = N) -> str:
    """n records spread over the temperature topic's partitions; values are their numbers."""
    topic = kafka_settings.topic(contract.TEMPERATURES)
    producer = KafkaProducer(bootstrap_servers=kafka_settings.servers, acks="all")
    for i in range(n):
        producer.send(topic, key=f"k{i % 7}".encode(), value=str(i).encode())
    producer.flush()
    producer.close()
    return topic


def consumer(kafka_settings: Any, topic: str, max_records: int = 50) -> SinkConsumer:
    return SinkConsumer(
        kafka_settings,
        [topic],
        group_id=f"{kafka_settings.namespace}source-test",
        client_id="source-test",
        max_records=max_records,
    )


def values(batch: dict[Any, list[Any]]) -> list[int]:
    return [int(m.value()) for messages in batch.values() for m in messages]


def poll_until(source: SinkConsumer, want: int, seconds: float = 60) -> dict[Any, list[Any]]:
    """Poll until ``want`` records came (grouped by partition, in order), committing nothing."""
    got: dict[Any, list[Any]] = {}
    deadline = time.monotonic() + seconds
    while sum(map(len, got.values())) < want:
        assert time.monotonic() < deadline, f"only {sum(map(len, got.values()))} of {want}"
        for tp, messages in source.poll(timeout_s=0.5).items():
            got.setdefault(tp, []).extend(messages)
    return got


@pytest.mark.timeout(180)
def test_batches_are_bounded_and_a_commit_is_where_the_group_resumes(kafka_settings: Any) -> None:
    topic = publish_numbers(kafka_settings)
    first = consumer(kafka_settings, topic)
    try:
        batches: list[dict[Any, list[Any]]] = []
        deadline = time.monotonic() + 60
        while sum(len(values(b)) for b in batches) < N // 2:
            assert time.monotonic() < deadline
            if batch := first.poll(timeout_s=0.5):
                batches.append(batch)
        assert all(0 < len(values(b)) <= 50 for b in batches)
        seen = [v for b in batches for v in values(b)]
        ends = {tp: ms[-1].offset() + 1 for b in batches for tp, ms in b.items()}
        first.commit(ends)
    finally:
        first.close()
    second = consumer(kafka_settings, topic)
    try:
        rest = poll_until(second, N - len(seen))
    finally:
        second.close()
    # Nothing before the committed offsets again, nothing after them missing.
    assert sorted(seen + values(rest)) == list(range(N))
    for tp, messages in rest.items():
        assert messages[0].offset() == ends.get(tp, 0)


@pytest.mark.timeout(180)
def test_a_paused_consumer_yields_nothing_and_skips_nothing_after_the_resume(
    kafka_settings: Any,
) -> None:
    topic = publish_numbers(kafka_settings)
    source = consumer(kafka_settings, topic)
    try:
        head = poll_until(source, 1)
        source.pause_all()
        assert source.paused
        quiet_until = time.monotonic() + 3
        while time.monotonic() < quiet_until:
            assert source.poll(timeout_s=0.3) == {}
        source.resume_all()
        tail = poll_until(source, N - len(values(head)))
    finally:
        source.close()
    got = values(head) + values(tail)
    assert sorted(got) == list(range(N)), "a record was lost or repeated across the pause"


@pytest.mark.timeout(240)
def test_a_partition_assigned_during_a_pause_stays_paused(kafka_settings: Any) -> None:
    """A member leaving hands its partitions to the paused one: they must not flow yet.

    Nothing is committed, so after the resume every record the paused member
    did not take before the pause must reach it: none may be lost in between.
    """
    topic = publish_numbers(kafka_settings)
    paused = consumer(kafka_settings, topic)
    other = consumer(kafka_settings, topic)
    taken: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while not (paused.assignment() and other.assignment()):  # both joined: a split
            assert time.monotonic() < deadline, "the group never split its partitions"
            taken.update(values(paused.poll(timeout_s=0.2)))
            other.poll(timeout_s=0.2)
        paused.pause_all()
        before = paused.assignment()
        other.close()  # its partitions move to the paused member
        deadline = time.monotonic() + 60
        while paused.assignment() == before:
            assert time.monotonic() < deadline, "the partitions never moved"
            assert paused.poll(timeout_s=0.5) == {}
        assert paused.assignment() > before
        for _ in range(6):
            assert paused.poll(timeout_s=0.5) == {}, "a partition flowed while paused"
        paused.resume_all()
        deadline = time.monotonic() + 60
        while len(taken) < N:
            assert time.monotonic() < deadline, f"{N - len(taken)} records never came"
            taken.update(values(paused.poll(timeout_s=0.5)))
    finally:
        paused.close()
    assert taken == set(range(N))


@pytest.mark.timeout(300)
def test_a_commit_while_the_broker_is_down_is_reported_as_not_made(tmp_path: Any) -> None:
    """The sink then goes on: the records stay uncommitted and are read again later."""
    from scantrail.broker import ensure_topics
    from scantrail.settings import KafkaSettings
    from sinks.kafka_source import CommitRefused
    from tests.support import PrivateKafka

    broker = PrivateKafka(tmp_path / "broker")
    broker.start()
    try:
        kafka = KafkaSettings(bootstrap=broker.bootstrap, partitions=2)
        ensure_topics(kafka)
        topic = publish_numbers(kafka, 100)
        source = consumer(kafka, topic)
        try:
            got = poll_until(source, 100)
            broker.stop()
            began = time.monotonic()
            with pytest.raises(CommitRefused):
                source.commit({tp: ms[-1].offset() + 1 for tp, ms in got.items()})
            assert time.monotonic() - began < 120
        finally:
            source.close()
    finally:
        broker.stop()

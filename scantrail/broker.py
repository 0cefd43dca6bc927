"""Kafka plumbing shared by every role: topic layout, producers, dead letters.

Topic auto-creation is off on the broker, so the project declares its topics
here, with partitions and retention chosen for their use: scans and readings
are kept as long as trails matter (28 days), quarantine orders are compacted
(the latest record per person is the registry), pages are an audit trail.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from scantrail import contract
from scantrail.errors import PublishError, ServiceError
from scantrail.settings import KafkaSettings

log = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str] = field(default_factory=dict)
    partitions: int | None = None  # None: the settings' default


def topic_specs(settings: KafkaSettings) -> list[TopicSpec]:
    retention = str(settings.retention_days * DAY_MS) if settings.retention_days else "-1"
    specs = [
        TopicSpec(contract.SCANS, {"retention.ms": retention}),
        TopicSpec(contract.TEMPERATURES, {"retention.ms": retention}),
        TopicSpec(
            contract.QUARANTINE,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": str(3600 * 1000)},
        ),
        TopicSpec(contract.ALERTS, {"retention.ms": str(365 * DAY_MS)}),
        TopicSpec(contract.KIOSKS, {"retention.ms": str(7 * DAY_MS)}),
        TopicSpec(contract.PAGES, {"retention.ms": str(365 * DAY_MS)}),
        TopicSpec(contract.DEADLETTER, {"retention.ms": retention}),
    ]
    # acks=all means "every in-sync replica": with replication 3 that must be at
    # least 2 replicas, or a lone leader could acknowledge and then be lost.
    durability = {"min.insync.replicas": str(min(2, settings.replication))}
    return [
        TopicSpec(settings.topic(s.name), {**durability, **s.config}, s.partitions) for s in specs
    ]


def admin_client(settings: KafkaSettings) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            bootstrap_servers=settings.servers,
            client_id="scantrail-admin",
            request_timeout_ms=15000,
        )
    except KafkaError as exc:
        raise ServiceError(
            f"cannot reach Kafka at {settings.bootstrap} ({exc}); is it running? try `make up`"
        ) from None


def ensure_topics(settings: KafkaSettings, specs: Iterable[TopicSpec] | None = None) -> list[str]:
    """Create missing topics; existing ones are left as they are. Returns the created names."""
    specs = list(specs if specs is not None else topic_specs(settings))
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(
                name=spec.name,
                num_partitions=spec.partitions or settings.partitions,
                replication_factor=settings.replication,
                topic_configs=spec.config,
            )
            for spec in specs
            if spec.name not in existing
        ]
        if not wanted:
            return []
        try:
            admin.create_topics(wanted, validate_only=False)
        except TopicAlreadyExistsError:
            pass  # another process won the race; fine
        return [t.name for t in wanted]
    finally:
        admin.close()


def make_producer(settings: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """A producer that does not lose acknowledged events.

    acks=all with idempotence means an acknowledged event is on every in-sync
    replica and a retry never writes it twice; linger and compression batch
    the kiosk's small events into few requests.
    """
    config: dict[str, Any] = {
        "bootstrap_servers": settings.servers,
        "acks": "all",
        "enable_idempotence": True,
        "retries": 2**31 - 1,
        "delivery_timeout_ms": 120_000,
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        "compression_type": "gzip",
        "max_in_flight_requests_per_connection": 5,
        "client_id": "scantrail",
    }
    config.update(overrides)
    try:
        return KafkaProducer(**config)
    except KafkaError as exc:
        raise PublishError(f"cannot reach Kafka at {settings.bootstrap}: {exc}") from None


def send_dead_letter(
    producer: KafkaProducer,
    deadletter_topic: str,
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    seen_at: datetime,
) -> Any:
    """Publish a failed message to the dead-letter topic; returns the send future."""
    record = contract.dead_letter(
        topic=topic,
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        reason=reason,
        seen_at=seen_at,
    )
    log.warning("dead letter from %s[%s]@%s: %s", topic, partition, offset, reason)
    return producer.send(deadletter_topic, key=record.key(), value=contract.encode(record))

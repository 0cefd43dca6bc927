"""Quarantine records past their retention: tombstones on the compacted topic.

The quarantine topic is compacted (the latest record per person is the
registry), so time-based deletion never removes a person's last record. A
record whose quarantine ended more than ``quarantine_days`` ago is replaced by
a tombstone (the person's key, no value); compaction then removes both the
record and, after ``delete.retention.ms``, the tombstone. Run daily
(``scantrail retention quarantine``: a CronJob on a cluster, cron or a systemd
timer on a host); running it twice tombstones nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from scantrail import contract
from scantrail.errors import ContractError
from scantrail.settings import KafkaSettings

log = logging.getLogger(__name__)

Latest = dict[bytes, contract.QuarantineRecord | None]


def expired(
    latest: Mapping[bytes, contract.QuarantineRecord | None], today: date, days: float
) -> list[bytes]:
    """Keys whose latest record ended more than ``days`` before ``today`` (pure)."""
    cutoff = today - timedelta(days=days)
    return sorted(k for k, r in latest.items() if r is not None and r.ends_on < cutoff)


@dataclass
class SweepResult:
    records: int = 0
    persons: int = 0
    invalid: int = 0
    tombstoned: int = 0


def latest_records(
    settings: KafkaSettings,
) -> tuple[dict[bytes, contract.QuarantineRecord | None], SweepResult]:
    """Read the quarantine topic to its end: the latest record (or tombstone) per key."""
    from kafka import KafkaConsumer

    from scantrail.broker import check_login, connection, read_from_start

    topic = settings.topic(contract.QUARANTINE)
    check_login(settings)
    consumer = KafkaConsumer(
        **connection(settings),
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=2000,
        client_id="scantrail-retention",
    )
    result = SweepResult()
    latest: Latest = {}
    try:
        for message in read_from_start(consumer, topic):
            result.records += 1
            if message.key is None:
                result.invalid += 1
            elif message.value is None:
                latest[message.key] = None
            else:
                try:
                    latest[message.key] = contract.decode_as(
                        message.value, contract.QuarantineRecord
                    )
                except ContractError:
                    result.invalid += 1
    finally:
        consumer.close()
    result.persons = sum(1 for r in latest.values() if r is not None)
    return latest, result


def tombstone_expired_quarantines(settings: KafkaSettings, today: date, days: float) -> SweepResult:
    from scantrail.broker import make_producer

    latest, result = latest_records(settings)
    doomed = expired(latest, today, days)
    if doomed:
        producer = make_producer(settings, linger_ms=0)
        try:
            futures = [
                producer.send(settings.topic(contract.QUARANTINE), key=key, value=None)
                for key in doomed
            ]
            for future in futures:
                future.get(timeout=30)
        finally:
            producer.close()
    result.tombstoned = len(doomed)
    log.info("quarantine retention: %d records read, %d tombstoned", result.records, len(doomed))
    return result

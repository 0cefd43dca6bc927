"""Kafka plumbing shared by every role: client settings, topic layout, producers, dead letters.

Topic auto-creation is off on the broker, so the project declares its topics
here, with partitions and retention chosen for their use: scans and readings
are kept as long as trails matter (28 days), quarantine orders are compacted
(the latest record per person is the registry), pages are an audit trail.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError

from scantrail import contract
from scantrail.errors import PublishError, ServiceError
from scantrail.settings import KafkaSettings

log = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000
#: The most of a failed record's value a dead letter keeps: its base64 (4/3 of
#: it) must fit in Kafka's default 1 MB record with room for the rest.


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
        # Who read whose trail: kept a year, like the pages, for the auditor.
        TopicSpec(contract.AUDIT, {"retention.ms": str(365 * DAY_MS)}),
    ]
    # acks=all means "every in-sync replica": with replication 3 that must be at
    # least 2 replicas, or a lone leader could acknowledge and then be lost.
    durability = {"min.insync.replicas": str(min(2, settings.replication))}
    return [
        TopicSpec(settings.topic(s.name), {**durability, **s.config}, s.partitions) for s in specs
    ]


def connection(settings: KafkaSettings) -> dict[str, Any]:
    """kafka-python keyword arguments that reach the brokers: servers, TLS and SASL.

    Every kafka-python client of the project is built with these, so a
    secured cluster needs only the ``SCANTRAIL_KAFKA_*`` settings.
    """
    config: dict[str, Any] = {
        "bootstrap_servers": settings.servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.uses_tls:
        config["ssl_check_hostname"] = True
        if settings.ssl_cafile is not None:
            config["ssl_cafile"] = str(settings.ssl_cafile)
    if settings.uses_sasl:
        config["sasl_mechanism"] = settings.sasl_mechanism
        config["sasl_plain_username"] = settings.sasl_username
        config["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return config


def librdkafka_connection(settings: KafkaSettings) -> dict[str, Any]:
    """The same as :func:`connection`, in librdkafka's terms (confluent-kafka clients)."""
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(settings.servers),
        "security.protocol": settings.security_protocol.lower(),
    }
    if settings.uses_tls and settings.ssl_cafile is not None:
        config["ssl.ca.location"] = str(settings.ssl_cafile)
    if settings.uses_sasl:
        config["sasl.mechanisms"] = settings.sasl_mechanism
        config["sasl.username"] = settings.sasl_username
        config["sasl.password"] = settings.sasl_password.get_secret_value()
    return config


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    """A verifying TLS context for aiokafka/faust, or None without TLS."""
    if not settings.uses_tls:
        return None
    cafile = None if settings.ssl_cafile is None else str(settings.ssl_cafile)
    return ssl.create_default_context(cafile=cafile)


def unreachable(settings: KafkaSettings, exc: Exception) -> str:
    """What to tell a user whose client could not bootstrap: a refused login looks the same."""
    message = f"cannot reach Kafka at {settings.bootstrap} ({type(exc).__name__}: {exc})"
    if settings.uses_sasl:
        return (
            f"{message}; is it running, and are SCANTRAIL_KAFKA_SASL_USERNAME and the password"
            f" right? ({settings.sasl_mechanism} over {settings.security_protocol}: a refused"
            " login also ends this way)"
        )
    return f"{message}; is it running? try `make up`"


class LoginRefused(ServiceError):
    """The brokers answered, and refused the SASL login."""


def check_login(settings: KafkaSettings, timeout_s: float = 10.0) -> None:
    """Under SASL, fail within a second or so when the brokers refuse the login.

    kafka-python retries a refused login as if the connection had dropped,
    until its 30 s bootstrap timeout, and then reports only a timeout. A kiosk
    or pager started with a wrong password should say so at once, so the
    kafka-python entry points log in once with librdkafka first, which
    reports the refusal itself. Anything else (brokers down, slow) is left to
    the client that follows and its own message, and costs the check about
    half a second (a kiosk starting during an outage spools on). Without
    SASL: nothing to do.
    """
    if not settings.uses_sasl:
        return
    from confluent_kafka import KafkaError as RdKafkaError
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    refused: list[str] = []
    down: list[int] = []

    def on_error(error: Any) -> None:
        if error.code() == RdKafkaError._AUTHENTICATION:
            refused.append(error.str())
        elif error.code() in (RdKafkaError._ALL_BROKERS_DOWN, RdKafkaError._TRANSPORT):
            down.append(error.code())

    config: dict[str, Any] = {
        **librdkafka_connection(settings),
        "client.id": "scantrail-login-check",
        "error_cb": on_error,
        "log_level": 0,  # the refusal is reported below, once
    }
    probe = AdminClient(config)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            probe.list_topics(timeout=0.5)
            return
        except KafkaException:
            probe.poll(0)  # serves error_cb
            if down and not refused:
                probe.poll(0.2)  # a refusal is reported before "all brokers down"
                if not refused:
                    return  # unreachable, not refused: a kiosk spools on at once
            if refused:
                raise LoginRefused(
                    f"Kafka at {settings.bootstrap} refused the login of"
                    f" {settings.sasl_username!r} ({settings.sasl_mechanism} over"
                    f" {settings.security_protocol}): check SCANTRAIL_KAFKA_SASL_USERNAME and"
                    f" the password ({refused[0]})"
                ) from None


def admin_client(settings: KafkaSettings) -> KafkaAdminClient:
    check_login(settings)
    try:
        return KafkaAdminClient(
            **connection(settings),
            client_id="scantrail-admin",
            request_timeout_ms=15000,
        )
    except KafkaError as exc:
        raise ServiceError(unreachable(settings, exc)) from None


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
        created = [t.name for t in wanted]
        _await_metadata(admin, lambda names: set(created) <= names, "creation of", created)
        return created
    finally:
        admin.close()


def _await_metadata(
    admin: KafkaAdminClient,
    settled: Callable[[set[str]], bool],
    what: str,
    topics: list[str],
    timeout_s: float = 30.0,
) -> None:
    """Wait until the broker's metadata shows a topic change.

    The controller acknowledges a create or delete once it is committed, but
    the broker answers metadata requests from a cache it updates a moment
    later (after making or removing the partitions' log files), so a producer
    or a listing straight after would still see the old world.
    """
    deadline = time.monotonic() + timeout_s
    while not settled(set(admin.list_topics())):
        if time.monotonic() > deadline:
            raise ServiceError(
                f"Kafka did not show the {what} {len(topics)} topics in {timeout_s:.0f} s"
            )
        time.sleep(0.05)


def namespaces(settings: KafkaSettings) -> set[str]:
    """The namespace prefixes ("demo-20261123064641.", ...) that topics on the broker carry.

    Un-namespaced ScanTrail topics ("scantrail.scans") and Kafka's own
    ("__consumer_offsets") are not namespaces and are never listed.
    """
    admin = admin_client(settings)
    try:
        return {
            t[: t.index(".") + 1]
            for t in admin.list_topics()
            if "." in t and not t.startswith(("scantrail.", "__"))
        }
    finally:
        admin.close()


def drop_namespaces(settings: KafkaSettings, prefixes: Iterable[str]) -> list[str]:
    """Delete every topic under the given namespace prefixes; returns the deleted names.

    Namespaces are how tests and demo runs keep apart on one broker, and faust
    puts its changelog and repartition topics under the same prefix. Left
    behind, they pile up: a broker with ten thousand partitions spends minutes
    loading its logs at start. An empty prefix would mean every topic, so it
    is refused.
    """
    prefixes = tuple(prefixes)
    if not prefixes:
        return []
    if any(not p for p in prefixes):
        raise ValueError("refusing to drop the empty namespace (that is every topic)")
    admin = admin_client(settings)
    try:
        doomed = sorted(t for t in admin.list_topics() if t.startswith(prefixes))
        # Batches keep each request well inside the admin timeout.
        for start in range(0, len(doomed), 200):
            # raise_errors=False: a topic another cleaner deleted first is not a failure;
            # any other error is.
            result = admin.delete_topics(
                doomed[start : start + 200], timeout_ms=30000, raise_errors=False
            )
            failed = {
                t["name"]: t["error_message"] or t["error_code"]
                for t in result["topics"]
                if t["error_code"] not in (0, UnknownTopicOrPartitionError.errno)
            }
            if failed:
                raise ServiceError(f"Kafka would not delete {len(failed)} topics: {failed}")
        _await_metadata(admin, lambda names: not names & set(doomed), "deletion of", doomed)
        return doomed
    finally:
        admin.close()


def read_from_start(consumer: KafkaConsumer, topic: str) -> Iterator[Any]:
    """Every record of ``topic`` from its first offset to its end as of now, in partition order.

    For the readers that rebuild a state from a whole topic at start (the
    pager's journal, the quarantine registry): the end is fixed when reading
    starts, so records appended meanwhile are left for the caller's next look.
    A topic without partitions (not created) yields nothing.
    """
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends: dict[Any, int] = consumer.end_offsets(tps)
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        for messages in consumer.poll(timeout_ms=1000).values():
            yield from messages


def make_producer(settings: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """A producer that does not lose acknowledged events.

    acks=all with idempotence means an acknowledged event is on every in-sync
    replica and a retry never writes it twice; linger and compression batch
    the kiosk's small events into few requests.
    """
    config: dict[str, Any] = {
        **connection(settings),
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
    check_login(settings)
    try:
        return KafkaProducer(**config)
    except KafkaError as exc:
        raise PublishError(unreachable(settings, exc)) from None


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
    hash_key: bytes | None = None,
) -> Any:
    """Publish a failed message to the dead-letter topic; returns the send future.

    A message of a personal topic is stored as keyed hashes only, and any other
    is kept whole up to :data:`scantrail.contract.DEAD_LETTER_VALUE_LIMIT` (see
    :func:`scantrail.contract.dead_letter`; ``hash_key`` defaults to the
    deployment's dead-letter key).
    """
    record = contract.dead_letter(
        topic=topic,
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        reason=reason,
        seen_at=seen_at,
        hash_key=hash_key,
    )
    log.warning("dead letter from %s[%s]@%s: %s", topic, partition, offset, record.reason)
    return producer.send(deadletter_topic, key=record.key(), value=contract.encode(record))


_AUTHORIZATION_ERRORS = (
    "TopicAuthorizationFailedError",
    "GroupAuthorizationFailedError",
    "ClusterAuthorizationFailedError",
    "TransactionalIdAuthorizationFailedError",
)


def explain_refusal(
    exc: BaseException | None, operation: str, resource: str, settings: KafkaSettings
) -> str:
    """A client error, said the way an operator needs it: for an authorization failure,
    which principal was refused which operation on what (the ACLs to check)."""
    name = type(exc).__name__
    if name in _AUTHORIZATION_ERRORS:
        who = f"User:{settings.sasl_username}" if settings.uses_sasl else "this client"
        return (
            f"Kafka refused {operation} on {resource} to {who}: not allowed by its ACLs"
            f" ({name}; docs/security.md lists what each role may do)"
        )
    return f"{name}: {exc}"

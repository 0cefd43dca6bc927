"""The faust application: the only module that builds faust objects.

Contract topics are read as raw bytes and decoded with
:func:`scantrail.contract.decode`, so a malformed message becomes a dead-letter
record with a reason instead of a crashed agent. Processing is at-least-once
(faust's ``exactly_once`` has open correctness issues); every effect is made
idempotent instead, and faust flushes the producer before it commits offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust
from faust.transport.producer import ProducerBuffer

from processors import faust_delivery, faust_fetch, faust_offsets, faust_seek, faust_stores
from scantrail import contract
from scantrail.broker import ssl_context
from scantrail.private import private_dir, tighten_tree
from scantrail.settings import KafkaSettings, TraceAccessSettings, WorkerSettings


@dataclass(frozen=True)
class Topics:
    """The faust topic handles of one app, in its namespace."""

    scans: Any
    temperatures: Any
    quarantine: Any
    alerts: Any
    deadletter: Any
    gate: Any  # scans and quarantine together: both keyed by person_id


class SettledProducerBuffer(ProducerBuffer):  # type: ignore[misc]  # faust ships no types
    """faust's producer buffer, asking faust's settings only once whether the producer is threaded.

    faust's conductor awaits ``wait_until_ebb`` for every message it delivers,
    and the buffer's ``size`` read ``conf.producer_threaded`` through the
    settings registry's descriptors each time: 1.1% of the worker in the
    py-spy profile of the 1,000,000-reading drain (2026-12-06 15:08). The
    setting does not change once the app runs.
    """

    _threaded: bool | None = None

    @property
    def size(self) -> int:
        threaded = self._threaded
        if threaded is None:
            threaded = self._threaded = bool(self.app.conf.producer_threaded)
        if threaded:
            return 0 if not self.queue else len(self.queue._queue)
        return len(self.pending._queue)


class App(faust.App):  # type: ignore[misc]  # faust ships no type information
    """faust's app without its per-message sensor.

    faust makes its Monitor a sensor as the app starts, and then every message
    fetched and every event a stream takes passes through it (counts per
    topic and stream, timings, a dict of sensor states per event). The worker
    counts what its operators read on ``/stats`` itself, and the py-spy
    profile of the 1,000,000-reading drain (2026-12-06, GIL holders only) put
    those sensor calls at 2.2% of the worker. The monitor itself stays (faust's
    consumer records end offsets and commits on it); it only stops hearing
    every message. ``bench/faust_floor.py`` keeps stock faust, sensor included.
    """

    _event_class: Any = None

    def on_init_dependencies(self) -> Any:
        services = super().on_init_dependencies()
        self.sensors.remove(self.monitor)
        return services

    def _new_producer(self) -> Any:
        producer = super()._new_producer()
        producer.buffer.__class__ = SettledProducerBuffer  # the same object, a cheaper ``size``
        return producer

    def create_event(self, key: Any, value: Any, headers: Any, message: Any) -> Any:
        """faust's event for a message, its class looked up once.

        faust reads ``conf.Event`` for every message it delivers, through its
        settings registry's descriptors: 0.8% of the worker in the py-spy
        profile of the 1,000,000-reading drain (2026-12-06 15:08).
        """
        event_class = self._event_class
        if event_class is None:
            event_class = self._event_class = self.conf.Event
        return event_class(self, key, value, headers, message)


def faust_credentials(kafka: KafkaSettings) -> Any:
    """faust's broker credentials for the settings' TLS and SASL (None: plaintext)."""
    context = ssl_context(kafka)
    if kafka.uses_sasl:
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value(),
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def create_app(
    kafka: KafkaSettings, worker: WorkerSettings, access: TraceAccessSettings | None = None
) -> tuple[App, Topics]:
    access = access or TraceAccessSettings()
    data_dir = worker.resolved_data_dir()
    # The tables hold every resident's trail: owner only, older data dirs included.
    tighten_tree(private_dir(data_dir))
    app = App(
        worker.app_id,
        broker=[f"kafka://{server}" for server in kafka.servers],
        broker_credentials=faust_credentials(kafka),
        store="rocksdb://",
        datadir=str(data_dir),
        processing_guarantee="at_least_once",
        producer_acks=-1,
        producer_linger_ms=worker.producer_linger_ms,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=worker.fetch_bytes,
        broker_max_poll_records=worker.max_poll_records or None,
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication,
        web_host="127.0.0.1",
        web_bind=access.web_bind,
        web_port=worker.web_port,
        # faust's own views print table contents (trails) to anyone: off unless asked for.
        web_tables_enabled=access.web_table_views,
        web_router_enabled=access.web_table_views,
        web_in_thread=False,
        # A broker restart or a slow RocksDB flush must not cost a rebalance.
        broker_session_timeout=30.0,
        broker_heartbeat_interval=3.0,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        table_standby_replicas=worker.standby_replicas,
    )

    quarantine = kafka.topic(contract.QUARANTINE)  # compacted: a missing offset is normal there
    faust_offsets.install(lambda topic: topic != quarantine)
    faust_fetch.install()
    faust_fetch.tune(
        faust_fetch.FetchFlow(
            worker.fetch_min_bytes, worker.fetch_max_wait_ms, worker.fetch_idle_wait_ms
        )
    )
    faust_stores.install(wal=worker.rocksdb_wal)
    faust_seek.install()
    if worker.in_place_delivery:
        faust_delivery.install()

    def raw_topic(name: str) -> Any:
        return app.topic(
            kafka.topic(name), key_serializer="raw", value_serializer="raw", internal=False
        )

    topics = Topics(
        scans=raw_topic(contract.SCANS),
        temperatures=raw_topic(contract.TEMPERATURES),
        quarantine=raw_topic(contract.QUARANTINE),
        alerts=raw_topic(contract.ALERTS),
        deadletter=raw_topic(contract.DEADLETTER),
        gate=app.topic(
            kafka.topic(contract.SCANS),
            kafka.topic(contract.QUARANTINE),
            key_serializer="raw",
            value_serializer="raw",
            internal=False,
        ),
    )
    return app, topics

"""Assemble the live worker: app, agents, web views."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import faust

from processors import faust_offsets, faust_standby, loop_stalls
from processors.agents import Outcomes
from processors.app import create_app
from processors.batching import Batching
from processors.changelog_restore import restore_changelogs
from processors.collector import (
    CollectorClock,
    collector_thresholds,
)
from processors.live import install_screening
from processors.live_households import install_households
from processors.live_trails import install_trails
from processors.screening_policy import SitePolicies
from processors.table_writes import BulkWrites, changelog_producer
from processors.trace_guard import TraceGuard
from scantrail.audit import AuditLog
from scantrail.broker import TopicSpec, ensure_topics, librdkafka_connection
from scantrail.credentials import CredentialStore
from scantrail.settings import KafkaSettings, RetentionSettings, TraceAccessSettings, WorkerSettings


def readiness(app: faust.App) -> dict[str, Any]:
    """Whether this worker's answers are complete: its tables are restored and it owns partitions.

    ``/stats`` answers as soon as the web server is up, while the tables may
    still be restoring from their changelogs; a ``/trace`` then would miss
    scans. A readiness probe on ``/ready`` keeps such a worker out of the
    Service until faust's recovery has finished and no rebalance is running.
    """
    recovered = app.tables.recovery.completed.is_set()
    recovering = bool(app.in_recovery)
    rebalancing = bool(app.rebalancing)
    return {
        "ready": recovered and not recovering and not rebalancing,
        "tables_recovered": recovered,
        "in_recovery": recovering,
        "rebalancing": rebalancing,
    }


INTERNAL_TOPICS = ("by-person", "by-site", "visits-by-site", "by-household")


def precreate_internal_topics(app: faust.App, kafka: KafkaSettings) -> None:
    """Create the forward and changelog topics before faust subscribes to them.

    faust creates them itself at start, but on a busy broker its subscription
    can come before the broker's metadata shows a new topic; faust then logs
    "Ignoring missing topic" and that stage never receives a record.
    """
    compact = {"cleanup.policy": "compact"}
    specs = [TopicSpec(f"{app.conf.id}-{name}") for name in INTERNAL_TOPICS]
    specs += [
        TopicSpec(table.changelog_topic.get_topic_name(), compact) for table in app.tables.values()
    ]
    ensure_topics(kafka, specs)


CHANGELOG_TAIL_S = 0.5


def follow_changelogs(app: faust.App) -> None:
    """Apply the changelog records other workers write as they come, not 1,000 at a time.

    faust buffers what it reads of a changelog partition this worker does not
    write (a standby's, and every partition of a global table that another
    worker owns) and applies it to RocksDB only once a table's buffer holds
    ``recovery_buffer_size`` records (1,000), at a rebalance, or at the end of
    a recovery. Once the input went quiet, up to 999 records per table were
    never applied: each of two workers answered ``/trace`` without the scans
    the other had indexed last (issue 12). Between recoveries the buffers are
    applied every :data:`CHANGELOG_TAIL_S`; a recovery keeps its large batches.
    """

    @app.timer(interval=CHANGELOG_TAIL_S)
    async def apply_changelog_tail() -> None:
        recovery = app.tables.recovery
        if not recovery.in_recovery:
            recovery.flush_buffers()


class RestoringWorker(faust.Worker):  # type: ignore[misc]  # faust is untyped here
    """faust's worker, which first brings the local tables up to their changelogs.

    The restore runs once logging is set up (so its progress is seen) and
    before the app starts, so faust opens stores that are already complete
    (:mod:`processors.changelog_restore`). It runs on the main thread, which
    nothing else needs yet: run in an executor thread, it left faust's stores
    created off the loop's thread, and the worker hung in their shutdown.
    """

    def __init__(
        self, app: faust.App, *, restore: Callable[[], Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self.restore = restore

    async def on_execute(self) -> None:
        await super().on_execute()
        if self.restore is not None:
            self.restore()


def tune_collector(app: faust.App, outcomes: Outcomes, settings: WorkerSettings) -> None:
    """Time the garbage collector on /stats and keep it small (processors.collector)."""
    CollectorClock(outcomes.counts).install()
    collector_thresholds(settings.gc_young_threshold, settings.gc_full_every)


def worker_batching(settings: WorkerSettings, kafka: KafkaSettings, outcomes: Outcomes) -> Batching:
    """How every agent batches, and the one librdkafka writer for their sends and tables."""
    writer = BulkWrites(
        changelog_producer(librdkafka_connection(kafka), settings.producer_linger_ms),
        counts=outcomes.counts,
    )
    return Batching(
        settings.batch_max_events,
        settings.batch_wait_ms / 1000,
        writer,
        slice_s=settings.judge_slice_ms / 1000,
    )


def build_worker(loglevel: str = "info") -> faust.Worker:
    kafka = KafkaSettings()
    settings = WorkerSettings()
    access = TraceAccessSettings()
    retention = RetentionSettings()
    ensure_topics(kafka)
    app, topics = create_app(kafka, settings, access)
    outcomes = Outcomes()
    tune_collector(app, outcomes, settings)
    faust_offsets.watch_heads(app, outcomes.counts)
    if settings.direct_standby_writes:
        faust_standby.install(app, outcomes.counts)
    batching = worker_batching(settings, kafka, outcomes)
    trails = install_trails(
        app,
        topics,
        outcomes,
        kafka.partitions,
        batching=batching,
        retention=timedelta(days=retention.trail_days),
        idle_sweep_s=retention.sweep_s,
        wall_clock=retention.trail_clock == "wall",
    )
    policy = SitePolicies()
    households = install_households(
        app, topics, policy, outcomes, kafka.partitions, batching, settings.idle_after_s
    )

    def on_scan(event: Any, effects: Any, scan: Any) -> None:
        trails.index_scan(event, effects, scan)
        households.forward_scan(event, effects, scan)

    install_screening(
        app,
        topics,
        policy,
        outcomes,
        kafka.partitions,
        batching,
        on_scan=on_scan,
        scan_caches=trails.caches,
        scan_ticks=households.ticks,
        idle_after_s=settings.idle_after_s,
    )

    precreate_internal_topics(app, kafka)
    follow_changelogs(app)
    guard = TraceGuard(trails.index, access, CredentialStore.default(), AuditLog(kafka))

    @app.page("/trace")
    async def trace_view(web: Any, request: Any) -> Any:
        return await guard.handle(web, request)

    started = loop_stalls.Clocks.now()  # on the thread the event loop will run on

    @app.page("/stats")
    async def stats(web: Any, request: Any) -> Any:
        # Read here, on the loop's thread: its CPU is the worker's ceiling (loop_stalls).
        return web.json({**outcomes.as_dict(), **loop_stalls.loop_load(started)})

    @app.task
    async def watch_loop_stalls() -> None:
        await loop_stalls.watch(outcomes.counts)

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        state = readiness(app)
        return web.json(state, status=200 if state["ready"] else 503)

    restore = None
    if settings.bulk_restore:
        restore = partial(restore_changelogs, app, librdkafka_connection(kafka))
    worker = RestoringWorker(app, loglevel=loglevel, restore=restore)
    # No spinner: with one (at warning level on a terminal), faust sets the root
    # logger to DEBUG and aiokafka's debug records cost about a tenth of the CPU.
    worker.spinner = None
    return worker

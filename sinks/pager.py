"""The pager: alerts in, officers paged, every step journaled to ``scantrail.pages``.

Shape: one asyncio loop runs the ack/queue HTTP server, one task per alert in
flight and one escalation timer per open critical page; the kafka-python
consumer lives on a single dedicated thread (it is not thread-safe) and is
only touched there. Decisions come from :mod:`sinks.routing`; this module does
the I/O around them.

Guarantees:

* **Commit after the record.** An alert's offset is committed only once its
  outcome (``delivered`` on some channel, ``queued``, ``skipped``,
  ``escalated`` or ``exhausted``) was acknowledged by Kafka on the pages
  topic. Alerts are handled concurrently and offsets committed in order, so a
  receiver that is down delays one alert's commit, not other sites' pages.
* **Dedupe from the journal.** On start the pager reads ``scantrail.pages``
  from the beginning and folds it into a :class:`~sinks.routing.Ledger`; an
  alert id with a recorded outcome is never paged again (a ``duplicate`` is
  recorded instead). The journal is already the durable record written before
  each commit, so it cannot disagree with the offsets the way a second store
  (a SQLite file) could, and a pager moved to another host needs no disk.
  Open escalations and queued warnings are rebuilt from it too.
* **At-least-once to receivers.** A crash between a receiver's 2xx and the
  ``delivered`` record re-sends that page on restart; payloads carry
  ``alert_id`` so receivers can drop the repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError

from scantrail import contract
from scantrail.broker import (
    check_login,
    connection,
    make_producer,
    read_from_start,
    send_dead_letter,
)
from scantrail.clock import Clock, SystemClock
from scantrail.contract import Alert, PageRecord
from scantrail.errors import ContractError, ServiceError
from scantrail.settings import KafkaSettings
from sinks.ack_tokens import check_ack, is_officer, link_token, well_formed
from sinks.channels import (
    Backoff,
    Channel,
    ChannelError,
    EmailChannel,
    PageMessage,
    PagerSettings,
    WebhookChannel,
)
from sinks.routing import (
    Ledger,
    Officer,
    Page,
    Queue,
    Roster,
    Webhook,
    decide,
    next_page,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


def _about(alert: Alert) -> dict[str, Any]:
    return {"alert_id": alert.alert_id, "site_id": alert.site_id, "severity": alert.severity}


_ACK_STATUS = {"malformed": 400, "refused": 401, "expired": 403}
_ACK_REFUSALS = {
    "malformed": "malformed token: a link token (<expiry>.<hex>) or an officer token (hex)",
    "refused": "a valid ack link token or officer token (Authorization: Bearer) is required",
    "expired": "this ack link has expired; acknowledge with your officer token",
}


class _PathOnlyAccessLogger(AbstractAccessLogger):
    """aiohttp's access log without the query string or the Authorization header.

    The default format logs the request line, ``?token=...`` included, so
    anyone reading the logs could acknowledge pages.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %.3fs',
            request.remote,
            request.method,
            request.path,
            response.status,
            time,
        )


def _journal_record(value: bytes | None) -> PageRecord:
    """A journal record, with the alert it carries checked too (a restart resumes from it)."""
    if value is None:
        raise ContractError("no value (a tombstone)")
    record = contract.decode_as(value, PageRecord)
    if record.alert is not None:
        try:
            contract.from_dict(record.alert, expect=Alert)
        except ContractError as exc:
            raise ContractError(f"the alert it carries: {exc}") from None
    return record


class _Offsets:
    """Offsets handled out of order, committed in order: the committable prefix per partition."""

    def __init__(self) -> None:
        self.pending: dict[TopicPartition, dict[int, bool]] = {}

    def track(self, tp: TopicPartition, offset: int) -> None:
        self.pending.setdefault(tp, {})[offset] = False

    def done(self, tp: TopicPartition, offset: int) -> None:
        if offset in self.pending.get(tp, {}):
            self.pending[tp][offset] = True

    def take(self, assigned: set[TopicPartition]) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for tp in list(self.pending):
            if tp not in assigned:
                del self.pending[tp]  # revoked: the new owner re-reads it
                continue
            offsets = self.pending[tp]
            while offsets and offsets[first := next(iter(offsets))]:
                del offsets[first]
                out[tp] = first + 1
        return out

    def __len__(self) -> int:
        return sum(len(v) for v in self.pending.values())


class Pager:
    def __init__(
        self,
        kafka: KafkaSettings,
        settings: PagerSettings,
        roster: Roster,
        secrets: Mapping[Webhook, bytes],
        *,
        clock: Clock | None = None,
        seed: int | None = None,
    ) -> None:
        self.kafka, self.settings, self.roster, self.secrets = kafka, settings, roster, secrets
        self.ack_secret = settings.load_ack_secret()
        self.clock: Clock = clock or SystemClock()
        rng = random.Random(seed)  # noqa: S311 - jitter, not crypto
        self.backoff = Backoff(settings.retry_initial_s, settings.retry_cap_s, rng)
        self.ack_timeout = timedelta(seconds=settings.ack_timeout_s)
        self.ledger = Ledger()
        self.stats: Counter[str] = Counter()
        self.pages_topic = kafka.topic(contract.PAGES)
        self._offsets = _Offsets()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._acks: dict[str, asyncio.Event] = {}
        self._kafka_thread = ThreadPoolExecutor(1, thread_name_prefix="pager-kafka")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._stop_requested = False
        self._fatal: BaseException | None = None

    # --- lifecycle -----------------------------------------------------------

    def stop(self) -> None:
        """Ask the pager to stop; safe from signal handlers and other threads."""
        self._stop_requested = True
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    def run(self) -> None:
        asyncio.run(self._main())
        if self._fatal is not None:
            raise self._fatal

    async def _in_kafka(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._kafka_thread, fn, *args)

    async def _main(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        if self._stop_requested:
            self._stopping.set()
        self.producer = make_producer(self.kafka, client_id="scantrail-pager", linger_ms=5)
        runner: web.AppRunner | None = None
        try:
            await self._in_kafka(self._read_journal)
            self.consumer = await self._in_kafka(self._make_consumer)
            self.session = aiohttp.ClientSession()
            runner = self._runner()
            await runner.setup()
            await web.TCPSite(runner, self.settings.host, self.settings.port).start()
            log.info("pager listening on %s:%d", self.settings.host, self.settings.port)
            for state in self.ledger.open_pages():
                self._spawn(self._resume(state.alert_id))
            await self._consume()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if runner is not None:
                await runner.cleanup()
            if hasattr(self, "session"):
                await self.session.close()
            await self._in_kafka(self._close_kafka)
            self._kafka_thread.shutdown(wait=True)

    def _close_kafka(self) -> None:
        with contextlib.suppress(KafkaError):
            self.producer.flush(timeout=30)
            self.producer.close()
            if hasattr(self, "consumer"):
                self.consumer.close(autocommit=False)
            if hasattr(self, "_journal"):
                self._journal.close()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error(
                "pager task failed; stopping so a restart resumes from the journal", exc_info=exc
            )
            self._fatal = self._fatal or exc
            self.stop()

    # --- Kafka -----------------------------------------------------------------

    def _read_journal(self) -> None:
        """Fold the whole pages topic into the ledger (runs on the Kafka thread).

        A record that does not read (or whose carried alert does not) is
        skipped, counted (``journal_unreadable``) and dead-lettered once: one
        bad record must not stop paging from starting, on this start or any
        later one.
        """
        check_login(self.kafka)
        reader = KafkaConsumer(
            **connection(self.kafka),
            enable_auto_commit=False,
            client_id="scantrail-pager-journal",
        )
        kept = False
        unreadable: list[tuple[Any, str]] = []
        try:
            if not reader.partitions_for_topic(self.pages_topic):
                raise ServiceError(f"topic {self.pages_topic} is missing: run `scantrail topics`")
            for message in read_from_start(reader, self.pages_topic):
                try:
                    record = _journal_record(message.value)
                except ContractError as exc:
                    log.warning(
                        "unreadable page record at %s[%d]@%d: %s",
                        message.topic, message.partition, message.offset, exc,
                    )  # fmt: skip
                    unreadable.append((message, str(exc)))
                    continue
                self.ledger.apply(record)
            log.info("journal read: %d alerts known", len(self.ledger.alerts))
            self._journal, kept = reader, True  # keeps following: acks written by others
        finally:
            if not kept:
                reader.close()
        self.stats["journal_unreadable"] += len(unreadable)
        if unreadable:
            self._dead_letter_journal(unreadable)

    def _dead_letter_journal(self, unreadable: list[tuple[Any, str]]) -> None:
        """Dead-letter unreadable journal records not dead-lettered by an earlier start.

        The journal is re-read on every start, so the dead-letter topic is
        read first (only when there is something to dead-letter) to find the
        records already there.
        """
        deadletter = self.kafka.topic(contract.DEADLETTER)
        known: set[tuple[int | None, int | None]] = set()
        reader = KafkaConsumer(
            **connection(self.kafka), enable_auto_commit=False, client_id="scantrail-pager-dlq"
        )
        try:
            for message in read_from_start(reader, deadletter):
                try:
                    letter = contract.decode_as(message.value, contract.DeadLetter)
                except ContractError:
                    continue
                if letter.topic == self.pages_topic:
                    known.add((letter.partition, letter.offset))
        finally:
            reader.close()
        futures = [
            send_dead_letter(
                self.producer,
                deadletter,
                topic=m.topic,
                partition=m.partition,
                offset=m.offset,
                key=m.key,
                value=m.value,
                reason=f"unreadable pages journal record: {reason}",
                seen_at=self.clock.now(),
            )  # fmt: skip
            for m, reason in unreadable
            if (m.partition, m.offset) not in known
        ]
        for future in futures:
            future.get(120)  # durable before paging starts; a failure stops the start-up
        self.stats["deadletter"] += len(futures)

    def _follow_journal(self) -> list[PageRecord]:
        """Acknowledgements appended by others (the console) since the last look.

        The pager's own records come back too; only an ``acknowledged`` for an
        alert the ledger does not yet know as acknowledged is news.
        """
        news: list[PageRecord] = []
        for messages in self._journal.poll(timeout_ms=0).values():
            for message in messages:
                try:
                    record = cast(PageRecord, contract.decode(message.value, expect=PageRecord))
                except ContractError:
                    continue
                state = self.ledger.alerts.get(record.alert_id)
                if record.action == "acknowledged" and (state is None or state.acked_by is None):
                    news.append(record)
        return news

    def _make_consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            self.kafka.topic(contract.ALERTS),
            **connection(self.kafka),
            group_id=f"{self.kafka.namespace}{self.settings.group}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=500,
            client_id="scantrail-pager",
        )

    def _poll(self) -> tuple[dict[TopicPartition, list[Any]], list[PageRecord]]:
        acks = self._follow_journal()
        assigned = self.consumer.assignment()
        if len(self._offsets) >= self.settings.max_in_flight:
            self.consumer.pause(*assigned)
        elif self.consumer.paused():
            self.consumer.resume(*self.consumer.paused())
        batch: dict[TopicPartition, list[Any]] = self.consumer.poll(timeout_ms=300)
        return batch, acks

    def _commit(self) -> None:
        offsets = self._offsets.take(set(self.consumer.assignment()))
        if not offsets:
            return
        try:
            self.consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        except CommitFailedError:
            log.warning("commit refused after a rebalance; the new owner re-delivers")

    async def _consume(self) -> None:
        while self._stopping is not None and not self._stopping.is_set():
            batch, acks = await self._in_kafka(self._poll)
            for record in acks:
                self._acknowledged_elsewhere(record)
            for tp, messages in batch.items():
                for message in messages:
                    self._offsets.track(tp, message.offset)
                    self._spawn(self._handle_message(tp, message))
            await asyncio.sleep(0)  # let fresh tasks record their outcome before committing
            await self._in_kafka(self._commit)

    def _acknowledged_elsewhere(self, record: PageRecord) -> None:
        """An ack from the console (or another pager's endpoint) stops this pager's escalation."""
        state = self.ledger.alerts.get(record.alert_id)
        if state is not None and state.acked_by is not None:
            return
        self.ledger.apply(record)
        self.stats["acknowledged_elsewhere"] += 1
        log.info("%s acknowledged by %s (journal)", record.alert_id, record.officer_id)
        self._acks.setdefault(record.alert_id, asyncio.Event()).set()

    async def _record(self, durable: bool = False, **fields: Any) -> PageRecord:
        """Append a record; ``durable`` waits for Kafka's ack before the ledger sees it."""
        record = PageRecord(at=self.clock.now(), **fields)
        future = self.producer.send(
            self.pages_topic, key=record.key(), value=contract.encode(record)
        )
        if durable:
            await asyncio.to_thread(future.get, 120)
        self.ledger.apply(record)
        self.stats[record.action] += 1
        return record

    # --- alerts ----------------------------------------------------------------

    async def _handle_message(self, tp: TopicPartition, message: Any) -> None:
        try:
            alert = contract.decode(message.value, expect=Alert)
        except ContractError as exc:
            self.stats["deadletter"] += 1
            future = send_dead_letter(
                self.producer, self.kafka.topic(contract.DEADLETTER),
                topic=message.topic, partition=message.partition, offset=message.offset,
                key=message.key, value=message.value, reason=str(exc), seen_at=self.clock.now(),
            )  # fmt: skip
            await asyncio.to_thread(future.get, 120)
        else:
            await self._handle_alert(cast(Alert, alert))
        self._offsets.done(tp, message.offset)

    async def _handle_alert(self, alert: Alert) -> None:
        """Returns once the alert's outcome is durable; escalation carries on in its own task."""
        base: dict[str, Any] = {
            "alert_id": alert.alert_id,
            "site_id": alert.site_id,
            "severity": alert.severity,
        }
        async with self._locks.setdefault(alert.alert_id, asyncio.Lock()):
            if self.ledger.is_handled(alert.alert_id):
                await self._record(True, action="duplicate", reason="already handled", **base)
                return
            decision = decide(alert, self.roster, self.clock.now())
            if isinstance(decision, Queue):
                await self._record(True, action="queued", alert=alert.to_dict(), **base)
            elif not isinstance(decision, Page):
                await self._record(True, action="skipped", reason=decision.reason, **base)
            else:
                outcome = asyncio.Event()
                now = self.clock.now()
                page_task = self._spawn(self._page(alert, decision, outcome, now, deliver=True))
                waiter = asyncio.ensure_future(outcome.wait())
                await asyncio.wait({page_task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if not outcome.is_set():
                    raise asyncio.CancelledError  # shutting down: leave the offset uncommitted

    async def _resume(self, alert_id: str) -> None:
        """Carry on an open critical page found in the journal after a restart."""
        state = self.ledger.alerts[alert_id]
        if state.alert is None or state.officer_id is None:
            return
        alert = cast(Alert, contract.from_dict(state.alert, expect=Alert))
        now = self.clock.now()
        started = state.step_started or now
        officer = self.roster.officer(alert.site_id, state.officer_id)
        deliver = not state.step_delivered
        if officer is None:  # left the roster since: escalate at once
            officer, deliver, started = (
                Officer(id=state.officer_id, hours=()),
                False,
                now - self.ack_timeout,
            )
        page = Page(officer=officer, step=state.step, on_duty=officer.on_duty(now))
        log.info("resuming %s at step %d (%s)", alert_id, state.step, state.officer_id)
        await self._page(alert, page, asyncio.Event(), started, deliver=deliver)

    async def _page(
        self, alert: Alert, page: Page, outcome: asyncio.Event, started: datetime, *, deliver: bool
    ) -> None:
        """Deliver to one officer after another until somebody acknowledges or nobody is left.

        Each step escalates ``ack_timeout`` after it started, delivered or not:
        an officer whose phone is off must not hold up the next one.
        """
        ack = self._acks.setdefault(alert.alert_id, asyncio.Event())
        base: dict[str, Any] = {
            "alert_id": alert.alert_id,
            "site_id": alert.site_id,
            "severity": alert.severity,
        }
        while True:
            delivery = self._spawn(self._deliver(alert, page, outcome)) if deliver else None
            left = (started + self.ack_timeout - self.clock.now()).total_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ack.wait(), timeout=max(left, 0.0))
            if delivery is not None:
                delivery.cancel()
            if ack.is_set():
                outcome.set()
                return
            paged = self.ledger.alerts[alert.alert_id].paged
            nxt = next_page(self.roster, alert.site_id, paged, page.step + 1, self.clock.now())
            timeout_s = self.ack_timeout.total_seconds()
            if nxt is None:
                log.error("nobody acknowledged %s; every officer was paged", alert.alert_id)
                await self._record(
                    True, action="exhausted", step=page.step, officer_id=page.officer.id,
                    reason=f"no acknowledgement from any of {paged}", **base,
                )  # fmt: skip
                outcome.set()
                return
            await self._record(
                True, action="escalated", step=nxt.step, officer_id=nxt.officer.id,
                alert=alert.to_dict(), **base,
                reason=f"no ack from {page.officer.id} within {timeout_s:g} s"
                + ("" if nxt.on_duty else "; nobody else on duty"),
            )  # fmt: skip
            outcome.set()
            page, deliver, started = nxt, True, self.clock.now()

    async def _deliver(self, alert: Alert, page: Page, outcome: asyncio.Event) -> None:
        ack_url = self._ack_url(alert.alert_id, page.officer.id)
        message = PageMessage(alert, page.officer.id, page.step, ack_url)
        channels = self._channels(page.officer)
        await asyncio.gather(*(self._deliver_one(c, message, page, outcome) for c in channels))

    async def _deliver_one(
        self, channel: Channel, message: PageMessage, page: Page, outcome: asyncio.Event
    ) -> None:
        """One channel, retried with backoff until delivered, refused for good, or cancelled."""
        alert = message.alert
        base: dict[str, Any] = {
            "alert_id": alert.alert_id, "site_id": alert.site_id, "severity": alert.severity,
            "officer_id": page.officer.id, "channel": channel.name, "step": page.step,
        }  # fmt: skip
        attempt = 0
        while True:
            attempt += 1
            duty = "" if page.on_duty else "off duty"
            await self._record(action="attempt", attempt=attempt, reason=duty, **base)
            try:
                await channel.send(message)
            except ChannelError as exc:
                await self._record(action="failed", attempt=attempt, reason=str(exc), **base)
                if exc.permanent:
                    log.error("%s to %s refused for good: %s", channel.name, page.officer.id, exc)
                    return
                delay = self.backoff.delay(attempt - 1)
                log.warning(
                    "%s to %s failed (%s); retry in %.1f s",
                    channel.name,
                    page.officer.id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            await self._record(
                True, action="delivered", attempt=attempt, alert=alert.to_dict(), **base
            )
            outcome.set()
            return

    def _channels(self, officer: Officer) -> list[Channel]:
        channels: list[Channel] = []
        if officer.webhook is not None:
            secret = self.secrets[officer.webhook]
            channels.append(WebhookChannel(officer.webhook.url, secret, self.session))
        if officer.email is not None:
            channels.append(EmailChannel(officer.email, self.settings.smtp()))
        return channels

    def _ack_url(self, alert_id: str, officer_id: str) -> str:
        """The one-click ack link of one page: it acknowledges as that officer only."""
        base = self.settings.public_url or f"http://{self.settings.host}:{self.settings.port}"
        expires_at = int(self.clock.now().timestamp() + self.settings.ack_link_ttl_s)
        token = link_token(self.ack_secret, alert_id, officer_id, expires_at)
        query = urlencode({"officer": officer_id, "token": token})
        return f"{base.rstrip('/')}/ack/{quote(alert_id, safe=':')}?{query}"

    @staticmethod
    def _presented_token(request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return header[len("Bearer ") :].strip()
        return request.query.get("token", "")

    # --- HTTP ------------------------------------------------------------------

    def _runner(self) -> web.AppRunner:
        """The HTTP server; its access log names paths, never queries (tokens travel there)."""
        return web.AppRunner(self._app(), access_log_class=_PathOnlyAccessLogger)

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/ack/{alert_id}", self._http_ack)
        app.router.add_get("/queue/{site_id}", self._http_queue)
        app.router.add_get("/healthz", self._http_health)
        return app

    async def _http_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "in_flight": len(self._offsets)})

    async def _http_ack(self, request: web.Request) -> web.Response:
        """Record an acknowledgement from the officer the token belongs to (sinks.ack_tokens).

        The officer is named by the link (``?officer=``) or the body
        (``{"officer_id": ...}``); a token that does not sign this officer
        (and, for a link, this alert) is refused before anything is looked up.
        """
        alert_id = request.match_info["alert_id"]
        officer_id: Any = request.query.get("officer")
        if request.can_read_body:
            try:
                body = await request.json()
                officer_id = body.get("officer_id", officer_id) if isinstance(body, dict) else None
            except ValueError:
                officer_id = None
        if not isinstance(officer_id, str) or not officer_id:
            msg = 'name the officer: {"officer_id": "..."} or ?officer=...'
            return web.json_response({"error": msg}, status=400)
        token = self._presented_token(request)
        verdict = (
            check_ack(self.ack_secret, alert_id, officer_id, token, self.clock.now().timestamp())
            if token
            else "refused"
        )
        if verdict != "ok":
            self.stats[f"ack_{verdict}"] += 1
            self.stats["ack_refused"] += 1
            return web.json_response({"error": _ACK_REFUSALS[verdict]}, status=_ACK_STATUS[verdict])
        state = self.ledger.alerts.get(alert_id)
        if state is None or not state.handled:
            return web.json_response({"error": f"unknown alert {alert_id}"}, status=404)
        if self.roster.officer(state.site_id, officer_id) is None:
            msg = f"{officer_id} is not on the roster of {state.site_id}"
            return web.json_response({"error": msg}, status=403)
        already = state.acked_by is not None
        if not already:
            state.acked_by = officer_id  # claim before the await: a second ack is "already"
            await self._record(
                True, action="acknowledged", officer_id=officer_id, step=state.step,
                alert_id=alert_id, site_id=state.site_id, severity=state.severity,
            )  # fmt: skip
            self._acks.setdefault(alert_id, asyncio.Event()).set()
        body = {"alert_id": alert_id, "acknowledged_by": state.acked_by, "already": already}
        return web.json_response(body)

    async def _http_queue(self, request: web.Request) -> web.Response:
        """A site's queued warnings, for an officer of that site (bearer officer token)."""
        site_id = request.match_info["site_id"]
        officer_id = request.query.get("officer", "")
        token = self._presented_token(request)
        if token and not well_formed(token):
            self.stats["queue_refused"] += 1
            return web.json_response({"error": _ACK_REFUSALS["malformed"]}, status=400)
        if not officer_id or not token or not is_officer(self.ack_secret, officer_id, token):
            self.stats["queue_refused"] += 1
            msg = "?officer=... and that officer's token (Authorization: Bearer) are required"
            return web.json_response({"error": msg}, status=401)
        if self.roster.officer(site_id, officer_id) is None:
            msg = f"{officer_id} is not on the roster of {site_id}"
            return web.json_response({"error": msg}, status=403)
        items = [
            {"alert_id": s.alert_id, "queued_at": s.queued_at.isoformat() if s.queued_at else None}
            | {k: (s.alert or {}).get(k) for k in ("kind", "person_id", "event_time", "detail")}
            for s in self.ledger.queue(site_id)
        ]
        return web.json_response({"site_id": site_id, "queued": items})

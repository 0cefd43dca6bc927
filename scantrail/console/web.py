"""The console's HTTP server: aiohttp, server-rendered pages, live updates over SSE.

Pages are Jinja2 templates rendered on the server with autoescape; the only
script is ``static/console.js`` (sorting, the live queue, the big screen's
refresh), served from here with a strict Content-Security-Policy, so nothing is
fetched from anywhere else. Every request but the log-in page needs a session;
every POST needs the session's CSRF token. Console actions on an alert are
``page/1`` records on ``scantrail.pages``, written and acknowledged by Kafka
before the page says they are done; case views and traces are ``audit/1``
records on ``scantrail.audit``, written before the answer leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from processors.contacts import ContactPolicy
from processors.contacts import trace as run_trace
from processors.screening_state import rounded_median
from processors.trace_report import to_csv
from processors.trails import from_micros, to_micros
from scantrail import contract
from scantrail.audit import AuditLog, audit_record
from scantrail.clock import Clock, SystemClock
from scantrail.console.accounts import Account, Throttle, authenticate, load_accounts
from scantrail.console.board import Board, Filters, Row
from scantrail.console.charts import contact_graph, encounter_timeline, temperature_curve
from scantrail.console.i18n import LANGUAGES, negotiate, translator
from scantrail.console.replays import ReplayJob, ReplayJobs, parse_request
from scantrail.console.replays import run as run_replay
from scantrail.console.sessions import Session, Sessions, password_fingerprint, same_token
from scantrail.console.sources import Follower, Influx, load_trail_index
from scantrail.contract import Alert, PageRecord, QuarantineRecord
from scantrail.errors import PublishError
from scantrail.settings import ConsoleSettings, InfluxSettings, KafkaSettings

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
COOKIE = "scantrail_session"
LOGIN_COOKIE = "scantrail_login"
CURVE_DAYS = 14
BASELINE_MIN_DATES = 3
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


class Console:
    def __init__(
        self,
        settings: ConsoleSettings,
        kafka: KafkaSettings,
        influx: InfluxSettings,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.settings, self.kafka, self.influx_settings = settings, kafka, influx
        self.clock: Clock = clock or SystemClock()
        self.accounts_path = settings.accounts_path()
        self.accounts = load_accounts(self.accounts_path)
        self.accounts_mtime = self._mtime()
        self.board = Board()
        self.quarantine: dict[str, QuarantineRecord] = {}
        self.sessions = Sessions(
            settings.sessions_path(),
            idle_s=settings.session_hours * 3600,
            absolute_s=settings.session_max_hours * 3600,
        )
        self.throttle = Throttle()
        self.changed: asyncio.Condition | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.audit = AuditLog(kafka)
        self.follower = Follower(kafka, self._from_thread)
        self.replays = ReplayJobs()
        self._producer: Any = None
        self._notifying = False
        self._closing = False
        self._tasks: set[asyncio.Future[None]] = set()
        self._influx: Influx | None = None

    # --- data in -----------------------------------------------------------------

    def _from_thread(self, event: contract.Event) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._apply, event)

    def _apply(self, event: contract.Event) -> None:
        if isinstance(event, Alert):
            self.board.add_alert(event)
        elif isinstance(event, PageRecord):
            self.board.apply(event)
        elif isinstance(event, QuarantineRecord):
            self.quarantine[event.person_id] = event
        if self.changed is not None and not self._notifying:
            self._notifying = True  # one wake-up for a burst of records
            asyncio.ensure_future(self._notify())

    async def _notify(self) -> None:
        self._notifying = False
        if self.changed is None:
            return
        async with self.changed:
            self.changed.notify_all()

    def _mtime(self) -> float:
        try:
            return self.accounts_path.stat().st_mtime
        except OSError:
            return 0.0

    def _reload_accounts(self) -> None:
        """``scantrail console adduser`` while the console runs takes effect on the next log-in."""
        mtime = self._mtime()
        if mtime != self.accounts_mtime:
            self.accounts, self.accounts_mtime = load_accounts(self.accounts_path), mtime

    @property
    def influx(self) -> Influx:
        if self._influx is None:
            self._influx = Influx(self.influx_settings)
        return self._influx

    @property
    def producer(self) -> Any:
        if self._producer is None:
            from scantrail.broker import make_producer

            self._producer = make_producer(self.kafka, client_id="scantrail-console", linger_ms=0)
        return self._producer

    # --- lifecycle ---------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._security, self._auth])
        r = app.router
        r.add_get("/login", self.login_page)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        r.add_get("/lang/{lang}", self.set_language)
        r.add_get("/", self.home)
        r.add_get("/queue", self.queue_page)
        r.add_get("/queue/rows", self.queue_rows)
        r.add_get("/events", self.events)
        r.add_get("/escalations", self.escalations_banner)
        r.add_get("/alerts/{alert_id}", self.case_page)
        r.add_post("/alerts/{alert_id}/{action}", self.alert_action)
        r.add_get("/trace", self.trace_page)
        r.add_get("/trace.csv", self.trace_csv)
        r.add_get("/replay", self.replay_page)
        r.add_post("/replay", self.replay_start)
        r.add_get("/replay/{job}", self.replay_job_page)
        r.add_get("/replay/{job}/progress", self.replay_progress)
        r.add_get("/replay/{job}/summary.png", self.replay_plot)
        r.add_get("/replay/{job}/trails.parquet", self.replay_trails)
        r.add_get("/bigscreen", self.bigscreen_page)
        r.add_get("/bigscreen/data", self.bigscreen_data)
        r.add_get("/healthz", self.health)
        r.add_static("/static", HERE / "static")
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._closing_streams)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        self.loop = asyncio.get_running_loop()
        self.changed = asyncio.Condition()
        self.follower.start()
        self.sessions.prune(time.time())

    async def _closing_streams(self, app: web.Application) -> None:
        """End the SSE streams and replays first: a restart must not wait for open browsers."""
        self._closing = True
        self.replays.cancel_all()
        await self._notify()

    async def _stop(self, app: web.Application) -> None:
        await asyncio.to_thread(self.follower.stop)
        if self._producer is not None:
            await asyncio.to_thread(self._producer.close)
        self.audit.close()
        if self._influx is not None:
            self._influx.close()
        self.sessions.close()

    # --- middleware ----------------------------------------------------------------

    @web.middleware
    async def _security(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.path.startswith("/static"):
            response.headers.setdefault("Cache-Control", "no-store")
        if isinstance(response, web.HTTPException) and response.status >= 400:
            return self._error_page(request, response)
        if isinstance(response, web.HTTPException):
            raise response
        return response

    def _error_page(self, request: web.Request, exc: web.HTTPException) -> web.StreamResponse:
        if exc.content_type != "text/plain" or request.path.startswith("/static"):
            return exc
        t = translator(self.lang(request))
        text = {403: t("forbidden"), 404: t("not_found")}.get(exc.status, exc.reason)
        body = self.templates.get_template("error.html").render(
            **self._common(request), status=exc.status, message=text
        )
        response = web.Response(text=body, status=exc.status, content_type="text/html")
        response.headers["Content-Security-Policy"] = CSP
        return response

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in ("/login", "/healthz") or request.path.startswith(
            ("/static/", "/lang/")
        ):
            return await handler(request)
        session = self._session(request)
        account = None if session is None else self.accounts.get(session.user)
        if session is None or account is None:
            if request.method == "GET" and request.path not in ("/events", "/queue/rows"):
                raise web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs}))
            raise web.HTTPUnauthorized()
        if request.method == "POST":
            form = await request.post()
            if not same_token(session.csrf, form.get("csrf")):
                raise web.HTTPForbidden(reason="CSRF token missing or wrong")
        request["session"], request["account"] = session, account
        return await handler(request)

    def _session(self, request: web.Request) -> Session | None:
        """The request's live session; one whose account is gone or changed its password ends."""
        session = self.sessions.get(request.cookies.get(COOKIE), time.time())
        if session is None:
            return None
        self._reload_accounts()
        account = self.accounts.get(session.user)
        if account is None or session.password_fingerprint != password_fingerprint(
            account.password_hash
        ):
            self.sessions.end(session.sid)  # each stale session of the account ends like this
            return None
        return session

    # --- helpers -----------------------------------------------------------------------

    def lang(self, request: web.Request) -> str:
        return negotiate(request.headers.get("Accept-Language", ""), request.cookies.get("lang"))

    def _secure(self, request: web.Request) -> bool:
        return (
            self.settings.secure_cookies
            or request.secure
            or request.headers.get("X-Forwarded-Proto") == "https"
        )

    def zone(self, site_id: str | None = None) -> ZoneInfo:
        return ZoneInfo(self.settings.zone_name(site_id or ""))

    def _common(self, request: web.Request) -> dict[str, Any]:
        lang = self.lang(request)
        session: Session | None = request.get("session")
        return {
            "t": translator(lang),
            "lang": lang,
            "other_lang": "en" if lang == "zh-CN" else "zh-CN",
            "account": request.get("account"),
            "csrf": session.csrf if session else "",
            "path": request.path_qs,
            "escalations": self._escalations(request.get("account")),
        }

    def _escalations(self, account: Account | None) -> dict[str, Any] | None:
        """The banner every page of an officer or supervisor carries, refreshed over SSE."""
        if account is None or not account.receives_escalations:
            return None
        rows = self.board.escalations(account.sees_site)
        shown = []
        for row in rows[:5]:
            a, state = row.alert, self.board.state(row.alert_id)
            shown.append(
                {
                    "alert": a,
                    "status": self.board.status(row),
                    "step": state.step if state else 0,
                    "since": self.local(state.step_started if state else None, a.site_id)[11:16],
                    "paged": state.officer_id if state else None,
                }
            )
        return {"count": len(rows), "rows": shown}

    def render(self, request: web.Request, name: str, **values: Any) -> web.Response:
        body = self.templates.get_template(name).render(**self._common(request), **values)
        return web.Response(text=body, content_type="text/html")

    def local(self, moment: datetime | None, site_id: str | None = None) -> str:
        if moment is None:
            return ""
        return moment.astimezone(self.zone(site_id)).strftime("%Y-%m-%d %H:%M:%S")

    async def _audit(self, account: Account, **fields: Any) -> None:
        record = audit_record(
            at=self.clock.now(), actor=account.actor, role=account.role, channel="console",
            **fields,
        )  # fmt: skip
        await asyncio.to_thread(self.audit.append, record)

    # --- log-in ------------------------------------------------------------------------

    async def login_page(self, request: web.Request, error: str = "") -> web.Response:
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = self.render(
            request,
            "login.html",
            login_csrf=token,
            error=error,
            next=request.query.get("next", "/queue"),
        )
        response.set_cookie(
            LOGIN_COOKIE, token, httponly=True, samesite="Strict", secure=self._secure(request)
        )
        return response

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        t = translator(self.lang(request))
        if not same_token(request.cookies.get(LOGIN_COOKIE, ""), form.get("csrf")):
            raise web.HTTPForbidden(reason="CSRF token missing or wrong")
        name = str(form.get("user", "")).strip().lower()[:64]
        password = str(form.get("password", ""))[:1024]
        keys = [f"user:{name}", f"addr:{request.remote}"]
        now = time.monotonic()
        wait = self.throttle.retry_after(keys, now)
        if wait > 0:
            response = await self.login_page(request, t("throttled", seconds=int(wait) + 1))
            response.set_status(429)
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        self._reload_accounts()
        account = await asyncio.to_thread(authenticate, self.accounts, name, password)
        if account is None:
            self.throttle.failed(keys, now)
            response = await self.login_page(request, t("login_failed"))
            response.set_status(401)
            return response
        self.throttle.succeeded([f"user:{name}"])
        session = self.sessions.create(
            account.name, time.time(), password_fingerprint(account.password_hash)
        )
        target = str(form.get("next", "/queue"))
        if not target.startswith("/") or target.startswith("//"):
            target = "/queue"
        response = web.HTTPSeeOther(target)
        response.set_cookie(
            COOKIE, session.sid, httponly=True, samesite="Strict", secure=self._secure(request),
            path="/",
        )  # fmt: skip
        response.del_cookie(LOGIN_COOKIE)
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        self.sessions.end(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def set_language(self, request: web.Request) -> web.Response:
        lang = request.match_info["lang"]
        back = request.query.get("next", "/queue")
        if not back.startswith("/") or back.startswith("//"):
            back = "/queue"
        response = web.HTTPSeeOther(back)
        if lang in LANGUAGES:
            response.set_cookie(
                "lang", lang, samesite="Strict", secure=self._secure(request), max_age=31536000
            )
        raise response

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "ok": True,
                "caught_up": self.follower.caught_up.is_set(),
                "alerts": len(self.board.rows),
                "skipped_records": self.follower.skipped,
            }
        )

    # --- the queue ----------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.Response:
        account: Account = request["account"]
        raise web.HTTPSeeOther("/trace" if account.role == "epidemiologist" else "/queue")

    def _rows(self, request: web.Request) -> dict[str, Any]:
        account: Account = request["account"]
        filters = Filters.of(request.query)
        rows = self.board.visible(account.sees_site, filters)[:500]
        return {
            "rows": [self._row_view(r, account) for r in rows],
            "filters": filters,
            "version": self.board.version,
        }

    def _row_view(self, row: Row, account: Account) -> dict[str, Any]:
        a = row.alert
        state = self.board.state(a.alert_id)
        status = self.board.status(row)
        return {
            "alert": a,
            "time": self.local(a.event_time, a.site_id),
            "status": status,
            "acked_by": state.acked_by if state else None,
            "paged": ", ".join(state.paged) if state else "",
            "assigned_to": row.assigned_to,
            "may_act": account.may_act(a.site_id),
            "open": status not in ("acknowledged", "resolved"),
            "assignees": self._assignees(a.site_id),
        }

    def _assignees(self, site_id: str) -> list[str]:
        return sorted(
            a.name
            for a in self.accounts.values()
            if a.role == "supervisor" or (a.role == "officer" and site_id in a.sites)
        )

    async def queue_page(self, request: web.Request) -> web.Response:
        account: Account = request["account"]
        return self.render(
            request,
            "queue.html",
            **self._rows(request),
            sites=self.board.sites(account.sees_site),
            kinds=self.board.kinds(),
            query=request.query_string,
            zone=self.settings.timezone,
        )

    async def escalations_banner(self, request: web.Request) -> web.Response:
        return self.render(request, "_escalations.html")

    async def queue_rows(self, request: web.Request) -> web.Response:
        return self.render(request, "_rows.html", **self._rows(request))

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``board`` with the board's version whenever it changes."""
        if self.changed is None:
            raise web.HTTPServiceUnavailable()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        seen = -1
        try:
            while not self._closing:
                if self.board.version != seen:
                    seen = self.board.version
                    await response.write(f"event: board\ndata: {seen}\n\n".encode())
                async with self.changed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.changed.wait(), timeout=15)
                await asyncio.sleep(0.2)  # a burst of records is one refresh
                if self.board.version == seen and not self._closing:
                    await response.write(b": keep-alive\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    def _row_or_403(self, request: web.Request) -> Row:
        account: Account = request["account"]
        row = self.board.rows.get(request.match_info["alert_id"])
        if row is None:
            raise web.HTTPNotFound()
        if not account.sees_site(row.alert.site_id):
            raise web.HTTPForbidden()
        return row

    async def alert_action(self, request: web.Request) -> web.Response:
        account: Account = request["account"]
        action = request.match_info["action"]
        if action not in ("ack", "assign", "resolve"):
            raise web.HTTPNotFound()
        row = self._row_or_403(request)
        a = row.alert
        if not account.may_act(a.site_id):
            raise web.HTTPForbidden()
        form = await request.post()
        base: dict[str, Any] = {
            "alert_id": a.alert_id,
            "site_id": a.site_id,
            "severity": a.severity,
        }
        state = self.board.state(a.alert_id)
        records: list[PageRecord] = []
        step = state.step if state else 0
        if action in ("ack", "resolve") and (state is None or state.acked_by is None):
            records.append(
                PageRecord(
                    action="acknowledged",
                    at=self.clock.now(),
                    officer_id=account.actor,
                    by=account.actor,
                    step=step,
                    reason="acknowledged in the console",
                    **base,
                )  # fmt: skip
            )
        if action == "assign":
            who = str(form.get("to", ""))
            if who not in self._assignees(a.site_id):
                raise web.HTTPBadRequest(reason=f"{who!r} may not take alerts of {a.site_id}")
            records.append(
                PageRecord(
                    action="assigned",
                    at=self.clock.now(),
                    officer_id=f"console:{who}",
                    by=account.actor,
                    step=step,
                    reason=f"assigned by {account.name}",
                    **base,
                )  # fmt: skip
            )
        if action == "resolve":
            note = str(form.get("note", "")).strip()[:2000]
            records.append(
                PageRecord(
                    action="resolved",
                    at=self.clock.now(),
                    officer_id=account.actor,
                    by=account.actor,
                    step=step,
                    reason=note,
                    **base,
                )  # fmt: skip
            )
        await self._publish(records)
        back = str(form.get("next", "/queue"))
        if not back.startswith("/") or back.startswith("//"):
            back = "/queue"
        raise web.HTTPSeeOther(back)

    async def _publish(self, records: list[PageRecord]) -> None:
        """Write to the pages topic and wait for Kafka's ack, then for the board to show it."""
        topic = self.kafka.topic(contract.PAGES)

        def send() -> None:
            futures = [
                self.producer.send(topic, key=r.key(), value=contract.encode(r)) for r in records
            ]
            for future in futures:
                future.get(timeout=30)

        try:
            await asyncio.to_thread(send)
        except Exception as exc:
            raise PublishError(f"console action not stored on {topic}: {exc}") from None
        want = {(r.alert_id, r.action, r.at) for r in records}
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            row = self.board.rows.get(records[0].alert_id)
            have = {(h.alert_id, h.action, h.at) for h in row.history} if row else set()
            if want <= have:
                return
            await asyncio.sleep(0.05)

    # --- the case view ----------------------------------------------------------------------

    async def case_page(self, request: web.Request) -> web.Response:
        account: Account = request["account"]
        alert_id = request.match_info["alert_id"]
        try:
            row = self._row_or_403(request)
        except web.HTTPForbidden:
            await self._audit(
                account, action="case_view", outcome="refused",
                reason="alert of a site outside the account's sites", detail={"alert_id": alert_id},
            )  # fmt: skip
            raise
        a = row.alert
        tz = self.zone(a.site_id)
        end = self.clock.now()
        end = max(end, a.event_time + timedelta(hours=1))
        start = end - timedelta(days=CURVE_DAYS)
        t = translator(self.lang(request))
        points: list[tuple[datetime, float]] = []
        evidence: list[dict[str, Any]] = []
        influx_error = ""
        try:
            if a.person_id:
                points = await asyncio.to_thread(self.influx.curve, a.person_id, start, end)
            evidence = await asyncio.to_thread(self.influx.readings, list(a.evidence), a.event_time)
        except Exception as exc:  # InfluxDB down or refusing: the rest of the case still shows
            log.warning("case %s: InfluxDB query failed: %s", a.alert_id, exc)
            influx_error = str(exc)[:300]
        baseline = self._baseline(points, a.event_time, tz)
        chart = ""
        if points:
            chart = temperature_curve(
                points,
                start=start,
                end=end,
                baseline=baseline,
                tz=tz,
                labels={
                    "curve": t("curve"),
                    "fever_line": t("fever_line"),
                    "baseline": t("baseline", value=f"{baseline:.2f}") if baseline else "",
                },
                highlight={e["_time"] for e in evidence},
            )
        await self._audit(
            account, action="case_view", outcome="allowed", person_id=a.person_id,
            since=start, until=end, detail={"alert_id": a.alert_id, "readings": len(points)},
        )  # fmt: skip
        found = {e.get("event_id") for e in evidence}
        return self.render(
            request,
            "case.html",
            row=self._row_view(row, account),
            alert=a,
            detail=json.dumps(a.detail, ensure_ascii=False, indent=1),
            evidence=[
                {
                    "time": self.local(e["_time"], a.site_id),
                    "event_id": e.get("event_id"),
                    "kiosk_id": e.get("kiosk_id"),
                    "celsius": e.get("celsius"),
                    "valid": e.get("valid"),
                }
                for e in sorted(evidence, key=lambda e: e["_time"])
            ],
            other_evidence=[e for e in a.evidence if e not in found],
            chart=chart,
            influx_error=influx_error,
            readings=len(points),
            baseline=baseline,
            baseline_min=BASELINE_MIN_DATES,
            quarantine=self.quarantine.get(a.person_id or ""),
            history=[
                {
                    "time": self.local(h.at, a.site_id),
                    "action": h.action,
                    "who": h.by or h.officer_id or "",
                    "channel": h.channel or "",
                    "reason": h.reason,
                }
                for h in row.history
            ],
            trace_link="/trace?"
            + urlencode(
                {
                    "person": a.person_id or "",
                    "since": (a.event_time - timedelta(days=14))
                    .astimezone(tz)
                    .isoformat(timespec="minutes"),
                    "until": a.event_time.astimezone(tz).isoformat(timespec="minutes"),
                }
            ),
            zone=str(tz),
        )

    @staticmethod
    def _baseline(points: list[tuple[datetime, float]], at: datetime, tz: ZoneInfo) -> float | None:
        """The median of valid readings on local dates before the alert's (as the rules take it)."""
        today = at.astimezone(tz).date()
        prior = [(t, c) for t, c in points if t.astimezone(tz).date() < today]
        if len({t.astimezone(tz).date() for t, _ in prior}) < BASELINE_MIN_DATES:
            return None
        return rounded_median(c for _, c in prior)

    # --- the trace view --------------------------------------------------------------------

    def _trace_args(self, request: web.Request) -> tuple[str, datetime, datetime, ContactPolicy]:
        q = request.query
        tz = self.zone()
        now = self.clock.now().astimezone(tz)
        try:
            since = datetime.fromisoformat(q.get("since") or (now - timedelta(days=14)).isoformat())
            until = datetime.fromisoformat(q.get("until") or now.isoformat())
            window = float(q.get("window", "15"))
            depth = int(q.get("depth", "1"))
            policy = ContactPolicy(
                window=timedelta(minutes=window), depth=depth, same_kiosk=q.get("same_kiosk") == "1"
            )
        except (KeyError, ValueError) as exc:
            raise web.HTTPBadRequest(reason=f"trace: {exc}") from None
        since = since if since.tzinfo else since.replace(tzinfo=tz)
        until = until if until.tzinfo else until.replace(tzinfo=tz)
        if since > until or until - since > timedelta(days=28) or not 0 <= window <= 240:
            raise web.HTTPBadRequest(reason="trace: a period of at most 28 days, window 0-240 min")
        person = q.get("person", "").strip()
        try:
            contract.ScanEvent.model_validate(
                {"event_id": "x", "kiosk_id": "x", "site_id": "x", "direction": "in",
                 "person_id": person, "pass_status": "valid", "scanned_at": since, "seq": 0}
            )  # fmt: skip
        except ValueError:
            raise web.HTTPBadRequest(reason="trace: not a pseudonymous person id") from None
        return person, since, until, policy

    async def _run_trace(self, request: web.Request, action: str) -> Any:
        account: Account = request["account"]
        if not account.may_trace:
            await self._audit(
                account, action=action, outcome="refused", reason="role may not trace"
            )
            raise web.HTTPForbidden()
        person, since, until, policy = self._trace_args(request)
        pad = policy.window
        index = await asyncio.to_thread(load_trail_index, self.kafka, since - pad, until + pad)
        result = await asyncio.to_thread(
            run_trace, person, since, until, stores=index, policy=policy
        )
        request["trail_index"] = index
        await self._audit(
            account, action=action, outcome="allowed", person_id=person, since=since,
            until=until, depth=policy.depth, contacts_returned=len(result.contacts),
            detail={"window_minutes": policy.window.total_seconds() / 60,
                    "same_kiosk": policy.same_kiosk},
        )  # fmt: skip
        return result

    async def trace_page(self, request: web.Request) -> web.Response:
        account: Account = request["account"]
        if not account.may_trace:
            raise web.HTTPForbidden()
        tz = self.zone()
        now = self.clock.now().astimezone(tz)
        q = request.query
        form = {
            "person": q.get("person", ""),
            "since": q.get("since", (now - timedelta(days=14)).isoformat(timespec="minutes")),
            "until": q.get("until", now.isoformat(timespec="minutes")),
            "window": q.get("window", "15"),
            "depth": q.get("depth", "1"),
            "same_kiosk": q.get("same_kiosk") == "1",
        }
        result = None
        if form["person"]:
            result = await self._run_trace(request, "trace")
        contacts = []
        scans: list[dict[str, str]] = []
        graph = timeline = ""
        if result is not None:
            rtz = result.since.tzinfo
            contacts = [
                {
                    "person_id": c.person_id,
                    "degree": c.degree,
                    "first": c.first_contact_at(rtz).strftime("%Y-%m-%d %H:%M"),
                    "first_sort": c.first_contact,
                    "encounters": c.encounters,
                    "sites": ", ".join(c.sites),
                    "via": ", ".join(c.via),
                }
                for c in result.contacts
            ]
            graph = contact_graph(result)
            timeline = encounter_timeline(result, rtz)
            trail = request["trail_index"].trail_between(
                result.index, to_micros(result.since), to_micros(result.until)
            )
            scans = [
                {"time": from_micros(t, rtz).strftime("%Y-%m-%d %H:%M"), "site": site, "kiosk": k}
                for t, site, k in zip(trail.times, trail.sites, trail.kiosks, strict=True)
            ][:500]
        return self.render(
            request,
            "trace.html",
            form=form,
            result=result,
            contacts=contacts,
            graph=graph,
            timeline=timeline,
            scans=scans,
            csv_link="/trace.csv?" + request.query_string,
            zone=str(tz),
        )

    async def trace_csv(self, request: web.Request) -> web.Response:
        result = await self._run_trace(request, "trace_csv")
        name = f"contacts-{result.index}.csv".replace('"', "")
        return web.Response(
            text=to_csv(result),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    # --- the replay view ------------------------------------------------------------------

    async def _may_replay(self, request: web.Request, action: str) -> Account:
        account: Account = request["account"]
        if not account.may_trace:
            await self._audit(
                account, action=action, outcome="refused", reason="role may not replay"
            )
            raise web.HTTPForbidden()
        return account

    def _job(self, request: web.Request, account: Account) -> ReplayJob:
        job = self.replays.jobs.get(request.match_info["job"])
        if job is None or job.owner != account.name:
            raise web.HTTPNotFound()  # another person's replay is not there for this one
        return job

    def _replay_audit(self, account: Account) -> Any:
        """The audit call of a replay's thread: acknowledged by the broker before it returns."""

        def audit(action: str, outcome: str, **fields: Any) -> None:
            self.audit.append(
                audit_record(
                    at=self.clock.now(),
                    actor=account.actor,
                    role=account.role,
                    channel="console",
                    action=action,
                    outcome=outcome,  # type: ignore[arg-type]
                    **fields,
                )  # fmt: skip
            )

        return audit

    async def replay_page(self, request: web.Request, error: str = "") -> web.Response:
        account = await self._may_replay(request, "replay")
        tz = self.zone()
        now = self.clock.now().astimezone(tz).replace(second=0, microsecond=0)
        q = request.query
        form = {
            "since": q.get("since", (now - timedelta(days=1)).isoformat(timespec="minutes")),
            "until": q.get("until", now.isoformat(timespec="minutes")),
            "site": q.get("site", ""),
            "persons": q.get("persons", ""),
            "window": q.get("window", "15"),
            "depth": q.get("depth", "1"),
            "same_kiosk": q.get("same_kiosk") == "1",
        }
        response = self.render(
            request, "replay.html", form=form, error=error, job=None,
            sites=self.board.sites(account.sees_site), zone=str(tz),
            jobs=[self._job_view(j) for j in self.replays.of(account.name)],
        )  # fmt: skip
        if error:
            response.set_status(400)
        return response

    async def replay_start(self, request: web.Request) -> web.Response:
        account = await self._may_replay(request, "replay")
        form = await request.post()
        try:
            wanted = parse_request(form, self.zone())
        except ValueError as exc:
            return await self.replay_page(request, str(exc))
        job = self.replays.new(account.name, wanted, time.time())
        if job is None:
            raise web.HTTPTooManyRequests(reason="a replay of yours (or two in all) is running")
        task = asyncio.ensure_future(
            asyncio.to_thread(run_replay, self.kafka, job, self._replay_audit(account))
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        raise web.HTTPSeeOther(f"/replay/{job.id}")

    def _job_view(self, job: ReplayJob) -> dict[str, Any]:
        r = job.request
        tz = self.zone(r.site or None)
        return {
            "id": job.id,
            "since": r.since.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            "until": r.until.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            "site": r.site,
            "persons": ", ".join(r.persons),
            "window": f"{r.window_minutes:g}",
            "depth": r.policy.depth,
            **job.view(),
        }

    async def replay_job_page(self, request: web.Request) -> web.Response:
        account = await self._may_replay(request, "replay")
        job = self._job(request, account)
        tz = self.zone(job.request.site or None)
        traces = []
        if job.state == "done":
            for result in job.traces:
                traces.append(
                    {
                        "person": result.index,
                        "scans": result.index_scans,
                        "first_degree": len(result.of_degree(1)),
                        "second_degree": len(result.of_degree(2)),
                        "sites": ", ".join(sorted({s for c in result.contacts for s in c.sites})),
                        "graph": contact_graph(result),
                        "link": "/trace?" + urlencode({
                            "person": result.index,
                            "since": result.since.astimezone(tz).isoformat(timespec="minutes"),
                            "until": result.until.astimezone(tz).isoformat(timespec="minutes"),
                            "window": f"{job.request.window_minutes:g}",
                            "depth": str(job.request.policy.depth),
                        }),
                    }
                )  # fmt: skip
        by_site = [
            {**row, "first": self.local(row["first"], row["site"]),
             "last": self.local(row["last"], row["site"])}
            for row in job.summary.get("by_site", [])
        ]  # fmt: skip
        return self.render(
            request, "replay.html", form=None, error="", job=self._job_view(job),
            counts=job.counts, summary=job.summary, by_site=by_site, traces=traces,
            sites=[], jobs=[], zone=str(tz),
        )  # fmt: skip

    async def replay_progress(self, request: web.Request) -> web.Response:
        account = await self._may_replay(request, "replay")
        return web.json_response(self._job(request, account).view())

    async def replay_plot(self, request: web.Request) -> web.Response:
        account = await self._may_replay(request, "replay")
        job = self._job(request, account)
        if job.state != "done":
            raise web.HTTPNotFound()
        return web.Response(body=job.plot_png, content_type="image/png")

    async def replay_trails(self, request: web.Request) -> web.Response:
        """The period's trails as ``scantrail replay`` writes them (``trails.parquet``), audited."""
        from processors.replay_report import write_trails

        account = await self._may_replay(request, "replay_trails")
        job = self._job(request, account)
        if job.state != "done":
            raise web.HTTPNotFound()

        def parquet() -> bytes:
            with tempfile.TemporaryDirectory(prefix="scantrail-trails-") as tmp:
                path = Path(tmp) / "trails.parquet"
                write_trails(job.scans, path)
                return path.read_bytes()

        body = await asyncio.to_thread(parquet)
        r = job.request
        await self._audit(
            account, action="replay_trails", outcome="allowed", since=r.since, until=r.until,
            detail={"site": r.site, "rows": len(job.scans), "job": job.id},
        )  # fmt: skip
        return web.Response(
            body=body,
            content_type="application/vnd.apache.parquet",
            headers={"Content-Disposition": 'attachment; filename="trails.parquet"'},
        )

    # --- the big screen ----------------------------------------------------------------------

    async def bigscreen_page(self, request: web.Request) -> web.Response:
        data = await self._screen(request)
        return self.render(request, "bigscreen.html", **data)

    async def bigscreen_data(self, request: web.Request) -> web.Response:
        data = await self._screen(request)
        return self.render(request, "_screen.html", **data)

    async def _screen(self, request: web.Request) -> dict[str, Any]:
        account: Account = request["account"]
        try:
            data = await asyncio.to_thread(self.screen_data, self.clock.now())
        except Exception as exc:  # InfluxDB down: say so, keep the alerts from Kafka
            log.warning("big screen: InfluxDB query failed: %s", exc)
            data = {"passages": {}, "fevers": {}, "silent": [], "error": str(exc)[:300]}
        sees = account.sees_site
        sites = sorted(s for s in set(data["passages"]) | set(data["fevers"]) if sees(s))
        critical = sorted(
            self.board.open_critical(sees), key=lambda r: r.alert.event_time, reverse=True
        )
        return {
            "sites": [
                {
                    "site": s,
                    "minutes": data["passages"].get(s, []),
                    "last_minute": (data["passages"].get(s) or [0])[-1],
                    "peak": max(data["passages"].get(s) or [0]) or 1,
                    "fevers": data["fevers"].get(s, 0),
                }
                for s in sites
            ],
            "silent": [
                {"site": s, "kiosk": k, "last": self.local(at, s), "age": int(age)}
                for s, k, at, age in data["silent"]
                if sees(s)
            ],
            "critical": [self._row_view(r, account) for r in critical[:12]],
            "critical_count": len(critical),
            "updated": self.local(self.clock.now()),
            "influx_error": data.get("error", ""),
        }

    def screen_data(self, now: datetime) -> dict[str, Any]:
        """The big screen's figures from InfluxDB (also what the Grafana-agreement test reads)."""
        tz = self.zone()
        minute = now.replace(second=0, microsecond=0)
        start = minute - timedelta(minutes=30)
        midnight = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
        silent_after = 2 * self.settings.heartbeat_s
        beats = self.influx.last_heartbeats(now - timedelta(hours=24), now + timedelta(seconds=1))
        return {
            "passages": self.influx.passages_per_minute(start, minute),
            "fevers": self.influx.fevers(midnight.astimezone(UTC), now + timedelta(seconds=1)),
            "silent": [
                (s, k, at, (now - at).total_seconds())
                for s, k, at in beats
                if (now - at).total_seconds() > silent_after
            ],
        }


def serve(console: Console) -> None:
    web.run_app(
        console.app(),
        host=console.settings.host,
        port=console.settings.port,
        print=None,
        access_log=None,
    )

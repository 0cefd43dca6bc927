"""``GET /trace`` on the worker, guarded: a credential with the trace scope, bounds, an audit.

Every request, answered or refused, appends one ``audit/1`` record (who,
from where, whom they asked about, period, window, depth, how many contacts
came back) and waits for the broker's ack before the answer leaves: a read
that cannot be audited does not happen (503).

The search runs in a thread pool off the event loop, so a large trace never
stalls the agents; it checks a deadline at every table lookup and gives up
with 503 once ``trace_timeout_s`` has passed (the thread stops too, rather
than searching on for nobody).

Status codes: 401 no or unknown credential, 403 a credential without the
``trace`` scope, 400 a question that is malformed or larger than the
settings allow, 503 timed out or not auditable, 200 the trace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from processors.contacts import ContactPolicy, trace
from processors.trails import TrailSlice, VisitSlice
from scantrail.audit import audit_record
from scantrail.contract import AuditOutcome, AuditRecord
from scantrail.credentials import (
    TRACE,
    CredentialStore,
    Forbidden,
    Principal,
    Unauthenticated,
    bearer_token,
)
from scantrail.pseudonyms import why_not_pseudonymous
from scantrail.settings import TraceAccessSettings

log = logging.getLogger(__name__)


class BadTraceRequest(ValueError):
    """A trace question that is malformed or exceeds the configured bounds (HTTP 400)."""


class TraceTimedOut(Exception):
    """The search passed its deadline."""


@dataclass(frozen=True)
class TraceQuestion:
    person: str
    since: datetime
    until: datetime
    policy: ContactPolicy


def _aware(name: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadTraceRequest(f"{name} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise BadTraceRequest(f"{name} has no offset")
    return moment


def parse_question(query: Any, limits: TraceAccessSettings) -> TraceQuestion:
    """The question in a query string, within the bounds; raises :class:`BadTraceRequest`."""
    try:
        person = query["person"]
        since = _aware("since", query["since"])
        until = _aware("until", query["until"])
    except KeyError as exc:
        raise BadTraceRequest(f"missing parameter {exc}") from None
    try:
        window_minutes = float(query.get("window_minutes", 15))
        depth = int(query.get("depth", 1))
    except ValueError:
        raise BadTraceRequest("window_minutes and depth must be numbers") from None
    if (why := why_not_pseudonymous(person)) is not None:
        raise BadTraceRequest(f"person {why}")
    if since > until:
        raise BadTraceRequest("since is after until")
    if until - since > timedelta(days=limits.trace_max_days):
        raise BadTraceRequest(f"the period is longer than {limits.trace_max_days:g} days")
    if not 0 <= window_minutes <= limits.trace_max_window_minutes:
        raise BadTraceRequest(
            f"window_minutes must be between 0 and {limits.trace_max_window_minutes:g}"
        )
    if not 1 <= depth <= limits.trace_max_depth:
        raise BadTraceRequest(f"depth must be between 1 and {limits.trace_max_depth}")
    policy = ContactPolicy(
        window=timedelta(minutes=window_minutes),
        depth=depth,
        same_kiosk=query.get("same_kiosk", "false").lower() in ("1", "true", "yes"),
    )
    return TraceQuestion(person, since, until, policy)


class Lookups(Protocol):
    def trail_between(self, person_id: str, start: int, end: int) -> TrailSlice: ...
    def visits_between(self, site_id: str, start: int, end: int) -> VisitSlice: ...


def search(index: Lookups, question: TraceQuestion, deadline: float) -> dict[str, Any]:
    """The trace, as its JSON dict; raises :class:`TraceTimedOut` past ``deadline`` (monotonic)."""

    def trail_of(person_id: str, start: int, end: int) -> TrailSlice:
        if time.monotonic() > deadline:
            raise TraceTimedOut
        return index.trail_between(person_id, start, end)

    def visits_at(site_id: str, start: int, end: int) -> VisitSlice:
        if time.monotonic() > deadline:
            raise TraceTimedOut
        return index.visits_between(site_id, start, end)

    result = trace(
        question.person,
        question.since,
        question.until,
        trail_of=trail_of,
        visits_at=visits_at,
        policy=question.policy,
    )
    return result.to_dict()


class Appender(Protocol):
    def append(self, record: AuditRecord) -> None: ...


class TraceGuard:
    """The /trace handler: authorize, bound, search off the loop, audit, answer."""

    def __init__(
        self,
        index: Lookups,
        limits: TraceAccessSettings,
        credentials: CredentialStore,
        audit: Appender,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.index = index
        self.limits = limits
        self.credentials = credentials
        self.audit = audit
        self.now = now
        self.searches = ThreadPoolExecutor(limits.trace_threads, thread_name_prefix="trace")
        # Appends wait for the broker's ack: their own thread, never behind a long search.
        self.appends = ThreadPoolExecutor(1, thread_name_prefix="trace-audit")

    async def _audit(
        self,
        actor: str,
        outcome: AuditOutcome,
        reason: str = "",
        role: str | None = None,
        query: Any = None,
        question: TraceQuestion | None = None,
        contacts: int | None = None,
        remote: str | None = None,
    ) -> None:
        person = question.person if question else (query or {}).get("person")
        record = audit_record(
            at=self.now(),
            actor=actor,
            role=role,
            channel="http",
            action="trace",
            outcome=outcome,
            reason=reason,
            person_id=person if isinstance(person, str) and person else None,
            since=question.since if question else None,
            until=question.until if question else None,
            depth=question.policy.depth if question else None,
            contacts_returned=contacts,
            detail={
                k: v
                for k, v in {
                    "remote": remote,
                    "window_minutes": question.policy.window.total_seconds() / 60
                    if question
                    else None,
                }.items()
                if v is not None
            },
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.appends, self.audit.append, record)

    async def handle(self, web: Any, request: Any) -> Any:
        remote = getattr(request, "remote", None)
        query = request.query
        try:
            return await self._handle(web, request, query, remote)
        except Exception as exc:  # the audit could not be stored: no answer
            log.error("trace refused: the audit record could not be stored: %s", exc)
            return web.json({"error": "the request could not be audited; try again"}, status=503)

    async def _handle(self, web: Any, request: Any, query: Any, remote: str | None) -> Any:
        token = bearer_token(request.headers.get("Authorization"))
        try:
            principal: Principal = self.credentials.authorize(token, TRACE)
        except Unauthenticated as exc:
            actor = "anonymous" if token is None else "unknown-credential"
            await self._audit(actor, "refused", str(exc), query=query, remote=remote)
            return web.json(
                {"error": str(exc)},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="trace"'},
            )
        except Forbidden as exc:
            await self._audit(exc.principal.name, "refused", str(exc), query=query, remote=remote)
            return web.json({"error": str(exc)}, status=403)
        role = ",".join(sorted(principal.scopes))
        try:
            question = parse_question(query, self.limits)
        except BadTraceRequest as exc:
            await self._audit(
                principal.name, "refused", str(exc), role=role, query=query, remote=remote
            )
            return web.json({"error": f"bad query: {exc}"}, status=400)
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.limits.trace_timeout_s
        try:
            answer = await loop.run_in_executor(
                self.searches, search, self.index, question, deadline
            )
        except TraceTimedOut:
            reason = f"gave up after {self.limits.trace_timeout_s:g} s"
            await self._audit(
                principal.name, "failed", reason, role=role, question=question, remote=remote
            )
            return web.json({"error": f"the trace {reason}; narrow it"}, status=503)
        except ValueError as exc:  # the contact search refused the question
            await self._audit(
                principal.name, "refused", str(exc), role=role, question=question, remote=remote
            )
            return web.json({"error": f"bad query: {exc}"}, status=400)
        await self._audit(
            principal.name,
            "allowed",
            role=role,
            question=question,
            contacts=len(answer.get("contacts", [])),
            remote=remote,
        )
        return web.json(answer)

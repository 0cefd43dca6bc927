"""The /trace view's rules without a worker: status codes, bounds, one audit record each.

The same handler is exercised over HTTP against a running worker in
tests/integration/processors/test_trace_access.py.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from processors.trace_guard import BadTraceRequest, TraceGuard, parse_question
from processors.trails import TrailIndex
from scantrail.contract import AuditRecord, ScanEvent
from scantrail.credentials import TRACE, CredentialStore, credential_line, hash_token
from scantrail.settings import TraceAccessSettings

LIMITS = TraceAccessSettings(trace_max_days=2, trace_max_window_minutes=30, trace_timeout_s=5)
Q = {"person": "p-1", "since": "2020-02-10T00:00:00+00:00", "until": "2020-02-10T12:00:00+00:00"}


class Web:
    def json(self, value: Any, status: int = 200, headers: Any = None) -> tuple[int, Any]:
        return status, value


class Request:
    def __init__(self, query: dict[str, str], token: str | None) -> None:
        self.query = query
        self.headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self.remote = "127.0.0.1"


class Recorder:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def append(self, record: AuditRecord) -> None:
        self.records.append(record)


def index() -> TrailIndex:
    trails = TrailIndex()
    for i, person in enumerate(["p-1", "p-2", "p-3"]):
        trails.add_event(
            ScanEvent(
                event_id=f"e{i}",
                kiosk_id="k",
                site_id="s",
                direction="in",
                person_id=person,
                pass_status="valid",
                scanned_at=datetime(2020, 2, 10, 8, i, tzinfo=UTC),
                seq=i,
            )
        )
    trails.settle()
    return trails


def guard(audit: Recorder, limits: TraceAccessSettings = LIMITS, idx: Any = None) -> TraceGuard:
    store = CredentialStore.from_lines(
        [
            credential_line("epi", [TRACE], hash_token("good")),
            credential_line("clerk", ["console"], hash_token("clerk")),
        ]
    )
    return TraceGuard(idx or index(), limits, store, audit)


def ask(g: TraceGuard, query: dict[str, str], token: str | None) -> tuple[int, Any]:
    result: tuple[int, Any] = asyncio.run(g.handle(Web(), Request(query, token)))
    return result


@pytest.mark.parametrize(
    ("token", "query", "status", "actor", "outcome"),
    [
        (None, Q, 401, "anonymous", "refused"),
        ("forged", Q, 401, "unknown-credential", "refused"),
        ("clerk", Q, 403, "clerk", "refused"),
        ("good", {**Q, "until": "2020-02-20T00:00:00+00:00"}, 400, "epi", "refused"),
        ("good", {**Q, "window_minutes": "90"}, 400, "epi", "refused"),
        ("good", {**Q, "depth": "3"}, 400, "epi", "refused"),
        ("good", {**Q, "since": "2020-02-10T00:00:00"}, 400, "epi", "refused"),
        ("good", Q, 200, "epi", "allowed"),
    ],
)
def test_each_request_gets_its_status_and_one_audit_record(
    token: str | None, query: dict[str, str], status: int, actor: str, outcome: str
) -> None:
    audit = Recorder()
    got, body = ask(guard(audit), query, token)
    assert got == status, body
    [record] = audit.records
    assert (record.actor, record.outcome, record.channel, record.action) == (
        actor,
        outcome,
        "http",
        "trace",
    )
    assert record.person_id == "p-1" and record.detail["remote"] == "127.0.0.1"
    if status == 200:
        assert record.contacts_returned == len(body["contacts"]) == 2
        assert record.depth == 1 and record.since == datetime(2020, 2, 10, tzinfo=UTC)
    else:
        assert record.reason and record.contacts_returned is None


def test_a_phone_number_as_subject_is_refused_and_not_audited_in_clear() -> None:
    audit = Recorder()
    status, _ = ask(guard(audit), {**Q, "person": "+86 138 0013 8000"}, "good")
    assert status == 400
    # Neither as given nor as digits. Not "138" alone: the record's id is 64 hex digits,
    # which hold "138" about once in 66 records (a flaky check, 2026-12-06).
    recorded = audit.records[0].model_dump_json()
    for shown in ("+86 138 0013 8000", "138 0013", "8613800138000", "13800138000"):
        assert shown not in recorded


def test_no_answer_leaves_without_its_audit_record() -> None:
    class Broken:
        def append(self, record: AuditRecord) -> None:
            raise OSError("broker down")

    status, body = ask(guard(Broken()), Q, "good")  # type: ignore[arg-type]
    assert status == 503 and "contacts" not in body


def test_a_trace_past_its_time_limit_is_given_up_and_audited_as_failed() -> None:
    class Slow:
        def __init__(self, inner: TrailIndex) -> None:
            self.inner = inner

        def trail_between(self, *args: Any) -> Any:
            time.sleep(0.3)
            return self.inner.trail_between(*args)

        def visits_between(self, *args: Any) -> Any:
            time.sleep(0.3)
            return self.inner.visits_between(*args)

    audit = Recorder()
    quick = LIMITS.model_copy(update={"trace_timeout_s": 0.2})
    status, _ = ask(guard(audit, quick, Slow(index())), Q, "good")
    assert status == 503
    assert audit.records[0].outcome == "failed" and "gave up" in audit.records[0].reason


def test_bounds_come_from_the_settings() -> None:
    wide = LIMITS.model_copy(update={"trace_max_days": 30})
    assert parse_question({**Q, "until": "2020-02-20T00:00:00+00:00"}, wide).person == "p-1"
    with pytest.raises(BadTraceRequest, match="longer than 2 days"):
        parse_question({**Q, "until": "2020-02-20T00:00:00+00:00"}, LIMITS)

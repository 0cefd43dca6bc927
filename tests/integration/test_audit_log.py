"""An audit append is acknowledged by the real broker and reads back whole."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scantrail import contract
from scantrail.audit import AuditLog, audit_record
from tests.support import consume_all

pytestmark = pytest.mark.integration


def test_an_appended_record_is_on_the_audit_topic(kafka_settings) -> None:  # type: ignore[no-untyped-def]
    at = datetime(2020, 2, 11, 9, 30, tzinfo=UTC)
    record = audit_record(
        at=at, actor="os:tester", channel="cli", action="trace", outcome="allowed", depth=1
    )
    log = AuditLog(kafka_settings)
    try:
        log.append(record)
    finally:
        log.close()
    stored = consume_all(kafka_settings, contract.AUDIT, expect=1, timeout_s=30)
    assert [contract.decode(m.value) for m in stored] == [record]

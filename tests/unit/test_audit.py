"""The audit record builder: valid records, and refused subjects never stored in clear."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scantrail import contract
from scantrail.audit import audit_record, local_actor
from scantrail.errors import ContractError

AT = datetime(2020, 2, 11, 9, 30, tzinfo=UTC)


def test_a_trace_record_round_trips_through_the_contract() -> None:
    record = audit_record(
        at=AT,
        actor="token:epi-1",
        role="analyst",
        channel="http",
        action="trace",
        outcome="allowed",
        person_id="p-1-000042",
        since=AT,
        until=AT,
        depth=2,
        contacts_returned=17,
    )
    decoded = contract.decode(contract.encode(record))
    assert decoded == record
    assert decoded.key() == b"token:epi-1"
    assert contract.TOPIC_SCHEMAS[contract.AUDIT] is contract.AuditRecord


def test_a_refused_phone_number_subject_is_withheld_and_explained() -> None:
    record = audit_record(
        at=AT,
        actor="token:unknown",
        channel="http",
        action="trace",
        outcome="refused",
        reason="no credential",
        person_id="13800138000",
    )
    assert record.person_id is None
    assert "13800138000" not in contract.encode(record).decode()
    assert record.reason.startswith("no credential; subject withheld")


def test_an_invalid_actor_is_a_contract_error() -> None:
    with pytest.raises(ContractError):
        audit_record(at=AT, actor="has space", channel="cli", action="trace", outcome="allowed")


def test_the_local_actor_is_a_valid_identifier() -> None:
    actor = local_actor()
    assert actor.startswith("os:")
    audit_record(at=AT, actor=actor, channel="cli", action="trace", outcome="allowed")

"""The audit trail of reads of personal data: one ``audit/1`` record per request.

Every way of reading a trail (the worker's ``/trace``, ``scantrail trace``,
``scantrail replay``, the console) appends here, refused requests too, so an
auditor can answer "who looked at this person, when, and what did they get".
The record is durable (acknowledged by the broker) before the answer leaves:
a read that cannot be audited is a read that does not happen.
"""

from __future__ import annotations

import getpass
import uuid
from datetime import datetime
from typing import Any, Protocol

from scantrail import contract
from scantrail.contract import AuditChannel, AuditOutcome, AuditRecord
from scantrail.errors import ContractError, PublishError
from scantrail.settings import KafkaSettings

#: How long an append waits for the broker's acknowledgement.
ACK_TIMEOUT_S = 10.0


class _Future(Protocol):
    def get(self, timeout: float | None = None) -> Any: ...


class _Producer(Protocol):
    def send(self, topic: str, *, key: bytes | None, value: bytes) -> _Future: ...


def local_actor() -> str:
    """Who runs an offline command: the operating-system user, as an auditor would name them."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return f"os:{cleaned or 'unknown'}"


def audit_record(
    *,
    at: datetime,
    actor: str,
    channel: AuditChannel,
    action: str,
    outcome: AuditOutcome,
    role: str | None = None,
    reason: str = "",
    person_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    depth: int | None = None,
    contacts_returned: int | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditRecord:
    """Build a valid record; a subject that is not a pseudonymous id is left out, not stored.

    A refused request may name anything as its subject (a phone number, say);
    the audit keeps that it was refused and why, never the value itself.
    """
    fields: dict[str, Any] = {
        "audit_id": uuid.uuid4().hex,
        "at": at,
        "actor": actor,
        "role": role,
        "channel": channel,
        "action": action,
        "outcome": outcome,
        "reason": reason[:500],
        "since": since,
        "until": until,
        "depth": depth,
        "contacts_returned": contacts_returned,
        "detail": detail or {},
    }
    try:
        return AuditRecord(person_id=person_id, **fields)
    except ValueError as exc:
        if person_id is None:
            raise ContractError(f"invalid audit record: {exc}") from None
        note = "subject withheld: not a valid pseudonymous id"
        fields["reason"] = f"{fields['reason']}; {note}".strip("; ")[:500]
        return AuditRecord(person_id=None, **fields)


class AuditLog:
    """Appends audit records to the namespaced ``scantrail.audit`` topic and waits for the ack."""

    def __init__(self, settings: KafkaSettings, producer: _Producer | None = None) -> None:
        self._topic = settings.topic(contract.AUDIT)
        self._settings = settings
        self._producer = producer

    def _ensure_producer(self) -> _Producer:
        if self._producer is None:
            from scantrail.broker import make_producer  # kafka only when an append happens

            self._producer = make_producer(self._settings, linger_ms=0)
        return self._producer

    def append(self, record: AuditRecord) -> None:
        """Publish and wait for the broker's ack; raise :class:`PublishError` without one."""
        producer = self._ensure_producer()
        try:
            producer.send(self._topic, key=record.key(), value=contract.encode(record)).get(
                timeout=ACK_TIMEOUT_S
            )
        except Exception as exc:  # any client failure means the read was not audited
            raise PublishError(f"audit record not stored on {self._topic}: {exc}") from None

    def close(self) -> None:
        closer = getattr(self._producer, "close", None)
        if closer is not None:
            closer()

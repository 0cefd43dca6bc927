"""The ScanTrail event contract, version 1: the only place events are defined.

Every boundary (kiosk publisher, stream agents, sinks, replay, the offline CLI
tools) decodes through :func:`decode` and encodes through :func:`encode`, so a
message is judged by exactly the same rules wherever it is read.

Rules that hold for every event:

* JSON objects, UTF-8, one per Kafka message, with a ``schema`` field naming
  kind and version (``scan/1``). An unknown schema is a :class:`ContractError`,
  which the caller turns into a dead-letter record.
* Times are RFC 3339 with an offset; a time without one is rejected, because a
  naive time at a gate in Shanghai and one in a replay notebook in Geneva would
  silently disagree. Compare instants, never strings.
* Fields shown as ``... | None`` may be absent, meaning null.
* Extra fields are allowed and preserved, so later versions that add fields
  never break a version-1 reader.
* Person ids are pseudonymous. Something that looks like a resident ID number,
  a phone number or an e-mail address is refused rather than carried onward
  (:mod:`scantrail.pseudonyms`), and a dead letter of a topic holding personal
  data keeps identifiers only as keyed hashes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeAlias, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from scantrail.errors import ContractError
from scantrail.pseudonyms import keyed_hash, why_not_pseudonymous

SCHEMA_VERSION = 1

# Topic names, exactly as operators and dashboards know them.
SCANS = "scantrail.scans"
TEMPERATURES = "scantrail.temperatures"
QUARANTINE = "scantrail.quarantine"
ALERTS = "scantrail.alerts"
KIOSKS = "scantrail.kiosks"
PAGES = "scantrail.pages"
DEADLETTER = "scantrail.deadletter"
AUDIT = "scantrail.audit"

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/-]+$")
]
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def _rfc3339(value: object) -> object:
    """Parse RFC 3339 ourselves: pydantic alone would read numbers and partial strings as times."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("a time must be an RFC 3339 string")
    match = _RFC3339.match(value)
    if not match:
        raise ValueError("not an RFC 3339 time with an offset")
    text = value
    fraction = match.group(1)
    if fraction and len(fraction) > 7:  # more than microseconds: truncate
        text = value.replace(fraction, fraction[:7], 1)
    if "t" in text or "z" in text:  # fromisoformat wants the separators in upper case
        text = text.replace("z", "Z").replace("t", "T")
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"not a valid time: {exc}") from None


#: The times every part of the pipeline can represent. InfluxDB stores
#: nanoseconds since 1970 in an int64 (up to 2262-04-11), Kafka record
#: timestamps are milliseconds since 1970 and never negative, and every local
#: date of an instant must exist (year 1 at +05:00 is no date in UTC). A day's
#: margin at each end keeps every offset's local date inside Python's range.
EARLIEST_TIME = datetime(1970, 1, 2, tzinfo=UTC)
LATEST_TIME = datetime(2262, 4, 10, tzinfo=UTC)
#: The largest integer any field may carry: InfluxDB and Kafka count in int64.
INT64_MAX = 2**63 - 1


def _in_window(value: datetime) -> datetime:
    try:
        inside = EARLIEST_TIME <= value <= LATEST_TIME
    except OverflowError:  # a year-1 or year-9999 time whose offset leaves the calendar
        inside = False
    if not inside:
        raise ValueError(
            f"time outside {EARLIEST_TIME.date()}..{LATEST_TIME.date()} (UTC),"
            " the range Kafka, InfluxDB and every local date can represent"
        )
    return value


def _day_in_window(value: date) -> date:
    if not EARLIEST_TIME.date() <= value <= LATEST_TIME.date():
        raise ValueError(
            f"date outside {EARLIEST_TIME.date()}..{LATEST_TIME.date()},"
            " the range every part of the pipeline can represent"
        )
    return value


#: An instant: RFC 3339 with an explicit offset, timezone-aware in Python, inside the window.
Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_in_window)]
#: A calendar day inside the same window.
Day = Annotated[date, AfterValidator(_day_in_window)]
#: A count or sequence number: never negative, never beyond int64.
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]

Direction: TypeAlias = Literal["in", "out"]
PassStatus: TypeAlias = Literal["valid", "expired", "revoked", "forged", "unknown"]
HealthCode: TypeAlias = Literal["green", "yellow", "red"]
Method: TypeAlias = Literal["forehead_ir", "wrist_ir", "ear_ir", "oral", "axillary"]
Severity: TypeAlias = Literal["info", "warning", "critical"]
VenueKind: TypeAlias = Literal["compound_gate", "market", "pharmacy", "bus", "workplace"]
PersonKind: TypeAlias = Literal["resident", "visitor"]


def _check_pseudonymous(value: object) -> object:
    """Refuse a person id shaped like a resident ID number, a phone number or an e-mail address.

    Runs before the type and pattern checks, so ``+86 138 0013 8000`` is refused for
    what it is rather than for its spaces; the reason never repeats the value.
    """
    if isinstance(value, str):
        reason = why_not_pseudonymous(value)
        if reason is not None:
            raise ValueError(reason)
    return value


class Event(BaseModel):
    """Common behaviour of every contract event."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    SCHEMA: ClassVar[str] = ""
    TOPIC: ClassVar[str] = ""

    schema_: str = Field(alias="schema")

    @field_validator("schema_")
    @classmethod
    def _schema_matches(cls, value: str) -> str:
        if value != cls.SCHEMA:
            raise ValueError(f"expected schema {cls.SCHEMA!r}, got {value!r}")
        return value

    def key(self) -> bytes | None:
        """The Kafka message key that partitions this event (see the topic table)."""
        return None

    def timestamp_ms(self) -> int | None:
        """The Kafka record timestamp: the event's own time, so a replay can seek by it."""
        moment = getattr(self, "time", None)
        return None if moment is None else int(moment.timestamp() * 1000)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)


class ScanEvent(Event):
    """A resident's pass scanned at a gate."""

    SCHEMA: ClassVar[str] = "scan/1"
    TOPIC: ClassVar[str] = SCANS

    schema_: str = Field(alias="schema", default="scan/1")
    event_id: Identifier
    kiosk_id: Identifier
    site_id: Identifier
    direction: Direction
    person_id: Identifier
    pass_id: Identifier | None = None
    pass_status: PassStatus
    health_code: HealthCode | None = None
    scanned_at: Instant
    seq: Count
    # Added within version 1 (optional: absent on older events, and every scan/1
    # reader still reads them):
    # the household on the pass, for the one-person-per-household outing rule;
    household_id: Identifier | None = None
    # the kind of pass (e.g. "worker"), which a site's policy may exempt from that rule;
    pass_kind: Identifier | None = None
    # for a phone check-in at a posted venue code, what the venue is (the venue
    # itself is kiosk_id and site_id) and the community it belongs to;
    venue_kind: VenueKind | None = None
    venue_site_id: Identifier | None = None
    # for a visitor registered at a gate without a pass: person_id is then a
    # keyed hash of what they showed, and visiting names whom they visit.
    person_kind: PersonKind | None = None
    visiting: Identifier | None = None

    _pseudonymous = field_validator("person_id", "visiting", mode="before")(_check_pseudonymous)

    #: Fields added within version 1, left out of the JSON when absent, so a
    #: scan that has none of them encodes byte for byte as it always did.
    ADDED_IN_V1: ClassVar[tuple[str, ...]] = (
        "household_id",
        "pass_kind",
        "venue_kind",
        "venue_site_id",
        "person_kind",
        "visiting",
    )

    @property
    def time(self) -> datetime:
        return self.scanned_at

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for name in self.ADDED_IN_V1:
            if out.get(name, 0) is None:
                del out[name]
        return out

    def key(self) -> bytes:
        return self.person_id.encode()


class TemperatureReading(Event):
    """One thermometer reading, published as measured (never clamped or dropped)."""

    SCHEMA: ClassVar[str] = "temperature/1"
    TOPIC: ClassVar[str] = TEMPERATURES

    schema_: str = Field(alias="schema", default="temperature/1")
    event_id: Identifier
    kiosk_id: Identifier
    site_id: Identifier
    measured_at: Instant
    # Bounds only reject what no thermometer can report; judging plausibility
    # (34.0–42.0 °C) is the screening rules' job, so sensor faults stay visible.
    celsius: Annotated[float, Field(ge=-50.0, le=100.0, allow_inf_nan=False)]
    method: Method
    person_id: Identifier | None = None
    scan_event_id: Identifier | None = None
    ambient_c: Annotated[float, Field(ge=-60.0, le=70.0, allow_inf_nan=False)] | None = None

    _pseudonymous = field_validator("person_id", mode="before")(_check_pseudonymous)

    @property
    def time(self) -> datetime:
        return self.measured_at

    def key(self) -> bytes:
        return self.kiosk_id.encode()


class QuarantineRecord(Event):
    """A home-quarantine order; the latest record per person wins (compacted topic)."""

    SCHEMA: ClassVar[str] = "quarantine/1"
    TOPIC: ClassVar[str] = QUARANTINE

    schema_: str = Field(alias="schema", default="quarantine/1")
    person_id: Identifier
    site_id: Identifier
    starts_on: Day
    ends_on: Day
    reason: Annotated[str, StringConstraints(max_length=500)]

    _pseudonymous = field_validator("person_id", mode="before")(_check_pseudonymous)

    @model_validator(mode="after")
    def _ends_after_start(self) -> QuarantineRecord:
        if self.ends_on < self.starts_on:
            raise ValueError("ends_on is before starts_on")
        return self

    def key(self) -> bytes:
        return self.person_id.encode()


class Alert(Event):
    """Something an officer must see; ``alert_id`` is derived from kind and evidence."""

    SCHEMA: ClassVar[str] = "alert/1"
    TOPIC: ClassVar[str] = ALERTS

    schema_: str = Field(alias="schema", default="alert/1")
    alert_id: Identifier
    kind: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z_]+$")]
    severity: Severity
    site_id: Identifier
    kiosk_id: Identifier | None = None
    person_id: Identifier | None = None
    event_time: Instant
    raised_at: Instant
    evidence: list[Identifier]
    detail: dict[str, Any] = Field(default_factory=dict)

    _pseudonymous = field_validator("person_id", mode="before")(_check_pseudonymous)

    @property
    def time(self) -> datetime:
        return self.event_time

    def key(self) -> bytes:
        return self.site_id.encode()


class KioskHeartbeat(Event):
    """A gate's sign of life, every 30 s, so officers see a dead or lagging kiosk."""

    SCHEMA: ClassVar[str] = "kiosk/1"
    TOPIC: ClassVar[str] = KIOSKS

    schema_: str = Field(alias="schema", default="kiosk/1")
    kiosk_id: Identifier
    site_id: Identifier
    sent_at: Instant
    spool_depth: Count
    last_scan_at: Instant | None = None
    scans_since_start: Count
    decode_failures: Count
    version: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    # Added within version 1 (optional, so every kiosk/1 reader still reads it):
    # live camera frames skipped because the decoder was still busy. A number
    # that keeps climbing means the gate sees the present only in snapshots.
    frames_dropped: Count | None = None
    # Also added within version 1: why the revocation list could not be
    # refreshed (the kiosk keeps its last good list meanwhile), frames refused
    # for their size before decoding, and frames whose decoding ran out of time.
    revocations_error: Annotated[str, StringConstraints(max_length=500)] | None = None
    frames_too_large: Count | None = None
    frames_over_budget: Count | None = None

    @property
    def time(self) -> datetime:
        return self.sent_at

    def key(self) -> bytes:
        return self.kiosk_id.encode()


class DeadLetter(Event):
    """A message that could not be processed, kept whole (base64) with the reason."""

    SCHEMA: ClassVar[str] = "deadletter/1"
    TOPIC: ClassVar[str] = DEADLETTER

    schema_: str = Field(alias="schema", default="deadletter/1")
    topic: str
    partition: int | None
    offset: int | None
    key_b64: str | None
    value_b64: str | None
    reason: str
    seen_at: Instant
    # Dead letters of personal topics (PERSONAL_TOPICS) carry no raw bytes:
    # the key and the whole value as keyed hashes, and the value's JSON with
    # every identifier replaced by its keyed hash (None when it was not JSON).
    key_hash: str | None = None
    value_hash: str | None = None
    redacted: dict[str, Any] | None = None

    def key(self) -> bytes:
        return self.topic.encode()

    @property
    def value(self) -> bytes | None:
        return None if self.value_b64 is None else base64.b64decode(self.value_b64)


E = TypeVar("E", bound=Event)

PageAction: TypeAlias = Literal[
    "attempt",
    "failed",
    "delivered",
    "queued",
    "skipped",
    "duplicate",
    "escalated",
    "acknowledged",
    "exhausted",
    # Added within version 1 by the console (scantrail/console): an alert given to
    # an officer (officer_id), and an alert closed with a note (reason). Readers
    # that predate them skip the records; the pager's ledger ignores them.
    "assigned",
    "resolved",
]
Channel: TypeAlias = Literal["webhook", "email"]


class PageRecord(Event):
    """One step of paging an alert, appended to the pages audit topic.

    The topic is the pager's journal as well as the audit trail: dedupe,
    the warning queues and open escalations are rebuilt from it on start, so
    records that a restart needs (``delivered``, ``queued``, ``escalated``)
    carry the alert itself. Keyed by ``alert_id`` so one alert's records stay
    in order on one partition.
    """

    SCHEMA: ClassVar[str] = "page/1"
    TOPIC: ClassVar[str] = PAGES

    schema_: str = Field(alias="schema", default="page/1")
    alert_id: Identifier
    action: PageAction
    site_id: Identifier
    severity: Severity
    at: Instant
    step: Count = 0
    officer_id: Identifier | None = None
    channel: Channel | None = None
    attempt: Annotated[int, Field(ge=1, le=INT64_MAX)] | None = None
    reason: Annotated[str, StringConstraints(max_length=2000)] = ""
    alert: dict[str, Any] | None = None
    # Added within version 1 (optional): the person who took a console action
    # ("console:<user>"); officer_id stays the officer the record is about.
    by: Identifier | None = None

    def key(self) -> bytes:
        return self.alert_id.encode()


AuditChannel: TypeAlias = Literal["http", "cli", "console", "replay"]
AuditOutcome: TypeAlias = Literal["allowed", "refused", "failed"]


class AuditRecord(Event):
    """Who read or changed personal data, when, through what, and what came back.

    One record per request, refused requests included: an auditor must see the
    attempts that failed as well as the reads that succeeded. Keyed by actor
    so one person's (or credential's) actions stay in order on one partition.
    ``person_id`` is the pseudonymous subject of the request; a refused request
    whose subject was not a valid pseudonymous id leaves it empty and says why
    in ``reason``, so a refused identifier is never stored in clear.
    """

    SCHEMA: ClassVar[str] = "audit/1"
    TOPIC: ClassVar[str] = AUDIT

    schema_: str = Field(alias="schema", default="audit/1")
    audit_id: Identifier
    at: Instant
    actor: Identifier
    role: Identifier | None = None
    channel: AuditChannel
    action: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z_]+$")]
    outcome: AuditOutcome
    reason: Annotated[str, StringConstraints(max_length=500)] = ""
    person_id: Identifier | None = None
    since: Instant | None = None
    until: Instant | None = None
    depth: Annotated[int, Field(ge=0, le=100)] | None = None
    contacts_returned: Annotated[int, Field(ge=0)] | None = None
    detail: dict[str, Any] = Field(default_factory=dict)

    _pseudonymous = field_validator("person_id", mode="before")(_check_pseudonymous)

    @property
    def time(self) -> datetime:
        return self.at

    def key(self) -> bytes:
        return self.actor.encode()


EVENT_TYPES: tuple[type[Event], ...] = (
    ScanEvent,
    TemperatureReading,
    QuarantineRecord,
    Alert,
    KioskHeartbeat,
    DeadLetter,
    PageRecord,
    AuditRecord,
)
SCHEMAS: dict[str, type[Event]] = {cls.SCHEMA: cls for cls in EVENT_TYPES}
TOPIC_SCHEMAS: dict[str, type[Event]] = {cls.TOPIC: cls for cls in EVENT_TYPES}
ALL_TOPICS: tuple[str, ...] = (
    SCANS,
    TEMPERATURES,
    QUARANTINE,
    ALERTS,
    KIOSKS,
    PAGES,
    DEADLETTER,
    AUDIT,
)


def _explain(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in item["loc"]) or "event"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


#: What parsing or validating hostile input may raise besides ValidationError:
#: too many digits or an unknown constant (ValueError, UnicodeError), nesting
#: past the parser's depth (RecursionError), an unserialisable object
#: (TypeError) and numbers past a float (OverflowError).
_MALFORMED = (ValueError, TypeError, RecursionError, OverflowError)


def decode(raw: bytes | str, *, expect: type[Event] | None = None) -> Event:
    """Parse and validate one message; raise :class:`ContractError` saying why not.

    ``expect`` restricts the accepted kind (a temperature on the scans topic is
    as wrong as malformed JSON). Total: for any input the answer is an event
    or a :class:`ContractError`, never another exception, so one bad record
    can only ever become a dead letter.
    """
    if expect is not None and _one_pass_suffices(raw):
        try:
            return expect.model_validate_json(raw, strict=True)
        except (ValidationError, *_MALFORMED):
            pass  # the two-pass path below says precisely why
    try:
        obj = json.loads(raw, parse_constant=_no_constant)
    except _MALFORMED as exc:
        raise ContractError(f"not JSON: {_brief(exc)}") from None
    cls = _event_type(obj, expect)
    return _validate(cls, raw)


ONE_PASS_MAX_BYTES = 4096
"""Records up to this size may be validated in one pass; every event is far smaller."""


def _one_pass_suffices(raw: bytes | str) -> bool:
    """Whether validating ``raw`` as the expected kind alone decides it as both passes would.

    The strict model validation parses the JSON itself and checks the schema
    field, so for a record of a known kind the first pass (``json.loads``, to
    find the kind) adds nothing but its cost, about half of a decode, on every
    kiosk record. It is skipped only where the validator's parser is known to
    accept nothing the first pass refuses: it reads ``NaN`` and ``Infinity``
    in extra fields, which RFC 8259 forbids, and a huge record could hide a
    number longer than Python's digit limit. A record the one pass refuses
    goes through both passes, so every error says what it always said.
    """
    if len(raw) > ONE_PASS_MAX_BYTES:
        return False
    if isinstance(raw, str):
        return "NaN" not in raw and "Infinity" not in raw
    return b"NaN" not in raw and b"Infinity" not in raw


def _brief(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:300] + "..."


def _validate(cls: type[Event], raw: bytes | str) -> Event:
    try:
        # Strict mode: JSON-mode validation accepts RFC 3339 strings for times
        # but never coerces "37.5" into a float or 1 into a string.
        return cls.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise ContractError(f"invalid {cls.SCHEMA}: {_explain(exc)}") from None
    except _MALFORMED as exc:
        raise ContractError(f"invalid {cls.SCHEMA}: {type(exc).__name__}: {_brief(exc)}") from None


def decode_as(raw: bytes | str, kind: type[E]) -> E:
    """:func:`decode` that also tells the type checker which kind came back."""
    event = decode(raw, expect=kind)
    if not isinstance(event, kind):  # decode(expect=...) guarantees it; keeps mypy honest
        raise ContractError(f"expected {kind.SCHEMA}")
    return event


def decode_known(raw: bytes | str, kind: type[E]) -> E:
    """Validate ``raw`` as ``kind`` in one strict pass, for a record whose kind is known.

    For the worker's internal topics, whose records its kiosk stage has already
    decoded with :func:`decode`: each is still validated (strictly, the schema
    field checked against ``kind``), but not parsed a second time to find out
    what it is, which was half the cost of every internal hop. Errors are
    :class:`ContractError` as from :func:`decode`.
    """
    event = _validate(kind, raw)
    if not isinstance(event, kind):  # _validate returns an instance of kind; keeps mypy honest
        raise ContractError(f"expected {kind.SCHEMA}")
    return event


def from_dict(obj: object, *, expect: type[Event] | None = None) -> Event:
    """Validate an already-parsed JSON object (see :func:`decode`); total like it."""
    try:
        cls = _event_type(obj, expect)
    except ContractError:
        raise
    except _MALFORMED as exc:  # a Mapping that fails to look its keys up
        raise ContractError(f"not a JSON object: {_brief(exc)}") from None
    try:
        text = json.dumps(obj, allow_nan=False)
    except _MALFORMED as exc:
        raise ContractError(f"invalid {cls.SCHEMA}: not JSON data: {_brief(exc)}") from None
    return _validate(cls, text)


def _event_type(obj: object, expect: type[Event] | None) -> type[Event]:
    if not isinstance(obj, Mapping):
        raise ContractError(f"not a JSON object but {type(obj).__name__}")
    schema = obj.get("schema")
    if not isinstance(schema, str):
        raise ContractError("missing schema field")
    cls = SCHEMAS.get(schema)
    if cls is None:
        raise ContractError(f"unknown schema {schema[:64]!r}")
    if expect is not None and cls is not expect:
        raise ContractError(f"schema {schema!r} does not belong here (expected {expect.SCHEMA!r})")
    return cls


def encode(event: Event) -> bytes:
    """Serialise compactly as UTF-8 JSON, extra fields included."""
    return json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()


def alert_id(kind: str, evidence: Iterable[str]) -> str:
    """Deterministic id: the same facts always give the same alert.

    Re-processing after a crash, or a replay, then re-produces an identical
    alert that consumers deduplicate, never a second one.
    """
    digest = hashlib.sha256("\x1f".join([kind, *sorted(evidence)]).encode()).hexdigest()
    return f"{kind}:{digest[:24]}"


#: Topics whose records name persons: their dead letters keep identifiers as keyed hashes only.
PERSONAL_TOPICS: tuple[str, ...] = (SCANS, TEMPERATURES, QUARANTINE, ALERTS, PAGES, AUDIT)

#: Fields of a personal record kept in clear in its dead letter (what, where and when, never
#: who), unless a value is shaped like a phone number, ID number or e-mail address.
_CLEAR_FIELDS = frozenset(
    {
        "schema",
        "event_id",
        "scan_event_id",
        "alert_id",
        "kiosk_id",
        "site_id",
        "direction",
        "pass_status",
        "health_code",
        "scanned_at",
        "measured_at",
        "method",
        "kind",
        "severity",
        "event_time",
        "raised_at",
        "starts_on",
        "ends_on",
        "action",
        "channel",
        "at",
    }
)


def is_personal_topic(topic: str) -> bool:
    """Whether a (namespaced) topic carries records that name persons."""
    return topic.endswith(PERSONAL_TOPICS)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _writable(text: str) -> str:
    """Text a UTF-8 record can hold: a hostile record's lone surrogates become U+FFFD."""
    return text if _utf8(text) else text.encode("utf-8", "replace").decode("utf-8")


def _redact(value: Any, hash_key: bytes, name: str = "") -> Any:
    if isinstance(value, dict):
        return {_writable(str(k)): _redact(v, hash_key, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, hash_key, name) for v in value]
    if isinstance(value, str) and (
        name not in _CLEAR_FIELDS
        or why_not_pseudonymous(value) is not None
        or not _utf8(value)  # a lone surrogate cannot be written as UTF-8: keep its hash
    ):
        return keyed_hash(hash_key, value)
    return value


def _redact_reason(reason: str, hash_key: bytes) -> str:
    """A reason written by a caller might quote the value: identifier-shaped words are hashed."""
    words = re.split(r"""([\s'"=:,;()\[\]{}]+)""", reason)
    return "".join(
        keyed_hash(hash_key, w) if w and why_not_pseudonymous(w) is not None else w for w in words
    )


#: The most of a failed message's bytes a dead letter keeps (its base64 must fit in 1 MB).
DEAD_LETTER_VALUE_LIMIT = 512 * 1024


def dead_letter(
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    seen_at: datetime,
    hash_key: bytes | None = None,
    pseudonymise: bool = True,
) -> DeadLetter:
    """Wrap a message that failed, with its reason.

    A message of a topic without personal data is kept whole (base64) so it
    can be replayed. One of a personal topic (``PERSONAL_TOPICS``) is kept
    only as keyed hashes (HMAC-SHA256 with ``hash_key``, by default the
    deployment's dead-letter key from :func:`scantrail.keys.dead_letter_key`):
    a refused phone number must not sit in clear on the dead-letter topic.
    ``pseudonymise=False`` keeps the bytes whole even then (tests of replay).

    A kept value so large that its base64 would not fit in one Kafka record is
    kept in part (the first :data:`DEAD_LETTER_VALUE_LIMIT` bytes), with its
    length and SHA-256 in the reason: a dead letter the broker refuses would
    leave its record neither processed nor kept.
    """
    if not (pseudonymise and is_personal_topic(topic)):
        if value is not None and len(value) > DEAD_LETTER_VALUE_LIMIT:
            reason = (  # first: a reason is kept to its first 2,000 characters
                f"[value cut to its first {DEAD_LETTER_VALUE_LIMIT} of {len(value)} bytes,"
                f" sha256 {hashlib.sha256(value).hexdigest()}] {reason}"
            )
            value = value[:DEAD_LETTER_VALUE_LIMIT]
        return DeadLetter(
            topic=topic,
            partition=partition,
            offset=offset,
            key_b64=None if key is None else base64.b64encode(key).decode(),
            value_b64=None if value is None else base64.b64encode(value).decode(),
            reason=_writable(reason[:2000]),
            seen_at=seen_at,
        )
    if hash_key is None:
        from scantrail.keys import dead_letter_key  # the one place a secret is read

        hash_key = dead_letter_key()
    redacted: dict[str, Any] | None = None
    if value is not None:
        # Whatever a hostile record holds (a 5,000-digit integer, deep nesting),
        # the letter is still written: what does not parse is kept as its hash only.
        try:
            parsed = json.loads(value)
            redacted = _redact(parsed, hash_key) if isinstance(parsed, dict) else None
        except (ValueError, RecursionError):
            redacted = None
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        key_b64=None,
        value_b64=None,
        reason=_writable(_redact_reason(reason[:2000], hash_key)),
        seen_at=seen_at,
        key_hash=None if key is None else keyed_hash(hash_key, key),
        value_hash=None if value is None else keyed_hash(hash_key, value),
        redacted=redacted,
    )


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every event kind, keyed by schema name, for docs and other languages."""
    out: dict[str, dict[str, Any]] = {}
    for cls in EVENT_TYPES:
        schema = cls.model_json_schema(by_alias=True, mode="serialization")
        schema["properties"]["schema"] = {"const": cls.SCHEMA, "title": "Schema"}
        schema["title"] = cls.SCHEMA
        schema["x-topic"] = cls.TOPIC
        out[cls.SCHEMA] = schema
    return out

"""The contract is total: any bytes decode to an event or raise ContractError, nothing else.

Every consumer turns a ContractError into a dead letter, so any other
exception escaping ``decode`` or ``from_dict`` is a record that can stop a
consumer for good. Hypothesis feeds raw bytes, mutated valid events and
pathological JSON (huge integers, deep nesting, NaN and Infinity, lone
surrogates, megabyte strings); what is accepted must also be usable
downstream: inside the time window, re-encodable as strict JSON.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scantrail import contract
from scantrail.errors import ContractError
from tests.factories import make_quarantine, make_reading, make_scan

ALERT = {
    "schema": "alert/1",
    "alert_id": "fever_confirmed:abc",
    "kind": "fever_confirmed",
    "severity": "critical",
    "site_id": "site-1",
    "kiosk_id": "kiosk-1",
    "person_id": "p-000001",
    "event_time": "2020-02-10T08:10:00+08:00",
    "raised_at": "2020-02-10T08:10:01+08:00",
    "evidence": ["t1", "t2"],
    "detail": {"celsius": [37.8, 37.9]},
}
BEAT = {
    "schema": "kiosk/1",
    "kiosk_id": "kiosk-1",
    "site_id": "site-1",
    "sent_at": "2020-02-10T08:00:30+08:00",
    "spool_depth": 0,
    "scans_since_start": 12,
    "decode_failures": 1,
    "version": "0.1.0",
}
VALID: list[dict[str, Any]] = [
    make_scan().to_dict(),
    make_reading().to_dict(),
    make_quarantine().to_dict(),
    ALERT,
    BEAT,
]

HUGE_INT = "9" * 5000
DEEP = "[" * 100_000 + "]" * 100_000
PATHOLOGICAL_TEXT = [
    HUGE_INT,
    "-" + HUGE_INT,
    "1e999",
    "-1e999",
    "NaN",
    "Infinity",
    "-Infinity",
    DEEP,
    '{"a":' * 50_000 + "1" + "}" * 50_000,
    '"\\ud800"',
    '"\\udfff\\ud800"',
    '"' + "x" * 1_000_000 + '"',
    "9223372036854775808",
    "-9223372036854775809",
    '"0001-01-01T00:00:00+05:00"',
    '"9999-12-31T23:59:59-05:00"',
    '"2300-01-01T00:00:00Z"',
    '"1969-12-31T23:59:59Z"',
    '"2020-02-30T08:00:00+08:00"',
    '"2020-02-10T08:00:00+99:99"',
    "null",
    "true",
    "[]",
    "{}",
]


def _outcome(decoder: Any, value: Any) -> contract.Event | None:
    """The event, or None for a ContractError; any other exception fails the test."""
    try:
        event: contract.Event = decoder(value)
    except ContractError as exc:
        assert str(exc), "a ContractError must give its reason"
        return None
    _usable_downstream(event)
    return event


def _usable_downstream(event: contract.Event) -> None:
    """An accepted event is inside the window and survives encode → decode unchanged."""
    again = contract.decode(contract.encode(event))
    assert again == event
    json.loads(contract.encode(event), parse_constant=_refuse)  # strict JSON out
    moment = getattr(event, "time", None)
    if moment is not None:
        assert contract.EARLIEST_TIME <= moment <= contract.LATEST_TIME
        assert (event.timestamp_ms() or 0) >= 0


def _refuse(name: str) -> None:
    raise AssertionError(f"{name} in encoded output")


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 5, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["2020-02-10T08:00:00+08:00", "0001-01-01T00:00:00+05:00", "p-1", ""]),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    """A valid event with one field replaced, removed or spliced with pathological text."""
    event = dict(draw(st.sampled_from(VALID)))
    field = draw(st.sampled_from(sorted(event)))
    how = draw(st.sampled_from(["replace", "remove", "splice", "bytes"]))
    if how == "replace":
        event[field] = draw(json_value)
        return json.dumps(event).encode()
    if how == "remove":
        del event[field]
        return json.dumps(event).encode()
    text = json.dumps(event)
    if how == "splice":  # a raw JSON token where the field's value was
        token = draw(st.sampled_from(PATHOLOGICAL_TEXT))
        head, _, _ = text.partition(f'"{field}": ')
        rest = text[len(head) + len(field) + 4 :]
        value_end = json.dumps(event[field])
        return (head + f'"{field}": ' + token + rest[len(value_end) :]).encode()
    raw = bytearray(text.encode())
    at = draw(st.integers(0, len(raw) - 1))
    op = draw(st.sampled_from(["flip", "cut", "insert"]))
    if op == "flip":
        raw[at] ^= draw(st.integers(1, 255))
    elif op == "cut":
        del raw[at:]
    else:
        raw[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(raw)


@st.composite
def pathological_json(draw: st.DrawFn) -> bytes:
    """Whole messages made of pathological JSON, with and without a schema around them."""
    token = draw(st.sampled_from(PATHOLOGICAL_TEXT))
    schema = draw(st.sampled_from([*contract.SCHEMAS, None]))
    if schema is None:
        return token.encode()
    return f'{{"schema": "{schema}", "x": {token}}}'.encode()


hostile = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@hostile
@given(st.binary(max_size=512))
def test_any_bytes_decode_to_an_event_or_a_contract_error(raw: bytes) -> None:
    _outcome(contract.decode, raw)


@hostile
@given(mutated_events())
def test_mutated_events_decode_to_an_event_or_a_contract_error(raw: bytes) -> None:
    _outcome(contract.decode, raw)
    _outcome(lambda r: contract.decode(r.decode("utf-8", "surrogateescape")), raw)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pathological_json())
def test_pathological_json_is_a_contract_error_or_an_event(raw: bytes) -> None:
    _outcome(contract.decode, raw)


@pytest.mark.parametrize("token", PATHOLOGICAL_TEXT, ids=lambda t: t[:24])
def test_every_pathological_value_in_every_field_is_refused_or_accepted_cleanly(token: str) -> None:
    for event in VALID:
        for field in event:
            if field == "schema":
                continue
            body = dict(event, **{field: "@@"})
            raw = json.dumps(body).replace('"@@"', token, 1).encode()
            _outcome(contract.decode, raw)


@hostile
@given(
    st.one_of(
        json_value,
        st.dictionaries(st.text(max_size=8), json_value).map(lambda d: {**d, "schema": "alert/1"}),
        st.sampled_from(VALID).flatmap(
            lambda ev: st.tuples(st.sampled_from(sorted(ev)), json_value).map(
                lambda kv: {**ev, kv[0]: kv[1]}
            )
        ),
        st.builds(object),
        st.sets(st.integers(), max_size=3),
        st.just({"schema": "alert/1", "detail": {"x": object()}}),
        st.just({"schema": "alert/1", "detail": {(1, 2): 1}}),
        st.just({"schema": "alert/1", "detail": {"n": 10**5000}}),
        st.just({"schema": "scan/1", "event_id": "\ud800"}),
    )
)
def test_from_dict_is_total_over_any_object(obj: Any) -> None:
    _outcome(contract.from_dict, obj)


def test_deeply_nested_python_objects_are_a_contract_error() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ContractError):
        contract.from_dict({"schema": "alert/1", "detail": {"x": deep}})


def test_huge_integer_celsius_is_a_contract_error() -> None:
    body = json.dumps(make_reading().to_dict()).replace('"celsius": 36.5', f'"celsius": {HUGE_INT}')
    with pytest.raises(ContractError, match="not JSON"):
        contract.decode(body.encode())


@pytest.mark.parametrize("field", ["spool_depth", "scans_since_start", "decode_failures"])
def test_counts_beyond_int64_are_refused(field: str) -> None:
    with pytest.raises(ContractError, match=field):
        contract.from_dict({**BEAT, field: 2**63})
    assert contract.from_dict({**BEAT, field: 2**63 - 1})


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json_even_in_free_fields(constant: str) -> None:
    raw = json.dumps(ALERT).replace("37.8", constant).encode()
    with pytest.raises(ContractError, match="not JSON"):
        contract.decode(raw)


SHANGHAI = timezone(timedelta(hours=8))


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        ("0001-01-01T00:00:00+05:00", False),  # no UTC date at all
        ("0001-01-01T00:00:00Z", False),
        ("1969-12-31T23:59:59Z", False),  # before Kafka's record timestamps
        ("1970-01-01T12:00:00Z", False),  # inside a day of the epoch: no margin
        ("1970-01-02T00:00:00Z", True),
        ("2020-02-10T08:00:00+08:00", True),
        ("2262-04-10T00:00:00Z", True),
        ("2262-04-10T00:00:01Z", False),
        ("2262-04-11T23:47:16Z", False),  # the last int64 nanosecond: no margin left
        ("2300-01-01T00:00:00Z", False),  # beyond InfluxDB's int64 nanoseconds
        ("9999-12-31T23:59:59-05:00", False),  # no UTC date at all
    ],
)
def test_times_must_lie_in_the_window_the_pipeline_represents(moment: str, inside: bool) -> None:
    raw = json.dumps({**make_reading().to_dict(), "measured_at": moment}).encode()
    if inside:
        event = contract.decode(raw)
        assert isinstance(event, contract.TemperatureReading)
        ns = int(event.measured_at.timestamp()) * 10**9
        assert 0 <= ns < 2**63
        for hours in (-23, 23):  # every local date exists
            event.measured_at.astimezone(timezone(timedelta(hours=hours))).date()
    else:
        with pytest.raises(ContractError, match="measured_at: .*time outside"):
            contract.decode(raw)


def test_python_built_events_obey_the_window_too() -> None:
    with pytest.raises(ValueError, match="time outside"):
        make_scan(scanned_at=datetime(2300, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="date outside"):
        make_quarantine(ends_on=datetime(9999, 12, 31).date())
    assert make_scan(scanned_at=datetime(2030, 1, 1, tzinfo=SHANGHAI)).seq == 0

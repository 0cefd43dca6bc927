"""Person ids that are not pseudonyms are refused, and dead letters keep them only as hashes."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scantrail import contract
from scantrail.errors import ContractError
from scantrail.pseudonyms import (
    _shape_of_personal_data,
    is_resident_id,
    keyed_hash,
    resident_id_check,
    why_not_pseudonymous,
)

KEY = b"test-dead-letter-key"


def _scan(person_id: str) -> bytes:
    return json.dumps(
        {
            "schema": "scan/1",
            "event_id": "k-1-s1",
            "kiosk_id": "k-1",
            "site_id": "site-1",
            "direction": "in",
            "person_id": person_id,
            "pass_status": "valid",
            "scanned_at": "2020-02-10T08:00:00+08:00",
            "seq": 1,
        }
    ).encode()


def _with_check(first17: str) -> str:
    return first17 + resident_id_check(first17)


def test_the_check_character_is_iso_7064_mod_11_2() -> None:
    # Worked by hand: sum of digit*weight for 11010519491231002 is 167, 167 % 11 = 2 -> "X".
    assert resident_id_check("11010519491231002") == "X"
    assert is_resident_id("11010519491231002X") and is_resident_id("11010519491231002x")
    assert not is_resident_id("110105194912310021")  # wrong check digit: not an ID number


@pytest.mark.parametrize(
    ("value", "word"),
    [
        ("11010519491231002X", "resident identity number"),
        (_with_check("44052418800101001"), "resident identity number"),
        (_with_check("32010619900307123"), "resident identity number"),
        ("13800138000", "phone number"),
        ("138-0013-8000", "phone number"),
        ("138 0013 8000", "phone number"),
        ("+86 138 0013 8000", "phone number"),
        ("+86-138-0013-8000", "phone number"),
        ("008613800138000", "phone number"),
        ("(010) 6552-9988", "phone number"),
        ("010.6552.9988", "phone number"),
        ("zhang.san@example.cn", "e-mail address"),
        ("a@b.io", "e-mail address"),
    ],
)
def test_identifying_values_are_refused_by_the_contract_with_a_reason(
    value: str, word: str
) -> None:
    reason = why_not_pseudonymous(value)
    assert reason is not None and word in reason
    with pytest.raises(ContractError, match=word) as refused:
        contract.decode(_scan(value))
    assert value not in str(refused.value)  # the reason never repeats the value


@pytest.mark.parametrize(
    "value", ["p-001", "p-sim-000001", "p-1a-000042", "110105194912310021", "p@site", "12345"]
)
def test_pseudonyms_pass(value: str) -> None:
    assert why_not_pseudonymous(value) is None
    assert contract.decode(_scan(value)).person_id == value  # type: ignore[attr-defined]


def test_every_person_id_field_is_checked() -> None:
    with pytest.raises(ValueError, match="e-mail"):
        contract.QuarantineRecord(
            person_id="x@y.cn",
            site_id="s",
            starts_on=datetime(2020, 2, 1).date(),
            ends_on=datetime(2020, 2, 14).date(),
            reason="",
        )
    with pytest.raises(ValueError, match="phone"):
        contract.TemperatureReading(
            event_id="e",
            kiosk_id="k",
            site_id="s",
            measured_at=datetime(2020, 2, 1, tzinfo=UTC),
            celsius=36.5,
            method="forehead_ir",
            person_id="138-0013-8000",
        )


def test_a_dead_letter_of_a_personal_topic_holds_identifiers_only_as_keyed_hashes() -> None:
    phone = "138-0013-8000"
    raw = _scan(phone)
    try:
        contract.decode(raw)
    except ContractError as exc:
        reason = f"{exc} (value {phone!r})"  # a careless caller quoting the value
    record = contract.dead_letter(
        topic="t123.scantrail.scans",
        partition=1,
        offset=7,
        key=phone.encode(),
        value=raw,
        reason=reason,
        seen_at=datetime(2020, 2, 10, tzinfo=UTC),
        hash_key=KEY,
    )
    stored = contract.encode(record)
    assert phone.encode() not in stored
    assert base64.b64encode(phone.encode()) not in stored
    assert record.key_b64 is None and record.value_b64 is None
    assert record.key_hash == keyed_hash(KEY, phone.encode())
    assert record.value_hash == keyed_hash(KEY, raw)
    assert record.redacted is not None
    assert record.redacted["person_id"] == keyed_hash(KEY, phone)
    assert record.redacted["event_id"] == "k-1-s1"  # what failed, to find it at the kiosk
    assert record.redacted["site_id"] == "site-1"  # where and when stay readable
    assert record.redacted["scanned_at"] == "2020-02-10T08:00:00+08:00"
    assert "phone number" in record.reason and phone not in record.reason
    again = contract.decode_as(stored, contract.DeadLetter)
    assert again.key_hash == record.key_hash
    # The same value under the same key correlates; under another key it does not.
    assert keyed_hash(KEY, phone) == keyed_hash(KEY, phone)
    assert keyed_hash(b"other", phone) != keyed_hash(KEY, phone)


def test_a_dead_letter_of_a_personal_topic_that_is_not_json_keeps_only_hashes() -> None:
    record = contract.dead_letter(
        topic="scantrail.temperatures",
        partition=None,
        offset=None,
        key=b"k-1",
        value=b"\xff zhang.san@example.cn",
        reason="not JSON",
        seen_at=datetime(2020, 2, 10, tzinfo=UTC),
        hash_key=KEY,
    )
    assert b"zhang" not in contract.encode(record)
    assert record.redacted is None and record.value_hash is not None


@pytest.mark.parametrize(
    "value",
    [
        b'{"celsius": ' + b"9" * 5000 + b"}",
        b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"a": ' + b"[" * 900 + b'"13800138000"' + b"]" * 900 + b"}",
        b'{"schema": "temperature/1", "event_id": "e-\\ud800", "\\udfff": 1}',
    ],
    ids=[
        "5000-digit integer",
        "100,000-deep array",
        "nesting deeper than the redaction",
        "lone surrogates in a value and a key",
    ],
)
def test_a_hostile_value_of_a_personal_topic_still_makes_a_dead_letter(value: bytes) -> None:
    record = contract.dead_letter(
        topic="scantrail.temperatures",
        partition=0,
        offset=7,
        key=b"kiosk-1",
        value=value,
        reason="invalid",
        seen_at=datetime(2020, 2, 10, tzinfo=UTC),
        hash_key=KEY,
    )
    assert record.value_hash is not None
    assert b"13800138000" not in contract.encode(record)


def test_the_default_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from scantrail.keys import dead_letter_key

    monkeypatch.setenv("SCANTRAIL_DEADLETTER_KEY", "from-env")
    dead_letter_key.cache_clear()
    try:
        record = contract.dead_letter(
            topic="scantrail.scans",
            partition=0,
            offset=0,
            key=b"p-1",
            value=None,
            reason="x",
            seen_at=datetime(2020, 2, 10, tzinfo=UTC),
        )
        assert record.key_hash == keyed_hash(b"from-env", b"p-1")
    finally:
        dead_letter_key.cache_clear()


def test_the_key_file_is_created_private(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    from pathlib import Path

    from scantrail.keys import dead_letter_key

    monkeypatch.delenv("SCANTRAIL_DEADLETTER_KEY", raising=False)
    monkeypatch.delenv("SCANTRAIL_DEADLETTER_KEY_FILE", raising=False)
    monkeypatch.setenv("SCANTRAIL_STATE", str(tmp_path))
    dead_letter_key.cache_clear()
    try:
        first = dead_letter_key()
        dead_letter_key.cache_clear()
        assert dead_letter_key() == first  # read back, not made anew
        path = Path(str(tmp_path)) / "secrets" / "deadletter.key"
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.parent.stat().st_mode & 0o777 == 0o700
    finally:
        dead_letter_key.cache_clear()


def test_a_dead_letter_too_large_for_one_record_keeps_its_head_and_says_so() -> None:
    value = b'{"schema": "kiosk/1", "pad": "' + b"x" * (700 * 1024) + b'"}'
    record = contract.dead_letter(
        topic="scantrail.kiosks",
        partition=0,
        offset=3,
        key=b"kiosk-1",
        value=value,
        reason="invalid kiosk/1",
        seen_at=datetime(2020, 2, 10, tzinfo=UTC),
        hash_key=KEY,
    )
    assert record.value == value[: contract.DEAD_LETTER_VALUE_LIMIT]
    assert record.reason.startswith(f"[value cut to its first {contract.DEAD_LETTER_VALUE_LIMIT}")
    assert record.reason.endswith("invalid kiosk/1")
    assert len(contract.encode(record)) < 1_000_000


@settings(max_examples=3000, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("0123456789Xx+-.() @\t\nabz.\u0663\u00a0"), max_size=24)
    | st.text(max_size=24)
)
def test_the_shortcut_refuses_exactly_what_the_three_checks_refuse(value: str) -> None:
    assert why_not_pseudonymous(value) == _shape_of_personal_data(value)


@pytest.mark.parametrize(
    "value",
    [
        "11010519491231002X",
        "+86 138 0013 8000",
        "(010) 6552-9988",
        "a.b@example.org",
        "138\u00a00013\u00a08000",
    ],
)
def test_the_shortcut_never_passes_personal_data(value: str) -> None:
    assert why_not_pseudonymous(value) is not None

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.passes import (
    DEFAULT_SKEW,
    GatePass,
    PassVerifier,
    RevocationList,
    add_revocation,
    generate_key,
    issue_pass,
    issue_token,
    load_private_key,
    parse_pass,
    public_key_bytes,
    verify_pass,
    write_private_key,
)
from scantrail.errors import PassError

T0 = datetime(2020, 2, 10, 8, 0, tzinfo=UTC)
ISSUER = generate_key()
OTHER = generate_key()
DEVICE = generate_key()
PUB = ISSUER.public_key()


def make_pass(**overrides: object) -> GatePass:
    fields: dict[str, object] = dict(
        pass_id="ps-000001",
        person_id="p-1-000042",
        site_id="site-007",
        household_id="hh-0013",
        valid_from=T0,
        valid_until=T0 + timedelta(days=14),
        health_code="green",
    )
    fields.update(overrides)
    return GatePass(**fields)  # type: ignore[arg-type]


PAPER = issue_pass(make_pass(), ISSUER)
PHONE = issue_pass(make_pass(pass_id="ps-000002", device_key=public_key_bytes(DEVICE)), ISSUER)


def verdict(
    text: str, now: datetime = T0 + timedelta(hours=1), revoked: frozenset[str] = frozenset()
):
    return verify_pass(text, issuer=PUB, revoked=revoked, now=now)


def test_valid_paper_pass_carries_its_fields():
    v = verdict(PAPER)
    assert (v.status, v.pass_id, v.person_id, v.site_id, v.health_code, v.form) == (
        "valid",
        "ps-000001",
        "p-1-000042",
        "site-007",
        "green",
        "paper",
    )


def test_payload_is_compact_enough_for_a_small_qr():
    assert PAPER.startswith("ST1.")
    assert len(PAPER) < 230
    assert len(issue_token(PHONE, DEVICE, T0)) < 360


def test_pass_signed_by_another_issuer_is_forged():
    assert verdict(issue_pass(make_pass(), OTHER)).status == "forged"


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("hello world", "unknown"),
        ("", "unknown"),
        ("http://example.com/ST1.abc", "unknown"),
        ("ST1.only-two", "forged"),
        ("ST1.!!!.???", "forged"),
        ("ST1T.a.b.c", "forged"),
        ("\x00\xff binary", "unknown"),
    ],
)
def test_non_passes_get_a_verdict_never_an_exception(text: str, status: str):
    assert verdict(text).status == status


def test_revoked_pass():
    assert verdict(PAPER, revoked=frozenset({"ps-000001"})).status == "revoked"


def test_forged_pass_with_revoked_id_stays_forged():
    fake = issue_pass(make_pass(), OTHER)
    assert verdict(fake, revoked=frozenset({"ps-000001"})).status == "forged"


@pytest.mark.parametrize(
    ("offset", "status"),
    [
        (-timedelta(minutes=5), "expired"),  # not valid yet
        (-DEFAULT_SKEW + timedelta(seconds=1), "valid"),  # kiosk clock a little behind
        (timedelta(days=14) + DEFAULT_SKEW - timedelta(seconds=1), "valid"),
        (timedelta(days=14) + DEFAULT_SKEW + timedelta(seconds=1), "expired"),
    ],
)
def test_validity_window_with_skew(offset: timedelta, status: str):
    assert verdict(PAPER, now=T0 + offset).status == status


@pytest.mark.parametrize(
    ("age_s", "status"),
    [
        (-40, "expired"),
        (-20, "valid"),
        (0, "valid"),
        (59, "valid"),
        (89, "valid"),
        (91, "expired"),
        (3600, "expired"),
    ],
)
def test_phone_token_goes_stale_after_a_minute_plus_skew(age_s: int, status: str):
    token = issue_token(PHONE, DEVICE, T0 + timedelta(hours=1))
    assert verdict(token, now=T0 + timedelta(hours=1, seconds=age_s)).status == status


def test_phone_pass_without_token_is_refused():
    v = verdict(PHONE)
    assert v.status == "forged" and "token" in v.reason


def test_token_signed_by_another_device_is_forged():
    impostor = issue_token(PHONE, DEVICE, T0 + timedelta(hours=1))
    parts = impostor.split(".")
    other_sig = issue_token(
        issue_pass(make_pass(pass_id="ps-000002", device_key=public_key_bytes(OTHER)), ISSUER),
        OTHER,
        T0 + timedelta(hours=1),
    ).split(".")[4]
    assert verdict(".".join([*parts[:4], other_sig])).status == "forged"


def test_long_lived_token_is_refused():
    token = issue_token(PHONE, DEVICE, T0 + timedelta(hours=1), lifetime=timedelta(days=1))
    assert verdict(token, now=T0 + timedelta(hours=1, seconds=10)).status == "expired"


def test_token_needs_the_pass_device_key():
    with pytest.raises(PassError):
        issue_token(PHONE, OTHER, T0)


def test_phone_number_as_person_id_is_refused():
    with pytest.raises(PassError, match="phone"):
        issue_pass(make_pass(person_id="13800138000"), ISSUER)


def test_parse_pass_reads_without_verifying():
    assert parse_pass(PAPER).household_id == "hh-0013"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_tampered_byte_is_never_valid(data: st.DataObject):
    text = data.draw(st.sampled_from([PAPER, issue_token(PHONE, DEVICE, T0 + timedelta(hours=1))]))
    i = data.draw(st.integers(0, len(text) - 1))
    c = data.draw(st.characters(codec="ascii").filter(lambda ch: ch != text[i]))
    tampered = text[:i] + c + text[i + 1 :]
    v = verdict(tampered, now=T0 + timedelta(hours=1, seconds=5))
    assert v.status != "valid"
    if i >= 5:  # the prefix intact: a ScanTrail text, so it must be caught as forged
        assert v.status == "forged"


@given(st.text(max_size=400))
def test_arbitrary_text_never_crashes_or_validates(text: str):
    assert verdict(text).status in {"unknown", "forged"}


def test_private_key_is_written_0600_and_not_overwritten(tmp_path: Path):
    path = tmp_path / "k" / "issuer.key"
    write_private_key(ISSUER, path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_private_key(path).sign(b"x") == ISSUER.sign(b"x")
    with pytest.raises(PassError, match="exists"):
        write_private_key(ISSUER, path)


def test_world_readable_private_key_is_refused(tmp_path: Path):
    path = tmp_path / "issuer.key"
    write_private_key(ISSUER, path)
    path.chmod(0o644)
    with pytest.raises(PassError, match="readable by others"):
        load_private_key(path)


def test_verifier_reloads_revocations_when_the_file_changes(tmp_path: Path):
    path = tmp_path / "revoked.json"
    verifier = PassVerifier(PUB, RevocationList(path))
    now = T0 + timedelta(hours=1)
    assert verifier.verify(PAPER, now).status == "valid"
    assert add_revocation(path, "ps-000001", at=now, reason="lost") is True
    assert add_revocation(path, "ps-000001", at=now, reason="lost") is False
    os.utime(path, ns=(1, 1))  # force a different mtime even on coarse clocks
    assert verifier.verify(PAPER, now).status == "revoked"


def test_corrupt_revocation_file_keeps_the_last_good_list(tmp_path: Path):
    path = tmp_path / "revoked.json"
    add_revocation(path, "ps-000001", at=T0, reason="lost")
    revocations = RevocationList(path)
    assert "ps-000001" in revocations.refresh()
    path.write_text("{ half written")
    os.utime(path, ns=(2, 2))
    assert "ps-000001" in revocations.refresh()
    assert revocations.last_error is not None

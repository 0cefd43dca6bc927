"""Ack tokens: a link acks one alert as one officer; an officer token acks as that officer."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from scantrail.errors import ServiceError
from sinks.ack_tokens import (
    check_ack,
    is_officer,
    link_token,
    load_ack_secret,
    may_acknowledge,
    officer_token,
)

SECRET = b"0123456789abcdef0123456789abcdef"
NOW = 1_800_000_000
LATER = NOW + 24 * 3600


def test_link_token_acks_only_its_alert_and_officer() -> None:
    token = link_token(SECRET, "fever_confirmed:a1", "officer-a", LATER)
    assert may_acknowledge(SECRET, "fever_confirmed:a1", "officer-a", token, NOW)
    assert not may_acknowledge(SECRET, "fever_confirmed:a2", "officer-a", token, NOW)
    assert not may_acknowledge(SECRET, "fever_confirmed:a1", "officer-b", token, NOW)
    assert not may_acknowledge(
        b"another-secret-0123456789abcdef0123", "fever_confirmed:a1", "officer-a", token, NOW
    )
    assert not is_officer(SECRET, "officer-a", token)  # a link is not a standing credential


def test_officer_token_acks_any_alert_as_that_officer_only() -> None:
    token = officer_token(SECRET, "officer-a")
    assert is_officer(SECRET, "officer-a", token)
    assert may_acknowledge(SECRET, "crowding:w1", "officer-a", token, NOW)
    assert not may_acknowledge(SECRET, "crowding:w1", "officer-b", token, NOW)
    assert not is_officer(SECRET, "officer-a", token[:-1] + ("0" if token[-1] != "0" else "1"))


def test_parts_cannot_be_shifted_between_alert_and_officer() -> None:
    assert link_token(SECRET, "a:b", "c", LATER) != link_token(SECRET, "a", "b:c", LATER)


def test_secret_from_value_then_file_then_created_once(tmp_path: Path) -> None:
    given = "given-secret-0123456789abcdef0123"
    assert load_ack_secret(tmp_path, value=given) == given.encode()
    path = tmp_path / "secret"
    path.write_bytes(b"from-a-file-0123456789abcdef01234\n")
    assert load_ack_secret(tmp_path, file=path) == b"from-a-file-0123456789abcdef01234"
    path.write_bytes(b"short")
    with pytest.raises(ServiceError, match="32 bytes"):
        load_ack_secret(tmp_path, file=path)

    created = load_ack_secret(tmp_path / "state")
    assert len(created) == 64
    stored = tmp_path / "state" / "pager" / "ack-secret"
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
    assert load_ack_secret(tmp_path / "state") == created  # links survive a restart
    assert list(stored.parent.iterdir()) == [stored]  # no drafts left behind


def test_pagers_starting_together_agree_on_one_secret(tmp_path: Path) -> None:
    got: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: got.append(load_ack_secret(tmp_path))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and len(set(got)) == 1


def test_link_tokens_expire_and_their_expiry_cannot_be_pushed_back() -> None:
    token = link_token(SECRET, "fever_confirmed:a1", "officer-a", LATER)
    assert check_ack(SECRET, "fever_confirmed:a1", "officer-a", token, LATER - 1) == "ok"
    assert check_ack(SECRET, "fever_confirmed:a1", "officer-a", token, LATER) == "expired"
    forged = f"{LATER + 3600}." + token.partition(".")[2]
    assert check_ack(SECRET, "fever_confirmed:a1", "officer-a", forged, LATER) == "refused"
    standing = officer_token(SECRET, "officer-a")  # the officer's own token never expires
    assert check_ack(SECRET, "fever_confirmed:a1", "officer-a", standing, LATER * 2) == "ok"


@pytest.mark.parametrize(
    "token",
    [
        "é" * 64,
        "x",
        "",
        "ABCDEF" + "0" * 58,
        "1." + "0" * 63,
        "12.34." + "0" * 64,
        "\x00" * 64,
        "0" * 65,
        "-5." + "0" * 64,
        "1" * 13 + "." + "0" * 64,
        "０" * 64,
    ],
)
def test_tokens_of_any_other_shape_are_malformed_never_an_error(token: str) -> None:
    assert check_ack(SECRET, "fever_confirmed:a1", "officer-a", token, NOW) == "malformed"
    assert not is_officer(SECRET, "officer-a", token)


@pytest.mark.parametrize("secret", ["x", "0123456789abcdef0123456789abcde"])  # 1 and 31 bytes
def test_secrets_under_32_bytes_are_refused_at_start(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ServiceError, match="at least 32 bytes"):
        load_ack_secret(tmp_path, value=secret)
    stored = tmp_path / "pager" / "ack-secret"
    stored.parent.mkdir(parents=True)
    stored.write_text(secret)  # an old, short secret left in the state directory
    with pytest.raises(ServiceError, match="at least 32 bytes"):
        load_ack_secret(tmp_path)

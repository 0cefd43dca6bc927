"""Ack tokens: a link acks one alert as one officer; an officer token acks as that officer."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from sinks.ack_tokens import (
    is_officer,
    link_token,
    load_ack_secret,
    may_acknowledge,
    officer_token,
)

SECRET = b"0123456789abcdef0123456789abcdef"


def test_link_token_acks_only_its_alert_and_officer() -> None:
    token = link_token(SECRET, "fever_confirmed:a1", "officer-a")
    assert may_acknowledge(SECRET, "fever_confirmed:a1", "officer-a", token)
    assert not may_acknowledge(SECRET, "fever_confirmed:a2", "officer-a", token)
    assert not may_acknowledge(SECRET, "fever_confirmed:a1", "officer-b", token)
    assert not may_acknowledge(
        b"another-secret-0123456789", "fever_confirmed:a1", "officer-a", token
    )
    assert not is_officer(SECRET, "officer-a", token)  # a link is not a standing credential


def test_officer_token_acks_any_alert_as_that_officer_only() -> None:
    token = officer_token(SECRET, "officer-a")
    assert is_officer(SECRET, "officer-a", token)
    assert may_acknowledge(SECRET, "crowding:w1", "officer-a", token)
    assert not may_acknowledge(SECRET, "crowding:w1", "officer-b", token)
    assert not is_officer(SECRET, "officer-a", token[:-1] + ("0" if token[-1] != "0" else "1"))


def test_parts_cannot_be_shifted_between_alert_and_officer() -> None:
    assert link_token(SECRET, "a:b", "c") != link_token(SECRET, "a", "b:c")


def test_secret_from_value_then_file_then_created_once(tmp_path: Path) -> None:
    assert load_ack_secret(tmp_path, value="given-secret") == b"given-secret"
    path = tmp_path / "secret"
    path.write_bytes(b"from-a-file-0123456789\n")
    assert load_ack_secret(tmp_path, file=path) == b"from-a-file-0123456789"
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="16 bytes"):
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

"""Pager channels: webhook signatures refuse stale timestamps; SMTP uses STARTTLS by default."""

from __future__ import annotations

import logging
import time

import pytest

from scantrail.errors import ServiceError
from sinks.channels import (
    WEBHOOK_TOLERANCE_S,
    PagerSettings,
    SmtpServer,
    resolve_secrets,
    sign,
    verify,
)
from sinks.routing import parse_roster

SECRET = b"webhook-secret-0123456789abcdef0123"
BODY = b'{"alert_id":"fever_confirmed:a1"}'
NOW = 1_800_000_000


def signed(at: int) -> tuple[str, str]:
    return str(at), sign(SECRET, str(at), BODY)


def test_a_fresh_signature_verifies() -> None:
    stamp, signature = signed(NOW)
    assert verify(SECRET, stamp, BODY, signature, now=NOW)
    now_stamp, now_signature = signed(int(time.time()))
    assert verify(SECRET, now_stamp, BODY, now_signature)  # against the real clock


@pytest.mark.parametrize("age_s", [WEBHOOK_TOLERANCE_S + 1, -WEBHOOK_TOLERANCE_S - 1, 1e6])
def test_stale_or_future_timestamps_are_refused_however_well_signed(age_s: float) -> None:
    stamp, signature = signed(int(NOW - age_s))
    assert not verify(SECRET, stamp, BODY, signature, now=NOW)


def test_a_timestamp_from_2001_is_refused() -> None:
    stamp, signature = signed(1_000_000_000)  # 2001-09-09
    assert not verify(SECRET, stamp, BODY, signature)


@pytest.mark.parametrize("stamp", ["", "abc", "1.5e9", "-1", "１８００００００００", "9" * 40])
def test_timestamps_that_are_not_unix_seconds_are_refused(stamp: str) -> None:
    assert not verify(SECRET, stamp, BODY, sign(SECRET, stamp, BODY), now=NOW)


def test_a_non_ascii_signature_is_refused_not_an_error() -> None:
    stamp, _ = signed(NOW)
    assert not verify(SECRET, stamp, BODY, "sha256=é", now=NOW)


def test_smtp_uses_starttls_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SmtpServer().starttls
    monkeypatch.delenv("SCANTRAIL_PAGER_SMTP_STARTTLS", raising=False)
    assert PagerSettings().smtp().starttls
    monkeypatch.setenv("SCANTRAIL_PAGER_SMTP_STARTTLS", "false")  # a local relay without TLS
    assert not PagerSettings().smtp().starttls


def test_ack_links_last_a_day_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCANTRAIL_PAGER_ACK_LINK_TTL_S", raising=False)
    assert PagerSettings().ack_link_ttl_s == 24 * 3600


def test_webhook_secrets_under_32_bytes_stop_start_up() -> None:
    roster = parse_roster(
        {
            "sites": {
                "site-1": [
                    {
                        "id": "officer-a",
                        "webhook": {"url": "http://127.0.0.1:1/a", "secret_env": "A"},
                    },
                    {
                        "id": "officer-b",
                        "webhook": {"url": "http://127.0.0.1:1/b", "secret_env": "B"},
                    },
                ]
            }
        }
    )
    with pytest.raises(ServiceError, match="shorter than 32 bytes: officer-b: B"):
        resolve_secrets(roster, {"A": SECRET.decode(), "B": "x"})
    assert len(resolve_secrets(roster, {"A": SECRET.decode(), "B": SECRET.decode()})) == 2


def test_the_access_log_never_shows_a_token(caplog: pytest.LogCaptureFixture) -> None:
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from sinks.pager import _PathOnlyAccessLogger

    logger = logging.getLogger("test.access")
    access = _PathOnlyAccessLogger(logger, "")
    request = make_mocked_request(
        "POST",
        "/ack/fever_confirmed:a1?officer=officer-a&token=1800000000.deadbeef",
        headers={"Authorization": "Bearer cafebabe"},
    )
    with caplog.at_level(logging.INFO, logger="test.access"):
        access.log(request, web.Response(status=401), 0.01)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "/ack/fever_confirmed:a1" in line and "401" in line
    assert "deadbeef" not in line and "token" not in line and "cafebabe" not in line

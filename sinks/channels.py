"""How a page reaches an officer: a signed webhook or an email.

Each channel makes one attempt per call and raises :class:`ChannelError` saying
whether trying again could help; the pager owns retries, backoff and the audit
records, so a channel stays a small adapter that is easy to test against a real
receiver.

Webhook requests are signed so a receiver can tell a real page from a forged
one, and a replayed one from a fresh one: ``X-ScanTrail-Timestamp`` carries
Unix seconds and ``X-ScanTrail-Signature: sha256=<hex>`` is
HMAC-SHA256(secret, ``<timestamp>.`` + raw body). Binding the timestamp into
the signature means a captured request cannot be replayed with a new
timestamp; receivers should refuse timestamps more than five minutes off,
which :func:`verify` does (``WEBHOOK_TOLERANCE_S``).

Also here: the pager's settings (SMTP relay, retry pacing), loading the roster
and reading webhook secrets, which never live in the roster itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import random
import smtplib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import yaml
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from scantrail.contract import Alert
from scantrail.errors import ServiceError, SinkError
from scantrail.settings import state_dir
from sinks.ack_tokens import DEFAULT_LINK_TTL_S, MIN_SECRET_BYTES, load_ack_secret
from sinks.routing import Roster, Webhook, parse_roster

SIGNATURE_HEADER = "X-ScanTrail-Signature"
TIMESTAMP_HEADER = "X-ScanTrail-Timestamp"
ALERT_HEADER = "X-ScanTrail-Alert-Id"


class ChannelError(SinkError):
    """One delivery attempt failed; ``permanent`` when retrying cannot help (e.g. HTTP 400)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class PageMessage:
    """What an officer is told: the alert, who is paged at which step, and where to ack."""

    alert: Alert
    officer_id: str
    step: int
    ack_url: str

    def payload(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert.alert_id,
            "kind": self.alert.kind,
            "severity": self.alert.severity,
            "site_id": self.alert.site_id,
            "kiosk_id": self.alert.kiosk_id,
            "person_id": self.alert.person_id,
            "event_time": self.alert.event_time.isoformat(),
            "evidence": list(self.alert.evidence),
            "detail": self.alert.detail,
            "officer_id": self.officer_id,
            "step": self.step,
            "ack_url": self.ack_url,
        }

    def body(self) -> bytes:
        return json.dumps(self.payload(), separators=(",", ":"), ensure_ascii=False).encode()

    def subject(self) -> str:
        a = self.alert
        who = f" person {a.person_id}" if a.person_id else ""
        return f"[ScanTrail {a.severity.upper()}] {a.kind} at {a.site_id}{who}"


class Channel(Protocol):
    name: str

    async def send(self, message: PageMessage) -> None:
        """Deliver once or raise :class:`ChannelError`."""
        ...


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for one request (see the module docstring)."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


#: How far a webhook's timestamp may be from the receiver's clock (docs/pager.md).
WEBHOOK_TOLERANCE_S = 300.0


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance_s: float = WEBHOOK_TOLERANCE_S,
) -> bool:
    """Constant-time check of a signature header, for receivers and tests.

    A timestamp more than ``tolerance_s`` away from ``now`` (default: the
    clock) is refused however well signed, so a captured request cannot be
    replayed later; so is one that is not Unix seconds.
    """
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if not signature.isascii():
        return False
    moment = time.time() if now is None else now
    if abs(moment - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookChannel:
    """HTTP POST of the JSON page; any 2xx is delivered."""

    name = "webhook"

    def __init__(
        self, url: str, secret: bytes, session: aiohttp.ClientSession, timeout_s: float = 10.0
    ) -> None:
        if not secret:
            raise SinkError(f"webhook {url}: empty HMAC secret")
        self.url = url
        self._secret = secret
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def send(self, message: PageMessage) -> None:
        body = message.body()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            ALERT_HEADER: message.alert.alert_id,
        }
        try:
            async with self._session.post(
                self.url, data=body, headers=headers, timeout=self._timeout
            ) as response:
                if 200 <= response.status < 300:
                    return
                permanent = 400 <= response.status < 500 and response.status not in (408, 429)
                raise ChannelError(f"HTTP {response.status} from {self.url}", permanent=permanent)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ChannelError(f"{type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class SmtpServer:
    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "scantrail-pager@localhost"
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    timeout_s: float = 15.0


class EmailChannel:
    """One email per page over stdlib smtplib, run in a thread (it blocks)."""

    name = "email"

    def __init__(self, address: str, server: SmtpServer) -> None:
        self.address = address
        self.server = server

    def _build(self, message: PageMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.server.sender
        mail["To"] = self.address
        mail["Subject"] = message.subject()
        mail["X-ScanTrail-Alert-Id"] = message.alert.alert_id
        text = json.dumps(message.payload(), indent=2, ensure_ascii=False)
        mail.set_content(f"Acknowledge: POST {message.ack_url}\n\n{text}\n")
        return mail

    def _send_blocking(self, mail: EmailMessage) -> None:
        s = self.server
        with smtplib.SMTP(s.host, s.port, timeout=s.timeout_s) as smtp:
            if s.starttls:
                smtp.starttls()
            if s.username:
                smtp.login(s.username, s.password or "")
            smtp.send_message(mail)

    async def send(self, message: PageMessage) -> None:
        mail = self._build(message)
        try:
            await asyncio.to_thread(self._send_blocking, mail)
        except smtplib.SMTPRecipientsRefused as exc:
            raise ChannelError(f"recipient refused: {exc}", permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.smtp_code < 600
            raise ChannelError(
                f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", permanent=permanent
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise ChannelError(f"{type(exc).__name__}: {exc}") from None


class PagerSettings(BaseSettings):
    """The pager's own settings (``SCANTRAIL_PAGER_*``); Kafka comes from KafkaSettings."""

    model_config = SettingsConfigDict(env_prefix="SCANTRAIL_PAGER_", extra="ignore")

    #: SCANTRAIL_PAGER_ROSTER: the roster YAML (see deploy/roster.example.yaml).
    roster: Path = Path("deploy/roster.example.yaml")
    #: SCANTRAIL_PAGER_GROUP: consumer group of the alerts topic.
    group: str = "scantrail-sink-pager"
    #: SCANTRAIL_PAGER_HOST / _PORT: where POST /ack/{alert_id} and GET /queue/{site} listen.
    host: str = "127.0.0.1"
    port: int = Field(default=8470, ge=0, le=65535)
    #: SCANTRAIL_PAGER_PUBLIC_URL: base of the ack link in pages (default http://host:port).
    public_url: str | None = None
    #: SCANTRAIL_PAGER_ACK_SECRET / _ACK_SECRET_FILE: signs ack links and officer tokens
    #: (sinks.ack_tokens); when neither is set, one is created under the state directory.
    ack_secret: SecretStr = SecretStr("")
    ack_secret_file: Path | None = None
    #: SCANTRAIL_PAGER_ACK_TIMEOUT_S: escalate a critical page nobody acknowledged after this.
    ack_timeout_s: float = Field(default=300.0, gt=0)
    #: SCANTRAIL_PAGER_ACK_LINK_TTL_S: a page's ack link stops working this long after
    #: it was sent (403); officers then acknowledge with their officer token.
    ack_link_ttl_s: float = Field(default=float(DEFAULT_LINK_TTL_S), gt=0, le=366 * 24 * 3600)
    #: SCANTRAIL_PAGER_RETRY_INITIAL_S / _RETRY_CAP_S: backoff between channel attempts.
    retry_initial_s: float = Field(default=1.0, gt=0)
    retry_cap_s: float = Field(default=60.0, gt=0)
    #: SCANTRAIL_PAGER_MAX_IN_FLIGHT: alerts handled at once before partitions pause.
    max_in_flight: int = Field(default=1000, ge=1)
    #: SCANTRAIL_PAGER_SMTP_*: the mail relay for email channels.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "scantrail-pager@localhost"
    #: STARTTLS is on: pages name persons. Turn it off (SCANTRAIL_PAGER_SMTP_STARTTLS=false)
    #: only for a relay on the same host that cannot speak TLS.
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: SecretStr = SecretStr("")

    def load_ack_secret(self) -> bytes:
        return load_ack_secret(
            state_dir(), value=self.ack_secret.get_secret_value(), file=self.ack_secret_file
        )

    def smtp(self) -> SmtpServer:
        password = self.smtp_password.get_secret_value() or None
        return SmtpServer(
            self.smtp_host, self.smtp_port, self.smtp_from, self.smtp_starttls,
            self.smtp_username, password,
        )  # fmt: skip


def load_roster(path: Path) -> Roster:
    try:
        return parse_roster(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as exc:
        raise ServiceError(f"cannot read roster {path}: {exc}") from None


def resolve_secrets(
    roster: Roster, environ: Mapping[str, str] = os.environ
) -> dict[Webhook, bytes]:
    """Read every webhook's HMAC key now, so a missing one stops start-up, not a 3 a.m. page."""
    secrets: dict[Webhook, bytes] = {}
    missing: list[str] = []
    short: list[str] = []
    for officers in roster.sites.values():
        for officer in officers:
            hook = officer.webhook
            if hook is None or hook in secrets:
                continue
            if hook.secret_env is not None:
                value = environ.get(hook.secret_env, "").encode()
            else:
                try:
                    value = Path(str(hook.secret_file)).read_bytes().strip()
                except OSError:
                    value = b""
            if not value:
                missing.append(f"{officer.id}: {hook.secret_env or hook.secret_file}")
            elif len(value) < MIN_SECRET_BYTES:
                short.append(f"{officer.id}: {hook.secret_env or hook.secret_file}")
            secrets[hook] = value
    if missing:
        raise ServiceError(f"webhook secrets missing or empty: {', '.join(missing)}")
    if short:
        raise ServiceError(
            f"webhook secrets shorter than {MIN_SECRET_BYTES} bytes: {', '.join(short)}"
        )
    return secrets


class Backoff:
    """Exponential backoff with full jitter, capped: retries from many pagers do not align."""

    def __init__(self, initial: float, cap: float, rng: random.Random) -> None:
        self.initial, self.cap, self.rng = initial, cap, rng

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(self.initial / 2, min(self.cap, self.initial * 2**attempt))

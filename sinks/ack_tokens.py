"""Who may acknowledge a page: HMAC tokens for the pager's HTTP endpoints.

An acknowledgement stops escalation, so an unauthenticated ``POST /ack`` would
let anyone on the network silence a critical fever page; ``GET /queue/{site}``
lists pseudonymous person ids. Both therefore need a credential, and the
pager must be able to check it offline, without an account database:

* a **link token** is printed into each page's ``ack_url``: it binds one alert
  to the one officer it was sent to, so the officer acknowledges with one
  click (a ``POST`` from their app; links are not ``GET``, as mail scanners
  pre-fetch those), and a forwarded link can only ever ack as that officer;
* an **officer token** is an officer's standing credential (``Authorization:
  Bearer ...``) for the queue and for acknowledging queued warnings, which
  are never sent out with a link. ``scantrail sink pager-token OFFICER``
  prints it for the duty roster.

Both are HMAC-SHA256 over a labelled message with one pager secret, taken from
``SCANTRAIL_PAGER_ACK_SECRET``, from the file ``SCANTRAIL_PAGER_ACK_SECRET_FILE``
names, or created once (random, mode 0600) under the state directory, so links
in pages already sent stay valid across pager restarts. Rotating the secret
revokes every token at once. Pure apart from :func:`load_ack_secret`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

_SECRET_BYTES = 32


def _sign(secret: bytes, *parts: str) -> str:
    # Parts are joined with a byte no id contains (ids are [A-Za-z0-9._:-]), so
    # ("a", "b:c") and ("a:b", "c") cannot sign the same message.
    message = "\x1f".join(parts).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def link_token(secret: bytes, alert_id: str, officer_id: str) -> str:
    """The token in the ack link of one page: this alert, acknowledged by this officer."""
    return _sign(secret, "ack-link/1", alert_id, officer_id)


def officer_token(secret: bytes, officer_id: str) -> str:
    """An officer's standing bearer token for the queue and for acks without a link."""
    return _sign(secret, "officer/1", officer_id)


def may_acknowledge(secret: bytes, alert_id: str, officer_id: str, token: str) -> bool:
    """True when ``token`` is this officer's link token for this alert, or their officer token."""
    link = link_token(secret, alert_id, officer_id)
    return hmac.compare_digest(token, link) or is_officer(secret, officer_id, token)


def is_officer(secret: bytes, officer_id: str, token: str) -> bool:
    return hmac.compare_digest(token, officer_token(secret, officer_id))


def load_ack_secret(state: Path, *, value: str | None = None, file: Path | None = None) -> bytes:
    """The pager secret: given, read from a file, or created once under ``state``.

    A created secret is written with mode 0600 before anything is signed with
    it, and the same file is read on every later start.
    """
    if value:
        return value.encode()
    if file is not None:
        secret = file.read_bytes().strip()
        if len(secret) < 16:
            raise ValueError(f"{file}: an ack secret needs at least 16 bytes")
        return secret
    path = state / "pager" / "ack-secret"
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside, then linked into place: a pager starting at the same moment
    # either wins or reads the winner's complete secret, never a half-written one.
    draft = path.with_name(f"ack-secret.{os.getpid()}.{secrets.token_hex(4)}.draft")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_hex(_SECRET_BYTES).encode())
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_bytes().strip()

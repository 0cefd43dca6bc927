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

A link token carries the Unix second it expires at (``<expiry>.<hex>``, the
expiry inside the signature; default 24 h after the page was sent): a page
forwarded or found in a mailbox a week later acks nothing. Tokens of any other
shape than these two are malformed (the HTTP layer answers 400), which
includes anything that is not ASCII.

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
import re
import secrets
from pathlib import Path
from typing import Literal

from scantrail.errors import ServiceError

_SECRET_BYTES = 32
#: The shortest secret the pager accepts: HMAC-SHA256's own key strength.
MIN_SECRET_BYTES = 32
#: How long a page's ack link is good for, unless the settings say otherwise.
DEFAULT_LINK_TTL_S = 24 * 3600
_WELL_FORMED = re.compile(r"(?:[0-9]{1,12}\.)?[0-9a-f]{64}")

#: What a presented token is: good, good but expired, wrong, or not a token at all.
Verdict = Literal["ok", "expired", "refused", "malformed"]


def _sign(secret: bytes, *parts: str) -> str:
    # Parts are joined with a byte no id contains (ids are [A-Za-z0-9._:-]), so
    # ("a", "b:c") and ("a:b", "c") cannot sign the same message.
    message = "\x1f".join(parts).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def link_token(secret: bytes, alert_id: str, officer_id: str, expires_at: int) -> str:
    """The token in the ack link of one page: this alert, by this officer, until ``expires_at``.

    ``expires_at`` is in Unix seconds and signed with the rest, so it cannot
    be pushed back.
    """
    return f"{expires_at}.{_sign(secret, 'ack-link/2', alert_id, officer_id, str(expires_at))}"


def officer_token(secret: bytes, officer_id: str) -> str:
    """An officer's standing bearer token for the queue and for acks without a link."""
    return _sign(secret, "officer/1", officer_id)


def well_formed(token: str) -> bool:
    """A link token or an officer token by shape (ASCII digits and lower-case hex only)."""
    return _WELL_FORMED.fullmatch(token) is not None


def check_ack(secret: bytes, alert_id: str, officer_id: str, token: str, now_s: float) -> Verdict:
    """Whether ``token`` lets this officer acknowledge this alert at ``now_s`` (Unix seconds)."""
    if not well_formed(token):
        return "malformed"
    expiry, dot, _ = token.partition(".")
    if not dot:
        return "ok" if is_officer(secret, officer_id, token) else "refused"
    if not hmac.compare_digest(token, link_token(secret, alert_id, officer_id, int(expiry))):
        return "refused"
    return "ok" if now_s < int(expiry) else "expired"


def may_acknowledge(
    secret: bytes, alert_id: str, officer_id: str, token: str, now_s: float
) -> bool:
    """True when ``token`` is this officer's live link for this alert, or their officer token."""
    return check_ack(secret, alert_id, officer_id, token, now_s) == "ok"


def is_officer(secret: bytes, officer_id: str, token: str) -> bool:
    if not token.isascii():
        return False  # compare_digest refuses non-ASCII strings with TypeError
    return hmac.compare_digest(token, officer_token(secret, officer_id))


def _long_enough(secret: bytes, where: str) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise ServiceError(
            f"{where}: an ack secret needs at least {MIN_SECRET_BYTES} bytes, this one has"
            f" {len(secret)} (try `python3 -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    return secret


def load_ack_secret(state: Path, *, value: str | None = None, file: Path | None = None) -> bytes:
    """The pager secret: given, read from a file, or created once under ``state``.

    A created secret is written with mode 0600 before anything is signed with
    it, and the same file is read on every later start. A secret shorter than
    :data:`MIN_SECRET_BYTES` is refused (:class:`ServiceError`), so a pager
    never starts with tokens anyone could guess.
    """
    if value:
        return _long_enough(value.encode(), "SCANTRAIL_PAGER_ACK_SECRET")
    if file is not None:
        try:
            secret = file.read_bytes().strip()
        except OSError as exc:
            raise ServiceError(f"cannot read the ack secret {file}: {exc}") from None
        return _long_enough(secret, str(file))
    path = state / "pager" / "ack-secret"
    if path.exists():
        return _long_enough(path.read_bytes().strip(), str(path))
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
    return _long_enough(path.read_bytes().strip(), str(path))

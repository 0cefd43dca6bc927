"""Electronic gate passes: Ed25519-signed, compact, verified offline at the kiosk.

Two forms are shown at the gate (both are QR texts; see ``docs/kiosk.md``)::

    ST1.<payload>.<issuer signature>                              paper / static pass
    ST1T.<payload>.<issuer signature>.<window>.<device signature>  live phone token

``payload`` is base64url (no padding) of the UTF-8 text
``pass_id|person_id|site_id|household_id|valid_from|valid_until|health|device_key``
with times as integer Unix seconds, ``health`` one of ``g``/``y``/``r`` or empty,
and ``device_key`` the base64url raw Ed25519 public key of the resident's phone
(empty for a paper pass). Identifiers cannot contain ``|`` (see the contract).

A *phone* pass carries a device key and is only accepted as a live token: the
phone re-signs ``window`` (``issued_at|expires_at``) every minute with its device
key, so a screenshot goes stale. Its static form is refused as ``forged``.

Verdicts, checked in this order: ``unknown`` (not a ScanTrail pass at all),
``forged`` (malformed, bad issuer or device signature, phone pass without a
token), ``revoked`` (listed in the revocation file), ``expired`` (outside the
pass's validity, or a stale/too-long token), else ``valid``. Clock skew between
phone, issuer and kiosk is tolerated up to ``DEFAULT_SKEW`` (30 s) at each bound.

Everything here is pure except :func:`load_private_key`, :func:`load_public_key`,
:func:`write_private_key` and :class:`RevocationList`, which touch files.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from scantrail.contract import HealthCode, PassStatus
from scantrail.errors import PassError
from scantrail.pseudonyms import why_not_pseudonymous

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SKEW",
    "MAX_TOKEN_LIFETIME",
    "PASS_PREFIX",
    "TOKEN_LIFETIME",
    "TOKEN_PREFIX",
    "GatePass",
    "PassVerifier",
    "RevocationList",
    "Verdict",
    "split_pass",
    "generate_key",
    "issue_pass",
    "issue_token",
    "load_private_key",
    "load_public_key",
    "parse_pass",
    "public_key_bytes",
    "add_revocation",
    "write_revocations",
    "read_revocations",
    "verify_pass",
    "write_private_key",
    "write_public_key",
]

PASS_PREFIX = "ST1"
TOKEN_PREFIX = "ST1T"
#: Tolerated clock difference between phone, issuer and kiosk, at each bound.
DEFAULT_SKEW = timedelta(seconds=30)
#: How long a phone token is good for; phones re-sign every minute.
TOKEN_LIFETIME = timedelta(seconds=60)
#: Tokens claiming a longer life than this are refused (a phone cannot mint a day pass).
MAX_TOKEN_LIFETIME = timedelta(seconds=120)

_ID = re.compile(r"^[A-Za-z0-9._:@/-]{1,128}$")
_HEALTH_TO_CHAR: dict[HealthCode, str] = {"green": "g", "yellow": "y", "red": "r"}
_CHAR_TO_HEALTH: dict[str, HealthCode] = {v: k for k, v in _HEALTH_TO_CHAR.items()}
_TOKEN_DOMAIN = b"scantrail-token-v1|"


@dataclass(frozen=True)
class GatePass:
    """What a pass says about its holder; times are tz-aware."""

    pass_id: str
    person_id: str
    site_id: str
    household_id: str
    valid_from: datetime
    valid_until: datetime
    health_code: HealthCode | None = None
    device_key: bytes | None = None  # raw Ed25519 public key of a phone pass
    # An optional ninth payload field (e.g. "worker"): passes without it keep
    # their eight fields and their signatures.
    kind: str | None = None

    @property
    def is_phone(self) -> bool:
        return self.device_key is not None


@dataclass(frozen=True)
class Verdict:
    """The kiosk's judgement of one scanned text."""

    status: PassStatus
    reason: str
    pass_id: str | None = None
    person_id: str | None = None
    site_id: str | None = None
    household_id: str | None = None
    health_code: HealthCode | None = None
    form: Literal["paper", "token", "none"] = "none"
    pass_kind: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {
            "status": self.status,
            "pass_id": self.pass_id,
            "person_id": self.person_id,
            "site_id": self.site_id,
            "household_id": self.household_id,
            "health_code": self.health_code,
            "form": self.form,
            "reason": self.reason,
            "pass_kind": self.pass_kind,
        }


# --- encoding helpers --------------------------------------------------------


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    if not text or not re.fullmatch(r"[A-Za-z0-9_-]+", text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc
    if _b64e(raw) != text:  # non-canonical trailing bits: a tampered character
        raise ValueError("non-canonical base64url")
    return raw


def _epoch(at: datetime) -> int:
    if at.tzinfo is None:
        raise PassError("times must be timezone-aware")
    return int(at.timestamp())


def _from_epoch(text: str) -> datetime:
    if not re.fullmatch(r"0|[1-9][0-9]{0,11}", text):
        raise ValueError(f"bad time {text!r}")
    return datetime.fromtimestamp(int(text), UTC)


def _check_id(name: str, value: str) -> None:
    if not _ID.match(value):
        raise PassError(f"{name} {value!r} is not a valid identifier")
    if (reason := why_not_pseudonymous(value)) is not None:
        raise PassError(f"{name}: {reason}")  # the value itself is not repeated


def _payload(p: GatePass) -> bytes:
    fields = [
        p.pass_id,
        p.person_id,
        p.site_id,
        p.household_id,
        str(_epoch(p.valid_from)),
        str(_epoch(p.valid_until)),
        "" if p.health_code is None else _HEALTH_TO_CHAR[p.health_code],
        "" if p.device_key is None else _b64e(p.device_key),
    ]
    if p.kind is not None:
        fields.append(p.kind)
    return "|".join(fields).encode("ascii")


def _parse_payload(raw: bytes) -> GatePass:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ValueError("payload is not ASCII") from exc
    parts = text.split("|")
    if len(parts) not in (8, 9):
        raise ValueError(f"payload has {len(parts)} fields, expected 8 or 9")
    pass_id, person_id, site_id, household_id, vf, vu, health, device = parts[:8]
    kind = parts[8] if len(parts) == 9 else None
    if kind is not None and not _ID.match(kind):
        raise ValueError(f"bad pass kind {kind!r}")
    for value in (pass_id, person_id, site_id, household_id):
        if not _ID.match(value):
            raise ValueError(f"bad identifier {value!r}")
    if health and health not in _CHAR_TO_HEALTH:
        raise ValueError(f"bad health code {health!r}")
    device_key = _b64d(device) if device else None
    if device_key is not None and len(device_key) != 32:
        raise ValueError("bad device key")
    return GatePass(
        pass_id=pass_id,
        person_id=person_id,
        site_id=site_id,
        household_id=household_id,
        valid_from=_from_epoch(vf),
        valid_until=_from_epoch(vu),
        health_code=_CHAR_TO_HEALTH[health] if health else None,
        device_key=device_key,
        kind=kind,
    )


# --- keys (file I/O lives only here and in RevocationList) -----------------


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def write_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write a PEM private key readable by its owner only (0600); never overwrite."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise PassError(f"{path} exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(path, 0o600)  # in case the umask interfered


def write_public_key(key: Ed25519PrivateKey | Ed25519PublicKey, path: Path) -> None:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    pem = pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PassError(f"cannot read private key {path}: {exc.strerror}") from None
    if os.name == "posix" and path.stat().st_mode & 0o077:
        raise PassError(f"private key {path} is readable by others; chmod 600 it")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise PassError(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise PassError(f"{path} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PassError(f"cannot read public key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise PassError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise PassError(f"{path} is not an Ed25519 key")
    return key


# --- issuing (pure) ----------------------------------------------------------


def issue_pass(gate_pass: GatePass, issuer: Ed25519PrivateKey) -> str:
    """Sign a pass and return its QR text (``ST1.…``)."""
    for name in ("pass_id", "person_id", "site_id", "household_id"):
        _check_id(name, getattr(gate_pass, name))
    if gate_pass.kind is not None:
        _check_id("kind", gate_pass.kind)
    if gate_pass.valid_until <= gate_pass.valid_from:
        raise PassError("valid_until must be after valid_from")
    if gate_pass.device_key is not None and len(gate_pass.device_key) != 32:
        raise PassError("device_key must be a raw 32-byte Ed25519 public key")
    payload = _payload(gate_pass)
    return f"{PASS_PREFIX}.{_b64e(payload)}.{_b64e(issuer.sign(payload))}"


def split_pass(text: str) -> tuple[bytes, bytes]:
    """Split a static pass text into (payload, issuer signature); PassError if malformed."""
    parts = text.split(".")
    if len(parts) != 3 or parts[0] != PASS_PREFIX:
        raise PassError("not a static ScanTrail pass")
    try:
        return _b64d(parts[1]), _b64d(parts[2])
    except ValueError as exc:
        raise PassError(f"malformed pass: {exc}") from None


def parse_pass(text: str) -> GatePass:
    """Read what a pass says, without checking its signature (for display only)."""
    payload, _ = split_pass(text)
    try:
        return _parse_payload(payload)
    except ValueError as exc:
        raise PassError(f"malformed pass: {exc}") from None


def issue_token(
    pass_text: str,
    device: Ed25519PrivateKey,
    now: datetime,
    lifetime: timedelta = TOKEN_LIFETIME,
) -> str:
    """What a phone shows: its pass bound to a short window, signed by its device key."""
    payload, issuer_sig = split_pass(pass_text)
    try:
        gate_pass = _parse_payload(payload)
    except ValueError as exc:
        raise PassError(f"malformed pass: {exc}") from None
    if gate_pass.device_key != public_key_bytes(device):
        raise PassError("this device key does not belong to the pass")
    window = f"{_epoch(now)}|{_epoch(now + lifetime)}".encode("ascii")
    device_sig = device.sign(_TOKEN_DOMAIN + issuer_sig + b"|" + window)
    return ".".join(
        [TOKEN_PREFIX, _b64e(payload), _b64e(issuer_sig), _b64e(window), _b64e(device_sig)]
    )


# --- verification (pure) -----------------------------------------------------


def _verdict(
    status: PassStatus, reason: str, p: GatePass | None = None, form: str = "none"
) -> Verdict:
    if p is None:
        return Verdict(status=status, reason=reason)
    return Verdict(
        status=status,
        reason=reason,
        pass_id=p.pass_id,
        person_id=p.person_id,
        site_id=p.site_id,
        household_id=p.household_id,
        health_code=p.health_code,
        form="token" if form == "token" else "paper",
        pass_kind=p.kind,
    )


def verify_pass(
    text: str,
    *,
    issuer: Ed25519PublicKey,
    revoked: Collection[str],
    now: datetime,
    skew: timedelta = DEFAULT_SKEW,
    max_token_lifetime: timedelta = MAX_TOKEN_LIFETIME,
) -> Verdict:
    """Judge one scanned QR text. Pure; never raises on any input text."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    parts = text.split(".")
    if parts[0] == PASS_PREFIX and len(parts) == 3:
        form = "paper"
    elif parts[0] == TOKEN_PREFIX and len(parts) == 5:
        form = "token"
    elif parts[0] in (PASS_PREFIX, TOKEN_PREFIX):
        return _verdict(
            "forged", f"a {parts[0]} text must have {3 if parts[0] == PASS_PREFIX else 5} parts"
        )
    else:
        return _verdict("unknown", "not a ScanTrail pass")
    try:
        payload, issuer_sig = _b64d(parts[1]), _b64d(parts[2])
    except ValueError as exc:
        return _verdict("forged", f"malformed: {exc}")
    try:
        issuer.verify(issuer_sig, payload)
    except InvalidSignature:
        return _verdict("forged", "issuer signature does not match")
    try:
        gate_pass = _parse_payload(payload)
    except ValueError as exc:  # signed but unreadable: an issuer bug, still not a pass
        return _verdict("forged", f"malformed payload: {exc}")

    token_window: tuple[datetime, datetime] | None = None
    if form == "paper":
        if gate_pass.device_key is not None:
            return _verdict("forged", "phone pass shown without its live token", gate_pass, form)
    else:
        if gate_pass.device_key is None:
            return _verdict("forged", "token for a paper pass", gate_pass, form)
        try:
            window = _b64d(parts[3])
            device_sig = _b64d(parts[4])
            issued_s, expires_s = window.decode("ascii").split("|")
            token_window = (_from_epoch(issued_s), _from_epoch(expires_s))
        except (ValueError, UnicodeDecodeError) as exc:
            return _verdict("forged", f"malformed token: {exc}", gate_pass, form)
        try:
            Ed25519PublicKey.from_public_bytes(gate_pass.device_key).verify(
                device_sig, _TOKEN_DOMAIN + issuer_sig + b"|" + window
            )
        except (InvalidSignature, ValueError):
            return _verdict("forged", "device signature does not match", gate_pass, form)

    if gate_pass.pass_id in revoked:
        return _verdict("revoked", "pass is on the revocation list", gate_pass, form)
    if now < gate_pass.valid_from - skew:
        return _verdict("expired", "pass is not valid yet", gate_pass, form)
    if now > gate_pass.valid_until + skew:
        return _verdict("expired", "pass has expired", gate_pass, form)
    if token_window is not None:
        issued_at, expires_at = token_window
        if expires_at <= issued_at or expires_at - issued_at > max_token_lifetime:
            return _verdict("expired", "token lifetime is out of bounds", gate_pass, form)
        if now < issued_at - skew:
            return _verdict(
                "expired", "token is from the future (phone clock ahead)", gate_pass, form
            )
        if now > expires_at + skew:
            return _verdict("expired", "stale token (a screenshot?)", gate_pass, form)
    return _verdict("valid", "ok", gate_pass, form)


# --- the kiosk's stateful helpers ------------------------------------------


@dataclass
class RevocationList:
    """Revoked pass ids from a JSON file, re-read whenever the file's mtime changes.

    File format: ``{"version": 1, "revoked": {"<pass_id>": {"at": "...", "reason": "..."}}}``.
    Fail closed: :meth:`load` (at start) raises :class:`PassError` for a missing,
    truncated or wrongly shaped list, so a kiosk never checks passes against
    nothing by accident (``scantrail kiosk --no-revocations`` says so on
    purpose). A later refresh that fails (file gone, half written, wrong shape)
    keeps the last good list and says why in :attr:`last_error` and
    :meth:`state`, which the kiosk's heartbeat and log carry.
    """

    path: Path
    _ids: frozenset[str] = field(default=frozenset(), init=False)
    _mtime_ns: int | None = field(default=None, init=False)
    last_error: str | None = field(default=None, init=False)
    refresh_failures: int = field(default=0, init=False)
    loaded: bool = field(default=False, init=False)

    def load(self) -> RevocationList:
        """Read the list now; raise :class:`PassError` unless it is there and well formed."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError as exc:
            raise PassError(
                f"no readable revocation list at {self.path} ({exc.strerror}); a kiosk checks"
                " passes only against one (--no-revocations if none exists)"
            ) from None
        self._ids = frozenset(read_revocations(self.path, missing_ok=False))
        self._mtime_ns, self.loaded, self.last_error = mtime, True, None
        return self

    def refresh(self) -> frozenset[str]:
        try:
            mtime: int | None = self.path.stat().st_mtime_ns
        except OSError as exc:
            mtime = None
            self._failed(f"revocation list {self.path} is gone ({exc.strerror})")
        if mtime is not None and mtime != self._mtime_ns:
            try:
                self._ids = frozenset(read_revocations(self.path, missing_ok=False))
                self._mtime_ns, self.loaded = mtime, True
                self.last_error = None
            except PassError as exc:
                self._failed(str(exc))
        return self._ids

    def _failed(self, reason: str) -> None:
        if reason != self.last_error:  # logged once per new problem, not per scan
            log.warning("%s; keeping the last good list (%d ids)", reason, len(self._ids))
            self.refresh_failures += 1
        self.last_error = reason

    def state(self) -> dict[str, object]:
        """For ``pass verify`` and the heartbeat: which list, how many ids, what is wrong."""
        return {
            "path": str(self.path),
            "loaded": self.loaded,
            "revoked": len(self._ids),
            "error": self.last_error,
            "refresh_failures": self.refresh_failures,
        }

    @property
    def ids(self) -> frozenset[str]:
        return self._ids


def read_revocations(path: Path, *, missing_ok: bool = True) -> dict[str, dict[str, str]]:
    """The list's entries; a missing file is empty only with ``missing_ok`` (the issuer's side)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise PassError(f"no revocation list at {path}") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise PassError(f"cannot read revocation list {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise PassError(f"{path} is not a version 1 revocation list")
    revoked = doc.get("revoked")
    if not isinstance(revoked, dict):
        raise PassError(f"{path} has no 'revoked' object")
    return {str(k): v if isinstance(v, dict) else {} for k, v in revoked.items()}


def add_revocation(path: Path, pass_id: str, *, at: datetime, reason: str) -> bool:
    """Add a pass id to the revocation file atomically; False if it was already there."""
    _check_id("pass_id", pass_id)
    revoked = read_revocations(path)
    if pass_id in revoked:
        return False
    revoked[pass_id] = {"at": at.isoformat(), "reason": reason}
    write_revocations(path, revoked)
    return True


def write_revocations(path: Path, revoked: dict[str, dict[str, str]]) -> None:
    """Write a whole revocation list atomically (an empty one for a new issuer)."""
    doc = {"version": 1, "revoked": dict(sorted(revoked.items()))}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # readers never see a half-written list


class PassVerifier:
    """What a kiosk holds: the issuer's public key and a self-refreshing revocation list."""

    def __init__(
        self,
        issuer: Ed25519PublicKey,
        revocations: RevocationList | None = None,
        *,
        skew: timedelta = DEFAULT_SKEW,
    ) -> None:
        self.issuer = issuer
        self.revocations = revocations
        self.skew = skew

    def verify(self, text: str, now: datetime) -> Verdict:
        revoked = self.revocations.refresh() if self.revocations is not None else frozenset()
        return verify_pass(text, issuer=self.issuer, revoked=revoked, now=now, skew=self.skew)

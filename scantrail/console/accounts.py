"""Console accounts: salted scrypt hashes, roles and sites in one JSON file; log-in throttling.

The file (``SCANTRAIL_CONSOLE_ACCOUNTS``, default ``<state>/console/accounts.json``,
mode 0600) maps a user name to ``{"hash", "role", "sites"}``; ``scantrail
console adduser`` writes it. Hashes are ``scrypt$n$r$p$salt$key`` (hex), checked
in constant time; a missing user is checked against a dummy hash so the
answer takes as long as for a wrong password.

Roles:

* ``officer`` sees and acts on the alerts of their own ``sites`` only;
* ``supervisor`` sees every site and receives escalations;
* ``epidemiologist`` sees every site's alerts read-only and runs traces.

Pure apart from :func:`load_accounts` and :func:`save_account`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from scantrail.errors import ScanTrailError

Role = Literal["officer", "supervisor", "epidemiologist"]
ROLES: tuple[Role, ...] = ("officer", "supervisor", "epidemiologist")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
# scrypt at n=2**14, r=8, p=1: 16 MiB and ~50 ms a check, the interactive-login figure.
_N, _R, _P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024


class AccountError(ScanTrailError, ValueError):
    """The accounts file or an account is invalid; the message says which."""


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAXMEM)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${key.hex()}"


def check_password(password: str, encoded: str) -> bool:
    try:
        kind, n, r, p, salt, key = encoded.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), key)


_DUMMY = hash_password("no such user", salt=b"\x00" * 16)


@dataclass(frozen=True)
class Account:
    name: str
    role: Role
    sites: tuple[str, ...] = ()
    password_hash: str = field(default="", repr=False)

    @property
    def all_sites(self) -> bool:
        return self.role != "officer"

    def sees_site(self, site_id: str) -> bool:
        return self.all_sites or site_id in self.sites

    def may_act(self, site_id: str) -> bool:
        """Acknowledge, assign, resolve: officers on their sites, supervisors anywhere."""
        return self.role == "supervisor" or (self.role == "officer" and site_id in self.sites)

    @property
    def receives_escalations(self) -> bool:
        """Supervisors are told of every site's escalations, officers of their own sites'."""
        return self.role in ("supervisor", "officer")

    @property
    def may_trace(self) -> bool:
        return self.role == "epidemiologist"

    @property
    def actor(self) -> str:
        """How audit and page records name this person."""
        return f"console:{self.name}"


def make_account(name: str, role: str, sites: list[str], password: str) -> Account:
    if not _NAME.match(name):
        raise AccountError(f"user name {name!r}: 1-63 of a-z 0-9 . _ - (lower case)")
    if role not in ROLES:
        raise AccountError(f"role {role!r}: one of {', '.join(ROLES)}")
    if role == "officer" and not sites:
        raise AccountError("an officer needs at least one --site")
    if len(password) < 12:
        raise AccountError("a password needs at least 12 characters")
    return Account(name, role, tuple(sorted(set(sites))), hash_password(password))


def parse_accounts(data: object) -> dict[str, Account]:
    if not isinstance(data, Mapping) or not isinstance(data.get("users"), Mapping):
        raise AccountError('accounts file: expected {"users": {...}}')
    out: dict[str, Account] = {}
    for name, entry in data["users"].items():
        if not isinstance(entry, Mapping):
            raise AccountError(f"account {name!r}: expected a mapping")
        role, sites, hashed = entry.get("role"), entry.get("sites", []), entry.get("hash")
        if not isinstance(name, str) or not _NAME.match(name):
            raise AccountError(f"account {name!r}: invalid user name")
        if role not in ROLES:
            raise AccountError(f"account {name}: role {role!r} is not one of {ROLES}")
        if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
            raise AccountError(f"account {name}: sites must be a list of site ids")
        if not isinstance(hashed, str) or not hashed.startswith("scrypt$"):
            raise AccountError(f"account {name}: hash must be an scrypt hash")
        out[name] = Account(name, role, tuple(sites), hashed)
    return out


def authenticate(accounts: Mapping[str, Account], name: str, password: str) -> Account | None:
    account = accounts.get(name)
    if account is None:
        check_password(password, _DUMMY)  # same time as a wrong password
        return None
    return account if check_password(password, account.password_hash) else None


def load_accounts(path: Path) -> dict[str, Account]:
    if not path.exists():
        return {}
    try:
        return parse_accounts(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise AccountError(f"{path}: not JSON ({exc})") from None


def save_account(path: Path, account: Account) -> None:
    """Add or replace one account; the file is rewritten aside and renamed, mode 0600."""
    data: dict[str, dict[str, object]] = {}
    if path.exists():
        data = json.loads(path.read_text()).get("users", {})
    data[account.name] = {
        "role": account.role,
        "sites": list(account.sites),
        "hash": account.password_hash,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f"{path.name}.{os.getpid()}.draft")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"users": data}, fh, indent=2, sort_keys=True)
    os.replace(draft, path)


class Throttle:
    """At most ``limit`` failed log-ins per key (user name, client address) in ``window_s``.

    ``now`` is passed in (monotonic seconds), so the rule is testable without sleeping.
    """

    def __init__(self, limit: int = 5, window_s: float = 300.0) -> None:
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, list[float]] = {}

    def _recent(self, key: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(key, []) if now - t < self.window_s]
        if kept:
            self._failures[key] = kept
        else:
            self._failures.pop(key, None)
        return kept

    def retry_after(self, keys: list[str], now: float) -> float:
        """Seconds until a log-in may be tried again (0: now)."""
        wait = 0.0
        for key in keys:
            recent = self._recent(key, now)
            if len(recent) >= self.limit:
                wait = max(wait, recent[-self.limit] + self.window_s - now)
        return wait

    def failed(self, keys: list[str], now: float) -> None:
        for key in keys:
            self._failures.setdefault(key, []).append(now)
            if len(self._failures) > 100_000:  # a flood of names: forget the oldest
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)

"""Bearer credentials for ScanTrail's HTTP views: who may do what (scopes), from hashed tokens.

A credential is a random token handed to one person or service (a
*principal*) with the *scopes* it may use (``trace``: read contact trails).
The server keeps only the token's SHA-256 (tokens are 32 random bytes, so a
fast hash is as good as a slow one), in a file of lines::

    # principal   scopes              token hash
    epi-wang      trace               sha256:9f86d0...
    console       trace,console       sha256:60303a...

The file is ``SCANTRAIL_CREDENTIALS_FILE`` (default ``<state dir>/credentials``,
mode 600), or the lines themselves are in ``SCANTRAIL_CREDENTIALS`` (``;``
between lines, for a mounted environment). The repository holds none. The
file is re-read when it changes, so adding or revoking a credential needs no
restart. ``scantrail credentials add NAME --scope trace`` prints a new token
once and appends its hash.

Use: ``CredentialStore.default().authorize(token, "trace") -> Principal``,
raising :class:`Unauthenticated` (HTTP 401: no or unknown token) or
:class:`Forbidden` (HTTP 403: a known principal without the scope).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from scantrail.errors import ScanTrailError

#: Scopes the project's views check. A credential may carry others (the console's).
TRACE = "trace"

_NAME = re.compile(r"^[A-Za-z0-9._:@-]{1,64}$")
_SCOPE = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


class CredentialError(ScanTrailError):
    """The credentials file or a credential line is malformed."""


class Unauthenticated(ScanTrailError):
    """No credential, or one nobody issued (HTTP 401)."""


class Forbidden(ScanTrailError):
    """A known principal asked for something its credential does not allow (HTTP 403)."""

    def __init__(self, principal: Principal, scope: str) -> None:
        super().__init__(f"{principal.name} has no {scope!r} scope")
        self.principal = principal
        self.scope = scope


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]

    def may(self, scope: str) -> bool:
        return scope in self.scopes


def new_token() -> str:
    return "st_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def credential_line(name: str, scopes: Iterable[str], token_hash: str) -> str:
    scope_list = sorted(set(scopes))
    if not _NAME.match(name):
        raise CredentialError(f"principal name {name!r}: letters, digits and ._:@- only")
    if not scope_list or not all(_SCOPE.match(s) for s in scope_list):
        raise CredentialError(f"scopes {scope_list!r}: lower-case words, at least one")
    if not _HASH.match(token_hash):
        raise CredentialError("token hash must be sha256:<64 hex digits>")
    return f"{name} {','.join(scope_list)} {token_hash}"


def parse_lines(lines: Iterable[str]) -> dict[str, Principal]:
    """token hash -> principal; raises :class:`CredentialError` naming the bad line."""
    out: dict[str, Principal] = {}
    for number, raw in enumerate(lines, start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) != 3:
            raise CredentialError(f"credentials line {number}: want 'principal scopes hash'")
        name, scopes, token_hash = parts
        credential_line(name, scopes.split(","), token_hash)  # validates
        out[token_hash] = Principal(name, frozenset(scopes.split(",")))
    return out


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def default_path() -> Path:
    from scantrail.settings import state_dir

    named = os.environ.get("SCANTRAIL_CREDENTIALS_FILE")
    return Path(named) if named else state_dir() / "credentials"


class CredentialStore:
    """The issued credentials; re-reads its file when the file changes."""

    def __init__(self, entries: dict[str, Principal], path: Path | None = None) -> None:
        self._entries = entries
        self._path = path
        self._stamp = self._file_stamp()

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> CredentialStore:
        return cls(parse_lines(lines))

    @classmethod
    def load(cls, path: Path) -> CredentialStore:
        """The credentials in ``path``; a missing file means none (every request is refused)."""
        store = cls({}, path)
        store._reload()
        return store

    @classmethod
    def default(cls) -> CredentialStore:
        """``SCANTRAIL_CREDENTIALS`` if set, else the credentials file."""
        if inline := os.environ.get("SCANTRAIL_CREDENTIALS"):
            return cls.from_lines(inline.replace(";", "\n").splitlines())
        return cls.load(default_path())

    def _file_stamp(self) -> tuple[int, int] | None:
        if self._path is None:
            return None
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _reload(self) -> None:
        try:
            text = "" if self._path is None else self._path.read_text()
        except FileNotFoundError:
            text = ""
        self._entries = parse_lines(text.splitlines())
        self._stamp = self._file_stamp()

    def refresh(self) -> None:
        if self._path is not None and self._file_stamp() != self._stamp:
            self._reload()

    def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthenticated("a bearer credential is required")
        self.refresh()
        wanted = hash_token(token)
        for token_hash, principal in self._entries.items():
            if hmac.compare_digest(token_hash, wanted):
                return principal
        raise Unauthenticated("unknown credential")

    def authorize(self, token: str | None, scope: str) -> Principal:
        """The principal holding ``token`` if it has ``scope``.

        Raises :class:`Unauthenticated` or :class:`Forbidden` otherwise.
        """
        principal = self.authenticate(token)
        if not principal.may(scope):
            raise Forbidden(principal, scope)
        return principal

    def principals(self) -> list[Principal]:
        self.refresh()
        return sorted(self._entries.values(), key=lambda p: p.name)


def add_credential(path: Path, name: str, scopes: Iterable[str]) -> str:
    """Append a new credential for ``name`` to the file (created 600); returns the token, once."""
    from scantrail.private import private_dir

    token = new_token()
    line = credential_line(name, scopes, hash_token(token))
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
    return token


def revoke(path: Path, name: str) -> int:
    """Remove every credential of ``name`` from the file; returns how many."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return 0
    kept = [row for row in lines if row.split("#", 1)[0].split()[:1] != [name]]
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, "".join(row + "\n" for row in kept).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return len(lines) - len(kept)

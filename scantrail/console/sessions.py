"""Server-side sessions that survive a console restart, with a CSRF token each.

A night shift must not be logged out because the console was restarted, so
sessions live in a small SQLite file under the state directory (mode 0600)
rather than in the process. The file never holds what a cookie holds: a
session is stored under the SHA-256 of its random 256-bit token, so a copy of
the file (a backup, a misplaced disk) lets nobody in. The CSRF token is an
HMAC of the session token, so it is bound to the session and is not stored
either.

A session ends on log-out; after ``idle_s`` without a request; ``absolute_s``
after log-in whatever its use; and when the account's password hash changes
(``scantrail console adduser`` again: a password change or a new role), since
each session keeps a fingerprint of the hash it was opened under. ``now`` is
passed in (wall-clock seconds, which mean the same after a restart).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

#: Last-use times are written at most this often, so a busy page is not a disk write a request.
TOUCH_EVERY_S = 60.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    created REAL NOT NULL,
    last_seen REAL NOT NULL,
    password_fingerprint TEXT NOT NULL
)
"""


@dataclass
class Session:
    sid: str  # the cookie's token: known to this request only, never stored
    user: str
    csrf: str
    created: float
    last_seen: float
    password_fingerprint: str = ""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_for(token: str) -> str:
    """The session's CSRF token: derived from its secret, so nothing else must be stored."""
    return hmac.new(token.encode(), b"scantrail console csrf", hashlib.sha256).hexdigest()


def password_fingerprint(password_hash: str) -> str:
    """Changes whenever the account's (salted) hash does: a password change ends its sessions."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


def expired(session: Session, now: float, idle_s: float, absolute_s: float) -> bool:
    return now - session.last_seen >= idle_s or now - session.created >= absolute_s


def _private_file(path: Path) -> None:
    """Create the file (and its directory) readable by the console's user only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)  # an older file made under another umask


class Sessions:
    """The session store: one SQLite file (journal files get its mode from SQLite)."""

    def __init__(self, path: Path, *, idle_s: float, absolute_s: float) -> None:
        self.path, self.idle_s, self.absolute_s = path, idle_s, absolute_s
        self._conn: sqlite3.Connection | None = None

    @property
    def _db(self) -> sqlite3.Connection:
        """Opened on first use, so a console built only to read its figures makes no file."""
        if self._conn is None:
            _private_file(self.path)
            self._conn = sqlite3.connect(self.path, timeout=5, isolation_level=None)
            self._conn.execute(_SCHEMA)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def create(self, user: str, now: float, fingerprint: str = "") -> Session:
        token = secrets.token_urlsafe(32)
        self._db.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
            (token_hash(token), user, now, now, fingerprint),
        )
        return Session(token, user, csrf_for(token), now, now, fingerprint)

    def get(self, token: str | None, now: float) -> Session | None:
        """The live session of this cookie, its last use renewed; ``None`` (and gone) if expired."""
        if not token:
            return None
        key = token_hash(token)
        row = self._db.execute(
            "SELECT user, created, last_seen, password_fingerprint FROM sessions "
            "WHERE token_sha256 = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        session = Session(token, row[0], csrf_for(token), row[1], row[2], row[3])
        if expired(session, now, self.idle_s, self.absolute_s):
            self._db.execute("DELETE FROM sessions WHERE token_sha256 = ?", (key,))
            return None
        if now - session.last_seen >= min(TOUCH_EVERY_S, self.idle_s / 10):
            session.last_seen = now
            self._db.execute("UPDATE sessions SET last_seen = ? WHERE token_sha256 = ?", (now, key))
        return session

    def end(self, token: str | None) -> None:
        if token:
            self._db.execute("DELETE FROM sessions WHERE token_sha256 = ?", (token_hash(token),))

    def end_user(self, user: str) -> int:
        """End every session of an account (its password changed, it was removed)."""
        return self._db.execute("DELETE FROM sessions WHERE user = ?", (user,)).rowcount

    def prune(self, now: float) -> int:
        return self._db.execute(
            "DELETE FROM sessions WHERE last_seen <= ? OR created <= ?",
            (now - self.idle_s, now - self.absolute_s),
        ).rowcount

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM sessions").fetchone()[0])


def same_token(expected: str, given: object) -> bool:
    return isinstance(given, str) and bool(given) and hmac.compare_digest(expected, given)

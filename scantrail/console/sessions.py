"""Server-side sessions with a CSRF token each. Pure: ``now`` is passed in.

The cookie holds only a random session id; the account, the CSRF token and
the expiry live here, so logging out (or a console restart) ends a session
for good. A session expires ``ttl`` after its last use.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass


@dataclass
class Session:
    sid: str
    user: str
    csrf: str
    expires: float


class Sessions:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._by_id: dict[str, Session] = {}

    def create(self, user: str, now: float) -> Session:
        session = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(24), now)
        session.expires = now + self.ttl_s
        self._by_id[session.sid] = session
        if len(self._by_id) > 10_000:
            self.prune(now)
        return session

    def get(self, sid: str | None, now: float) -> Session | None:
        session = self._by_id.get(sid or "")
        if session is None:
            return None
        if session.expires <= now:
            del self._by_id[session.sid]
            return None
        session.expires = now + self.ttl_s
        return session

    def end(self, sid: str | None) -> None:
        self._by_id.pop(sid or "", None)

    def prune(self, now: float) -> None:
        for sid in [s.sid for s in self._by_id.values() if s.expires <= now]:
            del self._by_id[sid]


def same_token(expected: str, given: object) -> bool:
    return isinstance(given, str) and bool(given) and hmac.compare_digest(expected, given)

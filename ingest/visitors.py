"""Visitors without a pass: a pseudonymous id from what they show, and their registration.

A visitor shows a phone number (or another contact the district accepts). It
is normalised and keyed-hashed (HMAC-SHA-256) with the deployment's secret
(:class:`scantrail.settings.VisitorSettings`); only the hash, shortened to 32
hex digits, becomes the visitor's ``person_id`` (``v-…``). The number itself is
never stored, logged or published, and the same visitor gets the same id at
every gate of the deployment, so their scans join trails and traces like a
resident's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

from scantrail.errors import ScanTrailError

VISITOR_PREFIX = "v-"
_SEPARATORS = re.compile(r"[\s().\-]")
_PHONE = re.compile(r"^\+?\d{6,15}$")


class VisitorError(ScanTrailError, ValueError):
    """What the visitor showed is not usable as an identity."""


def normalise_shown(shown: str) -> str:
    """One spelling per phone number: no spaces, dashes or brackets; 00 → +."""
    text = unicodedata.normalize("NFKC", shown).strip()
    text = _SEPARATORS.sub("", text)
    if text.startswith("00"):
        text = "+" + text[2:]
    if not _PHONE.match(text):
        raise VisitorError("a visitor is registered by a phone number of 6 to 15 digits")
    return text


def visitor_id(shown: str, secret: bytes) -> str:
    """The pseudonymous person id of the visitor who showed ``shown``."""
    if len(secret) < 16:
        raise VisitorError("the visitor secret must be at least 16 bytes")
    digest = hmac.new(secret, normalise_shown(shown).encode(), hashlib.sha256).hexdigest()
    return f"{VISITOR_PREFIX}{digest[:32]}"


def is_visitor(person_id: str) -> bool:
    return person_id.startswith(VISITOR_PREFIX)

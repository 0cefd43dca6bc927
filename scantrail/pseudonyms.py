"""What a pseudonymous person id must not look like, and keyed hashes for refused values.

Pure functions, no I/O: the contract calls :func:`why_not_pseudonymous` on
every person id, and dead letters of personal topics carry identifiers only
as :func:`keyed_hash` (HMAC-SHA256 with a secret the reader of the dead-letter
topic does not hold, so a refused phone number cannot be recovered by hashing
every phone number).

Refused shapes, each with the reason the contract reports:

* a Chinese resident identity number: 17 digits and a check character (a digit
  or ``X``) that is right under ISO 7064 MOD 11-2 (GB 11643-1999);
* a phone number: 7 to 15 digits once separators (space, ``-``, ``.``,
  parentheses) and a country prefix (``+`` or ``00``) are taken away;
* an e-mail address: ``local@domain.tld``.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_RESIDENT_ID = re.compile(r"^\d{17}[\dXx]$")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_PHONE_CHARS = re.compile(r"^\+?[\d\s().-]+$")
_SEPARATORS = re.compile(r"[\s().-]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")


def resident_id_check(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def is_resident_id(value: str) -> bool:
    return bool(_RESIDENT_ID.match(value)) and resident_id_check(value[:17]) == value[17].upper()


def is_phone_number(value: str) -> bool:
    if not _PHONE_CHARS.match(value):
        return False
    digits = _SEPARATORS.sub("", value)
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    return digits.isdigit() and 7 <= len(digits) <= 15


def is_email(value: str) -> bool:
    return bool(_EMAIL.match(value))


_NEITHER_ID_NOR_PHONE = re.compile(r"[^\d\s().+Xx-]")
"""A character no resident identity number and no phone number holds."""


def why_not_pseudonymous(value: str) -> str | None:
    """None for an acceptable id, else the reason (which never repeats the value).

    Every person id of every event passes here, so an id holding a character
    that neither an identity number nor a phone number can hold, and no ``@``,
    is accepted after one search instead of three matches.
    """
    if "@" not in value and _NEITHER_ID_NOR_PHONE.search(value):
        return None
    return _shape_of_personal_data(value)


def _shape_of_personal_data(value: str) -> str | None:
    """The three checks themselves (:func:`why_not_pseudonymous` without its shortcut)."""
    if is_resident_id(value):
        return "looks like a resident identity number; person ids must be pseudonymous"
    if is_phone_number(value):
        return "looks like a phone number; person ids must be pseudonymous"
    if is_email(value):
        return "looks like an e-mail address; person ids must be pseudonymous"
    return None


def keyed_hash(key: bytes, value: bytes | str) -> str:
    """``hmac-sha256:<hex>`` of the value: the same value gives the same hash, for correlation."""
    # surrogatepass: a hostile record's lone surrogate still hashes (and the same way each time)
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return "hmac-sha256:" + hmac.new(key, data, hashlib.sha256).hexdigest()

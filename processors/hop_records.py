"""What one stage forwards to the next when the next needs only part of an event.

The kiosk and gate stages validate every source record in full against the
contract (:mod:`scantrail.contract`). The person and site stages' rules then
keep six fields of a reading (a :class:`~processors.screening_state.Sample`)
and the ``trail-sites`` stage five of a scan, yet each received the whole
event and validated it again with the contract's model: in a py-spy profile
of the 1,000,000-reading drain (2026-12-06) those re-validations were 5.7% of
the worker, most of it building a pydantic model that was read for six fields.

So the record on those hops is the part, as a compact JSON array whose
first element names its version (``sample/1``, ``visit/1``). It is still
checked where it arrives: its shape, every identifier against the contract's
identifier pattern, a finite plausible temperature, a time with an offset
inside the contract's window. A record that fails is a :class:`ContractError`,
dead-lettered like any bad record. A record of the older form (the whole
event, as a worker of an earlier release forwarded it) is still read: a JSON
object, never an array.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from processors.screening_state import Sample
from scantrail.contract import EARLIEST_TIME, LATEST_TIME
from scantrail.errors import ContractError

SAMPLE = "sample/1"
VISIT = "visit/1"

_ID = r"[A-Za-z0-9._:@/-]{1,128}"
# The identifiers of one record joined by a unit separator (never in an identifier).
_IDS = {count: re.compile(rf"{_ID}(?:\x1f{_ID}){{{count - 1}}}") for count in (3, 4)}
# The contract's window in UTC seconds and microseconds (both ends are whole seconds).
_EARLIEST_S, _LATEST_S = EARLIEST_TIME.timestamp(), LATEST_TIME.timestamp()
_EARLIEST_US, _LATEST_US = int(_EARLIEST_S) * 1_000_000, int(_LATEST_S) * 1_000_000


def is_compact(record: bytes) -> bool:
    """Whether ``record`` is a compact hop record (an array), not a whole event (an object)."""
    return record[:1] == b"["


def _fields(record: bytes, version: str, count: int) -> list[Any]:
    try:
        fields = orjson.loads(record)
    except orjson.JSONDecodeError as exc:
        raise ContractError(f"invalid {version} record: not JSON: {exc}") from None
    if not isinstance(fields, list) or len(fields) != count or fields[0] != version:
        raise ContractError(f"not a {version} record")
    return fields


def _check_ids(version: str, *ids: Any) -> None:
    # One match for all of them: a regex call costs more than its work.
    try:
        joined = "\x1f".join(ids)
    except TypeError:
        joined = ""  # an identifier that is not a string
    if not _IDS[len(ids)].fullmatch(joined):
        raise ContractError(f"invalid {version} record: an identifier is malformed")


def encode_sample(sample: Sample) -> bytes:
    """``sample`` as the person stage forwards a reading to its site (the time as written)."""
    return orjson.dumps(
        [
            SAMPLE,
            sample.event_id,
            sample.time,
            sample.celsius,
            sample.kiosk_id,
            sample.site_id,
            sample.person_id,
        ]
    )


def decode_sample(record: bytes) -> Sample:
    """The :class:`Sample` a ``sample/1`` record holds, checked."""
    _, event_id, time, celsius, kiosk_id, site_id, person_id = _fields(record, SAMPLE, 7)
    if person_id is None:
        _check_ids(SAMPLE, event_id, kiosk_id, site_id)
    else:
        _check_ids(SAMPLE, event_id, kiosk_id, site_id, person_id)
    # NaN fails the bounds too; a bool is an int, but never a temperature.
    if type(celsius) not in (float, int) or not -50.0 <= celsius <= 100.0:
        raise ContractError(f"invalid {SAMPLE} record: not a temperature: {celsius!r}")
    if type(time) is not str:
        raise ContractError(f"invalid {SAMPLE} record: the time is not a string")
    try:
        moment = datetime.fromisoformat(time)
        # In seconds: comparing datetimes of two offsets cost a microsecond.
        inside = moment.tzinfo is not None and _EARLIEST_S <= moment.timestamp() <= _LATEST_S
    except (ValueError, OverflowError):
        inside = False
    if not inside:
        raise ContractError(f"invalid {SAMPLE} record: not a time with an offset in range")
    return Sample(event_id, moment, float(celsius), kiosk_id, site_id, person_id)


class Visit(NamedTuple):
    """What the ``trail-sites`` stage keeps of a scan: who passed which site when (UTC µs)."""

    site_id: str
    at_us: int
    person_id: str
    kiosk_id: str
    event_id: str


def encode_visit(visit: Visit) -> bytes:
    return orjson.dumps([VISIT, *visit])


def decode_visit(record: bytes) -> Visit:
    """The :class:`Visit` a ``visit/1`` record holds, checked."""
    _, site_id, at_us, person_id, kiosk_id, event_id = _fields(record, VISIT, 6)
    _check_ids(VISIT, site_id, person_id, kiosk_id, event_id)
    if type(at_us) is not int or not _EARLIEST_US <= at_us <= _LATEST_US:
        raise ContractError(f"invalid {VISIT} record: not a time in range: {at_us!r}")
    return tuple.__new__(Visit, (site_id, at_us, person_id, kiosk_id, event_id))

"""Lines of a JSONL file → contract events → alerts, for ``scantrail screen``.

Kept apart from the click command so it can be tested without a terminal and
reused by notebooks; it takes lines, never opens files. A bad line is reported
with its number and reason and skipped: one corrupt record must not hide the
alerts in the thousand good ones around it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from processors.screener import Screener, ScreenEvent
from processors.screening_policy import PolicyLike
from scantrail.contract import Alert, QuarantineRecord, ScanEvent, TemperatureReading, decode
from scantrail.errors import ContractError
from scantrail.jsonl import DEFAULT_MAX_LINE_BYTES, read_lines, too_long

SCREENABLE = (ScanEvent, TemperatureReading, QuarantineRecord)


@dataclass(frozen=True)
class BadLine:
    """A line that could not be screened (1-based line number)."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ScreenResult:
    """What a run produced: sorted alerts, skipped lines, events read per schema."""

    alerts: list[Alert] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def parse_lines(lines: Iterable[bytes | str]) -> tuple[list[ScreenEvent], list[BadLine]]:
    """Decode every non-blank line; collect the ones that are not screenable events."""
    events: list[ScreenEvent] = []
    bad: list[BadLine] = []
    for number, raw in enumerate(lines, start=1):
        _parse_line(number, raw, events, bad)
    return events, bad


def parse_file(
    handle: BinaryIO, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> tuple[list[ScreenEvent], list[BadLine]]:
    """:func:`parse_lines` over a binary file, lines over the limit refused unread."""
    events: list[ScreenEvent] = []
    bad: list[BadLine] = []
    for line in read_lines(handle, max_line_bytes):
        if line.data is None:
            bad.append(BadLine(line.number, too_long(line, max_line_bytes)))
        else:
            _parse_line(line.number, line.data, events, bad)
    return events, bad


def _parse_line(
    number: int, raw: bytes | str, events: list[ScreenEvent], bad: list[BadLine]
) -> None:
    if not raw.strip():
        return
    try:
        event = decode(raw)
    except ContractError as exc:
        bad.append(BadLine(number, str(exc)))
        return
    if not isinstance(event, SCREENABLE):
        bad.append(BadLine(number, f"{event.SCHEMA} is not a scan, temperature or quarantine"))
        return
    events.append(event)


def screen_lines(lines: Iterable[bytes | str], policy: PolicyLike | None = None) -> ScreenResult:
    """Parse and screen a whole file's lines; alerts sorted by event time, then kind."""
    events, bad = parse_lines(lines)
    counts = Counter(event.SCHEMA for event in events)
    return ScreenResult(Screener(policy).run(events), bad, counts)


def screen_file(
    handle: BinaryIO,
    policy: PolicyLike | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> ScreenResult:
    """:func:`screen_lines` over a binary file (see :func:`parse_file`)."""
    events, bad = parse_file(handle, max_line_bytes)
    counts = Counter(event.SCHEMA for event in events)
    return ScreenResult(Screener(policy).run(events), bad, counts)

"""Reading JSON-lines files for the offline commands: bounded lines, one way of counting them.

``screen`` and ``trace`` (and anything else reading a topic dump) number lines
the same way: physical lines of bytes split at ``\\n`` only, from 1, blank
lines counted but skipped. A line longer than the limit is reported by number
and skipped without ever being held whole: it is read in chunks and dropped,
so a 2 GB line costs no more memory than a short one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

#: The default longest line, in bytes: Kafka's default largest record.
DEFAULT_MAX_LINE_BYTES = 1024 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Line:
    """One non-blank line: its 1-based number, and its bytes (None when over the limit)."""

    number: int
    data: bytes | None
    length: int


def read_lines(handle: BinaryIO, max_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[Line]:
    """The file's non-blank lines, each at most ``max_bytes`` (without its newline)."""
    if max_bytes < 1:
        raise ValueError("max_bytes must be at least 1")
    number = 0
    while True:
        data = handle.readline(max_bytes + 1)
        if not data:
            return
        number += 1
        if data.endswith(b"\n"):
            data = data[:-1]
        elif len(data) > max_bytes:  # longer than allowed: skip the rest unread
            length = len(data)
            while True:
                rest = handle.readline(_CHUNK)
                length += len(rest)
                if not rest or rest.endswith(b"\n"):
                    length -= 1 if rest.endswith(b"\n") else 0
                    break
            yield Line(number, None, length)
            continue
        if data.endswith(b"\r"):
            data = data[:-1]
        if data.strip():
            yield Line(number, data, len(data))


def too_long(line: Line, max_bytes: int) -> str:
    """The reason given for a line over the limit."""
    return (
        f"line longer than {max_bytes} bytes ({line.length} bytes); skipped unread"
        " (raise the limit with --max-line-bytes)"
    )

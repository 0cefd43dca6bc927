"""The InfluxDB sink's own durable state: which scans each minute holds, who is watched.

Per-minute passage counts must survive re-delivery without double counting, so
the sink keeps the *set* of scan event ids per (site, kiosk, direction, minute)
and writes the size of that set: a re-delivered scan changes nothing, a late
scan from a kiosk that was offline for hours raises its minute's count by one.
The sets live in SQLite beside the sink (bounded by a retention in days), so a
restart recomputes from the same facts.

Watched persons (under quarantine, or with a fever alert) get their own
per-person series in a separate bucket; the registry of who is watched is kept
here too.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

_SCHEMA = """
CREATE TABLE IF NOT EXISTS passages (
    site_id TEXT NOT NULL,
    kiosk_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    minute INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (site_id, kiosk_id, direction, minute, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS watched (
    person_id TEXT PRIMARY KEY,
    until_day TEXT
);
"""


class MinuteKey(NamedTuple):
    site_id: str
    kiosk_id: str
    direction: str
    minute: int  # epoch seconds of the minute's start (UTC)


def minute_of(at: datetime) -> int:
    seconds = int(at.timestamp())
    return seconds - seconds % 60


class SinkState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def add_passages(self, scans: Iterable[tuple[MinuteKey, str]]) -> dict[MinuteKey, int]:
        """Record scans (idempotently) and return the recomputed count of each touched minute."""
        rows = [(*key, event_id) for key, event_id in scans]
        if not rows:
            return {}
        touched = {MinuteKey(*row[:4]) for row in rows}
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO passages VALUES (?, ?, ?, ?, ?)", rows)
            counts = {
                key: int(
                    self._db.execute(
                        "SELECT COUNT(*) FROM passages WHERE site_id=? AND kiosk_id=? "
                        "AND direction=? AND minute=?",
                        key,
                    ).fetchone()[0]
                )
                for key in touched
            }
            self._db.execute("COMMIT")
        return counts

    def watch(self, person_id: str, until: date | None) -> None:
        """Watch a person until a day (exclusive), or for good when ``until`` is None."""
        with self._lock:
            self._db.execute(
                "INSERT INTO watched VALUES (?, ?) ON CONFLICT(person_id) DO UPDATE SET "
                "until_day = CASE WHEN excluded.until_day IS NULL OR until_day IS NULL THEN NULL "
                "ELSE max(until_day, excluded.until_day) END",
                (person_id, None if until is None else until.isoformat()),
            )

    def is_watched(self, person_id: str, on: date) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT until_day FROM watched WHERE person_id = ?", (person_id,)
            ).fetchone()
        return row is not None and (row[0] is None or on.isoformat() < row[0])

    def prune(self, now: datetime, keep: timedelta) -> int:
        """Forget minutes older than ``keep``: a scan that late is counted afresh."""
        cutoff = minute_of(now - keep)
        with self._lock:
            cursor = self._db.execute("DELETE FROM passages WHERE minute < ?", (cutoff,))
        return int(cursor.rowcount)

    def close(self) -> None:
        self._db.close()

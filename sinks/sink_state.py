"""The InfluxDB sink's own durable state: which scans each minute holds, who is watched.

Per-minute passage counts must survive re-delivery without double counting, so
the sink keeps the *set* of scan event ids per (site, kiosk, direction, minute)
and writes the size of that set: a re-delivered scan changes nothing, a late
scan from a kiosk that was offline for hours raises its minute's count by one.
The sets live in SQLite beside the sink (bounded by a retention in days), so a
restart recomputes from the same facts.

Watched persons (under quarantine, or with a fever alert) get their own
per-person series in a separate bucket; the registry of who is watched is kept
here too, with the backfills (:mod:`sinks.backfill`) still to be stored. A
watch and the backfills it needs are recorded in one transaction, and a
backfill row is deleted only once its lines are stored: a crash in between
leaves the row, and the next start runs it again.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from sinks.backfill import FOREVER, BackfillTask, Watch

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
CREATE TABLE IF NOT EXISTS backfills (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    person_id TEXT NOT NULL,
    from_day TEXT NOT NULL,
    until_day TEXT NOT NULL
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
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(watched)")}
        if "backfilled_from" not in columns:  # a state file from before backfills
            self._db.execute("ALTER TABLE watched ADD COLUMN backfilled_from TEXT")
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

    def watched(self) -> dict[str, Watch]:
        """The whole registry (small: quarantined and feverish persons), for memory."""
        with self._lock:
            rows = self._db.execute(
                "SELECT person_id, until_day, backfilled_from FROM watched"
            ).fetchall()
        out = {}
        for person_id, until_day, backfilled_from in rows:
            until = FOREVER if until_day is None else date.fromisoformat(until_day)
            # NULL: watched before backfills existed; nothing is claimed as covered.
            covered = until if backfilled_from is None else date.fromisoformat(backfilled_from)
            out[person_id] = Watch(until, covered)
        return out

    def record_watches(
        self, watches: Mapping[str, Watch], backfills: Sequence[tuple[str, date, date]]
    ) -> list[BackfillTask]:
        """Store new registry entries and the backfills they need, atomically.

        Returns the backfills with their row ids, for :meth:`finish_backfills`.
        """
        rows = [
            (
                person_id,
                None if w.until == FOREVER else w.until.isoformat(),
                w.covered_from.isoformat() if w.covered_from < w.until else None,
            )
            for person_id, w in watches.items()
        ]
        tasks = []
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO watched VALUES (?, ?, ?) ON CONFLICT(person_id) DO UPDATE SET "
                "until_day = excluded.until_day, backfilled_from = excluded.backfilled_from",
                rows,
            )
            for person_id, start, stop in backfills:
                cursor = self._db.execute(
                    "INSERT INTO backfills (person_id, from_day, until_day) VALUES (?, ?, ?)",
                    (person_id, start.isoformat(), _day(stop)),
                )
                tasks.append(BackfillTask(person_id, start, stop, int(cursor.lastrowid or 0)))
            self._db.execute("COMMIT")
        return tasks

    def pending_backfills(self) -> list[BackfillTask]:
        """Backfills recorded but not yet stored (the sink stopped or crashed first)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, person_id, from_day, until_day FROM backfills ORDER BY id"
            ).fetchall()
        return [
            BackfillTask(
                person_id,
                date.fromisoformat(start),
                _parse_day(stop),
                int(row_id),
            )
            for row_id, person_id, start, stop in rows
        ]

    def finish_backfills(self, ids: Iterable[int]) -> None:
        """Forget backfills whose lines InfluxDB acknowledged."""
        with self._lock:
            self._db.executemany("DELETE FROM backfills WHERE id = ?", [(i,) for i in ids])

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


def _day(day: date) -> str:
    return "forever" if day == FOREVER else day.isoformat()


def _parse_day(text: str) -> date:
    return FOREVER if text == "forever" else date.fromisoformat(text)

"""The kiosk's durable spool: every event is on disk before anyone tries to send it.

SQLite in WAL mode with ``synchronous=FULL``: a committed append survives a
power cut. Rows leave the spool only after the broker acknowledged them
(:mod:`ingest.publisher`), so a kiosk killed at any moment re-sends at most the
rows in flight, with the same ``event_id``.

Readings waiting up to 10 s for their scan (:mod:`ingest.pairing`) are kept
in a ``held`` table from the moment they are measured, and leave it in the
same transaction that appends them to the outbox, so a kiosk killed while a
reading waits still publishes it after the restart.

The spool also owns the kiosk's counters (``seq`` of scans, reading numbers):
they are incremented in the same transaction as the append, so ids never repeat
across restarts.

A row whose bytes no longer match their checksum, or no longer decode, is
moved to a quarantine table with a log line instead of blocking the queue.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from scantrail import contract
from scantrail.errors import ContractError, SpoolError

log = logging.getLogger(__name__)

E = TypeVar("E", bound=contract.Event)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key BLOB,
    value BLOB NOT NULL,
    crc INTEGER NOT NULL,
    ts_ms INTEGER
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS held (
    event_id TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    topic TEXT,
    key BLOB,
    value BLOB,
    reason TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class SpooledEvent:
    """One row waiting for the broker: the contract topic name and the encoded event."""

    row_id: int
    topic: str
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None


class Spool:
    """A durable FIFO of encoded events, safe against SIGKILL and power loss."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot open spool {path}: {exc}") from None
        self.path = path
        # One connection shared by the gate loop and the publisher thread.
        self._lock = threading.RLock()

    def next_counter(self, name: str) -> int:
        """Reserve the next value of a durable counter (1, 2, ...)."""
        with self._transaction():
            return self._bump(name)

    def _bump(self, name: str) -> int:
        row = self._db.execute(
            "INSERT INTO counters(name, value) VALUES (?, 1) "
            "ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value",
            (name,),
        ).fetchone()
        return int(row[0])

    def append(self, event: contract.Event) -> int:
        """Write one event durably; returns its row id."""
        with self._transaction():
            return self._insert(event)

    def append_numbered(self, counter: str, build: Callable[[int], E]) -> E:
        """Reserve the next number of ``counter`` and spool the event built from it.

        Both happen in one transaction, so numbers (event ids, ``seq``) have no
        gaps and never repeat, whenever the process dies.
        """
        with self._transaction():
            event = build(self._bump(counter))
            self._insert(event)
            return event

    def hold_numbered(
        self, counter: str, build: Callable[[int], contract.TemperatureReading]
    ) -> contract.TemperatureReading:
        """Reserve a number and keep the reading built from it as *held* (not yet to send)."""
        with self._transaction():
            reading = build(self._bump(counter))
            self._db.execute(
                "INSERT OR REPLACE INTO held(event_id, value) VALUES (?, ?)",
                (reading.event_id, contract.encode(reading)),
            )
            return reading

    def release(self, reading: contract.TemperatureReading) -> int:
        """Spool a reading (paired or not) and drop it from the held ones, atomically."""
        with self._transaction():
            self._db.execute("DELETE FROM held WHERE event_id = ?", (reading.event_id,))
            return self._insert(reading)

    def held(self) -> list[contract.TemperatureReading]:
        """Readings held when the kiosk last stopped; one that no longer decodes is quarantined."""
        with self._lock:
            rows = self._db.execute("SELECT event_id, value FROM held ORDER BY rowid").fetchall()
        out: list[contract.TemperatureReading] = []
        for event_id, value in rows:
            try:
                out.append(contract.decode_as(value, contract.TemperatureReading))
            except ContractError as exc:
                log.error("held reading %s is unreadable (%s); quarantined", event_id, exc)
                with self._transaction():
                    self._db.execute(
                        "INSERT INTO quarantine(topic, key, value, reason) VALUES (?, ?, ?, ?)",
                        (contract.TEMPERATURES, None, value, f"held reading: {exc}"),
                    )
                    self._db.execute("DELETE FROM held WHERE event_id = ?", (event_id,))
        return out

    def _insert(self, event: contract.Event) -> int:
        value = contract.encode(event)
        cursor = self._db.execute(
            "INSERT INTO outbox(topic, key, value, crc, ts_ms) VALUES (?, ?, ?, ?, ?)",
            (event.TOPIC, event.key(), value, zlib.crc32(value), event.timestamp_ms()),
        )
        return int(cursor.lastrowid or 0)

    def counter(self, name: str) -> int:
        """The last number handed out by ``counter`` (0 if none)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def peek(self, limit: int = 500) -> list[SpooledEvent]:
        """The oldest rows, corrupt ones moved aside first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, key, value, crc, ts_ms FROM outbox ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        good: list[SpooledEvent] = []
        for row_id, topic, key, value, crc, ts_ms in rows:
            reason = self._corruption(topic, value, crc)
            if reason is not None:
                self._quarantine(row_id, topic, key, value, reason)
                continue
            good.append(SpooledEvent(row_id, topic, key, bytes(value), ts_ms))
        return good

    @staticmethod
    def _corruption(topic: object, value: object, crc: object) -> str | None:
        if not isinstance(value, bytes) or zlib.crc32(value) != crc:
            return "checksum mismatch"
        if topic not in contract.TOPIC_SCHEMAS:
            return f"unknown topic {topic!r}"
        try:
            contract.decode(value, expect=contract.TOPIC_SCHEMAS[str(topic)])
        except ContractError as exc:
            return str(exc)
        return None

    def _quarantine(
        self, row_id: int, topic: object, key: object, value: object, reason: str
    ) -> None:
        log.error(
            "spool row %d is corrupt (%s); moved to quarantine in %s", row_id, reason, self.path
        )
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO quarantine(id, topic, key, value, reason) "
                "VALUES (?, ?, ?, ?, ?)",
                (row_id, topic, key, value, reason),
            )
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))

    def remove(self, row_ids: Iterable[int]) -> None:
        """Forget rows the broker acknowledged."""
        ids = [(i,) for i in row_ids]
        if not ids:
            return
        with self._transaction():
            self._db.executemany("DELETE FROM outbox WHERE id = ?", ids)

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def quarantined(self) -> list[tuple[int, str]]:
        with self._lock:
            rows = self._db.execute("SELECT id, reason FROM quarantine").fetchall()
        return [(int(i), str(r)) for i, r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self._lock)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error (sqlite3's own is implicit)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db = db
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire()
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self._lock.release()

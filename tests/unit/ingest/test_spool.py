"""The durable spool, on a real SQLite file."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.spool import Spool
from scantrail import contract


def scan(i: int) -> contract.ScanEvent:
    return contract.ScanEvent(
        event_id=f"k1-s{i}",
        kiosk_id="k1",
        site_id="s1",
        direction="in",
        person_id=f"p{i}",
        pass_status="valid",
        scanned_at=datetime(2020, 2, 10, tzinfo=UTC) + timedelta(seconds=i),
        seq=i,
    )


def test_events_come_back_in_order_with_their_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    for i in range(1, 6):
        spool.append(scan(i))
    rows = spool.peek(10)
    assert [contract.decode(r.value).event_id for r in rows] == [f"k1-s{i}" for i in range(1, 6)]  # type: ignore[attr-defined]
    assert {r.topic for r in rows} == {contract.SCANS}
    assert rows[0].key == b"p1"
    assert spool.depth() == 5


def test_removed_rows_are_gone_and_others_stay(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    for i in range(1, 4):
        spool.append(scan(i))
    first = spool.peek(2)
    spool.remove(r.row_id for r in first)
    left = spool.peek(10)
    assert [contract.decode(r.value).event_id for r in left] == ["k1-s3"]  # type: ignore[attr-defined]


def test_rows_and_counters_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path)
    assert spool.next_counter("seq") == 1
    assert spool.next_counter("seq") == 2
    spool.append(scan(1))
    spool.close()
    again = Spool(path)
    assert again.next_counter("seq") == 3
    assert again.depth() == 1


def test_counters_are_independent(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    assert spool.next_counter("seq") == 1
    assert spool.next_counter("reading") == 1
    assert spool.next_counter("seq") == 2


def test_the_spool_uses_wal_and_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    Spool(path).append(scan(1))
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize(
    ("column", "bad", "reason"),
    [
        ("value", b'{"schema":"scan/1","event_id":"k1-s2"', "checksum"),
        ("crc", 12345, "checksum"),
        ("topic", "nowhere", "unknown topic"),
    ],
)
def test_a_corrupt_row_is_quarantined_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, column: str, bad: object, reason: str
) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path)
    for i in range(1, 4):
        spool.append(scan(i))
    db = sqlite3.connect(path)
    db.execute(f"UPDATE outbox SET {column} = ? WHERE id = 2", (bad,))  # noqa: S608
    db.commit()
    db.close()
    rows = spool.peek(10)
    assert [contract.decode(r.value).event_id for r in rows] == ["k1-s1", "k1-s3"]  # type: ignore[attr-defined]
    quarantined = spool.quarantined()
    assert [q[0] for q in quarantined] == [2]
    assert reason in quarantined[0][1]
    assert "corrupt" in caplog.text
    assert spool.depth() == 2


def test_a_row_that_no_longer_decodes_is_quarantined(tmp_path: Path) -> None:
    import zlib

    path = tmp_path / "spool.db"
    spool = Spool(path)
    spool.append(scan(1))
    value = b'{"schema":"scan/1"}'
    db = sqlite3.connect(path)
    db.execute("UPDATE outbox SET value = ?, crc = ? WHERE id = 1", (value, zlib.crc32(value)))
    db.commit()
    db.close()
    assert spool.peek(10) == []
    assert "invalid scan/1" in spool.quarantined()[0][1]

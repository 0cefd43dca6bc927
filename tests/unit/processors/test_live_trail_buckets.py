"""The bucketed table layout of the live trails answers exactly like the in-memory index."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from processors.live_state import partition_of
from processors.live_trails import (
    DAY_US,
    SLOT_US,
    RetentionSweep,
    TableIndex,
    trail_key,
    visit_key,
)
from processors.trails import SiteVisits, Trail, TrailIndex, to_micros

START = to_micros(datetime(2020, 2, 10, 23, 0, tzinfo=UTC))  # a day boundary an hour away


def scans(n: int, seed: int) -> list[tuple[int, str, str, str, str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        at = START + rng.randrange(0, 3 * 3600 * 1_000_000)  # three hours across midnight
        rows.append((at, f"p{rng.randrange(20)}", f"s{rng.randrange(3)}", "k1", "in", f"e{i}"))
    return rows


def tables_of(rows: list[tuple[int, str, str, str, str, str]]) -> TableIndex:
    """What the two agents write, as plain dicts of table values."""
    trails: dict[bytes, dict[str, object]] = {}
    visits: dict[bytes, dict[str, object]] = {}
    for at, person, site, kiosk, direction, event_id in rows:
        key = trail_key(person, at)
        trail = Trail.from_dict(trails[key]) if key in trails else Trail()
        trail.add(at, site, kiosk, direction, event_id)
        trails[key] = trail.to_dict()
        key = visit_key(site, at)
        bucket = SiteVisits.from_dict(visits[key]) if key in visits else SiteVisits()
        bucket.add(at, person, kiosk, event_id)
        visits[key] = bucket.to_dict()
    return TableIndex(trails, visits)


def test_bucketed_lookups_equal_the_in_memory_index_across_bucket_edges() -> None:
    rows = scans(600, seed=3)
    index = TrailIndex()
    index.add_many(rows)
    tables = tables_of(rows)
    rng = random.Random(4)
    for _ in range(200):
        start = START + rng.randrange(-SLOT_US, 3 * 3600 * 1_000_000)
        end = start + rng.choice([0, 1, SLOT_US, 15 * 60 * 1_000_000, DAY_US])
        person, site = f"p{rng.randrange(20)}", f"s{rng.randrange(3)}"
        assert tables.trail_between(person, start, end) == index.trail_between(person, start, end)
        assert tables.visits_between(site, start, end) == index.visits_between(site, start, end)


def test_nothing_found_is_an_empty_slice() -> None:
    tables = TableIndex({}, {})
    assert tables.trail_between("nobody", START, START + DAY_US) == ([], [], [], [])
    assert tables.visits_between("nowhere", START, START + SLOT_US) == ([], [], [], [])


def test_retention_sweep_deletes_only_its_partitions_old_buckets_once_a_day() -> None:
    partitions = 4
    retention = int(timedelta(days=28).total_seconds() * 1_000_000)
    table: dict[bytes, object] = {}
    persons = [f"p{i}" for i in range(12)]
    for person in persons:
        for day in (0, 1, 40):
            table[trail_key(person, START + day * DAY_US)] = {}
    sweep = RetentionSweep(table, DAY_US, retention, partitions)
    mine = partition_of(b"p0", partitions)
    assert not sweep.too_old(mine, START + 40 * DAY_US)
    assert sweep.too_old(mine, START + 5 * DAY_US)  # 35 days behind this partition's newest
    removed = sweep.sweep(mine)
    owned = [p for p in persons if partition_of(p.encode(), partitions) == mine]
    assert removed == 2 * len(owned)
    for person in persons:
        kept_old = trail_key(person, START) in table
        assert kept_old == (person not in owned)
        assert trail_key(person, START + 40 * DAY_US) in table
    assert sweep.sweep(mine) == 0  # at most once per event-time day


class ChangelogTable(dict[bytes, object]):
    """A dict with faust's two calls the idle sweep makes: changelog send and store delete."""

    def __init__(self) -> None:
        super().__init__()
        self.tombstones: list[tuple[int, bytes]] = []
        self.data = self

    def send_changelog(self, partition: int, key: bytes, value: None, **kw: object) -> None:
        self.tombstones.append((partition, key))


def test_an_idle_partition_forgets_by_the_clock_of_the_others() -> None:
    """A partition that receives no scans still loses buckets past the retention."""
    partitions = 4
    retention = int(timedelta(days=28).total_seconds() * 1_000_000)
    table = ChangelogTable()
    persons = [f"p{i}" for i in range(12)]
    for person in persons:
        for day in (0, 40):
            table[trail_key(person, START + day * DAY_US)] = {}
    sweep = RetentionSweep(table, DAY_US, retention, partitions)
    busy = partition_of(b"p0", partitions)
    idle = {p for p in range(partitions)} - {busy}
    sweep.too_old(busy, START + 40 * DAY_US)  # only the busy partition sees scans
    assert sweep.clock_us() == START + 40 * DAY_US
    removed = sweep.sweep_idle(idle, sweep.clock_us() or 0)
    idle_persons = [p for p in persons if partition_of(p.encode(), partitions) in idle]
    assert removed == len(idle_persons) > 0
    for person in persons:
        assert (trail_key(person, START) in table) == (person not in idle_persons)
        assert trail_key(person, START + 40 * DAY_US) in table
    assert sorted(table.tombstones) == sorted(
        (partition_of(p.encode(), partitions), trail_key(p, START)) for p in idle_persons
    )


class PartitionedStore:
    """faust's RocksDB store as the sweep reads it: one real RocksDB per partition."""

    def __init__(self, root: Path, partitions: int) -> None:
        from rocksdict import Options, Rdict

        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self.dbs = [Rdict(str(root / str(p)), options=options) for p in range(partitions)]

    def _db_for_partition(self, partition: int) -> Any:
        return self.dbs[partition]


class StoreTable:
    """A table over :class:`PartitionedStore`; its all-partition key view must not be used."""

    def __init__(self, store: PartitionedStore, partitions: int) -> None:
        self.data, self.partitions = store, partitions
        self.tombstones: list[tuple[int, bytes]] = []

    def owner_db(self, key: bytes) -> Any:
        return self.data.dbs[partition_of(key.rpartition(b"|")[0], self.partitions)]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.owner_db(key)[key] = value

    def __contains__(self, key: bytes) -> bool:
        return self.owner_db(key).get(key) is not None

    def __delitem__(self, key: bytes) -> None:
        del self.owner_db(key)[key]

    def keys(self) -> Any:
        raise AssertionError("the sweep walked every partition's keys")


def test_the_sweep_reads_only_its_partitions_rocksdb(tmp_path: Path) -> None:
    partitions = 4
    retention = int(timedelta(days=28).total_seconds() * 1_000_000)
    store = PartitionedStore(tmp_path, partitions)
    table = StoreTable(store, partitions)
    persons = [f"p{i}" for i in range(16)]
    for person in persons:
        for day in (0, 40):
            table[trail_key(person, START + day * DAY_US)] = b"{}"
    for db in store.dbs:  # faust keeps its persisted offset beside the rows
        db[b"__faust\x00offset__"] = b"7"
    sweep = RetentionSweep(table, DAY_US, retention, partitions)
    mine = partition_of(b"p0", partitions)
    sweep.too_old(mine, START + 40 * DAY_US)
    owned = [p for p in persons if partition_of(p.encode(), partitions) == mine]
    assert sweep.sweep(mine) == len(owned)
    for person in persons:
        assert (trail_key(person, START) in table) == (person not in owned)
        assert trail_key(person, START + 40 * DAY_US) in table
    assert all(db[b"__faust\x00offset__"] == b"7" for db in store.dbs)
    for db in store.dbs:
        db.close()

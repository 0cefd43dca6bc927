"""Bench: build the trail index from millions of scans and trace contacts at depth 2.

Run with ``make bench-trace`` (``.venv/bin/python bench/bench_trace.py``), or
``--scans 200000`` for a quick run. The scans are synthetic but shaped like a
locked-down district: residents mostly pass their own compound's gate, the
rest go to a few shared markets and pharmacies, with morning and evening
peaks, a few late (out-of-order) arrivals and a few re-sent duplicates. The
seeded RNG makes every run see the same data.

Measured, and written to ``bench/results/trace.json``:

* build rate — only the ``TrailIndex.add`` calls are timed (generating the
  rows and formatting ids is not), in scans per second;
* trace latency p50/p99 — ``processors.contacts.trace`` at depth 2 for 100
  random residents over the last ``--trace-days`` days;
* peak memory — ``ru_maxrss`` after building and tracing (before DuckDB is
  loaded), and the RSS growth caused by the build alone;
* the same traces as a brute-force DuckDB self-join over the whole table, in
  the same run: every trace must give exactly the same contacts (degree, first
  contact, encounters, sites, evidence), and the latency ratio is reported.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processors.contacts import ContactPolicy, Trace, trace
from processors.trails import TrailIndex, to_micros

RESULTS = Path(__file__).resolve().parent / "results" / "trace.json"
START = datetime(2020, 2, 3, tzinfo=UTC)  # day 0, 00:00 UTC (08:00 in Hangzhou)
DAY_US = 86_400 * 1_000_000
WINDOW = timedelta(minutes=15)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Data:
    """The synthetic scan stream, as numpy columns in arrival order."""

    def __init__(self, scans: int, residents: int, sites: int, days: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        shared = max(1, sites // 10)  # markets, pharmacies, clinics
        home = rng.integers(shared, sites, residents)
        person = rng.integers(0, residents, scans)
        # Time of day (UTC+8 local): a morning and an evening peak over errands
        # spread through the day (lockdown: few commutes, shopping in daylight).
        kind = rng.random(scans)
        local_h = np.where(
            kind < 0.35,
            rng.normal(7.5, 1.0, scans),
            np.where(kind < 0.7, rng.normal(18.0, 1.5, scans), rng.uniform(6.0, 22.0, scans)),
        )
        local_s = np.clip(local_h * 3600, 0, 86_399).astype(np.int64)
        day = rng.integers(0, days, scans)
        t_s = day * 86_400 + local_s - 8 * 3600  # stored as UTC offsets from START
        weights = 1.0 / np.sqrt(np.arange(1, shared + 1))  # a few big markets
        errand = rng.choice(shared, scans, p=weights / weights.sum())
        site = np.where(rng.random(scans) < 0.85, home[person], errand)
        kiosk = (rng.random(scans) < 0.3).astype(np.int8)
        direction = rng.integers(0, 2, scans).astype(np.int8)
        # Arrival order: event time plus a small delay, 1% of scans late by up to an hour.
        delay = np.where(rng.random(scans) < 0.01, rng.integers(0, 3600, scans), 0)
        order = np.argsort(t_s + delay, kind="stable")
        self.t_us = t_s[order] * 1_000_000 + to_micros(START)
        self.person = person[order].astype(np.int32)
        self.site = site[order].astype(np.int16)
        self.kiosk = kiosk[order]
        self.direction = direction[order]
        self.eid = np.arange(scans, dtype=np.int64)
        # 0.1% re-sent duplicates: a later row repeats an earlier row exactly.
        dups = np.flatnonzero(rng.random(scans) < 0.001)
        dups = dups[dups > 0]
        src = np.maximum(dups - rng.integers(1, 1000, dups.size), 0)
        for col in (self.t_us, self.person, self.site, self.kiosk, self.direction, self.eid):
            col[dups] = col[src]
        # What the index keeps: the first row of each event id.
        _, first_rows = np.unique(self.eid, return_index=True)
        self.unique = np.zeros(scans, dtype=bool)
        self.unique[first_rows] = True
        self.n = scans
        self.days = days
        self.person_ids = [f"r{i:06d}" for i in range(residents)]
        self.site_ids = [f"s{i:03d}" for i in range(sites)]
        self.kiosk_ids = [[f"s{i:03d}-k{k}" for k in range(2)] for i in range(sites)]


def build(data: Data, progress: Any) -> tuple[TrailIndex, float, float]:
    index = TrailIndex()
    dirs = ("in", "out")
    pids, sids, kids = data.person_ids, data.site_ids, data.kiosk_ids
    task = progress.add_task("build index", total=data.n)
    spent = cpu = 0.0
    chunk = 250_000
    for lo in range(0, data.n, chunk):
        hi = min(lo + chunk, data.n)
        ts = data.t_us[lo:hi].tolist()
        sites = data.site[lo:hi].tolist()
        rows = [
            (t, pids[p], sids[s], kids[s][k], dirs[d], f"ev{e:08d}")
            for t, p, s, k, d, e in zip(
                ts,
                data.person[lo:hi].tolist(),
                sites,
                data.kiosk[lo:hi].tolist(),
                data.direction[lo:hi].tolist(),
                data.eid[lo:hi].tolist(),
                strict=True,
            )
        ]
        began, began_cpu = time.perf_counter(), time.process_time()
        index.add_many(rows)
        spent += time.perf_counter() - began
        cpu += time.process_time() - began_cpu
        progress.update(task, advance=hi - lo)
    return index, spent, cpu


def canonical_ours(result: Trace) -> dict[str, tuple[Any, ...]]:
    return {
        c.person_id: (
            c.degree,
            c.first_contact,
            c.encounters,
            tuple(c.sites),
            tuple((int(a[2:]), int(b[2:])) for a, b in c.evidence),
        )
        for c in result.contacts
    }


DUCK_SQL = """
WITH idx AS (
    SELECT eid, site, t FROM scans WHERE person = $p AND t BETWEEN $since AND $until
), p1 AS (
    SELECT i.eid AS src, s.eid AS dst, s.person, s.site, s.t
    FROM idx i JOIN scans s ON s.site = i.site AND s.t BETWEEN i.t - $w AND i.t + $w
    WHERE s.person <> $p
), c1 AS (
    SELECT person, min(t) AS first FROM p1 GROUP BY person
), src2 AS (
    SELECT s.eid, s.person, s.site, s.t FROM scans s JOIN c1 USING (person)
    WHERE s.t BETWEEN c1.first AND $until
), p2 AS (
    SELECT a.eid AS src, s.eid AS dst, s.person, s.site, s.t
    FROM src2 a JOIN scans s ON s.site = a.site AND s.t BETWEEN a.t - $w AND a.t + $w
    WHERE s.person <> a.person AND s.person <> $p
      AND s.person NOT IN (SELECT person FROM c1)
), pairs AS (
    SELECT 1 AS degree, * FROM p1 UNION ALL SELECT 2 AS degree, * FROM p2
)
SELECT person, degree, min(t), count(DISTINCT (src, dst)),
       list(DISTINCT site ORDER BY site), list(DISTINCT [src, dst] ORDER BY [src, dst])
FROM pairs GROUP BY person, degree
"""


def canonical_duck(rows: list[tuple[Any, ...]], data: Data) -> dict[str, tuple[Any, ...]]:
    return {
        data.person_ids[p]: (
            d,
            first,
            n,
            tuple(data.site_ids[s] for s in sites),
            tuple((a, b) for a, b in pairs),
        )
        for p, d, first, n, sites, pairs in rows
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=5_000_000)
    parser.add_argument("--residents", type=int, default=100_000)
    parser.add_argument("--sites", type=int, default=300)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--traces", type=int, default=100)
    parser.add_argument(
        "--trace-days",
        type=float,
        default=2.0,
        help="traced period, ending at the end of the data (close contacts: 2 days before onset)",
    )
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--no-duckdb", action="store_true", help="skip the brute-force check")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_at_start = [round(x, 2) for x in os.getloadavg()]

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with console.status("generating scans"):
        data = Data(args.scans, args.residents, args.sites, args.days, args.seed)
    console.print(f"generated {data.n:,} scans ({int((~data.unique).sum()):,} duplicates)")

    rss_before = _rss_mb()
    with Progress(*columns, console=console) as progress:
        index, build_s, build_cpu = build(data, progress)
    began = time.perf_counter()
    index.settle()
    settle_s = time.perf_counter() - began
    # The index is long-lived: freeze it so collections stop re-scanning it.
    gc.collect()
    gc.freeze()
    rss_index = _rss_mb() - rss_before
    console.print(
        f"built index: {len(index):,} scans kept, {index.ignored:,} ignored, "
        f"{data.n / build_s:,.0f} scans/s ({data.n / build_cpu:,.0f} per CPU-second; "
        f"+{settle_s:.1f} s to sort late arrivals), "
        f"+{rss_index:,.0f} MB RSS"
    )

    rng = np.random.default_rng(args.seed + 1)
    until = START + timedelta(days=args.days) - timedelta(microseconds=1)
    since = until - timedelta(days=args.trace_days) + timedelta(microseconds=1)
    persons = [data.person_ids[i] for i in rng.choice(args.residents, args.traces, replace=False)]
    policy = ContactPolicy(window=WINDOW, depth=2)
    ours: list[float] = []
    ours_cpu: list[float] = []
    results: dict[str, Trace] = {}
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("trace (index)", total=len(persons))
        for person in persons:
            began, began_cpu = time.perf_counter(), time.process_time()
            results[person] = trace(
                person,
                since,
                until,
                stores=index,
                policy=policy,
            )
            ours.append(time.perf_counter() - began)
            ours_cpu.append(time.process_time() - began_cpu)
            progress.advance(task)
    peak_index_mb = _maxrss_mb()
    d1 = [len(r.of_degree(1)) for r in results.values()]
    d2 = [len(r.of_degree(2)) for r in results.values()]
    pairs = [sum(c.encounters for c in r.contacts) for r in results.values()]
    console.print(
        f"traced {len(persons)} persons: p50 {pct(ours, 0.5) * 1e3:.1f} ms, "
        f"p99 {pct(ours, 0.99) * 1e3:.1f} ms (CPU p99 {pct(ours_cpu, 0.99) * 1e3:.1f} ms); "
        f"peak RSS {peak_index_mb:,.0f} MB"
    )

    duck: list[float] = []
    agree = 0
    mismatches: list[str] = []
    if not args.no_duckdb:
        import duckdb
        import pyarrow as pa

        keep = data.unique
        table = pa.table(
            {
                "eid": data.eid[keep],
                "person": data.person[keep],
                "site": data.site[keep],
                "t": data.t_us[keep],
            }
        )
        con = duckdb.connect(config={"memory_limit": "3GB", "threads": 2})
        con.register("scans_arrow", table)
        con.execute("CREATE TABLE scans AS SELECT * FROM scans_arrow")
        del table
        params = {
            "since": to_micros(since),
            "until": to_micros(until),
            "w": WINDOW // timedelta(microseconds=1),
        }
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("trace (DuckDB brute force)", total=len(persons))
            for person in persons:
                began = time.perf_counter()
                rows = con.execute(DUCK_SQL, {**params, "p": int(person[1:])}).fetchall()
                duck.append(time.perf_counter() - began)
                if canonical_duck(rows, data) == canonical_ours(results[person]):
                    agree += 1
                else:
                    mismatches.append(person)
                progress.advance(task)
        console.print(
            f"DuckDB: p50 {pct(duck, 0.5) * 1e3:.1f} ms, p99 {pct(duck, 0.99) * 1e3:.1f} ms; "
            f"{agree}/{len(persons)} traces identical"
        )

    figures: dict[str, Any] = {
        "bench": "trace",
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": len(os.sched_getaffinity(0)),
            "note": "shared machine: timings are noisy; see the load averages",
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "data": {
            "scans": data.n,
            "unique_scans": len(index),
            "residents": args.residents,
            "sites": args.sites,
            "days": args.days,
            "seed": args.seed,
        },
        "build": {
            "seconds": round(build_s, 2),
            "scans_per_second": round(data.n / build_s),
            "scans_per_cpu_second": round(data.n / build_cpu),
            "settle_seconds": round(settle_s, 2),
            "scans_per_second_incl_settle": round(data.n / (build_s + settle_s)),
            "rss_growth_mb": round(rss_index),
        },
        "trace": {
            "persons": len(persons),
            "depth": 2,
            "window_minutes": 15,
            "period_days": args.trace_days,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "p50_ms": round(pct(ours, 0.5) * 1e3, 2),
            "p99_ms": round(pct(ours, 0.99) * 1e3, 2),
            "max_ms": round(max(ours) * 1e3, 2),
            "cpu_p50_ms": round(pct(ours_cpu, 0.5) * 1e3, 2),
            "cpu_p99_ms": round(pct(ours_cpu, 0.99) * 1e3, 2),
            "mean_first_degree": round(statistics.mean(d1), 1),
            "mean_second_degree": round(statistics.mean(d2), 1),
            "max_second_degree": max(d2),
            "mean_evidence_pairs": round(statistics.mean(pairs)),
            "max_evidence_pairs": max(pairs),
        },
        "peak_rss_mb_before_duckdb": round(peak_index_mb),
        "targets": {"build_scans_per_second": 200_000, "trace_p99_ms": 200, "peak_memory_mb": 4096},
    }
    if duck:
        figures["duckdb"] = {
            "p50_ms": round(pct(duck, 0.5) * 1e3, 2),
            "p99_ms": round(pct(duck, 0.99) * 1e3, 2),
            "identical_traces": agree,
            "mismatched_persons": mismatches,
            "p50_ratio_duckdb_over_index": round(pct(duck, 0.5) / pct(ours, 0.5), 1),
        }
        figures["peak_rss_mb_total"] = round(_maxrss_mb())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    if mismatches:
        sys.exit(f"{len(mismatches)} traces differ from the brute force: {mismatches[:5]}")


if __name__ == "__main__":
    main()

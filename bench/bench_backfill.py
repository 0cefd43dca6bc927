"""Bench: what a watched-bucket backfill costs on a main bucket of realistic size.

Run with ``.venv/bin/python bench/bench_backfill.py`` (about 2 minutes; needs
InfluxDB from ``make up``). The figures back the docstring of
:mod:`sinks.backfill`.

1. A fresh bucket gets 14 days of temperature points, written with the sink's
   own line builder (not timed): 10,000 residents, 4 readings a day each, 40
   kiosks, 85% of a resident's readings at their home kiosk (560,000 points).
2. :func:`sinks.backfill.run_backfill` (the code the sink runs) backfills
   1, 10, 50 and 100 persons over the whole 14 days, twice each (the faster
   run is kept); each person must get exactly their 56 points.

Results go to ``bench/results/backfill.json``; the bucket is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from scantrail.contract import TemperatureReading
from scantrail.settings import InfluxSettings
from sinks.backfill import BackfillTask, run_backfill
from sinks.lines import temperature_line

RESULTS = Path(__file__).resolve().parent / "results" / "backfill.json"
TZ = ZoneInfo("Asia/Shanghai")
FIRST_DAY = date(2020, 2, 1)
DAYS, RESIDENTS, KIOSKS, PER_DAY = 14, 10_000, 40, 4


def fill(client: InfluxDBClient, bucket: str) -> int:
    """Write the district's 14 days; returns the number of points."""
    rng = random.Random(2020)
    write = client.write_api(write_options=SYNCHRONOUS)
    lines: list[str] = []
    n = 0
    for d in range(DAYS):
        midnight = datetime(2020, 2, 1, tzinfo=TZ) + timedelta(days=d)
        for person in range(RESIDENTS):
            home = person % KIOSKS
            for _ in range(PER_DAY):
                kiosk = home if rng.random() < 0.85 else rng.randrange(KIOSKS)
                reading = TemperatureReading(
                    event_id=f"kiosk-{kiosk:03d}-t{n:09d}",
                    kiosk_id=f"kiosk-{kiosk:03d}",
                    site_id=f"site-{kiosk // 2:03d}",
                    measured_at=midnight
                    + timedelta(seconds=rng.randrange(6 * 3600, 22 * 3600))
                    + timedelta(microseconds=rng.randrange(1_000_000)),
                    celsius=round(rng.gauss(36.5, 0.3), 2),
                    method="forehead_ir",
                    person_id=f"p-{person:06d}",
                    ambient_c=round(rng.uniform(-2.0, 6.0), 1),
                )
                lines.append(temperature_line(reading))
                n += 1
                if len(lines) == 5000:
                    write.write(bucket=bucket, record=lines)
                    lines = []
    if lines:
        write.write(bucket=bucket, record=lines)
    return n


def measure(client: InfluxDBClient, bucket: str, persons: int) -> dict[str, Any]:
    api = client.query_api()

    def query(flux: str) -> list[dict[str, Any]]:
        return [r.values for t in api.query(flux) for r in t.records]

    stop = FIRST_DAY + timedelta(days=DAYS)
    tasks = [BackfillTask(f"p-{(i * 97) % RESIDENTS:06d}", FIRST_DAY, stop) for i in range(persons)]
    best: dict[str, Any] = {}
    for _ in range(2):
        t0 = time.perf_counter()
        result = run_backfill(tasks, bucket, TZ, query)
        seconds = time.perf_counter() - t0
        if result.queries and len(result.lines) != persons * DAYS * PER_DAY:
            raise SystemExit(f"{persons} persons: {len(result.lines)} lines, expected 56 each")
        if not best or seconds < best["seconds"]:
            best = {
                "persons": persons,
                "seconds": round(seconds, 3),
                "queries": result.queries,
                "points": len(result.lines),
                "ms_per_point": round(seconds * 1000 / max(len(result.lines), 1), 2),
            }
    print(f"  {persons:4d} persons: {best}", flush=True)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    settings = InfluxSettings()
    bucket = f"bench_backfill_{uuid.uuid4().hex[:8]}"
    with InfluxDBClient(
        url=settings.url,
        token=settings.token.get_secret_value(),
        org=settings.org,
        timeout=300_000,
        enable_gzip=True,
    ) as client:
        buckets = client.buckets_api()
        created = buckets.create_bucket(bucket_name=bucket, org=settings.org)
        try:
            t0 = time.perf_counter()
            n = fill(client, bucket)
            print(f"wrote {n:,} points in {time.perf_counter() - t0:.1f} s", flush=True)
            runs = [measure(client, bucket, k) for k in (1, 10, 50, 100)]
        finally:
            buckets.delete_bucket(created)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "points_in_window": n,
        "data": f"{RESIDENTS} residents x {PER_DAY}/day x {DAYS} days, {KIOSKS} kiosks",
        "runs": runs,
        "load_avg_at_end": os.getloadavg(),
        "note": "timings vary run to run: see the load averages",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Bench: points per second the InfluxDB sink writes, Kafka to InfluxDB, end to end.

Run with ``make bench-sink`` (``.venv/bin/python bench/bench_sink.py``), or
``--events 50000`` for a quick run. Needs the services ``make up`` starts.

1. N temperature readings (deterministic, seeded) are published to the
   temperatures topic of a fresh namespace (not timed).
2. The ceiling: influxdb-client writes exactly the lines the sink would write
   (``sinks.lines.temperature_line``), synchronous API, batches of 5000, with
   the sink's own client options (gzip as ``InfluxSettings.use_gzip`` decides:
   off for a loopback server), into a fresh bucket. Only the writes are timed.
   For scale, the same lines are also written by two writer threads at once
   (the server's headroom: what InfluxDB here takes when one client is not
   the limit).
3. The sink: ``InfluxSink`` runs in-process with a fresh consumer group, state
   file and bucket until its stats say N points are stored (offsets committed
   after each write, as in production). Timed from the first batch handed to
   the sink to the last acknowledged write; the time to join the group before
   that is reported separately.
4. Both buckets are then counted with Flux (the figures only count if the sink
   stored every point exactly once).

Results go to ``bench/results/sink.json``. The machine is shared (2 cores, other
engineers' tests running), so the figures are noisy: compare the ratio, which
is measured in the same run, more than the absolute rates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from kafka import KafkaProducer

from scantrail import contract
from scantrail.broker import drop_namespaces, ensure_topics
from scantrail.settings import InfluxSettings, KafkaSettings
from sinks.influx import BATCH_LINES, InfluxSink
from sinks.lines import temperature_line

RESULTS = Path(__file__).resolve().parent / "results" / "sink.json"
START = datetime(2020, 2, 10, 0, 0, tzinfo=UTC)
TARGET_RATE = 50_000
TARGET_RATIO = 0.5


def make_events(n: int, kiosks: int = 40, residents: int = 20_000) -> list[bytes]:
    """N encoded temperature readings over a day, spread over kiosks and residents."""
    import random

    rng = random.Random(42)
    step_us = int(24 * 3600 * 1_000_000 / max(n, 1))
    out = []
    for i in range(n):
        kiosk = i % kiosks
        at = START + timedelta(microseconds=i * step_us)
        reading = {
            "schema": "temperature/1",
            "event_id": f"kiosk-{kiosk:03d}-t{i:09d}",
            "kiosk_id": f"kiosk-{kiosk:03d}",
            "site_id": f"site-{kiosk // 2:03d}",
            "measured_at": at.isoformat(),
            "celsius": round(rng.gauss(36.5, 0.3), 2),
            "method": "forehead_ir",
            "person_id": f"p-1-{rng.randrange(residents):06d}",
            "scan_event_id": f"kiosk-{kiosk:03d}-s{i:09d}",
            "ambient_c": round(rng.uniform(-2.0, 6.0), 1),
        }
        out.append(json.dumps(reading, separators=(",", ":")).encode())
    return out


def publish(kafka: KafkaSettings, values: list[bytes]) -> float:
    producer = KafkaProducer(
        bootstrap_servers=kafka.servers,
        acks="all",
        linger_ms=50,
        batch_size=1024 * 1024,
        compression_type="gzip",
        max_request_size=8 * 1024 * 1024,
    )
    topic = kafka.topic(contract.TEMPERATURES)
    t0 = time.perf_counter()
    for i, value in enumerate(values):
        producer.send(topic, key=f"kiosk-{i % 40:03d}".encode(), value=value)
        if i and i % 100_000 == 0:
            print(f"  published {i:,}", flush=True)
    producer.flush()
    producer.close()
    return time.perf_counter() - t0


def count_points(client: InfluxDBClient, bucket: str) -> int:
    flux = (
        f'from(bucket: "{bucket}") |> range(start: 2020-02-09T00:00:00Z, '
        "stop: 2020-02-12T00:00:00Z) "
        '|> filter(fn: (r) => r._measurement == "temperature" and r._field == "celsius") '
        "|> group() |> count()"
    )
    tables = client.query_api().query(flux)
    return sum(int(r.get_value()) for t in tables for r in t.records)


def ceiling(influx: InfluxSettings, bucket: str, lines: list[str], writers: int = 1) -> float:
    """Seconds for influxdb-client to write the lines directly, 5000 per request.

    The client options are the sink's (``InfluxWriter``): synchronous writes,
    gzip as the settings decide. ``writers`` > 1 sends that many requests at
    once, one client per thread.
    """
    clients = [
        InfluxDBClient(
            url=influx.url,
            token=influx.token.get_secret_value(),
            org=influx.org,
            timeout=60_000,
            enable_gzip=influx.use_gzip,
        )
        for _ in range(writers)
    ]
    try:
        apis = [client.write_api(write_options=SYNCHRONOUS) for client in clients]
        chunks = [lines[i : i + BATCH_LINES] for i in range(0, len(lines), BATCH_LINES)]

        def write(job: tuple[int, list[str]]) -> None:
            apis[job[0] % writers].write(bucket=bucket, record=job[1])

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=writers) as pool:
            list(pool.map(write, enumerate(chunks)))
        return time.perf_counter() - t0
    finally:
        for client in clients:
            client.close()


def run_sink(kafka: KafkaSettings, influx: InfluxSettings, n: int, state: Path) -> dict[str, Any]:
    t_created = time.perf_counter()
    sink = InfluxSink(kafka, influx, group_id="bench", state_path=state / "sink.db")
    marks: dict[str, float] = {}
    last_print = [time.perf_counter()]

    def on_batch() -> None:
        now = time.perf_counter()
        done = sink.stats.counts["points"]
        if now - last_print[0] >= 2.0:
            rate = done / (now - marks["first"]) if "first" in marks else 0.0
            print(f"  sink: {done:,}/{n:,} points ({rate:,.0f}/s)", flush=True)
            last_print[0] = now
        if done >= n:
            marks["done"] = now
            sink.stop()

    handle = sink._handle

    def timed_handle(batch: Any) -> None:
        marks.setdefault("first", time.perf_counter())
        handle(batch)

    sink._handle = timed_handle  # type: ignore[method-assign]
    sink.run(idle_exit_s=60, on_batch=on_batch)
    if "done" not in marks:
        raise SystemExit(f"the sink stopped after {sink.stats.counts['points']} of {n} points")
    return {
        "seconds": marks["done"] - marks["first"],
        "join_seconds": marks["first"] - t_created,
        "stats": sink.stats.as_dict(),
    }


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith("model name"):
                cpu = row.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_avg_at_start": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the sink's consumer thread and print where its time goes (slower)",
    )
    args = parser.parse_args()
    n = args.events

    info = machine()
    ns = f"bench{uuid.uuid4().hex[:8]}."
    kafka = KafkaSettings().model_copy(update={"namespace": ns})
    base = InfluxSettings()
    bucket = f"bench_{uuid.uuid4().hex[:8]}"
    influx = base.model_copy(update={"bucket": f"{bucket}_sink", "watched_bucket": f"{bucket}_w"})
    client = InfluxDBClient(url=base.url, token=base.token.get_secret_value(), org=base.org)
    buckets = client.buckets_api()
    direct = buckets.create_bucket(bucket_name=f"{bucket}_direct", org=base.org)
    headroom = buckets.create_bucket(bucket_name=f"{bucket}_two", org=base.org)

    print(f"bench-sink: {n:,} temperature readings, namespace {ns}", flush=True)
    ensure_topics(kafka)
    try:
        values = make_events(n)
        pub_s = publish(kafka, values)
        print(f"published {n:,} in {pub_s:.1f} s", flush=True)

        lines = [
            temperature_line(contract.decode_as(v, contract.TemperatureReading)) for v in values
        ]
        del values
        gzip = "gzip" if base.use_gzip else "no gzip"
        print(f"ceiling: influxdb-client, synchronous, 5000 lines per request, {gzip}", flush=True)
        direct_s = ceiling(base, direct.name, lines)
        direct_rate = n / direct_s
        print(f"  {n:,} points in {direct_s:.1f} s = {direct_rate:,.0f} points/s", flush=True)
        two_s = ceiling(base, headroom.name, lines, writers=2)
        two_rate = n / two_s
        print(f"  two writer threads: {two_rate:,.0f} points/s (the server's headroom)", flush=True)

        print("sink: InfluxSink from Kafka, commit after write", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            if args.profile:
                import cProfile
                import pstats

                profiler = cProfile.Profile()
                sink = profiler.runcall(run_sink, kafka, influx, n, Path(tmp))
                pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            else:
                sink = run_sink(kafka, influx, n, Path(tmp))
        sink_rate = n / sink["seconds"]
        print(f"  {n:,} points in {sink['seconds']:.1f} s = {sink_rate:,.0f} points/s", flush=True)

        time.sleep(1)
        stored_sink = count_points(client, influx.bucket)
        stored_direct = count_points(client, direct.name)
        stored_two = count_points(client, headroom.name)
        ratio = sink_rate / direct_rate
        result = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "events": n,
            "batch_lines": BATCH_LINES,
            "sink": {
                "points_per_s": round(sink_rate),
                "seconds": round(sink["seconds"], 2),
                "join_seconds": round(sink["join_seconds"], 2),
                "points_per_s_incl_join": round(n / (sink["seconds"] + sink["join_seconds"])),
                "stored": stored_sink,
                "stats": sink["stats"],
            },
            "ceiling_influxdb_client": {
                "points_per_s": round(direct_rate),
                "seconds": round(direct_s, 2),
                "stored": stored_direct,
                "gzip": base.use_gzip,
            },
            "influxdb_two_writers": {
                "points_per_s": round(two_rate),
                "seconds": round(two_s, 2),
                "stored": stored_two,
            },
            "ratio": round(ratio, 3),
            "targets": {
                "points_per_s": TARGET_RATE,
                "ratio": TARGET_RATIO,
                "met": sink_rate >= TARGET_RATE and ratio >= TARGET_RATIO,
            },
            "exact": stored_sink == n and stored_direct == n and stored_two == n,
            "machine": {**info, "load_avg_at_end": os.getloadavg()},
            "note": "timings vary run to run: compare the ratio, and see the load averages",
        }
        if args.profile:  # the profiler slows the sink: its figures are not results
            args.out = Path(tempfile.gettempdir()) / "bench-sink-profiled.json"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(
            f"\nsink {sink_rate:,.0f} points/s vs influxdb-client {direct_rate:,.0f} points/s "
            f"(ratio {ratio:.2f}); stored {stored_sink:,}/{n:,} and {stored_direct:,}/{n:,}; "
            f"targets (>= {TARGET_RATE:,}/s, >= {TARGET_RATIO}) "
            f"{'met' if result['targets']['met'] else 'NOT met'}; load {os.getloadavg()[0]:.1f}"
        )
        print(f"wrote {args.out}")
    finally:
        for b in (direct.name, headroom.name, influx.bucket, influx.watched_bucket):
            found = buckets.find_bucket_by_name(b)
            if found is not None:
                buckets.delete_bucket(found)
        client.close()
        drop_namespaces(kafka, [kafka.namespace])  # faust's own topics too


if __name__ == "__main__":
    main()

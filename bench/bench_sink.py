"""Bench: points per second the InfluxDB sink writes, Kafka to InfluxDB, end to end.

Run with ``make bench-sink`` (``.venv/bin/python bench/bench_sink.py``), or
``--events 50000`` for a quick run. Needs the services ``make up`` starts.

1. N temperature readings (deterministic, seeded) are published to the
   temperatures topic of a fresh namespace (not timed).
2. ``--rounds`` rounds (3 by default), each two runs back to back, each into
   fresh buckets:

   * the ceiling: influxdb-client writes exactly the lines the sink would
     write (``sinks.lines.temperature_line``), synchronous API, batches of
     5000, with the sink's own client options (gzip as
     ``InfluxSettings.use_gzip`` decides: off for a loopback server). Only the
     writes are timed;
   * the sink: ``InfluxSink`` runs in-process with a fresh consumer group and
     state file until its stats say N points are stored (offsets committed
     after each write, as in production). Timed from the first batch handed
     to the sink to the last acknowledged write; the time to join the group
     before that is reported separately.

   Every bucket is counted with Flux: the figures only count if every point
   is stored exactly once. The figures are the medians over the rounds (one
   run of five seconds moved between 44,000 and 58,000 points/s here).
3. For scale, the same lines are written by two writer threads at once (the
   server's headroom: what InfluxDB here takes when one client is not the
   limit).

Results go to ``bench/results/sink.json``. The machine is shared (2 cores, other
engineers' tests running), so the figures are noisy: compare the ratio, which
is measured in the same run, more than the absolute rates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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


def run_sink(
    kafka: KafkaSettings, influx: InfluxSettings, n: int, state: Path, group: str = "bench"
) -> dict[str, Any]:
    t_created = time.perf_counter()
    sink = InfluxSink(kafka, influx, group_id=group, state_path=state / "sink.db")
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


def one_round(
    r: int, kafka: KafkaSettings, base: InfluxSettings, lines: list[str], args: Any, made: list[str]
) -> dict[str, Any]:
    """One ceiling write and one sink run, back to back, each into fresh buckets."""
    n = len(lines)
    tag = f"bench_{uuid.uuid4().hex[:8]}"
    client = InfluxDBClient(url=base.url, token=base.token.get_secret_value(), org=base.org)
    try:
        buckets = client.buckets_api()
        direct = buckets.create_bucket(bucket_name=f"{tag}_direct", org=base.org).name
        influx = base.model_copy(update={"bucket": f"{tag}_sink", "watched_bucket": f"{tag}_w"})
        made += [direct, influx.bucket, influx.watched_bucket]
        direct_s = ceiling(base, direct, lines)
        print(f"  round {r}: influxdb-client {n / direct_s:,.0f} points/s", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            if args.profile:
                import cProfile
                import pstats

                profiler = cProfile.Profile()
                sink = profiler.runcall(run_sink, kafka, influx, n, Path(tmp), f"bench-{r}")
                pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            else:
                sink = run_sink(kafka, influx, n, Path(tmp), f"bench-{r}")
        print(f"  round {r}: sink {n / sink['seconds']:,.0f} points/s", flush=True)
        time.sleep(1)
        return {
            "sink_points_per_s": round(n / sink["seconds"]),
            "sink_seconds": round(sink["seconds"], 2),
            "sink_join_seconds": round(sink["join_seconds"], 2),
            "sink_stored": count_points(client, influx.bucket),
            "sink_stats": sink["stats"],
            "ceiling_points_per_s": round(n / direct_s),
            "ceiling_stored": count_points(client, direct),
            "ratio": round(direct_s / sink["seconds"], 3),
            "load_avg": os.getloadavg(),
        }
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="ceiling + sink pairs, back to back; the medians are the figures (default 3)",
    )
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
    client = InfluxDBClient(url=base.url, token=base.token.get_secret_value(), org=base.org)
    buckets = client.buckets_api()
    made: list[str] = []

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
        print("sink: InfluxSink from Kafka (a fresh group each round), commit after write")
        rounds = [one_round(r, kafka, base, lines, args, made) for r in range(args.rounds)]

        two = f"bench_{uuid.uuid4().hex[:8]}_two"
        made.append(buckets.create_bucket(bucket_name=two, org=base.org).name)
        two_s = ceiling(base, two, lines, writers=2)
        print(f"two writer threads: {n / two_s:,.0f} points/s (the server's headroom)", flush=True)
        time.sleep(1)
        stored_two = count_points(client, two)

        sink_rate = statistics.median(r["sink_points_per_s"] for r in rounds)
        direct_rate = statistics.median(r["ceiling_points_per_s"] for r in rounds)
        ratio = statistics.median(r["ratio"] for r in rounds)
        exact = all(r["sink_stored"] == n and r["ceiling_stored"] == n for r in rounds)
        result = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "events": n,
            "batch_lines": BATCH_LINES,
            "rounds": rounds,
            "sink": {"points_per_s_median": round(sink_rate)},
            "ceiling_influxdb_client": {
                "points_per_s_median": round(direct_rate),
                "gzip": base.use_gzip,
            },
            "influxdb_two_writers": {
                "points_per_s": round(n / two_s),
                "seconds": round(two_s, 2),
                "stored": stored_two,
            },
            "ratio_median": round(ratio, 3),
            "targets": {
                "points_per_s": TARGET_RATE,
                "ratio": TARGET_RATIO,
                "met": sink_rate >= TARGET_RATE and ratio >= TARGET_RATIO,
            },
            "exact": exact and stored_two == n,
            "machine": {**info, "load_avg_at_end": os.getloadavg()},
            "note": "medians of the rounds; each round is a ceiling and a sink run back to back",
        }
        if args.profile:  # the profiler slows the sink: its figures are not results
            args.out = Path(tempfile.gettempdir()) / "bench-sink-profiled.json"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        each = ", ".join(f"{r['sink_points_per_s']:,}" for r in rounds)
        print(
            f"\nsink {sink_rate:,.0f} points/s (median of {each}) vs influxdb-client "
            f"{direct_rate:,.0f} points/s (ratio {ratio:.2f}); every point stored exactly once: "
            f"{result['exact']}; targets (>= {TARGET_RATE:,}/s, >= {TARGET_RATIO}) "
            f"{'met' if result['targets']['met'] else 'NOT met'}; load {os.getloadavg()[0]:.1f}"
        )
        print(f"wrote {args.out}")
    finally:
        for b in made:
            found = buckets.find_bucket_by_name(b)
            if found is not None:
                buckets.delete_bucket(found)
        client.close()
        drop_namespaces(kafka, [kafka.namespace])  # faust's own topics too


if __name__ == "__main__":
    main()

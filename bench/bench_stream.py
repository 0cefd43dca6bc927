"""Bench: the live worker on the real broker, next to a bare consumer, and produce→alert latency.

Run with ``make bench-stream`` (``.venv/bin/python bench/bench_stream.py``), or
``--temperatures 20000`` for a quick run. Each phase uses a fresh topic
namespace, a fresh faust app id and a fresh data dir; the namespace's topics
are deleted at the end unless ``--keep-topics``.

Measured, and written to ``bench/results/stream.json``:

* throughput — N temperature readings (and the scans they pair with, from
  :func:`ingest.simulate.simulate_events`) are pre-loaded, then
  ``scantrail worker`` starts as a subprocess; its ``/stats`` counts are polled
  until ``temperature`` reaches N (and then until the consumer group has
  committed past everything its inputs, internal topics included, held:
  :meth:`Worker.drained`). In the same run a bare kafka-python consumer
  that only runs :func:`scantrail.contract.decode` over the same topic gives
  the ceiling; the ratio is reported. The worker phase is bounded by
  ``--timeout``: if it has not finished, the rate so far is reported.
* latency — a fresh worker, then ``--rate`` readings/s for ``--seconds``
  (paced, ``measured_at`` = now). A share are hot readings of nobody
  (``fever_unidentified``, raised by the kiosk shard at once) and a share are
  hot readings of a new person (``fever_suspected``, raised by the person shard
  after the repartition and the watermark reorder). Each alert's evidence is
  matched to the reading's send time; latency = alert consumed − send called,
  both on this process's monotonic clock.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient  # noqa: E402

from ingest.simulate import GateWorld, simulate_events  # noqa: E402
from scantrail import contract  # noqa: E402
from scantrail.broker import drop_namespaces, ensure_topics  # noqa: E402
from scantrail.settings import KafkaSettings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "stream.json"
START = datetime(2020, 2, 10, tzinfo=UTC)
TARGETS = {"events_per_second": 20_000, "share_of_ceiling": 0.5, "p99_ms_at_2000_per_s": 500}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fresh_settings(base: KafkaSettings, tag: str) -> KafkaSettings:
    settings = base.model_copy(update={"namespace": f"bench{tag}{uuid.uuid4().hex[:8]}."})
    ensure_topics(settings)
    return settings


def delete_namespace(settings: KafkaSettings) -> None:
    try:
        drop_namespaces(settings, [settings.namespace])
    except Exception as exc:  # cleanup must not hide the figures
        log(f"could not delete topics of {settings.namespace}: {exc}")


# --- the worker subprocess ------------------------------------------------------------------


class Worker:
    """``scantrail worker`` in a subprocess with its own app id, port and data dir."""

    def __init__(
        self,
        settings: KafkaSettings,
        logs: Path,
        profile: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.app_id = f"{settings.namespace}worker"
        self.data_dir = Path(tempfile.mkdtemp(prefix="scantrail-bench-"))
        self.port = _free_port()
        self.log_path = logs / f"{self.app_id}.log"
        env = dict(os.environ)
        env.update(
            SCANTRAIL_KAFKA_BOOTSTRAP=settings.bootstrap,
            SCANTRAIL_KAFKA_NAMESPACE=settings.namespace,
            SCANTRAIL_KAFKA_PARTITIONS=str(settings.partitions),
            SCANTRAIL_WORKER_APP_ID=self.app_id,
            SCANTRAIL_WORKER_WEB_PORT=str(self.port),
            SCANTRAIL_WORKER_DATA_DIR=str(self.data_dir),
        )
        env.update(extra_env or {})
        prefix = [sys.executable]
        if profile is not None:
            prefix += ["-m", "cProfile", "-o", str(profile)]
        # The default loglevel (info): with "warning" faust keeps its terminal spinner,
        # which sets the root logger to DEBUG and costs ~10% CPU in aiokafka debug records.
        cmd = [*prefix, "-m", "scantrail.cli", "worker"]
        self.log_file = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=self.log_file, stderr=subprocess.STDOUT
        )
        self.started = time.monotonic()

    def stats(self) -> dict[str, int] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=2) as r:
                return dict(json.loads(r.read()))
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _inputs(self) -> set[str]:
        return {
            self.settings.topic(contract.TEMPERATURES),
            self.settings.topic(contract.SCANS),
            self.settings.topic(contract.QUARANTINE),
            f"{self.app_id}-by-person",
            f"{self.app_id}-by-site",
            f"{self.app_id}-visits-by-site",
        }

    def offsets(self) -> tuple[dict[Any, int], dict[Any, int]] | None:
        """(end offsets, committed offsets) of every topic this app's group reads."""
        admin = KafkaAdminClient(bootstrap_servers=self.settings.servers, request_timeout_ms=10000)
        consumer = KafkaConsumer(bootstrap_servers=self.settings.servers)
        try:
            if hasattr(admin, "list_group_offsets"):  # kafka-python 3.x
                committed = admin.list_group_offsets(self.app_id)[self.app_id]
            else:
                committed = admin.list_consumer_group_offsets(self.app_id)
            tps = [
                TopicPartition(t, p)
                for t in self._inputs()
                for p in (consumer.partitions_for_topic(t) or set())
            ]
            ends = consumer.end_offsets(tps)
            done = {
                tp: (c.offset if (c := committed.get(tp)) is not None and c.offset >= 0 else 0)
                for tp in tps
            }
            return dict(ends), done
        except Exception as exc:
            log(f"  offsets unknown: {exc!r}")
            return None
        finally:
            consumer.close()
            admin.close()

    def drained(self, deadline: float, rounds: int = 3) -> bool:
        """Wait until the group has committed past everything its inputs held.

        The group's lag never reaches zero while it runs: every stage keeps
        sending watermark ticks (idle sources follow the clock), and faust
        commits every few seconds. So: take the end offsets, wait until the
        committed offsets reach them, and repeat (a stage forwards records
        to the next after the first look), once per stage.
        """
        for _ in range(rounds):
            looked = self.offsets()
            if looked is None:
                return False
            target = looked[0]
            while True:
                now = self.offsets()
                if now is not None:
                    behind = sum(max(0, end - now[1].get(tp, 0)) for tp, end in target.items())
                    if behind == 0:
                        break
                    log(f"  all temperatures counted; still to commit: {behind}")
                if time.monotonic() >= deadline or not self.alive():
                    return False
                time.sleep(1)
        return True

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log_file.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- throughput -----------------------------------------------------------------------------


def day_of_gates(n: int, kiosks: int, scan_rate: float, seed: int) -> Iterator[contract.Event]:
    """Quarantine orders, then scans and readings until ``n`` readings (event-time order)."""
    world = GateWorld(kiosks=kiosks, residents=max(200, n // 20), seed=seed)
    span = timedelta(seconds=1.3 * n / scan_rate)
    readings = 0
    for event in simulate_events(world, START, scan_rate, span):
        yield event
        if isinstance(event, contract.TemperatureReading):
            readings += 1
            if readings >= n:
                return


def preload(settings: KafkaSettings, events: Iterator[contract.Event]) -> dict[str, int]:
    producer = KafkaProducer(
        bootstrap_servers=settings.servers,
        acks="all",
        linger_ms=20,
        batch_size=256 * 1024,
        compression_type="gzip",  # as the kiosk publisher sends
    )
    counts: dict[str, int] = {}
    last = time.monotonic()
    for event in events:
        producer.send(settings.topic(event.TOPIC), key=event.key(), value=contract.encode(event))
        counts[event.TOPIC] = counts.get(event.TOPIC, 0) + 1
        if time.monotonic() - last > 5:
            last = time.monotonic()
            log(f"  pre-loaded {sum(counts.values()):,} events")
    producer.flush(timeout=300)
    producer.close()
    return counts


def headline_rate(worker: dict[str, Any]) -> int:
    """Readings/s through the whole worker; the first stage's rate only if nothing better."""
    for key in ("events_per_second_end_to_end", "events_per_second_end_to_end_at_most"):
        if key in worker:
            return int(worker[key])
    return int(worker.get("events_per_second_steady") or worker["events_per_second_from_start"])


def run_worker_until(worker: Worker, n: int, timeout_s: float) -> dict[str, Any]:
    """Poll /stats until ``n`` temperatures are counted, then until the group has no lag."""
    deadline = worker.started + timeout_s
    first_seen: tuple[float, int] | None = None
    samples: list[tuple[float, int]] = []
    last_print = 0.0
    done_at: float | None = None
    count = 0
    stats: dict[str, int] = {}
    while time.monotonic() < deadline and worker.alive():
        time.sleep(0.5)
        got = worker.stats()
        if got is None:
            continue
        stats = got
        now = time.monotonic()
        count = stats.get("temperature", 0)
        samples.append((now, count))
        if first_seen is None and count > 0:
            first_seen = (now, count)
        if now - last_print >= 10:
            last_print = now
            recent = [s for s in samples if s[0] >= now - 10]
            rate = (recent[-1][1] - recent[0][1]) / max(1e-9, recent[-1][0] - recent[0][0])
            log(
                f"  worker: {count:,}/{n:,} temperatures, {rate:,.0f}/s over the last 10 s; {stats}"
            )
        if count >= n:
            done_at = now
            break
    drained_at: float | None = None
    if done_at is not None:
        if worker.drained(deadline):
            drained_at = time.monotonic()
        stats = worker.stats() or stats  # the later stages' counts, now that they caught up
    end = done_at or time.monotonic()
    out: dict[str, Any] = {
        "completed": done_at is not None,
        "temperatures_processed": count,
        "stats": stats,
        "seconds_from_start": round(end - worker.started, 2),
        "events_per_second_from_start": round(count / (end - worker.started)),
    }
    if first_seen is not None and end > first_seen[0]:
        out["seconds_from_first_event"] = round(end - first_seen[0], 2)
        out["events_per_second_steady"] = round((count - first_seen[1]) / (end - first_seen[0]))
        # Rate per 10 s slice: shows whether per-event cost grows with state size.
        slices = []
        t0 = first_seen[0]
        i = 0
        while t0 + 10 <= end:
            j = i
            while j < len(samples) and samples[j][0] < t0 + 10:
                j += 1
            if j >= len(samples):
                break
            a, b = samples[i], samples[j]
            slices.append(round((b[1] - a[1]) / (b[0] - a[0])))
            t0, i = b[0], j
        out["rate_per_10s_slice"] = slices
    # The headline: readings through every stage (kiosk, person and site shards,
    # trails), from the first counted to the last commit. "temperature" in /stats
    # counts only the first stage, which runs far ahead of the others in a backlog.
    out["drained"] = drained_at is not None
    if drained_at is not None:
        out["seconds_until_no_lag"] = round(drained_at - worker.started, 2)
        if first_seen is not None:
            out["events_per_second_end_to_end"] = round(count / (drained_at - first_seen[0]))
    elif done_at is not None and first_seen is not None:
        # Not drained before the timeout: the true rate is below this bound.
        gave_up = time.monotonic()
        out["events_per_second_end_to_end_at_most"] = round(count / (gave_up - first_seen[0]))
    if not worker.alive():
        out["worker_exit_code"] = worker.proc.returncode
    return out


def bare_consumer(settings: KafkaSettings, n: int, timeout_s: float) -> dict[str, Any]:
    """The ceiling: kafka-python fetch + contract.decode of every message, nothing else."""
    consumer = KafkaConsumer(
        settings.topic(contract.TEMPERATURES),
        bootstrap_servers=settings.servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    count = 0
    start = time.monotonic()
    last = start
    try:
        while count < n and time.monotonic() - start < timeout_s:
            batches = consumer.poll(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                for record in records:
                    contract.decode(record.value)
                    count += 1
            if time.monotonic() - last > 5:
                last = time.monotonic()
                log(f"  bare consumer: {count:,}/{n:,}")
    finally:
        consumer.close()
    seconds = time.monotonic() - start
    return {
        "completed": count >= n,
        "temperatures": count,
        "seconds": round(seconds, 2),
        "events_per_second": round(count / seconds),
    }


def faust_floor(
    settings: KafkaSettings, n: int, mode: str, timeout_s: float, logs: Path
) -> dict[str, Any]:
    """The framework's limit: a faust agent that only decodes, or decodes and writes a row."""
    out = logs / f"faust-floor-{mode}.json"
    out.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "faust_floor.py"),
        settings.bootstrap,
        settings.topic(contract.TEMPERATURES),
        str(settings.partitions),
        str(n),
        mode,
        str(out),
    ]
    with (logs / f"faust-floor-{mode}.log").open("ab") as log_file:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if not out.exists():
        return {"completed": False, "mode": mode, "timeout_s": timeout_s}
    return {"completed": True, **json.loads(out.read_text())}


def throughput(base: KafkaSettings, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    settings = fresh_settings(base, "t")
    log(f"throughput: namespace {settings.namespace}, generating and pre-loading")
    try:
        t = time.monotonic()
        counts = preload(
            settings, day_of_gates(args.temperatures, args.kiosks, args.scan_rate, args.seed)
        )
        log(f"  pre-loaded {counts} in {time.monotonic() - t:.1f} s")
        n = counts.get(contract.TEMPERATURES, 0)
        log("throughput: bare consumer (fetch + contract.decode)")
        ceiling = bare_consumer(settings, n, args.timeout)
        log(f"  ceiling: {ceiling['events_per_second']:,} temperatures/s")
        floors = {}
        for mode in () if args.skip_floors else ("decode", "write"):
            log(f"throughput: faust floor, {mode} (a faust agent, no rules)")
            floors[mode] = faust_floor(settings, n, mode, args.timeout, logs)
            log(f"  {mode}: {floors[mode].get('events_per_second', 'not finished')}/s")
        floor = floors.get("decode", {"completed": False})
        log(f"throughput: scantrail worker (timeout {args.timeout:.0f} s)")
        profile = logs / "worker.prof" if args.profile else None
        worker = Worker(settings, logs, profile=profile, extra_env=args.worker_env)
        try:
            result = run_worker_until(worker, n, args.timeout)
        finally:
            tail = worker.tail()
            worker.stop()
        if not result["completed"]:
            result["log_tail"] = tail[-1500:]
        if profile is not None:
            result["profile"] = str(profile)
        rate = headline_rate(result)
        # The worker also judged the scans (and indexed their trails) in that time.
        inputs = sum(counts.values())
        result["all_inputs_per_second_end_to_end"] = round(rate * inputs / max(1, n))
        return {
            "namespace": settings.namespace,
            "preloaded": counts,
            "kiosks": args.kiosks,
            "sites": max(1, args.kiosks // 2),
            "scan_rate_event_time_per_s": args.scan_rate,
            "worker": result,
            "bare_consumer": ceiling,
            "share_of_ceiling": round(rate / ceiling["events_per_second"], 4),
            "faust_floor": floor,
            "faust_floor_one_write_per_event": floors.get("write"),
            "share_of_faust_floor": (
                round(rate / floor["events_per_second"], 4) if floor["completed"] else None
            ),
        }
    finally:
        if not args.keep_topics:
            delete_namespace(settings)


# --- latency --------------------------------------------------------------------------------


class AlertListener(threading.Thread):
    """Consumes the alerts topic; records when each evidence id's alert arrived."""

    def __init__(self, settings: KafkaSettings) -> None:
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(
            settings.topic(contract.ALERTS),
            bootstrap_servers=settings.servers,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
        )
        self.arrived: dict[tuple[str, str], float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            batches = self.consumer.poll(timeout_ms=100)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    alert = json.loads(record.value)
                    for evidence in alert.get("evidence", []):
                        self.arrived.setdefault((alert["kind"], evidence), now)
        self.consumer.close()


def latency(base: KafkaSettings, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    settings = fresh_settings(base, "l")
    rng = random.Random(args.seed)
    listener = AlertListener(settings)
    listener.start()
    worker = Worker(settings, logs, extra_env=args.worker_env)
    producer = KafkaProducer(
        bootstrap_servers=settings.servers, acks="all", linger_ms=args.linger_ms
    )
    topic = settings.topic(contract.TEMPERATURES)
    kiosks = [f"kiosk-{k:04d}" for k in range(args.latency_kiosks)]
    residents = [f"p-bench-{r:06d}" for r in range(args.latency_kiosks * 20)]
    sent: dict[tuple[str, str], float] = {}

    def reading(event_id: str, kiosk: str, celsius: float, person: str | None) -> bytes:
        return contract.encode(
            contract.TemperatureReading(
                event_id=event_id,
                kiosk_id=kiosk,
                site_id=f"site-{int(kiosk[-4:]) // 2:04d}",
                measured_at=datetime.now(UTC),
                celsius=celsius,
                method="forehead_ir",
                person_id=person,
            )
        )

    try:
        log(f"latency: namespace {settings.namespace}; waiting for the worker to answer")
        warm_deadline = time.monotonic() + 120
        i = 0
        while time.monotonic() < warm_deadline:
            # A hot reading of nobody on every kiosk partition until one alert comes back.
            i += 1
            for kiosk in kiosks[:8]:
                producer.send(
                    topic, key=kiosk.encode(), value=reading(f"warm-{i}-{kiosk}", kiosk, 38.5, None)
                )
            producer.flush()
            time.sleep(1)
            if any(kind == "fever_unidentified" for kind, _ in listener.arrived):
                break
        else:
            raise RuntimeError(f"worker gave no alert within 120 s:\n{worker.tail()}")
        log(
            f"  worker up after {time.monotonic() - worker.started:.1f} s; producing "
            f"{args.rate:,.0f}/s for {args.seconds:.0f} s"
        )
        total = int(args.rate * args.seconds)
        start = time.monotonic()
        last_print = start
        for seq in range(total):
            due = start + seq / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            kiosk = kiosks[seq % len(kiosks)]
            draw = rng.random()
            if draw < args.hot_share:
                kind, person, celsius = "fever_unidentified", None, 38.6
            elif draw < 2 * args.hot_share:
                kind, person, celsius = "fever_suspected", f"p-hot-{seq:08d}", 38.6
            else:
                kind, person, celsius = "", rng.choice(residents), round(rng.gauss(36.4, 0.2), 2)
            event_id = f"lat-{seq:08d}"
            value = reading(event_id, kiosk, celsius, person)
            at = time.monotonic()
            producer.send(topic, key=kiosk.encode(), value=value)
            if kind:
                sent[(kind, event_id)] = at
            now = time.monotonic()
            if now - last_print >= 5:
                last_print = now
                got = sum(1 for k in sent if k in listener.arrived)
                log(
                    f"  sent {seq + 1:,}/{total:,}, alerts back {got}/{len(sent)}; "
                    f"worker {worker.stats()}"
                )
        producer.flush()
        offered = total / (time.monotonic() - start)
        drain_deadline = time.monotonic() + args.drain
        while time.monotonic() < drain_deadline:
            missing = [k for k in sent if k not in listener.arrived]
            if not missing:
                break
            log(f"  waiting for {len(missing)} alerts")
            time.sleep(2)
        stats = worker.stats()
    finally:
        producer.close()
        listener.stopping.set()
        listener.join(timeout=10)
        worker.stop()
        if not args.keep_topics:
            delete_namespace(settings)

    def figures(kind: str) -> dict[str, Any]:
        lat = [
            listener.arrived[k] - t
            for k, t in sent.items()
            if k[0] == kind and k in listener.arrived
        ]
        expected = sum(1 for k in sent if k[0] == kind)
        out: dict[str, Any] = {"alerts_expected": expected, "alerts_matched": len(lat)}
        if lat:
            out.update(
                p50_ms=round(pct(lat, 0.5) * 1e3, 1),
                p99_ms=round(pct(lat, 0.99) * 1e3, 1),
                max_ms=round(max(lat) * 1e3, 1),
                mean_ms=round(statistics.mean(lat) * 1e3, 1),
            )
        return out

    return {
        "namespace": settings.namespace,
        "offered_per_second": round(offered),
        "seconds": args.seconds,
        "readings": total,
        "kiosks": args.latency_kiosks,
        "producer_linger_ms": args.linger_ms,
        "worker_stats_at_end": stats,
        "fever_unidentified": figures("fever_unidentified"),
        "fever_suspected": figures("fever_suspected"),
    }


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temperatures", type=int, default=200_000, help="N readings to pre-load")
    parser.add_argument("--kiosks", type=int, default=400, help="kiosks in the pre-loaded day")
    parser.add_argument("--scan-rate", type=float, default=50.0, help="scans/s of event time")
    parser.add_argument("--timeout", type=float, default=600.0, help="bound on the worker run, s")
    parser.add_argument("--rate", type=float, default=2000.0, help="latency: readings/s offered")
    parser.add_argument("--seconds", type=float, default=30.0, help="latency: how long")
    parser.add_argument("--latency-kiosks", type=int, default=400)
    parser.add_argument("--hot-share", type=float, default=0.01, help="share of each hot kind")
    parser.add_argument("--linger-ms", type=int, default=5, help="latency producer linger")
    parser.add_argument("--drain", type=float, default=60.0, help="latency: wait for stragglers")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--profile", action="store_true", help="run the throughput worker under cProfile"
    )
    parser.add_argument("--keep-topics", action="store_true")
    parser.add_argument("--skip-floors", action="store_true", help="development: no faust floors")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the worker, e.g. PRODUCER_LINGER=0.005 (faust reads it)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.worker_env = dict(item.split("=", 1) for item in args.worker_env)

    base = KafkaSettings()
    logs = Path(tempfile.mkdtemp(prefix="scantrail-bench-logs-"))
    log(f"worker logs in {logs}")
    figures: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": len(os.sched_getaffinity(0)),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "broker": base.bootstrap,
        "partitions": base.partitions,
        "targets": TARGETS,
        "worker_env": args.worker_env,
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "worker_env")},
    }
    if not args.skip_throughput:
        figures["throughput"] = throughput(base, args, logs)
    if not args.skip_latency:
        figures["latency"] = latency(base, args, logs)
    figures["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    met: dict[str, bool] = {}
    if "throughput" in figures:
        w = figures["throughput"]["worker"]
        rate = headline_rate(w)
        met["events_per_second"] = bool(w["drained"]) and rate >= TARGETS["events_per_second"]
        met["share_of_ceiling"] = figures["throughput"]["share_of_ceiling"] >= 0.5
    if "latency" in figures:
        # Met only at the target's load (a slower --rate measures, but cannot meet it),
        # and for both paths: the kiosk shard and the person shard behind the reorder.
        lat = figures["latency"]
        met["p99_ms_at_2000_per_s"] = lat["offered_per_second"] >= 0.95 * 2000 and all(
            lat[k]["alerts_matched"] == lat[k]["alerts_expected"]
            and lat[k].get("p99_ms", 1e9) < TARGETS["p99_ms_at_2000_per_s"]
            for k in ("fever_unidentified", "fever_suspected")
        )
    figures["targets_met"] = met
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    summarise(figures)
    log(f"wrote {args.out}")


def summarise(figures: dict[str, Any]) -> None:
    print()
    if "throughput" in figures:
        t = figures["throughput"]
        w, c = t["worker"], t["bare_consumer"]
        rate = headline_rate(w)
        if not w["completed"]:
            done = f" (NOT finished: {w['temperatures_processed']:,} done)"
        elif not w["drained"]:
            done = " at most (later stages not drained before the timeout)"
        else:
            done = " through every stage"
        first = w.get("events_per_second_steady", w["events_per_second_from_start"])
        print(f"worker        {rate:>9,} temperatures/s{done}")
        inputs = w.get("all_inputs_per_second_end_to_end")
        if inputs:
            print(f"              {inputs:>9,} events/s of every input (readings and scans)")
        print(f"first stage   {first:>9,} temperatures/s  (the kiosk shard alone)")
        print(f"bare consumer {c['events_per_second']:>9,} temperatures/s  (fetch + decode)")
        print(f"ratio         {t['share_of_ceiling']:>9.3f}   target >= 0.5, >= 20,000/s")
        floor = t.get("faust_floor", {})
        if floor.get("completed"):
            print(
                f"faust floor   {floor['events_per_second']:>9,} temperatures/s"
                f"  (decode only; the worker is {t['share_of_faust_floor']:.3f} of it)"
            )
        written = t.get("faust_floor_one_write_per_event", {})
        if written.get("completed"):
            print(
                f"  + 1 write   {written['events_per_second']:>9,} temperatures/s"
                "  (decode and one table row per record)"
            )
    if "latency" in figures:
        lat = figures["latency"]
        for kind in ("fever_unidentified", "fever_suspected"):
            f = lat[kind]
            print(
                f"{kind:<19} p50 {f.get('p50_ms', '-')} ms, p99 {f.get('p99_ms', '-')} ms, "
                f"{f['alerts_matched']}/{f['alerts_expected']} matched, "
                f"offered {lat['offered_per_second']}/s"
            )
    print(f"targets met: {figures['targets_met']}")


if __name__ == "__main__":
    main()

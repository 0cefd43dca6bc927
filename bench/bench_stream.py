"""Bench: the live worker against faust's own floor and a Quix Streams peer, on the real broker.

Run with ``make bench-stream`` (sizes: ``BENCH_STREAM_ARGS="--large 200000 --small 50000"``),
or for development ``bench/bench_stream.py --large 20000 --skip-small --skip-latency``.
Every phase gets a fresh topic namespace (or a fresh consumer group), a
fresh data dir, and is bounded by ``--timeout``; topics are deleted at the
end unless ``--keep-topics``. Written to ``bench/results/stream.json``, with
the issue's ``headline`` object:

* large set (``--large`` readings with their scans, from
  :func:`ingest.simulate.simulate_events`; ``--readings-per-person`` sets the
  residents): a bare consumer (fetch + decode), the faust ``decode`` floor
  twice, on stock faust and with the worker's in-place delivery
  (``bench/faust_floor.py``; the faster of the two is the headline's floor;
  ``--write-floor`` adds the one-write floor), the
  Quix Streams peer (``bench/quix_peer.py`` in ``.venv-quix``), then
  ``scantrail worker`` until every record is judged: the group has committed
  past everything its inputs and internal topics held, and no stage holds a
  record back for the watermark (:meth:`Worker.drained`; every set ends with
  a reading and a scan at a later time on each source partition,
  :func:`end_of_input`). The headline rate is readings + scans over the time
  from the first counted reading to the drain. Then a worker of the same app
  id on an empty data dir restores the tables from the changelogs (its bulk
  restore, :mod:`processors.changelog_restore`): changelog records, the
  restore's records/s, seconds to ``/ready``. Then two
  worker processes in one group drain the same set (``--skip-two-large`` to
  skip): the headline's scale-out ratio, set against the one-process rate
  (:func:`scale_out_pair`), and their alert ids against the one process's.
* small set (``--small`` readings): one worker, then two worker processes in
  one consumer group, each until drained: the small set's scale-out ratio
  (the headline's only when the large set's did not run). Then two again
  with no standby replicas (what a standby's replay of the other's changelog
  costs; skipped when ``--worker-env`` sets the standby count). Each
  two-process run's alert ids are set against the one-process run's
  (``alert_set``: the same inputs must raise the same alerts).
* latency: a fresh worker, then ``--rate`` readings/s and
  ``--scan-rate-offered`` scans/s for ``--seconds`` (``measured_at`` and
  ``scanned_at`` = now). A share are hot readings of nobody
  (``fever_unidentified``), hot readings of a new person
  (``fever_suspected``) and scans out by a quarantined person
  (``quarantine_breach``). Latency = alert consumed - send called, both on
  this process's monotonic clock.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
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

from kafka import KafkaConsumer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient  # noqa: E402

from ingest.simulate import GateWorld, simulate_events  # noqa: E402
from processors.worker import INTERNAL_TOPICS  # noqa: E402
from scantrail import contract  # noqa: E402
from scantrail.broker import drop_namespaces, ensure_topics  # noqa: E402
from scantrail.settings import KafkaSettings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "stream.json"
STANDBY_ENV = "SCANTRAIL_WORKER_STANDBY_REPLICAS"
START = datetime(2020, 2, 10, tzinfo=UTC)
TARGETS = {
    "share_of_faust_floor": 0.5,
    "flat_as_state_grows": 0.75,  # the large set's rate over the small set's
    "p99_ms": 500,
    "offered_readings_per_s": 1000,
    "offered_scans_per_s": 1000,
    "scale_out_ratio": 1.5,
    "restore_records_per_s": 50_000,
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def max_by_window(timed: list[tuple[float, float]], window_s: float) -> list[float]:
    """The worst latency (ms) of each ``window_s`` of send time: one stall, or a steady tail."""
    worst: dict[int, float] = {}
    for sent_at, latency in timed:
        slot = int(max(sent_at, 0.0) // window_s)
        worst[slot] = max(worst.get(slot, 0.0), latency)
    return [round(worst.get(slot, 0.0) * 1e3, 1) for slot in range(max(worst, default=-1) + 1)]


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
        app_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.app_id = app_id or f"{settings.namespace}worker"
        self.data_dir = Path(tempfile.mkdtemp(prefix="scantrail-bench-"))
        self.port = _free_port()
        self.log_path = logs / f"{self.app_id}-{self.port}.log"
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

    def ready(self) -> bool:
        """Whether ``/ready`` answers 200: recovered, and no rebalance under way."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2) as r:
                return bool(r.status == 200)
        except (OSError, ValueError):
            return False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _inputs(self) -> set[str]:
        return {
            self.settings.topic(contract.TEMPERATURES),
            self.settings.topic(contract.SCANS),
            self.settings.topic(contract.QUARANTINE),
            *(f"{self.app_id}-{name}" for name in INTERNAL_TOPICS),
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

    def drained(self, deadline: float, others: tuple[Worker, ...] = (), rounds: int = 3) -> bool:
        """Wait until every record is judged: committed past, and no longer held back.

        The group's lag never reaches zero while it runs: every stage keeps
        sending watermark ticks (idle sources follow the clock), and faust
        commits every few seconds. So: take the end offsets, wait until the
        committed offsets reach them, and repeat (a stage forwards records
        to the next after the first look), once per stage. A committed record
        may still wait in a stage's reorder buffer for the watermark (it is
        durable there, not yet judged): the run ends only once every process's
        ``*_waiting`` count on ``/stats`` is zero, which the end-of-input
        records (:func:`end_of_input`) allow without waiting for idle sources.
        """
        for _ in range(rounds):
            looked = self.offsets()
            if looked is None:
                return False
            target = looked[0]
            while True:
                now = self.offsets()
                if now is not None:
                    behind = {
                        tp: end - now[1].get(tp, 0)
                        for tp, end in target.items()
                        if end > now[1].get(tp, 0)
                    }
                    if not behind:
                        break
                    log(f"  all temperatures counted; still to commit: {lag_by_topic(behind)}")
                if time.monotonic() >= deadline or not self.alive():
                    return False
                time.sleep(1)
        while True:
            stats = group_stats(self, others)
            waiting = None if stats is None else held_back(stats)
            if waiting == {}:
                break
            log(f"  committed; held for the watermark: {waiting or 'no /stats answer'}")
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


def lag_by_topic(behind: dict[Any, int]) -> str:
    """``total (topic: n, ...)``, the stages behind first: where a drain's tail goes."""
    topics: dict[str, int] = {}
    for tp, n in behind.items():
        topics[tp.topic] = topics.get(tp.topic, 0) + n
    ranked = sorted(topics.items(), key=lambda item: -item[1])
    return f"{sum(topics.values())} (" + ", ".join(f"{t}: {n}" for t, n in ranked) + ")"


def held_back(stats: dict[str, int]) -> dict[str, int]:
    """The reorder buffers' ``*_waiting`` counts that are not zero."""
    return {k: v for k, v in stats.items() if k.endswith("_waiting") and v}


def settled(workers: list[Worker], deadline: float, quiet_s: float = 5.0) -> bool:
    """Wait until every worker has answered ``/ready`` for ``quiet_s`` in a row.

    A second process joining starts a rebalance after the first is already
    serving; offering load before the group has settled would time that
    rebalance, not the worker.
    """
    since: float | None = None
    while time.monotonic() < deadline:
        if all(w.ready() for w in workers):
            since = since or time.monotonic()
            if time.monotonic() - since >= quiet_s:
                return True
        else:
            since = None
        time.sleep(0.5)
    return False


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- throughput -----------------------------------------------------------------------------


def day_of_gates(
    n: int, kiosks: int, scan_rate: float, seed: int, residents: int | None = None
) -> Iterator[contract.Event]:
    """Quarantine orders, then scans and readings until ``n`` readings (event-time order)."""
    world = GateWorld(kiosks=kiosks, residents=residents or max(200, n // 20), seed=seed)
    span = timedelta(seconds=1.3 * n / scan_rate)
    readings = 0
    for event in simulate_events(world, START, scan_rate, span):
        yield event
        if isinstance(event, contract.TemperatureReading):
            readings += 1
            if readings >= n:
                return


def preload(settings: KafkaSettings, events: Iterator[contract.Event]) -> dict[str, int]:
    """Produce ``events`` (gzip, as the kiosk publisher sends) with one librdkafka producer."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap,
            "acks": "all",
            "linger.ms": 50,
            "compression.type": "gzip",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    counts: dict[str, int] = {}
    last = time.monotonic()
    for event in events:
        topic = settings.topic(event.TOPIC)
        while True:
            try:
                producer.produce(topic, key=event.key(), value=contract.encode(event))
                break
            except BufferError:
                producer.poll(0.1)
        counts[event.TOPIC] = counts.get(event.TOPIC, 0) + 1
        if time.monotonic() - last > 10:
            last = time.monotonic()
            producer.poll(0)
            log(f"  pre-loaded {sum(counts.values()):,} events")
    if producer.flush(300):
        raise RuntimeError("pre-load not acknowledged")
    return counts


def end_of_input(settings: KafkaSettings, at: datetime) -> dict[str, int]:
    """One normal reading and one scan on every source partition, all at ``at``.

    A stage judges a record once every source partition has delivered past
    its time (:mod:`processors.watermarks`). At the end of a preloaded set the
    last records would wait until the sources count as idle (30 s), and the
    drain would time that wait, not the work; in a city time moves on. These
    records say it has: one time, later than any other, on every partition,
    so every record before them can be judged. They raise no alert (36.5 °C
    of nobody; a valid green pass going in), and they are counted inputs.
    """
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.bootstrap, "acks": "all"})
    counts: dict[str, int] = {}
    for partition in range(settings.partitions):
        kiosk = f"kiosk-end-{partition}"
        closing: tuple[contract.Event, ...] = (
            contract.TemperatureReading(
                event_id=f"end-of-input-t{partition}",
                kiosk_id=kiosk,
                site_id="site-end",
                measured_at=at,
                celsius=36.5,
                method="forehead_ir",
            ),
            contract.ScanEvent(
                event_id=f"end-of-input-s{partition}",
                kiosk_id=kiosk,
                site_id="site-end",
                direction="in",
                person_id=f"p-end-{partition}",
                pass_id=f"pass-end-{partition}",
                pass_status="valid",
                health_code="green",
                scanned_at=at,
                seq=1,
            ),
        )
        for event in closing:
            topic = settings.topic(event.TOPIC)
            producer.produce(
                topic, key=event.key(), value=contract.encode(event), partition=partition
            )
            counts[event.TOPIC] = counts.get(event.TOPIC, 0) + 1
    if producer.flush(60):
        raise RuntimeError("end-of-input records not acknowledged")
    return counts


def newest_time(
    events: Iterator[contract.Event], newest: list[datetime]
) -> Iterator[contract.Event]:
    """``events`` as they come; ``newest[0]`` follows the latest reading or scan time."""
    for event in events:
        at = getattr(event, "measured_at", None) or getattr(event, "scanned_at", None)
        if at is not None and at > newest[0]:
            newest[0] = at
        yield event


def headline_rate(worker: dict[str, Any]) -> int:
    """Readings/s through the whole worker; the first stage's rate only if nothing better."""
    for key in ("events_per_second_end_to_end", "events_per_second_end_to_end_at_most"):
        if key in worker:
            return int(worker[key])
    return int(worker.get("events_per_second_steady") or worker["events_per_second_from_start"])


def group_stats(worker: Worker, others: tuple[Worker, ...]) -> dict[str, int] | None:
    """``/stats`` of every process in the group, summed (None until the first answers)."""
    got = worker.stats()
    if got is None:
        return None
    for other in others:
        for key, value in (other.stats() or {}).items():
            got[key] = got.get(key, 0) + value
    return got


def loop_clock(stats: dict[str, int]) -> tuple[int, int] | None:
    """(loop thread CPU ms, uptime ms) from ``/stats`` (summed over a group's processes)."""
    cpu, up = stats.get("loop_thread_cpu_ms"), stats.get("uptime_ms")
    return None if cpu is None or up is None else (cpu, up)


def busy_share(first: tuple[int, int] | None, last: tuple[int, int] | None) -> float | None:
    """How busy the workers' event-loop threads were between two ``/stats`` reads (1.0: always).

    A loop thread busy all the time is a worker that can go no faster in that
    process (processors/loop_stalls.py); with two processes it is their mean.
    """
    if first is None or last is None or last[1] <= first[1]:
        return None
    return round((last[0] - first[0]) / (last[1] - first[1]), 3)


def run_worker_until(
    worker: Worker, n: int, timeout_s: float, others: tuple[Worker, ...] = ()
) -> dict[str, Any]:
    """Poll /stats until ``n`` temperatures are counted, then until the group has no lag.

    With ``others`` (more processes in the same group) the counts are summed.
    """
    deadline = worker.started + timeout_s
    first_seen: tuple[float, int] | None = None
    loop_at_first: tuple[int, int] | None = None
    samples: list[tuple[float, int]] = []
    last_print = 0.0
    done_at: float | None = None
    count = 0
    stats: dict[str, int] = {}
    while time.monotonic() < deadline and worker.alive():
        time.sleep(0.5)
        got = group_stats(worker, others)
        if got is None:
            continue
        stats = got
        now = time.monotonic()
        count = stats.get("temperature", 0)
        samples.append((now, count))
        if first_seen is None and count > 0:
            first_seen = (now, count)
            loop_at_first = loop_clock(stats)
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
        if worker.drained(deadline, others):
            drained_at = time.monotonic()
        # The later stages' counts, now that they caught up (every process's, summed).
        stats = group_stats(worker, others) or stats
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
    out["loop_thread_busy_share"] = busy_share(loop_at_first, loop_clock(stats))
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


def stricter_floor(*runs: dict[str, Any] | None) -> dict[str, Any]:
    """Of the floors that finished, the faster: the worker is held to the best a bare agent did.

    The worker runs faust with the in-place delivery; stock faust's floor is
    measured beside it, and whichever of the two was faster in this run is
    the floor of the headline (noise can put either ahead).
    """
    done = [run for run in runs if run and run.get("completed")]
    if not done:
        return {"completed": False}
    return max(done, key=lambda run: run["events_per_second"])


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
        # In the run's namespace, so its changelog goes with the namespace's topics.
        f"{settings.namespace}faust-floor-{mode}-{uuid.uuid4().hex[:6]}",
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


def quix_peer(settings: KafkaSettings, n: int, timeout_s: float, logs: Path) -> dict[str, Any]:
    """The Quix Streams peer (bench/quix_peer.py) in its own venv, over the same readings."""
    python = ROOT / ".venv-quix" / "bin" / "python"
    if not python.exists():
        return {"completed": False, "reason": f"{python} missing: run `make bench-stream`"}
    out = logs / "quix-peer.json"
    state = Path(tempfile.mkdtemp(prefix="scantrail-quix-"))
    group = f"quix-peer-{uuid.uuid4().hex[:8]}"
    cmd = [
        str(python),
        str(ROOT / "bench" / "quix_peer.py"),
        settings.bootstrap,
        settings.topic(contract.TEMPERATURES),
        str(n),
        str(out),
        str(state),
        group,
    ]
    with (logs / "quix-peer.log").open("ab") as log_file:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shutil.rmtree(state, ignore_errors=True)
    # Quix names its internal topics after the group, outside any namespace.
    try:
        drop_namespaces(settings, [f"changelog__{group}", f"repartition__{group}"])
    except Exception as exc:  # cleanup must not hide the figures
        log(f"could not delete the Quix peer's topics: {exc}")
    if not out.exists():
        return {"completed": False, "timeout_s": timeout_s}
    return {**json.loads(out.read_text()), "engine": "quixstreams 3.28.1"}


def readings_of_persons(settings: KafkaSettings, n: int) -> int:
    """How many of the pre-loaded readings name a person (the Quix peer stops after these)."""
    consumer = KafkaConsumer(
        settings.topic(contract.TEMPERATURES),
        bootstrap_servers=settings.servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    count = seen = 0
    try:
        while seen < n:
            batches = consumer.poll(timeout_ms=2000, max_records=10000)
            if not batches:
                break
            for records in batches.values():
                for record in records:
                    seen += 1
                    count += (
                        b'"person_id":null' not in record.value and b'"person_id"' in record.value
                    )
    finally:
        consumer.close()
    return count


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process and all its threads (None: it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def machine_ticks() -> tuple[int, int, int, int]:
    """(busy, total, iowait, steal) clock ticks of every CPU since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    values += [0] * (8 - len(values))
    iowait, steal = values[4], values[7]
    return sum(values) - values[3] - iowait, sum(values), iowait, steal


def dirty_mb() -> float | None:
    """Page cache not yet written back: a backlog here stalls the broker's writes."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("Dirty:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def broker_pid() -> int | None:
    """The local broker's JVM (``make up``), to count what the broker spends beside the workers."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"kafka.Kafka" in cmdline and b"server.properties" in cmdline:
                return int(entry.name)
    return None


class CpuMeter:
    """Where a phase's CPU went: the workers, the broker, and the machine as a whole.

    Two workers can only scale out if there are idle cores to scale into: on this
    2-core box the broker and the bench share them, so the scale-out ratio is
    read beside the machine's busy share. The same run's phases can differ by a
    third in speed on this VM, so each sample also says what the work did not
    cause: time the hypervisor gave to others (steal), time waiting on the disk
    (iowait) and the dirty page cache still to write back.
    """

    def __init__(self, pids: list[int]) -> None:
        self.pids, self.broker = pids, broker_pid()
        self.started = time.monotonic()
        self.machine = machine_ticks()
        self.broker_cpu = process_cpu_s(self.broker) if self.broker else None

    def read(self) -> dict[str, Any]:
        wall = time.monotonic() - self.started
        busy, total, iowait, steal = machine_ticks()
        ticks = max(1, total - self.machine[1])
        broker_cpu = process_cpu_s(self.broker) if self.broker else None
        workers = [process_cpu_s(pid) for pid in self.pids]
        return {
            "wall_s": round(wall, 1),
            "cores": os.cpu_count(),
            "workers_cpu_s": [None if c is None else round(c, 1) for c in workers],
            "broker_cpu_s": None
            if broker_cpu is None or self.broker_cpu is None
            else round(broker_cpu - self.broker_cpu, 1),
            "machine_busy_share": round((busy - self.machine[0]) / ticks, 3),
            "machine_steal_share": round((steal - self.machine[3]) / ticks, 3),
            "machine_iowait_share": round((iowait - self.machine[2]) / ticks, 3),
            "dirty_mb": dirty_mb(),
        }


def worker_run(
    settings: KafkaSettings,
    args: argparse.Namespace,
    logs: Path,
    counts: dict[str, int],
    processes: int = 1,
    keep_data: bool = False,
    env: dict[str, str] | None = None,
) -> tuple[dict[str, Any], str]:
    """``processes`` workers in one fresh group until drained; returns (figures, app id)."""
    n = counts.get(contract.TEMPERATURES, 0)
    app_id = f"{settings.namespace}worker-{uuid.uuid4().hex[:6]}"
    extra_env = {**args.worker_env, **(env or {})}
    workers = [Worker(settings, logs, extra_env=extra_env, app_id=app_id) for _ in range(processes)]
    cpu = CpuMeter([w.proc.pid for w in workers])
    try:
        result = run_worker_until(workers[0], n, args.timeout, others=tuple(workers[1:]))
        result["cpu"] = cpu.read()
    finally:
        tail = workers[0].tail()
        for worker in workers:
            worker.stop()
    if not result["completed"]:
        result["log_tail"] = tail[-1500:]
    rate = headline_rate(result)
    result["processes"] = processes
    result["all_inputs_per_second_end_to_end"] = round(rate * sum(counts.values()) / max(1, n))
    return result, app_id


def alert_offsets(settings: KafkaSettings) -> dict[TopicPartition, int]:
    """End offsets of the alerts topic: a run's alerts are those between two of these."""
    consumer = KafkaConsumer(bootstrap_servers=settings.servers)
    try:
        topic = settings.topic(contract.ALERTS)
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return dict(consumer.end_offsets(tps))
    finally:
        consumer.close()


def alerts_between(
    settings: KafkaSettings, start: dict[TopicPartition, int], end: dict[TopicPartition, int]
) -> set[str]:
    """Alert ids written between two :func:`alert_offsets` (an id derives from its evidence).

    Reads until every partition is past its end offset, so a slow poll cannot
    cut the count short; only a minute without a single record gives up (and
    says so).
    """
    consumer = KafkaConsumer(bootstrap_servers=settings.servers, enable_auto_commit=False)
    ids: set[str] = set()
    try:
        wanted = {tp: stop for tp, stop in end.items() if stop > start.get(tp, 0)}
        consumer.assign(list(wanted))
        for tp in wanted:
            consumer.seek(tp, start.get(tp, 0))
        quiet_since = time.monotonic()
        while wanted:
            batches = consumer.poll(timeout_ms=2000)
            if not batches:
                if time.monotonic() - quiet_since > 60:
                    log(f"  alerts: gave up reading {len(wanted)} partitions; the count is short")
                    break
                continue
            quiet_since = time.monotonic()
            for tp, records in batches.items():
                for record in records:
                    if record.offset < wanted.get(tp, -1):
                        ids.add(json.loads(record.value)["alert_id"])
                if tp in wanted and consumer.position(tp) >= wanted[tp]:
                    del wanted[tp]
                    consumer.pause(tp)
    finally:
        consumer.close()
    return ids


def same_alerts(reference: set[str], got: set[str]) -> dict[str, Any]:
    """How a run's alert ids compare with the one-process run's on the same inputs."""
    return {
        "alerts": len(got),
        "same_as_one_process": got == reference,
        "missing": len(reference - got),
        "extra": len(got - reference),
    }


def changelog_records(settings: KafkaSettings, app_id: str) -> int:
    """Records held by the app's changelog topics (what a restore on an empty data dir reads)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.servers)
    try:
        names = [t for t in consumer.topics() if t.startswith(app_id) and t.endswith("-changelog")]
        tps = [TopicPartition(t, p) for t in names for p in consumer.partitions_for_topic(t) or ()]
        ends, starts = consumer.end_offsets(tps), consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        consumer.close()


RESTORED = re.compile(
    r"changelog restore: (?P<records>\d+) records into (?P<partitions>\d+) partitions"
    r" in (?P<seconds>[0-9.]+) s"
)


def restore_figures(log_text: str) -> dict[str, Any]:
    """What the worker's bulk restore said it did, and whether faust had anything left to read."""
    match = RESTORED.search(log_text)
    figures: dict[str, Any] = {
        "faust_restored_any": "Restoring state from changelog topics" in log_text,
    }
    if match is not None:
        records, seconds = int(match["records"]), float(match["seconds"])
        figures.update(
            bulk_restore_records=records,
            bulk_restore_partitions=int(match["partitions"]),
            bulk_restore_seconds=seconds,
            bulk_restore_records_per_second=round(records / seconds) if seconds else None,
        )
    return figures


def recovery(
    settings: KafkaSettings, args: argparse.Namespace, logs: Path, app_id: str
) -> dict[str, Any]:
    """A worker of ``app_id`` on an empty data dir: seconds to /ready, changelog records/s."""
    records = changelog_records(settings, app_id)
    worker = Worker(settings, logs, extra_env=args.worker_env, app_id=app_id)
    ready_at = None
    deadline = worker.started + args.timeout
    try:
        while time.monotonic() < deadline and worker.alive():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/ready", timeout=2):
                    ready_at = time.monotonic()
                    break
            except OSError:
                time.sleep(0.2)
    finally:
        worker.stop()
    if ready_at is None:
        return {"completed": False, "changelog_records": records, "timeout_s": args.timeout}
    seconds = ready_at - worker.started
    restored = restore_figures(worker.log_path.read_text(errors="replace"))
    # The restore's own rate when the bulk restore did it all; else the whole start.
    bulk_rate = restored.get("bulk_restore_records_per_second")
    whole = round(records / seconds)
    return {
        "completed": True,
        "changelog_records": records,
        "seconds_to_ready": round(seconds, 2),
        "records_per_second_to_ready": whole,
        **restored,
        "records_per_second": bulk_rate
        if bulk_rate and not restored["faust_restored_any"]
        else whole,
        "note": (
            "records_per_second: the bulk restore's records over its own seconds (reading"
            " the changelogs and writing RocksDB), when faust's recovery then had nothing"
            " left to read; records_per_second_to_ready: changelog records over seconds"
            " from process start (Python and faust start-up, the group join included)"
            " to /ready answering 200"
        ),
    }


def preloaded(base: KafkaSettings, args: argparse.Namespace, n: int, tag: str) -> Any:
    settings = fresh_settings(base, tag)
    log(f"{tag}: namespace {settings.namespace}, generating and pre-loading {n:,} readings")
    t = time.monotonic()
    residents = max(200, n // args.readings_per_person)
    newest = [START]
    events = day_of_gates(n, args.kiosks, args.scan_rate, args.seed, residents=residents)
    counts = preload(settings, newest_time(events, newest))
    for topic, more in end_of_input(settings, newest[0] + timedelta(hours=1)).items():
        counts[topic] = counts.get(topic, 0) + more
    log(f"  pre-loaded {counts} ({residents:,} residents) in {time.monotonic() - t:.1f} s")
    return settings, counts, residents


def throughput(base: KafkaSettings, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """The large set: ceiling, faust floors, Quix peer, one worker, then its recovery."""
    settings, counts, residents = preloaded(base, args, args.large, "large")
    n = counts.get(contract.TEMPERATURES, 0)
    try:
        log("large: bare consumer (fetch + contract.decode)")
        ceiling = bare_consumer(settings, n, args.timeout)
        floors = {}
        modes = ("decode", "decode-in-place") + (("write",) if args.write_floor else ())
        for mode in () if args.skip_floors else modes:
            log(f"large: faust floor, {mode} (a faust agent, no rules)")
            floors[mode] = faust_floor(settings, n, mode, args.timeout, logs)
            log(f"  {mode}: {floors[mode].get('events_per_second', 'not finished')}/s")
        floor = stricter_floor(floors.get("decode"), floors.get("decode-in-place"))
        quix: dict[str, Any] = {"completed": False, "skipped": True}
        if not args.skip_quix:
            persons = readings_of_persons(settings, n)
            log(f"large: Quix Streams peer over {persons:,} readings of persons")
            quix = quix_peer(settings, persons, args.timeout, logs)
            log(f"  quix: {quix.get('events_per_second', 'not finished')}/s")
        log(f"large: scantrail worker, one process (timeout {args.timeout:.0f} s)")
        before = alert_offsets(settings)
        worker, app_id = worker_run(settings, args, logs, counts)
        reference = alerts_between(settings, before, alert_offsets(settings))
        worker["alerts"] = len(reference)
        log(f"  worker: {worker['all_inputs_per_second_end_to_end']:,} inputs/s")
        log("large: recovery of that worker's tables on an empty data dir")
        restored = recovery(settings, args, logs, app_id)
        log(f"  recovery: {restored}")
        two: dict[str, Any] = {"skipped": True}
        if not (args.skip_two or args.skip_two_large):
            log("large: two scantrail worker processes in one group")
            two = two_processes(settings, args, logs, counts, reference)
        return {
            "namespace": settings.namespace,
            "preloaded": counts,
            "residents": residents,
            "kiosks": args.kiosks,
            "scan_rate_event_time_per_s": args.scan_rate,
            "worker": worker,
            "two_processes": two,
            "bare_consumer": ceiling,
            "faust_floor": floor,
            "faust_floor_stock": floors.get("decode"),
            "faust_floor_in_place_delivery": floors.get("decode-in-place"),
            "faust_floor_one_write_per_event": floors.get("write"),
            "quix_peer": quix,
            "recovery": restored,
        }
    finally:
        if not args.keep_topics:
            delete_namespace(settings)


def two_processes(
    settings: KafkaSettings,
    args: argparse.Namespace,
    logs: Path,
    counts: dict[str, int],
    reference: set[str],
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Two workers in one group until drained, their alerts set against one process's."""
    before = alert_offsets(settings)
    result, _ = worker_run(settings, args, logs, counts, processes=2, env=env)
    found = alerts_between(settings, before, alert_offsets(settings))
    result["alert_set"] = same_alerts(reference, found)
    log(f"  two processes: {result['all_inputs_per_second_end_to_end']:,} inputs/s")
    log(f"  alerts against one process's: {result['alert_set']}")
    return result


def small_state(base: KafkaSettings, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """The small set: one worker, then two workers in one group, on the same topics."""
    settings, counts, residents = preloaded(base, args, args.small, "small")
    try:
        log(f"small: scantrail worker, one process (timeout {args.timeout:.0f} s)")
        before = alert_offsets(settings)
        one, _ = worker_run(settings, args, logs, counts)
        reference = alerts_between(settings, before, alert_offsets(settings))
        one["alerts"] = len(reference)
        log(f"  one process: {one['all_inputs_per_second_end_to_end']:,} inputs/s")
        two: dict[str, Any] = {"skipped": True}
        two_no_standby: dict[str, Any] = {"skipped": True}
        if not args.skip_two:
            log("small: two scantrail worker processes in one group")
            two = two_processes(settings, args, logs, counts, reference)
            if STANDBY_ENV not in args.worker_env:
                log("small: two processes again, with no standby replicas")
                two_no_standby = two_processes(
                    settings, args, logs, counts, reference, env={STANDBY_ENV: "0"}
                )
        return {
            "preloaded": counts,
            "residents": residents,
            "one_process": one,
            "two": two,
            "two_no_standby": two_no_standby,
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


class OfferedLoad:
    """The latency phase's load generator: one librdkafka producer, acks from all replicas.

    The kiosk fleet it stands for runs on its own machines. With kafka-python
    (the kiosks' client) the generator took 80% of one of this machine's two
    cores at 2,000 events/s (top, 2026-12-05), as much as the worker under test
    got; librdkafka sends from its own C threads.
    """

    def __init__(self, settings: KafkaSettings, linger_ms: int) -> None:
        from confluent_kafka import Producer

        self.producer = Producer(
            {"bootstrap.servers": settings.bootstrap, "acks": "all", "linger.ms": linger_ms}
        )
        self.failures = 0

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            self.failures += 1

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, on_delivery=self._delivered)
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)

    def flush(self) -> None:
        if self.producer.flush(60) or self.failures:
            raise RuntimeError(f"offered load not acknowledged ({self.failures} failed)")

    def close(self) -> None:
        self.producer.flush(10)


def bytes_per_row(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """Each table's mean bytes per row written between two ``/stats`` (``<table>_written_*``)."""
    sizes = {}
    for name, total in now.items():
        if name.endswith("_written_bytes"):
            table = name.removesuffix("_written_bytes")
            rows = now.get(f"{table}_written_rows", 0) - before.get(f"{table}_written_rows", 0)
            if rows > 0:
                sizes[table] = round((total - before.get(name, 0)) / rows)
    return sizes


def latency(base: KafkaSettings, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    settings = fresh_settings(base, "l")
    rng = random.Random(args.seed)
    listener = AlertListener(settings)
    listener.start()
    app_id = f"{settings.namespace}worker"
    workers = [
        Worker(settings, logs, extra_env=args.worker_env, app_id=app_id)
        for _ in range(args.latency_processes)
    ]
    worker, others = workers[0], tuple(workers[1:])
    producer = OfferedLoad(settings, args.linger_ms)
    topic = settings.topic(contract.TEMPERATURES)
    kiosks = [f"kiosk-{k:04d}" for k in range(args.latency_kiosks)]
    residents = [f"p-bench-{r:06d}" for r in range(args.latency_kiosks * 20)]
    sent: dict[tuple[str, str], float] = {}
    cpu_every_5s: list[dict[str, Any]] = []  # cumulative from the first reading sent
    # Per 5 s, each table's mean bytes per row written: flat unless a state grows with time.
    row_sizes_every_5s: list[dict[str, int]] = []
    previous: dict[str, int] = {}

    quarantined = [f"p-quar-{q:05d}" for q in range(200)]
    scans_topic = settings.topic(contract.SCANS)
    today = datetime.now(UTC).date()
    for held in quarantined:
        record = contract.QuarantineRecord(
            person_id=held,
            site_id="site-0000",
            starts_on=today - timedelta(days=2),
            ends_on=today + timedelta(days=7),
            reason="bench",
        )
        producer.send(
            settings.topic(contract.QUARANTINE), key=record.key(), value=contract.encode(record)
        )

    def scan(event_id: str, kiosk: str, person: str, direction: str, seq: int) -> bytes:
        return contract.encode(
            contract.ScanEvent(
                event_id=event_id,
                kiosk_id=kiosk,
                site_id=f"site-{int(kiosk[-4:]) // 2:04d}",
                direction=direction,  # type: ignore[arg-type]
                person_id=person,
                pass_status="valid",
                scanned_at=datetime.now(UTC),
                seq=seq,
            )
        )

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
        if others and not settled(workers, time.monotonic() + 120):
            raise RuntimeError(f"the group did not settle within 120 s:\n{worker.tail()}")
        log(
            f"  worker up after {time.monotonic() - worker.started:.1f} s; producing "
            f"{args.rate:,.0f}/s for {args.seconds:.0f} s"
        )
        total = int(args.rate * args.seconds)
        scans_due, scans_sent = 0.0, 0
        start = time.monotonic()
        last_print = start
        # Whether a slow stretch is the worker's own or the broker's (a compaction,
        # the deletion of an earlier phase's topics) or the machine's.
        cpu = CpuMeter([w.proc.pid for w in workers])
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
            scans_due += args.scan_rate_offered / args.rate
            while scans_due >= 1:
                scans_due -= 1
                scans_sent += 1
                scan_id = f"lat-scan-{scans_sent:08d}"
                if rng.random() < args.hot_share:
                    who, direction = rng.choice(quarantined), "out"
                    sent[("quarantine_breach", scan_id)] = time.monotonic()
                else:
                    who, direction = rng.choice(residents), rng.choice(("in", "out"))
                value = scan(scan_id, kiosk, who, direction, scans_sent)
                producer.send(scans_topic, key=who.encode(), value=value)
            now = time.monotonic()
            if now - last_print >= 5:
                last_print = now
                got = sum(1 for k in sent if k in listener.arrived)
                cpu_every_5s.append(cpu.read())
                current = group_stats(worker, others) or {}
                row_sizes_every_5s.append(bytes_per_row(current, previous))
                previous = current
                log(
                    f"  sent {seq + 1:,}/{total:,}, alerts back {got}/{len(sent)}; worker {current}"
                )
        producer.flush()
        elapsed = time.monotonic() - start
        offered, offered_scans = total / elapsed, scans_sent / elapsed
        drain_deadline = time.monotonic() + args.drain
        while time.monotonic() < drain_deadline:
            missing = [k for k in sent if k not in listener.arrived]
            if not missing:
                break
            log(f"  waiting for {len(missing)} alerts")
            time.sleep(2)
        stats = group_stats(worker, others)
    finally:
        producer.close()
        listener.stopping.set()
        listener.join(timeout=10)
        for w in workers:
            w.stop()
        if not args.keep_topics:
            delete_namespace(settings)

    def figures(kind: str) -> dict[str, Any]:
        timed = [
            (t - start, listener.arrived[k] - t)
            for k, t in sent.items()
            if k[0] == kind and k in listener.arrived
        ]
        lat = [latency for _, latency in timed]
        expected = sum(1 for k in sent if k[0] == kind)
        out: dict[str, Any] = {"alerts_expected": expected, "alerts_matched": len(lat)}
        if lat:
            out.update(
                p50_ms=round(pct(lat, 0.5) * 1e3, 1),
                p99_ms=round(pct(lat, 0.99) * 1e3, 1),
                max_ms=round(max(lat) * 1e3, 1),
                mean_ms=round(statistics.mean(lat) * 1e3, 1),
                max_ms_by_10s=max_by_window(timed, 10.0),
            )
        return out

    return {
        "namespace": settings.namespace,
        "offered_per_second": round(offered),
        "offered_scans_per_second": round(offered_scans),
        "seconds": args.seconds,
        "processes": len(workers),
        "readings": total,
        "kiosks": args.latency_kiosks,
        "producer_linger_ms": args.linger_ms,
        "load_generator": "librdkafka (confluent-kafka), one producer in the bench process",
        "worker_stats_at_end": stats,
        "cpu_every_5s": cpu_every_5s,
        "bytes_per_row_written_every_5s": row_sizes_every_5s,
        "fever_unidentified": figures("fever_unidentified"),
        "fever_suspected": figures("fever_suspected"),
        "quarantine_breach": figures("quarantine_breach"),
    }


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=1_000_000, help="readings, large set")
    parser.add_argument("--small", type=int, default=100_000, help="readings, small set")
    parser.add_argument("--readings-per-person", type=int, default=10, help="sets residents")
    parser.add_argument("--kiosks", type=int, default=400, help="kiosks in the pre-loaded day")
    parser.add_argument("--scan-rate", type=float, default=50.0, help="scans/s of event time")
    parser.add_argument("--timeout", type=float, default=900.0, help="bound on each phase, s")
    parser.add_argument("--rate", type=float, default=1000.0, help="latency: readings/s offered")
    parser.add_argument(
        "--scan-rate-offered", type=float, default=1000.0, help="latency: scans/s offered"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="latency: how long")
    parser.add_argument("--latency-kiosks", type=int, default=400)
    parser.add_argument(
        "--latency-processes",
        type=int,
        default=1,
        help="latency: worker processes in the group (offering starts once it has settled)",
    )
    parser.add_argument("--hot-share", type=float, default=0.01, help="share of each hot kind")
    parser.add_argument("--linger-ms", type=int, default=5, help="latency producer linger")
    parser.add_argument("--drain", type=float, default=60.0, help="latency: wait for stragglers")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-small", action="store_true")
    parser.add_argument("--skip-two", action="store_true", help="no two-process runs")
    parser.add_argument(
        "--skip-two-large",
        action="store_true",
        help="no two-process run on the large set (the scale-out is then the small set's)",
    )
    parser.add_argument("--skip-quix", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-floors", action="store_true", help="development: no faust floors")
    parser.add_argument(
        "--write-floor", action="store_true", help="also faust + one table write per record"
    )
    parser.add_argument("--keep-topics", action="store_true")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the worker, e.g. SCANTRAIL_WORKER_BATCH_WAIT_MS=50",
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
    phases = (
        ("throughput", args.skip_throughput, throughput),
        ("small_state", args.skip_small, small_state),
        ("latency", args.skip_latency, latency),
    )
    for name, skip, phase in phases:
        if not skip:
            figures[name] = phase(base, args, logs)
            save(figures, args.out)  # a later phase that runs out of time keeps this one
    summarise(figures)
    log(f"wrote {args.out}")


def save(figures: dict[str, Any], out: Path) -> None:
    figures["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["headline"] = headline(figures)
    figures["targets_met"] = targets_met(figures["headline"], figures)
    figures["scale_out_without_standby"] = without_standby(figures)
    figures["scale_out_by_set"] = scale_out_by_set(figures)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")


def inputs_rate(run: dict[str, Any] | None) -> int | None:
    """Inputs (readings + scans) per second through every stage, only if the run drained."""
    if not run or not run.get("drained"):
        return None
    return int(run["all_inputs_per_second_end_to_end"])


def headline(figures: dict[str, Any]) -> dict[str, Any]:
    """The issue's headline keys, exactly (None where a phase was skipped or did not finish)."""
    t = figures.get("throughput", {})
    small = figures.get("small_state", {})
    lat = figures.get("latency", {})
    one = inputs_rate(t.get("worker"))
    small_one = inputs_rate(small.get("one_process"))
    scale_one, two = scale_out_pair(figures)
    floor = t.get("faust_floor", {})
    floor_rate = floor.get("events_per_second") if floor.get("completed") else None
    quix = t.get("quix_peer", {})
    restored = t.get("recovery", {})
    return {
        "inputs_per_s_one_process": one,
        "inputs_per_s_small_state": small_one,
        "inputs_per_s_large_state": one,
        "faust_decode_floor_per_s": floor_rate,
        "share_of_faust_floor": round(one / floor_rate, 3) if one and floor_rate else None,
        "quix_peer_per_s": quix.get("events_per_second") if quix.get("completed") else None,
        "inputs_per_s_two_processes": two,
        "scale_out_ratio": round(two / scale_one, 3) if two and scale_one else None,
        "p99_ms": {
            kind: lat[kind].get("p99_ms")
            for kind in ("fever_unidentified", "fever_suspected", "quarantine_breach")
            if kind in lat
        },
        "offered_readings_per_s": lat.get("offered_per_second"),
        "offered_scans_per_s": lat.get("offered_scans_per_second"),
        "restore_records_per_s": restored.get("records_per_second"),
        "seconds_to_ready": restored.get("seconds_to_ready"),
    }


def scale_out_pair(figures: dict[str, Any]) -> tuple[int | None, int | None]:
    """One process's and two processes' drained rates on the same set, for the scale-out.

    The large set when its two-process run ran: the headline's one-process
    rate is the large set's, and a drain of a few hundred seconds measures
    what two processes sustain. The small set drains in under a minute, of
    which the group forming, the standby catching up and the commit rounds
    of the drain check are a fixed share. Both sets' ratios are in
    ``scale_out_by_set``.
    """
    t, small = figures.get("throughput", {}), figures.get("small_state", {})
    two_large = inputs_rate(t.get("two_processes"))
    if two_large:
        return inputs_rate(t.get("worker")), two_large
    return inputs_rate(small.get("one_process")), inputs_rate(small.get("two"))


def scale_out_by_set(figures: dict[str, Any]) -> dict[str, Any]:
    """Two processes over one, per set (the headline takes the large set's when it ran)."""
    t, small = figures.get("throughput", {}), figures.get("small_state", {})

    def ratio(one: Any, two: Any) -> dict[str, Any]:
        a, b = inputs_rate(one), inputs_rate(two)
        return {"one": a, "two": b, "ratio": round(b / a, 3) if a and b else None}

    return {
        "large": ratio(t.get("worker"), t.get("two_processes")),
        "small": ratio(small.get("one_process"), small.get("two")),
        "small_without_standby": ratio(small.get("one_process"), small.get("two_no_standby")),
    }


def without_standby(figures: dict[str, Any]) -> dict[str, Any]:
    """The two-process figures again with no standby replicas (the headline's run keeps one)."""
    small = figures.get("small_state", {})
    two, one = inputs_rate(small.get("two_no_standby")), inputs_rate(small.get("one_process"))
    return {
        STANDBY_ENV: "0",
        "inputs_per_s_two_processes": two,
        "scale_out_ratio": round(two / one, 3) if two and one else None,
        "note": (
            "the headline's two-process run keeps the default of one standby replica, with"
            " which each worker also replays the other's changelog records; without one, a"
            " survivor takes over a dead worker's partitions only after faust has replayed"
            " them record by record"
        ),
    }


def targets_met(h: dict[str, Any], figures: dict[str, Any]) -> dict[str, bool | None]:
    def at_least(value: Any, bound: float) -> bool | None:
        return None if value is None else bool(value >= bound)

    small, large = h["inputs_per_s_small_state"], h["inputs_per_s_large_state"]
    lat = figures.get("latency", {})
    p99: bool | None = None
    if lat:
        p99 = (
            lat["offered_per_second"] >= 0.95 * TARGETS["offered_readings_per_s"]
            and lat["offered_scans_per_second"] >= 0.95 * TARGETS["offered_scans_per_s"]
            and all(
                lat[k]["alerts_matched"] == lat[k]["alerts_expected"]
                and lat[k].get("p99_ms", 1e9) < TARGETS["p99_ms"]
                for k in ("fever_unidentified", "fever_suspected", "quarantine_breach")
            )
        )
    return {
        "share_of_faust_floor": at_least(
            h["share_of_faust_floor"], TARGETS["share_of_faust_floor"]
        ),
        "flat_as_state_grows": None if not small or not large else large >= 0.75 * small,
        "p99_ms": p99,
        "scale_out_ratio": at_least(h["scale_out_ratio"], TARGETS["scale_out_ratio"]),
        "restore_records_per_s": at_least(
            h["restore_records_per_s"], TARGETS["restore_records_per_s"]
        ),
    }


def summarise(figures: dict[str, Any]) -> None:
    print()
    for key, value in figures["headline"].items():
        print(f"{key:<28} {value}")
    print(f"targets met: {figures['targets_met']}")
    print(f"without standby replicas: {figures['scale_out_without_standby']}")
    print(f"scale-out by set: {figures['scale_out_by_set']}")


if __name__ == "__main__":
    main()

"""``scantrail demo``: the whole pipeline for a minute, then a summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

KEEP_DEMO_RUNS = 3  # this run and the two before it keep their topics for a look afterwards


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "scantrail.cli", *args], env=env, stdout=handle, stderr=handle
    )


def _demo_accounts(path: Path) -> list[tuple[str, str, str, str]]:
    """Demo accounts with passwords made now, printed once and never stored in clear."""
    import secrets

    from scantrail.console.accounts import make_account, save_account

    wanted = [
        ("officer-000", "officer", ["site-000"]),
        ("officer-001", "officer", ["site-001"]),
        ("supervisor", "supervisor", []),
        ("epidemiologist", "epidemiologist", []),
    ]
    out = []
    for name, role, sites in wanted:
        password = secrets.token_urlsafe(12)
        save_account(path, make_account(name, role, sites, password))
        out.append((name, role, ", ".join(sites) or "all sites", password))
    return out


class _PageReceiver:
    """The demo's stand-in for officers' phones: a loopback webhook that counts pages."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self
        self.received = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.received += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _start_pager(env: dict[str, str], logs: Path) -> tuple[_PageReceiver, subprocess.Popen[bytes]]:
    """The pager with a roster of two demo officers for every site, paging a loopback webhook."""
    import secrets
    import socket

    import yaml

    pages = _PageReceiver()
    hook = {"url": f"http://127.0.0.1:{pages.port}/page", "secret_env": "SCANTRAIL_DEMO_HOOK"}
    officers = [{"id": o, "hours": "00:00-24:00", "webhook": hook} for o in ("duty-1", "duty-2")]
    (logs / "roster.yaml").write_text(yaml.safe_dump({"sites": {"*": officers}}))
    env["SCANTRAIL_DEMO_HOOK"] = secrets.token_hex(16)
    env.setdefault("SCANTRAIL_PAGER_ACK_TIMEOUT_S", "120")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["sink", "pager", "--roster", str(logs / "roster.yaml"), "--port", str(port)]
    return pages, _spawn(args, env, logs / "pager.log")


def _print_console(console: Any, port: int, accounts: list[tuple[str, str, str, str]]) -> None:
    from rich.table import Table

    table = Table(title=f"web console: http://127.0.0.1:{port}/ (demo accounts, this run only)")
    for column in ("user", "role", "sites", "password"):
        table.add_column(column)
    for row in accounts:
        table.add_row(*row)
    console.print(table)


@click.command()
@click.option("--duration", default=60.0, show_default=True, help="Seconds of gate traffic.")
@click.option("--rate", default=20.0, show_default=True, help="Scans per second, all gates.")
@click.option("--kiosks", default=6, show_default=True, help="Number of gates.")
@click.option("--residents", default=400, show_default=True, help="Number of residents.")
@click.option("--seed", default=2020, show_default=True, help="Simulation seed.")
@click.option("--console-port", default=8480, show_default=True, help="Port of the web console.")
@click.option(
    "--stay/--no-stay",
    default=None,
    help="Keep the console, worker and sink running after the summary until Ctrl-C "
    "(default: when run in a terminal).",
)
def demo(
    duration: float,
    rate: float,
    kiosks: int,
    residents: int,
    seed: int,
    console_port: int,
    stay: bool | None,
) -> None:
    """Run gates, worker and InfluxDB sink together on the local services.

    Each run gets its own topic namespace (demo-<time>.) so its summary counts
    only its own events; the topics of all but the last few runs are dropped,
    so repeated demos do not pile partitions onto the broker. Logs go to the
    state dir under demo/.
    """
    from influxdb_client import InfluxDBClient
    from rich.console import Console
    from rich.table import Table

    from ingest.simulate import GateWorld, simulate_events
    from scantrail import contract
    from scantrail.broker import (
        connection,
        drop_namespaces,
        ensure_topics,
        make_producer,
        namespaces,
    )
    from scantrail.settings import InfluxSettings, KafkaSettings, state_dir

    console = Console(stderr=True)
    run = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    namespace = f"demo-{run}."
    kafka = KafkaSettings(namespace=namespace)
    influx = InfluxSettings()
    ensure_topics(kafka)
    earlier = sorted(n for n in namespaces(kafka) if n.startswith("demo-") and n != namespace)
    if dropped := earlier[: max(0, len(earlier) - KEEP_DEMO_RUNS + 1)]:
        drop_namespaces(kafka, dropped)
        console.print(f"dropped the topics of {len(dropped)} older demo run(s)")
    logs = state_dir() / "demo" / run
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        SCANTRAIL_KAFKA_NAMESPACE=namespace,
        SCANTRAIL_WORKER_APP_ID=f"{namespace}worker",
        SCANTRAIL_WORKER_DATA_DIR=str(logs / "worker-data"),
    )
    console.print(f"[bold]ScanTrail demo[/] namespace {namespace} logs {logs}")
    worker = _spawn(["worker"], env, logs / "worker.log")
    sink = _spawn(["sink", "influx"], env, logs / "sink.log")
    pages, pager = _start_pager(env, logs)
    env["SCANTRAIL_CONSOLE_ACCOUNTS"] = str(logs / "console-accounts.json")
    env["SCANTRAIL_CONSOLE_SESSIONS"] = str(logs / "console-sessions.db")  # the run's own
    demo_accounts = _demo_accounts(logs / "console-accounts.json")
    console_proc = _spawn(["console", "--port", str(console_port)], env, logs / "console.log")
    _print_console(console, console_port, demo_accounts)

    start = datetime.now(UTC)
    # Re-measures come 15-45 s after a hot reading (not 4-10 min) so that a
    # one-minute demo sees its suspicions settle.
    # The districts' extras too: household ids (and households breaking the
    # outing quota), yellow and red codes, venue check-ins and visitors.
    world = GateWorld.districts(
        kiosks=kiosks, residents=residents, seed=seed, remeasure_s=(15.0, 45.0)
    )
    producer = make_producer(kafka, client_id="scantrail-demo")
    published: Counter[str] = Counter()
    extras: Counter[str] = Counter()
    hot: set[str] = set()
    wall = time.monotonic()
    try:
        with console.status("gates are scanning...") as status:
            for event in simulate_events(world, start, rate, timedelta(seconds=duration)):
                if isinstance(event, contract.ScanEvent | contract.TemperatureReading):
                    lag = (event.time - start).total_seconds() - (time.monotonic() - wall)
                    if lag > 0:
                        time.sleep(lag)
                if isinstance(event, contract.TemperatureReading) and 37.3 <= event.celsius <= 42:
                    hot.add(event.event_id)
                producer.send(
                    kafka.topic(event.TOPIC),
                    key=event.key(),
                    value=contract.encode(event),
                    timestamp_ms=event.timestamp_ms(),
                )
                published[event.SCHEMA] += 1
                if isinstance(event, contract.ScanEvent):
                    if event.venue_kind is not None:
                        extras["venue check-ins"] += 1
                    if event.person_kind == "visitor":
                        extras["visitor scans"] += 1
                status.update(f"gates are scanning... {sum(published.values())} events published")
        producer.flush()
        producer.close()

        alerts: Counter[str] = Counter()
        flagged: set[str] = set()
        deadline = time.monotonic() + 120
        with console.status("waiting for the worker's alerts on every hot reading..."):
            from kafka import KafkaConsumer

            consumer = KafkaConsumer(
                kafka.topic(contract.ALERTS),
                **connection(kafka),
                auto_offset_reset="earliest",
                consumer_timeout_ms=2000,
            )
            seen: set[str] = set()
            while not hot <= flagged and time.monotonic() < deadline:
                for message in consumer:
                    alert = contract.decode_as(message.value, contract.Alert)
                    if alert.alert_id not in seen:
                        seen.add(alert.alert_id)
                        alerts[alert.kind] += 1
                        flagged.update(alert.evidence)
            consumer.close()
        with console.status("letting the sink catch up..."):
            time.sleep(8)
        query = (
            f'from(bucket: "{influx.bucket}") '
            f"|> range(start: {(start - timedelta(minutes=1)).isoformat()}, "
            f"stop: {(datetime.now(UTC) + timedelta(minutes=15)).isoformat()}) "
            '|> filter(fn: (r) => r._field == "celsius" or r._field == "alert_id") '
            '|> group(columns: ["_measurement"]) |> count()'
        )
        points: dict[str, int] = {}
        with InfluxDBClient(
            url=influx.url, token=influx.token.get_secret_value(), org=influx.org
        ) as client:
            for table in client.query_api().query(query):
                for record in table.records:
                    points[str(record.get_measurement())] = int(record.get_value())
        if stay if stay is not None else sys.stdout.isatty():
            _print_console(console, console_port, demo_accounts)
            console.print("the console, worker and sink keep running: Ctrl-C to stop")
            try:
                console_proc.wait()
            except KeyboardInterrupt:
                pass
    finally:
        pages.shutdown()
        for proc in (worker, sink, pager, console_proc):
            proc.terminate()
        for proc in (worker, sink, pager, console_proc):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()

    table = Table(title=f"ScanTrail demo ({duration:.0f} s of gate traffic)")
    table.add_column("what")
    table.add_column("count", justify="right")
    for schema, n in sorted(published.items()):
        table.add_row(f"published {schema}", str(n))
    for what, n in sorted(extras.items()):
        table.add_row(f"published {what}", str(n))
    table.add_row("hot readings (>= 37.3 °C)", str(len(hot)))
    table.add_row("hot readings with an alert", str(len(hot & flagged)))
    for kind, n in sorted(alerts.items()):
        table.add_row(f"alerts {kind}", str(n))
    table.add_row("pages delivered to the demo webhook", str(pages.received))
    for measurement, n in sorted(points.items()):
        table.add_row(f"InfluxDB points {measurement}", str(n))
    Console().print(table)
    summary = {
        "namespace": namespace,
        "published": dict(published),
        "published_extras": dict(extras),
        "hot_readings": len(hot),
        "hot_readings_alerted": len(hot & flagged),
        "alerts": dict(alerts),
        "influx_points": points,
        "logs": str(logs),
    }
    (logs / "summary.json").write_text(json.dumps(summary, indent=2))
    ok = hot <= flagged and points.get("temperature") == published["temperature/1"]
    if not ok:
        raise click.ClickException(f"the pipeline fell short; see {logs}")

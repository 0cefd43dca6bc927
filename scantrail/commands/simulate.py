"""``scantrail simulate``: many synthetic gates publishing to Kafka.

``--profile districts`` (the default) is the realistic day plus what the
districts did beyond the gates: household ids (households breaking the
one-person-every-two-days quota), yellow and red health codes, phone
check-ins at venues and visitors. ``--profile realistic`` simulates a real day at the gates: morning
and evening peaks by Shanghai local hour, household members passing together,
a few kiosks with skewed clocks and a kiosk outage whose spooled events are
published late, after it comes back. ``--profile plain`` is the steady,
in-order stream that tests recompute exactly.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import click

from ingest.simulate import GateWorld, simulate_events
from scantrail import contract
from scantrail.broker import ensure_topics, make_producer
from scantrail.errors import PublishError
from scantrail.settings import KafkaSettings


@click.command()
@click.option("--kiosks", default=4, show_default=True, help="Number of gates (two per site).")
@click.option("--residents", default=200, show_default=True, help="Number of residents.")
@click.option(
    "--rate",
    default=10.0,
    show_default=True,
    help="Scans per second, all gates (realistic: outings per second, averaged over a day).",
)
@click.option("--duration", default=60.0, show_default=True, help="Seconds of gate traffic.")
@click.option("--seed", default=1, show_default=True, help="Random seed (same seed, same day).")
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z"]),
    default=None,
    help=(
        "Event time of the first scan (RFC 3339 with offset); default now. Records carry "
        "their event time, so a start older than the topics' retention is deleted by the "
        "broker: create topics with SCANTRAIL_KAFKA_RETENTION_DAYS=0 for historical runs."
    ),
)
@click.option(
    "--profile",
    type=click.Choice(["plain", "realistic", "districts"]),
    default="districts",
    show_default=True,
    help=(
        "realistic: peaks, households, skewed clocks, an outage; plain: steady and in order; "
        "districts: the realistic day plus household ids, yellow/red codes, venue check-ins "
        "and visitors."
    ),
)
@click.option(
    "--realtime/--fast",
    default=True,
    show_default=True,
    help="Pace events to their event times, or publish as fast as the broker takes them.",
)
def simulate(
    kiosks: int,
    residents: int,
    rate: float,
    duration: float,
    seed: int,
    start: datetime | None,
    profile: str,
    realtime: bool,
) -> None:
    """Publish scan, temperature and quarantine events from simulated gates.

    Events go to the topics of SCANTRAIL_KAFKA_BOOTSTRAP with acks=all; the
    run ends with a JSON summary of what the broker acknowledged.
    """
    settings = KafkaSettings()
    ensure_topics(settings)
    if profile == "plain":
        world = GateWorld(kiosks=kiosks, residents=residents, seed=seed)
    elif profile == "districts":
        realistic = GateWorld.realistic(kiosks=kiosks, residents=residents, seed=seed)
        world = GateWorld.districts(
            kiosks=kiosks,
            residents=residents,
            seed=seed,
            day_shape=True,
            skewed_kiosk_share=realistic.skewed_kiosk_share,
            outages=realistic.outages,
        )
    else:
        world = GateWorld.realistic(kiosks=kiosks, residents=residents, seed=seed)
    # Pace by true time: a skewed kiosk's stamps are off, and spooled events are
    # published as soon as their outage ends (a catching-up kiosk does not wait).
    skew = world.clock_skew()
    first = start or datetime.now(UTC)
    producer = make_producer(settings, client_id="scantrail-simulate")
    counts: Counter[str] = Counter()
    failures: list[str] = []
    wall_start = time.monotonic()
    last_report = wall_start

    def on_error(exc: BaseException) -> None:
        failures.append(str(exc))

    for event in simulate_events(world, first, rate, timedelta(seconds=duration)):
        if realtime and isinstance(event, contract.ScanEvent | contract.TemperatureReading):
            true_time = event.time - skew.get(event.kiosk_id, timedelta(0))
            due = (true_time - first).total_seconds()
            lag = due - (time.monotonic() - wall_start)
            if lag > 0:
                time.sleep(lag)
        producer.send(
            settings.topic(event.TOPIC),
            key=event.key(),
            value=contract.encode(event),
            timestamp_ms=event.timestamp_ms(),
        ).add_errback(on_error)
        counts[event.SCHEMA] += 1
        now = time.monotonic()
        if now - last_report >= 10:
            last_report = now
            click.echo(f"published {sum(counts.values())} events ...", err=True)
    producer.flush()
    producer.close()
    if failures:
        raise PublishError(f"{len(failures)} events were not acknowledged: {failures[0]}")
    click.echo(
        json.dumps({"published": dict(sorted(counts.items())), "seed": seed, "profile": profile})
    )

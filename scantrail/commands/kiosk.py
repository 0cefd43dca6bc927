"""``scantrail kiosk``: one gate, spooling every event before publishing it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click


@click.command()
@click.option("--kiosk-id", required=True, help="This gate's id, e.g. kiosk-007.")
@click.option("--site-id", required=True, help="The community (site) the gate guards.")
@click.option(
    "--spool",
    "spool_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite spool file; default <state dir>/kiosk/<kiosk-id>.db.",
)
@click.option(
    "--source",
    default=None,
    help="Camera: a device index (0), a video file, an RTSP URL or a folder of images.",
)
@click.option(
    "--pass-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The pass issuer's public key (from `scantrail pass keygen`).",
)
@click.option(
    "--revocations",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Revocation list (JSON, re-read when it changes). Required to check passes.",
)
@click.option(
    "--no-revocations",
    is_flag=True,
    help="Check passes without a revocation list: only when none exists (nothing revoked).",
)
@click.option(
    "--thermometer",
    default="none",
    show_default=True,
    help="serial:/dev/ttyUSB0[@9600], simulated, or none.",
)
@click.option("--direction", type=click.Choice(["in", "out"]), default="in", show_default=True)
@click.option("--simulated", is_flag=True, help="Simulated residents instead of a camera.")
@click.option("--scans", default=100, show_default=True, help="With --simulated: passages.")
@click.option("--rate", default=5.0, show_default=True, help="With --simulated: scans per second.")
@click.option(
    "--heartbeat",
    "heartbeat_s",
    default=30.0,
    show_default=True,
    help="Seconds between heartbeats.",
)
@click.option(
    "--drain-timeout",
    default=120.0,
    show_default=True,
    help="Seconds to wait for the spool to empty at exit.",
)
def kiosk(
    kiosk_id: str,
    site_id: str,
    spool_path: Path | None,
    source: str | None,
    pass_key: Path | None,
    revocations: Path | None,
    no_revocations: bool,
    thermometer: str,
    direction: str,
    simulated: bool,
    scans: int,
    rate: float,
    heartbeat_s: float,
    drain_timeout: float,
) -> None:
    """Run one gate kiosk.

    Every scan and reading is written to a durable local spool first and sent
    to Kafka (SCANTRAIL_KAFKA_BOOTSTRAP) by a background publisher that
    deletes a row only after the broker acknowledged it: a kiosk that loses
    its network keeps scanning and catches up later.
    """
    import signal

    if not simulated and revocations is None and not no_revocations:
        raise click.UsageError(
            "a kiosk checks passes against a revocation list: give --revocations FILE,"
            " or --no-revocations if none exists"
        )
    if revocations is not None and no_revocations:
        raise click.UsageError("--revocations and --no-revocations exclude each other")

    from ingest.kiosk import GateIdentity, Kiosk
    from ingest.kiosk_runner import run_simulated
    from ingest.publisher import SpoolPublisher
    from ingest.spool import Spool
    from scantrail.clock import SystemClock
    from scantrail.settings import KafkaSettings, state_dir

    def stop(signum: int, frame: object) -> None:
        # systemd and Kubernetes stop with SIGTERM: leave through the finally
        # block below, which drains the spool for up to --drain-timeout.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)
    path = spool_path or state_dir() / "kiosk" / f"{kiosk_id}.db"
    if spool_path is None:  # the spool holds scans: its directory is the kiosk user's only
        from scantrail.private import private_dir

        private_dir(path.parent)
    spool = Spool(path)
    gate = Kiosk(GateIdentity(kiosk_id=kiosk_id, site_id=site_id), spool)
    publisher = SpoolPublisher(spool, KafkaSettings())
    publisher.start()
    counts: dict[str, int] = {}
    try:
        if simulated:
            run_simulated(
                gate, publisher, SystemClock(), scans=scans, rate=rate, heartbeat_s=heartbeat_s
            )
        else:
            counts = _run_camera(
                gate, source, pass_key, revocations, thermometer, direction, heartbeat_s
            )
    finally:
        publisher.stop(drain_s=drain_timeout)
    click.echo(
        json.dumps(
            {
                "kiosk_id": kiosk_id,
                "scans_recorded": gate.scans_since_start,
                "last_seq": spool.counter("scan_seq"),
                "spool_depth": spool.depth(),
                "sent": publisher.stats.sent,
                **counts,
            }
        )
    )


def _run_camera(
    kiosk: object,
    source: str | None,
    pass_key: Path | None,
    revocations: Path | None,
    thermometer: str,
    direction: str,
    heartbeat_s: float,
) -> dict[str, int]:
    from dataclasses import asdict

    from ingest.camera import open_source
    from ingest.gate import Gate, run_gate
    from ingest.kiosk import Kiosk
    from ingest.passes import PassVerifier, RevocationList, load_public_key
    from ingest.thermometer import SerialThermometer, SimulatedThermometer, Thermometer
    from scantrail.clock import SystemClock

    if source is None or pass_key is None:
        raise click.UsageError("a camera kiosk needs --source and --pass-key (or use --simulated)")
    assert isinstance(kiosk, Kiosk)  # noqa: S101 - built by the caller
    clock = SystemClock()
    device: Thermometer | None = None
    if thermometer.startswith("serial:"):
        port, _, baud = thermometer.removeprefix("serial:").partition("@")
        device = SerialThermometer(port, baudrate=int(baud or 9600), clock=clock)
    elif thermometer == "simulated":
        device = SimulatedThermometer(seed=1, clock=clock)
    elif thermometer != "none":
        raise click.BadParameter(f"unknown thermometer {thermometer!r}", param_hint="--thermometer")
    # Fail closed: the list must read now; later failures keep the last good one.
    verifier = PassVerifier(
        load_public_key(pass_key), RevocationList(revocations).load() if revocations else None
    )
    if revocations is None:
        logging.getLogger(__name__).warning("checking passes without a revocation list")
    frames = open_source(source)
    gate = Gate(
        kiosk,
        verifier,
        clock,
        direction="out" if direction == "out" else "in",
        thermometer=device,
        measure_after_scan=thermometer == "simulated",
    )
    try:
        counts = run_gate(gate, frames, heartbeat_s=heartbeat_s)
    finally:
        frames.close()
        if device is not None:
            device.close()
    return asdict(counts)

"""The local service scripts survive what a torn-down machine leaves behind.

A session or machine that is killed never runs ``make down``: the pid files
stay, naming processes that are gone or, later, numbers that belong to some
other process. CI once failed exactly so: influxd started and listened, but
the script took the stale pid for the new server, found it dead and gave up.
That failure was a race (it needs the new influxd to write its pid file later
than the script looks), so the first test below passes on an idle machine even
without the fix; the kafka test fails without it every time.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import PrivateInflux, PrivateKafka

pytestmark = pytest.mark.integration


@pytest.fixture
def dead_pid() -> int:
    """The number of a process that has exited (and been reaped)."""
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not ours to stop."""
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def leave_pid_file(path: Path, pid: int) -> Path:
    """What a torn-down session leaves: the service's pid file, naming ``pid``."""
    path.parent.mkdir(parents=True)
    path.write_text(f"{pid}\n")
    return path


def test_influx_starts_over_a_stale_pid_file_of_a_dead_process(
    tmp_path: Path, dead_pid: int
) -> None:
    influxd = PrivateInflux(tmp_path / "influx")
    pid_file = leave_pid_file(tmp_path / "influx" / "influxdb" / "influxd.pid", dead_pid)
    try:
        influxd.start()
        new_pid = int(pid_file.read_text())
        assert new_pid != dead_pid
        assert (
            f"--bolt-path {tmp_path}/influx/influxdb/influxd.bolt"
            in Path(f"/proc/{new_pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        )
    finally:
        influxd.stop()
    assert not pid_file.exists()


def test_influx_never_takes_a_stranger_for_its_server(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    influxd = PrivateInflux(tmp_path / "influx")
    pid_file = leave_pid_file(tmp_path / "influx" / "influxdb" / "influxd.pid", stranger.pid)

    influxd.stop()

    assert stranger.poll() is None, "stop signalled a process that is not influxd"
    try:
        influxd.start()
        assert int(pid_file.read_text()) != stranger.pid
    finally:
        influxd.stop()
    assert stranger.poll() is None


def test_kafka_stop_and_status_ignore_a_stranger_in_the_pid_file(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    broker = PrivateKafka(tmp_path / "broker")
    pid_file = leave_pid_file(tmp_path / "broker" / "kafka" / "kafka.pid", stranger.pid)
    script = str(broker.script)

    status = subprocess.run(
        ["bash", script, "status"], env=broker.env, capture_output=True, text=True
    )
    assert status.returncode == 3
    assert "stopped" in status.stdout

    broker.stop()

    assert stranger.poll() is None, "stop signalled a process that is not the broker"
    assert not pid_file.exists()

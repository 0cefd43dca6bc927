"""The faust app the worker builds: faust's per-message sensor is off, its events as faust's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]

# In a child process: faust's boot services, built by on_init_dependencies,
# outlive the test and upset pytest's shutdown when built in its process.
PROBE = """
import json, sys
from pathlib import Path
from processors.app import create_app
from scantrail.settings import KafkaSettings, WorkerSettings
app, _ = create_app(KafkaSettings(), WorkerSettings(data_dir=Path(sys.argv[1])))
app.on_init_dependencies()  # where faust makes its Monitor a sensor as the app starts
from faust.types.tuples import Message
events = [
    app.create_event(b"k%d" % i, b"v%d" % i, [], Message("t", 0, i, 0.0, 0, [], b"", b"", None))
    for i in range(2)
]
buffer = app.producer.buffer
sizes = [buffer.size]
buffer.pending.put_nowait("a future")
sizes.append(buffer.size)
print(json.dumps({"sensors": [type(s).__name__ for s in app.sensors],
                  "buffer": [type(buffer).__name__, sizes],
                  "monitor": type(app.monitor).__name__,
                  "events": [[type(e) is app.conf.Event, e.app is app, e.key.decode(),
                              e.value.decode(), e.message.offset] for e in events]}))
"""


def probe(script: str, tmp_path: Path) -> Any:
    """What ``script`` prints last (JSON), run in a child process with a data dir under tmp."""
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "worker")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_monitor_hears_no_message(tmp_path: Path) -> None:
    seen = probe(PROBE, tmp_path)
    assert seen["sensors"] == []
    assert seen["monitor"] == "Monitor"  # kept: faust's consumer records offsets on it
    # Events are faust's own, made with the class faust's settings name.
    # The producer buffer counts what waits as faust's does, without asking the settings each time.
    assert seen["buffer"] == ["SettledProducerBuffer", [0, 1]]
    assert seen["events"] == [[True, True, "k0", "v0", 0], [True, True, "k1", "v1", 1]]


FETCH_PROBE = """
import asyncio, json, sys
from pathlib import Path
from processors.app import create_app
from scantrail.settings import KafkaSettings, WorkerSettings
async def made() -> list[int]:
    worker = WorkerSettings(
        data_dir=Path(sys.argv[1]), fetch_min_bytes=65536, fetch_max_wait_ms=15, fetch_idle_wait_ms=900
    )
    app, _ = create_app(KafkaSettings(), worker)
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    flow = consumer.scantrail_fetch_flow
    return [consumer._fetch_min_bytes, consumer._fetch_max_wait_ms, list(vars(flow).values())]
print(json.dumps(asyncio.run(made())))
"""


def test_the_worker_consumer_fetches_as_the_settings_say(tmp_path: Path) -> None:
    """faust has no setting for a fetch's minimum and wait; the worker's reach its consumer.

    It starts idle (one byte, the idle wait) and fetches by the settings' flow once started.
    """
    assert probe(FETCH_PROBE, tmp_path) == [1, 900, [65536, 15, 900]]

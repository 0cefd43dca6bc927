"""The faust app the worker builds: faust's per-message sensor is off, its events as faust's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def test_the_monitor_hears_no_message(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "worker")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["sensors"] == []
    assert seen["monitor"] == "Monitor"  # kept: faust's consumer records offsets on it
    # Events are faust's own, made with the class faust's settings name.
    # The producer buffer counts what waits as faust's does, without asking the settings each time.
    assert seen["buffer"] == ["SettledProducerBuffer", [0, 1]]
    assert seen["events"] == [[True, True, "k0", "v0", 0], [True, True, "k1", "v1", 1]]

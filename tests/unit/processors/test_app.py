"""The faust app the worker builds: faust's per-message sensor is off."""

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
print(json.dumps({"sensors": [type(s).__name__ for s in app.sensors],
                  "monitor": type(app.monitor).__name__}))
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

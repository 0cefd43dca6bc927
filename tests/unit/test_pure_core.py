"""The functional core stays pure: its modules pull in no broker, database, camera or HTTP client."""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE = [
    "processors.screening",
    "processors.baselines",
    "processors.screener",
    "processors.screening_state",
    "processors.screening_policy",
    "processors.trails",
    "processors.contacts",
    "ingest.passes",
    "ingest.pairing",
    "ingest.dedupe",
    "ingest.simulate",
    "sinks.lines",
    "sinks.routing",
    "processors.daily_report",
    "ingest.admission",
    "ingest.visitors",
    "ingest.venues",
]
FORBIDDEN = (
    "faust",
    "kafka",
    "aiokafka",
    "influxdb_client",
    "cv2",
    "pyzbar",
    "sqlite3",
    "aiohttp",
    "smtplib",
    "serial",
)


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io_library(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in {FORBIDDEN!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"{module} imports {out.stdout.strip()}"

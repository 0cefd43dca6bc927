"""The framework's own limit: a faust agent that only decodes each record of a topic.

Run by ``bench/bench_stream.py`` as a subprocess next to the bare kafka-python
consumer (the ceiling) and the worker. It is the best any faust agent could do
on this machine (the same batches the worker takes, ``contract.decode`` on
every record, no rules, no state, no sends), so it shows how much of the gap
to the ceiling is faust's own per-message machinery and how much is the
worker's work.

Usage: ``faust_floor.py BOOTSTRAP TOPIC N OUT.json`` (bounded by the caller's timeout).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import faust

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from processors.batching import Batching  # noqa: E402
from scantrail import contract  # noqa: E402


def main() -> None:
    bootstrap, topic_name, wanted, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    batching = Batching()
    app = faust.App(
        f"faust-floor-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="faust-floor-"),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
    )
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    seen = {"count": 0, "first": 0.0}

    @app.agent(topic)
    async def decode_only(stream: Any) -> None:
        async for events in stream.take_events(batching.max_events, batching.within_s):
            if not seen["count"]:
                seen["first"] = time.monotonic()
            for event in events:
                contract.decode(event.value)
            seen["count"] += len(events)
            if seen["count"] >= wanted:
                seconds = time.monotonic() - seen["first"]
                figures = {
                    "temperatures": seen["count"],
                    "seconds_from_first_batch": round(seconds, 2),
                    "events_per_second": round(seen["count"] / seconds),
                    "batch": {"max_events": batching.max_events, "within_s": batching.within_s},
                }
                Path(out).write_text(json.dumps(figures))
                os._exit(0)  # no shutdown: nothing to commit, and it takes seconds

    worker = faust.Worker(app, loglevel="warning")
    worker.spinner = None  # see processors.worker: a spinner turns on debug logging
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()

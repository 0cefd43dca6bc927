"""The framework's own limits: a faust agent that only decodes, or decodes and writes a row.

Run by ``bench/bench_stream.py`` as a subprocess next to the bare kafka-python
consumer (the ceiling) and the worker, in two modes:

* ``decode`` -- the same batches the worker takes and ``contract.decode`` on
  every record, nothing else: the best any faust agent could do here;
* ``write`` -- the same, plus one table row per record (RocksDB and its
  changelog topic, as the worker writes one person's state per reading);
* ``decode-in-place`` -- ``decode`` on faust with the delivery change the
  worker runs (:mod:`processors.faust_delivery`: a message handed to the
  agents in place, without four tasks, when the handing need not wait), so
  the worker is also compared with the floor of the faust it runs on.

They show how much of the gap to the ceiling is faust's own per-message and
per-write machinery, and how much is the worker's work.

Usage: ``faust_floor.py BOOTSTRAP TOPIC PARTITIONS N MODE OUT.json [APP_ID]`` (bounded by
the caller's timeout).
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

from processors import faust_delivery  # noqa: E402
from processors.batching import Batching, acting_for  # noqa: E402
from scantrail import contract  # noqa: E402
from scantrail.settings import WorkerSettings  # noqa: E402


def main() -> None:
    bootstrap, topic_name, partitions, wanted, mode, out = sys.argv[1:7]
    # The caller names the app so that it can delete the app's topics afterwards.
    app_id = sys.argv[7] if len(sys.argv) > 7 else f"faust-floor-{uuid.uuid4().hex[:8]}"
    writes = mode == "write"
    if mode == "decode-in-place":
        faust_delivery.install()
    settings = WorkerSettings()  # batches as the worker takes them
    batching = Batching(settings.batch_max_events, settings.batch_wait_ms / 1000)
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="rocksdb://",
        datadir=tempfile.mkdtemp(prefix="faust-floor-"),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_partitions=int(partitions),
        producer_linger_ms=settings.producer_linger_ms,
    )
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    rows = app.Table("rows", default=None, key_type=bytes, partitions=int(partitions))
    seen = {"count": 0, "first": 0.0}

    @app.agent(topic)
    async def decode_only(stream: Any) -> None:
        async for events in stream.take_events(batching.max_events, batching.within_s):
            if not seen["count"]:
                seen["first"] = time.monotonic()
            for event in events:
                reading = contract.decode(event.value)
                if writes:
                    with acting_for(event):
                        rows[event.message.key or b""] = {"event_id": reading.event_id}
            seen["count"] += len(events)
            if seen["count"] >= int(wanted):
                seconds = time.monotonic() - seen["first"]
                figures = {
                    "mode": mode,
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

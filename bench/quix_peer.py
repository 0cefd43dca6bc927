"""The Quix Streams peer of the person stage: the same rule over one state per person.

Run by ``bench/bench_stream.py`` with the interpreter of ``.venv-quix`` (Quix
Streams 3.28 pins confluent-kafka below 2.13, the project pins 2.16.1, so it
cannot share the project's venv)::

    .venv-quix/bin/python bench/quix_peer.py BOOTSTRAP TOPIC N OUT.json STATE_DIR [GROUP]

It reads the temperature topic from the start, keeps the readings of a
person, repartitions them by person (``group_by``, Quix's own repartition
topic, as the worker's person stage does with its forward), and runs
:func:`processors.screening.judge_reading_for_person` over a RocksDB state per
person (changelog topics on, Quix's default checkpointing). It stops after
``N`` readings of persons and writes the rate to ``OUT.json``.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from quixstreams import Application  # noqa: E402

from processors.screening import judge_reading_for_person  # noqa: E402
from processors.screening_policy import ScreeningPolicy  # noqa: E402
from processors.screening_state import PersonState  # noqa: E402
from scantrail import contract  # noqa: E402


def main() -> None:
    bootstrap, topic_name, n_text, out, state_dir = sys.argv[1:6]
    # The caller names the group: Quix names its internal topics after it.
    group = sys.argv[6] if len(sys.argv) > 6 else f"quix-peer-{uuid.uuid4().hex[:8]}"
    n = int(n_text)
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        processing_guarantee="at-least-once",
    )
    policy = ScreeningPolicy()
    topic = app.topic(topic_name, value_deserializer="json", key_deserializer="bytes")
    progress: dict[str, Any] = {"count": 0, "alerts": 0, "first": None, "last": None}

    def judge(value: dict[str, Any], state: Any) -> None:
        if progress["first"] is None:
            progress["first"] = time.monotonic()
        reading = contract.from_dict(value)
        assert isinstance(reading, contract.TemperatureReading)
        raw = state.get("person")
        person = PersonState() if raw is None else PersonState.from_dict(raw)
        alerts, _ = judge_reading_for_person(person, reading, policy)
        state.set("person", person.to_dict())
        progress["alerts"] += len(alerts)
        progress["count"] += 1
        if progress["count"] >= n:
            progress["last"] = time.monotonic()
            app.stop()

    sdf = app.dataframe(topic)
    sdf = sdf.filter(lambda value: value.get("person_id") is not None)
    sdf = sdf.group_by(lambda value: value["person_id"], name="by-person")
    sdf = sdf.update(judge, stateful=True)
    started = time.monotonic()
    app.run()
    first = progress["first"] or started
    last = progress["last"] or time.monotonic()
    Path(out).write_text(
        json.dumps(
            {
                "completed": progress["count"] >= n,
                "readings_of_persons": progress["count"],
                "alerts": progress["alerts"],
                "seconds_from_first": round(last - first, 2),
                "seconds_from_start": round(last - started, 2),
                "events_per_second": round(progress["count"] / max(1e-9, last - first)),
            }
        )
    )


if __name__ == "__main__":
    main()

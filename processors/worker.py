"""Assemble the live worker: app, agents, web views."""

from __future__ import annotations

from typing import Any

import faust

from processors.agents import Outcomes
from processors.app import create_app
from processors.live import install_screening
from processors.live_trails import install_trails
from processors.screening_policy import SitePolicies
from scantrail.broker import ensure_topics
from scantrail.settings import KafkaSettings, WorkerSettings


def build_worker(loglevel: str = "info") -> faust.Worker:
    kafka = KafkaSettings()
    settings = WorkerSettings()
    ensure_topics(kafka)
    app, topics = create_app(kafka, settings)
    outcomes = Outcomes()
    install_screening(app, topics, SitePolicies(), outcomes, kafka.partitions)
    install_trails(app, topics, outcomes, kafka.partitions)

    @app.page("/stats")
    async def stats(web: Any, request: Any) -> Any:
        return web.json(outcomes.as_dict())

    worker = faust.Worker(app, loglevel=loglevel)
    # No spinner: with one (at warning level on a terminal), faust sets the root
    # logger to DEBUG and aiokafka's debug records cost about a tenth of the CPU.
    worker.spinner = None
    return worker

"""Contact trails, live: the trail index in faust tables and ``GET /trace`` on the worker.

Two stores, each keyed the way Kafka partitions its input:

* ``trails[person_id]`` -- a :class:`~processors.trails.Trail`, fed by
  ``scantrail.scans`` (keyed by person);
* ``visits[site_id|hour]`` -- a :class:`~processors.trails.SiteVisits` per site
  and hour of event time, fed by ``<app>-visits-by-site`` (keyed by site).
  Hour buckets keep every table value small, so adding a visit never rewrites
  a site's whole history.

Both are global tables: every worker restores all partitions from the
changelogs, so whichever worker an epidemiologist's request reaches answers it
in full, with the same pure :func:`processors.contacts.trace` the offline
``scantrail trace`` and ``scantrail replay`` run.

Every scan is forwarded to the site stream even when the person's trail has
already seen it: a crash between the trail write and the send must not lose
the visit, and the hour bucket drops the duplicate id itself.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import faust

from processors.agents import Outcomes
from processors.app import Topics
from processors.contacts import ContactPolicy, trace
from processors.trails import RETENTION, SiteVisits, Trail, TrailSlice, VisitSlice, to_micros
from scantrail import contract
from scantrail.contract import decode_as
from scantrail.errors import ContractError

log = logging.getLogger(__name__)

HOUR_US = 3600 * 1_000_000


def bucket_key(site_id: str, micros: int) -> bytes:
    return f"{site_id}|{micros // HOUR_US}".encode()


class TableIndex:
    """The trace lookups over the two tables (decoded on demand)."""

    def __init__(self, trails: Any, visits: Any) -> None:
        self.trails = trails
        self.visits = visits

    def trail_between(self, person_id: str, start: int, end: int) -> TrailSlice:
        raw = self.trails.get(person_id.encode())
        return (Trail() if raw is None else Trail.from_dict(raw)).between(start, end)

    def visits_between(self, site_id: str, start: int, end: int) -> VisitSlice:
        parts: list[VisitSlice] = []
        for hour in range(start // HOUR_US, end // HOUR_US + 1):
            raw = self.visits.get(f"{site_id}|{hour}".encode())
            if raw is not None:
                parts.append(SiteVisits.from_dict(raw).between(start, end))
        if len(parts) == 1:
            return parts[0]
        return VisitSlice(
            [t for p in parts for t in p.times],
            [x for p in parts for x in p.persons],
            [k for p in parts for k in p.kiosks],
            [e for p in parts for e in p.event_ids],
        )


def install_trails(
    app: faust.App,
    topics: Topics,
    outcomes: Outcomes,
    partitions: int,
    retention: timedelta = RETENTION,
) -> TableIndex:
    app_id = app.conf.id
    visits_topic = app.topic(
        f"{app_id}-visits-by-site",
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        internal=True,
    )
    trails = app.GlobalTable("trails", default=None, key_type=bytes, partitions=partitions)
    visits = app.GlobalTable("visits", default=None, key_type=bytes, partitions=partitions)
    index = TableIndex(trails, visits)

    @app.agent(topics.scans, name="trail-persons")
    async def trail_persons(stream: Any) -> None:
        async for event in stream.events():
            try:
                scan = decode_as(event.value, contract.ScanEvent)
            except ContractError as exc:
                # The gate agent reads the same topic and dead-letters it once;
                # here it is only counted.
                outcomes.counts["trail_invalid"] += 1
                log.debug("trail: skipping invalid scan: %s", exc)
                continue
            at = to_micros(scan.scanned_at)
            raw = trails.get(scan.person_id.encode())
            trail = Trail() if raw is None else Trail.from_dict(raw)
            trail.expire(at - to_micros_delta(retention))
            if trail.add(at, scan.site_id, scan.kiosk_id, scan.direction, scan.event_id):
                trails[scan.person_id.encode()] = trail.to_dict()
                outcomes.counts["trail"] += 1
            await visits_topic.send(key=scan.site_id.encode(), value=event.value)

    @app.agent(visits_topic, name="trail-sites")
    async def trail_sites(stream: Any) -> None:
        async for event in stream.events():
            scan = decode_as(event.value, contract.ScanEvent)
            at = to_micros(scan.scanned_at)
            key = bucket_key(scan.site_id, at)
            raw = visits.get(key)
            bucket = SiteVisits() if raw is None else SiteVisits.from_dict(raw)
            if bucket.add(at, scan.person_id, scan.kiosk_id, scan.event_id):
                visits[key] = bucket.to_dict()
                outcomes.counts["visit"] += 1

    @app.timer(interval=3600.0)
    async def forget_old_visits() -> None:
        """Drop hour buckets past the retention (trails expire as their persons scan)."""
        horizon = (to_micros(datetime.now(UTC)) - to_micros_delta(retention)) // HOUR_US
        old = [k for k in list(visits.keys()) if int(k.rsplit(b"|", 1)[1]) < horizon]
        for key in old:
            del visits[key]
        if old:
            log.info("forgot %d hour buckets of visits past the retention", len(old))

    @app.page("/trace")
    async def trace_view(web: Any, request: Any) -> Any:
        query = request.query
        try:
            person = query["person"]
            since = _aware(query["since"])
            until = _aware(query["until"])
            policy = ContactPolicy(
                window=timedelta(minutes=float(query.get("window_minutes", 15))),
                depth=int(query.get("depth", 1)),
                same_kiosk=query.get("same_kiosk", "false").lower() in ("1", "true", "yes"),
            )
        except (KeyError, ValueError) as exc:
            return web.json({"error": f"bad query: {exc}"}, status=400)
        result = trace(
            person,
            since,
            until,
            trail_of=index.trail_between,
            visits_at=index.visits_between,
            policy=policy,
        )
        return web.json(result.to_dict())

    return index


def to_micros_delta(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1_000_000)


def _aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no offset")
    return moment

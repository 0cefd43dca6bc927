"""The console's replay view: ``scantrail replay`` for an epidemiologist's browser.

A replay reads the scans topic from the start of a past period
(:func:`processors.replay.replay_index`, the engine of ``scantrail replay``),
which takes a while for a long period, so it runs as a job on a thread and the
page shows its progress. The job keeps what the command writes out: the
counts of ``summary.json``, the trails (Parquet on request, by
:func:`processors.replay_report.write_trails`), the summary plot
(:func:`~processors.replay_report.plot_summary`) and a trace of each named
person (:func:`processors.contacts.trace`). A site narrows the counts, the
trails and the plot to that site's scans; contacts are still found at every
site, as the live system finds them.

Nothing of a replay is shown before its audit records are acknowledged by the
broker: a replay that cannot be audited fails.

Parsing and summarising are pure; :func:`run` does the I/O.
"""

from __future__ import annotations

import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from processors.contacts import ContactPolicy, Trace
from scantrail.contract import ScanEvent
from scantrail.pseudonyms import why_not_pseudonymous
from scantrail.settings import KafkaSettings

#: The longest period one replay may read (the worker keeps 28 days of trails; a month of slack).
MAX_DAYS = 31
MAX_PERSONS = 10
#: Two cores: one replay per person and two at once, so the console keeps answering.
MAX_RUNNING = 2
KEEP_S = 3600.0
KEEP_JOBS = 20

State = Literal["running", "done", "failed"]
Audit = Callable[..., None]  # (action, outcome, **audit_record fields); raises without an ack


class ReplayCancelled(Exception):
    """The console is stopping: the job ends at its next progress report."""


@dataclass(frozen=True)
class ReplayRequest:
    since: datetime
    until: datetime
    site: str
    policy: ContactPolicy
    persons: tuple[str, ...]

    @property
    def window_minutes(self) -> float:
        return self.policy.window.total_seconds() / 60


def parse_request(form: Mapping[str, Any], tz: ZoneInfo) -> ReplayRequest:
    """The replay a form asks for; ``ValueError`` says what is wrong (never echoing a person)."""
    try:
        since = datetime.fromisoformat(str(form.get("since", "")))
        until = datetime.fromisoformat(str(form.get("until", "")))
        window = float(str(form.get("window", "15")))
        depth = int(str(form.get("depth", "1")))
    except ValueError as exc:
        raise ValueError(f"replay: {exc}") from None
    since = since if since.tzinfo else since.replace(tzinfo=tz)
    until = until if until.tzinfo else until.replace(tzinfo=tz)
    if since > until or until - since > timedelta(days=MAX_DAYS):
        raise ValueError(f"replay: a period of at most {MAX_DAYS} days, since before until")
    if not 0 <= window <= 240 or depth not in (1, 2):
        raise ValueError("replay: window 0-240 min, depth 1 or 2")
    site = str(form.get("site", "")).strip()[:64]
    raw = str(form.get("persons", "")).replace(",", " ").split()
    persons = tuple(dict.fromkeys(raw))
    if len(persons) > MAX_PERSONS:
        raise ValueError(f"replay: at most {MAX_PERSONS} persons to trace")
    for person in persons:
        if (why := why_not_pseudonymous(person)) is not None or len(person) > 128:
            raise ValueError(f"replay: a person {why or 'id is too long'}")
    policy = ContactPolicy(
        window=timedelta(minutes=window), depth=depth, same_kiosk=form.get("same_kiosk") == "1"
    )
    return ReplayRequest(since, until, site, policy, persons)


def summarize(scans: list[ScanEvent]) -> dict[str, Any]:
    """What the period's trails say at a glance: per site, and per person."""
    per_person: dict[str, list[ScanEvent]] = {}
    per_site: dict[str, list[ScanEvent]] = {}
    for scan in scans:
        per_person.setdefault(scan.person_id, []).append(scan)
        per_site.setdefault(scan.site_id, []).append(scan)
    lengths = [len(trail) for trail in per_person.values()]
    return {
        "scans": len(scans),
        "persons": len(per_person),
        "sites": len(per_site),
        "kiosks": len({(s.site_id, s.kiosk_id) for s in scans}),
        "scans_per_person_median": statistics.median(lengths) if lengths else 0,
        "scans_per_person_max": max(lengths, default=0),
        "persons_at_several_sites": sum(
            1 for trail in per_person.values() if len({s.site_id for s in trail}) > 1
        ),
        "by_site": [
            {
                "site": site,
                "scans": len(rows),
                "persons": len({s.person_id for s in rows}),
                "kiosks": len({s.kiosk_id for s in rows}),
                "first": min(s.scanned_at for s in rows),
                "last": max(s.scanned_at for s in rows),
            }
            for site, rows in sorted(per_site.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        ],
    }


@dataclass
class ReplayJob:
    id: str
    owner: str
    request: ReplayRequest
    started: float
    state: State = "running"
    phase: str = "reading"
    done: int = 0
    total: int | None = None
    error: str = ""
    counts: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    scans: list[ScanEvent] = field(default_factory=list, repr=False)
    traces: list[Trace] = field(default_factory=list, repr=False)
    plot_png: bytes = field(default=b"", repr=False)
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def progress(self, done: int, total: int) -> None:
        """The engine's progress callback (records read, records to read)."""
        if self.cancel.is_set():
            raise ReplayCancelled(self.id)
        self.done, self.total = done, total

    def view(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "phase": self.phase,
            "done": self.done,
            "total": self.total,
            "error": self.error,
            "seconds": round((self.finished or time.time()) - self.started, 1),
        }


class ReplayJobs:
    """The running and recent replays of this console process (a restart forgets them)."""

    def __init__(self) -> None:
        self.jobs: dict[str, ReplayJob] = {}

    def running(self, owner: str | None = None) -> list[ReplayJob]:
        return [
            j
            for j in self.jobs.values()
            if j.state == "running" and (owner is None or j.owner == owner)
        ]

    def new(self, owner: str, request: ReplayRequest, now: float) -> ReplayJob | None:
        """A job, or None when this person or the console already runs as many as it may."""
        self.prune(now)
        if self.running(owner) or len(self.running()) >= MAX_RUNNING:
            return None
        job = ReplayJob(secrets.token_urlsafe(12), owner, request, now)
        self.jobs[job.id] = job
        return job

    def of(self, owner: str) -> list[ReplayJob]:
        return sorted(
            (j for j in self.jobs.values() if j.owner == owner),
            key=lambda j: j.started,
            reverse=True,
        )

    def prune(self, now: float) -> None:
        finished = sorted(
            (j for j in self.jobs.values() if j.finished is not None), key=lambda j: j.started
        )
        for i, job in enumerate(finished):
            old = job.finished is not None and now - job.finished > KEEP_S
            if old or len(finished) - i > KEEP_JOBS:
                del self.jobs[job.id]

    def cancel_all(self) -> None:
        for job in self.running():
            job.cancel.set()


def run(kafka: KafkaSettings, job: ReplayJob, audit: Audit) -> None:
    """Replay, trace, plot and audit; on a thread. The job's state says how it ended."""
    from processors.contacts import trace
    from processors.replay import replay_index
    from processors.replay_report import plot_summary

    req = job.request
    try:
        index, scans, stats = replay_index(
            kafka, req.since, req.until, req.policy.window, progress=job.progress
        )
        if req.site:
            scans = [s for s in scans if s.site_id == req.site]
        job.phase = "tracing"
        traces = [
            trace(person, req.since, req.until, stores=index, policy=req.policy)
            for person in req.persons
        ]
        job.phase = "plotting"
        with tempfile.TemporaryDirectory(prefix="scantrail-replay-") as tmp:
            plot = Path(tmp) / "summary.png"
            plot_summary(scans, plot)
            job.plot_png = plot.read_bytes()
        job.counts = {
            "records_read": stats.records,
            "scans_in_period": len(scans),
            "invalid_records": stats.invalid,
            "duplicates_ignored": stats.duplicates,
            "persons_traced": len(req.persons),
        }
        job.summary = summarize(scans)
        job.phase = "auditing"
        common = {"since": req.since, "until": req.until}
        audit(
            "replay", "allowed", **common,
            detail={"site": req.site, "window_minutes": req.window_minutes,
                    "scans_in_period": len(scans), "records_read": stats.records,
                    "persons_traced": len(req.persons), "job": job.id},
        )  # fmt: skip
        for result in traces:
            audit(
                "replay_trace", "allowed", person_id=result.index, depth=req.policy.depth,
                contacts_returned=len(result.contacts), **common,
                detail={"window_minutes": req.window_minutes, "same_kiosk": req.policy.same_kiosk,
                        "job": job.id},
            )  # fmt: skip
        job.scans, job.traces = scans, traces
        job.state, job.phase = "done", "done"
    except ReplayCancelled:
        job.state, job.error = "failed", "cancelled: the console stopped"
    except Exception as exc:  # broker down, audit not acknowledged: say so, show nothing
        job.state, job.error = "failed", str(exc)[:500]
    finally:
        job.finished = time.time()

"""``scantrail trace``: the contacts of one person, from a file of scans, offline.

The file is JSON lines, one contract scan per line (what a replay or a topic
dump writes). Every line is decoded through the contract, so a line the live
worker would dead-letter is reported here too (line number and reason, on
stderr) and skipped; the trace itself is the same pure code the worker runs.
"""

from __future__ import annotations

import gc
import json
import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TextIO

import click

from processors.contacts import ContactPolicy
from processors.contacts import trace as run_trace
from processors.trails import TrailIndex
from scantrail.audit import AuditLog, audit_record, local_actor
from scantrail.commands.screen import max_line_bytes_option
from scantrail.contract import (
    EARLIEST_TIME,
    LATEST_TIME,
    AuditChannel,
    AuditOutcome,
    AuditRecord,
    ScanEvent,
    decode,
)
from scantrail.errors import ContractError
from scantrail.jsonl import DEFAULT_MAX_LINE_BYTES, read_lines, too_long
from scantrail.pseudonyms import why_not_pseudonymous

#: The largest --window-minutes: a week (contacts further apart are no contacts).
MAX_WINDOW_MINUTES = 7 * 24 * 60.0


class _Appender(Protocol):
    def append(self, record: AuditRecord) -> None: ...


def audit_log() -> _Appender:
    """Where offline commands' audit records go: ``scantrail.audit`` on the configured broker."""
    from scantrail.settings import KafkaSettings

    return AuditLog(KafkaSettings())


def audit_trace(
    channel: AuditChannel,
    outcome: AuditOutcome,
    person: str,
    since: datetime,
    until: datetime,
    policy: ContactPolicy | None,
    *,
    contacts: int | None = None,
    reason: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """Append the audit record of one offline trace (or its refusal); raises without an ack."""
    record = audit_record(
        at=datetime.now(UTC),
        actor=local_actor(),
        channel=channel,
        action="trace",
        outcome=outcome,
        reason=reason,
        person_id=person,
        since=since,
        until=until,
        depth=None if policy is None else policy.depth,
        contacts_returned=contacts,
        detail={
            **({} if policy is None else {"window_minutes": policy.window.total_seconds() / 60}),
            **(detail or {}),
        },
    )
    audit_log().append(record)


class AwareDateTime(click.ParamType):
    """An RFC 3339 time with an offset; a naive time is refused, as in the contract."""

    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            moment = value
        else:
            try:
                moment = datetime.fromisoformat(str(value))
            except ValueError:
                self.fail(f"{value!r} is not an RFC 3339 time", param, ctx)
        if moment.tzinfo is None:
            self.fail(f"{value!r} has no offset (write e.g. 2020-02-10T08:00:00+08:00)", param, ctx)
        try:
            inside = EARLIEST_TIME <= moment <= LATEST_TIME
        except OverflowError:
            inside = False
        if not inside:
            self.fail(
                f"{value!r} is outside {EARLIEST_TIME.date()}..{LATEST_TIME.date()}", param, ctx
            )
        return moment


class WindowMinutes(click.ParamType):
    """Minutes between 0 and a week, finite (inf, nan and 1e300 are refused)."""

    name = "MINUTES"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            minutes = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(minutes) or not 0 <= minutes <= MAX_WINDOW_MINUTES:
            self.fail(f"{value!r} is not between 0 and {MAX_WINDOW_MINUTES:g}", param, ctx)
        return minutes


def load_scans(
    lines: BinaryIO, index: TrailIndex, errors: TextIO, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> tuple[int, int]:
    """Add every valid scan to ``index``; report bad lines; return (lines read, bad lines).

    Lines are numbered as :mod:`scantrail.jsonl` does for every offline command.
    """
    read = bad = 0
    for line in read_lines(lines, max_line_bytes):
        read += 1
        if line.data is None:
            bad += 1
            click.echo(f"line {line.number}: {too_long(line, max_line_bytes)}", file=errors)
            continue
        try:
            event = decode(line.data, expect=ScanEvent)
        except ContractError as exc:
            bad += 1
            click.echo(f"line {line.number}: {exc}", file=errors)
            continue
        if isinstance(event, ScanEvent):  # always, given expect=ScanEvent
            index.add_event(event)
    return read, bad


@click.command()
@click.option(
    "--scans",
    "scans_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON lines file of scan/1 events (a topic dump or replay output).",
)
@click.option("--person", required=True, help="The index person's pseudonymous id.")
@click.option(
    "--since", required=True, type=AwareDateTime(), help="Start of the period (inclusive)."
)
@click.option("--until", required=True, type=AwareDateTime(), help="End of the period (inclusive).")
@click.option(
    "--window-minutes",
    type=WindowMinutes(),
    default=15,
    show_default=True,
    help="Largest time difference between two scans at one site that counts (inclusive).",
)
@click.option("--depth", type=click.IntRange(1, 2), default=1, show_default=True)
@click.option("--same-kiosk", is_flag=True, help="Count only scans at the same kiosk.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv"]),
    default="json",
    show_default=True,
    help="json: the full trace with evidence; csv: a line list, one row per contact.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw the contact graph and timeline to FILE.png or FILE.html.",
)
@max_line_bytes_option
def trace(
    scans_path: Path,
    person: str,
    since: datetime,
    until: datetime,
    window_minutes: float,
    depth: int,
    same_kiosk: bool,
    fmt: str,
    plot: Path | None,
    max_line_bytes: int,
) -> None:
    """Find the contacts of a person from a file of scans.

    Two persons are contacts when scanned at the same site within the window
    of each other; with --depth 2, contacts of contacts are found too. Times in
    the output use the offset of --since. Exits 1 when there were lines and none was a usable scan.
    """
    if (why := why_not_pseudonymous(person)) is not None:
        audit_trace("cli", "refused", person, since, until, None, reason=f"person {why}")
        raise click.BadParameter(why, param_hint="--person")
    if since > until:
        audit_trace("cli", "refused", person, since, until, None, reason="since after until")
        raise click.BadParameter("--since is after --until", param_hint="--since")
    if plot is not None and plot.suffix.lower() not in (".png", ".html", ".htm"):
        raise click.BadParameter("the plot file must end in .png or .html", param_hint="--plot")
    policy = ContactPolicy(
        window=timedelta(minutes=window_minutes), depth=depth, same_kiosk=same_kiosk
    )
    index = TrailIndex()
    with scans_path.open("rb") as lines:
        read, bad = load_scans(lines, index, sys.stderr, max_line_bytes)
    index.settle()
    gc.freeze()  # the index is long-lived; see TrailIndex.settle
    click.echo(
        f"{read} lines: {index.added} scans, {index.ignored} duplicates ignored, "
        f"{bad} invalid lines skipped",
        err=True,
    )
    if bad and read == bad:  # an empty file is no error
        raise click.ClickException(f"no usable line in {scans_path} ({bad} bad)")
    if not index.knows(person):
        click.echo(f"warning: no scans of {person!r} in {scans_path}", err=True)
    result = run_trace(
        person,
        since,
        until,
        stores=index,
        policy=policy,
    )
    # Audited (and acknowledged by the broker) before any of it is shown.
    audit_trace(
        "cli",
        "allowed",
        person,
        since,
        until,
        policy,
        contacts=len(result.contacts),
        detail={"source": scans_path.name},
    )
    if fmt == "csv":
        from processors.trace_report import to_csv

        click.echo(to_csv(result), nl=False)
    else:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    if plot is not None:
        from processors.trace_report import plot as draw

        draw(result, plot)
        click.echo(f"plot written to {plot}", err=True)

"""``scantrail replay``: an epidemiologist's re-run of a past period of scans."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import click

from scantrail.commands.trace import AwareDateTime


@click.command()
@click.option(
    "--since", required=True, type=AwareDateTime(), help="Start of the period (inclusive)."
)
@click.option("--until", required=True, type=AwareDateTime(), help="End of the period (inclusive).")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for trails.parquet, traces/ and plots.",
)
@click.option("--person", "persons", multiple=True, help="Trace this person (repeatable).")
@click.option(
    "--window-minutes",
    type=click.FloatRange(min=0),
    default=15,
    show_default=True,
    help="Contact window; change it to ask 'what if'.",
)
@click.option("--depth", type=click.IntRange(1, 2), default=1, show_default=True)
@click.option("--same-kiosk", is_flag=True, help="Count only scans at the same kiosk.")
def replay(
    since: datetime,
    until: datetime,
    out: Path,
    persons: tuple[str, ...],
    window_minutes: float,
    depth: int,
    same_kiosk: bool,
) -> None:
    """Read the scans topic for a period and write trails, traces and plots.

    Offsets are looked up by time on every partition, and the same pure trail
    index and contact search as the live worker answer, so a replay of a
    period gives what the live system answered for it.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from processors.contacts import ContactPolicy, trace
    from processors.replay import replay_index
    from processors.replay_report import plot_summary, write_trails
    from processors.trace_report import plot as draw
    from processors.trace_report import to_csv
    from scantrail.commands.trace import audit_trace
    from scantrail.pseudonyms import why_not_pseudonymous
    from scantrail.settings import KafkaSettings

    if since > until:
        raise click.BadParameter("--since is after --until", param_hint="--since")
    for person in persons:
        if (why := why_not_pseudonymous(person)) is not None:
            audit_trace("replay", "refused", person, since, until, None, reason=f"person {why}")
            raise click.BadParameter(why, param_hint="--person")
    window = timedelta(minutes=window_minutes)
    policy = ContactPolicy(window=window, depth=depth, same_kiosk=same_kiosk)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task("reading scans", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        index, scans, stats = replay_index(KafkaSettings(), since, until, window, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    write_trails(scans, out / "trails.parquet")
    plot_summary(scans, out / "summary.png")
    traces_dir = out / "traces"
    traces_dir.mkdir(exist_ok=True)
    for person in persons:
        result = trace(
            person,
            since,
            until,
            stores=index,
            policy=policy,
        )
        # Audited (and acknowledged by the broker) before the trace is written out.
        audit_trace(
            "replay", "allowed", person, since, until, policy, contacts=len(result.contacts)
        )
        (traces_dir / f"{person}.json").write_text(
            json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"
        )
        (traces_dir / f"{person}.csv").write_text(to_csv(result))
        draw(result, traces_dir / f"{person}.png")
        click.echo(f"{person}: {len(result.contacts)} contacts", err=True)
    summary = {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "window_minutes": window_minutes,
        "depth": depth,
        "records_read": stats.records,
        "scans_in_period": len(scans),
        "invalid_records": stats.invalid,
        "duplicates_ignored": stats.duplicates,
        "persons_traced": list(persons),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    click.echo(json.dumps(summary))

"""``scantrail screen``: the fever and gate rules over a JSONL file, no Kafka needed.

Runs the same pure rule modules as the live worker (processors.screening and
processors.baselines), so an officer or a test can check what the pipeline
would have raised for a day's records.
"""

from __future__ import annotations

from pathlib import Path

import click

from processors.screen_offline import screen_file
from processors.screening_policy import DEFAULT_TIMEZONE, PolicyError, SitePolicies
from scantrail.contract import encode
from scantrail.jsonl import DEFAULT_MAX_LINE_BYTES

#: The --max-line-bytes option of the offline commands (screen, trace).
max_line_bytes_option = click.option(
    "--max-line-bytes",
    type=click.IntRange(1, 1 << 30),
    default=DEFAULT_MAX_LINE_BYTES,
    show_default=True,
    envvar="SCANTRAIL_MAX_LINE_BYTES",
    help="Refuse input lines longer than this (each reported by number, never read whole).",
)


def _load_policy(path: Path | None, timezone: str | None) -> SitePolicies:
    obj: object = None
    if path is not None:
        import yaml

        try:
            obj = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise click.BadParameter(f"not valid YAML: {exc}", param_hint="--policy") from None
    try:
        return SitePolicies.from_mapping(obj, timezone=timezone)
    except PolicyError as exc:
        raise click.BadParameter(str(exc), param_hint="--policy/--timezone") from None


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--timezone",
    default=None,
    metavar="ZONE",
    help=f"IANA zone for local dates (quarantine days, baselines). [default: {DEFAULT_TIMEZONE}]",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="YAML with 'default' and per-site 'sites' overrides of the screening policy.",
)
@max_line_bytes_option
def screen(file: Path, timezone: str | None, policy_file: Path | None, max_line_bytes: int) -> None:
    """Screen FILE (scan, temperature and quarantine JSON lines, any order).

    Alerts are printed as alert/1 JSON lines sorted by event time, then kind.
    Bad lines are reported on stderr with their number and skipped; a summary
    goes to stderr too. Quarantine records apply before any scan; when a person
    has several, the last line wins. Exits 1 when there were lines and none was usable.
    """
    policy = _load_policy(policy_file, timezone)
    with file.open("rb") as handle:
        result = screen_file(handle, policy, max_line_bytes)
    for bad in result.bad:
        click.echo(str(bad), err=True)
    for alert in result.alerts:
        click.echo(encode(alert).decode())
    read = ", ".join(f"{n} {schema}" for schema, n in sorted(result.counts.items())) or "0 events"
    click.echo(
        f"screened {read}; {len(result.alerts)} alert(s); {len(result.bad)} bad line(s) skipped",
        err=True,
    )
    if result.bad and not result.counts:  # an empty file is no error: nothing to screen
        raise click.ClickException(f"no usable line in {file} ({len(result.bad)} bad)")

"""The ``scantrail`` command: one entry point, a subcommand per role.

Subcommands are imported only when run, so ``scantrail kiosk --help`` does not
load faust and ``scantrail trace`` does not load OpenCV.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from scantrail import __version__
from scantrail.errors import ScanTrailError
from scantrail.private import PRIVATE_UMASK

# name -> (module:attribute, one-line help shown in `scantrail --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "topics": ("scantrail.commands.topics:topics", "Create the project's Kafka topics."),
    "schema": ("scantrail.commands.schema:schema", "Export the event contract as JSON Schema."),
    "simulate": ("scantrail.commands.simulate:simulate", "Publish events from simulated gates."),
    "worker": ("scantrail.commands.worker:worker", "Run the stream processors (faust)."),
    "sink": ("scantrail.commands.sink:sink", "Run a sink: InfluxDB time series or the pager."),
    "kiosk": ("scantrail.commands.kiosk:kiosk", "Run one gate kiosk (spool first, then Kafka)."),
    "replay": ("scantrail.commands.replay:replay", "Re-run a past period: trails, traces, plots."),
    "demo": ("scantrail.commands.demo:demo", "Run the whole pipeline for a minute and summarise."),
    "pass": ("scantrail.commands.pass_:pass_group", "Issue, revoke and verify electronic passes."),
    "decode": ("scantrail.commands.decode:decode", "Print the QR texts found in image files."),
    "screen": (
        "scantrail.commands.screen:screen",
        "Run the fever and gate rules offline over a JSONL file.",
    ),
    "trace": (
        "scantrail.commands.trace:trace",
        "Find the contacts of a person from a file of scans.",
    ),
    "console": (
        "scantrail.commands.console:console",
        "Serve the web console: alert queue, cases, traces, big screen.",
    ),
    "venue": ("scantrail.commands.venue:venue_group", "Issue venue codes and their posters."),
    "checkin": (
        "scantrail.commands.checkin:checkin",
        "Serve venue check-in pages for phones (spool first, then Kafka).",
    ),
    "visitor": (
        "scantrail.commands.visitor:visitor",
        "Register a visitor without a pass at a kiosk (keyed-hash id).",
    ),
    "report": (
        "scantrail.commands.report:report",
        "Write the daily report (PDF and JSON), once or every day.",
    ),
    "credentials": (
        "scantrail.commands.credentials:credentials",
        "Issue, list and revoke bearer credentials (/trace).",
    ),
    "influx-setup": (
        "scantrail.commands.influx_setup:influx_setup",
        "Bucket retention and least-privilege InfluxDB tokens.",
    ),
    "retention": (
        "scantrail.commands.retention:retention",
        "Retention jobs: tombstone ended quarantine records.",
    ),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr = entry[0].split(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{entry[0]} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="scantrail")
def cli() -> None:
    """ScanTrail: checkpoint scans, fever screening and contact trails on Kafka.

    Services are found through SCANTRAIL_* environment variables; the defaults
    point at the loopback Kafka and InfluxDB that `make up` starts. Run
    `scantrail COMMAND --help` for each role.
    """


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: ScanTrail's own errors print as one line, exit 1."""
    # Whatever a role creates (tables, spools, registries, logs) is its user's only.
    os.umask(PRIVATE_UMASK)
    try:
        return cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ScanTrailError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

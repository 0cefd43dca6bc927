"""``scantrail console``: the command centre's web console, and its accounts."""

from __future__ import annotations

import getpass
import logging
import secrets
from pathlib import Path

import click


@click.group(invoke_without_command=True)
@click.option("--host", default=None, help="Bind address (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8480).")
@click.pass_context
def console(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the web console: alert queue, case view, trace, big screen.

    Accounts come from SCANTRAIL_CONSOLE_ACCOUNTS (default
    <state>/console/accounts.json); add them with `scantrail console adduser`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from scantrail.console.web import Console, serve
    from scantrail.settings import ConsoleSettings, InfluxSettings, KafkaSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = ConsoleSettings(**overrides)  # type: ignore[arg-type]
    app = Console(settings, KafkaSettings(), InfluxSettings())
    if not app.accounts:
        click.echo(
            f"warning: no accounts in {settings.accounts_path()}; "
            "add one with `scantrail console adduser`",
            err=True,
        )
    click.echo(f"console on http://{settings.host}:{settings.port}/", err=True)
    serve(app)


@console.command()
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["officer", "supervisor", "epidemiologist"]),
    required=True,
)
@click.option("--site", "sites", multiple=True, help="A site an officer answers for (repeat).")
@click.option(
    "--accounts",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The accounts file (default: SCANTRAIL_CONSOLE_ACCOUNTS or the state dir).",
)
@click.option(
    "--generate",
    is_flag=True,
    help="Generate a random password and print it once (instead of asking for one).",
)
def adduser(
    name: str, role: str, sites: tuple[str, ...], accounts: Path | None, generate: bool
) -> None:
    """Add (or replace) an account; the password is asked twice, or generated."""
    from scantrail.console.accounts import make_account, save_account
    from scantrail.settings import ConsoleSettings

    path = accounts or ConsoleSettings().accounts_path()
    if generate:
        password = secrets.token_urlsafe(12)
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise click.ClickException("the passwords differ")
    save_account(path, make_account(name, role, list(sites), password))
    click.echo(f"{name} ({role}{': ' + ', '.join(sites) if sites else ''}) saved in {path}")
    if generate:
        click.echo(f"password: {password}")

"""``scantrail credentials``: issue, list and revoke bearer credentials (/trace, the console)."""

from __future__ import annotations

from pathlib import Path

import click

from scantrail.credentials import CredentialStore, add_credential, default_path, revoke

_FILE = click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Credentials file (default SCANTRAIL_CREDENTIALS_FILE or <state dir>/credentials).",
)


@click.group()
def credentials() -> None:
    """Bearer credentials: a principal, its scopes, and only the hash of its token on disk."""


@credentials.command()
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True, help="e.g. trace; repeatable.")
@_FILE
def add(name: str, scopes: tuple[str, ...], path: Path | None) -> None:
    """Issue a credential to NAME and print its token (shown this once only)."""
    target = path or default_path()
    token = add_credential(target, name, scopes)
    click.echo(f"credential for {name} ({','.join(sorted(scopes))}) added to {target}", err=True)
    click.echo(token)


@credentials.command("list")
@_FILE
def list_(path: Path | None) -> None:
    """List the principals and their scopes (never tokens)."""
    for principal in CredentialStore.load(path or default_path()).principals():
        click.echo(f"{principal.name}\t{','.join(sorted(principal.scopes))}")


@credentials.command("revoke")
@click.argument("name")
@_FILE
def revoke_(name: str, path: Path | None) -> None:
    """Remove every credential of NAME (a running worker notices within one request)."""
    removed = revoke(path or default_path(), name)
    if not removed:
        raise click.ClickException(f"no credential of {name!r}")
    click.echo(f"revoked {removed} credential(s) of {name}")

"""``scantrail schema``: the contract as JSON Schema, for docs and other languages."""

from __future__ import annotations

import json
from pathlib import Path

import click

from scantrail.contract import json_schemas


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("docs/schema"),
    show_default=True,
    help="Directory for one <kind>-v<N>.json file per event kind.",
)
def schema(out: Path) -> None:
    """Write the JSON Schema of every event kind in the contract."""
    out.mkdir(parents=True, exist_ok=True)
    for name, doc in json_schemas().items():
        kind, version = name.split("/")
        path = out / f"{kind}-v{version}.json"
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        click.echo(str(path))

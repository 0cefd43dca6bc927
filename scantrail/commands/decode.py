"""``scantrail decode``: read the QR codes in image files, one JSON line per image."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def decode(images: tuple[Path, ...]) -> None:
    """Print {"file": ..., "texts": [...]} for each IMAGE (texts empty if none or unreadable)."""
    import cv2

    from ingest.decode import FrameDecoder

    decoder = FrameDecoder()
    for path in images:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        record: dict[str, object] = {"file": str(path), "texts": []}
        if frame is None:
            record["error"] = "not a readable image"
        else:
            record["texts"] = decoder.decode(frame)
        click.echo(json.dumps(record, ensure_ascii=False))

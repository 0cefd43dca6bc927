"""``scantrail decode``: read the QR codes in image files, one JSON line per image."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--max-pixels",
    type=click.IntRange(1, 1 << 31),
    default=None,
    help="Refuse images with more pixels than this, from their header, before decoding."
    "  [default: 4096 x 2304, a 4K camera]",
)
def decode(images: tuple[Path, ...], max_pixels: int | None) -> None:
    """Print {"file": ..., "texts": [...]} for each IMAGE (texts empty if none or unreadable).

    An image over the pixel limit gets an "error" and is never decoded; when any
    image was refused or unreadable, a summary with the counts goes to stderr.
    """
    from ingest.decode import DEFAULT_MAX_PIXELS, FrameDecoder, ImageTooLarge, read_image

    limit = max_pixels or DEFAULT_MAX_PIXELS
    decoder = FrameDecoder(max_pixels=limit, budget_s=None)
    unreadable = too_large = 0
    for path in images:
        record: dict[str, object] = {"file": str(path), "texts": []}
        try:
            frame = read_image(path, limit)
        except ImageTooLarge as exc:
            too_large += 1
            record["error"] = str(exc)
        else:
            if frame is None:
                unreadable += 1
                record["error"] = "not a readable image"
            else:
                record["texts"] = decoder.decode(frame)
        click.echo(json.dumps(record, ensure_ascii=False))
    if too_large or unreadable:
        click.echo(
            f"{len(images)} image(s): {too_large} over the pixel limit ({limit}),"
            f" {unreadable} unreadable",
            err=True,
        )

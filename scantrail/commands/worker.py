"""``scantrail worker``: the faust stream processors."""

from __future__ import annotations

import click


@click.command()
@click.option("--loglevel", default="info", show_default=True, help="faust log level.")
def worker(loglevel: str) -> None:
    """Run the stream processors: temperatures in, alerts and dead letters out.

    State lives in RocksDB under SCANTRAIL_WORKER_DATA_DIR (default under the
    state dir) with changelog topics on the broker; the HTTP port
    (SCANTRAIL_WORKER_WEB_PORT, default 6066) serves /stats. Stop with Ctrl-C.
    """
    from processors.worker import build_worker

    build_worker(loglevel=loglevel).execute_from_commandline()

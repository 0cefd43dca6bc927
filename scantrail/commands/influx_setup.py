"""``scantrail influx-setup``: bucket retention and the sink's and dashboards' own tokens."""

from __future__ import annotations

import click


@click.command("influx-setup")
def influx_setup() -> None:
    """Give the buckets their retention and make the least-privilege tokens (idempotent).

    Uses the setup (all-access) token of influx.env or SCANTRAIL_INFLUX_TOKEN,
    and writes the sink's write token and the dashboards' read token to
    <state dir>/influx-sink.env and influx-dashboard.env (mode 600).
    """
    from scantrail.influx_access import ensure_role_tokens
    from scantrail.settings import InfluxSettings, RetentionSettings

    days = RetentionSettings().influx_days
    for made in ensure_role_tokens(InfluxSettings(), days):
        state = "created" if made.created else "exists"
        click.echo(f"{made.role} token: {state} ({made.path})")
    click.echo(f"person-level buckets kept {days} days")

"""Least-privilege InfluxDB tokens and bucket retention, made with the operator (setup) token.

``scantrail influx-setup`` (run by ``make up``) makes, idempotently:

* the sink's buckets, with their retention (they hold person ids: 28 days by
  default, ``SCANTRAIL_RETENTION_INFLUX_DAYS``; the watched bucket 28 days);
* a **sink** token: write on both buckets, and read on the main bucket only
  (a person who becomes watched has their recent readings copied from the main
  bucket, the backfill); it cannot read other buckets, create or delete
  buckets, or make tokens;
* a **dashboard** token: read on the main bucket, nothing else.

Each token goes to ``<state dir>/influx-<role>.env`` (600) as
``SCANTRAIL_INFLUX_TOKEN``; :meth:`InfluxSettings.for_role` reads it over
``influx.env``, so the all-access setup token stays in the setup file only.
A token whose file exists and that the server still knows is kept; a
missing or unknown one is made anew (that is also how to rotate: delete the
file, run the command, restart the role, then delete the old token).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scantrail.private import private_dir
from scantrail.settings import InfluxSettings, state_dir

WATCHED_RETENTION_S = 28 * 24 * 3600


@dataclass(frozen=True)
class RoleToken:
    role: str
    token: str
    path: Path
    created: bool


def role_env_path(role: str, base: Path | None = None) -> Path:
    return (base or state_dir()) / f"influx-{role}.env"


def _read_token(path: Path) -> str | None:
    try:
        for row in path.read_text().splitlines():
            name, _, value = row.partition("=")
            if name.strip() == "SCANTRAIL_INFLUX_TOKEN" and value.strip():
                return value.strip()
    except FileNotFoundError:
        pass
    return None


def _write_token(path: Path, token: str) -> None:
    private_dir(path.parent)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"SCANTRAIL_INFLUX_TOKEN={token}\n".encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def ensure_buckets(client: Any, settings: InfluxSettings, retention_days: int) -> dict[str, Any]:
    """The main and watched buckets, created or given their retention; name -> bucket."""
    from influxdb_client import BucketRetentionRules

    api = client.buckets_api()
    wanted = {
        settings.bucket: retention_days * 24 * 3600,
        settings.watched_bucket: WATCHED_RETENTION_S,
    }
    out: dict[str, Any] = {}
    for name, seconds in wanted.items():
        rule = BucketRetentionRules(type="expire", every_seconds=seconds)
        bucket = api.find_bucket_by_name(name)
        if bucket is None:
            bucket = api.create_bucket(bucket_name=name, retention_rules=[rule], org=settings.org)
        else:
            current = [r.every_seconds for r in (bucket.retention_rules or [])]
            if current != [seconds]:
                bucket.retention_rules = [rule]
                bucket = api.update_bucket(bucket)
        out[name] = bucket
    return out


def _permissions(org_id: str, grants: list[tuple[str, str]]) -> list[Any]:
    from influxdb_client import Permission, PermissionResource

    return [
        Permission(
            action=action, resource=PermissionResource(type="buckets", id=bid, org_id=org_id)
        )
        for action, bid in grants
    ]


def ensure_role_tokens(
    admin: InfluxSettings, retention_days: int, base: Path | None = None
) -> list[RoleToken]:
    """Buckets with retention, and the sink and dashboard tokens (see the module docstring)."""
    from influxdb_client import Authorization, InfluxDBClient

    with InfluxDBClient(
        url=admin.url, token=admin.token.get_secret_value(), org=admin.org, timeout=30_000
    ) as client:
        buckets = ensure_buckets(client, admin, retention_days)
        main = buckets[admin.bucket].id
        watched = buckets[admin.watched_bucket].id
        org_id = buckets[admin.bucket].org_id
        grants = {
            "sink": [("write", main), ("write", watched), ("read", main)],
            "dashboard": [("read", main)],
        }
        auths = client.authorizations_api()
        known = {a.token for a in auths.find_authorizations() if a.status == "active"}
        made: list[RoleToken] = []
        for role, wanted in grants.items():
            path = role_env_path(role, base)
            token = _read_token(path)
            if token is not None and token in known:
                made.append(RoleToken(role, token, path, created=False))
                continue
            auth = auths.create_authorization(
                authorization=Authorization(
                    org_id=org_id,
                    permissions=_permissions(org_id, wanted),
                    description=f"scantrail {role} ({admin.bucket})",
                )
            )
            _write_token(path, auth.token)
            made.append(RoleToken(role, auth.token, path, created=True))
        return made

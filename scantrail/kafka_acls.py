"""One Kafka principal per role, SCRAM-SHA-512 credentials and least-privilege ACLs.

The broker denies whatever no ACL allows (StandardAuthorizer). Each role gets
exactly what its code does, on the topics of its namespace:

======== ================================================ =========================
role     may                                              consumer groups
======== ================================================ =========================
kiosk    write scans, temperatures, kiosks                none
worker   read scans, temperatures, quarantine; write      ``<app id>`` (prefix)
         alerts, deadletter, audit; all on its own
         ``<app id>-*`` topics (tables, changelogs)
sink     read temperatures, alerts, kiosks, scans,        ``scantrail-sink`` (prefix)
         quarantine; write deadletter
pager    read alerts, pages; write pages, deadletter      ``scantrail-sink-pager`` (prefix)
analyst  read scans, alerts, audit; write audit only      none (replays assign partitions)
         (a replay that cannot be audited does not run)
console  read alerts, pages, quarantine, scans; write     none (it assigns partitions)
         pages (acknowledge, assign, resolve) and audit
admin    super user: topics, users, ACLs                  (all)
======== ================================================ =========================

Every role may also DESCRIBE the namespace's topics (names and partitions,
never records), so the startup check "do the topics exist" sees them.
:func:`ensure_access` is idempotent: users are upserted with the password in
``<users dir>/<role>.env`` (made once, 600), ACLs are created (an existing
binding is not an error).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scantrail import contract
from scantrail.errors import ServiceError
from scantrail.private import private_dir
from scantrail.settings import KafkaSettings, state_dir


@dataclass(frozen=True)
class Role:
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()  # prefixes, within the namespace
    own_prefix: bool = False  # ALL on topics "<app id>" + anything (faust's internal topics)


ROLES: dict[str, Role] = {
    "kiosk": Role(write=(contract.SCANS, contract.TEMPERATURES, contract.KIOSKS)),
    "worker": Role(
        read=(contract.SCANS, contract.TEMPERATURES, contract.QUARANTINE),
        write=(contract.ALERTS, contract.DEADLETTER, contract.AUDIT),
        own_prefix=True,
    ),
    "sink": Role(
        read=(
            contract.TEMPERATURES,
            contract.ALERTS,
            contract.KIOSKS,
            contract.SCANS,
            contract.QUARANTINE,
        ),
        write=(contract.DEADLETTER,),
        groups=("scantrail-sink",),
    ),
    "pager": Role(
        read=(contract.ALERTS, contract.PAGES),
        write=(contract.PAGES, contract.DEADLETTER),
        groups=("scantrail-sink-pager",),
    ),
    "analyst": Role(
        read=(contract.SCANS, contract.ALERTS, contract.AUDIT), write=(contract.AUDIT,)
    ),
    # The command-centre console follows alerts, pages and quarantine from the
    # beginning (scantrail.console.sources), reads scans for its traces and
    # replays, and records officers' actions on pages and every read of
    # personal data on audit. It never writes an event or an alert.
    "console": Role(
        read=(contract.ALERTS, contract.PAGES, contract.QUARANTINE, contract.SCANS),
        write=(contract.PAGES, contract.AUDIT),
    ),
}
ADMIN = "admin"


@dataclass
class AccessReport:
    users: list[str] = field(default_factory=list)
    acls: int = 0


def users_dir() -> Path:
    return state_dir() / "kafka-users"


def role_password(directory: Path, role: str) -> str:
    """The role's password from ``<dir>/<role>.env``; made (600) on first use."""
    path = directory / f"{role}.env"
    try:
        for row in path.read_text().splitlines():
            name, _, value = row.partition("=")
            if name == "SCANTRAIL_KAFKA_SASL_PASSWORD" and value:
                return value
    except FileNotFoundError:
        pass
    password = secrets.token_urlsafe(24)
    private_dir(directory)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"SCANTRAIL_KAFKA_SASL_USERNAME={role}\n".encode())
        os.write(fd, f"SCANTRAIL_KAFKA_SASL_PASSWORD={password}\n".encode())
    finally:
        os.close(fd)
    return password


def write_client_env(directory: Path, role: str, bootstrap: str, cafile: Path | None) -> Path:
    """Append the connection settings a role needs to its env file (once)."""
    path = directory / f"{role}.env"
    text = path.read_text()
    if "SCANTRAIL_KAFKA_SECURITY_PROTOCOL" not in text:
        extra = [
            f"SCANTRAIL_KAFKA_BOOTSTRAP={bootstrap}",
            "SCANTRAIL_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
            "SCANTRAIL_KAFKA_SASL_MECHANISM=SCRAM-SHA-512",
        ]
        if cafile is not None:
            extra.append(f"SCANTRAIL_KAFKA_SSL_CAFILE={cafile}")
        with path.open("a") as handle:
            handle.write("\n".join(extra) + "\n")
    return path


def bindings(settings: KafkaSettings, role: str, app_id: str) -> list[Any]:
    """The ACL bindings of one role, for the settings' namespace."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    spec = ROLES[role]
    principal = f"User:{role}"
    allow = AclPermissionType.ALLOW
    out: list[Any] = []

    def add(rtype: Any, name: str, pattern: Any, op: Any) -> None:
        out.append(AclBinding(rtype, name, pattern, principal, "*", op, allow))

    literal, prefixed = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
    for topic in contract.ALL_TOPICS:
        add(ResourceType.TOPIC, settings.topic(topic), literal, AclOperation.DESCRIBE)
    for topic in spec.read:
        add(ResourceType.TOPIC, settings.topic(topic), literal, AclOperation.READ)
    for topic in spec.write:
        add(ResourceType.TOPIC, settings.topic(topic), literal, AclOperation.WRITE)
    for group in spec.groups:
        add(ResourceType.GROUP, settings.topic(group), prefixed, AclOperation.READ)
    if spec.own_prefix:
        add(ResourceType.TOPIC, app_id, prefixed, AclOperation.ALL)
        add(ResourceType.GROUP, app_id, prefixed, AclOperation.ALL)
    return out


def ensure_access(
    admin: KafkaSettings,
    namespace_settings: KafkaSettings,
    directory: Path,
    app_id: str,
    roles: tuple[str, ...] = (*ROLES, ADMIN),
) -> AccessReport:
    """Upsert each role's SCRAM-SHA-512 user and create its ACLs (idempotent)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    from scantrail.broker import librdkafka_connection

    client = AdminClient({**librdkafka_connection(admin), "log_level": 0})
    report = AccessReport()
    upserts: list[Any] = [
        UserScramCredentialUpsertion(
            role,
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
            role_password(directory, role).encode(),
        )
        for role in roles
    ]
    try:
        for role, future in client.alter_user_scram_credentials(upserts).items():
            future.result(timeout=30)
            report.users.append(role)
        wanted = [
            b for role in roles if role in ROLES for b in bindings(namespace_settings, role, app_id)
        ]
        for future in client.create_acls(wanted, request_timeout=30).values():
            future.result()
        report.acls = len(wanted)
    except KafkaException as exc:
        if "SECURITY_DISABLED" in str(exc):
            raise ServiceError(
                "the broker has no authorizer, so ACLs cannot be set: it runs an older"
                " configuration; restart it (locally: make down && make up)"
            ) from None
        raise ServiceError(f"Kafka refused the users or ACLs: {exc}") from None
    return report

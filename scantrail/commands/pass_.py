"""``scantrail pass``: issuer keys, issuing, revoking, phone tokens and verifying passes."""

from __future__ import annotations

import base64
import csv
import json
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from scantrail.contract import HealthCode
from scantrail.errors import PassError
from scantrail.settings import state_dir


def _issuer_dir() -> Path:
    return state_dir() / "issuer"


def _now() -> datetime:
    return datetime.now(UTC)


key_option = click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Issuer private key (default: $SCANTRAIL_STATE/issuer/issuer.key).",
)
pub_option = click.option(
    "--public-key",
    "pub_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Issuer public key (default: $SCANTRAIL_STATE/issuer/issuer.pub).",
)
revocations_option = click.option(
    "--revocations",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Revocation list JSON (default: $SCANTRAIL_STATE/issuer/revoked.json).",
)


@click.group("pass")
def pass_group() -> None:
    """Issue, revoke and verify electronic passes (Ed25519, verified offline)."""


@pass_group.command()
@click.option(
    "--dir",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write issuer.key (0600) and issuer.pub (default: $SCANTRAIL_STATE/issuer).",
)
def keygen(out_dir: Path | None) -> None:
    """Create the issuer key pair. The private key never belongs in the repository."""
    from ingest.passes import generate_key, write_private_key, write_public_key

    out_dir = out_dir or _issuer_dir()
    key = generate_key()
    write_private_key(key, out_dir / "issuer.key")
    write_public_key(key, out_dir / "issuer.pub")
    if not (out_dir / "revoked.json").exists():  # kiosks need a list, if an empty one
        from ingest.passes import write_revocations

        write_revocations(out_dir / "revoked.json", {})
    click.echo(f"private key: {out_dir / 'issuer.key'} (mode 0600; keep it off the kiosks)")
    click.echo(f"public key:  {out_dir / 'issuer.pub'} (copy to every kiosk)")


def _residents(
    csv_path: Path | None, people: tuple[str, ...], household: str | None
) -> list[tuple[str, str, HealthCode | None]]:
    rows: list[tuple[str, str, HealthCode | None]] = []
    if csv_path is not None:
        with csv_path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                health = (row.get("health_code") or "").strip() or None
                if health not in (None, "green", "yellow", "red"):
                    raise PassError(f"{csv_path}: bad health_code {health!r}")
                rows.append((row["person_id"].strip(), row["household_id"].strip(), health))  # type: ignore[arg-type]
    for person in people:
        if household is None:
            raise PassError("--person needs --household")
        rows.append((person, household, None))
    if not rows:
        raise PassError("no residents: give --person/--household or --residents CSV")
    return rows


@pass_group.command()
@click.option("--site", required=True, help="Site (community) id the passes admit to.")
@click.option("--household", default=None, help="Household id for --person residents.")
@click.option("--person", "people", multiple=True, help="Pseudonymous person id (repeatable).")
@click.option(
    "--residents",
    "csv_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="CSV with person_id,household_id[,health_code] columns.",
)
@click.option("--days", type=click.IntRange(1, 366), default=14, show_default=True)
@click.option(
    "--health",
    type=click.Choice(["green", "yellow", "red"]),
    default=None,
    help="Health-code colour for residents without one in the CSV.",
)
@click.option(
    "--phone", is_flag=True, help="Phone passes: a device key per pass, shown as live tokens."
)
@click.option(
    "--kind",
    "pass_kind",
    default=None,
    help="Pass kind, e.g. worker (sites may exempt it from the household outing quota).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("passes"),
    show_default=True,
)
@key_option
def issue(
    site: str,
    household: str | None,
    people: tuple[str, ...],
    csv_path: Path | None,
    days: int,
    health: HealthCode | None,
    phone: bool,
    pass_kind: str | None,
    out_dir: Path,
    key_path: Path | None,
) -> None:
    """Issue signed passes: QR PNGs plus a printable PDF sheet (paper) or wallets (phone)."""
    from ingest.pass_sheet import write_pass_png, write_pass_sheet
    from ingest.passes import GatePass, generate_key, issue_pass, load_private_key, public_key_bytes

    issuer = load_private_key(key_path or _issuer_dir() / "issuer.key")
    start = _now().replace(microsecond=0)
    issued: list[tuple[GatePass, str]] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for person, hh, colour in _residents(csv_path, people, household):
        device = generate_key() if phone else None
        gate_pass = GatePass(
            pass_id=f"ps-{secrets.token_hex(6)}",
            person_id=person,
            site_id=site,
            household_id=hh,
            valid_from=start,
            valid_until=start + timedelta(days=days),
            health_code=colour or health,
            device_key=public_key_bytes(device) if device else None,
            kind=pass_kind,
        )
        text = issue_pass(gate_pass, issuer)
        record = {"pass_id": gate_pass.pass_id, "person_id": person, "household_id": hh}
        if device is not None:
            from cryptography.hazmat.primitives import serialization

            wallet = out_dir / f"{gate_pass.pass_id}.wallet.json"
            raw = device.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            fd = os.open(wallet, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({"pass": text, "device_key": base64.urlsafe_b64encode(raw).decode()}, fh)
            record["wallet"] = str(wallet)
        else:
            record["png"] = str(write_pass_png(text, out_dir / f"{gate_pass.pass_id}.png"))
            issued.append((gate_pass, text))
        click.echo(json.dumps(record))
    if issued:
        sheet = write_pass_sheet(issued, out_dir / "passes.pdf")
        click.echo(json.dumps({"sheet": str(sheet), "passes": len(issued)}))


@pass_group.command()
@click.argument("pass_id")
@click.option("--reason", default="revoked by officer", show_default=True)
@revocations_option
def revoke(pass_id: str, reason: str, revocations: Path | None) -> None:
    """Add PASS_ID to the revocation list that kiosks reload when it changes."""
    from ingest.passes import add_revocation

    path = revocations or _issuer_dir() / "revoked.json"
    added = add_revocation(path, pass_id, at=_now(), reason=reason)
    click.echo(f"{pass_id} {'revoked' if added else 'was already revoked'} in {path}")


@pass_group.command()
@click.argument("wallet", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def token(wallet: Path) -> None:
    """Print the current live token of a phone pass WALLET (valid for about a minute)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ingest.passes import issue_token

    try:
        doc = json.loads(wallet.read_text(encoding="utf-8"))
        raw = base64.urlsafe_b64decode(doc["device_key"])
        device = Ed25519PrivateKey.from_private_bytes(raw)
        text = doc["pass"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PassError(f"{wallet} is not a pass wallet: {exc}") from None
    click.echo(issue_token(text, device, _now()))


@pass_group.command()
@click.argument("text")
@pub_option
@revocations_option
@click.option("--skew", type=click.IntRange(0, 600), default=30, show_default=True, help="Seconds.")
@click.option(
    "--no-revocations", is_flag=True, help="Verify without a revocation list (none exists)."
)
def verify(
    text: str, pub_path: Path | None, revocations: Path | None, skew: int, no_revocations: bool
) -> None:
    """Print the kiosk's verdict on a scanned TEXT as JSON, with the revocation list's state.

    As at a kiosk, a missing or unreadable list is an error, not "nothing revoked".
    """
    from ingest.passes import PassVerifier, RevocationList, load_public_key

    listing = (
        None
        if no_revocations
        else RevocationList(revocations or _issuer_dir() / "revoked.json").load()
    )
    verifier = PassVerifier(
        load_public_key(pub_path or _issuer_dir() / "issuer.pub"),
        listing,
        skew=timedelta(seconds=skew),
    )
    verdict: dict[str, object] = dict(verifier.verify(text, _now()).to_dict())
    verdict["revocations"] = "none (--no-revocations)" if listing is None else listing.state()
    click.echo(json.dumps(verdict))

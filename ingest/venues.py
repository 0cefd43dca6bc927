"""Venue codes: signed QR posters at compound gates, markets, pharmacies, buses, workplaces.

A venue code is what a poster shows; residents scan it with their own phones
instead of queueing at a staffed gate (see :mod:`ingest.checkin`)::

    STV1.<payload>.<issuer signature>

``payload`` is base64url (no padding) of the UTF-8 text
``venue_id|site_id|kind|valid_from|valid_until|name`` (times as integer Unix
seconds; ``name`` is free text for the poster, without ``|``). The signature is
the pass issuer's Ed25519 key over a domain-separated message, so a code can
never be taken for a pass or the other way round, and the check-in server
verifies it offline with the public key it already holds for passes.

Pure except :func:`write_poster`, which writes a PDF.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import quote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ingest.passes import DEFAULT_SKEW, _b64d, _b64e
from scantrail.contract import VenueKind
from scantrail.errors import PassError

VENUE_PREFIX = "STV1"
VENUE_KINDS: tuple[str, ...] = get_args(VenueKind)
_DOMAIN = b"scantrail-venue-v1|"
_ID = re.compile(r"^[A-Za-z0-9._:@/-]{1,128}$")

KIND_LABELS: dict[str, tuple[str, str]] = {
    "compound_gate": ("Compound gate", "小区门口"),
    "market": ("Market", "市场"),
    "pharmacy": ("Pharmacy", "药店"),
    "bus": ("Bus", "公交车"),
    "workplace": ("Workplace", "工作场所"),
}


@dataclass(frozen=True)
class Venue:
    """A place with a posted code; ``venue_id`` is its kiosk and site id in check-in scans."""

    venue_id: str
    site_id: str
    kind: VenueKind
    valid_from: datetime
    valid_until: datetime
    name: str = ""


@dataclass(frozen=True)
class VenueVerdict:
    status: Literal["valid", "forged", "expired"]
    reason: str
    venue: Venue | None = None


def _payload(venue: Venue) -> bytes:
    fields = [
        venue.venue_id,
        venue.site_id,
        venue.kind,
        str(int(venue.valid_from.timestamp())),
        str(int(venue.valid_until.timestamp())),
        venue.name,
    ]
    return "|".join(fields).encode("utf-8")


def issue_venue(venue: Venue, issuer: Ed25519PrivateKey) -> str:
    """Sign a venue and return its code (``STV1.…``)."""
    for name in ("venue_id", "site_id"):
        if not _ID.match(getattr(venue, name)):
            raise PassError(f"{name} {getattr(venue, name)!r} is not a valid identifier")
    if venue.kind not in VENUE_KINDS:
        raise PassError(f"kind must be one of {', '.join(VENUE_KINDS)}")
    if "|" in venue.name or len(venue.name) > 80:
        raise PassError("a venue name has at most 80 characters and no '|'")
    if venue.valid_from.tzinfo is None or venue.valid_until <= venue.valid_from:
        raise PassError("validity must be timezone-aware and end after it starts")
    payload = _payload(venue)
    return f"{VENUE_PREFIX}.{_b64e(payload)}.{_b64e(issuer.sign(_DOMAIN + payload))}"


def verify_venue(
    code: str, *, issuer: Ed25519PublicKey, now: datetime, skew: timedelta = DEFAULT_SKEW
) -> VenueVerdict:
    """Judge a venue code offline. Pure; never raises on any input text."""
    parts = code.split(".")
    if len(parts) != 3 or parts[0] != VENUE_PREFIX:
        return VenueVerdict("forged", "not a ScanTrail venue code")
    try:
        payload, signature = _b64d(parts[1]), _b64d(parts[2])
    except ValueError as exc:
        return VenueVerdict("forged", f"malformed: {exc}")
    try:
        issuer.verify(signature, _DOMAIN + payload)
    except InvalidSignature:
        return VenueVerdict("forged", "issuer signature does not match")
    try:
        venue_id, site_id, kind, start, end, name = payload.decode("utf-8").split("|")
        if not (_ID.match(venue_id) and _ID.match(site_id)) or kind not in VENUE_KINDS:
            raise ValueError("bad field")
        venue = Venue(
            venue_id,
            site_id,
            kind,  # type: ignore[arg-type]  # checked against VENUE_KINDS above
            datetime.fromtimestamp(int(start), UTC),
            datetime.fromtimestamp(int(end), UTC),
            name,
        )
    except (ValueError, UnicodeDecodeError) as exc:
        return VenueVerdict("forged", f"malformed payload: {exc}")
    if not venue.valid_from - skew <= now <= venue.valid_until + skew:
        return VenueVerdict("expired", "venue code is outside its validity", venue)
    return VenueVerdict("valid", "ok", venue)


def checkin_url(base_url: str, code: str) -> str:
    """The address a poster's QR opens: the check-in page of this venue."""
    return f"{base_url.rstrip('/')}/v/{quote(code, safe='')}"


_CJK_FONT_FILES = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)


def cjk_fonts() -> list[str]:
    """matplotlib font families with a Chinese fallback, when one is installed.

    matplotlib caches its font list; a font installed later (system-deps.sh)
    is added from its file so the poster shows Chinese, not empty boxes.
    """
    from matplotlib import font_manager

    known = {f.name for f in font_manager.fontManager.ttflist}
    for name, path in zip(("WenQuanYi Zen Hei", "Noto Sans CJK JP"), _CJK_FONT_FILES, strict=True):
        if name not in known and Path(path).exists():
            font_manager.fontManager.addfont(path)
            known = {f.name for f in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *(n for n in ("WenQuanYi Zen Hei", "Noto Sans CJK JP") if n in known)]


def write_poster(venue: Venue, code: str, url: str, path: Path) -> Path:
    """A4 PDF poster: the QR of ``url``, the venue in Chinese and English, its validity."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    from ingest.pass_sheet import qr_matrix

    english, chinese = KIND_LABELS[venue.kind]
    path.parent.mkdir(parents=True, exist_ok=True)
    with plt.rc_context({"font.family": cjk_fonts()}):
        fig = plt.figure(figsize=(8.27, 11.69))  # A4 in inches
        fig.text(0.5, 0.93, "扫码登记  ·  Scan to check in", ha="center", fontsize=26)
        fig.text(
            0.5,
            0.885,
            f"{venue.name or venue.venue_id}  ·  {chinese} / {english}",
            ha="center",
            fontsize=16,
        )
        ax = fig.add_axes((0.15, 0.3, 0.7, 0.55))
        ax.imshow(~qr_matrix(url, ecc="Q"), cmap="gray", interpolation="nearest", vmin=0, vmax=1)
        ax.axis("off")
        lines = [
            "用手机扫描二维码，出示您的实时通行码。",
            "Scan with your phone and show your live pass code.",
            f"venue {venue.venue_id} · site {venue.site_id}",
            f"valid {venue.valid_from:%Y-%m-%d} to {venue.valid_until:%Y-%m-%d} (UTC)",
        ]
        for i, text in enumerate(lines):
            fig.text(0.5, 0.24 - i * 0.04, text, ha="center", fontsize=13 if i < 2 else 10)
        fig.text(0.5, 0.05, code[:60] + "…", ha="center", fontsize=6, color="0.5")
        with PdfPages(path, metadata={"Title": f"ScanTrail venue {venue.venue_id}"}) as pdf:
            pdf.savefig(fig)
        plt.close(fig)
    return path

"""Deterministic synthetic "gate-like" camera frames for the QR benchmark and tests.

Each frame is 1280×720 BGR: a cluttered gate background and, in most frames, a
pass from ScanTrail's own issuer, either a paper pass (``ST1.…``, printed grey
ink on off-white paper) or a phone token (``ST1T.…``, a bright screen in a dark
bezel). The code is pasted at a random in-plane angle with a perspective tilt
and a scale of 2.2–6 frame pixels per module, then the frame is degraded the way a gate camera
degrades it: dim light, glare on paper or glass, defocus or motion blur, sensor
noise and JPEG artefacts. About one frame in ten has no code at all (a person
without a pass), so a decoder that invents texts is caught.

Everything is drawn from ``numpy.random.default_rng([seed, index])``: frame
``i`` of seed ``s`` is the same on every machine and independent of which other
frames were generated. The issuer key is derived from the seed too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import cv2
import numpy as np
import qrcode
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from numpy.typing import NDArray

from ingest.passes import GatePass, issue_pass, issue_token, public_key_bytes

__all__ = ["FRAME_SIZE", "GateFrame", "gate_frames", "issuer_for_seed", "make_frame", "qr_modules"]

FRAME_SIZE = (1280, 720)
EPOCH = datetime(2020, 2, 10, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class GateFrame:
    index: int
    image: NDArray[Any]
    texts: tuple[str, ...]  # what a perfect decoder returns
    params: dict[str, Any] = field(default_factory=dict)


def issuer_for_seed(seed: int) -> Ed25519PrivateKey:
    raw = np.random.default_rng([seed, 0xC0DE]).integers(0, 256, 32, dtype=np.uint8).tobytes()
    return Ed25519PrivateKey.from_private_bytes(raw)


def qr_modules(text: str, border: int = 4, *, ecc: str = "M") -> NDArray[np.bool_]:
    """The QR matrix (True = dark) with its quiet zone.

    Paper passes use error correction M (creases, smudges); phones show tokens at
    L, since a screen does not get dirty and the token is twice as long.
    """
    level = {"L": qrcode.constants.ERROR_CORRECT_L, "M": qrcode.constants.ERROR_CORRECT_M}[ecc]
    qr = qrcode.QRCode(error_correction=level, border=border)
    qr.add_data(text.encode("ascii"))
    qr.make(fit=True)
    return np.array(qr.get_matrix(), dtype=bool)


def _pass_text(rng: np.random.Generator, seed: int, index: int, phone: bool) -> str:
    issuer = issuer_for_seed(seed)
    device = Ed25519PrivateKey.from_private_bytes(
        rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
    )
    resident = int(rng.integers(0, 5000))
    gate_pass = GatePass(
        pass_id=f"ps-{seed:x}-{index:05d}",
        person_id=f"p-{seed:x}-{resident:06d}",
        site_id=f"site-{resident % 9:03d}",
        household_id=f"hh-{resident // 3:05d}",
        valid_from=EPOCH,
        valid_until=EPOCH + timedelta(days=14),
        health_code=("green", "yellow", "red")[int(rng.choice(3, p=[0.9, 0.07, 0.03]))],
        device_key=public_key_bytes(device) if phone else None,
    )
    text = issue_pass(gate_pass, issuer)
    if phone:
        text = issue_token(text, device, EPOCH + timedelta(seconds=int(rng.integers(0, 86400))))
    return text


def _background(rng: np.random.Generator, w: int, h: int) -> NDArray[Any]:
    base = rng.uniform(40, 180, 3)
    ramp = np.linspace(rng.uniform(-40, 0), rng.uniform(0, 40), w, dtype=np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    img += ramp[None, :, None]
    for _ in range(int(rng.integers(4, 12))):  # gate bars, a table, a jacket, a sign
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(20, 500)), y0 + int(rng.integers(20, 400))
        cv2.rectangle(img, (x0, y0), (x1, y1), rng.uniform(0, 255, 3).tolist(), -1)
    for _ in range(int(rng.integers(2, 8))):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p0, p1, rng.uniform(0, 255, 3).tolist(), int(rng.integers(2, 15)))
    texture = cv2.GaussianBlur(rng.normal(0, 18, (h, w)).astype(np.float32), (0, 0), 3)
    img += texture[:, :, None]
    return img


def _carrier(
    rng: np.random.Generator, modules: NDArray[np.bool_], phone: bool
) -> tuple[NDArray[Any], float]:
    """The code drawn on paper or on a phone, at 8 px per module, plus its side in px."""
    px = 8
    n = modules.shape[0]
    code = np.kron(modules, np.ones((px, px), dtype=bool))
    if phone:
        screen = rng.uniform(225, 255)
        ink = rng.uniform(0, 25)
        pad_x, pad_y = int(px * rng.uniform(1, 3)), int(px * rng.uniform(8, 16))
        bezel = int(px * rng.uniform(1.5, 3))
        h, w = n * px + 2 * pad_y, n * px + 2 * pad_x
        face = np.full((h, w, 3), screen, np.float32)
        face[pad_y : pad_y + n * px, pad_x : pad_x + n * px][code] = ink
        body = np.full((h + 2 * bezel, w + 2 * bezel, 3), rng.uniform(5, 40), np.float32)
        body[bezel:-bezel, bezel:-bezel] = face
        return body, n * px
    paper = np.array(
        [rng.uniform(205, 245), rng.uniform(210, 248), rng.uniform(215, 250)], np.float32
    )
    ink = rng.uniform(20, 80)
    margin = int(px * rng.uniform(0, 4))
    side = n * px + 2 * margin
    sheet = np.empty((side, side, 3), np.float32)
    sheet[:] = paper
    sheet[margin : margin + n * px, margin : margin + n * px][code] = ink
    fibre = cv2.GaussianBlur(rng.normal(0, 6, (side, side)).astype(np.float32), (0, 0), 1.5)
    sheet += fibre[:, :, None]
    sheet = cv2.GaussianBlur(sheet, (0, 0), rng.uniform(0.4, 1.2))  # ink bleed
    return sheet, n * px


def make_frame(seed: int, index: int) -> GateFrame:
    """Frame ``index`` of the set ``seed`` (see the module docstring)."""
    rng = np.random.default_rng([seed, index])
    w, h = FRAME_SIZE
    img = _background(rng, w, h)
    params: dict[str, Any] = {}
    texts: tuple[str, ...] = ()
    if rng.random() >= 0.1:
        phone = bool(rng.random() < 0.5)
        text = _pass_text(rng, seed, index, phone)
        texts = (text,)
        modules = qr_modules(text, ecc="L" if phone else "M")
        carrier, code_side = _carrier(rng, modules, phone)
        ch, cw = carrier.shape[:2]
        # Frame pixels per module: below ~2 no camera resolves the modules; the
        # kiosk's sign ("hold your pass here") keeps passes within 2.2-6.
        target = rng.uniform(2.2, 6.0) * modules.shape[0]  # code side incl. quiet zone
        scale = target / code_side
        angle = rng.uniform(0, 360)
        tilt = 0.10
        src = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float32)
        rot = np.array(
            [
                [np.cos(np.radians(angle)), -np.sin(np.radians(angle))],
                [np.sin(np.radians(angle)), np.cos(np.radians(angle))],
            ],
            np.float32,
        )
        corners = (src - [cw / 2, ch / 2]) * scale
        corners += rng.uniform(-tilt, tilt, corners.shape).astype(np.float32) * target
        spun = corners @ rot.T
        # the whole carrier stays in view, anywhere in the frame
        lo, hi = -spun.min(axis=0), np.array([w, h], np.float32) - spun.max(axis=0)
        centre = np.array(
            [
                rng.uniform(min(lo[0], hi[0]), max(lo[0], hi[0])),
                rng.uniform(min(lo[1], hi[1]), max(lo[1], hi[1])),
            ],
            np.float32,
        )
        dst = (spun + centre).astype(np.float32)
        matrix = cv2.getPerspectiveTransform(src, dst)
        warped = cv2.warpPerspective(carrier, matrix, (w, h), flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(np.ones((ch, cw), np.float32), matrix, (w, h))
        img = img * (1 - mask[:, :, None]) + warped * mask[:, :, None]
        params.update(
            kind="phone" if phone else "paper",
            chars=len(text),
            modules=int(modules.shape[0]),
            px_per_module=round(target / modules.shape[0], 2),
            angle=round(float(angle), 1),
            centre=[round(float(c)) for c in centre],
        )
    # light: a dim evening gate, or a bright doorway
    gain = rng.uniform(0.35, 1.15)
    img = img * gain + rng.uniform(-10, 20)
    params["gain"] = round(float(gain), 2)
    if rng.random() < 0.35:  # glare: a lamp on glass or glossy paper
        gx, gy = params.get("centre", [w / 2, h / 2])
        gx += rng.normal(0, 90)
        gy += rng.normal(0, 90)
        sx, sy = rng.uniform(25, 110, 2)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        blob = np.exp(-(((xx - gx) / sx) ** 2 + ((yy - gy) / sy) ** 2) / 2)
        strength = rng.uniform(60, 170)
        img += (blob * strength)[:, :, None]
        params["glare"] = round(float(strength))
    blur = rng.random()
    if blur < 0.3:
        sigma = rng.uniform(0.5, 1.6)
        img = cv2.GaussianBlur(img, (0, 0), sigma)
        params["defocus"] = round(float(sigma), 2)
    elif blur < 0.5:
        length = int(rng.integers(3, 8))
        kernel: NDArray[Any] = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1 / length
        rot_m = cv2.getRotationMatrix2D(
            ((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1
        )
        kernel = cv2.warpAffine(kernel, rot_m, (length, length))
        kernel = (kernel / max(float(kernel.sum()), 1e-6)).astype(np.float32)
        img = cv2.filter2D(img, -1, kernel)
        params["motion"] = length
    noise = rng.uniform(2, 9)
    img += rng.normal(0, noise, img.shape).astype(np.float32)
    params["noise"] = round(float(noise), 1)
    out: NDArray[Any] = np.clip(img, 0, 255).astype(np.uint8)
    quality = int(rng.integers(35, 90))
    ok, jpeg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    if decoded is None:
        raise RuntimeError("JPEG decoding failed")
    out = decoded
    params["jpeg"] = quality
    return GateFrame(index=index, image=out, texts=texts, params=params)


def gate_frames(count: int, seed: int = 2020) -> Iterator[GateFrame]:
    """Frames ``0 … count-1`` of set ``seed``, generated one at a time (each is ~2.7 MB)."""
    for index in range(count):
        yield make_frame(seed, index)

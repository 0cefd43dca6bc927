"""QR texts from camera frames: zxing-cpp first, pyzbar beside it, OpenCV last.

The kiosk calls :meth:`FrameDecoder.decode` once per frame. The cheap path (one
zxing-cpp pass over the grey frame, about a millisecond) finds most passes; only
when it finds nothing does the decoder escalate through a short, fixed ladder of
preprocessed variants and other decoders, stopping at the first that reads
something:

1. zxing-cpp, local-average binariser, on the grey frame;
2. pyzbar (ZBar, QR only) on the grey frame;
3. contrast and morphology variants (CLAHE for dim or glared frames, a small
   erosion for thin or bleeding print, global-histogram binarisation,
   rescaling), each read by zxing-cpp or pyzbar;
4. OpenCV's own QR detector, code by code.

Wrong texts are worse than no text (a kiosk would show a stranger's pass as
"unknown" instead of asking for a rescan), so results are cross-checked:
zxing-cpp handles ECI and charsets and is trusted as it is; a text from ZBar or
OpenCV alone is kept only if its bytes are printable ASCII (ScanTrail passes
always are). Anything else found by them is dropped unless zxing-cpp agrees.

Each decoder call is isolated: a payload that is not UTF-8 (OpenCV's Python
binding raises on those) loses only that code, never the other codes in the
frame. Binary payloads are reported by :meth:`FrameDecoder.detect` with
``text=None`` and left out of :meth:`FrameDecoder.decode`.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zxingcpp
from numpy.typing import NDArray
from pyzbar import pyzbar
from pyzbar.pyzbar import ZBarSymbol

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "Detection",
    "FrameDecoder",
    "Image",
    "ImageTooLarge",
    "read_image",
    "decode_opencv",
    "decode_pyzbar",
    "decode_zxing",
    "to_gray",
]

log = logging.getLogger(__name__)

Image = NDArray[Any]  # uint8, grey (H, W) or BGR (H, W, 3); cv2 stubs are loose


@dataclass(frozen=True)
class Detection:
    """One code found in a frame."""

    text: str | None  # None: a binary payload that is not text
    raw: bytes
    decoder: str  # "zxing", "zbar" or "opencv", with the variant, e.g. "zbar/erode"

    @property
    def trusted(self) -> bool:
        """Text we accept without a second opinion (see the module docstring)."""
        if self.text is None:
            return False
        if self.decoder.startswith("zxing"):
            return True
        return _printable_ascii(self.raw)


def _printable_ascii(raw: bytes) -> bool:
    return bool(raw) and all(32 <= b < 127 or b in (9, 10, 13) for b in raw)


def to_gray(frame: Image) -> Image:
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


# --- single decoders -----------------------------------------------------------


def decode_zxing(gray: Image, *, binarizer: str = "local", name: str = "zxing") -> list[Detection]:
    """zxing-cpp, QR only, text transcoded from the code's own charset/ECI."""
    binar = (
        zxingcpp.Binarizer.GlobalHistogram
        if binarizer == "global"
        else zxingcpp.Binarizer.LocalAverage
    )
    try:
        found = zxingcpp.read_barcodes(
            gray,
            formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode),
            text_mode=zxingcpp.TextMode.Plain,
            binarizer=binar,
        )
    except Exception as exc:  # a decoder bug must never stop the kiosk
        log.warning("zxing-cpp failed: %r", exc)
        return []
    out = []
    for code in found:
        try:
            raw = bytes(code.bytes)
            binary = code.content_type == zxingcpp.ContentType.Binary
            out.append(Detection(text=None if binary else code.text, raw=raw, decoder=name))
        except Exception as exc:  # one bad code loses only itself
            log.warning("zxing-cpp result unreadable: %r", exc)
    return out


def decode_pyzbar(gray: Image, *, name: str = "zbar") -> list[Detection]:
    """ZBar restricted to QR codes; ZBar returns UTF-8 after its own charset guess."""
    try:
        found = pyzbar.decode(gray, symbols=[ZBarSymbol.QRCODE])
    except Exception as exc:
        log.warning("pyzbar failed: %r", exc)
        return []
    out = []
    for sym in found:
        raw = bytes(sym.data)
        try:
            text: str | None = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        out.append(Detection(text=text, raw=raw, decoder=name))
    return out


_OPENCV = cv2.QRCodeDetector()


def decode_opencv(gray: Image, *, name: str = "opencv") -> list[Detection]:
    """OpenCV's QR decoder, one code at a time so a non-UTF-8 payload loses only itself."""
    try:
        ok, points = _OPENCV.detectMulti(gray)
    except Exception as exc:
        log.warning("OpenCV detect failed: %r", exc)
        return []
    if not ok or points is None:
        return []
    out = []
    for quad in points:
        try:
            text, _ = _OPENCV.decode(gray, quad.reshape(1, 4, 2))
        except Exception as exc:  # UnicodeDecodeError from the binding, cv2.error
            log.info("OpenCV could not decode one code: %r", exc)
            continue
        if text:
            out.append(Detection(text=text, raw=text.encode("utf-8"), decoder=name))
    return out


# --- preprocessing -------------------------------------------------------------

_CLAHE = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8))
_K2 = np.ones((2, 2), np.uint8)
_K3 = np.ones((3, 3), np.uint8)


def _resize(gray: Image, factor: float) -> Image:
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return cv2.resize(gray, None, fx=factor, fy=factor, interpolation=interp)


def _erode(gray: Image, kernel: Any = _K2) -> Image:
    return cv2.erode(gray, kernel)


#: The largest frame decoded by default: a 4K camera (4096 x 2160) with room.
DEFAULT_MAX_PIXELS = 4096 * 2304
#: How long one frame may take by default; a gate sees ~10 frames a second.
DEFAULT_FRAME_BUDGET_S = 0.5


class ImageTooLarge(ValueError):
    """An image file whose header gives more pixels than allowed; it was not decoded."""


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image | None:
    """An image file as a BGR frame, or None if unreadable; refused unread if too large.

    The size comes from the file's header (Pillow reads only that), so a
    76 KB PNG claiming 20,000 x 20,000 pixels costs nothing: OpenCV alone
    would allocate 1.2 GB for it before any check.
    """
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as probe:
                width, height = probe.size
    except PILImage.DecompressionBombError as exc:  # Pillow's own, far higher limit
        raise ImageTooLarge(f"{path}: over the limit {max_pixels} ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{path}: {width}x{height} = {width * height} pixels, over the limit {max_pixels}"
        )
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


@dataclass(frozen=True)
class Step:
    """One rung of the escalation ladder: a preprocessing and a decoder."""

    name: str
    prepare: Callable[[Image], Image]
    read: Callable[[Image], list[Detection]]
    max_side: int = 100_000  # skip on frames larger than this (too slow to be worth it)


def _ladder() -> list[Step]:
    def zx(name: str, binarizer: str = "local") -> Callable[[Image], list[Detection]]:
        return lambda g: decode_zxing(g, binarizer=binarizer, name=f"zxing/{name}")

    def zb(name: str) -> Callable[[Image], list[Detection]]:
        return lambda g: decode_pyzbar(g, name=f"zbar/{name}")

    def small(g: Image) -> Image:
        return _resize(g, 0.5) if max(g.shape) > 1000 else g

    def sharpen(g: Image) -> Image:
        return cv2.addWeighted(g, 2.0, cv2.GaussianBlur(g, (0, 0), 2), -1.0, 0)

    # Ordered by rescues per millisecond on the gate-like frames, then the ZXing set.
    return [
        Step("denoise", lambda g: cv2.GaussianBlur(g, (0, 0), 1.0), zx("denoise")),
        Step("sharpen", sharpen, zx("sharpen")),
        Step("shrink-0.67", lambda g: _resize(g, 0.67), zx("shrink"), max_side=100_000),
        Step("zbar", lambda g: g, zb("plain")),
        Step("global", lambda g: g, zx("global", "global")),
        Step("clahe", lambda g: _CLAHE.apply(g), zx("clahe")),
        Step("erode-zx", lambda g: _erode(g), zx("erode")),
        Step("dilate-zx", lambda g: cv2.dilate(g, _K2), zx("dilate")),
        Step("median", lambda g: cv2.medianBlur(g, 3), zx("median")),
        Step("erode", lambda g: _erode(g), zb("erode")),
        Step("erode-0.75", lambda g: _erode(_resize(g, 0.75)), zb("erode-0.75")),
        Step("up2-erode3", lambda g: _erode(_resize(g, 2.0), _K3), zx("up2-erode3"), max_side=800),
        Step("clahe-zbar", lambda g: _CLAHE.apply(small(g)), zb("clahe")),
        Step("opencv", small, lambda g: decode_opencv(g)),
    ]


@dataclass
class FrameDecoder:
    """Frame → QR texts, for the kiosk loop; see the module docstring for the strategy.

    Parameters:

    * ``escalate`` — run the ladder when the cheap read finds nothing (default True).
    * ``steps`` — override the ladder (benchmarks, tests).
    """

    escalate: bool = True
    steps: Sequence[Step] = field(default_factory=_ladder)
    frames: int = 0
    escalations: int = 0
    #: Frames over this many pixels are refused before any decoding (``too_large``).
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: Seconds a frame may take; past it the ladder stops and the kiosk moves on
    #: (``over_budget``). The cheap first read always runs. None: no budget.
    budget_s: float | None = DEFAULT_FRAME_BUDGET_S
    too_large: int = 0
    over_budget: int = 0
    clock: Callable[[], float] = time.monotonic

    def detect(self, frame: Image) -> list[Detection]:
        """Every code found, binary ones included (``text=None``)."""
        self.frames += 1
        height, width = frame.shape[:2]
        if height * width > self.max_pixels:
            self.too_large += 1
            log.warning(
                "frame of %dx%d over the %d-pixel limit; skipped", width, height, self.max_pixels
            )
            return []
        started = self.clock()
        gray = to_gray(frame)
        found = decode_zxing(gray)
        if _accepted(found) or not self.escalate:
            return _merge(found)
        self.escalations += 1
        largest = max(gray.shape)
        for step in self.steps:
            if largest > step.max_side:
                continue
            if self.budget_s is not None and self.clock() - started > self.budget_s:
                self.over_budget += 1
                break
            try:
                more = step.read(step.prepare(gray))
            except Exception as exc:  # a preprocessing or decoder bug costs one rung only
                log.warning("decode step %s failed: %r", step.name, exc)
                continue
            found.extend(more)
            if _accepted(found):
                break
        return _merge(found)

    def decode(self, frame: Image) -> list[str]:
        """The accepted texts in the frame, in the order found, without duplicates."""
        return [d.text for d in self.detect(frame) if d.trusted and d.text is not None]


def _accepted(found: list[Detection]) -> bool:
    return any(d.trusted for d in found)


def _merge(found: list[Detection]) -> list[Detection]:
    """One detection per payload (by text, or by bytes for binary codes), first kept."""
    seen: set[str | bytes] = set()
    out = []
    for d in found:
        key: str | bytes = d.text if d.text is not None else d.raw
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out

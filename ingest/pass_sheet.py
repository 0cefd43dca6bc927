"""Passes on paper and as images: one QR PNG per pass and a printable PDF sheet.

Residents without phones get a paper pass (field notes: older residents). The
sheet is A4, six passes per page, each with its QR code (error correction M,
about 4.5 cm wide) and a caption with the pass id, household and validity, so
staff can hand out and re-issue them. No names or phone numbers are printed:
the person id is pseudonymous.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import qrcode
from numpy.typing import NDArray

from ingest.passes import GatePass

__all__ = ["qr_matrix", "write_pass_png", "write_pass_sheet"]


def qr_matrix(text: str, *, ecc: str = "M", border: int = 4) -> NDArray[np.bool_]:
    level = {
        "L": qrcode.constants.ERROR_CORRECT_L,
        "M": qrcode.constants.ERROR_CORRECT_M,
        "Q": qrcode.constants.ERROR_CORRECT_Q,
    }[ecc]
    qr = qrcode.QRCode(error_correction=level, border=border)
    qr.add_data(text.encode("ascii"))
    qr.make(fit=True)
    return np.array(qr.get_matrix(), dtype=bool)


def write_pass_png(text: str, path: Path, *, px_per_module: int = 8, ecc: str = "M") -> Path:
    """A black-on-white PNG of the pass's QR code, quiet zone included."""
    import cv2

    modules = qr_matrix(text, ecc=ecc)
    image = np.where(modules, 0, 255).astype(np.uint8)
    image = np.kron(image, np.ones((px_per_module, px_per_module), np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")
    return path


def write_pass_sheet(passes: Sequence[tuple[GatePass, str]], path: Path) -> Path:
    """A4 PDF, six passes a page: QR code plus a caption (pass id, household, validity)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    path.parent.mkdir(parents=True, exist_ok=True)
    per_page = 6
    with PdfPages(
        path, metadata={"Title": "ScanTrail paper passes", "Creator": "scantrail"}
    ) as pdf:
        for start in range(0, max(len(passes), 1), per_page):
            fig, axes = plt.subplots(3, 2, figsize=(8.27, 11.69))  # A4 in inches
            for ax, item in zip(
                axes.flat, list(passes[start : start + per_page]) + [None] * per_page, strict=False
            ):
                ax.axis("off")
                if item is None:
                    continue
                gate_pass, text = item
                ax.imshow(~qr_matrix(text), cmap="gray", interpolation="nearest", vmin=0, vmax=1)
                colour = f" · health code {gate_pass.health_code}" if gate_pass.health_code else ""
                ax.set_title(
                    f"{gate_pass.site_id} · household {gate_pass.household_id}\n"
                    f"pass {gate_pass.pass_id}{colour}\n"
                    f"valid {gate_pass.valid_from:%Y-%m-%d} to {gate_pass.valid_until:%Y-%m-%d}",
                    fontsize=8,
                )
            fig.tight_layout()
            pdf.savefig(fig)
            plt.close(fig)
    return path

"""QR decoding benchmark: plain pyzbar, plain OpenCV, plain zxing-cpp vs ScanTrail's pipeline.

Sets:

* the ZXing QR black-box images (``../shared/data/qr/zxing-blackbox``, 179 images),
  each rotated by 0/90/180/270 degrees; skipped with a message if absent;
* ScanTrail's synthetic gate-like 1280×720 frames (``ingest.gate_frames``,
  seed 2020, 300 frames, about 10% without a code).

A result is a *hit* when the expected text is among the texts returned (exact,
every byte), and a *wrong text* when a returned text is not the expected one.
``qrcode-2/16.png`` is a "double QR" design holding a genuine second code inside
the first; a decoder that also returns that inner code is listed under
``extra_true_codes``, not under ``wrong`` (the image really contains it).

Timing: the process is pinned to one core (``os.sched_setaffinity``) and each
decoder call is timed with ``perf_counter``; the machine may be busy with other
work, so treat milliseconds as noisy. Results go to ``bench/results/qr.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.decode import (  # noqa: E402
    FrameDecoder,
    decode_opencv,
    decode_pyzbar,
    decode_zxing,
    to_gray,
)
from ingest.gate_frames import gate_frames  # noqa: E402

ZXING_DIR = ROOT.parent / "shared" / "data" / "qr" / "zxing-blackbox"
OUT = ROOT / "bench" / "results" / "qr.json"
GATE_SEED, GATE_COUNT = 2020, int(os.environ.get("BENCH_GATE_FRAMES", "300"))
ROTATIONS = {
    0: None,
    90: cv2.ROTATE_90_CLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_COUNTERCLOCKWISE,
}
INNER_CODE = {"qrcode-2/16.png": "[内側QRコード]"}  # prefix of the genuine inner code

_pipeline = FrameDecoder()
DECODERS: dict[str, Callable[..., list[str]]] = {
    "pyzbar": lambda g: [d.text for d in decode_pyzbar(g) if d.text is not None],
    "opencv": lambda g: [d.text for d in decode_opencv(g) if d.text is not None],
    "zxing-cpp": lambda g: [d.text for d in decode_zxing(g) if d.text is not None],
    "scantrail": _pipeline.decode,
}


class Tally:
    def __init__(self) -> None:
        self.images = self.positives = self.hits = self.wrong = self.extra = 0
        self.ms: list[float] = []
        self.misses: list[str] = []
        self.wrong_items: list[str] = []

    def add(self, name: str, expected: set[str], texts: list[str], ms: float) -> None:
        self.images += 1
        self.ms.append(ms)
        if expected:
            self.positives += 1
            if expected <= set(texts):
                self.hits += 1
            else:
                self.misses.append(name)
        for text in set(texts) - expected:
            if name in INNER_CODE and text.startswith(INNER_CODE[name]):
                self.extra += 1
            else:
                self.wrong += 1
                self.wrong_items.append(name)

    def summary(self) -> dict[str, object]:
        ms = sorted(self.ms)
        return {
            "images": self.images,
            "with_code": self.positives,
            "decoded": self.hits,
            "rate": round(self.hits / self.positives, 4) if self.positives else None,
            "wrong": self.wrong,
            "extra_true_codes": self.extra,
            "median_ms": round(statistics.median(ms), 2) if ms else None,
            "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2) if ms else None,
            "misses": self.misses[:50],
            "wrong_items": self.wrong_items[:50],
        }


def timed(fn: Callable[..., list[str]], image: object) -> tuple[list[str], float]:
    start = time.perf_counter()
    texts = fn(image)
    return texts, (time.perf_counter() - start) * 1000


def bench_zxing() -> dict[str, object] | None:
    if not ZXING_DIR.is_dir():
        print(f"ZXing set not found at {ZXING_DIR}: skipping the ZXing part", file=sys.stderr)
        return None
    items = []
    for folder in sorted(ZXING_DIR.glob("qrcode-*")):
        for png in sorted(folder.glob("*.png")):
            expected = png.with_suffix(".txt").read_bytes().decode("utf-8")
            items.append((f"{folder.name}/{png.name}", png, expected))
    results: dict[str, object] = {}
    for angle, code in ROTATIONS.items():
        tallies = {name: Tally() for name in DECODERS}
        for name, png, expected in items:
            gray = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
            if code is not None:
                gray = cv2.rotate(gray, code)
            for dec, fn in DECODERS.items():
                texts, ms = timed(fn, gray)
                tallies[dec].add(name, {expected}, texts, ms)
        results[str(angle)] = {k: t.summary() for k, t in tallies.items()}
        line = ", ".join(f"{k} {t.hits}/{t.positives} wrong {t.wrong}" for k, t in tallies.items())
        print(f"ZXing rot {angle:3d}: {line}", file=sys.stderr)
    return results


def bench_gate() -> dict[str, object]:
    tallies = {name: Tally() for name in DECODERS}
    for frame in gate_frames(GATE_COUNT, GATE_SEED):
        name = f"gate-{frame.index:04d}"
        for dec, fn in DECODERS.items():
            # plain decoders get the grey frame; the pipeline gets the BGR frame and converts
            image = frame.image if dec == "scantrail" else to_gray(frame.image)
            texts, ms = timed(fn, image)
            tallies[dec].add(name, set(frame.texts), texts, ms)
    line = ", ".join(f"{k} {t.hits}/{t.positives} wrong {t.wrong}" for k, t in tallies.items())
    print(f"gate-like: {line}", file=sys.stderr)
    return {k: t.summary() for k, t in tallies.items()}


def main() -> None:
    pinned = False
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})
        pinned = True
    cv2.setNumThreads(1)
    started = time.time()
    report = {
        "pinned_to_one_core": pinned,
        "cv2": cv2.__version__,
        "zxing": bench_zxing(),
        "gate_like": {"seed": GATE_SEED, "frames": GATE_COUNT, "size": "1280x720", **bench_gate()},
        "escalations": _pipeline.escalations,
        "frames_seen_by_pipeline": _pipeline.frames,
        "seconds": round(time.time() - started, 1),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(OUT)
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()

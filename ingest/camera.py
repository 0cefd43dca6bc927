"""Frame sources for the kiosk: a camera index, a video file, an RTSP URL or a folder.

``open_source("0")`` opens camera 0, ``open_source("rtsp://…")`` a network camera,
``open_source("gate.mp4")`` a recording and ``open_source("frames/")`` the images
in a folder, in name order. Every source yields :class:`Frame` values with a
timestamp in seconds: capture time for live sources (monotonic clock), the
position in the video for files, and the index divided by ``fps`` for folders,
so the de-duplicator sees the same timing on replay as it did live.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
from numpy.typing import NDArray

from scantrail.errors import ServiceError

__all__ = ["IMAGE_SUFFIXES", "Frame", "FolderSource", "VideoSource", "open_source"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass(frozen=True)
class Frame:
    image: NDArray[Any]
    at: float  # seconds
    name: str  # file name, or "<source>#<n>"


class VideoSource:
    """cv2.VideoCapture over a device index, a file or a stream URL."""

    def __init__(self, target: int | str, *, live: bool | None = None) -> None:
        self.target = target
        self._cap = cv2.VideoCapture(target)
        if not self._cap.isOpened():
            raise ServiceError(f"cannot open video source {target!r}")
        self.live = (
            isinstance(target, int) or str(target).startswith(("rtsp://", "http://", "https://"))
            if live is None
            else live
        )

    def __iter__(self) -> Iterator[Frame]:
        n = 0
        while True:
            ok, image = self._cap.read()
            if not ok:
                return
            at = time.monotonic() if self.live else self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            yield Frame(image=image, at=at, name=f"{self.target}#{n}")
            n += 1

    def close(self) -> None:
        self._cap.release()


class FolderSource:
    """Images in a folder, in name order, ``1/fps`` seconds apart."""

    def __init__(self, folder: Path, *, fps: float = 10.0) -> None:
        if not folder.is_dir():
            raise ServiceError(f"{folder} is not a folder")
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self.fps = fps

    def __iter__(self) -> Iterator[Frame]:
        for n, path in enumerate(self.paths):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                continue  # not an image after all; skip rather than stop the gate
            yield Frame(image=image, at=n / self.fps, name=path.name)

    def close(self) -> None:
        return None


def open_source(spec: str, *, fps: float = 10.0) -> VideoSource | FolderSource:
    """Interpret a --source option: digits → camera index, folder, URL or video file."""
    if spec.isdigit():
        return VideoSource(int(spec))
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path, fps=fps)
    if "://" not in spec and not path.exists():
        raise ServiceError(f"no such camera, folder or video: {spec}")
    return VideoSource(spec)

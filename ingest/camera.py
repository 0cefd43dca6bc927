"""Frame sources for the kiosk: a camera index, a video file, an RTSP URL or a folder.

``open_source("0")`` opens camera 0, ``open_source("rtsp://…")`` a network camera,
``open_source("gate.mp4")`` a recording and ``open_source("frames/")`` the images
in a folder, in name order. Every source yields :class:`Frame` values with a
timestamp in seconds: capture time for live sources (monotonic clock), the
position in the video for files, and the index divided by ``fps`` for folders,
so the de-duplicator sees the same timing on replay as it did live.

A live source (a device or a stream) is read on its own thread that keeps only
the newest frame (:class:`LatestFrames`). Reading in order would let a run of
slow decodes put the kiosk seconds behind the gate: the camera's buffer fills
with frames of people who have long walked through, while the person in front
of it waits. Files and folders are read in order, every frame, as recorded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
from numpy.typing import NDArray

from scantrail.errors import ServiceError

__all__ = [
    "IMAGE_SUFFIXES",
    "FolderSource",
    "Frame",
    "LatestFrames",
    "VideoSource",
    "open_source",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass(frozen=True)
class Frame:
    image: NDArray[Any]
    at: float  # seconds
    name: str  # file name, or "<source>#<n>"


Reader = Callable[[], tuple[bool, Any]]
"""``cv2.VideoCapture.read``: (ok, image); ok False when the source has ended."""


class LatestFrames:
    """Frames of a live source, read on a thread; the consumer always gets the newest one.

    A frame the consumer did not take before the next one arrived is dropped
    and counted (``dropped``): for a gate, the present matters, not the
    backlog. OpenCV releases the GIL while it reads, so the reader thread costs
    the decoder little. The iterator ends after the source ends (or
    :meth:`close`), once the last frame was taken.
    """

    def __init__(self, read: Reader, name: str, *, clock: Callable[[], float] = time.monotonic):
        self._read = read
        self._name = name
        self._clock = clock
        self._ready = threading.Condition()
        self._newest: Frame | None = None
        self._ended = False
        self._closing = False
        self.captured = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"frames-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._closing:
                ok, image = self._read()
                if not ok:
                    break
                frame = Frame(image=image, at=self._clock(), name=f"{self._name}#{self.captured}")
                with self._ready:
                    if self._newest is not None:
                        self.dropped += 1
                    self._newest = frame
                    self.captured += 1
                    self._ready.notify()
        except Exception:  # a driver error ends the source like an unplugged camera
            log.exception("reading %s failed", self._name)
        finally:
            with self._ready:
                self._ended = True
                self._ready.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            with self._ready:
                while self._newest is None and not self._ended:
                    self._ready.wait()
                frame, self._newest = self._newest, None
            if frame is None:
                return
            yield frame

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop reading (the current read finishes first)."""
        self._closing = True
        self._thread.join(timeout_s)


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

        self._latest: LatestFrames | None = None

    @property
    def dropped(self) -> int:
        """Live frames skipped because a newer one came before the decoder was free."""
        return 0 if self._latest is None else self._latest.dropped

    def __iter__(self) -> Iterator[Frame]:
        if self.live:
            self._latest = LatestFrames(self._cap.read, str(self.target))
            yield from self._latest
            return
        n = 0
        while True:
            ok, image = self._cap.read()
            if not ok:
                return
            at = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            yield Frame(image=image, at=at, name=f"{self.target}#{n}")
            n += 1

    def close(self) -> None:
        if self._latest is not None:
            self._latest.close()
            if self._latest.dropped:
                log.info(
                    "%s: %d of %d live frames skipped to stay current",
                    self.target,
                    self._latest.dropped,
                    self._latest.captured,
                )
        self._cap.release()


class FolderSource:
    """Images in a folder, in name order, ``1/fps`` seconds apart."""

    def __init__(self, folder: Path, *, fps: float = 10.0) -> None:
        if not folder.is_dir():
            raise ServiceError(f"{folder} is not a folder")
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self.fps = fps
        self.too_large = 0  # image files refused for their size (counted on the heartbeat)

    def __iter__(self) -> Iterator[Frame]:
        from ingest.decode import ImageTooLarge, read_image

        for n, path in enumerate(self.paths):
            try:
                image = read_image(path)
            except ImageTooLarge as exc:  # refused from its header, never decoded
                self.too_large += 1
                log.warning("%s", exc)
                continue
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

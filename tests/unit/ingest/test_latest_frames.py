"""A live camera read on its own thread: the decoder always gets the newest frame."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from ingest.camera import LatestFrames


class GateCamera:
    """A reader whose frames arrive when the test says so: ``arrive(n)`` lets n more through."""

    def __init__(self) -> None:
        self._gate = threading.Semaphore(0)
        self._next = 0
        self._ended = False

    def arrive(self, n: int = 1) -> None:
        for _ in range(n):
            self._gate.release()

    def end(self) -> None:
        self._ended = True
        self._gate.release()

    def read(self) -> tuple[bool, Any]:
        self._gate.acquire()
        if self._ended:
            return False, None
        image = np.full((2, 2), self._next, dtype=np.uint8)
        self._next += 1
        return True, image


def wait_for(predicate: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def frame_number(frame: Any) -> int:
    return int(frame.image[0, 0])


def test_a_busy_decoder_gets_the_newest_frame_and_the_rest_are_counted_as_dropped() -> None:
    camera = GateCamera()
    frames = LatestFrames(camera.read, "cam")
    it = iter(frames)
    camera.arrive(5)  # five frames while the decoder was busy elsewhere
    wait_for(lambda: frames.captured == 5)
    newest = next(it)
    assert frame_number(newest) == 4 and newest.name == "cam#4"
    assert frames.dropped == 4
    camera.end()
    assert list(it) == []
    frames.close()


def test_a_decoder_that_keeps_up_gets_every_frame_in_order() -> None:
    camera = GateCamera()
    frames = LatestFrames(camera.read, "cam")
    it = iter(frames)
    got = []
    for _ in range(10):
        camera.arrive()
        got.append(frame_number(next(it)))
    assert got == list(range(10))
    assert frames.dropped == 0
    camera.end()
    frames.close()


def test_the_last_frame_before_the_source_ends_is_still_handed_out() -> None:
    camera = GateCamera()
    frames = LatestFrames(camera.read, "cam", clock=lambda: 42.0)
    camera.arrive(2)
    wait_for(lambda: frames.captured == 2)
    camera.end()
    got = list(frames)
    assert [frame_number(f) for f in got] == [1]
    assert got[0].at == 42.0
    frames.close()


def test_a_failing_driver_ends_the_source_instead_of_hanging_the_gate() -> None:
    def broken() -> tuple[bool, Any]:
        raise RuntimeError("usb disconnected")

    frames = LatestFrames(broken, "cam")
    assert list(frames) == []
    frames.close()


def write_video(path: Any, count: int) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(count):
        writer.write(np.full((48, 64, 3), i * 20, dtype=np.uint8))
    writer.release()


def test_a_recording_is_read_in_order_every_frame(tmp_path: Any) -> None:
    from ingest.camera import VideoSource, open_source

    path = tmp_path / "gate.avi"
    write_video(path, 12)
    source = open_source(str(path))
    assert isinstance(source, VideoSource) and not source.live
    try:
        got = list(source)
    finally:
        source.close()
    assert len(got) == 12
    assert [round(float(f.image.mean()) / 20) for f in got] == list(range(12))
    assert [f.at for f in got] == sorted(f.at for f in got) and got[1].at > got[0].at
    assert source.dropped == 0


def test_a_live_source_goes_through_the_newest_frame_reader(tmp_path: Any) -> None:
    from ingest.camera import VideoSource

    path = tmp_path / "gate.avi"
    write_video(path, 12)
    source = VideoSource(str(path), live=True)  # a file read as if it were a camera
    try:
        got = []
        for frame in source:
            got.append(round(float(frame.image.mean()) / 20))
            time.sleep(0.05)  # a slow decoder: the reader runs ahead
    finally:
        source.close()
    assert got == sorted(got) and got[-1] == 11  # in order, and it ends on the newest
    assert len(got) + source.dropped == 12

"""Video in and out with OpenCV's bundled FFmpeg (opencv-python-headless wheels ship it; nothing to download).

Reading: :class:`VideoReader` yields RGB uint8 frames with their time stamps. Writing: :class:`VideoWriter` makes an
MP4 with the MPEG-4 Part 2 codec ("mp4v"), the one OpenCV's wheel can encode without extra libraries (no H.264
encoder is bundled: browsers may not play the file, VLC/ffmpeg/most players do; re-encode with
``ffmpeg -i in.mp4 -c:v libx264 out.mp4`` for the web). The MP4 is written under a temporary name in the same
folder and renamed to its final name only when complete (see :mod:`i2lmesh.export.atomic`).

Logging: FFmpeg writes its own messages (e.g. ``[mov,mp4,m4a,3gp,3g2,mj2 @ 0x...] moov atom not found`` for a
corrupt file) straight to file descriptor 2, and OpenCV adds ``[ WARN:0@...]`` lines of its own; an unreadable
video is reported by us in one line instead. OpenCV sets FFmpeg's log level from ``OPENCV_FFMPEG_LOGLEVEL`` when
its FFmpeg backend is first used in the process (measured with opencv-python-headless 4.14: set before the first
``cv2.VideoCapture``/``VideoWriter`` it works, even after ``import cv2``; set later it has no effect), so importing
``i2lmesh`` (its ``__init__``, the earliest point) sets it to -8 (AV_LOG_QUIET) unless the user has set it
(``OPENCV_FFMPEG_LOGLEVEL=24`` shows FFmpeg's warnings again). OpenCV's own log level is lowered to errors only while a video is opened and read
(``cv2.utils.logging``), then restored.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from ..export.atomic import discard, temporary_path
from .errors import BadInputError
from .images import file_problem

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
DEFAULT_FPS = 25.0  # when the container does not say


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV's own warnings (e.g. ``VIDEOIO(CV_IMAGES): raised OpenCV exception`` when it tries its other
    backends on a file FFmpeg cannot open) off for the duration: errors only; the previous level is restored."""
    import cv2

    cvlog = getattr(getattr(cv2, "utils", None), "logging", None)
    if cvlog is None:  # an OpenCV build without the logging bindings
        yield
        return
    previous = cvlog.getLogLevel()
    cvlog.setLogLevel(min(previous, cvlog.LOG_LEVEL_ERROR))
    try:
        yield
    finally:
        cvlog.setLogLevel(previous)


class VideoReader:
    """Frames of a video file: ``for index, time_s, rgb in reader``. ``fps`` and ``num_frames`` (an estimate
    from the container, -1 when unknown). Raises BadInputError (one line) when the file cannot be decoded."""

    def __init__(self, path: str | os.PathLike, max_frames: int | None = None) -> None:
        import cv2

        self.path = Path(path)
        problem = file_problem(self.path)
        if problem:
            raise BadInputError(f"{self.path}: {problem}")
        with _quiet_opencv():
            self.capture = cv2.VideoCapture(str(self.path))
        if not self.capture.isOpened():
            raise BadInputError(f"{self.path}: not a readable video (corrupt or unsupported codec)")
        fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else DEFAULT_FPS
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or -1)
        self.num_frames = min(count, max_frames) if (max_frames and count > 0) else count
        self.max_frames = max_frames

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        import cv2

        index = 0
        while self.max_frames is None or index < self.max_frames:
            with _quiet_opencv():
                ok, frame = self.capture.read()
            if not ok or frame is None:
                break
            yield index, index / self.fps, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
        if index == 0:
            raise BadInputError(f"{self.path}: not a readable video (no decodable frames)")

    def close(self) -> None:
        self.capture.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoWriter:
    """Write RGB uint8 frames (all the same size) to an MP4 ("mp4v"). Odd sizes are padded by one pixel (the
    codec needs even sizes).

    The frames go to a hidden temporary ``.STEM.*.tmp.mp4`` in the same folder (the ``.mp4`` suffix tells OpenCV
    the container); :meth:`close` renames it to ``path`` once it is complete, :meth:`abort` deletes it. Used as a
    context manager, an exception in the ``with`` body aborts, so a failed or interrupted video never leaves a
    truncated ``path`` (an older file there stays as it was). No frame written: no file."""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path, self.fps = Path(path), float(fps)
        self.tmp_path = temporary_path(self.path)
        self.writer = None
        self.size: tuple[int, int] | None = None
        self.frames_written = 0

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        h, w = rgb.shape[:2]
        if self.writer is None:
            self.size = (w + w % 2, h + h % 2)
            self.writer = cv2.VideoWriter(str(self.tmp_path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
            if not self.writer.isOpened():
                self.abort()
                raise BadInputError(f"{self.path}: OpenCV cannot write MP4 here (no mp4v encoder)")
        frame = np.zeros((self.size[1], self.size[0], 3), np.uint8)
        frame[:h, :w] = rgb[:self.size[1], :self.size[0]]
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and give it its final name (nothing when no frame was written)."""
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        try:
            writer.release()
            os.replace(self.tmp_path, self.path)
        except BaseException:
            discard(self.tmp_path)
            raise

    def abort(self) -> None:
        """Stop and delete the temporary file; ``path`` is not touched."""
        writer, self.writer = self.writer, None
        try:
            if writer is not None:
                writer.release()
        finally:
            discard(self.tmp_path)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


__all__ = ["VideoReader", "VideoWriter", "VIDEO_SUFFIXES", "is_video"]

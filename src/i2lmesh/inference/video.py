"""Video in and out with OpenCV's bundled FFmpeg (opencv-python-headless wheels ship it; nothing to download).

Reading: :class:`VideoReader` yields RGB uint8 frames with their time stamps. Writing: :class:`VideoWriter` makes an
MP4 with the MPEG-4 Part 2 codec ("mp4v"), the one OpenCV's wheel can encode without extra libraries (no H.264
encoder is bundled: browsers may not play the file, VLC/ffmpeg/most players do; re-encode with
``ffmpeg -i in.mp4 -c:v libx264 out.mp4`` for the web).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from .predictor import BadInputError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
DEFAULT_FPS = 25.0  # when the container does not say


class VideoReader:
    """Frames of a video file: ``for index, time_s, rgb in reader``. ``fps`` and ``num_frames`` (an estimate
    from the container, -1 when unknown). Raises BadInputError (one line) when the file cannot be decoded."""

    def __init__(self, path: str | os.PathLike, max_frames: int | None = None) -> None:
        import cv2

        self.path = Path(path)
        if not self.path.is_file():
            raise BadInputError(f"{self.path}: file not found")
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
            ok, frame = self.capture.read()
            if not ok or frame is None:
                break
            yield index, index / self.fps, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
        if index == 0:
            raise BadInputError(f"{self.path}: the video has no decodable frames")

    def close(self) -> None:
        self.capture.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoWriter:
    """Write RGB uint8 frames (all the same size) to an MP4 ("mp4v"). Odd sizes are padded by one pixel (the
    codec needs even sizes)."""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path, self.fps = Path(path), float(fps)
        self.writer = None
        self.size: tuple[int, int] | None = None

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        h, w = rgb.shape[:2]
        if self.writer is None:
            self.size = (w + w % 2, h + h % 2)
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
            if not self.writer.isOpened():
                raise BadInputError(f"{self.path}: OpenCV cannot write MP4 here (no mp4v encoder)")
        frame = np.zeros((self.size[1], self.size[0], 3), np.uint8)
        frame[:h, :w] = rgb[:self.size[1], :self.size[0]]
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


__all__ = ["VideoReader", "VideoWriter", "VIDEO_SUFFIXES", "is_video"]

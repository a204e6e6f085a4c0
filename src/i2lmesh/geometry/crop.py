"""Box sanitising and the affine crop image <-> patch (official_spec.md 4.2 and 4.4).

Conventions: pixel coordinates with the origin at the top-left pixel's centre (OpenCV's), so a horizontal flip of
an image W pixels wide maps u -> W - 1 - u. An affine transform is a 2x3 matrix ``M`` acting on (u, v, 1).
``img2patch`` maps original-image pixels to crop pixels; ``patch2img`` (the reference's ``bb2img_trans``) is its
exact inverse.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

BOX_EXTENSION = 1.25  # the reference enlarges every square box by 25 %


def process_bbox(bbox_xywh: Sequence[float], image_width: int, image_height: int, aspect_ratio: float = 1.0,
                 extension: float = BOX_EXTENSION) -> np.ndarray | None:
    """Sanitise a box to the image, make it ``aspect_ratio`` (w/h) around its centre, then enlarge it.

    bbox_xywh: (x, y, w, h) pixels. Returns float64 (4,) (x, y, w, h) or None for an unusable box.
    Follows the reference's ``process_bbox``: clamp x1, y1 >= 0 and x2 = min(W-1, x1 + max(0, w-1)),
    y2 = min(H-1, y1 + max(0, h-1)) (so the box becomes 1 px narrower); reject unless w*h > 0, x2 >= x1 and
    y2 >= y1; expand the shorter side; multiply w and h by ``extension`` keeping the centre. We additionally reject
    a box that is still of zero size (a 1x1 input box), which would make the crop transform singular.
    """
    x, y, w, h = (float(v) for v in bbox_xywh)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return None
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(image_width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(image_height - 1.0, y1 + max(0.0, h - 1.0))
    if not (w * h > 0 and x2 >= x1 and y2 >= y1):
        return None
    x, y, w, h = x1, y1, x2 - x1, y2 - y1
    cx, cy = x + w / 2.0, y + h / 2.0
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    w, h = w * extension, h * extension
    if w <= 0 or h <= 0:
        return None
    return np.array([cx - w / 2.0, cy - h / 2.0, w, h], dtype=np.float64)


def _out_wh(out_size: int | Sequence[int]) -> tuple[float, float]:
    if isinstance(out_size, (int, np.integer)):
        return float(out_size), float(out_size)
    return float(out_size[0]), float(out_size[1])


def crop_transforms(bbox_xywh: Sequence[float], out_size: int | Sequence[int], scale: float = 1.0,
                    rot_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The affine crop of a box to an ``out_size`` patch, and its exact inverse: (img2patch, patch2img), 2x3 float64.

    out_size: S or (width, height) of the patch in pixels. scale: the source region is ``scale`` times the box
    (> 1 shows more context). rot_deg: the patch shows the image rotated by -rot_deg about the box centre.
    Same map as the reference's ``gen_trans_from_patch_cv`` (box centre -> patch centre, centre + R(rot)(0, h s/2)
    -> bottom-centre, centre + R(rot)(w s/2, 0) -> right-centre), written in closed form:
    img = c + R(rot) diag(w s / S_w, h s / S_h) (patch - S/2).
    """
    x, y, w, h = (float(v) for v in bbox_xywh)
    out_w, out_h = _out_wh(out_size)
    assert w > 0 and h > 0, "The box must have a positive width and height."
    theta = math.radians(rot_deg)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    linear = rot @ np.diag([w * scale / out_w, h * scale / out_h])
    centre = np.array([x + w / 2.0, y + h / 2.0])
    patch2img = np.concatenate([linear, (centre - linear @ np.array([out_w / 2.0, out_h / 2.0]))[:, None]], 1)
    return invert_affine(patch2img), patch2img


def flip_transform(image_width: int) -> np.ndarray:
    """The horizontal mirror of an image W pixels wide, u -> W - 1 - u, as a 2x3 affine (it is its own inverse)."""
    return np.array([[-1.0, 0.0, image_width - 1.0], [0.0, 1.0, 0.0]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Exact inverse of 2x3 affine transforms (...x2x3)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    linear_inv = np.linalg.inv(matrix[..., :2])
    return np.concatenate([linear_inv, -(linear_inv @ matrix[..., 2:])], -1)


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The affine ``outer o inner`` (apply ``inner`` first), both ...x2x3."""
    outer, inner = np.asarray(outer, dtype=np.float64), np.asarray(inner, dtype=np.float64)
    return np.concatenate([outer[..., :2] @ inner[..., :2], outer[..., :2] @ inner[..., 2:] + outer[..., 2:]], -1)


def apply_affine(points_xy, matrix):
    """Points (...xNx2) through affine transforms (2x3, or ...x2x3 matching the leading dims). numpy or torch."""
    return points_xy @ matrix[..., :2].swapaxes(-1, -2) + matrix[..., None, :, 2]


def warp_image(image: np.ndarray, img2patch: np.ndarray, out_size: int | Sequence[int]) -> np.ndarray:
    """The affine crop of an image into a patch: the one crop of training (``data.targets``) and inference.

    image: (H, W, C) or (H, W), any dtype cv2 warps (uint8 photos, float32 0..255 training images).
    img2patch: 2x3 affine, image pixels -> patch pixels (:func:`crop_transforms`). out_size: S or (width, height).
    Returns the (out_h, out_w[, C]) float32 patch: bilinear, zero outside the image, exactly the reference's
    ``cv2.warpAffine`` of the whole float32 image (official_spec.md 4.4), computed on the region the patch can
    sample only (bilinear reads the 2x2 neighbourhood, so a 2 px margin suffices): a 12-megapixel photo is not
    converted to float whole for a 256 px crop. Identical to warping the whole image (tests/test_decode.py).
    """
    import cv2

    out_w, out_h = (int(v) for v in _out_wh(out_size))
    img2patch = np.asarray(img2patch, dtype=np.float64)
    h, w = image.shape[:2]
    corners = apply_affine(np.array([[0, 0], [out_w, 0], [0, out_h], [out_w, out_h]], np.float64),
                           invert_affine(img2patch))
    x0 = int(np.clip(math.floor(corners[:, 0].min()) - 2, 0, w))
    x1 = int(np.clip(math.ceil(corners[:, 0].max()) + 3, 0, w))
    y0 = int(np.clip(math.floor(corners[:, 1].min()) - 2, 0, h))
    y1 = int(np.clip(math.ceil(corners[:, 1].max()) + 3, 0, h))
    if x1 <= x0 or y1 <= y0:  # the patch lies wholly outside the image
        return np.zeros((out_h, out_w) + tuple(image.shape[2:]), np.float32)
    region = np.ascontiguousarray(image[y0:y1, x0:x1], dtype=np.float32)
    shifted = img2patch.copy()
    shifted[:, 2] += img2patch[:, :2] @ np.array([x0, y0], np.float64)  # region pixel (0, 0) is image (x0, y0)
    return cv2.warpAffine(region, shifted, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


__all__ = ["BOX_EXTENSION", "process_bbox", "crop_transforms", "flip_transform", "invert_affine", "compose_affine",
           "apply_affine", "warp_image"]

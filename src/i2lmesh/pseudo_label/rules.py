"""Fit rejection rules of pseudo-labels, so that ``fit_valid`` means what it means in our dataset loaders.

The reference (I2L-MeshNet's ``is_valid_fit``, restated in ``data/formats/_common.py``) rejects a body-model fit:

- **3D** (Human3.6M, MuCo): mean distance between the fit's Human3.6M-regressed joints and the dataset's 3D joints,
  on the joints with Human3.6M names, both centred on their mean, above 25 mm (:data:`FIT_THRESHOLD_MM`);
- **2D** (MSCOCO): mean distance between the annotated 2D joints and the projected fit joints in the 64 x 64
  heatmap grid of the (unaugmented) crop of the processed box, above 3 bins (:data:`FIT_THRESHOLD_HM`).

:func:`fit_error_3d_mm` and :func:`fit_error_hm` compute those errors for any keypoint set: on Human3.6M joints and
on MSCOCO's 17 + Pelvis they give exactly the loaders' ``fit_error_3d_mm`` / ``coco_fit_error_hm`` (tested). Hands
have no reference rule; their 3D threshold is 25 mm scaled by the hand network's 3D box over the body network's
(0.3 m / 2 m: 3.75 mm), i.e. the same fraction of a depth bin (:func:`default_threshold_mm`).
"""
from __future__ import annotations

import numpy as np

from ..data.formats._common import FIT_THRESHOLD_HM, FIT_THRESHOLD_MM
from ..geometry.crop import apply_affine, crop_transforms, process_bbox

BODY_BOX_3D_M = 2.0   # the paper's body network's bbox_3d_size (config.py)
HAND_BOX_3D_M = 0.3   # the paper's hand network's


def default_threshold_mm(kind: str) -> float:
    """The 3D rejection threshold in mm: 25 (the reference's, bodies) or 25 x 0.3 / 2 = 3.75 (hands)."""
    return FIT_THRESHOLD_MM if kind == "body" else FIT_THRESHOLD_MM * HAND_BOX_3D_M / BODY_BOX_3D_M


def fit_error_3d_mm(data_m: np.ndarray, fit_m: np.ndarray, valid: np.ndarray) -> float | None:
    """Mean distance (mm) between 3D keypoints ``data_m`` (K, 3) m and the fit's ``fit_m`` (K, 3) m over the
    ``valid`` (K,) ones, both centred on their mean over those keypoints (translation alignment, as the
    reference's ``get_fitting_error``). None when no keypoint is valid."""
    ok = np.asarray(valid, np.float64).reshape(-1) > 0
    if not ok.any():
        return None
    gt = np.asarray(data_m, np.float64)[ok]
    fit = np.asarray(fit_m, np.float64)[ok]
    gt, fit = gt - gt.mean(0), fit - fit.mean(0)
    return float(np.linalg.norm(gt - fit, axis=1).mean() * 1000.0)


def fit_error_hm(joints_px: np.ndarray, valid: np.ndarray, fit_px: np.ndarray, bbox_xywh: np.ndarray,
                 image_size: tuple[int, int], input_size: int = 256, heatmap_size: int = 64) -> float | None:
    """Mean 2D distance between keypoints ``joints_px`` (K, 2) and the fit's projected ``fit_px`` (K, 2) over the
    ``valid`` (K,) ones, in heatmap bins of the crop of ``process_bbox(bbox_xywh)`` (the reference's MSCOCO rule at
    scale 1, no rotation, no flip). None when the box is unusable or no keypoint is valid."""
    width, height = image_size
    box = process_bbox(bbox_xywh, width, height)
    ok = np.asarray(valid, np.float64).reshape(-1) > 0
    if box is None or not ok.any():
        return None
    img2patch, _ = crop_transforms(box, input_size)
    to_hm = heatmap_size / input_size
    gt = apply_affine(np.asarray(joints_px, np.float64), img2patch) * to_hm
    fit = apply_affine(np.asarray(fit_px, np.float64), img2patch) * to_hm
    return float(np.linalg.norm(gt[ok] - fit[ok], axis=1).mean())


def is_rejected(error: float | None, threshold: float) -> bool:
    """The reference rejects only ``error > threshold``; an unmeasurable error (None) is not a rejection."""
    return error is not None and error > threshold


__all__ = ["FIT_THRESHOLD_MM", "FIT_THRESHOLD_HM", "default_threshold_mm", "fit_error_3d_mm", "fit_error_hm",
           "is_rejected"]

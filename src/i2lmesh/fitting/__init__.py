"""Fitting body models to keypoints (SMPLify-style): see :func:`fit_to_keypoints` and docs/fitting.md."""
from __future__ import annotations

from .fit import FitConfig, FitResult, fit_to_keypoints
from .keypoints import COCO_17, COCO_23, get_keypoint_set, keypoint_regressor, keypoint_sets

__all__ = ["FitConfig", "FitResult", "fit_to_keypoints", "COCO_17", "COCO_23", "get_keypoint_set",
           "keypoint_regressor", "keypoint_sets"]

"""Pseudo-ground-truth meshes for real images: fit a body model (Anny by default) to a dataset's keypoints, or to
a detector's on unlabelled photos and videos, at dataset scale (docs/pseudo_label.md)."""
from __future__ import annotations

from .convert import SurfaceCorrespondence, build_correspondence, convert_fit
from .label import FIT_SETS, LabelOptions, LabelStats, ModelBank, blazepose_to_coco18, label_records, summarize
from .pipeline import RunResult, Source, pseudo_label

__all__ = ["FIT_SETS", "LabelOptions", "LabelStats", "ModelBank", "blazepose_to_coco18", "label_records",
           "summarize", "Source", "RunResult", "pseudo_label", "SurfaceCorrespondence", "build_correspondence",
           "convert_fit"]

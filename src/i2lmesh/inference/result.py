"""The Predictor's result schema: :class:`PersonResult`, one body or hand in one image, and its JSON form
(:meth:`PersonResult.to_dict`, written by ``export.meshes.write_json``).

Frames and units: image pixels of the *original* image (origin top-left) for every 2D value, box and K; camera
metres (x right, y down, z forward) for 3D values; uncertainties in millimetres.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..fitting.keypoints import get_keypoint_set


@dataclass
class PersonResult:
    """One body or hand in one image. Pixels refer to the original image; 3D is camera metres.

    vertices_m (V,3), joints_m (J,3): camera space; joints = J x vertices_m, the regressor applied to the
    camera-space mesh (paper Eq. 7, ``inference.decode``; evaluation scores the same joints).
    joints_2d_px (J,2): joints_m projected with K, in image pixels.
    faces (F,3) int64. box_xywh (4,): the detector's or the user's box; box_processed_xywh (4,): the square x1.25
    box that was cropped. box_source: "user", "hog" or "mediapipe". K (3,3): intrinsics used (original pixels);
    intrinsics_source: "user", "user focal", "default (f = 1500 px)" (``geometry.camera.default_intrinsics``).
    root_depth_m and root_depth_source: "user" or "k-value (assumed W x H m)".
    *_uncertainty_xyz_mm (N,3): 1-sigma per axis from the heatmap spreads (x/y through the crop scale and K at each
    point's depth, z through bbox_3d_size / D); *_uncertainty_mm (N,): their norm.
    score = detector_score x heatmap_confidence; heatmap_confidence in [0, 1] is 1 - mean joint x/y spread /
    the spread of a uniform heatmap (0: flat heatmaps, 1: one-hot peaks). warnings: one-line notes on results
    that are likely wrong (e.g. ``box_shape_warning``); empty when none.
    keypoints_2d_px (K,2), keypoint_scores (K,), keypoint_set ("blazepose33", "mano21"): the keypoint detector's
    own keypoints in original pixels (None for HOG and user boxes); side: "left"/"right" for detected hands.
    method: "network", "fit" or "network+fit" (``inference.keypoint_fit``). For fitted people the mesh is the
    fitting body model's (Anny), the uncertainties and heatmap_confidence are None (no heatmaps), score is the
    detector's, root_depth_source is "fit", and ``fit`` holds the per-keypoint reprojection residuals (original px)
    and ``fit_params`` the body model's pose (J,3 axis-angle), shape (S,) and trans (3,) metres (a warm start).
    track_id: the person's track in a video (``inference.tracking``), else None. box_index: the index of the box
    (user box or detection) this person came from, among the image's boxes (people not fitted leave gaps).
    """

    kind: str
    vertices_m: np.ndarray
    joints_m: np.ndarray
    joints_2d_px: np.ndarray
    faces: np.ndarray
    joint_names: list[str]
    root_index: int
    box_xywh: np.ndarray
    box_processed_xywh: np.ndarray
    box_source: str
    K: np.ndarray
    intrinsics_source: str
    root_depth_m: float
    root_depth_source: str
    vertex_uncertainty_mm: np.ndarray | None
    vertex_uncertainty_xyz_mm: np.ndarray | None
    joint_uncertainty_mm: np.ndarray | None
    joint_uncertainty_xyz_mm: np.ndarray | None
    score: float
    detector_score: float | None
    heatmap_confidence: float | None
    warnings: list[str] = field(default_factory=list)
    keypoints_2d_px: np.ndarray | None = None
    keypoint_scores: np.ndarray | None = None
    keypoint_set: str | None = None
    side: str | None = None
    method: str = "network"
    fit: dict[str, Any] | None = None
    fit_params: dict[str, np.ndarray] | None = None
    track_id: int | None = None
    box_index: int | None = None

    def to_dict(self, with_vertices: bool = False) -> dict[str, Any]:
        """JSON-ready summary (lists of floats). Vertices and faces only when ``with_vertices``."""
        def r(a, nd=6):
            return np.round(np.asarray(a, dtype=np.float64), nd).tolist()

        def stat(a):
            return None if a is None else {"mean": round(float(a.mean()), 1), "median": round(float(np.median(a)), 1),
                                           "max": round(float(a.max()), 1)}

        out = {
            "kind": self.kind, "method": self.method, "score": round(self.score, 4),
            "detector_score": None if self.detector_score is None else round(self.detector_score, 4),
            "heatmap_confidence": None if self.heatmap_confidence is None else round(self.heatmap_confidence, 4),
            "box_xywh_px": r(self.box_xywh, 2), "box_processed_xywh_px": r(self.box_processed_xywh, 2),
            "box_source": self.box_source, "camera": {"K": r(self.K, 4), "source": self.intrinsics_source},
            "root_depth_m": round(self.root_depth_m, 4), "root_depth_source": self.root_depth_source,
            "joint_names": list(self.joint_names), "root_index": self.root_index,
            "joints_2d_px": r(self.joints_2d_px, 2), "joints_3d_m": r(self.joints_m, 5),
            "joint_uncertainty_mm": None if self.joint_uncertainty_mm is None else r(self.joint_uncertainty_mm, 1),
            "joint_uncertainty_xyz_mm": None if self.joint_uncertainty_xyz_mm is None
            else r(self.joint_uncertainty_xyz_mm, 1),
            "vertex_uncertainty_mm": stat(self.vertex_uncertainty_mm),
            "num_vertices": int(len(self.vertices_m)), "num_faces": int(len(self.faces)),
            "warnings": list(self.warnings),
        }
        if self.box_index is not None:
            out["box_index"] = int(self.box_index)
        if self.keypoints_2d_px is not None:
            out["detector_keypoints"] = {"set": self.keypoint_set, "names": _keypoint_names(self.keypoint_set),
                                         "xy_px": r(self.keypoints_2d_px, 2), "scores": r(self.keypoint_scores, 3)}
        if self.side is not None:
            out["side"] = self.side
        if self.track_id is not None:
            out["track_id"] = int(self.track_id)
        if self.fit is not None:
            out["fit"] = dict(self.fit)
        if with_vertices:
            out["vertices_m"] = r(self.vertices_m, 5)
            out["faces"] = np.asarray(self.faces).tolist()
            if self.vertex_uncertainty_mm is not None:
                out["vertex_uncertainty_mm_all"] = r(self.vertex_uncertainty_mm, 1)
        return out


def _keypoint_names(keypoint_set: str | None) -> list[str] | None:
    """The names of a detector's keypoint set ("blazepose33", "mano21", ...), None when unknown."""
    from .keypoints import BLAZEPOSE_33

    if keypoint_set == BLAZEPOSE_33.name:
        return list(BLAZEPOSE_33.names)
    try:
        return list(get_keypoint_set(keypoint_set).names)
    except KeyError:
        return None


__all__ = ["PersonResult"]

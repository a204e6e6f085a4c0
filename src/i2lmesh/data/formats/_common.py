"""Helpers shared by the real-dataset loaders."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ...geometry.camera import intrinsics, project
from ...geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..record import finite

log = logging.getLogger("i2lmesh.data.formats")


class RejectCounter:
    """Counts annotations rejected at load time (NaN/inf, empty box) and logs the total with examples."""

    def __init__(self, source: str) -> None:
        self.source, self.count, self.examples = source, 0, []

    def check(self, what: str, *values: Any, bbox: Any = None) -> bool:
        ok = finite(*values, bbox)
        if ok and bbox is not None:
            ok = len(bbox) == 4 and bbox[2] > 0 and bbox[3] > 0
        if not ok:
            self.count += 1
            if len(self.examples) < 3:
                self.examples.append(what)
        return ok

    def report(self, kept: int) -> None:
        if self.count:
            log.warning("%s: rejected %d of %d annotations with NaN/inf or an empty box, e.g. %s", self.source,
                        self.count, kept + self.count, "; ".join(self.examples))


def k_from(focal, princpt) -> np.ndarray:
    return intrinsics(np.asarray(focal, np.float64), np.asarray(princpt, np.float64))


def rootnet_entries(path: Path, key: str = "image_id") -> dict[int, dict] | None:
    """RootNet's test output ({image_id or ann_id, bbox, root_cam (mm)}) keyed by ``key``; None if absent."""
    if not path.is_file():
        return None
    import json
    data = json.loads(path.read_text())
    items = data.values() if isinstance(data, dict) else data
    return {int(item[key]): item for item in items}


def apply_rootnet(record, entry: dict | None) -> None:
    """Use RootNet's box as is (already squared and enlarged) and its root depth (mm -> m)."""
    if entry is None:
        return
    record.bbox_xywh = np.asarray(entry["bbox"], np.float64)
    record.bbox_is_final = True
    record.root_depth_m = float(np.asarray(entry["root_cam"], np.float64)[2]) / 1000.0


def rotate_root(pose: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Axis-angle pose with its root orientation pre-multiplied by ``rotation`` (3x3)."""
    pose = np.array(pose, np.float64).reshape(-1)
    pose[:3] = matrix_to_axis_angle(rotation @ axis_angle_to_matrix(pose[:3]))
    return pose


def smpl_params(data: dict) -> dict[str, np.ndarray]:
    return {"pose": np.asarray(data["pose"], np.float64).reshape(-1),
            "shape": np.asarray(data["shape"], np.float64).reshape(-1),
            "trans": np.asarray(data["trans"], np.float64).reshape(3)}


def image_dir(root: Path, *candidates: str) -> Path:
    """The first existing folder among ``root/candidate``; else the first candidate (errors come per image)."""
    for c in candidates:
        if (root / c).is_dir():
            return root / c
    return root / candidates[0]


__all__ = ["RejectCounter", "k_from", "rootnet_entries", "apply_rootnet", "rotate_root", "smpl_params",
           "image_dir", "project", "log"]

"""The absolute depth of the root joint when the user does not know it (and where the default intrinsics are).

Root depth: the RootNet k-value (Moon et al., ICCV 2019, eq. 1) used directly as the estimate,
``Z = sqrt(fx * fy * A_real / A_box)``: a person of a known physical area ``A_real`` (m^2) seen with focal
lengths fx, fy (px) covers ``A_box`` px^2 at depth Z. RootNet corrects k with a learned image factor; we have no
RootNet, so the error of the bare k-value on synthetic data (where the truth is known) is measured in
docs/inference.md. ``A_box`` is the area of the *processed* box (square, x1.25), as in RootNet, and ``A_real`` is
RootNet's 2 m x 2 m for bodies and 0.2 m x 0.2 m for hands. For hands, 0.3 m x 0.3 m (the hand bbox_3d_size) put
synthetic hands 1.5x too far (median; median relative error 52 %), 0.2 m removes that bias (median error 14 %);
an adult hand is ~0.19 m long, so its square x1.25 box is ~0.2-0.24 m on real photos too.

Because Z scales with f, the metric size of the decoded mesh (X = (u - cx) / fx Z) does not depend on the focal
length chosen: a wrong focal moves the person along the ray, it does not shrink it.

Intrinsics: the user's K when known; else :func:`~i2lmesh.geometry.camera.default_intrinsics`, the package's one
rule for an unknown camera (f = 1500 px, principal point at the image centre; defined and argued in
geometry/camera.py).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..geometry.camera import default_intrinsics

# Assumed physical extent of the processed box (square x1.25) per kind, metres: RootNet's k-value area for bodies;
# for hands the size measured best on synthetic data (docs/inference.md).
ASSUMED_BOX_SIZE_M = {"body": (2.0, 2.0), "hand": (0.2, 0.2)}

# ``i2lmesh.inference.image_intrinsics`` (kept importable): the one default of geometry/camera.py, not a second rule.
image_intrinsics = default_intrinsics


def k_value_root_depth(box_xywh: Sequence[float], K: np.ndarray, kind: str = "body",
                       real_size_m: tuple[float, float] | None = None) -> float:
    """RootNet's k-value as a root depth estimate, metres: sqrt(fx fy A_real / A_box).

    box_xywh: the processed box (square x1.25, image px). K: 3x3 intrinsics (px). kind selects the assumed
    real size (``ASSUMED_BOX_SIZE_M``) unless ``real_size_m`` (w, h metres) is given.
    """
    w_m, h_m = real_size_m if real_size_m is not None else ASSUMED_BOX_SIZE_M[kind]
    area_px = float(box_xywh[2]) * float(box_xywh[3])
    assert area_px > 0, f"the box must have a positive area, got {list(box_xywh)}."
    K = np.asarray(K, dtype=np.float64)
    return math.sqrt(K[0, 0] * K[1, 1] * w_m * h_m / area_px)


__all__ = ["ASSUMED_BOX_SIZE_M", "image_intrinsics", "k_value_root_depth"]

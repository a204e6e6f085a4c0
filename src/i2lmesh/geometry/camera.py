"""Pinhole camera (OpenCV intrinsics K) and the unit conversions heatmap bins <-> crop px <-> image px <-> camera m.

Frames (design.md): camera x right, y down, z forward, metres; image pixels with the origin at the top-left pixel
centre; heatmap bins 0..H-1 on x/y (one bin = input_size / heatmap_size crop pixels, no half-pixel offset, as the
reference) and 0..D-1 on z, spanning ``bbox_3d_size_m`` centred on the root depth.

:func:`camera_to_heatmap` (training targets) and :func:`decode_to_camera` (the decoder's back-projection,
``inference.decode``) are exact inverses of each other. Functions take numpy or torch and return the same kind.
Every default intrinsics (an unknown camera) is :func:`default_intrinsics` here.
"""
from __future__ import annotations

import numpy as np
import torch

from .crop import apply_affine

# The one rule for a camera whose intrinsics are unknown (every default K of the package comes from here):
# f = 1500 px, principal point at the image centre (W/2, H/2). It is the paper's "normalized camera intrinsic
# parameters if not available, following Moon et al." (Sec. 3.3; RootNet's f = 1500), the reference's demo and
# MSCOCO test setting, so the RootNet depths of the COCO test split, the COCO records without a camera, the
# pseudo-labels of photos, the body-model fit and the predictor all assume the same camera. A wrong focal does not
# change the metric size of a mesh decoded with the box-size root depth (Z scales with f, X = (u - cx) / f Z): it
# moves the person along the viewing ray (docs/inference.md).
DEFAULT_FOCAL_PX = 1500.0


def intrinsics(focal_xy, principal_point_xy) -> np.ndarray:
    """3x3 K from focal lengths (fx, fy) or one f, and the principal point (cx, cy), all in pixels."""
    f = np.broadcast_to(np.asarray(focal_xy, dtype=np.float64).reshape(-1), (2,))
    c = np.asarray(principal_point_xy, dtype=np.float64).reshape(2)
    return np.array([[f[0], 0.0, c[0]], [0.0, f[1], c[1]], [0.0, 0.0, 1.0]])


def default_intrinsics(image_width: float, image_height: float, focal_px: float | None = None) -> np.ndarray:
    """K (3x3 float64, pixels) for an image of W x H pixels whose camera is unknown: f = ``focal_px`` (a user's
    focal length) or ``DEFAULT_FOCAL_PX`` (1500 px), principal point at (W/2, H/2). AssertionError for f <= 0."""
    f = DEFAULT_FOCAL_PX if focal_px is None else float(focal_px)
    assert f > 0, f"the focal length must be positive, got {f}."
    return intrinsics(f, (image_width / 2.0, image_height / 2.0))


def _stack(parts, like):
    return torch.stack(parts, -1) if isinstance(like, torch.Tensor) else np.stack(parts, -1)


def project(points_cam, K):
    """Camera points (...xNx3, metres) -> pixels (...xNx2): u = x / z fx + cx, v = y / z fy + cy (zero skew).

    K: 3x3 or ...x3x3 matching the leading dims. The one pinhole projection of the package (training targets, the
    predictor's 2D joints, the renderer's ``project_points``); numpy or torch in, the same kind out."""
    x, y, z = points_cam[..., 0], points_cam[..., 1], points_cam[..., 2]
    fx, fy = K[..., 0, 0, None], K[..., 1, 1, None]
    cx, cy = K[..., 0, 2, None], K[..., 1, 2, None]
    return _stack([x / z * fx + cx, y / z * fy + cy], points_cam)


def back_project(uv, depth, K):
    """Pixels (...xNx2) with camera depths (...xN, metres) -> camera points (...xNx3). X = (u - cx) / fx * Z."""
    fx, fy = K[..., 0, 0, None], K[..., 1, 1, None]
    cx, cy = K[..., 0, 2, None], K[..., 1, 2, None]
    return _stack([(uv[..., 0] - cx) / fx * depth, (uv[..., 1] - cy) / fy * depth, depth], uv)


def heatmap_to_crop_px(xy_hm, input_size: int, heatmap_size: int):
    """Heatmap bins -> crop pixels: multiply by input_size / heatmap_size (4 for the paper)."""
    return xy_hm * (input_size / heatmap_size)


def crop_px_to_heatmap(xy_crop, input_size: int, heatmap_size: int):
    return xy_crop * (heatmap_size / input_size)


def depth_bins_to_relative_m(z_bins, depth_bins: int, bbox_3d_size_m: float):
    """z bins (0..D-1) -> metres relative to the root: (z / D * 2 - 1) * bbox_3d_size / 2."""
    return (z_bins / depth_bins * 2.0 - 1.0) * (bbox_3d_size_m / 2.0)


def relative_m_to_depth_bins(z_rel_m, depth_bins: int, bbox_3d_size_m: float):
    """Root-relative depth (metres) -> z bins: (z_rel / (bbox_3d_size / 2) + 1) / 2 * D."""
    return (z_rel_m / (bbox_3d_size_m / 2.0) + 1.0) / 2.0 * depth_bins


def camera_to_heatmap(points_cam, K, img2patch, root_depth_m, input_size: int, heatmap_size: int, depth_bins: int,
                      bbox_3d_size_m: float):
    """Camera points (...xNx3, m) -> heatmap coordinates (...xNx3, bins): project with K, crop with img2patch
    (2x3 or ...x2x3), scale to bins; z relative to ``root_depth_m`` (scalar or ...) in depth bins."""
    uv = apply_affine(project(points_cam, K), img2patch)
    xy_hm = crop_px_to_heatmap(uv, input_size, heatmap_size)
    root = root_depth_m[..., None] if hasattr(root_depth_m, "ndim") and root_depth_m.ndim else root_depth_m
    z_hm = relative_m_to_depth_bins(points_cam[..., 2] - root, depth_bins, bbox_3d_size_m)
    return _stack([xy_hm[..., 0], xy_hm[..., 1], z_hm], points_cam)


def decode_to_camera(points_hm, bb2img_trans, root_depth_m, K, input_size: int, heatmap_size: int, depth_bins: int,
                     bbox_3d_size_m: float):
    """Points in heatmap bins -> camera-space metres: the back-projection step of the decoder
    (:func:`i2lmesh.inference.decode.decode`, which adds the joints, 2D joints and uncertainty).

    points_hm (...xNx3): x, y in heatmap bins of the crop, z in depth bins around the root.
    bb2img_trans (2x3 or ...x2x3): crop pixels -> image pixels (``patch2img`` of :func:`crop_transforms`).
    root_depth_m (scalar or ...): absolute depth of the root joint (RootNet's, or ground truth).
    K (3x3 or ...x3x3): intrinsics of the image the box lives in.
    Steps (official_spec.md 4.8): bins * input/heatmap -> crop px -> image px; z = (z/D*2-1) * bbox_3d_size/2 +
    root depth; X = (u - cx)/fx Z, Y = (v - cy)/fy Z. Returns (...xNx3) metres.
    """
    uv = apply_affine(heatmap_to_crop_px(points_hm[..., :2], input_size, heatmap_size), bb2img_trans)
    root = root_depth_m[..., None] if hasattr(root_depth_m, "ndim") and root_depth_m.ndim else root_depth_m
    depth = depth_bins_to_relative_m(points_hm[..., 2], depth_bins, bbox_3d_size_m) + root
    return back_project(uv, depth, K)


__all__ = ["DEFAULT_FOCAL_PX", "intrinsics", "default_intrinsics", "project", "back_project", "heatmap_to_crop_px",
           "crop_px_to_heatmap", "depth_bins_to_relative_m", "relative_m_to_depth_bins", "camera_to_heatmap",
           "decode_to_camera"]

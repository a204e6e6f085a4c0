"""Geometry: the affine crop, the camera and unit conversions, Procrustes alignment, rotation conversions."""
from __future__ import annotations

from .camera import (DEFAULT_FOCAL_PX, back_project, camera_to_heatmap, decode_to_camera, default_intrinsics,
                     depth_bins_to_relative_m, intrinsics, project, relative_m_to_depth_bins)
from .crop import (BOX_EXTENSION, apply_affine, compose_affine, crop_transforms, flip_transform, invert_affine,
                   process_bbox, warp_image)
from .procrustes import procrustes_align, similarity_transform
from .rotations import axis_angle_to_matrix, flip_axis_angle_pose, matrix_to_axis_angle, rotation_z

__all__ = ["DEFAULT_FOCAL_PX", "back_project", "camera_to_heatmap", "decode_to_camera", "default_intrinsics",
           "depth_bins_to_relative_m", "intrinsics", "project", "relative_m_to_depth_bins", "BOX_EXTENSION",
           "apply_affine", "compose_affine", "crop_transforms", "flip_transform", "invert_affine", "process_bbox",
           "warp_image", "procrustes_align", "similarity_transform", "axis_angle_to_matrix", "flip_axis_angle_pose",
           "matrix_to_axis_angle", "rotation_z"]

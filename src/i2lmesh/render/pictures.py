"""The overlay picture of the demo, the web page and videos: the image with the meshes drawn over it, beside a side
view of the same meshes turned 90 degrees about the vertical axis (depth and profile at a glance)."""
from __future__ import annotations

import numpy as np

OVERLAY_MAX_SIDE_PX = 2048  # overlay pictures and videos are rendered at most this large (longest side)
PALETTE = ((0.65, 0.74, 0.86), (0.90, 0.62, 0.55), (0.60, 0.84, 0.62), (0.88, 0.80, 0.50), (0.78, 0.62, 0.86))


SIDE_VIEW_FILL = 0.85  # the turned meshes fill at most this fraction of the side panel's width and height


def side_view_placement(vertices_m: np.ndarray, K: np.ndarray, size_hw: tuple[int, int]
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the side view puts the meshes: (rotation 3x3, centre (3,), target (3,)) such that
    ``(v - centre) @ rotation.T + target`` turns all vertices (N, 3, camera metres) 90 degrees about the vertical
    axis through their bounding box's centre and places them straight ahead of the camera K at the distance where
    they fill ``SIDE_VIEW_FILL`` of the panel (H, W): people near the camera are not cut off, a hand is not a dot."""
    everything = np.asarray(vertices_m, np.float64)
    lo, hi = everything.min(0), everything.max(0)
    centre = 0.5 * (lo + hi)
    rot = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # 90 degrees about camera y
    half = 0.5 * np.abs(rot @ (hi - lo))  # half-extents after turning: x <- depth, y, z <- -x
    h, w = size_hw
    # pinhole: a half-extent e at distance Z - half_z (its nearest face) spans f * e / (Z - half_z) pixels
    distance = max(K[0, 0] * half[0] / (0.5 * SIDE_VIEW_FILL * w), K[1, 1] * half[1] / (0.5 * SIDE_VIEW_FILL * h))
    target = np.array([0.0, 0.0, max(distance + half[2], 2.0 * half[2], 1e-3)])
    return rot, centre, target


def _side_view(results, K: np.ndarray, size_hw: tuple[int, int], backend: str):
    """The meshes turned 90 degrees about the vertical axis through their common centre, framed to fill the panel
    (``side_view_placement``): the picture shows depth, the people's profile."""
    h, w = size_hw
    K_side = K.copy()
    K_side[0, 2], K_side[1, 2] = w / 2.0, h / 2.0
    rot, centre, target = side_view_placement(np.concatenate([r.vertices_m for r in results]), K_side, size_hw)
    return _render_people([(r.vertices_m - centre) @ rot.T + target for r in results], results, K_side, size_hw,
                          backend)


def person_colours(count: int) -> list[tuple[float, float, float]]:
    """RGB in [0, 1] of each of ``count`` people, in result order: the overlay's colours (PALETTE, cycled), which the
    mesh files' materials repeat."""
    return [PALETTE[i % len(PALETTE)] for i in range(count)]


def _render_people(vertex_sets, results, K, size_hw, backend):
    from . import render_mesh

    h, w = size_hw
    color = np.zeros((h, w, 3), np.float32)
    depth = np.full((h, w), np.inf, np.float32)
    mask = np.zeros((h, w), bool)
    for vertices, r, rgb in zip(vertex_sets, results, person_colours(len(results))):
        out = render_mesh(vertices, r.faces, K, (h, w), vertex_colors=rgb, backend=backend)
        nearer = out.mask & (out.depth_m < depth)
        color[nearer] = out.color[nearer]
        depth[nearer] = out.depth_m[nearer]
        mask |= out.mask
    return color, mask


def overlay_picture(rgb: np.ndarray, results, K: np.ndarray, backend: str = "numba",
                    max_side: int = OVERLAY_MAX_SIDE_PX, empty_message: str = "no person found") -> np.ndarray:
    """[image with the meshes drawn over it | side view], RGB uint8, at most ``max_side`` px on its longest side.

    rgb: the image (H, W, 3) uint8 whose pixels ``K`` (3x3) refers to. Without any result the side view says
    ``empty_message`` (a picture that shows nothing should say why)."""
    import cv2

    h, w = rgb.shape[:2]
    factor = min(1.0, max_side / max(h, w))
    if factor < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
        h, w = rgb.shape[:2]
    K = np.diag([factor, factor, 1.0]) @ np.asarray(K, np.float64)
    photo = rgb.astype(np.float32) / 255.0
    side = np.full_like(photo, 0.15)
    if results:
        color, mask = _render_people([r.vertices_m for r in results], results, K, (h, w), backend)
        alpha = 0.85 * mask[..., None]
        photo = (1 - alpha) * photo + alpha * color
        side_color, side_mask = _side_view(results, K, (h, w), backend)
        side[side_mask] = side_color[side_mask]
    elif empty_message:
        scale = max(0.4, w / 640.0)
        (tw, th), _ = cv2.getTextSize(empty_message, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.putText(side, empty_message, ((w - tw) // 2, (h + th) // 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0.85, 0.85, 0.85), max(1, round(scale)), cv2.LINE_AA)
    gap = np.ones((h, max(2, w // 100), 3), np.float32)
    return np.clip(np.rint(np.concatenate([photo, gap, side], 1) * 255), 0, 255).astype(np.uint8)


__all__ = ["OVERLAY_MAX_SIDE_PX", "PALETTE", "person_colours", "SIDE_VIEW_FILL", "overlay_picture", "side_view_placement"]

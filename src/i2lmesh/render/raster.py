"""Software z-buffer rasteriser (numba), the renderer that needs no GL at all.

It draws a :class:`~i2lmesh.render.common.TriangleSoup` with the same conventions as the GL path:
- a pixel is drawn when its centre (integer u, v) lies inside the projected triangle; a centre exactly on an edge
  follows the top-left rule (kept for left edges and for horizontal edges above the triangle, image v down), which
  is what Mesa's GL rasteriser does with our projection, so shared edges are drawn once;
- triangles are clipped against the near plane z = near_m in the camera frame (0, 1 or 2 triangles come out),
  and fragments farther than far_m are dropped, like GL's clip volume;
- depth and colour are interpolated perspective-correctly: screen-space barycentrics weighted by 1/z
  (Heckbert & Moreton, "Interpolation for polygon texture mapping and shading", 1991); depth z = 1 / sum(l_i / z_i),
  so the depth of a planar surface is exact.

Compiled once per machine (``cache=True``; the cache lives next to this file or in NUMBA_CACHE_DIR) and
single-threaded, so it is safe in forked or spawned worker processes.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .common import RenderResult, TriangleSoup, check_intrinsics


@njit(cache=True, nogil=True, fastmath=False)
def _draw_triangle(p, c, fx, fy, cx, cy, far_m, zbuf, color):  # pragma: no cover - compiled
    """Rasterise one triangle with all corners in front of the near plane. p, c: 3x3 (corner x xyz / rgb)."""
    H, W = zbuf.shape
    z0, z1, z2 = p[0, 2], p[1, 2], p[2, 2]
    u0 = fx * p[0, 0] / z0 + cx
    v0 = fy * p[0, 1] / z0 + cy
    u1 = fx * p[1, 0] / z1 + cx
    v1 = fy * p[1, 1] / z1 + cy
    u2 = fx * p[2, 0] / z2 + cx
    v2 = fy * p[2, 1] / z2 + cy
    area = (u1 - u0) * (v2 - v0) - (v1 - v0) * (u2 - u0)
    if area == 0.0 or not math.isfinite(area):
        return
    umin = max(int(math.ceil(min(u0, u1, u2))), 0)
    umax = min(int(math.floor(max(u0, u1, u2))), W - 1)
    vmin = max(int(math.ceil(min(v0, v1, v2))), 0)
    vmax = min(int(math.floor(max(v0, v1, v2))), H - 1)
    if umin > umax or vmin > vmax:
        return
    # Edge function e_k of the edge opposite corner k, signed to be positive inside; l_k = e_k / |area| are the
    # screen-space barycentrics. Evaluated afresh at each pixel (not stepped) so that ties are decided exactly.
    sign = 1.0 if area > 0.0 else -1.0
    inv_area = 1.0 / abs(area)
    # Top-left rule for pixel centres exactly on an edge, as GL rasterisers do (so both backends agree on shared
    # edges and each pixel of a closed surface is drawn once): keep a "left" edge (inside is towards +u) or a
    # "top" edge (horizontal, inside towards +v, i.e. below it in the image). (du_k, dv_k) = gradient of e_k.
    du0, dv0 = -(v2 - v1) * sign, (u2 - u1) * sign
    du1, dv1 = -(v0 - v2) * sign, (u0 - u2) * sign
    du2, dv2 = -(v1 - v0) * sign, (u1 - u0) * sign
    keep0 = du0 > 0.0 or (du0 == 0.0 and dv0 > 0.0)
    keep1 = du1 > 0.0 or (du1 == 0.0 and dv1 > 0.0)
    keep2 = du2 > 0.0 or (du2 == 0.0 and dv2 > 0.0)
    iz0, iz1, iz2 = 1.0 / z0, 1.0 / z1, 1.0 / z2
    for v in range(vmin, vmax + 1):
        for u in range(umin, umax + 1):
            e0 = ((u2 - u1) * (v - v1) - (v2 - v1) * (u - u1)) * sign
            e1 = ((u0 - u2) * (v - v2) - (v0 - v2) * (u - u2)) * sign
            e2 = ((u1 - u0) * (v - v0) - (v1 - v0) * (u - u0)) * sign
            if (e0 > 0.0 or (e0 == 0.0 and keep0)) and (e1 > 0.0 or (e1 == 0.0 and keep1)) \
                    and (e2 > 0.0 or (e2 == 0.0 and keep2)):
                # Perspective-correct: weights l_k / z_k, normalised; their sum is 1 / z at this pixel.
                w0 = e0 * inv_area * iz0
                w1 = e1 * inv_area * iz1
                w2 = e2 * inv_area * iz2
                s = w0 + w1 + w2
                z = 1.0 / s
                if z < zbuf[v, u] and z <= far_m:
                    zbuf[v, u] = z
                    for k in range(3):
                        color[v, u, k] = (w0 * c[0, k] + w1 * c[1, k] + w2 * c[2, k]) * z


@njit(cache=True, nogil=True)
def _rasterize_soup(corners, corner_rgb, fx, fy, cx, cy, near_m, far_m, zbuf, color):  # pragma: no cover
    """Clip every triangle against z = near_m (Sutherland-Hodgman with one plane), then draw the 1-2 pieces."""
    poly_p = np.empty((4, 3))
    poly_c = np.empty((4, 3))
    tri_p = np.empty((3, 3))
    tri_c = np.empty((3, 3))
    for f in range(corners.shape[0]):
        n = 0
        for k in range(3):
            a = k
            b = (k + 1) % 3
            za = corners[f, a, 2] - near_m
            zb = corners[f, b, 2] - near_m
            if za >= 0.0:
                for j in range(3):
                    poly_p[n, j] = corners[f, a, j]
                    poly_c[n, j] = corner_rgb[f, a, j]
                n += 1
            if (za >= 0.0) != (zb >= 0.0):
                t = za / (za - zb)  # where the edge crosses the near plane; colour varies linearly in 3D
                for j in range(3):
                    poly_p[n, j] = corners[f, a, j] + t * (corners[f, b, j] - corners[f, a, j])
                    poly_c[n, j] = corner_rgb[f, a, j] + t * (corner_rgb[f, b, j] - corner_rgb[f, a, j])
                poly_p[n, 2] = near_m
                n += 1
        for k in range(1, n - 1):
            for j in range(3):
                tri_p[0, j] = poly_p[0, j]
                tri_p[1, j] = poly_p[k, j]
                tri_p[2, j] = poly_p[k + 1, j]
                tri_c[0, j] = poly_c[0, j]
                tri_c[1, j] = poly_c[k, j]
                tri_c[2, j] = poly_c[k + 1, j]
            _draw_triangle(tri_p, tri_c, fx, fy, cx, cy, far_m, zbuf, color)


def rasterize(soup: TriangleSoup, K, image_size, near_m: float, far_m: float) -> RenderResult:
    """Draw a shaded triangle soup with the numba z-buffer.

    Args:
        soup: corners (Fx3x3, camera frame, metres) and corner colours (Fx3x3, [0, 1]).
        K (3x3): OpenCV intrinsics, pixels.
        image_size: (H, W) in pixels.
        near_m, far_m: clip planes along camera z, metres.
    Returns:
        RenderResult with backend "numba" (background: colour 0, depth 0, mask False).
    """
    fx, fy, cx, cy = check_intrinsics(K)
    H, W = int(image_size[0]), int(image_size[1])
    zbuf = np.full((H, W), np.inf, dtype=np.float64)
    color = np.zeros((H, W, 3), dtype=np.float32)
    corners = np.ascontiguousarray(soup.corners_m, dtype=np.float64)
    rgb = np.ascontiguousarray(soup.corner_rgb, dtype=np.float64)
    if len(corners):
        _rasterize_soup(corners, rgb, fx, fy, cx, cy, float(near_m), float(far_m), zbuf, color)
    mask = np.isfinite(zbuf)
    depth = np.where(mask, zbuf, 0.0).astype(np.float32)
    return RenderResult(color=color, depth_m=depth, mask=mask, backend="numba")

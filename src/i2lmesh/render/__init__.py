"""Headless mesh rendering: overlays of predicted meshes on photos, and synthetic images.

One entry point, :func:`render_mesh`, with two interchangeable rasterisers:
- ``"gl"``: moderngl on a headless EGL context (Mesa llvmpipe without a GPU), see :mod:`i2lmesh.render.gl`;
- ``"numba"``: a software z-buffer needing no GL at all, see :mod:`i2lmesh.render.raster`.
``backend="auto"`` uses GL when a context can be had in this process and otherwise numba (logging one line why).
Shading (:mod:`i2lmesh.render.common`) is computed once in numpy and shared, so both give the same picture up to
pixels whose centre lies on a triangle edge.

Conventions:
- Camera frame: x right, y down, z forward, metres; the camera looks down +z from the origin.
- Pixels: (u, v) = (fx x / z + cx, fy y / z + cy), origin at the top-left image corner, pixel centres at integer
  coordinates; ``image[v, u]`` is drawn when its centre is inside a projected triangle.
- Result: colour float32 RGB in [0, 1]; depth = camera-frame z in metres (not ray length); background is colour 0,
  depth 0, mask False.
- Lighting: Lambert, ``albedo * (ambient + (1 - ambient) * max(0, n . l))``, two-sided (faces turned away from the
  camera are lit as if flipped), per vertex ("smooth", Gouraud) or per face ("flat"); no specular, no shadows.
- Triangles are clipped at the near plane z = near_m and dropped beyond far_m; no back-face culling.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from .common import (DEFAULT_AMBIENT, DEFAULT_COLOR, DEFAULT_FAR_M, DEFAULT_LIGHT_DIR, DEFAULT_NEAR_M, RenderResult,
                     icosphere, project_points, shade_triangles)
from .gl import GLUnavailableError

__all__ = ["render_mesh", "overlay", "RenderResult", "GLUnavailableError", "project_points", "icosphere",
           "DEFAULT_LIGHT_DIR", "DEFAULT_AMBIENT", "DEFAULT_COLOR"]

logger = logging.getLogger(__name__)
_fallback_logged_pid: int | None = None


def render_mesh(vertices_m, faces, K, image_size, vertex_colors=None, light_dir=DEFAULT_LIGHT_DIR,
                ambient: float = DEFAULT_AMBIENT, shading: str = "smooth", backend: str = "auto",
                near_m: float = DEFAULT_NEAR_M, far_m: float = DEFAULT_FAR_M) -> RenderResult:
    """Render a triangle mesh seen by a pinhole camera.

    Args:
        vertices_m (Vx3 array): vertex positions in the camera frame (x right, y down, z forward), metres.
            Anything ``np.asarray`` accepts (a CPU torch tensor too).
        faces (Fx3 int array): vertex indices per triangle; winding does not matter.
        K (3x3 array): OpenCV intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], pixels.
        image_size: (H, W) in pixels.
        vertex_colors: None (a light blue-grey), one RGB triple, or Vx3 per-vertex albedo, in [0, 1]
            (values above 1 are read as 0..255).
        light_dir (3,): direction from the surface towards the light, camera frame (default: from near the
            camera, slightly above-left).
        ambient (float): share of the albedo lit regardless of orientation, in [0, 1].
        shading: "smooth" (Lambert at vertices, colours interpolated) or "flat" (one normal per face).
        backend: "auto" (GL if available, else numba), "gl" (raise GLUnavailableError if no EGL context can be
            created in this process) or "numba".
        near_m, far_m: clip planes along camera z, metres.
    Returns:
        RenderResult(color HxWx3 float32 in [0, 1], depth_m HxW float32 (0 = background), mask HxW bool, backend).
    """
    assert backend in ("auto", "gl", "numba"), f"backend should be 'auto', 'gl' or 'numba', got {backend!r}."
    H, W = (int(s) for s in image_size)
    assert H > 0 and W > 0, f"image_size should be (H, W) with positive sizes, got {image_size}."
    assert 0.0 < near_m < far_m, f"need 0 < near_m < far_m, got near_m={near_m}, far_m={far_m}."
    soup = shade_triangles(vertices_m, faces, vertex_colors, light_dir, ambient, shading)
    if backend in ("auto", "gl"):
        from . import gl
        try:
            return gl.rasterize(soup, K, (H, W), near_m, far_m)
        except GLUnavailableError as error:
            if backend == "gl":
                raise
            _log_fallback_once(error)
    from . import raster
    return raster.rasterize(soup, K, (H, W), near_m, far_m)


def _log_fallback_once(error: Exception) -> None:
    global _fallback_logged_pid
    if _fallback_logged_pid != os.getpid():
        _fallback_logged_pid = os.getpid()
        logger.info("render: using the numba rasteriser (%s)", error)


def overlay(image, result: RenderResult, alpha: float = 0.8) -> np.ndarray:
    """Composite a render over a photo: ``(1 - alpha) * image + alpha * render`` where the mesh is, the photo
    elsewhere.

    Args:
        image (HxWx3 array): uint8 in 0..255 or float in [0, 1], RGB, the same size as the render.
        result: a RenderResult of that image size.
        alpha (float): opacity of the mesh in [0, 1].
    Returns:
        (HxWx3 array) with the dtype and range of ``image``.
    """
    image = np.asarray(image)
    assert image.ndim == 3 and image.shape[2] == 3, f"image should be HxWx3 RGB, got shape {image.shape}."
    assert image.shape[:2] == result.mask.shape, \
        f"image is {image.shape[:2]} but the render is {result.mask.shape}; render with image_size=image.shape[:2]."
    assert 0.0 <= alpha <= 1.0, f"alpha should be in [0, 1], got {alpha}."
    is_uint8 = image.dtype == np.uint8
    assert is_uint8 or np.issubdtype(image.dtype, np.floating), \
        f"image should be uint8 (0..255) or float ([0, 1]), got dtype {image.dtype}."
    photo = image.astype(np.float32) / 255.0 if is_uint8 else image.astype(np.float32)
    weight = (alpha * result.mask.astype(np.float32))[..., None]
    out = (1.0 - weight) * photo + weight * result.color
    if is_uint8:
        return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
    return out.astype(image.dtype)

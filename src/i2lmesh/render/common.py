"""Camera and shading maths shared by the GL and numba rasterisers.

Both rasterisers draw the same thing: a soup of triangles given by their corner positions in the camera frame
(metres; x right, y down, z forward) and an already shaded RGB colour per corner. Everything that decides *what*
a pixel should look like (normals, two-sided Lambert, flat vs smooth) happens here, once, for both; the backends
only decide *which* pixels a triangle covers and interpolate corner colours and depth perspective-correctly.

Pixel convention (both backends): pixel (u, v) = (fx * x / z + cx, fy * y / z + cy), origin at the top-left image
corner, pixel *centres* at integer coordinates. Pixel ``image[v, u]`` covers [u - 0.5, u + 0.5] x [v - 0.5, v + 0.5]
and is drawn when its centre (u, v) lies inside a projected triangle.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from ..geometry.camera import project

# Direction from the surface towards the light, camera frame (x right, y down, z forward): a light near the camera,
# slightly above and to the left, so that a person seen from the front is lit from the viewer's side.
DEFAULT_LIGHT_DIR = (-0.3, -0.5, -1.0)
DEFAULT_AMBIENT = 0.35
DEFAULT_COLOR = (0.75, 0.78, 0.85)  # light blue-grey, visible over most photos
DEFAULT_NEAR_M = 0.01
DEFAULT_FAR_M = 100.0


@dataclass
class RenderResult:
    """One rendered view.

    Attributes:
        color (HxWx3 float32 array): shaded RGB in [0, 1]; background pixels are 0.
        depth_m (HxW float32 array): camera-frame z (metres, along the optical axis, not the ray length) of the
            visible surface; background pixels are 0.
        mask (HxW bool array): True where a triangle covers the pixel centre.
        backend (str): "gl" or "numba", the rasteriser that produced this result.
    """
    color: np.ndarray
    depth_m: np.ndarray
    mask: np.ndarray
    backend: str


@dataclass
class TriangleSoup:
    """Triangles ready for a rasteriser.

    Attributes:
        corners_m (Fx3x3 float32 array): corner positions in the camera frame, metres; [f, k] is corner k of face f.
        corner_rgb (Fx3x3 float32 array): shaded colour of each corner in [0, 1].
    """
    corners_m: np.ndarray
    corner_rgb: np.ndarray


def check_intrinsics(K) -> tuple[float, float, float, float]:
    """Return (fx, fy, cx, cy) from a 3x3 OpenCV intrinsic matrix K (pixels; zero skew)."""
    K = np.asarray(K, dtype=np.float64)
    assert K.shape == (3, 3), f"K should be a 3x3 intrinsic matrix, got shape {K.shape}."
    assert abs(K[0, 1]) < 1e-9, "K should have zero skew (K[0, 1] == 0); skewed cameras are not supported."
    return float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])


def project_points(points_m, K) -> np.ndarray:
    """Pinhole projection with the renderer's pixel convention: :func:`i2lmesh.geometry.camera.project` (the
    package's one projection) in float64, after checking that K is a zero-skew 3x3 (AssertionError otherwise).

    Args:
        points_m (...x3 array): camera-frame points, metres, z > 0.
        K (3x3 array): OpenCV intrinsics.
    Returns:
        (...x2 float64 array): pixel coordinates (u, v); pixel centres are at integer (u, v).
    """
    check_intrinsics(K)
    p = np.asarray(points_m, dtype=np.float64)
    return project(p.reshape(-1, 3), np.asarray(K, dtype=np.float64)).reshape(p.shape[:-1] + (2,))


def gl_projection_matrix(K, image_size, near_m: float, far_m: float) -> np.ndarray:
    """OpenGL clip-space matrix reproducing :func:`project_points` for a framebuffer of ``image_size``.

    GL puts pixel centres at window coordinates (i + 0.5) and maps NDC [-1, 1] onto [0, W]; so pixel u is at
    ndc_x = 2 (u + 0.5) / W - 1. For y we map v *down* the image to window y *up* the framebuffer
    (ndc_y = 2 (v + 0.5) / H - 1), so that framebuffer row r, as read back, is image row v = r: no flip needed.
    This mirrors the image, so triangle winding is reversed; the renderer draws both faces and never culls.
    w_clip = z, so GL's perspective division and perspective-correct interpolation act on camera-frame z.

    Returns:
        (4x4 float32 array): row-major matrix P with clip = P @ [x, y, z, 1].
    """
    fx, fy, cx, cy = check_intrinsics(K)
    H, W = image_size
    P = np.zeros((4, 4), dtype=np.float64)
    P[0, 0] = 2.0 * fx / W
    P[0, 2] = 2.0 * (cx + 0.5) / W - 1.0
    P[1, 1] = 2.0 * fy / H
    P[1, 2] = 2.0 * (cy + 0.5) / H - 1.0
    # Standard depth range: z = near -> ndc -1, z = far -> ndc +1 (GL clips triangles outside these planes).
    P[2, 2] = (far_m + near_m) / (far_m - near_m)
    P[2, 3] = -2.0 * far_m * near_m / (far_m - near_m)
    P[3, 2] = 1.0
    return P.astype(np.float32)


def vertex_albedo(vertex_colors, num_vertices: int) -> np.ndarray:
    """Per-vertex RGB (Vx3 float64 in [0, 1]) from None (default colour), one RGB triple, or a Vx3 array.
    Colours given as integers in 0..255 (any value > 1) are rescaled."""
    if vertex_colors is None:
        vertex_colors = DEFAULT_COLOR
    c = np.asarray(vertex_colors, dtype=np.float64)
    if c.max(initial=0.0) > 1.0:
        c = c / 255.0
    if c.shape == (3,):
        return np.broadcast_to(c, (num_vertices, 3))
    assert c.shape == (num_vertices, 3), \
        f"vertex_colors should be one RGB triple or a Vx3 array with V={num_vertices}, got shape {c.shape}."
    return c


@njit(cache=True, nogil=True)
def _lambert(nx, ny, nz, light, ambient):  # pragma: no cover - compiled
    """ambient + (1 - ambient) * max(0, n . l) for a normal of any non-zero length and a unit light direction."""
    norm = math.sqrt(nx * nx + ny * ny + nz * nz)
    if norm == 0.0:
        return ambient
    return ambient + (1.0 - ambient) * max(0.0, (nx * light[0] + ny * light[1] + nz * light[2]) / norm)


@njit(cache=True, nogil=True)
def _shade_soup(vertices, faces, albedo, light, ambient, flat, corners, corner_rgb):  # pragma: no cover
    """Fill corners (Fx3x3) and corner_rgb (Fx3x3); see shade_triangles. Loops in numba: the same in numpy costs
    ~5 ms for 20k faces, more than rasterising them."""
    F = faces.shape[0]
    area_normals = np.zeros((F, 3))
    vertex_normals = np.zeros((vertices.shape[0], 3))
    for f in range(F):
        i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
        ax = vertices[i1, 0] - vertices[i0, 0]
        ay = vertices[i1, 1] - vertices[i0, 1]
        az = vertices[i1, 2] - vertices[i0, 2]
        bx = vertices[i2, 0] - vertices[i0, 0]
        by = vertices[i2, 1] - vertices[i0, 1]
        bz = vertices[i2, 2] - vertices[i0, 2]
        # cross(v1 - v0, v2 - v0): right-handed face normal whose length is twice the face area, so that summing
        # it onto the vertices gives area-weighted vertex normals.
        area_normals[f, 0] = ay * bz - az * by
        area_normals[f, 1] = az * bx - ax * bz
        area_normals[f, 2] = ax * by - ay * bx
        for k in range(3):
            for j in range(3):
                vertex_normals[faces[f, k], j] += area_normals[f, j]
    for f in range(F):
        # Orientation: the camera is at the origin, so the face looks at it when n . centroid <= 0.
        facing = 0.0
        for k in range(3):
            for j in range(3):
                facing += area_normals[f, j] * vertices[faces[f, k], j]
        sign = 1.0 if facing <= 0.0 else -1.0
        for k in range(3):
            i = faces[f, k]
            n = area_normals[f] if flat else vertex_normals[i]
            shade = _lambert(sign * n[0], sign * n[1], sign * n[2], light, ambient)
            for j in range(3):
                corners[f, k, j] = vertices[i, j]
                corner_rgb[f, k, j] = min(1.0, albedo[i, j] * shade)


def shade_triangles(vertices_m, faces, vertex_colors=None, light_dir=DEFAULT_LIGHT_DIR,
                    ambient: float = DEFAULT_AMBIENT, shading: str = "smooth") -> TriangleSoup:
    """Turn an indexed mesh into a shaded triangle soup, the common input of both rasterisers.

    Lighting is two-sided and independent of the mesh's winding: a face whose geometric normal points away from
    the camera (the inside of an open hand mesh, or any face of an inward-wound mesh) is shaded with its normals
    flipped, so every visible face is lit as if it faced the viewer.

    Args:
        vertices_m (Vx3 array): camera frame, metres.
        faces (Fx3 int array): vertex indices.
        vertex_colors: None, one RGB triple, or Vx3 array, in [0, 1] (or 0..255).
        light_dir (3,): direction from the surface towards the light, camera frame.
        ambient (float): share of the albedo that is lit regardless of orientation, in [0, 1].
        shading: "smooth" (Gouraud: Lambert at each vertex with area-weighted vertex normals, colours interpolated
            over the triangle) or "flat" (one normal per face, albedo still interpolated).
    Returns:
        TriangleSoup with F triangles.
    """
    vertices_m = np.asarray(vertices_m, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    assert vertices_m.ndim == 2 and vertices_m.shape[1] == 3, \
        f"vertices_m should be a Vx3 array, got shape {vertices_m.shape}."
    assert faces.ndim == 2 and faces.shape[1] == 3, f"faces should be an Fx3 index array, got shape {faces.shape}."
    assert faces.size == 0 or (faces.min() >= 0 and faces.max() < len(vertices_m)), \
        "faces index vertices that do not exist."
    assert shading in ("smooth", "flat"), f"shading should be 'smooth' or 'flat', got {shading!r}."
    assert 0.0 <= ambient <= 1.0, f"ambient should be in [0, 1], got {ambient}."

    light = np.asarray(light_dir, dtype=np.float64).reshape(3)
    assert np.linalg.norm(light) > 0, "light_dir should be a non-zero 3-vector."
    albedo = np.ascontiguousarray(np.clip(vertex_albedo(vertex_colors, len(vertices_m)), 0.0, 1.0))
    corners = np.empty((len(faces), 3, 3), np.float32)
    corner_rgb = np.empty((len(faces), 3, 3), np.float32)
    _shade_soup(np.ascontiguousarray(vertices_m), np.ascontiguousarray(faces), albedo, light / np.linalg.norm(light),
                float(ambient), shading == "flat", corners, corner_rgb)
    return TriangleSoup(corners_m=corners, corner_rgb=corner_rgb)


def icosphere(subdivisions: int = 3, radius_m: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A sphere mesh (closed, convex, outward right-handed winding) for tests, benchmarks and debugging.

    Starts from the regular icosahedron (12 vertices, 20 faces) and splits every triangle into 4, pushing new
    vertices onto the sphere: V = 10 * 4^s + 2, F = 20 * 4^s (s = 5 gives 10,242 vertices, 20,480 faces).

    Returns:
        vertices (Vx3 float64, metres, centred at the origin), faces (Fx3 int64).
    """
    t = (1.0 + math.sqrt(5.0)) / 2.0
    vertices = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t],
                         [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], dtype=np.float64)
    faces = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
                      [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
                      [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]], dtype=np.int64)
    vertices /= np.linalg.norm(vertices, axis=1, keepdims=True)
    for _ in range(subdivisions):
        # One new vertex per undirected edge: edges (a, b) of every face, deduplicated.
        edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        unique_edges, edge_index = np.unique(np.sort(edges, axis=1), axis=0, return_inverse=True)
        midpoints = vertices[unique_edges].mean(axis=1)
        midpoints /= np.linalg.norm(midpoints, axis=1, keepdims=True)
        m = edge_index.reshape(3, -1) + len(vertices)  # midpoints of edges 01, 12, 20 of each face
        a, b, c = faces.T
        faces = np.concatenate([np.stack([a, m[0], m[2]], 1), np.stack([b, m[1], m[0]], 1),
                                np.stack([c, m[2], m[1]], 1), np.stack([m[0], m[1], m[2]], 1)])
        vertices = np.concatenate([vertices, midpoints])
    return vertices * radius_m, faces

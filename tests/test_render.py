"""Headless rendering: pixel coverage, depth, occlusion, clipping, GL/numba agreement, worker processes."""
import multiprocessing as mp

import numpy as np
import pytest
from scipy import ndimage

from i2lmesh.render import GLUnavailableError, RenderResult, icosphere, overlay, project_points, render_mesh
import i2lmesh.render as render_package
from i2lmesh.render import gl as render_gl

K = np.array([[100.0, 0.0, 15.0], [0.0, 100.0, 12.0], [0.0, 0.0, 1.0]])
SIZE = (24, 32)  # H, W: not square, to catch swapped axes
SPHERE_K = np.array([[300.0, 0.0, 60.3], [0.0, 310.0, 70.6], [0.0, 0.0, 1.0]])
SPHERE_SIZE = (128, 120)


def _gl_reason():
    """None if GL works in this process, else why not."""
    try:
        render_gl.get_renderer()
        return None
    except GLUnavailableError as error:
        return str(error)


GL_REASON = _gl_reason()
BACKENDS = ["numba", pytest.param("gl", marks=pytest.mark.skipif(GL_REASON is not None,
                                                                 reason=f"no EGL context: {GL_REASON}"))]
requires_gl = pytest.mark.skipif(GL_REASON is not None, reason=f"no EGL context: {GL_REASON}")


def unproject(uv, z_m, K=K):
    """Camera-frame points (Nx3) that project to pixels uv (Nx2) at depths z_m."""
    uv = np.asarray(uv, dtype=np.float64)
    z = np.broadcast_to(np.asarray(z_m, dtype=np.float64), (len(uv),))
    return np.stack([(uv[:, 0] - K[0, 2]) * z / K[0, 0], (uv[:, 1] - K[1, 2]) * z / K[1, 1], z], axis=1)


QUAD_FACES = np.array([[0, 1, 2], [0, 2, 3]])


def quad(u0, v0, u1, v1, z_m):
    """Fronto-parallel rectangle covering pixel coordinates [u0, u1] x [v0, v1] at depth z_m."""
    return unproject([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], z_m)


def sphere_scene(subdivisions=4):
    vertices, faces = icosphere(subdivisions, radius_m=0.3)
    return vertices + np.array([0.05, -0.02, 2.0]), faces


def boundary_band(mask):
    """Pixels within one pixel (8-neighbourhood) of the mask's boundary, on either side."""
    structure = np.ones((3, 3), bool)
    return ndimage.binary_dilation(mask, structure) & ~ndimage.binary_erosion(mask, structure)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rectangle_covers_exactly_its_pixels(backend):
    # Edges on half-integers: pixel centres u = 3..10, v = 4..7 are inside, no centre lies on an edge.
    result = render_mesh(quad(2.5, 3.5, 10.5, 7.5, 2.0), QUAD_FACES, K, SIZE, backend=backend)
    expected = np.zeros(SIZE, bool)
    expected[4:8, 3:11] = True
    assert result.backend == backend
    np.testing.assert_array_equal(result.mask, expected)
    assert result.color.shape == SIZE + (3,) and result.color.dtype == np.float32
    assert np.all(result.color[~expected] == 0) and np.all(result.depth_m[~expected] == 0)
    assert np.all(result.color[expected] > 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_right_triangle_covers_pixels_below_its_hypotenuse(backend):
    # Corners (1.5, 1.5), (20, 1.5), (1.5, 20): hypotenuse u + v = 21.5 never passes through an integer centre.
    vertices = unproject([[1.5, 1.5], [20.0, 1.5], [1.5, 20.0]], [1.0, 3.0, 2.0])  # tilted in depth
    result = render_mesh(vertices, np.array([[0, 1, 2]]), K, SIZE, backend=backend)
    v, u = np.mgrid[0:SIZE[0], 0:SIZE[1]]
    expected = (u >= 2) & (v >= 2) & (u + v <= 21.5)
    np.testing.assert_array_equal(result.mask, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("flip_winding", [False, True])
def test_pixel_centres_on_edges_follow_the_top_left_rule(backend, flip_winding):
    # Corners on pixel centres (2, 2), (7, 2), (2, 7): the top edge (v = 2) and the left edge (u = 2) keep their
    # pixels, the hypotenuse u + v = 9 (a right edge) does not. Two triangles sharing it then tile the square
    # with no pixel left out. Powers of two in K and z keep the projection exact, so the ties really are ties.
    K_exact = np.array([[64.0, 0.0, 16.0], [0.0, 64.0, 12.0], [0.0, 0.0, 1.0]])
    lower = np.array([[0, 1, 2]])
    vertices = unproject([[2.0, 2.0], [7.0, 2.0], [2.0, 7.0], [7.0, 7.0]], 2.0, K_exact)
    faces = np.array([[0, 1, 2]]) if not flip_winding else np.array([[0, 2, 1]])
    result = render_mesh(vertices, faces, K_exact, SIZE, backend=backend)
    v, u = np.mgrid[0:SIZE[0], 0:SIZE[1]]
    np.testing.assert_array_equal(result.mask, (u >= 2) & (v >= 2) & (u + v < 9))
    square = render_mesh(vertices, np.concatenate([lower, [[1, 3, 2]]]), K_exact, SIZE, backend=backend)
    np.testing.assert_array_equal(square.mask, (u >= 2) & (v >= 2) & (u < 7) & (v < 7))


@pytest.mark.parametrize("backend", BACKENDS)
def test_depth_is_the_plane_depth(backend):
    # Plane z = a + b x, tilted about the y axis. Along the ray of pixel (u, v), x = z (u - cx) / fx, so
    # z = a / (1 - b (u - cx) / fx): not affine in u, so interpolating z instead of 1/z would fail.
    a, b = 2.0, 1.5
    corners_x = np.array([-0.25, 0.25, 0.25, -0.25])
    z = a + b * corners_x
    vertices = np.stack([corners_x, np.array([-0.2, -0.2, 0.2, 0.2]) * z / 2.0, z], axis=1)
    result = render_mesh(vertices, QUAD_FACES, K, SIZE, backend=backend)
    assert result.mask.sum() > 100
    v, u = np.nonzero(result.mask)
    expected = a / (1.0 - b * (u - K[0, 2]) / K[0, 0])
    np.testing.assert_allclose(result.depth_m[v, u], expected, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("near_first", [True, False])
def test_nearer_triangle_occludes_farther(backend, near_first):
    near = quad(2.5, 2.5, 14.5, 14.5, 1.0)
    far = quad(8.5, 8.5, 25.5, 20.5, 2.0)
    parts = [near, far] if near_first else [far, near]
    colors = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)] if near_first else [(0.0, 1.0, 0.0), (1.0, 0.0, 0.0)]
    vertices = np.concatenate(parts)
    faces = np.concatenate([QUAD_FACES, QUAD_FACES + 4])
    vertex_colors = np.repeat(np.array(colors), 4, axis=0)
    result = render_mesh(vertices, faces, K, SIZE, vertex_colors=vertex_colors, ambient=1.0, backend=backend)
    overlap = (slice(9, 15), slice(9, 15))
    np.testing.assert_allclose(result.depth_m[overlap], 1.0, rtol=1e-6)
    np.testing.assert_allclose(result.color[overlap], np.broadcast_to([1.0, 0.0, 0.0], (6, 6, 3)), atol=1e-6)
    np.testing.assert_allclose(result.color[18, 20], [0.0, 1.0, 0.0], atol=1e-6)  # far quad alone
    np.testing.assert_allclose(result.depth_m[18, 20], 2.0, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_triangles_crossing_the_camera_plane_are_clipped(backend):
    # A floor (y = +0.5 m, below the camera) from 1 m behind the camera to 10 m ahead: the visible part starts at
    # the near plane; nothing behind the camera may be drawn (wrapped-around projections would fill the top rows).
    vertices = np.array([[-2.0, 0.5, -1.0], [2.0, 0.5, -1.0], [2.0, 0.5, 10.0], [-2.0, 0.5, 10.0]])
    result = render_mesh(vertices, QUAD_FACES, K, SIZE, near_m=0.05, backend=backend)
    rows_with_floor = np.nonzero(result.mask.any(axis=1))[0]
    horizon_v = K[1, 2] + K[1, 1] * 0.5 / 10.0  # the far edge projects to v = 17
    assert rows_with_floor.min() >= np.floor(horizon_v) and rows_with_floor.max() == SIZE[0] - 1
    assert np.all(result.depth_m[result.mask] >= 0.05) and np.all(result.depth_m[result.mask] <= 10.0 + 1e-4)
    # Every depth equals the floor's: y = 0.5 at pixel row v means z = 0.5 fy / (v - cy).
    v, u = np.nonzero(result.mask)
    np.testing.assert_allclose(result.depth_m[v, u], 0.5 * K[1, 1] / (v - K[1, 2]), rtol=1e-5)


def test_mesh_entirely_behind_the_camera_renders_nothing():
    vertices, faces = sphere_scene(1)
    result = render_mesh(vertices * np.array([1.0, 1.0, -1.0]), faces, SPHERE_K, SPHERE_SIZE, backend="numba")
    assert not result.mask.any()


@requires_gl
@pytest.mark.parametrize("shading", ["smooth", "flat"])
def test_gl_and_numba_agree_on_a_closed_mesh(shading):
    vertices, faces = sphere_scene()
    colors = 0.2 + 0.6 * (vertices - vertices.min(0)) / np.ptp(vertices, axis=0)  # a colour gradient
    kwargs = dict(vertex_colors=colors, shading=shading)
    by_numba = render_mesh(vertices, faces, SPHERE_K, SPHERE_SIZE, backend="numba", **kwargs)
    by_gl = render_mesh(vertices, faces, SPHERE_K, SPHERE_SIZE, backend="gl", **kwargs)
    assert by_numba.mask.sum() > 2000
    disagree = by_numba.mask ^ by_gl.mask
    assert not np.any(disagree & ~boundary_band(by_numba.mask)), "silhouettes differ by more than one pixel"
    assert disagree.sum() <= 0.02 * boundary_band(by_numba.mask).sum()
    both = by_numba.mask & by_gl.mask
    np.testing.assert_allclose(by_gl.depth_m[both], by_numba.depth_m[both], rtol=1e-4)
    color_error = np.abs(by_gl.color[both] - by_numba.color[both])
    assert color_error.mean() < 1e-3 and color_error.max() < 0.05


@requires_gl
def test_gl_and_numba_agree_when_clipping_at_the_near_plane():
    vertices, faces = sphere_scene(3)
    vertices = vertices - np.array([0.0, 0.0, 1.75])  # centre at z = 0.25 m, radius 0.3 m: the sphere spans z = 0
    kwargs = dict(near_m=0.1, vertex_colors=(0.9, 0.5, 0.2))
    by_numba = render_mesh(vertices, faces, SPHERE_K, SPHERE_SIZE, backend="numba", **kwargs)
    by_gl = render_mesh(vertices, faces, SPHERE_K, SPHERE_SIZE, backend="gl", **kwargs)
    assert by_numba.mask.mean() > 0.5
    disagree = by_numba.mask ^ by_gl.mask
    assert not np.any(disagree & ~boundary_band(by_numba.mask))
    both = by_numba.mask & by_gl.mask
    np.testing.assert_allclose(by_gl.depth_m[both], by_numba.depth_m[both], rtol=1e-4)
    assert np.abs(by_gl.color[both] - by_numba.color[both]).mean() < 1e-3


@pytest.mark.parametrize("backend", BACKENDS)
def test_silhouette_contains_projected_visible_vertices(backend):
    vertices, faces = sphere_scene()
    result = render_mesh(vertices, faces, SPHERE_K, SPHERE_SIZE, backend=backend)
    centre = vertices.mean(axis=0)
    # Convex: a vertex is visible when its outward normal faces the camera. Vertices on the rim project onto the
    # silhouette's boundary, where rounding to a pixel is a coin toss; keep those at least ~12 deg from grazing.
    normals = (vertices - centre) / np.linalg.norm(vertices - centre, axis=1, keepdims=True)
    to_camera = -vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    visible = np.einsum("ij,ij->i", normals, to_camera) > 0.2
    u, v = np.rint(project_points(vertices[visible], SPHERE_K)).astype(int).T
    assert visible.sum() > 500
    assert result.mask[v, u].mean() >= 0.99
    # ... and the silhouette is the projected disc: no pixel far outside the projected vertices' hull radius.
    uv_all = project_points(vertices, SPHERE_K)
    uv_centre = project_points(centre, SPHERE_K)
    rows, cols = np.nonzero(result.mask)
    radius = np.linalg.norm(uv_all - uv_centre, axis=1).max()
    assert np.all(np.hypot(cols - uv_centre[0], rows - uv_centre[1]) <= radius + 1.0)


def test_lighting_follows_the_light_and_is_two_sided():
    vertices = quad(2.5, 2.5, 28.5, 20.5, 2.0)
    facing_light = render_mesh(vertices, QUAD_FACES, K, SIZE, light_dir=(0, 0, -1), ambient=0.2,
                               vertex_colors=(1.0, 1.0, 1.0), backend="numba")
    grazing = render_mesh(vertices, QUAD_FACES, K, SIZE, light_dir=(1, 0, 0), ambient=0.2,
                          vertex_colors=(1.0, 1.0, 1.0), backend="numba")
    flipped = render_mesh(vertices, QUAD_FACES[:, ::-1], K, SIZE, light_dir=(0, 0, -1), ambient=0.2,
                          vertex_colors=(1.0, 1.0, 1.0), backend="numba")
    np.testing.assert_allclose(facing_light.color[facing_light.mask], 1.0, atol=1e-6)
    np.testing.assert_allclose(grazing.color[grazing.mask], 0.2, atol=1e-6)
    np.testing.assert_allclose(flipped.color, facing_light.color, atol=1e-6)


def test_overlay_composites_only_inside_the_mask():
    result = render_mesh(quad(2.5, 3.5, 10.5, 7.5, 2.0), QUAD_FACES, K, SIZE, vertex_colors=(1.0, 0.0, 0.0),
                         ambient=1.0, backend="numba")
    photo = np.full(SIZE + (3,), 100, np.uint8)
    out = overlay(photo, result, alpha=0.5)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[~result.mask], photo[~result.mask])
    np.testing.assert_array_equal(out[5, 5], [178, 50, 50])  # round(0.5 * 100 + 0.5 * 255), round(0.5 * 100)
    out_float = overlay(photo / 255.0, result, alpha=1.0)
    np.testing.assert_allclose(out_float[5, 5], [1.0, 0.0, 0.0])


def test_bad_arguments_are_rejected_with_a_message():
    with pytest.raises(AssertionError, match="backend"):
        render_mesh(quad(2.5, 3.5, 10.5, 7.5, 2.0), QUAD_FACES, K, SIZE, backend="opengl")
    with pytest.raises(AssertionError, match="vertex_colors"):
        render_mesh(quad(2.5, 3.5, 10.5, 7.5, 2.0), QUAD_FACES, K, SIZE, vertex_colors=np.ones((5, 3)))


def test_without_egl_gl_raises_one_line_and_auto_falls_back(monkeypatch, caplog):
    class NoEGL:
        def __init__(self):
            raise OSError("libEGL.so: cannot open shared object file")

    for name, value in (("_GLRenderer", NoEGL), ("_renderer", None), ("_renderer_pid", None), ("_failure", None)):
        monkeypatch.setattr(render_gl, name, value)
    monkeypatch.setattr(render_package, "_fallback_logged_pid", None)
    args = (quad(2.5, 3.5, 10.5, 7.5, 2.0), QUAD_FACES, K, SIZE)
    with pytest.raises(GLUnavailableError, match="libEGL") as error:
        render_mesh(*args, backend="gl")
    assert "\n" not in str(error.value) and "backend='numba'" in str(error.value)
    with caplog.at_level("INFO", logger="i2lmesh.render"):
        assert render_mesh(*args, backend="auto").backend == "numba"
        assert render_mesh(*args, backend="auto").backend == "numba"
    assert sum("numba" in record.getMessage() for record in caplog.records) == 1


# --- worker processes ---------------------------------------------------------------------------------------------

def _render_in_child(backends):
    """Runs in a worker: render the sphere with each backend, return [(backend used, mask, colour) or
    ("error", message, None)]."""
    vertices, faces = sphere_scene(3)
    results = []
    for backend in backends:
        try:
            result = render_mesh(vertices, faces, SPHERE_K, SPHERE_SIZE, backend=backend)
            results.append((result.backend, result.mask, result.color))
        except GLUnavailableError as error:
            results.append(("error", str(error), None))
    return results


def _run_in_child(start_method, *backends):
    """One worker (spawn costs seconds: it re-imports torch), a timeout so that a hang fails instead of blocking."""
    with mp.get_context(start_method).Pool(1) as pool:
        return pool.apply_async(_render_in_child, (backends,)).get(timeout=120)


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_rendering_works_in_child_processes(start_method):
    vertices, faces = sphere_scene(3)
    reference = render_mesh(vertices, faces, SPHERE_K, SPHERE_SIZE, backend="numba")
    for backend, (used, mask, color) in zip(("numba", "auto"), _run_in_child(start_method, "numba", "auto")):
        assert used in ("numba", "gl"), mask
        assert (mask ^ reference.mask).sum() <= 0.02 * reference.mask.sum()
        both = mask & reference.mask
        assert np.abs(color[both] - reference.color[both]).mean() < 1e-3
        if backend == "numba":
            np.testing.assert_array_equal(mask, reference.mask)


@requires_gl
def test_forked_child_of_a_gl_parent_refuses_gl_instead_of_hanging():
    render_gl.get_renderer()  # this process owns a context now
    (used_gl, message, _), (used_auto, _, _) = _run_in_child("fork", "gl", "auto")
    assert used_gl == "error" and "fork" in message
    assert used_auto == "numba"


@requires_gl
def test_spawned_child_uses_gl():
    [(used, _, _)] = _run_in_child("spawn", "auto")
    assert used == "gl"


@requires_gl
def test_gl_renders_correctly_from_another_thread():
    import threading

    vertices, faces = sphere_scene(3)
    in_main = render_mesh(vertices, faces, SPHERE_K, SPHERE_SIZE, backend="gl")
    results = []
    thread = threading.Thread(
        target=lambda: results.append(render_mesh(vertices, faces, SPHERE_K, SPHERE_SIZE, backend="gl")))
    thread.start()
    thread.join(timeout=60)
    np.testing.assert_array_equal(results[0].mask, in_main.mask)
    np.testing.assert_array_equal(results[0].color, in_main.color)


def test_result_type():
    result = render_mesh(quad(2.5, 3.5, 10.5, 7.5, 2.0), QUAD_FACES, K, SIZE, backend="numba")
    assert isinstance(result, RenderResult)
    assert result.depth_m.dtype == np.float32 and result.mask.dtype == bool


def test_overlay_without_people_says_so_in_the_side_view():
    # nobody found: the side view (right of the gap) is the empty grey panel plus the message, centred; the photo
    # half is the photo unchanged
    from i2lmesh.render.pictures import overlay_picture

    rgb = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    k_photo = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    silent = overlay_picture(rgb, [], k_photo, empty_message="")
    said = overlay_picture(rgb, [], k_photo, empty_message="no body found")
    assert silent.shape == said.shape == (240, 320 + 3 + 320, 3)
    np.testing.assert_array_equal(said[:, :320], rgb)
    grey = round(0.15 * 255)
    assert np.all(silent[:, 323:] == grey)
    text = np.argwhere(np.any(said[:, 323:] != grey, axis=-1))
    assert len(text) > 100  # the letters
    assert abs(text[:, 0].mean() - 120) < 15 and abs(text[:, 1].mean() - 160) < 30  # around the panel's centre


@requires_gl
def test_gl_then_roma_does_not_kill_the_process():
    # Importing triton (torch._dynamo, hence roma, imports it) after Mesa's EGL context has loaded its LLVM killed
    # the process with a segmentation fault (a GL overlay, then fitting); the renderer now loads triton first.
    # A fresh interpreter, so that nothing imported earlier in this test session hides the order.
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed (the crash needs it)")
    script = ("import numpy as np\n"
              "from i2lmesh.render import icosphere, render_mesh\n"
              "v, f = icosphere(2)\n"
              "K = np.array([[100.0, 0, 16], [0, 100.0, 12], [0, 0, 1]])\n"
              "r = render_mesh(v + [0, 0, 3], f, K, (24, 32), backend='gl')\n"
              "import roma\n"
              "print('covered', int(r.mask.sum()))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert int(done.stdout.split()[-1]) > 100, done.stdout

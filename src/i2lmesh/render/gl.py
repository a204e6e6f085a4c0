"""Headless OpenGL rasteriser: moderngl on an EGL context (Mesa llvmpipe on CPU-only machines).

It draws a :class:`~i2lmesh.render.common.TriangleSoup` into float32 render targets: RGBA colour (alpha = coverage)
and camera-frame z (metres, interpolated perspective-correctly by GL), with a depth buffer for the depth test.
The projection (:func:`~i2lmesh.render.common.gl_projection_matrix`) puts pixel centres at integer (u, v) like the
numba path; GL's own near/far clipping does what ``raster.py`` does by hand.

Processes and fork: one context per process, created lazily on the first GL render and kept for reuse. Mesa hangs a
forked child that creates an EGL context when its parent already had one (measured with moderngl 5.13 / Mesa 22.3,
even after releasing the parent's context). So a process that inherited a context through fork refuses GL
(:class:`GLUnavailableError`; ``backend="auto"`` then falls back to numba). To use GL in workers, do not render with
GL in the parent before forking, or start workers with the "spawn" method. Threads share the process's context,
one render at a time.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from .common import RenderResult, TriangleSoup, gl_projection_matrix


class GLUnavailableError(RuntimeError):
    """No usable OpenGL/EGL context in this process."""


_VERTEX_SHADER = """
#version 330
uniform mat4 proj;
in vec3 in_pos;
in vec3 in_rgb;
out vec3 v_rgb;
out float v_z;
void main() {
    gl_Position = proj * vec4(in_pos, 1.0);
    v_rgb = in_rgb;
    v_z = in_pos.z;
}
"""

_FRAGMENT_SHADER = """
#version 330
in vec3 v_rgb;
in float v_z;
layout(location = 0) out vec4 out_rgba;
layout(location = 1) out float out_z;
void main() {
    out_rgba = vec4(v_rgb, 1.0);
    out_z = v_z;
}
"""

_FLOATS_PER_VERTEX = 6  # xyz, rgb


def _load_triton_first() -> None:
    """Import triton (PyTorch's GPU compiler; ``torch._dynamo`` and so roma import it) before the EGL context, when
    it is installed: importing it after Mesa's llvmpipe has loaded its LLVM kills the process with a segmentation
    fault (measured: torch 2.14.1's triton, Mesa's EGL; e.g. a GL overlay, then fitting, which imports roma),
    while the other order works. ~0.15 s once."""
    import importlib.util

    if importlib.util.find_spec("triton") is not None:
        try:
            import triton  # noqa: F401
        except Exception:  # noqa: BLE001 - a broken triton is torch's business, not the renderer's
            pass


def _create_context():
    import moderngl

    _load_triton_first()

    try:
        return moderngl.create_context(standalone=True, backend="egl")
    except Exception as first_error:  # unversioned libEGL.so / libGL.so missing (no -dev packages): name the .so.1
        try:
            return moderngl.create_context(standalone=True, backend="egl", libegl="libEGL.so.1", libgl="libGL.so.1")
        except Exception:
            raise first_error from None


class _GLRenderer:
    """A context, the shader program and framebuffers (one per image size) of one process."""

    def __init__(self):
        import moderngl

        self.ctx = _create_context()
        self.program = self.ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        self.vbo = self.ctx.buffer(reserve=4 * _FLOATS_PER_VERTEX * 3 * 1024, dynamic=True)
        self.vao = self.ctx.vertex_array(self.program, [(self.vbo, "3f 3f", "in_pos", "in_rgb")])
        self.framebuffers = {}
        self.triangles = moderngl.TRIANGLES
        self.depth_test = moderngl.DEPTH_TEST
        self.lock = threading.Lock()

    def framebuffer(self, H: int, W: int):
        fbo = self.framebuffers.get((H, W))
        if fbo is None:
            size = (W, H)
            fbo = self.ctx.framebuffer(
                color_attachments=[self.ctx.renderbuffer(size, components=4, dtype="f4"),
                                   self.ctx.renderbuffer(size, components=1, dtype="f4")],
                depth_attachment=self.ctx.depth_renderbuffer(size))
            self.framebuffers[(H, W)] = fbo
        return fbo

    def draw(self, soup: TriangleSoup, K, image_size, near_m: float, far_m: float) -> RenderResult:
        # An EGL context is current in one thread at a time: serialise, and make it current in the calling thread
        # (without this, a render from another thread silently returns the wrong pixels).
        with self.lock, self.ctx:
            return self._draw(soup, K, image_size, near_m, far_m)

    def _draw(self, soup: TriangleSoup, K, image_size, near_m: float, far_m: float) -> RenderResult:
        H, W = int(image_size[0]), int(image_size[1])
        fbo = self.framebuffer(H, W)
        fbo.use()
        self.ctx.viewport = (0, 0, W, H)
        self.ctx.enable(self.depth_test)  # no face culling: both faces are drawn (lighting is two-sided)
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        num_vertices = 3 * len(soup.corners_m)
        if num_vertices:
            data = np.concatenate([soup.corners_m.reshape(-1, 3), soup.corner_rgb.reshape(-1, 3)], axis=1)
            data = np.ascontiguousarray(data, dtype=np.float32)
            if data.nbytes > self.vbo.size:
                self.vbo.orphan(data.nbytes)
            self.vbo.write(data.tobytes())
            # moderngl uploads matrices column-major; the transpose of our row-major P is P in column-major.
            self.program["proj"].write(gl_projection_matrix(K, (H, W), near_m, far_m).T.copy().tobytes())
            self.vao.render(self.triangles, vertices=num_vertices)
        # Framebuffer row r is image row v = r (the projection maps v down to window y up): no flip.
        rgba = np.frombuffer(fbo.read(components=4, attachment=0, dtype="f4"), np.float32).reshape(H, W, 4)
        z = np.frombuffer(fbo.read(components=1, attachment=1, dtype="f4"), np.float32).reshape(H, W)
        mask = rgba[..., 3] > 0.5
        depth_m = np.where(mask, z, 0.0).astype(np.float32)
        return RenderResult(color=np.ascontiguousarray(rgba[..., :3]), depth_m=depth_m, mask=mask, backend="gl")


_renderer: _GLRenderer | None = None
_renderer_pid: int | None = None
_failure: tuple[int, str] | None = None  # (pid, reason) of a failed context creation in that process


def get_renderer() -> _GLRenderer:
    """The GL renderer of this process, created on first use. Raises GLUnavailableError with a one-line reason."""
    global _renderer, _renderer_pid, _failure
    pid = os.getpid()
    if _renderer is not None:
        if _renderer_pid == pid:
            return _renderer
        raise GLUnavailableError(
            f"GL rendering is disabled in forked process {pid}: its parent {_renderer_pid} created an EGL context "
            "before fork, and Mesa hangs if the child creates another; use backend='numba' here, start workers "
            "with 'spawn', or avoid GL in the parent.")
    if _failure is not None and _failure[0] == pid:
        raise GLUnavailableError(_failure[1])
    try:
        renderer = _GLRenderer()
    except Exception as error:  # ImportError, missing libEGL, no EGL device, shader compile failure
        reason = f"cannot create a headless OpenGL (EGL) context: {type(error).__name__}: {error}".replace("\n", " ")
        reason += " -- install moderngl and Mesa's EGL (Debian: libegl1 libegl-mesa0 libgl1-mesa-dri), " \
                  "or use backend='numba'."
        _failure = (pid, reason)
        raise GLUnavailableError(reason) from None
    _renderer, _renderer_pid = renderer, pid
    return renderer


def rasterize(soup: TriangleSoup, K, image_size, near_m: float, far_m: float) -> RenderResult:
    """Draw a shaded triangle soup with OpenGL; same arguments and result as :func:`i2lmesh.render.raster.rasterize`
    (backend "gl"). Raises GLUnavailableError when no context can be had in this process."""
    return get_renderer().draw(soup, K, image_size, near_m, far_m)

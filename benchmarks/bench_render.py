"""Milliseconds per frame of render_mesh with the GL and numba backends; prints one JSON object.

    python benchmarks/bench_render.py [--runs 30] [--size 256] [--subdivisions 5]

The mesh is an icosphere (subdivisions 5: 10,242 vertices, 20,480 faces, about a body's size) of radius 0.5 m at
2.5 m, filling ~17% of a 256x256 image like a person crop does. A frame is the whole call: shading, rasterising and
(GL) reading colour and depth back. The first call per backend (numba compile or cache load, GL context creation)
is timed separately as "first_call_ms".
"""
import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from i2lmesh.render import GLUnavailableError, icosphere, render_mesh
from i2lmesh.render.common import shade_triangles


def time_ms(fn, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--size", type=int, default=256, help="image height and width, pixels")
    parser.add_argument("--subdivisions", type=int, default=5)
    args = parser.parse_args()

    vertices, faces = icosphere(args.subdivisions, radius_m=0.5)
    vertices = vertices + np.array([0.0, 0.0, 2.5])
    colors = 0.3 + 0.6 * (vertices - vertices.min(0)) / np.ptp(vertices, axis=0)
    f = 300.0 * args.size / 256.0
    K = np.array([[f, 0.0, (args.size - 1) / 2.0], [0.0, f, (args.size - 1) / 2.0], [0.0, 0.0, 1.0]])
    size = (args.size, args.size)

    report = {"image_size": list(size), "vertices": len(vertices), "faces": len(faces), "runs": args.runs,
              "cpu_count": os.cpu_count(), "python": platform.python_version()}
    shading_times = time_ms(lambda: shade_triangles(vertices, faces, colors), args.runs)
    report["shading_only_ms_median"] = round(statistics.median(shading_times), 3)
    for backend in ("numba", "gl"):
        render = lambda: render_mesh(vertices, faces, K, size, vertex_colors=colors, backend=backend)  # noqa: E731
        try:
            start = time.perf_counter()
            result = render()
            first = (time.perf_counter() - start) * 1000.0
        except GLUnavailableError as error:
            report[backend] = {"available": False, "reason": str(error)}
            continue
        times = time_ms(render, args.runs)
        report[backend] = {"available": True, "ms_per_frame_median": round(statistics.median(times), 3),
                           "ms_per_frame_min": round(min(times), 3), "first_call_ms": round(first, 1),
                           "covered_pixels": int(result.mask.sum())}
    if report["gl"].get("available"):
        import moderngl  # noqa: F401  (only for the version string)
        from i2lmesh.render import gl
        report["gl"]["renderer"] = gl.get_renderer().ctx.info["GL_RENDERER"]
        report["gl"]["moderngl"] = moderngl.__version__
    import numba
    report["numba"]["numba"] = numba.__version__
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

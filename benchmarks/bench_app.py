"""Latency of the web page (``i2lmesh app``): seconds from a photo to its first result, after warm-up; prints one
JSON object.

    python benchmarks/bench_app.py [--photo PHOTO] [--method fit] [--checkpoint CKPT] [--repeats 5] [--threads N]
                                   [--no-http] [--out FILE]

Photo: PHOTO, else ``../shared/photos/basketball1.png`` (640x480, two people) where it exists, else (or with
``--photo synthetic``) a synthetic 640x480 photo (one rendered Anny body). The page's service is warmed up (as
``i2lmesh app`` does at start), then the photo is run ``--repeats`` times:

- ``service_s``: :meth:`MeshService.process` alone: detection, the method, the overlay picture, GLB/OBJ/JSON files;
  ``stages_s``: the Predictor's own stage times of the last run (detect, network, fit) and ``files_s``, the rest.
- ``http_s`` (unless --no-http): the same photo through the running page's API with gradio_client: upload, queue,
  the handler, and the result files copied into Gradio's cache: what the browser waits for, less drawing.

The machine's load average is recorded: on a shared machine the numbers move with it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
DEFAULT_PHOTO = HERE.parent.parent / "shared" / "photos" / "basketball1.png"


def synthetic_photo(folder: Path) -> Path:
    """A 640x480 PNG: the middle rows of a 640 px render of ``i2lmesh synth`` (an Anny body on a textured
    background)."""
    from PIL import Image

    from i2lmesh.data.synth import SynthConfig, SynthRenderer

    image = SynthRenderer(SynthConfig(kind="body", num=1, seed=7, size=640)).render_chunk(0)[0].image
    path = folder / "synthetic_640x480.png"
    Image.fromarray(image[80:560]).save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, default=None, help="a photo, or 'synthetic'")
    parser.add_argument("--method", default="fit")
    parser.add_argument("--kind", default="body")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core)")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from i2lmesh.app.core import MeshService

    scratch = Path(tempfile.mkdtemp(prefix="bench-app-"))
    if args.photo is not None and str(args.photo) != "synthetic" and not args.photo.is_file():
        parser.error(f"--photo {args.photo}: file not found")
    photo = args.photo or (DEFAULT_PHOTO if DEFAULT_PHOTO.is_file() else Path("synthetic"))
    photo = synthetic_photo(scratch) if str(photo) == "synthetic" else photo
    service = MeshService([args.checkpoint] if args.checkpoint else [], threads=args.threads)
    report: dict = {"photo": photo.name, "method": args.method, "kind": args.kind,
                    "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__}
    try:
        t = time.perf_counter()
        report["warm_up_s"] = round(service.warm_up(args.kind, args.method), 3)
        report["warm_up_wall_s"] = round(time.perf_counter() - t, 3)
        times, lines = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            result = service.process([photo], args.kind, args.method)
            times.append(time.perf_counter() - t)
            lines.append(result.lines[0])
        stages = service.predictor(args.kind, args.method).last_timings
        report["result_line"] = lines[-1]
        report["service_s"] = {"first": round(times[0], 3), "median": round(statistics.median(times), 3),
                               "all": [round(x, 3) for x in times]}
        report["stages_s"] = {k: round(v, 3) for k, v in stages.items() if v}
        report["files_s"] = round(times[-1] - stages.get("total_s", 0.0), 3)
        if not args.no_http:
            report["http_s"] = http_latency(service, photo, args)
        report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        service.close()
        shutil.rmtree(scratch, ignore_errors=True)
    text = json.dumps(report, indent=1, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def http_latency(service, photo: Path, args) -> dict:
    """Seconds per call of the page's API (gradio_client), first and median."""
    import socket

    from gradio_client import Client, handle_file

    from i2lmesh.app.page import serve

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = serve(service, port=port, quiet=True)
    try:
        client = Client(server.url, verbose=False)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = client.predict([handle_file(str(photo))], None, args.kind, args.method, api_name="/on_run")
            times.append(time.perf_counter() - t)
        assert str(out[0]).startswith("✓"), out[0]
        return {"first": round(times[0], 3), "median": round(statistics.median(times), 3),
                "all": [round(x, 3) for x in times]}
    finally:
        server.page.close()


if __name__ == "__main__":
    sys.exit(main())

"""End-to-end inference latency on CPU through the public Predictor; prints JSON.

Per image, for each preset and backend (PyTorch with BN folding, ONNX Runtime):
  boxes         given boxes: crop + network + decode (the tool's path without detection)
  detector      the built-in detector (OpenCV HOG for bodies unless mediapipe is installed) + the above
  render        given boxes + rendering the mesh over the image (numba rasteriser)
Images are synthetic 480x480 renders of Anny bodies (i2lmesh synth), processed one per call (batch 1, a camera
stream) and eight per call (a folder). Network-only variants and ResNet-50-trunk ratios: bench_model.py.
Temporary checkpoints, ONNX files and images live in a folder removed on exit, failures included.

    python benchmarks/bench_infer.py --presets cpu-small paper-body --runs 5
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _images(workdir: Path, count: int) -> tuple[list[np.ndarray], list[list[float]], list[np.ndarray]]:
    from PIL import Image

    from i2lmesh.data.formats.i2lmesh import read_dataset
    from i2lmesh.data.synth.generate import SynthConfig, generate

    generate(SynthConfig(kind="body", num=count, seed=7, size=480), workdir / "images", workers=1, progress=False)
    records = read_dataset(workdir / "images")
    images = [np.asarray(Image.open(r.image_path).convert("RGB")) for r in records]
    return images, [list(r.bbox_xywh) for r in records], [np.asarray(r.K) for r in records]


def _median_per_image(fn, runs: int, per_call: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) / per_call)
    return statistics.median(times)


def bench_preset(preset: str, workdir: Path, images, boxes, intrinsics, runs: int, threads: int) -> dict:
    from i2lmesh import build_network, get_preset, save_network
    from i2lmesh.export.onnx import export_onnx
    from i2lmesh.inference import Predictor
    from i2lmesh.render import overlay, render_mesh

    net = build_network(get_preset(preset)).eval()
    files = {"torch": workdir / f"{preset}.pt", "onnx": workdir / f"{preset}.onnx"}
    save_network(net, files["torch"])
    export_onnx(net, files["onnx"])
    del net
    result: dict = {"preset": preset}
    for backend in ("torch", "onnx"):
        predictor = Predictor.from_checkpoint(files[backend], backend=backend, num_threads=threads)
        n = len(images)

        def one_by_one(with_boxes=True, render=False):
            for i in range(n):
                people = predictor.predict(images[i], boxes=[boxes[i]] if with_boxes else None,
                                           intrinsics=intrinsics[i])
                if render:
                    for p in people:
                        overlay(images[i], render_mesh(p.vertices_m, p.faces, p.K, images[i].shape[:2],
                                                       backend="numba"))

        def batched():
            predictor.predict(images, boxes=[[b] for b in boxes], intrinsics=intrinsics)

        entry = {
            "boxes_batch1_s": _median_per_image(lambda: one_by_one(True), runs, n),
            "boxes_batch8_s": _median_per_image(batched, runs, n),
            "detector_batch1_s": _median_per_image(lambda: one_by_one(False), runs, n),
            "render_batch1_s": _median_per_image(lambda: one_by_one(True, True), runs, n),
        }
        entry.update({k.replace("_s", "_images_per_s"): round(1.0 / v, 1) for k, v in list(entry.items())})
        result[backend] = {k: round(v, 4) if k.endswith("_s") else v for k, v in entry.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cpu-small", "paper-body"])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_infer_") as tmp:
        workdir = Path(tmp)
        images, boxes, intrinsics = _images(workdir, args.images)
        report = {"torch": torch.__version__, "threads": args.threads, "image_size": list(images[0].shape[:2]),
                  "load_avg_start": os.getloadavg()[0],
                  "results": [bench_preset(p, workdir, images, boxes, intrinsics, args.runs, args.threads)
                              for p in args.presets]}
    report["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""Inference latency on CPU; prints JSON.

Part 1, network only (this file's ``network_latency``): per image, for each preset and batch size,
  trunk        one torchvision ResNet-50 (eager, fp32) on the same input size: the unit of time
  eager        the PyTorch network as trained (separable Pose2Feat)
  folded       BatchNorm folded + channels_last (nets/fast.py ``optimise_for_inference``)
  onnxruntime  the BN-folded ONNX export (export/onnx.py) run by ONNX Runtime's CPU provider
timed in one process with interleaved rounds (the machine's load swings several-fold, so only ratios within
one run mean anything); medians; also the largest output difference of each variant from eager, in bins.
The ONNX file of a paper-scale network (~570 MB) lives in a temporary folder removed on exit, failures included.

    python benchmarks/bench_infer.py --presets cpu-small paper-body --batches 1 8 --runs 7
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from i2lmesh import get_preset
from i2lmesh.nets import I2LMeshNet
from i2lmesh.nets.fast import optimise_for_inference

VARIANTS = ("eager", "folded", "onnxruntime")


def random_network(preset: str) -> I2LMeshNet:
    """The preset's network with random weights, regressor and faces (latency does not depend on them)."""
    cfg = get_preset(preset)
    torch.manual_seed(0)
    regressor = torch.softmax(torch.randn(cfg.num_joints, cfg.num_vertices), dim=1)
    return I2LMeshNet(cfg, regressor, torch.randint(0, cfg.num_vertices, (2 * cfg.num_vertices, 3))).eval()


def network_latency(preset: str, batches: list[int], runs: int, threads: int, workdir: Path) -> dict:
    """Median seconds per image of each variant and of the ResNet-50 trunk, interleaved, for each batch size."""
    from torchvision.models import resnet50

    from i2lmesh.export.onnx import OnnxNetwork, export_onnx

    net = random_network(preset)
    cfg = net.config
    result: dict = {"preset": preset, "parameters": sum(p.numel() for p in net.parameters()),
                    "config": {k: getattr(cfg, k) for k in ("backbone_depth", "input_size", "depth_bins",
                                                            "deconv_channels", "num_joints", "num_vertices")}}
    t0 = time.perf_counter()
    folded = optimise_for_inference(net)
    result["fold_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    onnx_path = export_onnx(net, workdir / f"{preset}.onnx")
    result["onnx_export_s"] = round(time.perf_counter() - t0, 2)
    result["onnx_file_mb"] = round(onnx_path.stat().st_size / 2**20, 1)
    t0 = time.perf_counter()
    runner = OnnxNetwork(onnx_path, num_threads=threads)
    result["onnx_session_s"] = round(time.perf_counter() - t0, 2)
    trunk = resnet50().eval()
    size = cfg.input_size

    for batch in batches:
        x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        inputs = {"trunk": x, "eager": x, "folded": x.contiguous(memory_format=torch.channels_last),
                  "onnxruntime": x}
        calls = {"trunk": trunk, "eager": net, "folded": folded, "onnxruntime": runner}
        times: dict[str, list[float]] = {name: [] for name in calls}
        with torch.no_grad():
            outputs = {name: calls[name](inputs[name]) for name in VARIANTS}  # warm-up + parity
            trunk(x)
            for _ in range(runs):
                for name, call in calls.items():
                    t0 = time.perf_counter()
                    call(inputs[name])
                    times[name].append(time.perf_counter() - t0)
        trunk_s = statistics.median(times["trunk"])
        entry = {"trunk_s_per_image": round(trunk_s / batch, 4)}
        for name in VARIANTS:
            med = statistics.median(times[name])
            diff = max((getattr(outputs[name], k) - getattr(outputs["eager"], k)).abs().max().item()
                       for k in ("joints_hm", "vertices_hm", "mesh_joints_hm"))
            entry[name] = {"s_per_image": round(med / batch, 4), "trunks": round(med / trunk_s, 2),
                           "images_per_s": round(batch / med, 2),
                           "max_abs_diff_bins_vs_eager": float(f"{diff:.2e}")}
        result[f"batch_{batch}"] = entry
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cpu-small", "paper-body"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime

    report = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "threads": args.threads,
              "runs": args.runs, "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg()[0],
              "network": []}
    with tempfile.TemporaryDirectory(prefix="i2lmesh-bench-") as tmp:  # removed on failure too
        for preset in args.presets:
            report["network"].append(network_latency(preset, args.batches, args.runs, args.threads, Path(tmp)))
            for path in Path(tmp).iterdir():  # one paper-scale file at a time on disk
                path.unlink()
    report["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

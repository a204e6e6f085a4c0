"""Forward latency, parameters and peak memory of the network presets on CPU; prints JSON.

Variants, all timed in one process with interleaved rounds (the machine's load swings several-fold, so only
ratios within one run mean anything):
  trunk        one torchvision ResNet-50 (eager, fp32) at the preset's input size: the unit of time
  reference    the authors' computation: the materialised 3D Gaussian volume, and the 1x1 heads run as nn.Conv1d
               modules (their code) rather than our matrix products; same weights, same outputs
  separable    the separable Pose2Feat (default), eager
  fast         separable + BatchNorm folding + channels_last (nets/fast.py)
  compiled     fast + torch.compile with inductor freezing (``--compile``; compile time reported)
  onnxruntime  the BN-folded network exported to ONNX, run by ONNX Runtime on the CPU (``--onnx``)
Peak memory is measured in a fresh child process per (preset, variant, batch) as the growth of the resident
set's high-water mark during the first forward, after the weights are loaded.

    python benchmarks/bench_model.py --presets paper-body --batches 1 8 --runs 8
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types

import torch

from i2lmesh import get_preset
from i2lmesh.nets import I2LMeshNet
from i2lmesh.nets.fast import optimise_for_inference

# V and J as the reference's SMPL / MANO networks, so parameter counts and times compare with it.
PRESET_SIZES = {"paper-body": (29, 6890), "paper-hand": (21, 778), "cpu-small": (29, 6890),
                "cpu-small-hand": (21, 1609)}


def build(preset: str, variant: str, workdir: str | None = None) -> tuple[torch.nn.Module, object]:
    joints, verts = PRESET_SIZES[preset]
    mode = "materialised" if variant == "reference" else "separable"
    cfg = get_preset(preset, num_joints=joints, num_vertices=verts, pose2feat=mode)
    torch.manual_seed(0)
    reg = torch.softmax(torch.randn(joints, verts), dim=1)
    net = I2LMeshNet(cfg, reg, torch.randint(0, verts, (2 * verts, 3))).eval()
    if variant == "reference":
        for head in (net.pose_net, net.mesh_net):
            head.heatmaps = types.MethodType(_conv1d_heatmaps, head)
    if variant == "fast":
        return optimise_for_inference(net), cfg
    if variant == "compiled":
        return optimise_for_inference(net, compile=True), cfg
    if variant == "onnxruntime":
        from i2lmesh.export.onnx import OnnxNetwork, export_onnx

        path = os.path.join(workdir or tempfile.gettempdir(), f"{preset}.onnx")
        export_onnx(net, path)
        return OnnxNetwork(path, num_threads=torch.get_num_threads()), cfg
    return net, cfg


def _conv1d_heatmaps(head, feature: torch.Tensor):
    """LixelHead.heatmaps as the authors' code computes it: every 1x1 projection through nn.Conv1d."""
    upsampled = head.deconv(feature)
    hm_x = head.conv_x(upsampled.mean(dim=2))
    hm_y = head.conv_y(upsampled.mean(dim=3))
    z_feat = torch.relu(head.bn_z_1(head.conv_z_1(feature.mean(dim=(2, 3))[:, :, None])))
    return hm_x, hm_y, head.conv_z_2(z_feat.view(-1, head.channels, head.depth_bins))


def _read_status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def memory_child(preset: str, variant: str, batch: int) -> None:
    """Run in a fresh process: peak RSS growth (bytes) of the first forward pass (a second pass would reuse
    memory the allocator kept, hiding the activations)."""
    torch.set_num_threads(2)
    net, cfg = build(preset, variant)
    x = _input(cfg, batch, variant)
    with torch.no_grad():
        before = _read_status("VmRSS:")
        with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
            f.write("5")
        net(x)
        peak = _read_status("VmHWM:")
    print(json.dumps({"peak_forward_bytes": max(peak - before, 0)}))


def _input(cfg, batch: int, variant: str) -> torch.Tensor:
    x = torch.rand(batch, 3, cfg.input_size, cfg.input_size, generator=torch.Generator().manual_seed(1))
    return x.contiguous(memory_format=torch.channels_last) if variant in ("fast", "compiled") else x


def measure_memory(preset: str, variant: str, batch: int) -> int | None:
    if variant in ("compiled", "onnxruntime"):
        return None
    out = subprocess.run([sys.executable, __file__, "--memory-child", preset, variant, str(batch)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_forward_bytes"]


def bench_preset(preset: str, variants: list[str], batches: list[int], runs: int, workdir: str) -> dict:
    from torchvision.models import resnet50

    result: dict = {"preset": preset, "variants": {}}
    nets = {}
    for v in variants:
        t0 = time.perf_counter()
        nets[v], cfg = build(preset, v, workdir)
        result["variants"][v] = {"build_s": round(time.perf_counter() - t0, 2)}
    base = nets["reference"] if "reference" in nets else next(iter(nets.values()))
    result["parameters"] = sum(p.numel() for p in base.parameters())
    result["config"] = {k: getattr(cfg, k) for k in ("backbone_depth", "input_size", "depth_bins",
                                                    "deconv_channels", "num_joints", "num_vertices")}
    trunk = resnet50().eval()
    for batch in batches:
        inputs = {v: _input(cfg, batch, v) for v in variants}
        plain = _input(cfg, batch, "reference")
        times: dict[str, list[float]] = {v: [] for v in ["trunk"] + variants}
        with torch.no_grad():
            outputs = {}
            for v in variants:  # warm-up (and compile) + outputs for the equality check
                t0 = time.perf_counter()
                outputs[v] = nets[v](inputs[v])
                result["variants"][v].setdefault("first_call_s", {})[str(batch)] = round(time.perf_counter() - t0, 2)
            trunk(plain)
            for _ in range(runs):
                for v in ["trunk"] + variants:
                    net, x = (trunk, plain) if v == "trunk" else (nets[v], inputs[v])
                    t0 = time.perf_counter()
                    net(x)
                    times[v].append(time.perf_counter() - t0)
        trunk_s = statistics.median(times["trunk"])
        result.setdefault("trunk_s", {})[str(batch)] = round(trunk_s, 4)
        ref_out = outputs[variants[0]]
        for v in variants:
            med = statistics.median(times[v])
            entry = result["variants"][v]
            entry.setdefault("median_s", {})[str(batch)] = round(med, 4)
            entry.setdefault("trunks", {})[str(batch)] = round(med / trunk_s, 2)
            diff = max((getattr(outputs[v], k) - getattr(ref_out, k)).abs().max().item()
                       for k in ("joints_hm", "vertices_hm"))
            entry.setdefault(f"max_abs_diff_bins_vs_{variants[0]}", {})[str(batch)] = float(f"{diff:.2e}")
            mem = measure_memory(preset, v, batch)
            entry.setdefault("peak_forward_mb", {})[str(batch)] = None if mem is None else round(mem / 2**20, 1)
        if "reference" in variants:
            ref_med = statistics.median(times["reference"])
            result.setdefault("speedup_vs_reference", {})[str(batch)] = {
                v: round(ref_med / statistics.median(times[v]), 2) for v in variants}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["paper-body", "paper-hand", "cpu-small"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow first call)")
    parser.add_argument("--onnx", action="store_true", help="also time ONNX Runtime (exports to a temp folder)")
    parser.add_argument("--memory-child", nargs=3, metavar=("PRESET", "VARIANT", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        preset, variant, batch = args.memory_child
        memory_child(preset, variant, int(batch))
        return
    torch.set_num_threads(args.threads)
    variants = (["reference", "separable", "fast"] + (["compiled"] if args.compile else [])
                + (["onnxruntime"] if args.onnx else []))
    with tempfile.TemporaryDirectory(prefix="bench_model_") as workdir:  # removed also on failure
        report = {"torch": torch.__version__, "threads": args.threads, "runs": args.runs,
                  "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg()[0],
                  "results": [bench_preset(p, variants, args.batches, args.runs, workdir) for p in args.presets]}
    report["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

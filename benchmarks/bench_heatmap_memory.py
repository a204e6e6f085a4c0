"""Peak memory of MeshNet's output representations as the heatmap resolution D and the vertex count V grow
(paper Sec. 5.2, Table 2; supplementary Table 10); prints JSON, optionally draws a log-log plot.

Expected heatmap sizes (paper Table 2): lixel O(VD), pixel xy + lixel z O(VD^2), 2.5D (Iqbal et al.) O(VD^2),
voxel O(VD^3); "xyz-fc" and "param" regress values and do not depend on D.

Resolution D means x/y bins = z bins = D, as in Table 2 (8x8x8, 32x32,32, 64x64,64). The output part is always
the paper's: three upsampling blocks (8x) on the backbone feature, so one x/y bin covers 4 input pixels and the
input is 4 D px (D = 64: the paper's 256x256; D = 8: 32x32; D = 128: 512x512) -- across D only the heatmap sizes
change, not the layers. Fixed: ResNet-18, 128 upsampling channels (cpu-small), MeshNet alone (cascade "meshnet",
as the paper's ablations), batch 2 (BatchNorm needs two samples). "lixel-early" is the lixel head with early
marginalisation (supplementary Table 8: 1D upsampling). The training step's backbone grows with the input (D^2);
the output part alone is measured on a backbone feature of the right size, which isolates the representation.

Measured per configuration, in a fresh child process (so a failure cannot take the sweep down):
  head   the output part alone: ``run_mesh_head`` on a random backbone feature, J x vertices, the paper's losses,
         backward (train mode; the head's parameter gradients and the feature's gradient are included)
  train  one training step of the whole network: forward, losses, backward, Adam step, starting without
         gradients or Adam state (both are included); D sweep and "param" only (the V sweep's backbone is fixed)
Memory is the peak of the bytes live in PyTorch's CPU allocator during the part, above what was live before it
(the weights are not counted; their size is in ``param_bytes``), read from torch.profiler's allocation events.
Beside it: the bytes autograd saved for backward (saved-tensor hooks; weights, buffers and inputs excluded), the
analytic size of the predicted heatmaps (``heatmap_bytes``, float32) and the growth of the child's peak resident
set (VmHWM) over both parts, a sanity check (it includes malloc's slack). A configuration whose estimated peak
exceeds --max-gb is not run ("skipped: over cap"), nor are larger D or V of the same target; the child also runs
under RLIMIT_DATA so an underestimate fails instead of swapping.

    python benchmarks/bench_heatmap_memory.py --plot docs/images/heatmap_memory.png > heatmap_memory.json
    python benchmarks/bench_heatmap_memory.py --quick        # lixel, pixel-lixel, voxel; D <= 32; 2 GB cap
    python benchmarks/bench_heatmap_memory.py --from-json heatmap_memory.json --plot out.png  # redraw only
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from bench_model import _read_status  # /proc/self/status memory fields in bytes (same folder)

from i2lmesh import get_preset
from i2lmesh.config import ModelConfig
from i2lmesh.nets import I2LMeshNet

NUM_JOINTS = 29
BATCH = 2
D_SWEEP = (8, 16, 32, 64, 128)
V_SWEEP = (778, 1609, 6890, 13718)  # MANO, a hand mesh, SMPL, the reference's upsampled SMPL-like size
V_FIXED = 6890  # V of the D sweep (SMPL's)
D_FIXED = 16  # D of the V sweep: the largest at which the voxel heatmap of every V fits under 8 GB
D_TARGETS = ("lixel", "lixel-early", "lixel-fc", "pixel-lixel", "2.5d", "voxel")
V_TARGETS = ("lixel", "lixel-fc", "pixel-lixel", "2.5d", "voxel", "xyz-fc")
# Benchmark names that are not config targets: the config fields they stand for.
VARIANTS = {"lixel-early": {"target": "lixel", "early_marginalisation": True}}
EXPECTED_D_SLOPE = {"lixel": 1, "lixel-early": 1, "lixel-fc": 1, "pixel-lixel": 2, "2.5d": 2, "voxel": 3,
                    "xyz-fc": 0, "param": 0}
GB = 2 ** 30
MB = 2 ** 20


def input_size_for(depth_bins: int) -> int:
    """4 px per x/y bin, as the paper (256 -> 64): the backbone's 1/32 feature upsampled 8x gives D bins."""
    if depth_bins % 8:
        raise ValueError(f"D must be a multiple of 8 (ResNet stride 32, 8x upsampling); got {depth_bins}")
    return 4 * depth_bins


def bench_config(target: str, depth_bins: int, num_vertices: int) -> ModelConfig:
    """cpu-small's network (ResNet-18, 128 deconv channels) as MeshNet alone with a D x D x D heatmap;
    ``target`` is a config target or a name of :data:`VARIANTS`."""
    fields = VARIANTS.get(target, {"target": target})
    return get_preset("cpu-small", cascade="meshnet", num_joints=NUM_JOINTS, num_vertices=num_vertices,
                      depth_bins=depth_bins, xy_bins=depth_bins, input_size=input_size_for(depth_bins), **fields)


def heatmap_values(cfg: ModelConfig) -> int:
    """Values one image's output part predicts before the soft-argmax (float32 each): the heatmap logits for the
    heatmap targets, the regressed numbers otherwise. X = x/y bins, D = z bins, V = vertices."""
    v, d, x = cfg.num_vertices, cfg.depth_bins, cfg.mesh_xy_bins
    sizes = {"lixel": v * (2 * x + d),  # x, y and z lixels
             "lixel-fc": 3 * v * d,
             "pixel-lixel": v * (x * x + d),  # an xy pixel heatmap and a z lixel
             "2.5d": 2 * v * x * x,  # an xy heatmap and a same-size depth map
             "voxel": v * d * x * x,
             "xyz-fc": 3 * v,
             "param": 6 * cfg.param_num_rotations + cfg.param_shape_dim + 3}  # 6D rotations, shape, camera
    return sizes[cfg.target]


def heatmap_bytes(cfg: ModelConfig, batch: int) -> int:
    return 4 * batch * heatmap_values(cfg)


def parameter_counts(cfg: ModelConfig) -> tuple[int, int]:
    """(whole network, output part) parameters, counted on the meta device so that nothing is allocated."""
    with torch.device("meta"):
        net = I2LMeshNet(cfg, torch.empty(cfg.num_joints, cfg.num_vertices),
                         torch.empty(2 * cfg.num_vertices, 3, dtype=torch.long),
                         body_model=torch.nn.Identity() if cfg.target == "param" else None)
        return sum(p.numel() for p in net.parameters()), sum(p.numel() for p in net.mesh_net.parameters())


def estimate_peak_bytes(cfg: ModelConfig, batch: int) -> int:
    """A guess of the child's peak allocation, to decide before running whether it fits: weights, gradients and
    Adam's two moments of every parameter; 4x the heatmap (logits, probabilities, their gradients: the measured
    peak of the output part was at most 3.2x it); the upsampled features; ResNet-18's training activations
    (~0.3 kB per input pixel per image). The child's RLIMIT_DATA catches an underestimate."""
    total, _ = parameter_counts(cfg)
    upsampled = 4 * batch * cfg.deconv_channels * cfg.mesh_xy_bins ** 2 * 4
    backbone = batch * cfg.input_size ** 2 * 300
    return 4 * total * 4 + 4 * heatmap_bytes(cfg, batch) + upsampled + backbone


def synthetic_topology(num_joints: int, num_vertices: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A joint regressor (J,V) with rows summing to 1 and 2V random faces: the sizes of a body mesh, no files."""
    g = torch.Generator().manual_seed(seed)
    regressor = torch.softmax(torch.randn(num_joints, num_vertices, generator=g), dim=1)
    faces = torch.randint(0, num_vertices, (2 * num_vertices, 3), generator=g)
    return regressor, faces


def allocator_peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak bytes live in PyTorch's CPU allocator while ``fn`` runs, above the level at its start.

    The profiler's allocation events carry the allocator's running total (it counts only blocks allocated while
    profiling, so frees of older blocks are ignored and the level at the start is the first event's total minus
    its size; the running total also survives between profiling sessions, hence the subtraction).
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    allocations = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        fields = node.extra_fields
        if type(fields).__name__ == "_ExtraFields_Allocation" and fields.device.type == "cpu":
            allocations.append((node.start_time_ns, fields.alloc_size, fields.total_allocated))
    if not allocations:
        return 0
    allocations.sort()
    start = allocations[0][2] - allocations[0][1]
    return max(total for _, _, total in allocations) - start


class SavedForBackward:
    """Counts the distinct storages autograd saves for backward (parameters excluded): the activations kept."""

    def __init__(self, exclude: Sequence[torch.Tensor]) -> None:
        self.exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self.storages: dict[int, int] = {}
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in self.exclude and storage.device.type == "cpu":
            self.storages[storage.data_ptr()] = storage.nbytes()
        return t

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())


def synthetic_targets(cfg: ModelConfig, batch: int):
    """Random ground truth inside the heatmap volume, all valid, so every loss term runs."""
    from i2lmesh.losses import LossTargets

    g = torch.Generator().manual_seed(2)
    extent = torch.tensor([cfg.heatmap_size - 1.0, cfg.heatmap_size - 1.0, cfg.depth_bins - 1.0])
    joints = torch.rand(batch, cfg.num_joints, 3, generator=g) * extent
    vertices = torch.rand(batch, cfg.num_vertices, 3, generator=g) * extent
    return LossTargets(joints, torch.ones(batch, cfg.num_joints), torch.ones(batch), vertices,
                       torch.ones(batch, cfg.num_vertices))


def measure_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: build the network, then measure the head part and the training step."""
    from i2lmesh.engine.objective import network_losses
    from i2lmesh.nets.i2l import LixelOutput

    torch.set_num_threads(spec["threads"])
    batch = spec["batch"]
    torch.manual_seed(0)
    if spec["target"] == "param":
        from i2lmesh.nets.factory import body_model_for, build_network

        base = bench_config("param", spec["depth_bins"], spec["num_vertices"])
        net = build_network(base, body_model_for(base))  # J, V and the parameter sizes from the Anny body
    else:
        cfg = bench_config(spec["target"], spec["depth_bins"], spec["num_vertices"])
        net = I2LMeshNet(cfg, *synthetic_topology(cfg.num_joints, cfg.num_vertices))
    cfg = net.config
    net.train()
    params = list(net.parameters())
    # Tensors that exist before the measured parts: autograd saving them costs nothing.
    body = net.body_model if isinstance(net.body_model, torch.nn.Module) else torch.nn.Module()
    existing = params + list(net.buffers()) + list(body.parameters()) + list(body.buffers())
    targets = synthetic_targets(cfg, batch)
    feature_size = cfg.input_size // 32
    feature = torch.rand(batch, cfg.backbone_channels, feature_size, feature_size, requires_grad=True)
    images = torch.rand(batch, 3, cfg.input_size, cfg.input_size)
    result: dict[str, Any] = {"num_vertices": cfg.num_vertices, "num_joints": cfg.num_joints}
    rss_before = _read_status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
        f.write("5")

    def losses_of(vertices: LixelOutput | None, out=None) -> torch.Tensor:
        if out is None:
            from i2lmesh.nets.i2l import I2LOutput

            joints = torch.matmul(net.joint_regressor, vertices.coords)
            out = I2LOutput(joints, joints, vertices.coords, vertices.spreads, joints)
        return sum(network_losses(net, out, targets).values())

    saved = SavedForBackward(existing + [feature])

    def head_step() -> None:
        with saved.hooks:
            loss = losses_of(net.run_mesh_head(feature))
        loss.backward()

    t0 = time.perf_counter()
    result["head_peak_bytes"] = allocator_peak_bytes(head_step)
    result["head_saved_bytes"] = saved.bytes
    result["head_s"] = round(time.perf_counter() - t0, 2)
    net.zero_grad(set_to_none=True)
    feature.grad = None
    if spec["train"]:
        optimizer = torch.optim.Adam(params, lr=1e-4)
        saved_train = SavedForBackward(existing + [images])

        def train_step() -> None:
            with saved_train.hooks:
                loss = losses_of(None, net(images))
            loss.backward()
            optimizer.step()

        t0 = time.perf_counter()
        result["train_peak_bytes"] = allocator_peak_bytes(train_step)
        result["train_saved_bytes"] = saved_train.bytes
        result["train_s"] = round(time.perf_counter() - t0, 2)
    result["rss_peak_growth_bytes"] = max(_read_status("VmHWM:") - rss_before, 0)
    return result


def run_child(spec: dict[str, Any], max_bytes: int, timeout_s: float) -> dict[str, Any]:
    """One configuration in a fresh interpreter; its data segment is capped at ``max_bytes`` + 2 GB for torch."""
    limit = max_bytes + 2 * GB

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    try:
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                             text=True, timeout=timeout_s, preexec_fn=cap_memory, check=False)
    except subprocess.TimeoutExpired:
        return {"status": f"failed: timeout after {timeout_s:.0f} s"}
    if out.returncode != 0:
        last = [line for line in out.stderr.strip().splitlines() if line.strip()][-1:] or ["?"]
        oom = "can't allocate memory" in out.stderr or "MemoryError" in out.stderr
        return {"status": "failed: out of memory (RLIMIT_DATA)" if oom else f"failed: {last[0][:200]}"}
    return {"status": "ok", **json.loads(out.stdout.strip().splitlines()[-1])}


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of log y on log x: the exponent k of y ~ x^k (None with fewer than two points)."""
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y and y > 0]
    if len(points) < 2:
        return None
    mx = sum(p[0] for p in points) / len(points)
    my = sum(p[1] for p in points) / len(points)
    sxx = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx


def sweep_plan(quick: bool, with_param: bool) -> list[tuple[str, str, int, int]]:
    """(sweep, target, D, V) in the order to run: each target's series by growing size, so it stops at the cap."""
    d_values = D_SWEEP[:3] if quick else D_SWEEP
    v_values = (V_SWEEP[0], V_SWEEP[2]) if quick else V_SWEEP
    d_targets = ("lixel", "pixel-lixel", "voxel") if quick else D_TARGETS
    v_targets = d_targets if quick else V_TARGETS
    plan = [("D", t, d, V_FIXED) for t in d_targets for d in d_values]
    plan += [("V", t, D_FIXED, v) for t in v_targets for v in v_values]
    if with_param and not quick:
        plan.append(("V", "param", D_FIXED, V_FIXED))
    return plan


def run_sweeps(args: argparse.Namespace) -> dict[str, Any]:
    max_bytes = int(args.max_gb * GB)
    done: dict[tuple[str, int, int], dict[str, Any]] = {}  # the two sweeps share (target, D_FIXED, V_FIXED)
    stopped: set[tuple[str, str]] = set()
    records = []
    for sweep, target, d, v in sweep_plan(args.quick, not args.no_param):
        key = (target, d, v)
        if key in done:
            records.append({**done[key], "sweep": sweep})
            if done[key]["status"] != "ok":
                stopped.add((sweep, target))
            continue
        cfg = bench_config(target, d, v)
        if target == "param":  # the Anny body's sizes (build_network sets them from the body model)
            cfg = cfg.override(param_num_rotations=104, param_shape_dim=6)
        total_params, head_params = parameter_counts(cfg)
        record: dict[str, Any] = {
            "sweep": sweep, "target": target, "D": d, "xy_bins": cfg.mesh_xy_bins, "V": v, "J": cfg.num_joints,
            "input_size": cfg.input_size, "batch": args.batch, "feature_size": cfg.input_size // 32,
            "heatmap_bytes": heatmap_bytes(cfg, args.batch), "head_params": head_params,
            "param_bytes": 4 * total_params, "estimated_peak_bytes": estimate_peak_bytes(cfg, args.batch)}
        if (sweep, target) in stopped:
            record["status"] = "skipped: a smaller configuration of this series did not run"
        elif record["estimated_peak_bytes"] > max_bytes:
            record["status"] = "skipped: over cap"
        else:
            train = not (args.no_train or args.quick) and (sweep == "D" or target == "param")
            spec = {"target": target, "depth_bins": d, "num_vertices": v, "batch": args.batch,
                    "threads": args.threads, "train": train}
            t0 = time.perf_counter()
            record |= run_child(spec, max_bytes, args.timeout)
            record["wall_s"] = round(time.perf_counter() - t0, 1)
            if target == "param":
                record["V"] = record["num_vertices"]
        if record["status"] != "ok":
            stopped.add((sweep, target))
        record.pop("num_vertices", None)
        record.pop("num_joints", None)
        done[key] = record
        records.append(record)
        print(f"{sweep} {target:12s} D={d:4d} V={v:6d} {record['status']}"
              + (f" head {record['head_peak_bytes'] / MB:.1f} MB" if "head_peak_bytes" in record else ""),
              file=sys.stderr, flush=True)
    return {"records": records, "slopes": fit_slopes(records)}


def fit_slopes(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Log-log slopes per target: over every measured point, and between the two largest (the asymptote that
    fixed costs hide at small sizes), for the head, the training step and the analytic heatmap."""
    slopes: dict[str, Any] = {}
    for sweep, axis in (("D", "D"), ("V", "V")):
        for target in dict.fromkeys(r["target"] for r in records if r["sweep"] == sweep):
            rows = sorted((r for r in records if r["sweep"] == sweep and r["target"] == target
                           and r["status"] == "ok"), key=lambda r: r[axis])
            if len(rows) < 2:
                continue
            entry: dict[str, Any] = {"points": len(rows),
                                     "expected": EXPECTED_D_SLOPE[target] if sweep == "D" else 1}
            for name in ("heatmap_bytes", "head_peak_bytes", "train_peak_bytes"):
                xs = [r[axis] for r in rows if r.get(name)]
                ys = [r[name] for r in rows if r.get(name)]
                fit_all, fit_last = loglog_slope(xs, ys), loglog_slope(xs[-2:], ys[-2:])
                entry[name.replace("_bytes", "")] = {"all": None if fit_all is None else round(fit_all, 2),
                                                     "last_two": None if fit_last is None else round(fit_last, 2)}
            slopes.setdefault(f"vs_{axis}", {})[target] = entry
    return slopes


COLOURS = {"lixel": "tab:red", "lixel-early": "tab:pink", "lixel-fc": "tab:orange", "pixel-lixel": "tab:blue",
           "2.5d": "tab:cyan", "voxel": "tab:purple", "xyz-fc": "tab:gray", "param": "tab:green"}


def plot(report: dict[str, Any], path: str) -> None:
    """Two log-log panels: peak memory of the output part vs D (V fixed) and vs V (D fixed). Measured solid,
    analytic heatmap dotted, configurations skipped over the cap as triangles on the cap line, reference slopes
    in grey through the smallest measurement."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records, cap_mb = report["records"], report["max_gb"] * GB / MB
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    for ax, sweep, fixed in ((axes[0], "D", f"V = {V_FIXED}"), (axes[1], "V", f"D = {D_FIXED}")):
        series = [r for r in records if r["sweep"] == sweep]
        for target in dict.fromkeys(r["target"] for r in series):
            rows = sorted((r for r in series if r["target"] == target), key=lambda r: r[sweep])
            ok = [r for r in rows if r["status"] == "ok"]
            colour = COLOURS[target]
            ax.plot([r[sweep] for r in ok], [r["head_peak_bytes"] / MB for r in ok], "o-" if len(ok) > 1 else "s",
                    color=colour, label=target)
            if target not in ("xyz-fc", "param"):  # regressed values, no heatmap
                ax.plot([r[sweep] for r in rows], [r["heatmap_bytes"] / MB for r in rows], ":", color=colour,
                        alpha=0.7, lw=1.2)
            skipped = [r for r in rows if r["status"] != "ok"]
            ax.plot([r[sweep] for r in skipped], [cap_mb] * len(skipped), "^", color=colour, ms=8, mfc="none")
        xs = sorted({r[sweep] for r in series})
        y0 = min(r["head_peak_bytes"] for r in series if r["status"] == "ok" and r[sweep] == xs[0]) / MB / 2
        for k in ((1, 2, 3) if sweep == "D" else (1,)):
            ax.plot(xs, [y0 * (x / xs[0]) ** k for x in xs], "-", color="0.85", lw=3, zorder=0)
            y_end = min(y0 * (xs[-1] / xs[0]) ** k, cap_mb * 1.5)
            x_end = xs[0] * (y_end / y0) ** (1 / k)
            ax.annotate(f"slope {k}", (x_end, y_end), color="0.5", fontsize=8, xytext=(3, -8),
                        textcoords="offset points")
        ax.axhline(cap_mb, color="0.6", lw=0.8, ls="--")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_ylim(top=cap_mb * 2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("heatmap resolution D (x/y and z bins; input 4D px)" if sweep == "D" else "mesh vertices V")
        ax.set_ylabel(f"MB (batch {records[0]['batch']})")
        ax.set_title(f"output part: forward + losses + backward ({fixed})")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.text(0.5, 0.01, "solid: measured peak allocation; dotted: analytic heatmap size (float32); "
             f"triangles on the dashed line: skipped, estimated over the {report['max_gb']:g} GB cap; "
             "grey: slopes 1, 2, 3", ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-gb", type=float, help="skip configurations estimated above this (default 8; "
                        "2 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="3 targets, D <= 32, two V, output part only (1-2 minutes)")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per configuration")
    parser.add_argument("--no-train", action="store_true", help="measure the output part only")
    parser.add_argument("--no-param", action="store_true", help="leave out the 'param' target (loads Anny)")
    parser.add_argument("--plot", metavar="PATH", help="save the log-log figure here (e.g. docs/images/...)")
    parser.add_argument("--from-json", metavar="PATH", help="redraw --plot from a saved report, measure nothing")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_child(json.loads(args.child))))
        return
    if args.from_json:
        with open(args.from_json) as f:
            plot(json.load(f), args.plot or "heatmap_memory.png")
        return
    if args.max_gb is None:
        args.max_gb = 2.0 if args.quick else 8.0
    t0 = time.perf_counter()
    report = {"torch": torch.__version__, "threads": args.threads, "cpu_count": os.cpu_count(),
              "load_avg_start": os.getloadavg()[0], "max_gb": args.max_gb,
              "setup": {"backbone": "ResNet-18", "deconv_channels": 128, "cascade": "meshnet", "batch": args.batch,
                        "J": NUM_JOINTS, "D_sweep_V": V_FIXED, "V_sweep_D": D_FIXED,
                        "input_size": "4 D (three upsampling blocks, 4 px per x/y bin)",
                        "faces": "2 V random (synthetic)", "memory": "peak bytes allocated above the start, "
                        "torch.profiler allocation events; weights excluded (param_bytes)"}}
    report |= run_sweeps(args)
    report["load_avg_end"] = os.getloadavg()[0]
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=1))
    if args.plot:
        plot(report, args.plot)


if __name__ == "__main__":
    main()

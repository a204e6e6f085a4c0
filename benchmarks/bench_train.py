"""Training throughput (images/s) per preset on the CPU, one process vs two gloo DDP processes; prints JSON.

Synthetic in-memory batches (no data loading), so this measures the network's forward + losses + backward +
Adam step, as the engine runs them. Two processes split the same global batch (DDP, one thread each) and are
compared with one process using both threads.

    python benchmarks/bench_train.py --presets cpu-small paper-body --batch 8 --steps 6
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

import torch

from i2lmesh import get_preset
from i2lmesh.losses import LossTargets, i2l_losses
from i2lmesh.nets import I2LMeshNet

SIZES = {"paper-body": (29, 6890), "paper-hand": (21, 778), "cpu-small": (29, 6890), "cpu-small-hand": (21, 1609)}


def step_times(preset: str, batch: int, steps: int, distributed: bool) -> list[float]:
    """Seconds per optimizer step (after one warm-up step) for ``batch`` images in this process."""
    joints, verts = SIZES[preset]
    cfg = get_preset(preset, num_joints=joints, num_vertices=verts)
    torch.manual_seed(0)
    net = I2LMeshNet(cfg, torch.softmax(torch.randn(joints, verts), 1), torch.randint(0, verts, (2 * verts, 3)))
    model = torch.nn.parallel.DistributedDataParallel(net) if distributed else net
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    s, hm, d = cfg.input_size, cfg.heatmap_size, cfg.depth_bins
    images = torch.rand(batch, 3, s, s)
    scale = torch.tensor([hm, hm, d]) - 1
    targets = LossTargets(torch.rand(batch, joints, 3) * scale, torch.ones(batch, joints), torch.ones(batch),
                          torch.rand(batch, verts, 3) * scale, torch.ones(batch, verts))
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        out = model(images)
        loss = sum(i2l_losses(out.joints_hm, out.vertices_hm, out.mesh_joints_hm, net.faces, targets).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times[1:]


_CHILD = """
import json, os, sys, torch
sys.path.insert(0, {here!r})
torch.set_num_threads(1)
import torch.distributed as dist
dist.init_process_group("gloo")
from bench_train import step_times
t = step_times({preset!r}, {batch}, {steps}, distributed=True)
if dist.get_rank() == 0:
    print(json.dumps(t))
dist.destroy_process_group()
"""


def two_process_times(preset: str, global_batch: int, steps: int) -> list[float]:
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "child.py")
        with open(script, "w") as f:
            f.write(_CHILD.format(here=here, preset=preset, batch=global_batch // 2, steps=steps))
        out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                              "--master_port=29577", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cpu-small", "paper-body"])
    parser.add_argument("--batch", type=int, default=8, help="global batch (split over processes)")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(2)
    report = {"torch": torch.__version__, "batch": args.batch, "steps": args.steps,
              "load_avg_start": os.getloadavg()[0], "results": []}
    for preset in args.presets:
        one = statistics.median(step_times(preset, args.batch, args.steps, distributed=False))
        two = statistics.median(two_process_times(preset, args.batch, args.steps))
        report["results"].append({"preset": preset, "one_process_2_threads_images_per_s": round(args.batch / one, 2),
                                  "two_processes_1_thread_images_per_s": round(args.batch / two, 2)})
    report["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

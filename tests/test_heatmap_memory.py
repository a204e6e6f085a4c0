"""benchmarks/bench_heatmap_memory.py: its analytic heatmap sizes match the heads' real tensors, its allocator
measurement and slope fit are right on known cases, and the memory cap skips without running anything."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import bench_heatmap_memory as bench  # noqa: E402

from i2lmesh.nets.i2l import build_mesh_head  # noqa: E402

V = 40


class SoftmaxInputs(TorchFunctionMode):
    """Sizes of every tensor passed to a softmax: the heatmap logits, whatever the head calls them."""

    def __init__(self) -> None:
        super().__init__()
        self.numels: list[int] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.softmax, torch.Tensor.softmax, torch.nn.functional.softmax):
            self.numels.append(args[0].numel())
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("target", ["lixel", "lixel-early", "lixel-fc", "pixel-lixel", "2.5d", "voxel", "xyz-fc"])
def test_analytic_heatmap_size_matches_the_heads_tensors(target):
    torch.manual_seed(0)
    for d in (8, 16):
        cfg = bench.bench_config(target, d, V)
        head = build_mesh_head(cfg).train()
        f = cfg.input_size // 32
        feature = torch.rand(2, cfg.backbone_channels, f, f)
        with SoftmaxInputs() as mode:
            out = head(feature)
        assert out.coords.shape == (2, V, 3)
        if target == "2.5d":  # the depth map is regressed, not softmaxed: the conv predicts both maps
            measured = head.conv(head.upsample(feature)).numel()
            assert sum(mode.numels) == measured // 2
        elif target == "xyz-fc":
            measured = head.fc(feature.mean(dim=(2, 3))).numel()
        else:
            measured = sum(mode.numels)
        assert bench.heatmap_bytes(cfg, 2) == 4 * measured, (target, d)


def test_heatmap_sizes_grow_as_the_paper_says():
    sizes = {t: [bench.heatmap_values(bench.bench_config(t, d, V)) for d in (16, 32)]
             for t in ("lixel", "pixel-lixel", "voxel")}
    assert sizes["lixel"][1] == 2 * sizes["lixel"][0]
    assert sizes["voxel"][1] == 8 * sizes["voxel"][0]
    assert 3.8 < sizes["pixel-lixel"][1] / sizes["pixel-lixel"][0] < 4  # X^2 + D: D^2 plus a lixel


def test_loglog_slope_recovers_power_laws():
    xs = [8, 16, 32, 64, 128]
    for k in (1, 2, 3):
        assert bench.loglog_slope(xs, [5.0 * x ** k for x in xs]) == pytest.approx(k)
    # A fixed cost flattens the fit over all points, less between the two largest.
    ys = [1e6 + 100.0 * x ** 2 for x in xs]
    assert bench.loglog_slope(xs, ys) < bench.loglog_slope(xs[-2:], ys[-2:]) < 2
    assert bench.loglog_slope([8], [1.0]) is None


def test_allocator_peak_counts_live_tensors_only():
    keep = torch.zeros(2 ** 20)  # allocated before: not counted, and freeing it inside must not lower the peak

    def work() -> None:
        nonlocal keep
        a = torch.ones(2 ** 20)  # 4 MiB
        b = torch.ones(2 * 2 ** 20)  # + 8 MiB live
        del a, b
        keep = None
        c = torch.ones(2 ** 20)  # 4 MiB again, below the peak
        del c

    peak = bench.allocator_peak_bytes(work)
    assert 12 * 2 ** 20 <= peak < 12 * 2 ** 20 + 2 ** 16


def test_cap_skips_configurations_without_running_them(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a configuration over the cap was run")

    monkeypatch.setattr(bench, "run_child", refuse)
    args = argparse.Namespace(max_gb=1e-3, quick=True, batch=2, threads=1, timeout=1.0, no_train=False,
                              no_param=True)
    report = bench.run_sweeps(args)
    statuses = {r["status"] for r in report["records"]}
    assert statuses == {"skipped: over cap", "skipped: a smaller configuration of this series did not run"}
    first = {}
    for r in report["records"]:
        first.setdefault((r["sweep"], r["target"]), r["status"])
    assert set(first.values()) == {"skipped: over cap"}  # the smallest of each series is the one over the cap

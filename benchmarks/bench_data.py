"""Training-data throughput on the CPU: what a sample costs with and without the posed-mesh cache; prints JSON.

Per-sample CPU time (``time.process_time``, torch on one thread) of ``RecordDataset[i]`` for a body and a hand
folder, without and with augmentation, posing the body model per sample (``posed_cache_bytes=0``, the old path) and
from the meshes posed once at open (``data.targets.PosedMeshes``); the one-off cost of posing a folder in batches;
a split of the remaining per-sample cost (image read and decode, crop, targets); optionally the data alone through a
DataLoader (``--loader-batches``: wall and worker CPU seconds a batch) and the time of a training step through
``engine.train.train`` (``--steps``: DataLoader workers, ``--threads`` torch threads), each without and with the
cache. CPU times matter more than wall times on a busy machine: the load average is reported.

    python benchmarks/bench_data.py --body /work/lrn/body-train --hand /tmp/hand --samples 64 --loader-batches 12 \
        --steps 12
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time

import numpy as np
import torch

import i2lmesh.engine.datasets as datasets_mod
from i2lmesh.config import training_preset
from i2lmesh.data.augment import NO_AUGMENTATION
from i2lmesh.data.dataset import RecordDataset, collate
from i2lmesh.data.targets import PosedMeshes, build_sample, load_image
from i2lmesh.engine.checkpoint import seed_everything
from i2lmesh.engine.datasets import training_inputs
from i2lmesh.engine.train import TrainConfig, train

PRESETS = {"body": ("cpu-fast-body", "cpu-small"), "hand": ("cpu-fast", "cpu-small-hand")}


def _config(kind: str, data: str, out: str, **fields) -> TrainConfig:
    name, preset = PRESETS[kind]
    return TrainConfig.from_dict(training_preset(name, preset=preset, data=[data], out=out, device="cpu", **fields))


def _record_dataset(dataset) -> RecordDataset:
    return dataset if isinstance(dataset, RecordDataset) else dataset.groups[0][0]


def _cpu_ms(fn, count: int) -> float:
    """CPU milliseconds (this process, all threads) per call of ``fn(i)`` for i in 1..count, after a warm-up."""
    fn(0)
    t0 = time.process_time()
    for i in range(1, count + 1):
        fn(i)
    return (time.process_time() - t0) / count * 1e3


def per_sample(kind: str, data: str, samples: int, out: str) -> dict:
    """Per-sample CPU ms for one folder: open cost, per sample without/with the cache and augmentation, and a split
    of the cached sample's cost."""
    cfg = _config(kind, data, out)
    report: dict = {"data": data}
    for cache in (False, True):
        datasets_mod.POSED_CACHE_BYTES = (512 * 2 ** 20) if cache else 0
        seed_everything(0)
        t0, w0 = time.process_time(), time.perf_counter()
        ds = _record_dataset(training_inputs(cfg).train_set)
        tag = "cached" if cache else "per_sample_posing"
        report[f"open_cpu_s_{tag}"] = round(time.process_time() - t0, 3)
        report[f"open_wall_s_{tag}"] = round(time.perf_counter() - w0, 3)
        for augment in (False, True):
            ds.train = augment
            report[f"ms_per_sample_{tag}_{'augmented' if augment else 'plain'}"] = round(
                _cpu_ms(ds.__getitem__, samples), 2)
    report["records"] = len(ds)
    report["posed_records"] = len(ds.posed) if ds.posed is not None else 0
    report["posed_mb"] = round(ds.posed.nbytes / 2 ** 20, 1) if ds.posed is not None else 0
    # Where a cached, unaugmented sample's time goes.
    ds.train = False
    images = {}
    report["split_ms"] = {
        "load_image (imread + BGR->RGB float32)": round(_cpu_ms(
            lambda i: images.__setitem__(i, load_image(ds.image_path(ds.records[i]))), samples), 2)}
    report["split_ms"]["build_sample (crop + targets)"] = round(_cpu_ms(
        lambda i: build_sample(ds.records[i], images[i], NO_AUGMENTATION, ds.spec, ds.bank, ds.posed.get(i)),
        samples), 2)
    record = ds.records[0]
    if record.body_params:  # the body model alone: one record at a time, as the old path does
        report["split_ms"]["body model, one record (old path)"] = round(_cpu_ms(
            lambda i: ds.bank.evaluate(ds.records[i].body_model, ds.records[i].body_gender,
                                       ds.records[i].body_params), min(samples, 32)), 2)
    return report


def precompute(kind: str, data: str, count: int, batch_sizes: list[int], out: str) -> dict:
    """The one-off cost of posing ``count`` records in batches (CPU and wall seconds, ms per record)."""
    cfg = _config(kind, data, out)
    datasets_mod.POSED_CACHE_BYTES = 0
    ds = _record_dataset(training_inputs(cfg).train_set)
    records = ds.records[:count]
    report = {"records": len(records), "torch_threads": torch.get_num_threads(), "by_batch": []}
    PosedMeshes.compute(records[:8], ds.bank, 2 ** 40, batch_size=8)  # warm-up
    for batch in batch_sizes:
        t0, w0 = time.process_time(), time.perf_counter()
        posed = PosedMeshes.compute(records, ds.bank, 2 ** 40, batch_size=batch)
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        report["by_batch"].append({"batch": batch, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                                   "cpu_ms_per_record": round(cpu / len(records) * 1e3, 2),
                                   "mb": round(posed.nbytes / 2 ** 20, 1)})
        del posed
    return report


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def loader_throughput(kind: str, data: str, batches: int, workers: int, batch_size: int, out: str) -> dict:
    """The data alone through a DataLoader (``workers`` forked workers, shuffled): wall seconds and the workers' CPU
    seconds per batch (their rusage, counted once the loader has joined them), without and with the cache."""
    report = {}
    cfg = _config(kind, data, out)
    for cache in (False, True):
        datasets_mod.POSED_CACHE_BYTES = (512 * 2 ** 20) if cache else 0
        ds = training_inputs(cfg).train_set
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                             collate_fn=collate, generator=torch.Generator().manual_seed(0))
        cpu0, wall0 = _children_cpu_s(), time.perf_counter()
        it = iter(loader)
        for _ in range(batches):
            next(it)
        wall = time.perf_counter() - wall0
        del it  # shuts the workers down and joins them: their CPU time is in RUSAGE_CHILDREN from here
        cpu = _children_cpu_s() - cpu0
        report["cached" if cache else "per_sample_posing"] = {
            "wall_s_per_batch": round(wall / batches, 3), "worker_cpu_s_per_batch": round(cpu / batches, 3)}
    report.update(batches=batches, batch_size=batch_size, workers=workers)
    return report


def step_times(kind: str, data: str, steps: int, workers: int, out: str) -> dict:
    """Wall and CPU seconds per training step of ``engine.train.train`` (steps 3..N), without and with the cache.

    Main-process CPU (the network's threads) per step is timed between steps; the workers' CPU is known only once
    the loader has joined them, so it is the run's total over its steps (it includes the head prior's pass over
    ``prior_samples`` samples and the prefetched batches)."""
    report = {}
    for cache in (False, True):
        datasets_mod.POSED_CACHE_BYTES = (512 * 2 ** 20) if cache else 0
        run_out = os.path.join(out, f"run_{int(cache)}")
        cfg = _config(kind, data, run_out, max_steps=steps, num_workers=workers, val_every_steps=0)
        seed_everything(cfg.seed)
        t_open = time.perf_counter()
        inputs = training_inputs(cfg)
        t_open = time.perf_counter() - t_open
        stamps: list[tuple[float, float]] = []
        children0 = _children_cpu_s()
        train(cfg, inputs.train_set, None, net=inputs.net, body_model=inputs.body_model,
              on_step=lambda _p: stamps.append((time.perf_counter(), time.process_time())))
        workers_cpu = _children_cpu_s() - children0
        wall, cpu = (np.diff([s[k] for s in stamps])[2:] for k in (0, 1))
        report["cached" if cache else "per_sample_posing"] = {
            "open_wall_s": round(t_open, 2), "median_step_wall_s": round(float(statistics.median(wall)), 3),
            "mean_step_wall_s": round(float(np.mean(wall)), 3),
            "median_step_main_cpu_s": round(float(statistics.median(cpu)), 3),
            "workers_cpu_s_per_step": round(workers_cpu / steps, 3), "steps_timed": len(wall)}
        shutil.rmtree(run_out, ignore_errors=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--body", default="/work/lrn/body-train", help="a body folder (i2lmesh synth)")
    parser.add_argument("--hand", default=None, help="a hand folder (i2lmesh synth --kind hand)")
    parser.add_argument("--samples", type=int, default=64, help="samples timed per setting (0: skip)")
    parser.add_argument("--precompute", type=int, default=2000, help="records posed for the one-off cost (0: skip)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64])
    parser.add_argument("--loader-batches", type=int, default=0, help="DataLoader batches to time (0: skip)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch of the DataLoader timing")
    parser.add_argument("--steps", type=int, default=0, help="training steps to time (0: skip)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training steps")
    args = parser.parse_args()
    report: dict = {"torch": torch.__version__, "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}
    out = tempfile.mkdtemp(prefix="bench_data_")
    try:
        torch.set_num_threads(1)
        if args.samples:
            report["body"] = per_sample("body", args.body, args.samples, out)
            if args.hand:
                report["hand"] = per_sample("hand", args.hand, args.samples, out)
        if args.precompute:
            report["precompute"] = {"body": precompute("body", args.body, args.precompute, args.batch_sizes, out)}
            if args.hand:
                report["precompute"]["hand"] = precompute("hand", args.hand, args.precompute, args.batch_sizes, out)
        if args.loader_batches:
            report["loader"] = loader_throughput("body", args.body, args.loader_batches, args.workers, args.batch_size,
                                                 out)
        if args.steps:
            torch.set_num_threads(args.threads)
            report["training_step"] = {"threads": args.threads, "workers": args.workers,
                                       **step_times("body", args.body, args.steps, args.workers, out)}
    finally:
        shutil.rmtree(out, ignore_errors=True)
    report["load_avg_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

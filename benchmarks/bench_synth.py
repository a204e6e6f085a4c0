"""Synthetic data throughput: images/s of ``i2lmesh synth`` with 1 and 2 workers; prints one JSON object.

    python benchmarks/bench_synth.py [--num 640] [--size 256] [--kind body] [--workers 1 2] [--repeats 2]

Each run is the whole ``generate`` call into a fresh temporary folder: worker start-up (fork + body-model load),
sampling, posing, rendering, backgrounds, occluders, JPEG encoding, writing the files and the annotation JSON. Each
worker count runs ``--repeats`` times, alternating; the best and all rates are reported (on a shared machine the
best run is the one least slowed by others). A second, in-process pass times the stages of one sample (median ms),
including the numba rendering as the generator calls it (shading + rasterising a reduced 6,890-vertex body or a
1,609-vertex hand). The machine's load average is printed too: other processes on a shared machine slow every number
down.
"""
import argparse
import importlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections import defaultdict

from i2lmesh.data.synth import SynthConfig, SynthRenderer, generate

generate_module = importlib.import_module("i2lmesh.data.synth.generate")  # the module, not the function


def stage_times_ms(config: SynthConfig, chunks: int) -> dict:
    """Median ms per sample of each stage, by wrapping the generator's module-level helpers in one process."""
    renderer = SynthRenderer(config)
    renderer.render_chunk(0)  # warm-up: numba cache load, first forward
    times = defaultdict(list)
    wrapped = {"render_mesh": "render_ms", "sample_occluders": "occluders_ms", "sample_vertex_colors": "colours_ms",
               "place_in_view": "placement_ms"}
    originals = {name: getattr(generate_module, name) for name in wrapped}

    def timed(name):
        def call(*args, **kwargs):
            start = time.perf_counter()
            out = originals[name](*args, **kwargs)
            times[wrapped[name]].append((time.perf_counter() - start) * 1000.0)
            return out
        return call

    background_sample = renderer.backgrounds.sample

    def timed_background(*args, **kwargs):
        start = time.perf_counter()
        out = background_sample(*args, **kwargs)
        times["background_ms"].append((time.perf_counter() - start) * 1000.0)
        return out

    try:
        for name in wrapped:
            setattr(generate_module, name, timed(name))
        renderer.backgrounds.sample = timed_background
        for chunk in range(1, chunks + 1):
            start = time.perf_counter()
            renderer.render_chunk(chunk)
            times["sample_total_ms"].append((time.perf_counter() - start) * 1000.0 / generate_module.CHUNK_SIZE)
    finally:
        for name, fn in originals.items():
            setattr(generate_module, name, fn)
    return {key: round(statistics.median(values), 2) for key, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=640, help="images per run")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--kind", choices=("body", "hand"), default="body")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--stage-chunks", type=int, default=4, help="chunks of 16 for the in-process stage timing")
    args = parser.parse_args()

    config = SynthConfig(kind=args.kind, num=args.num, seed=0, size=args.size)
    report = {"kind": args.kind, "image_size": [args.size, args.size], "num": args.num,
              "cpu_count": os.cpu_count(), "python": platform.python_version(),
              "load_average_before": [round(x, 2) for x in os.getloadavg()], "runs": {}}
    rates = defaultdict(list)
    for _ in range(args.repeats):
        for workers in args.workers:
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                generate(config, folder, workers=workers, progress=False)
                rates[workers].append(round(args.num / (time.perf_counter() - start), 1))
    for workers, values in rates.items():
        report["runs"][f"workers_{workers}"] = {"images_per_s_best": max(values), "images_per_s_all": values}
    report["stages_in_process"] = stage_times_ms(config, args.stage_chunks)
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

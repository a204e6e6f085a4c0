"""``i2lmesh quickstart``: the end-to-end path on the embedded default (Anny), with nothing but the package.

Current scope (core issue): sample a plausible posed Anny body, render it in front of a camera, run the
network on the picture and write what came out (picture, JSON with shapes, timings and per-axis spreads).
Training and evaluation join this command when the engine lands.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

HELP = "Run the whole path on a synthetic Anny body: sample, render, run the network, write results."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("i2lmesh-quickstart"), help="output folder")
    parser.add_argument("--preset", default="cpu-small", help="network preset (default: cpu-small)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from .. import build_network, get_preset
    from ..bodymodels import create_body_model
    from ..bodymodels.anny import upright_root_rotvec
    from ..render import render_mesh

    args.out.mkdir(parents=True, exist_ok=True)
    timings = {}
    t0 = time.perf_counter()
    body = create_body_model("anny", "body", mesh="reduced")
    timings["body_model_s"] = time.perf_counter() - t0

    generator = torch.Generator().manual_seed(args.seed)
    params = body.sample_params(1, generator)
    params["pose"][:, 0] = upright_root_rotvec(torch.tensor([0.3]))
    params["trans"] = torch.tensor([[0.0, 0.1, 4.0]])
    with torch.no_grad():
        sample = body(**params)
    size = 256
    focal = size / 2 / math.tan(math.radians(30) / 2)  # a 30 degree field of view
    K = np.array([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2], [0, 0, 1]])
    t0 = time.perf_counter()
    picture = render_mesh(sample.vertices_m[0].numpy(), body.faces.numpy(), K, (size, size),
                          vertex_colors=(0.8, 0.65, 0.55))
    timings["render_s"] = time.perf_counter() - t0
    image = picture.color * picture.mask[..., None] + 0.25 * (~picture.mask[..., None])
    Image.fromarray((image * 255).astype(np.uint8)).save(args.out / "sample.png")

    config = get_preset(args.preset)
    net = build_network(config, body).to(args.device).eval()
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    x = torch.nn.functional.interpolate(x, size=(config.input_size, config.input_size), mode="bilinear",
                                        align_corners=False).to(args.device)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = net(x)
    timings["network_s"] = time.perf_counter() - t0
    summary = {
        "note": "untrained network (random heads): shapes and plumbing, not accuracy; training lands with the engine",
        "body_model": body.topology_info() | {"num_faces": int(body.faces.shape[0])},
        "preset": args.preset,
        "joints_hm_shape": list(out.joints_hm.shape),
        "vertices_hm_shape": list(out.vertices_hm.shape),
        "mean_vertex_spread_bins": [round(v, 3) for v in out.vertices_spread.mean((0, 1)).tolist()],
        "ground_truth_joints_camera_m": sample.joints_m[0].tolist(),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"quickstart: rendered a posed Anny body ({body.num_vertices} vertices) to {args.out / 'sample.png'}, "
          f"ran {args.preset} -> joints {tuple(out.joints_hm.shape)}, vertices {tuple(out.vertices_hm.shape)}; "
          f"summary in {args.out / 'summary.json'}")
    return 0

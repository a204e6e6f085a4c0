"""``i2lmesh convert-official``: the authors' released ``snapshot_N.pth.tar`` -> an i2lmesh checkpoint."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Convert an original I2L-MeshNet snapshot (snapshot_N.pth.tar) into an i2lmesh checkpoint."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("snapshot", type=Path, help="the authors' snapshot_N.pth.tar")
    parser.add_argument("--kind", choices=("body", "hand"), required=True,
                        help="body (SMPL, 29 joints, 6890 vertices) or hand (MANO, 21 joints, 778 vertices)")
    parser.add_argument("--out", type=Path, required=True, help="the i2lmesh checkpoint to write")
    parser.add_argument("--input-size", type=int, default=256,
                        help="crop size fed to the network in pixels (the authors trained at 256)")
    parser.add_argument("--trust-file", action="store_true",
                        help="allow pickled Python objects beyond tensors (only for files from a trusted source)")


def run(args: argparse.Namespace) -> int:
    from ..export.official import convert_official_file

    net = convert_official_file(args.snapshot, args.out, kind=args.kind, input_size=args.input_size,
                                trust_file=args.trust_file)
    cfg = net.config
    epoch = net.official_source["epoch"]
    print(f"convert-official: {args.snapshot} (epoch {epoch}) -> {args.out}: {cfg.kind}, ResNet-{cfg.backbone_depth},"
          f" {cfg.num_joints} joints, {cfg.num_vertices} vertices, D={cfg.depth_bins}, "
          f"{'with' if cfg.param_regressor else 'no'} parameter regressor; input RGB in [0, 1] without mean/std")
    return 0

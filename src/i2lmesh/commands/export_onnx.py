"""``i2lmesh export-onnx``: an i2lmesh checkpoint -> an ONNX file (BatchNorm folded, dynamic batch)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "Export a checkpoint's network to ONNX (needs pip install i2lmesh[onnx])."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="i2lmesh checkpoint (.pt)")
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 17 with the TorchScript "
                        "exporter, the dynamo exporter's own otherwise)")
    parser.add_argument("--exporter", choices=("auto", "torchscript", "dynamo"), default="auto",
                        help="torch.onnx exporter (auto: TorchScript, then dynamo if it fails)")
    parser.add_argument("--fixed-batch", type=int, default=None, metavar="B",
                        help="fix the batch size to B instead of a dynamic batch axis")
    parser.add_argument("--no-fold-bn", action="store_true", help="keep BatchNorm layers as they are")


def run(args: argparse.Namespace) -> int:
    from ..export.onnx import OnnxExportError, export_onnx
    from ..nets.factory import load_network

    net, config = load_network(args.checkpoint)
    start = time.perf_counter()
    try:
        path = export_onnx(net, args.out, batch_dynamic=args.fixed_batch is None, optimise=not args.no_fold_bn,
                           opset=args.opset, exporter=args.exporter, batch_size=args.fixed_batch or 1)
    except OnnxExportError as exc:
        raise ValueError(str(exc)) from None
    size_mb = path.stat().st_size / 2**20
    print(f"export-onnx: {args.checkpoint} -> {path} ({size_mb:.1f} MB, {time.perf_counter() - start:.1f} s); "
          f"input 'images' (B, 3, {config.input_size}, {config.input_size}) RGB in [0, 1]")
    return 0

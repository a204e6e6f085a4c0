"""``i2lmesh convert-dataset``: any supported dataset -> our on-disk format (docs/datasets.md)."""
from __future__ import annotations

import argparse
import logging

from ..data.formats import LOADERS, load_records
from ..data.formats.i2lmesh import write_dataset

HELP = "convert a dataset (h36m, coco, muco, pw3d, freihand, surreal, i2lmesh) to the i2lmesh format"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=sorted(LOADERS), help="the source dataset's format")
    parser.add_argument("--root", required=True, help="the source dataset's folder (layout: docs/datasets.md)")
    parser.add_argument("--split", default="train", choices=("train", "test"), help="which split (default train)")
    parser.add_argument("--out", required=True, help="output folder (annotations.json and side files)")
    parser.add_argument("--copy-images", action="store_true",
                        help="copy the images into OUT/images (default: reference them by absolute path)")
    parser.add_argument("--body-model-path", default=None,
                        help="SMPL/MANO model files; Human3.6M needs them to move its SMPL fits to the camera")


def run(args: argparse.Namespace) -> int:
    records = load_records(args.format, args.root, args.split, model_path=args.body_model_path)
    if not records:
        raise ValueError(f"no usable samples in {args.root} ({args.format}, split {args.split})")
    path = write_dataset(records, args.out, copy_images=args.copy_images,
                         info={"source_format": args.format, "source_root": str(args.root), "split": args.split})
    log.info("wrote %d samples to %s", len(records), path)
    return 0

"""``i2lmesh convert-dataset``: any supported dataset -> our on-disk format (docs/datasets.md)."""
from __future__ import annotations

import argparse
import logging

from ..cli import DATASET_FORMATS

HELP = "convert a dataset (h36m, coco, muco, pw3d, freihand, surreal, i2lmesh) to the i2lmesh format"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=DATASET_FORMATS, help="the source dataset's format")
    parser.add_argument("--root", required=True, help="the source dataset's folder (layout: docs/datasets.md)")
    parser.add_argument("--split", default="train", choices=("train", "test"), help="which split (default train)")
    parser.add_argument("--out", required=True, help="output folder (annotations.json and side files)")
    parser.add_argument("--copy-images", action="store_true",
                        help="copy the images into OUT/images (default: reference them by absolute path)")
    parser.add_argument("--body-model-path", default=None,
                        help="SMPL/MANO model files; Human3.6M needs them to move its SMPL fits to the camera, and "
                             "Human3.6M, MuCo and MSCOCO need them to reject bad fits as the reference does")
    parser.add_argument("--fit-regressor", default=None,
                        help="joint regressor .npy for the fit check (default: the reference's file in the dataset "
                             "folder: J_regressor_h36m_correct.npy for h36m and muco (../Human36M/), "
                             "J_regressor_coco_hip_smpl.npy for coco)")
    parser.add_argument("--no-fit-check", action="store_true",
                        help="keep every body-model fit (the reference rejects fits with a large error)")
    parser.add_argument("--coco-pelvis-bug", action="store_true",
                        help="coco: measure the fit error exactly as the reference (its Pelvis is added to the 3D "
                             "joints before projecting, which rejects more fits); default: the intended 2D pelvis")


def run(args: argparse.Namespace) -> int:
    from ..data.formats import load_records
    from ..data.formats.i2lmesh import write_dataset

    records = load_records(args.format, args.root, args.split, model_path=args.body_model_path,
                           fit_regressor=getattr(args, "fit_regressor", None),
                           check_fits=not getattr(args, "no_fit_check", False),
                           pelvis_bug=getattr(args, "coco_pelvis_bug", False))
    if not records:
        raise ValueError(f"no usable samples in {args.root} ({args.format}, split {args.split})")
    info = {"source_format": args.format, "source_root": str(args.root), "split": args.split}
    if args.format in ("h36m", "muco", "coco"):  # the datasets whose fits the reference checks
        is_checked = ["fit_error_mm" in r.extra or "fit_error_hm" in r.extra for r in records]
        checked = [r for r, c in zip(records, is_checked) if c]
        unchecked = sum(1 for r, c in zip(records, is_checked) if r.fit_valid and not c)
        if checked or unchecked:
            info["fit_check"] = {"checked": len(checked), "rejected": sum(not r.fit_valid for r in checked)}
            if unchecked:
                info["fit_check"]["unchecked"] = unchecked
    path = write_dataset(records, args.out, copy_images=args.copy_images, info=info)
    log.info("wrote %d samples to %s", len(records), path)
    return 0

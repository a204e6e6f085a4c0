"""``i2lmesh pseudo-label``: a dataset with 2D / 3D keypoints, or a folder of photos and videos, -> a dataset in our
format with fitted Anny meshes, their fit errors and ``fit_valid`` by the reference's rules (docs/pseudo_label.md).

    i2lmesh pseudo-label --format coco --root data/MSCOCO --split train --out coco-anny/
    i2lmesh pseudo-label --images ../shared/photos --out photos-anny/
    torchrun --nproc_per_node=2 -m i2lmesh.cli pseudo-label --format h36m --root data/Human36M --out h36m-anny/
"""
from __future__ import annotations

import argparse
import json
import logging

from ..cli import DATASET_FORMATS

HELP = "fit Anny to a dataset's keypoints (or detected ones on photos/videos): a pseudo-labelled dataset"

log = logging.getLogger(__name__)

FAST_STAGES = ((10.0, 10.0, 10, 10.0), (1.0, 1.0, 5, 1.0))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("source (a dataset, or photos and videos)")
    src.add_argument("--format", choices=DATASET_FORMATS, help="the source dataset's format (docs/datasets.md)")
    src.add_argument("--root", help="the source dataset's folder")
    src.add_argument("--split", default="train", help="split of the source dataset (default train)")
    src.add_argument("--images", help="a photo, a video, or a folder of them: people (hands) found by the detector")
    src.add_argument("--kind", default="body", choices=("body", "hand"), help="with --images: bodies or hands")
    src.add_argument("--detector", default="auto", choices=("auto", "mediapipe"),
                     help="with --images: the keypoint detector (mediapipe's BlazePose / hand models)")
    src.add_argument("--video-stride", type=int, default=10, help="with --images: every N-th video frame (10)")
    src.add_argument("--max-frames", type=int, default=None, help="with --images: at most this many frames a video")
    src.add_argument("--min-score", type=float, default=0.5, help="detected keypoints below this score are unused")
    src.add_argument("--body-model-path", default=None,
                     help="SMPL/MANO files: with --from-fits, to evaluate the source's SMPL/MANO fits")
    src.add_argument("--from-fits", action="store_true",
                     help="convert the source's SMPL/MANO fits (their joints) to Anny instead of fitting its annotated "
                          "keypoints (needs --body-model-path)")
    fit = parser.add_argument_group("fitting")
    fit.add_argument("--out", required=True, help="output dataset folder (resumable: rerun to continue)")
    fit.add_argument("--2d-only", dest="two_d_only", action="store_true",
                     help="fit 2D keypoints only, even where the source has 3D joints")
    fit.add_argument("--keypoint-set", default=None,
                     help="the keypoint set to fit (default: from the dataset's joints: coco17, h36m17, smpl29, "
                          "mano21)")
    fit.add_argument("--max-error-mm", type=float, default=None,
                     help="reject fits of 3D data above this error (default 25 mm bodies, 3.75 mm hands)")
    fit.add_argument("--max-error-hm", type=float, default=3.0,
                     help="reject fits of 2D data above this error in 64x64 heatmap bins of the crop (default 3)")
    fit.add_argument("--min-keypoints", type=int, default=6, help="people with fewer confident keypoints are skipped")
    fit.add_argument("--batch-size", type=int, default=32, help="people per fitting batch (32)")
    fit.add_argument("--independent", action="store_true",
                     help="fit each person as its own problem (slower, more accurate from 2D; default: one problem "
                          "per batch, FitConfig(joint=True))")
    fit.add_argument("--fast", action="store_true", help="fewer iterations (10 + 5 instead of 20 + 10)")
    fit.add_argument("--save-vertices", action="store_true",
                     help="also store each mesh (vertices_6890.npy; by default the Anny parameters only)")
    run_group = parser.add_argument_group("running")
    run_group.add_argument("--chunk-size", type=int, default=256, help="units (records or images) per chunk (256)")
    run_group.add_argument("--shard", type=int, default=None, help="this process's shard (default: $RANK or 0)")
    run_group.add_argument("--num-shards", type=int, default=None,
                           help="number of shards (default: $WORLD_SIZE or 1)")
    run_group.add_argument("--overwrite", action="store_true", help="start over in an --out of another run")
    run_group.add_argument("--threads", type=int, default=1, help="torch threads per process (1 is fastest)")
    run_group.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..cli import UserError
    from ..pseudo_label import LabelOptions, Source, pseudo_label

    if (args.images is None) == (args.format is None):
        raise UserError("give either --format and --root (a dataset) or --images (photos and videos)")
    if args.format is not None and args.root is None:
        raise UserError("--format needs --root (the dataset's folder)")
    for name in ("video_stride", "batch_size", "chunk_size"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 1")
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames {args.max_frames}: must be >= 1")
    if not 0.0 <= args.min_score <= 1.0:
        raise UserError(f"--min-score {args.min_score}: must be in [0, 1]")
    for name in ("max_error_mm", "max_error_hm"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise UserError(f"--{name.replace('_', '-')} {value}: must be > 0")
    if args.from_fits and args.body_model_path is None:
        raise UserError("--from-fits needs --body-model-path (the SMPL/MANO files of the source's fits)")
    if args.threads < 1:
        raise UserError(f"--threads {args.threads}: must be >= 1")
    torch.set_num_threads(args.threads)
    loader_options = (("check_fits", False), ("model_path", args.body_model_path)) if args.format else ()
    source = Source(format=args.format, root=args.root, split=args.split, images=args.images, kind=args.kind,
                    detector=args.detector, video_stride=args.video_stride, max_frames=args.max_frames,
                    min_score=args.min_score, loader_options=loader_options)
    options = LabelOptions(use_3d=not args.two_d_only, keypoint_set=args.keypoint_set,
                           threshold_mm=args.max_error_mm, threshold_hm=args.max_error_hm,
                           min_keypoints=args.min_keypoints, joint=not args.independent, batch_size=args.batch_size,
                           stages=_fast_stages() if args.fast else None, save_vertices=args.save_vertices,
                           from_fits=args.from_fits)
    if args.keypoint_set is not None:
        from ..fitting import get_keypoint_set
        try:
            get_keypoint_set(args.keypoint_set)
        except KeyError as exc:
            raise UserError(f"--keypoint-set: {exc.args[0]}") from None
    fit_bank = None
    if args.from_fits:
        from ..data.targets import BodyModelBank
        fit_bank = BodyModelBank(model_path=args.body_model_path)
    try:
        result = pseudo_label(source, args.out, options, chunk_size=args.chunk_size, shard=args.shard,
                              num_shards=args.num_shards, overwrite=args.overwrite, progress=not args.no_progress,
                              fit_bank=fit_bank)
    except ImportError as exc:  # e.g. the detector's optional package
        raise UserError(str(exc)) from None
    except RuntimeError as exc:
        from ..inference.detect import DetectorUnavailable
        if isinstance(exc, DetectorUnavailable):
            raise UserError(str(exc)) from None
        raise
    log.info("pseudo-label: %d chunks done now, %d were already done, of %d", result.chunks_done,
             result.chunks_skipped, result.num_chunks)
    if result.summary is not None:
        log.info("pseudo-label summary (%s/summary.json):\n%s", args.out, json.dumps(result.summary, indent=1))
    return 0


def _fast_stages():
    return FAST_STAGES


__all__ = ["HELP", "add_arguments", "run", "FAST_STAGES"]

"""``i2lmesh synth``: write a synthetic dataset (random posed Anny bodies or right hands with exact ground truth)
in our on-disk format. See docs/synthetic.md."""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

HELP = "Generate a synthetic dataset (Anny bodies or hands rendered over random backgrounds) in our format."

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder (images/ + annotations.json)")
    parser.add_argument("--kind", choices=("body", "hand"), default="body", help="body (SMPL_29 joints) or right "
                        "hand (MANO_21 joints)")
    parser.add_argument("--num", type=int, required=True, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (the output does not depend "
                        "on it)")
    parser.add_argument("--backgrounds", type=Path, default=None, help="folder of background images (default: "
                        "procedural textures and noise)")
    parser.add_argument("--mesh", choices=("reduced", "full"), default="reduced", help="body mesh (default "
                        "reduced, 6,890 vertices)")
    parser.add_argument("--occluders", type=float, default=None, help="share of samples with occluders (default "
                        "0.25 body, 0.2 hand)")
    parser.add_argument("--save-vertices", action="store_true", help="also store camera-space vertices "
                        "(vertices_<V>.npy)")
    parser.add_argument("--preview", action="store_true", help="also write OUT/preview.png: the first 16 samples "
                        "with their joints drawn")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..data.synth import SynthConfig, generate

    if args.workers < 1:
        raise ValueError(f"--workers should be >= 1, got {args.workers}")
    if args.backgrounds is not None and not args.backgrounds.is_dir():
        raise FileNotFoundError(f"--backgrounds {args.backgrounds} is not a folder")
    config = SynthConfig(kind=args.kind, num=args.num, seed=args.seed, size=args.size,
                         backgrounds=None if args.backgrounds is None else str(args.backgrounds), mesh=args.mesh,
                         occluder_prob=args.occluders, save_vertices=args.save_vertices)
    start = time.perf_counter()
    path = generate(config, args.out, workers=args.workers, progress=not args.no_progress)
    seconds = time.perf_counter() - start
    log.info("wrote %d %s samples to %s in %.1f s (%.1f images/s)", args.num, args.kind, path, seconds,
             args.num / max(seconds, 1e-9))
    if args.preview and args.num > 0:
        from ..data.formats.i2lmesh import read_dataset
        from ..data.synth.preview import contact_sheet

        log.info("preview: %s", contact_sheet(read_dataset(args.out)[:16], args.out / "preview.png"))
    return 0

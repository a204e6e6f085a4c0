"""``i2lmesh demo``: meshes for images, folders and videos, with overlays, OBJ/GLB meshes and JSON. See
docs/inference.md.

Exit codes: 0 every input done (including inputs where nobody was found: their JSON says so); 1 at least one input
failed (each failure is one line on stderr, the other inputs still complete); 2 a usage error that stops the whole
run (checkpoint missing or of the wrong kind, no inputs, a bad option).
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

HELP = ("Meshes for images, folders or videos (a checkpoint, or body-model fitting to detected keypoints with no "
        "checkpoint): overlays, OBJ/GLB meshes and JSON (joints, camera, box).")

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="images, folders of images/videos, "
                        "or videos (also after the options)")
    parser.set_defaults(_intermixed="inputs")
    parser.add_argument("--checkpoint", type=Path, default=None, help="i2lmesh checkpoint (.pt), or an .onnx "
                        "file with --backend onnx (methods network and network+fit)")
    parser.add_argument("--method", choices=("network", "fit", "network+fit"), default=None, help="network: the "
                        "checkpoint's mesh (the paper); fit: the Anny body model fitted to detected keypoints, no "
                        "checkpoint needed; network+fit: the network's joints and the keypoints fitted together "
                        "(default: network with --checkpoint, else fit)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--bbox", action="append", default=None, metavar="x,y,w,h", help="a box in pixels of the "
                        "original image (repeat for several people); skips detection; used for every input")
    parser.add_argument("--boxes", type=Path, default=None, metavar="JSON", help="boxes from a JSON file: a list of "
                        "[x, y, w, h] for every input, or {\"file name or stem\": [[x, y, w, h], ...]}")
    parser.add_argument("--focal", type=float, default=None, metavar="F", help="focal length in pixels of the "
                        "original image (default: 1500, the paper's, as for every unknown camera)")
    parser.add_argument("--root-depth", type=float, default=None, metavar="M", help="distance of the root joint "
                        "from the camera in metres (default: estimated from the box size)")
    parser.add_argument("--kind", choices=("body", "hand"), default=None, help="body or hand: with a checkpoint, "
                        "checked against it (default: the checkpoint's); with --method fit, what to fit (default "
                        "body)")
    parser.add_argument("--detector", choices=("auto", "hog", "mediapipe"), default="auto", help="built-in "
                        "detector (auto: mediapipe if installed, else HOG for bodies)")
    parser.add_argument("--smooth", action="store_true", help="videos: One Euro temporal smoothing of each "
                        "followed person's mesh")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch", help="network runtime")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--batch-size", type=int, default=8, help="crops per network call")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the network (default: one per "
                        "core)")
    parser.add_argument("--max-frames", type=int, default=None, help="videos: stop after this many frames")
    parser.add_argument("--ply", action="store_true", help="also write STEM.ply (with per-vertex uncertainty)")
    parser.add_argument("--npz", action="store_true", help="also write STEM.npz (all arrays)")
    parser.add_argument("--render-backend", choices=("numba", "gl", "auto"), default="numba",
                        help="rasteriser for overlays (default numba: no GL needed, ~3 ms per frame)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (bars are drawn only when stderr is a terminal)")


def _save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    from ..export.atomic import atomic_write

    with atomic_write(path) as tmp, open(tmp, "wb") as fh:  # never a truncated PNG under the final name
        Image.fromarray(rgb).save(fh, format="PNG")


# ----------------------------------------------------------------------------------------------------------------
# Inputs


def collect_inputs(paths: list[Path], out: Path | None = None) -> tuple[list[Path], int]:
    """Files to process (folders expanded to their image and video files, sorted), and the number of other files
    skipped in folders. Files of a folder that is also the output folder ``out`` whose names are this command's
    outputs (``*_overlay.png``, ``*_overlay.mp4``) are skipped: a second run must not take them as photos."""
    from ..inference.predictor import IMAGE_SUFFIXES
    from ..inference.video import VIDEO_SUFFIXES

    files, skipped = [], 0
    for path in paths:
        try:
            children = sorted(path.iterdir()) if path.is_dir() else None
        except OSError:  # a name too long, a loop, no permission: its one-line error comes when it is processed
            children = None
        if children is None:
            files.append(path)  # missing or odd files get their one-line error when processed
            continue
        is_out = out is not None and _same_folder(path, out)  # once per folder, not per file
        for child in children:
            try:
                regular = child.is_file()
            except OSError:
                regular = False
            if regular and is_out and child.stem.endswith("_overlay"):
                skipped += 1
            elif regular and child.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
                files.append(child)
            elif regular:
                skipped += 1
    return files, skipped


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _unused_box_keys(boxes_json, files: list[Path]) -> list[str]:
    """Keys of a --boxes {name: boxes} file that match no input (a typo would silently run the detector)."""
    if not isinstance(boxes_json, dict):
        return []
    names = {key for f in files for key in (f.name, f.stem, str(f))}
    return [key for key in boxes_json if key not in names]


def _boxes_for(path: Path, args, boxes_json) -> list[np.ndarray] | None:
    """The user's boxes for one input: --bbox (every input), its --boxes entry ([] = nobody), or None: detect."""
    if args.bbox:
        return args.bbox
    if boxes_json is None:
        return None
    if isinstance(boxes_json, list):
        return boxes_json
    for key in (path.name, path.stem, str(path)):
        if key in boxes_json:
            return boxes_json[key]
    return None  # not listed: detect


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, i = path.stem, 1
    while stem in used:
        stem, i = f"{path.stem}_{i}", i + 1
    used.add(stem)
    return stem


# ----------------------------------------------------------------------------------------------------------------
# Work


def _image_info(path: Path, loaded, predictor) -> dict:
    return {"input": str(path), "image_size_px": list(loaded.original_size), "processing_scale": loaded.scale,
            "notes": list(loaded.notes), "kind": predictor.kind, "method": predictor.method,
            "backend": predictor.backend}


def process_image(path: Path, stem: str, predictor, args, boxes) -> int:
    from ..export.meshes import person_names, write_glb, write_obj, write_ply, write_results_json, write_results_npz
    from ..inference.images import as_loaded_image
    from ..render.pictures import overlay_picture, person_colours

    out = args.out
    loaded = as_loaded_image(path)  # the working copy the Predictor sees (downscaled when huge) and its scale
    results = predictor.predict(loaded, boxes=boxes, intrinsics=args.focal, root_depth_m=args.root_depth)
    info = _image_info(path, loaded, predictor)
    info["timings_s"] = {k: round(v, 4) for k, v in predictor.last_timings.items()}
    # The overlay is drawn on the working copy of the image, so K goes to its pixels.
    K_orig = results[0].K if results else predictor.default_intrinsics(loaded, args.focal)
    K_work = np.diag([loaded.scale, loaded.scale, 1.0]) @ K_orig
    if not results:
        info["camera"] = {"K": np.round(K_orig, 4).tolist()}
    _save_png(out / f"{stem}_overlay.png", overlay_picture(loaded.rgb, results, K_work, args.render_backend,
                                                           empty_message=f"no {predictor.kind} found"))
    # One object per person in the mesh files, named as the JSON's people say (mesh_name): person_0, person_1 ...
    names = person_names(len(results))
    write_results_json(out / f"{stem}.json", results, info, mesh_names=names)
    # Mesh files of an earlier run into the same --out that this run does not rewrite would contradict the JSON.
    with_uncertainty = bool(results) and all(r.vertex_uncertainty_mm is not None for r in results)
    for suffix, written in ((".obj", bool(results)), (".mtl", bool(results)), (".glb", bool(results)),
                            (".ply", bool(results) and args.ply), (".npz", bool(results) and args.npz)):
        if not written:
            (out / f"{stem}{suffix}").unlink(missing_ok=True)
    if results:
        meshes = [(r.vertices_m, r.faces) for r in results]
        colors = person_colours(len(results))  # the overlay's colour of each person
        write_obj(out / f"{stem}.obj", meshes, names=names, colors=colors)  # STEM.mtl first, then STEM.obj
        write_glb(out / f"{stem}.glb", meshes, colors=colors, names=names)
        if args.ply:
            # per-vertex uncertainty where the network gives it (fitted meshes have none)
            write_ply(out / f"{stem}.ply", meshes, {"uncertainty_mm": [r.vertex_uncertainty_mm for r in results]}
                      if with_uncertainty else None)
        if args.npz:
            write_results_npz(out / f"{stem}.npz", results)
    return len(results)


def process_video(path: Path, stem: str, predictor, args, boxes, progress: bool) -> int:
    from ..export.meshes import write_results_json
    from ..inference.images import as_loaded_image
    from ..inference.tracking import VideoPredictor
    from ..inference.video import VideoReader, VideoWriter
    from ..render.pictures import overlay_picture

    # The frames folder is made once the first frame has decoded (an unreadable video leaves nothing); the overlay
    # video is written under a temporary name and renamed only when complete (VideoWriter), each JSON atomically.
    # People are followed across frames (VideoPredictor): smoothing and the fit's warm start are per track.
    frames_dir = args.out / f"{stem}_frames"
    people_total = 0
    with VideoReader(path, args.max_frames) as reader, VideoWriter(args.out / f"{stem}_overlay.mp4",
                                                                  reader.fps) as writer:
        video = VideoPredictor(predictor, reader.fps, args.smooth, boxes, args.focal, args.root_depth)
        bar = _progress(total=reader.num_frames if reader.num_frames > 0 else None, desc=path.name, unit="frame",
                        enabled=progress, leave=False)
        for index, time_s, rgb in reader:
            loaded = as_loaded_image(rgb, name=f"{path} frame {index}")  # the name is the frame's in warnings
            results = video(loaded, name=loaded.source)
            K_orig = results[0].K if results else predictor.default_intrinsics(loaded, args.focal)
            K_work = np.diag([loaded.scale, loaded.scale, 1.0]) @ K_orig
            writer.write(overlay_picture(loaded.rgb, results, K_work, args.render_backend,
                                         empty_message=f"no {predictor.kind} found"))
            info = _image_info(path, loaded, predictor)
            info.update({"frame": index, "time_s": round(time_s, 4), "smoothed": bool(args.smooth)})
            info["timings_s"] = {k: round(v, 4) for k, v in predictor.last_timings.items()}
            if index == 0:
                frames_dir.mkdir(parents=True, exist_ok=True)
            write_results_json(frames_dir / f"frame_{index:06d}.json", results, info)
            people_total += len(results)
            bar.update(1)
        bar.close()
    return people_total


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _bars_on(args) -> bool:
    """Progress bars only on a terminal: piped or redirected stderr (a log file, CI) gets the lines alone, not
    carriage-return redraws; ``--no-progress`` turns them off on a terminal too."""
    from ..native_stderr import stderr_is_terminal

    return not args.no_progress and stderr_is_terminal()


def _progress(total, desc: str, unit: str, enabled: bool, leave: bool = True):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr, dynamic_ncols=True)


def _method(args) -> str:
    """``--method`` (default: network with a checkpoint, else fit); UserError (exit 2) when the method and the
    checkpoint do not go together."""
    from .errors import UserError

    method = args.method or ("network" if args.checkpoint is not None else "fit")
    if method == "fit" and args.checkpoint is not None:
        raise UserError("--method fit uses no checkpoint; drop --checkpoint, or use --method network+fit")
    if method != "fit" and args.checkpoint is None:
        raise UserError(f"--method {method} needs --checkpoint (a trained network); --method fit needs none")
    return method


def _make_predictor(args):
    """The Predictor of ``--method`` (default: network with a checkpoint, else fit); UserError (exit 2) when the
    method and the checkpoint do not go together or the checkpoint cannot be used."""
    from .errors import UserError
    from ..inference.predictor import BadInputError, Predictor
    from ..nets.factory import CheckpointError

    method = _method(args)
    try:
        if method == "fit":
            if args.threads is not None:
                import torch

                torch.set_num_threads(args.threads)
            return Predictor.for_fitting(args.kind or "body", device=args.device, detector=args.detector)
        predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, backend=args.backend,
                                              batch_size=args.batch_size, detector=args.detector,
                                              num_threads=args.threads, method=method)
        predictor.check_kind(args.kind)
        return predictor
    except (CheckpointError, BadInputError) as exc:
        raise UserError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    # Options and files are checked with modules that do not import torch, so that a usage error or a run whose
    # every input is unusable answers at once instead of after loading torch and the models (seconds to a minute).
    from .errors import UserError, print_line
    from ..inference.detect import DetectorUnavailable, load_boxes_json
    from ..inference.errors import MAX_THREADS, BadInputError, check_focal, check_root_depth
    from ..inference.images import file_problem

    _method(args)
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise UserError(f"{args.checkpoint}: checkpoint file not found")
    try:  # the Predictor's own checks, applied once here so that a bad value stops the run (exit 2)
        if args.focal is not None:
            check_focal(args.focal, "--focal")
        if args.root_depth is not None:
            check_root_depth(args.root_depth, "--root-depth")
    except BadInputError as exc:
        raise UserError(str(exc)) from None
    if args.bbox and args.boxes:
        raise UserError("give boxes with --bbox or with --boxes, not both")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads is not None and not 1 <= args.threads <= MAX_THREADS:
        raise UserError(f"--threads must be from 1 to {MAX_THREADS}, got {args.threads}")
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.bbox:
        from ..inference.detect import parse_bbox

        # Not four numbers: a usage error (exit 2). An empty box parses and skips each input (exit 1).
        args.bbox = [parse_bbox(text) for text in args.bbox]
    boxes_json = load_boxes_json(args.boxes) if args.boxes else None
    files, skipped = collect_inputs(args.inputs, args.out)
    unused = _unused_box_keys(boxes_json, files)
    if unused:
        log.warning("demo: --boxes %s: no input of this run is named %s (ignored)", args.boxes,
                    ", ".join(repr(k) for k in unused[:5]) + (f" (+{len(unused) - 5} more)" if len(unused) > 5 else ""))
    if not files:
        raise UserError("no images or videos found in " + ", ".join(str(p) for p in args.inputs))
    problems = [(path, file_problem(path)) for path in files]
    if all(problem for _, problem in problems):  # nothing to do: say so per input without loading anything
        for path, problem in problems:
            print_line(f"i2lmesh demo: skipped: {path}: {problem}")
        log.info("demo: 0 of %d input(s) done", len(files))
        return 1
    predictor = _make_predictor(args)
    needs_detector = [f for f in files if _boxes_for(f, args, boxes_json) is None]
    if needs_detector:
        try:
            predictor.detector()  # a detector that cannot run here stops the run before any input
        except DetectorUnavailable as exc:
            raise UserError(str(exc)) from None
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        if not os.access(args.out, os.W_OK):
            raise PermissionError(13, "permission denied")
    except OSError as exc:
        raise UserError(f"--out {args.out}: cannot be used as the output folder "
                        f"({exc.strerror or type(exc).__name__})") from None
    if skipped:
        log.info("demo: ignored %d file(s) in the input folders that are neither images nor videos", skipped)

    start = time.perf_counter()
    with _messages_above_bars(_bars_on(args)):
        failures = _process_all(files, predictor, args, boxes_json)
    done = len(files) - failures
    log.info("demo: %d of %d input(s) done in %.1f s -> %s", done, len(files), time.perf_counter() - start, args.out)
    return 1 if failures else 0


@contextmanager
def _messages_above_bars(progress: bool) -> Iterator[None]:
    """While progress bars are drawn, every line meant for the terminal is printed above them, never appended to a
    bar's line: log records that the CLI's handler writes to stderr/stdout (warnings about an input, "no person
    found") go through tqdm's own redirection (``tqdm.contrib.logging.logging_redirect_tqdm``: ``tqdm.write``), and
    Python warnings shown on stderr (the CLI makes each one line) through ``tqdm.write`` as well. The command's own
    lines use :func:`~i2lmesh.commands.errors.print_line`. Without bars, nothing changes."""
    if not progress:
        yield
        return
    import warnings

    from tqdm.contrib.logging import logging_redirect_tqdm

    from .errors import print_line

    shown = warnings.showwarning

    def show_above_bars(message, category, filename, lineno, file=None, line=None):
        if file is not None and file is not sys.stderr:
            return shown(message, category, filename, lineno, file, line)
        text = io.StringIO()
        shown(message, category, filename, lineno, text, line)  # the current format (the CLI's: one line)
        if text.getvalue().strip():
            print_line(text.getvalue().rstrip("\n"))

    warnings.showwarning = show_above_bars
    try:
        with logging_redirect_tqdm():
            yield
    finally:
        if warnings.showwarning is show_above_bars:
            warnings.showwarning = shown


def _process_all(files: list[Path], predictor, args, boxes_json) -> int:
    """Process every input (one progress bar over them); returns the number that failed, each reported as one line
    (``skipped: ...`` or ``failed on ...``) printed above the bar (:func:`~i2lmesh.commands.errors.print_line`)."""
    from .errors import print_line
    from ..inference.detect import DetectorUnavailable
    from ..inference.errors import BadInputError
    from ..inference.video import is_video

    used: set[str] = set()
    failures = 0
    bar = _progress(total=len(files), desc="demo", unit="input", enabled=_bars_on(args))
    for path in files:
        stem = _unique_stem(path, used)
        try:
            boxes = _boxes_for(path, args, boxes_json)
            if is_video(path):
                found = process_video(path, stem, predictor, args, boxes, _bars_on(args))
            else:
                found = process_image(path, stem, predictor, args, boxes)
                if found == 0:
                    log.info("demo: %s: no %s found (see %s.json)", path, predictor.kind, stem)
        except (BadInputError, DetectorUnavailable, ValueError, OSError) as exc:
            failures += 1
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print_line(f"i2lmesh demo: skipped {path}: {message}" if str(path) not in message else
                       f"i2lmesh demo: skipped: {message}")
            if getattr(args, "verbose", False):
                raise
        except Exception as exc:  # an unexpected failure on one input must not stop the others
            failures += 1
            first = str(exc).splitlines()[0] if str(exc) else ""
            print_line(f"i2lmesh demo: failed on {path}: {type(exc).__name__}: {first} (run with -v for the "
                       "traceback)")
            if getattr(args, "verbose", False):
                raise
        bar.update(1)
    bar.close()
    return failures

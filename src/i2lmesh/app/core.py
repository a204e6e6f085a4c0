"""The web page's work, without the web page: inputs in, pictures, meshes, tables and files out.

:class:`MeshService` is what the page's buttons call (``app/page.py`` wires it to Gradio); it needs no Gradio, so
the tests call it directly. One call of :meth:`MeshService.process` takes the uploaded files (photos and short
videos) and a webcam snapshot, runs the chosen method on each and returns a :class:`RunResult`:

- per photo (and per sampled video frame) an :class:`ItemView`: the overlay picture (PNG, the image with the meshes
  drawn over it beside a side view, as ``i2lmesh demo`` draws it), a GLB for the 3D view whose vertex colours show
  the network's per-vertex uncertainty (blue 0 mm ... red ``UNCERTAINTY_RED_MM`` and more; fitted meshes, which
  have none, get one plain colour per person), and a joints table;
- files to download: OBJ, GLB and JSON per photo; for a video the overlay MP4 and one JSON of every frame;
- one line per input for the page: what was found, or why the input could not be used (a bad file never stops the
  others, and never the server).

Temporary files: every run writes into its own folder under the service's work folder; the folders of older runs
are deleted once more than ``keep_runs`` exist or they are older than ``max_age_s``, and :meth:`MeshService.close`
deletes the whole work folder (the page calls it when the server stops).
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

METHOD_LABELS = {"fit": "fit (keypoints -> Anny body model; no checkpoint)", "network": "network (I2L-MeshNet)",
                 "network+fit": "network+fit (network joints and keypoints fitted together)"}
UNCERTAINTY_RED_MM = 100.0  # per-vertex uncertainty shown red at and above this (1 sigma, mm); 0 mm is blue
# Blue -> cyan -> green -> yellow -> red, the usual "cold is certain, hot is uncertain" ramp (RGB in [0, 1]).
_RAMP = np.array([[0.19, 0.30, 0.85], [0.10, 0.75, 0.90], [0.25, 0.80, 0.35], [0.95, 0.85, 0.20], [0.90, 0.20, 0.15]])
DEFAULT_MAX_UPLOAD_MB = 50.0
DEFAULT_MAX_FILES = 16
DEFAULT_MAX_VIDEO_FRAMES = 60
GALLERY_FRAMES_PER_VIDEO = 6  # overlays of this many frames of a video are shown (all go into its MP4)

ProgressCallback = Callable[[float, str], None]


class ServiceError(ValueError):
    """A setting the service cannot start with (no method for any kind, a checkpoint of the wrong kind ...)."""


@dataclass
class ItemView:
    """One picture of the results: a photo, a webcam snapshot, or one frame of a video.

    name: what the page calls it ("photo.jpg", "clip.mp4 frame 12"). overlay: PNG path (RGB, the image with the
    meshes over it, then a side view). mesh: GLB path for the 3D view (None when nobody was found). joints: rows of
    :data:`JOINT_COLUMNS`. people: how many were found."""

    name: str
    overlay: Path
    mesh: Path | None
    joints: list[list[Any]]
    people: int


JOINT_COLUMNS = ["person", "method", "joint", "u px", "v px", "x m", "y m", "z m", "uncertainty mm"]


@dataclass
class RunResult:
    """Everything one press of the button gives. lines: one line per input (``ok`` or the reason it failed);
    items: the pictures (gallery order); downloads: files offered for download; folder: where they all are."""

    folder: Path
    lines: list[str] = field(default_factory=list)
    items: list[ItemView] = field(default_factory=list)
    downloads: list[Path] = field(default_factory=list)
    failures: int = 0
    seconds: float = 0.0

    @property
    def status(self) -> str:
        """The lines as Markdown (one paragraph line each)."""
        return "  \n".join(self.lines) if self.lines else "Nothing to do: upload a photo or a video first."

    @property
    def first_mesh_index(self) -> int:
        """Index of the first item with a mesh (0 when none has one)."""
        return next((i for i, item in enumerate(self.items) if item.mesh is not None), 0)


# ----------------------------------------------------------------------------------------------------------------
# Colours and files


def uncertainty_colors(uncertainty_mm: np.ndarray, red_mm: float = UNCERTAINTY_RED_MM) -> np.ndarray:
    """Per-vertex uncertainties (V,) mm -> RGB colours (V, 3) in [0, 1]: 0 mm blue, ``red_mm`` and above red,
    through cyan, green and yellow. Negative values are shown as 0 mm; NaN as red (not a number is no certainty)."""
    u = np.asarray(uncertainty_mm, np.float64).reshape(-1)
    t = np.clip(np.where(np.isfinite(u), u, red_mm) / max(red_mm, 1e-9), 0.0, 1.0) * (len(_RAMP) - 1)
    lo = np.minimum(np.floor(t).astype(int), len(_RAMP) - 2)
    frac = (t - lo)[:, None]
    return (_RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac).astype(np.float32)


def joint_rows(results: Sequence[Any]) -> list[list[Any]]:
    """The joints table (columns :data:`JOINT_COLUMNS`) of a picture's people: 2D in original image pixels, 3D
    in camera metres, the network's 1-sigma joint uncertainty in mm ("" for fitted people, which have none)."""
    rows = []
    for p, r in enumerate(results):
        unc = getattr(r, "joint_uncertainty_mm", None)
        method = getattr(r, "method", "network")
        for j, name in enumerate(r.joint_names):
            u, v = (float(c) for c in r.joints_2d_px[j])
            x, y, z = (float(c) for c in r.joints_m[j])
            rows.append([p + 1, method, name, round(u, 1), round(v, 1), round(x, 4), round(y, 4), round(z, 4),
                         "" if unc is None else round(float(unc[j]), 1)])
    return rows


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _synthetic_person(kind: str) -> np.ndarray:
    """A rendered Anny body or hand over a random background, (256, 256, 3) uint8 RGB (for warming up); a grey
    picture where the synthetic renderer cannot run."""
    try:
        from ..data.synth import SynthConfig, SynthRenderer

        return SynthRenderer(SynthConfig(kind=kind, num=1, seed=7, size=256)).render_chunk(0)[0].image
    except Exception as exc:  # noqa: BLE001 - warming up is an optimisation
        log.debug("app: no synthetic warm-up picture (%s)", one_line(exc))
        return np.full((256, 256, 3), 127, np.uint8)


def _plural(kind: str, n: int) -> str:
    return kind if n == 1 else {"body": "bodies", "hand": "hands"}.get(kind, kind + "s")


def _safe_stem(name: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem).strip("._")[:60] or "input"
    unique, i = stem, 1
    while unique in used:
        unique, i = f"{stem}_{i}", i + 1
    used.add(unique)
    return unique


# ----------------------------------------------------------------------------------------------------------------
# The service


class MeshService:
    """Predictors for the page, built on first use and kept, plus the page's temporary files.

    checkpoints: i2lmesh checkpoints (.pt), at most one body and one hand network; each is loaded here (a missing
    or broken one fails now, not on the first photo) and offers the methods "network" and "network+fit" for its
    kind. "fit" needs no checkpoint and is offered for both kinds. device, detector: as for
    :meth:`~i2lmesh.inference.Predictor.from_checkpoint`; threads: torch's CPU threads (process-wide; None: as
    they are). max_upload_mb: the largest file accepted; max_files: files per run; max_video_frames: frames of a
    video processed (sampled evenly over the whole video when it has more). keep_runs / max_age_s: older run
    folders are deleted. render_backend: the overlay rasteriser. workdir: where run folders go (default: a new
    temporary folder, deleted by :meth:`close`).
    Raises ServiceError when no method is available or two checkpoints are of one kind, CheckpointError or
    BadInputError for a checkpoint that cannot be loaded.
    """

    def __init__(self, checkpoints: Sequence[str | os.PathLike] = (), device: str = "cpu",
                 detector: str = "auto", threads: int | None = None, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
                 max_files: int = DEFAULT_MAX_FILES, max_video_frames: int = DEFAULT_MAX_VIDEO_FRAMES,
                 keep_runs: int = 20, max_age_s: float = 3600.0, render_backend: str = "numba",
                 workdir: str | os.PathLike | None = None) -> None:
        from ..inference.predictor import Predictor

        self.device, self.detector, self.threads = device, detector, threads
        if threads is not None:  # the fit has no thread option of its own: torch's setting is process-wide
            import torch

            torch.set_num_threads(int(threads))
        self.max_upload_bytes = int(max_upload_mb * 1024 * 1024)
        self.max_files, self.max_video_frames = int(max_files), int(max_video_frames)
        self.keep_runs, self.max_age_s = max(1, int(keep_runs)), float(max_age_s)
        self.render_backend = render_backend
        self.checkpoints: dict[str, Path] = {}
        self._predictors: dict[tuple[str, str], Any] = {}
        for path in checkpoints:
            predictor = Predictor.from_checkpoint(path, device=device, detector=detector, num_threads=threads)
            if predictor.kind in self.checkpoints:
                raise ServiceError(f"two {predictor.kind} checkpoints ({self.checkpoints[predictor.kind].name} and "
                                   f"{Path(path).name}); give at most one body and one hand checkpoint")
            self.checkpoints[predictor.kind] = Path(path)
            self._predictors[(predictor.kind, "network")] = predictor
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="i2lmesh-app-")) if workdir is None else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one run at a time: predictors are not thread-safe
        self._runs = 0

    # -- what is offered -----------------------------------------------------------------------------------------

    def kinds(self) -> list[str]:
        """Kinds with at least one method ("body" first)."""
        return [kind for kind in ("body", "hand") if self.methods(kind)]

    def methods(self, kind: str) -> list[str]:
        """Methods for ``kind``: "fit" (no checkpoint needed), and "network" and "network+fit" with a checkpoint of
        that kind."""
        return (["network", "network+fit"] if kind in self.checkpoints else []) + ["fit"]

    def default_method(self, kind: str) -> str | None:
        """"network" where a checkpoint of the kind is given (the paper's method, the fastest), else "fit"."""
        methods = self.methods(kind)
        return methods[0] if methods else None

    def predictor(self, kind: str, method: str):
        """The predictor for (kind, method), built on first use. Raises BadInputError for a pair not offered, and
        CheckpointError for a checkpoint that cannot be loaded."""
        from ..inference.predictor import BadInputError, Predictor

        if method not in self.methods(kind):
            offered = ", ".join(self.methods(kind)) or "none"
            raise BadInputError(f"method {method!r} is not available for a {kind} here (available: {offered})")
        key = (kind, method)
        if key not in self._predictors:
            if method == "fit":
                predictor = Predictor.for_fitting(kind=kind, device=self.device, detector=self.detector)
            else:
                predictor = Predictor.from_checkpoint(self.checkpoints[kind], device=self.device,
                                                      detector=self.detector, num_threads=self.threads,
                                                      method=method)
            self._predictors[key] = predictor
        return self._predictors[key]

    def warm_up(self, kind: str | None = None, method: str | None = None) -> float:
        """Build the predictor of (kind, method) (default: the first kind and its default method) and run the
        whole photo path once on a synthetic person (a rendered Anny body or hand, 256 px), so that the first
        real photo does not pay for loading, compiling and first-call costs. Returns the seconds it took."""
        from ..inference.predictor import as_loaded_image

        start = time.perf_counter()
        kind = kind or self.kinds()[0]
        method = method or self.default_method(kind)
        rgb = _synthetic_person(kind)
        with self._lock:
            predictor = self.predictor(kind, method)
            scratch = RunResult(Path(tempfile.mkdtemp(prefix="warmup-", dir=self.workdir)))
            try:
                self._photo(as_loaded_image(rgb, name="warm-up"), "warm-up", "warmup", predictor, scratch)
            finally:
                shutil.rmtree(scratch.folder, ignore_errors=True)
        return time.perf_counter() - start

    # -- files ---------------------------------------------------------------------------------------------------

    def _new_run_folder(self) -> Path:
        self._prune()
        self._runs += 1
        folder = Path(tempfile.mkdtemp(prefix=f"run{self._runs:05d}-", dir=self.workdir))
        return folder

    def run_folders(self) -> list[Path]:
        """The run folders that exist now, oldest first."""
        try:
            return sorted((p for p in self.workdir.iterdir() if p.is_dir() and p.name.startswith("run")),
                          key=lambda p: p.name)
        except OSError:
            return []

    def _prune(self) -> None:
        """Delete run folders beyond the newest ``keep_runs - 1`` (a new one is about to be made) and those older
        than ``max_age_s``."""
        folders = self.run_folders()
        now = time.time()
        for i, folder in enumerate(folders):
            too_many = i < len(folders) - (self.keep_runs - 1)
            try:
                too_old = now - folder.stat().st_mtime > self.max_age_s
            except OSError:
                continue
            if too_many or too_old:
                shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Delete the work folder (if the service made it) and forget the predictors."""
        self._predictors.clear()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the work ------------------------------------------------------------------------------------------------

    def input_problem(self, path: Path) -> str | None:
        """Why an uploaded file is refused before it is read (too large, not a photo or video by its name), or
        None."""
        from ..inference.predictor import IMAGE_SUFFIXES, file_problem
        from ..inference.video import VIDEO_SUFFIXES

        problem = file_problem(path)
        if problem:
            return problem
        size = path.stat().st_size
        if size > self.max_upload_bytes:
            return (f"file too large ({size / 2**20:.1f} MB; the limit is {self.max_upload_bytes / 2**20:g} MB)")
        if path.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
            return (f"not a photo or video by its name (use {', '.join(s[1:] for s in IMAGE_SUFFIXES[:4])} or "
                    f"{', '.join(s[1:] for s in VIDEO_SUFFIXES[:4])} ...)")
        return None

    def process(self, files: Sequence[str | os.PathLike] | None, kind: str, method: str,
                snapshot: np.ndarray | None = None, progress: ProgressCallback | None = None) -> RunResult:
        """Run ``method`` for ``kind`` on every file (photos and videos) and on a webcam snapshot (H, W, 3 uint8
        RGB, or None). Never raises for a bad input: each input gets one line in the result, ok or why not.
        progress(fraction in [0, 1], text) is called as the work goes."""
        from ..inference.predictor import BadInputError
        from ..inference.video import is_video

        start = time.perf_counter()
        inputs: list[tuple[str, Any]] = [(Path(f).name, Path(f)) for f in (files or []) if f]
        if snapshot is not None:
            inputs.append(("webcam snapshot", np.asarray(snapshot)))
        with self._lock:
            result = RunResult(self._new_run_folder())
            if not inputs:
                return result
            if len(inputs) > self.max_files:
                result.lines.append(f"Too many files: {len(inputs)} (at most {self.max_files} at a time); "
                                    f"only the first {self.max_files} are used.")
                inputs = inputs[:self.max_files]
            try:
                predictor = self.predictor(kind, method)
            except Exception as exc:  # a checkpoint that broke since the start, an unknown method ...
                result.lines.append(f"Cannot run {method} for a {kind}: {one_line(exc)}")
                result.failures = len(inputs)
                return result
            used: set[str] = set()
            report = progress or (lambda fraction, text: None)
            for i, (name, source) in enumerate(inputs):
                report(i / len(inputs), f"{name} ({i + 1} of {len(inputs)})")

                def step(fraction: float, text: str, i=i) -> None:
                    report((i + fraction) / len(inputs), text)

                stem = _safe_stem(name, used)
                try:
                    if isinstance(source, Path):
                        problem = self.input_problem(source)
                        if problem:
                            raise BadInputError(problem)
                    if isinstance(source, Path) and is_video(source):
                        line = self._video(source, name, stem, predictor, result, step)
                    else:
                        line = self._photo(source, name, stem, predictor, result)
                    result.lines.append(f"✓ {line}")
                except Exception as exc:  # noqa: BLE001 - a bad input must never stop the others or the server
                    result.failures += 1
                    message = one_line(exc)
                    if isinstance(source, Path):  # the upload's temporary folder means nothing to the user
                        message = message.replace(str(source), name).replace(str(source.parent) + os.sep, "")
                    if not isinstance(exc, (BadInputError, ValueError, OSError)):
                        log.exception("app: %s failed", name)
                        message = f"{type(exc).__name__}: {message}"
                    result.lines.append(f"✗ {name}: {message}" if not message.startswith(name) else f"✗ {message}")
            report(1.0, "done")
        result.seconds = time.perf_counter() - start
        return result

    def _picture_files(self, folder: Path, stem: str, rgb: np.ndarray, scale: float, results, K_orig: np.ndarray
                       ) -> tuple[Path, Path | None]:
        """Overlay PNG and (with people) the GLB of one picture; returns their paths."""
        from PIL import Image

        from ..render.pictures import overlay_picture, person_colours
        from ..export.meshes import write_glb

        K_work = np.diag([scale, scale, 1.0]) @ K_orig
        overlay = folder / f"{stem}_overlay.png"
        Image.fromarray(overlay_picture(rgb, results, K_work, self.render_backend, max_side=1280)).save(overlay)
        if not results:
            return overlay, None
        # Meshes with a per-vertex uncertainty are coloured by it (COLOR_0), the others keep their palette colour.
        colours = [None if getattr(r, "vertex_uncertainty_mm", None) is None else
                   uncertainty_colors(r.vertex_uncertainty_mm) for r in results]
        glb = write_glb(folder / f"{stem}.glb", [(r.vertices_m, r.faces) for r in results],
                        colors=person_colours(len(results)), vertex_colors=colours)
        return overlay, glb

    def _K(self, predictor, results, loaded) -> np.ndarray:
        """K (original pixels) the people were decoded with, or the Predictor's default for ``loaded``."""
        if results:
            return np.asarray(results[0].K, np.float64)
        return predictor.default_intrinsics(loaded)

    def _photo(self, source, name: str, stem: str, predictor, result: RunResult) -> str:
        from ..export.meshes import person_names, write_obj, write_results_json
        from ..inference.predictor import as_loaded_image
        from ..render.pictures import person_colours

        t0 = time.perf_counter()
        loaded = as_loaded_image(source, name=name)  # the working copy the Predictor sees, and its scale
        people = predictor.predict(loaded)
        folder = result.folder
        overlay, glb = self._picture_files(folder, stem, loaded.rgb, loaded.scale, people,
                                           self._K(predictor, people, loaded))
        info = {"input": name, "image_size_px": list(loaded.original_size), "notes": list(loaded.notes),
                "kind": predictor.kind, "method": predictor.method,
                "timings_s": {k: round(v, 4) for k, v in predictor.last_timings.items()}}
        names = person_names(len(people))  # one object per person in the mesh files, named as in the JSON
        json_path = write_results_json(folder / f"{stem}.json", people, info, mesh_names=names)
        result.items.append(ItemView(name, overlay, glb, joint_rows(people), len(people)))
        if people:
            obj = write_obj(folder / f"{stem}.obj", [(r.vertices_m, r.faces) for r in people], names=names,
                            colors=person_colours(len(people)))
            result.downloads += [obj, obj.with_suffix(".mtl"), glb]
        result.downloads.append(json_path)
        seconds = time.perf_counter() - t0
        what = f"{len(people)} {_plural(predictor.kind, len(people))}" if people else f"no {predictor.kind} found"
        return f"{name}: {what} ({predictor.method}, {seconds:.1f} s)"

    def _video(self, path: Path, name: str, stem: str, predictor, result: RunResult,
               progress: ProgressCallback) -> str:
        from ..render.pictures import overlay_picture, person_colours
        from ..export.atomic import atomic_write_text
        from ..export.meshes import _jsonable, write_obj
        from ..inference.images import as_loaded_image
        from ..inference.tracking import VideoPredictor
        from ..inference.video import VideoReader, VideoWriter

        t0 = time.perf_counter()
        folder = result.folder
        frames: list[dict] = []
        people_total, shown, first_mesh = 0, 0, None
        with VideoReader(path) as reader:
            total = reader.num_frames
            stride = max(1, math.ceil(total / self.max_video_frames)) if total > 0 else 1
            planned = min(self.max_video_frames, math.ceil(total / stride)) if total > 0 else self.max_video_frames
            show_every = max(1, math.ceil(planned / GALLERY_FRAMES_PER_VIDEO))
            with VideoWriter(folder / f"{stem}_overlay.mp4", reader.fps / stride) as writer:
                # people followed across the sampled frames: stable track ids, warm-started fits, smoothing
                video = VideoPredictor(predictor, reader.fps / stride, smooth=True)
                done = 0
                for index, time_s, rgb in reader:
                    if index % stride:
                        continue
                    if done >= self.max_video_frames:
                        break
                    progress(done / planned, f"{name}: frame {index + 1}" + (f" of {total}" if total > 0 else ""))
                    frame_name = f"{name} frame {index}"
                    loaded = as_loaded_image(rgb, name=frame_name)
                    people = video(loaded, name=frame_name)  # sorted by track id
                    K_orig = self._K(predictor, people, loaded)
                    writer.write(overlay_picture(loaded.rgb, people, np.diag([loaded.scale, loaded.scale, 1.0])
                                                 @ K_orig, self.render_backend, max_side=1280))
                    frames.append({"frame": index, "time_s": round(time_s, 4),
                                   "people": [r.to_dict() for r in people]})
                    people_total += len(people)
                    if done % show_every == 0 and shown < GALLERY_FRAMES_PER_VIDEO:
                        overlay, glb = self._picture_files(folder, f"{stem}_frame{index:06d}", loaded.rgb,
                                                           loaded.scale, people, K_orig)
                        result.items.append(ItemView(frame_name, overlay, glb, joint_rows(people), len(people)))
                        shown += 1
                        if glb is not None and first_mesh is None:
                            first_mesh = glb
                            obj = write_obj(folder / f"{stem}_frame{index:06d}.obj",
                                            [(r.vertices_m, r.faces) for r in people],
                                            colors=person_colours(len(people)))
                            result.downloads += [obj, obj.with_suffix(".mtl"), glb]
                    done += 1
        doc = {"input": name, "kind": predictor.kind, "method": predictor.method,
               "fps": reader.fps, "frame_stride": stride, "num_frames_processed": len(frames),
               "units": {"2d": "pixels of the original frame", "3d": "camera metres (x right, y down, z forward)",
                         "uncertainty": "millimetres, 1 sigma"}, "frames": frames}
        json_path = folder / f"{stem}_frames.json"
        atomic_write_text(json_path, json.dumps(_jsonable(doc), indent=1, allow_nan=False))
        mp4 = folder / f"{stem}_overlay.mp4"
        result.downloads += ([mp4] if mp4.is_file() else []) + [json_path]
        seconds = time.perf_counter() - t0
        every = f", 1 frame in {stride}" if stride > 1 else ""
        return (f"{name}: {len(frames)} frames{every}, {people_total} {_plural(predictor.kind, people_total)} in all "
                f"({predictor.method}, {seconds:.1f} s)")


__all__ = ["MeshService", "RunResult", "ItemView", "ServiceError", "JOINT_COLUMNS", "METHOD_LABELS",
           "uncertainty_colors", "joint_rows", "one_line", "UNCERTAINTY_RED_MM"]

"""Dataset-scale pseudo-labelling: sources, shards, resuming, sharding over processes, merging, summary.

A run turns a **source** into a dataset folder in our format (docs/datasets.md) whose records carry Anny fits:

- a dataset through our loaders (``load_records(format, root, split)``: MSCOCO, Human3.6M, MuCo, 3DPW, FreiHAND,
  SURREAL, or our own format), each record fitted to its own keypoints;
- a folder of photos and videos (``images=``), run through the built-in detector (``inference.detect``):
  BlazePose-33 bodies become COCO-18 keypoints (:func:`~.label.blazepose_to_coco18`), hands MANO-21; video frames
  (every ``video_stride``-th) are written as JPEG files under ``OUT/images/<video>/``.

The source's **units** (records, or photos / video frames) are split into chunks of ``chunk_size``; chunk c belongs to
shard ``c % num_shards`` (processes or machines: ``--shard i --num-shards n``, or torchrun's RANK / WORLD_SIZE). Each
finished chunk is a folder ``OUT/shards/chunk_NNNNNN/`` in our format, renamed into place only when complete, so a
killed run leaves no half-written chunk and a rerun skips finished chunks. ``OUT/pseudo_label.json`` records the
settings: a rerun with other settings is refused (``overwrite`` starts over). When every chunk is done, the process
that finishes last merges them into ``OUT/annotations.json`` (+ side files) and writes ``OUT/summary.json``
(fit errors and rejections per rule, people found, skipped and why).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..data.formats.i2lmesh import ANNOTATION_FILE, read_dataset, write_dataset
from ..data.record import COCO_18, DatasetError, SampleRecord
from ..export.atomic import atomic_write_text
from .label import LabelOptions, LabelStats, ModelBank, blazepose_to_coco18, label_records, summarize

log = logging.getLogger(__name__)

MANIFEST = "pseudo_label.json"
SUMMARY = "summary.json"
SHARD_DIR = "shards"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MERGE_WAIT_S = 300.0


@dataclass(frozen=True)
class Source:
    """What to label: ``format``/``root``/``split`` (a dataset through ``load_records``) or ``images`` (a folder
    or file of photos and videos, with ``kind``, ``detector``, ``video_stride``, ``max_frames`` per video,
    ``min_score`` per keypoint)."""

    format: str | None = None
    root: str | None = None
    split: str = "train"
    images: str | None = None
    kind: str = "body"
    detector: str = "auto"
    video_stride: int = 10
    max_frames: int | None = None
    min_score: float = 0.5
    loader_options: tuple[tuple[str, object], ...] = ()

    def describe(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def shard_from_env(shard: int | None, num_shards: int | None) -> tuple[int, int]:
    """(shard, num_shards): the given ones, else torchrun's RANK / WORLD_SIZE, else (0, 1). ValueError when
    inconsistent."""
    if num_shards is None:
        num_shards = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if shard is None:
        shard = int(os.environ.get("RANK", "0") or 0)
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"--shard {shard} --num-shards {num_shards}: need 0 <= shard < num_shards")
    return shard, num_shards


# ----------------------------------------------------------------------------------------------------- units

def _list_media(path: Path) -> list[Path]:
    from ..inference.video import is_video

    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"--images {path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or is_video(p)))
    if not files:
        raise ValueError(f"--images {path}: no photos ({', '.join(IMAGE_SUFFIXES)}) or videos found")
    return files


def _count_frames(path: Path) -> int:
    """Frames of a video, counted by decoding headers (``grab``), as containers' counts can be wrong."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    count = 0
    try:
        if not capture.isOpened():
            return 0
        while capture.grab():
            count += 1
    finally:
        capture.release()
    return count


def plan_units(source: Source) -> tuple[list, list[SampleRecord] | None]:
    """The source's units in a fixed order: (units, records). For a dataset, units are record indices and the
    records are returned; for a media folder, units are ``[file, frame or -1]`` and records None."""
    if source.images is None:
        from ..data.formats import load_records

        if source.format is None or source.root is None:
            raise ValueError("give --format and --root (a dataset), or --images (photos and videos)")
        records = load_records(source.format, source.root, source.split, **dict(source.loader_options))
        if not records:
            raise DatasetError(f"{source.root}: no usable samples ({source.format}, split {source.split})")
        return list(range(len(records))), records
    from ..inference.video import is_video

    units: list = []
    for path in _list_media(Path(source.images)):
        if is_video(path):
            frames = _count_frames(path)
            if frames == 0:
                log.warning("%s: cannot decode any frame; skipped", path)
            limit = frames if source.max_frames is None else min(frames, source.max_frames * source.video_stride)
            units += [[str(path.resolve()), f] for f in range(0, limit, max(1, source.video_stride))]
        else:
            units.append([str(path.resolve()), -1])
    return units, None


# ------------------------------------------------------------------------------------------------- detection

class MediaRecords:
    """Turns photos and video frames into records with detected keypoints (one per person or hand)."""

    def __init__(self, source: Source, out_dir: Path) -> None:
        from ..inference.detect import create_detector

        self.source, self.out_dir = source, out_dir
        self.detector = create_detector(source.kind, source.detector)
        self.counts = {"images": 0, "unreadable": 0, "detections": 0, "without_keypoints": 0}
        self._video: tuple[str, object, int] | None = None

    def close(self) -> None:
        if self._video is not None:
            self._video[1].release()
            self._video = None
        close = getattr(self.detector, "close", None)
        if close is not None:
            close()

    def _frame(self, path: str, frame: int) -> np.ndarray | None:
        import cv2

        if frame < 0:
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            return None if image is None else image[:, :, ::-1].copy()
        if self._video is None or self._video[0] != path or self._video[2] > frame:
            if self._video is not None:
                self._video[1].release()
            self._video = (path, cv2.VideoCapture(path), 0)
        name, capture, position = self._video
        while position < frame:  # grab without decoding up to the frame
            if not capture.grab():
                return None
            position += 1
        ok, image = capture.read()
        self._video = (name, capture, position + 1)
        return image[:, :, ::-1].copy() if ok else None

    def records(self, unit: Sequence) -> list[SampleRecord]:
        """Records of the people (hands) detected in one unit; a video frame with people is saved as a JPEG."""
        from ..geometry.camera import default_intrinsics

        path, frame = str(unit[0]), int(unit[1])
        rgb = self._frame(path, frame)
        self.counts["images"] += 1
        if rgb is None:
            self.counts["unreadable"] += 1
            log.warning("%s%s: unreadable; skipped", path, "" if frame < 0 else f" frame {frame}")
            return []
        detections = self.detector.detect(rgb)
        self.counts["detections"] += len(detections)
        height, width = rgb.shape[:2]
        image_path, sample = path, Path(path).stem
        if frame >= 0 and detections:
            image_path = str(self._save_frame(path, frame, rgb))
            sample = f"{Path(path).stem}_{frame:06d}"
        out = []
        for k, det in enumerate(detections):
            if det.keypoints_xy is None:
                self.counts["without_keypoints"] += 1
                continue
            extra = {"detector": det.source, "detection_score": round(float(det.score), 4)}
            if frame >= 0:
                extra.update({"video": path, "frame": frame})
            if det.keypoint_set == "blazepose33":
                joints, valid, scores = blazepose_to_coco18(det.keypoints_xy, det.keypoint_scores,
                                                             self.source.min_score)
                js = COCO_18
            else:
                from ..bodymodels.joint_sets import MANO_21

                joints = np.asarray(det.keypoints_xy, np.float64)
                scores = np.asarray(det.keypoint_scores, np.float64)
                valid, js = (scores >= self.source.min_score).astype(np.float64), MANO_21
                if det.side is not None:
                    extra["side"] = det.side
            extra["keypoint_scores"] = np.round(scores, 4).tolist()
            out.append(SampleRecord(image_path=image_path, image_size=(width, height),
                                    bbox_xywh=np.asarray(det.box_xywh, np.float64), K=default_intrinsics(width, height),
                                    kind=self.source.kind, joint_set=js, joints_img_px=joints, joints_valid=valid,
                                    has_3d=False, sample_id=f"{sample}_{k}", dataset="pseudo-label", extra=extra))
        return out

    def _save_frame(self, video: str, frame: int, rgb: np.ndarray) -> Path:
        from PIL import Image

        from ..export.atomic import atomic_write

        folder = self.out_dir / "images" / Path(video).stem
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{Path(video).stem}_{frame:06d}.jpg"
        if not path.is_file():
            with atomic_write(path) as tmp:
                Image.fromarray(rgb).save(tmp, format="JPEG", quality=92)
        return path


# ---------------------------------------------------------------------------------------------------- shards

def chunk_dir(out_dir: Path, chunk: int) -> Path:
    return out_dir / SHARD_DIR / f"chunk_{chunk:06d}"


def _write_manifest(out_dir: Path, manifest: dict, overwrite: bool) -> None:
    path = out_dir / MANIFEST
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if old == manifest:
            return
        if not overwrite:
            raise ValueError(f"{out_dir} holds a pseudo-label run with other settings ({path}); use another --out, "
                             "or --overwrite to start over")
    if overwrite:
        for name in (SHARD_DIR,):
            shutil.rmtree(out_dir / name, ignore_errors=True)
        for name in (ANNOTATION_FILE, SUMMARY):
            (out_dir / name).unlink(missing_ok=True)
    atomic_write_text(path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _commit_chunk(out_dir: Path, chunk: int, records: list[SampleRecord], info: dict) -> None:
    final = chunk_dir(out_dir, chunk)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write_dataset(records, tmp, info=info)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / ANNOTATION_FILE).is_file():  # another process's copy of the same chunk is fine
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_chunk(out_dir: Path, chunk: int) -> tuple[list[SampleRecord], dict]:
    folder = chunk_dir(out_dir, chunk)
    info = json.loads((folder / ANNOTATION_FILE).read_text()).get("info", {})
    records = read_dataset(folder) if info.get("num_records", 1) else []
    return records, info


def merge(out_dir: Path, num_chunks: int, manifest: dict) -> dict:
    """Merge every chunk into ``out_dir/annotations.json`` (+ side files) and write ``summary.json``; returns the
    summary. Chunk folders stay (a rerun with the same settings only merges again)."""
    records: list[SampleRecord] = []
    stats = LabelStats()
    counts: dict[str, int] = {}
    for chunk in range(num_chunks):
        part, info = _read_chunk(out_dir, chunk)
        records += part
        for reason, n in info.get("skipped", {}).items():
            stats.skipped[reason] = stats.skipped.get(reason, 0) + n
        for key, n in info.get("media", {}).items():
            counts[key] = counts.get(key, 0) + n
    if not records:
        raise DatasetError(f"{out_dir}: no person could be fitted (skipped: {stats.skipped or 'none'})")
    info = {"pseudo_label": manifest, "fit_check": {"checked": len(records),
                                                    "rejected": sum(not r.fit_valid for r in records)}}
    write_dataset(records, out_dir, info=info)
    summary = {**summarize(records), "skipped": stats.skipped, "source": manifest["source"]}
    if counts:
        summary["media"] = counts
    atomic_write_text(out_dir / SUMMARY, json.dumps(summary, indent=1) + "\n")
    return summary


def _lock(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            host, pid = path.read_text().split()
            if host == socket.gethostname() and not _alive(int(pid)):
                path.unlink(missing_ok=True)  # left by a killed process
        except (OSError, ValueError):
            pass
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{socket.gethostname()} {os.getpid()}")
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class RunResult:
    """What :func:`pseudo_label` did: chunks done here, skipped as finished, total, and the summary once merged."""

    chunks_done: int
    chunks_skipped: int
    num_chunks: int
    summary: dict | None
    out_dir: Path


def pseudo_label(source: Source, out_dir: str | os.PathLike, options: LabelOptions = LabelOptions(),
                 chunk_size: int = 256, shard: int | None = None, num_shards: int | None = None,
                 overwrite: bool = False, progress: bool = True, models: ModelBank | None = None,
                 on_chunk: Callable[[int], None] | None = None, fit_bank=None) -> RunResult:
    """Label ``source`` into ``out_dir`` (see the module docstring); resumable and shardable.

    Raises ValueError (one line) for bad settings, an output folder of another run, or a source without units;
    DatasetError when nothing could be fitted. ``on_chunk(c)`` is called after chunk c is committed (tests).
    ``fit_bank``: the models that evaluate the source's fits for ``options.from_fits`` (``data.targets.BodyModelBank``).
    """
    from tqdm import tqdm

    if chunk_size < 1:
        raise ValueError(f"--chunk-size {chunk_size}: must be >= 1")
    shard, num_shards = shard_from_env(shard, num_shards)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    units, records = plan_units(source)
    num_chunks = max(1, -(-len(units) // chunk_size))
    manifest = {"version": 1, "source": source.describe(), "options": dataclasses.asdict(options),
                "chunk_size": chunk_size, "num_units": len(units), "num_chunks": num_chunks}
    manifest = json.loads(json.dumps(manifest))  # tuples -> lists, as read back
    _write_manifest(out_dir, manifest, overwrite)
    mine = [c for c in range(num_chunks) if c % num_shards == shard]
    todo = [c for c in mine if not (chunk_dir(out_dir, c) / ANNOTATION_FILE).is_file()]
    if len(todo) < len(mine):
        log.info("pseudo-label: %d of %d chunks of shard %d/%d already done; resuming", len(mine) - len(todo),
                 len(mine), shard, num_shards)
    models = models or ModelBank()
    media = MediaRecords(source, out_dir) if records is None and todo else None
    bar = tqdm(total=sum(len(units[c * chunk_size:(c + 1) * chunk_size]) for c in todo), unit="unit",
               desc=f"pseudo-label {shard}/{num_shards}", disable=not progress, dynamic_ncols=True)
    try:
        for chunk in todo:
            part = units[chunk * chunk_size:(chunk + 1) * chunk_size]
            stats = LabelStats()
            if records is not None:
                inputs = [records[i] for i in part]
                labelled = label_records(inputs, options, models, stats, progress=bar.update, fit_bank=fit_bank)
                bar.update(len(part) - stats.fitted)
                info = {}
            else:
                before = dict(media.counts)
                inputs = []
                for unit in part:
                    inputs += media.records(unit)
                    bar.update(1)
                labelled = label_records(inputs, options, models, stats)
                info = {"media": {k: media.counts[k] - before[k] for k in media.counts}}
                info["media"]["people"] = len(inputs)
            info.update({"chunk": chunk, "num_records": len(labelled), "skipped": stats.skipped,
                         "rejected": stats.rejected})
            _commit_chunk(out_dir, chunk, labelled, info)
            if on_chunk is not None:
                on_chunk(chunk)
    finally:
        bar.close()
        if media is not None:
            media.close()
    summary = _merge_when_complete(out_dir, num_chunks, manifest)
    return RunResult(len(todo), len(mine) - len(todo), num_chunks, summary, out_dir)


def _merge_when_complete(out_dir: Path, num_chunks: int, manifest: dict) -> dict | None:
    """Merge when every chunk is done (one process at a time, under ``.merge.lock``); None while some are not."""
    lock = out_dir / ".merge.lock"
    deadline = time.monotonic() + MERGE_WAIT_S
    while True:
        if not all((chunk_dir(out_dir, c) / ANNOTATION_FILE).is_file() for c in range(num_chunks)):
            missing = sum(not (chunk_dir(out_dir, c) / ANNOTATION_FILE).is_file() for c in range(num_chunks))
            log.info("pseudo-label: %d of %d chunks are still to do (other shards); rerun any shard when they are "
                     "done to merge", missing, num_chunks)
            return None
        if _lock(lock):
            try:
                summary_path = out_dir / SUMMARY
                if summary_path.is_file() and (out_dir / ANNOTATION_FILE).is_file():
                    try:
                        summary = json.loads(summary_path.read_text())
                        if summary.get("source") == manifest["source"] and not any(
                                chunk_dir(out_dir, c).stat().st_mtime > summary_path.stat().st_mtime
                                for c in range(num_chunks)):
                            return summary  # already merged by another process
                    except (OSError, json.JSONDecodeError):
                        pass
                return merge(out_dir, num_chunks, manifest)
            finally:
                lock.unlink(missing_ok=True)
        if time.monotonic() > deadline:
            log.warning("pseudo-label: %s is held by another process; rerun to merge", lock)
            return None
        time.sleep(0.5)


__all__ = ["Source", "RunResult", "pseudo_label", "plan_units", "merge", "shard_from_env", "chunk_dir",
           "MediaRecords", "MANIFEST", "SUMMARY"]

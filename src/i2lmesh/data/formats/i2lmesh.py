"""Our on-disk dataset format: images + one COCO-style JSON (+ optional side arrays for meshes).

Layout of a dataset folder (documented in docs/datasets.md)::

    annotations.json      images, annotations, joint sets (see below)
    images/...            image files (``file_name`` is relative to the folder, or absolute)
    vertices_<V>.npy      optional (N_V, V, 3) float32 camera-space vertices in metres, one row per mesh
    flip_index_<name>.npy optional (V,) int64 vertex mirror maps, referenced by name

All 3D quantities are camera-frame metres (x right, y down, z forward); 2D quantities are pixels. Reading gives
:class:`SampleRecord` objects; NaN/inf values or empty boxes are rejected with a count in the log.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

from ..record import SampleRecord, joint_set_from_dict, joint_set_to_dict, validate_records

log = logging.getLogger(__name__)

FORMAT_NAME = "i2lmesh-dataset"
FORMAT_VERSION = 1
ANNOTATION_FILE = "annotations.json"


def _list(a) -> list | None:
    return None if a is None else np.asarray(a, dtype=np.float64).tolist()


def write_dataset(records: Iterable[SampleRecord], out_dir: str | os.PathLike, copy_images: bool = False,
                  info: dict | None = None) -> Path:
    """Write records to ``out_dir`` in our format; returns the annotation file's path.

    copy_images: copy each image under ``out_dir/images/`` (keeping its file name, prefixed by the image id);
    otherwise ``file_name`` is the image's absolute path. Meshes stored as vertices go to ``vertices_<V>.npy``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = list(records)
    images: list[dict] = []
    annotations: list[dict] = []
    joint_sets: dict[str, dict] = {}
    image_ids: dict[str, int] = {}
    vertex_rows: dict[int, list[np.ndarray]] = {}
    flip_maps: dict[str, np.ndarray] = {}
    for ann_id, r in enumerate(records):
        src = str(r.image_path)
        if src not in image_ids:
            image_ids[src] = len(images)
            if copy_images:
                file_name = f"images/{len(images):08d}_{Path(src).name}"
            else:  # relative when the image lives inside the dataset folder, so the folder can move
                try:
                    file_name = Path(src).resolve().relative_to(out_dir.resolve()).as_posix()
                except ValueError:
                    file_name = str(Path(src).resolve())
            if copy_images:
                (out_dir / "images").mkdir(exist_ok=True)
                shutil.copyfile(src, out_dir / file_name)
            images.append({"id": image_ids[src], "file_name": file_name, "width": int(r.image_size[0]),
                           "height": int(r.image_size[1]), "K": _list(r.K)})
        ann: dict = {"id": ann_id, "image_id": image_ids[src], "sample_id": r.sample_id, "dataset": r.dataset,
                     "kind": r.kind, "bbox": _list(r.bbox_xywh), "bbox_is_final": bool(r.bbox_is_final),
                     "has_3d": bool(r.has_3d), "fit_valid": bool(r.fit_valid)}
        if r.joint_set is not None:
            joint_sets.setdefault(r.joint_set.name, joint_set_to_dict(r.joint_set))
            ann["joint_set"] = r.joint_set.name
            ann["joints_img"] = _list(r.joints_img_px)
            ann["joints_cam"] = _list(r.joints_cam_m)
            ann["joints_valid"] = _list(r.joints_valid)
        if r.body_model is not None:
            ann["body_model"] = r.body_model
            ann["body_gender"] = r.body_gender
            ann["body_params"] = None if r.body_params is None else {k: _list(v) for k, v in r.body_params.items()}
        if r.vertices_cam_m is not None:
            v = np.asarray(r.vertices_cam_m, dtype=np.float32)
            rows = vertex_rows.setdefault(v.shape[0], [])
            ann["vertices"] = {"file": f"vertices_{v.shape[0]}.npy", "row": len(rows)}
            rows.append(v)
        if r.vertex_flip_index is not None:
            fi = np.asarray(r.vertex_flip_index, dtype=np.int64)
            name = next((n for n, m in flip_maps.items() if m.shape == fi.shape and np.array_equal(m, fi)), None)
            if name is None:
                name = f"{r.body_model or 'mesh'}{len(fi)}_{len(flip_maps)}"
                flip_maps[name] = fi
            ann["vertex_flip_index"] = {"file": f"flip_index_{name}.npy"}
        if r.root_depth_m is not None:
            ann["root_depth_m"] = float(r.root_depth_m)
        if r.extra:
            ann["extra"] = r.extra
        annotations.append(ann)
    for num_v, rows in vertex_rows.items():
        np.save(out_dir / f"vertices_{num_v}.npy", np.stack(rows))
    for name, fi in flip_maps.items():
        np.save(out_dir / f"flip_index_{name}.npy", fi)
    doc = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "units": {"3d": "camera metres", "2d": "pixels"},
           "info": info or {}, "joint_sets": joint_sets, "images": images, "annotations": annotations}
    path = out_dir / ANNOTATION_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":"), allow_nan=True))
    tmp.replace(path)
    return path


def _array(value, dtype=np.float64) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=dtype)


def read_dataset(root: str | os.PathLike, mmap: bool = True) -> list[SampleRecord]:
    """Read a dataset folder (or its annotations.json) into records; rejected annotations are counted in the log.

    Vertex arrays are memory-mapped (``mmap``): a record's ``vertices_cam_m`` is a lazy row view.
    """
    root = Path(root)
    path = root if root.is_file() else root / ANNOTATION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {ANNOTATION_FILE} in {root}: not an i2lmesh dataset folder")
    root = path.parent
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if doc.get("format") != FORMAT_NAME:
        raise ValueError(f"{path} is not an {FORMAT_NAME} file (format={doc.get('format')!r})")
    if int(doc.get("version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path} has format version {doc['version']}; this i2lmesh reads up to {FORMAT_VERSION}")
    joint_sets = {name: joint_set_from_dict(d) for name, d in doc.get("joint_sets", {}).items()}
    images = {img["id"]: img for img in doc["images"]}
    side_arrays: dict[str, np.ndarray] = {}

    def side(name: str) -> np.ndarray:
        if name not in side_arrays:
            side_arrays[name] = np.load(root / name, mmap_mode="r" if mmap else None)
        return side_arrays[name]

    records = []
    for ann in doc["annotations"]:
        img = images[ann["image_id"]]
        file_name = Path(img["file_name"])
        vertices = None
        if ann.get("vertices"):
            vertices = side(ann["vertices"]["file"])[int(ann["vertices"]["row"])]
        flip_index = None
        if ann.get("vertex_flip_index"):
            flip_index = np.asarray(side(ann["vertex_flip_index"]["file"]))
        params = ann.get("body_params")
        records.append(SampleRecord(
            image_path=str(file_name if file_name.is_absolute() else root / file_name),
            image_size=(int(img["width"]), int(img["height"])),
            bbox_xywh=_array(ann["bbox"]), K=_array(img["K"]), kind=ann.get("kind", "body"),
            joint_set=joint_sets.get(ann["joint_set"]) if ann.get("joint_set") else None,
            joints_img_px=_array(ann.get("joints_img")), joints_cam_m=_array(ann.get("joints_cam")),
            joints_valid=_array(ann.get("joints_valid")), has_3d=bool(ann.get("has_3d", False)),
            body_model=ann.get("body_model"),
            body_params=None if params is None else {k: _array(v) for k, v in params.items()},
            body_gender=ann.get("body_gender", "neutral"), vertices_cam_m=vertices,
            fit_valid=bool(ann.get("fit_valid", False)), bbox_is_final=bool(ann.get("bbox_is_final", False)),
            root_depth_m=ann.get("root_depth_m"), vertex_flip_index=flip_index,
            sample_id=str(ann.get("sample_id", ann["id"])), dataset=ann.get("dataset", ""),
            extra=ann.get("extra", {})))
    return validate_records(records, str(path))


def load(root: str | os.PathLike, split: str = "train", **_) -> list[SampleRecord]:
    """Loader-registry entry: ``root`` is the dataset folder (the split is part of the folder the user picks)."""
    return read_dataset(root)


__all__ = ["write_dataset", "read_dataset", "load", "FORMAT_NAME", "FORMAT_VERSION", "ANNOTATION_FILE"]

"""Our on-disk dataset format: images + one COCO-style JSON (+ optional side arrays for meshes).

Layout of a dataset folder (documented in docs/datasets.md)::

    annotations.json      images, annotations, joint sets (see below)
    images/...            image files (``file_name`` is relative to the folder, or absolute)
    vertices_<V>.npy      optional (N_V, V, 3) float32 camera-space vertices in metres, one row per mesh
    flip_index_<name>.npy optional (V,) int64 vertex mirror maps, referenced by name

All 3D quantities are camera-frame metres (x right, y down, z forward); 2D quantities are pixels. Reading checks
the file against the format's schema first (:func:`check_annotations`: keys, types, choices, references, sizes; a
file that breaks it is refused with one line naming the file and the field), then gives :class:`SampleRecord`
objects; annotations with NaN/inf values or empty boxes are rejected with a count in the log.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

from ..record import DatasetError, SampleRecord, joint_set_to_dict, validate_records
from ...bodymodels.joint_sets import JointSet

log = logging.getLogger(__name__)

FORMAT_NAME = "i2lmesh-dataset"
FORMAT_VERSION = 1
ANNOTATION_FILE = "annotations.json"
UNITS = {"3d": "camera metres", "2d": "pixels"}
KINDS = ("body", "hand")
GENDERS = ("neutral", "male", "female")
# The body models a fit may name: (kind, pose values (axis-angle, every rotation), fewest and most shape values).
# SMPL and MANO pad fewer betas with zeros; Anny takes its 6 phenotypes. Anny body: 104 bones, Anny hand: 21.
BODY_MODELS: dict[str, tuple[str, int, int, int]] = {
    "smpl": ("body", 72, 1, 10), "mano": ("hand", 48, 1, 10), "anny": ("body", 104 * 3, 6, 6),
    "anny-hand": ("hand", 21 * 3, 6, 6)}
_TOP_KEYS = ("format", "version", "units", "info", "joint_sets", "images", "annotations")
_JOINT_SET_KEYS = ("name", "names", "root_index", "flip_pairs", "skeleton")
_IMAGE_KEYS = ("id", "file_name", "width", "height", "K")
_ANNOTATION_KEYS = ("id", "image_id", "sample_id", "dataset", "kind", "bbox", "bbox_is_final", "joint_set",
                    "joints_img", "joints_cam", "joints_valid", "has_3d", "body_model", "body_gender", "body_params",
                    "fit_valid", "vertices", "vertex_flip_index", "root_depth_m", "extra")


class DatasetFormatError(DatasetError):
    """annotations.json (or a side file) breaks the format's schema; one line naming the file, field and problem."""


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


def check_annotations(doc: object, path: Path, mmap: bool = True) -> list[dict]:
    """The schema of ``annotations.json`` (docs/datasets.md), checked in one place: returns each annotation's
    :class:`SampleRecord` fields (arrays made, defaults filled, side files opened), or raises
    :class:`DatasetFormatError` naming ``path``, the field (e.g. ``annotations[3].has_3d``) and the problem.

    Checked: keys (missing, unknown), types, choices (kind, body model, gender), references (image ids, joint sets,
    side files), sizes (joints against their joint set, fit parameters against their body model, vertex rows,
    flip maps) and ranges (image size, joint indices, validity in [0, 1], root depth > 0). NaN/inf numbers and
    empty boxes are not refused here: ``validate_records`` rejects those annotations with a count in the log."""
    root = path.parent

    def fail(where: str, problem: str) -> DatasetFormatError:
        return DatasetFormatError(f"{path}: {where}: {problem}")

    def mapping(value: object, where: str, keys: tuple[str, ...], required: tuple[str, ...]) -> dict:
        if not isinstance(value, dict):
            raise fail(where, f"must be a JSON object; got {type(value).__name__}")
        missing = [k for k in required if k not in value]
        if missing:
            raise fail(where, f"missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        unknown = [str(k) for k in value if k not in keys]
        if unknown:
            raise fail(where, f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; known: "
                              f"{', '.join(keys)}")
        return value

    def of_type(value: object, where: str, kinds: tuple[type, ...], what: str) -> object:
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            raise fail(where, f"must be {what}; got {value!r:.60}")
        return value

    def integer(value: object, where: str, low: int = 0, high: int | None = None) -> int:
        of_type(value, where, (int,), "an integer")
        if high is not None and not low <= value < high:
            raise fail(where, f"{value} is out of range [{low}, {high})")
        if value < low:
            raise fail(where, f"must be >= {low}; got {value}")
        return value

    def choice(value: object, where: str, allowed) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise fail(where, f"must be one of {', '.join(allowed)}; got {value!r:.60}")
        return value

    def array(value: object, where: str, shape: tuple[int, ...] | None = None, what: str = "numbers") -> np.ndarray:
        try:
            a = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise fail(where, f"must be an array of {what}") from None
        if shape is not None and a.shape != shape:
            raise fail(where, f"must have shape {shape}; got {a.shape}")
        return a

    side_arrays: dict[str, np.ndarray] = {}

    def side(name: object, where: str) -> np.ndarray:
        of_type(name, where, (str,), "a file name")
        if name not in side_arrays:
            file = root / name
            if not file.is_file():
                raise fail(where, f"side file {file} not found")
            try:
                side_arrays[name] = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise fail(where, f"{file} is not a readable .npy array ({exc})") from None
        return side_arrays[name]

    # ---- top level
    mapping(doc, "top level", _TOP_KEYS, ("format", "version", "images", "annotations"))
    if doc["format"] != FORMAT_NAME:
        raise fail("format", f"must be {FORMAT_NAME!r}; got {doc['format']!r:.60}")
    version = integer(doc["version"], "version", low=1)
    if version > FORMAT_VERSION:
        raise fail("version", f"format version {version}; this i2lmesh reads up to {FORMAT_VERSION}")
    if "units" in doc and doc["units"] != UNITS:
        raise fail("units", f"must be {UNITS} (the format stores camera metres and pixels); got {doc['units']!r:.80}")
    if "info" in doc:
        of_type(doc["info"], "info", (dict,), "a JSON object")

    # ---- joint sets
    joint_sets: dict[str, JointSet] = {}
    for key, entry in of_type(doc.get("joint_sets", {}), "joint_sets", (dict,), "a JSON object").items():
        where = f"joint_sets.{key}"
        mapping(entry, where, _JOINT_SET_KEYS, ("name", "names", "root_index"))
        if entry["name"] != key:
            raise fail(f"{where}.name", f"must be its key {key!r}; got {entry['name']!r:.60}")
        names = of_type(entry["names"], f"{where}.names", (list,), "a list of joint names")
        if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise fail(f"{where}.names", "must be a non-empty list of distinct joint names")
        count = len(names)
        root_index = integer(entry["root_index"], f"{where}.root_index", 0, count)
        pairs = {}
        for field in ("flip_pairs", "skeleton"):
            items = of_type(entry.get(field, []), f"{where}.{field}", (list,), "a list of [i, j] index pairs")
            for n, pair in enumerate(items):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise fail(f"{where}.{field}[{n}]", f"must be an [i, j] index pair; got {pair!r:.60}")
                for index in pair:
                    integer(index, f"{where}.{field}[{n}]", 0, count)
            pairs[field] = tuple(tuple(p) for p in items)
        joint_sets[key] = JointSet(name=key, names=tuple(names), root_index=root_index, **pairs)

    # ---- images
    images: dict = {}
    for i, img in enumerate(of_type(doc["images"], "images", (list,), "a list")):
        where = f"images[{i}]"
        mapping(img, where, _IMAGE_KEYS, _IMAGE_KEYS)
        image_id = of_type(img["id"], f"{where}.id", (int, str), "an integer or a string")
        if image_id in images:
            raise fail(f"{where}.id", f"{image_id!r} is used by two images")
        file_name = of_type(img["file_name"], f"{where}.file_name", (str,), "a file name")
        if not file_name:
            raise fail(f"{where}.file_name", "must not be empty")
        size = (integer(img["width"], f"{where}.width", 1), integer(img["height"], f"{where}.height", 1))
        file_name = Path(file_name)
        images[image_id] = (str(file_name if file_name.is_absolute() else root / file_name), size,
                            array(img["K"], f"{where}.K", (3, 3)))

    # ---- annotations
    records = []
    for i, ann in enumerate(of_type(doc["annotations"], "annotations", (list,), "a list")):
        where = f"annotations[{i}]"
        mapping(ann, where, _ANNOTATION_KEYS, ("id", "image_id", "bbox"))
        of_type(ann["id"], f"{where}.id", (int, str), "an integer or a string")
        image_id = ann["image_id"]
        if not isinstance(image_id, (int, str)) or isinstance(image_id, bool) or image_id not in images:
            raise fail(f"{where}.image_id", f"{image_id!r:.60} is not the id of any entry of images")
        image_path, image_size, K = images[image_id]
        kind = choice(ann.get("kind", "body"), f"{where}.kind", KINDS)
        flags = {name: of_type(ann.get(name, False), f"{where}.{name}", (bool,), "true or false")
                 for name in ("bbox_is_final", "has_3d", "fit_valid")}
        fields: dict = {"image_path": image_path, "image_size": image_size, "K": K, "kind": kind, **flags,
                        "bbox_xywh": array(ann["bbox"], f"{where}.bbox", (4,)),
                        "sample_id": str(of_type(ann.get("sample_id", ann["id"]), f"{where}.sample_id", (str, int),
                                                 "a string")),
                        "dataset": of_type(ann.get("dataset", ""), f"{where}.dataset", (str,), "a string"),
                        "extra": of_type(ann.get("extra", {}), f"{where}.extra", (dict,), "a JSON object")}
        # joints, in the annotation's joint set
        joint_set = ann.get("joint_set")
        joints = {name: ann.get(key) for name, key in (("joints_img_px", "joints_img"), ("joints_cam_m", "joints_cam"),
                                                         ("joints_valid", "joints_valid"))}
        if joint_set is None:
            given = [key for key in ("joints_img", "joints_cam", "joints_valid") if ann.get(key) is not None]
            if given:
                raise fail(f"{where}.joint_set", f"missing: {', '.join(given)} given without the joint set they use")
        else:
            if not isinstance(joint_set, str) or joint_set not in joint_sets:
                raise fail(f"{where}.joint_set", f"{joint_set!r:.60} is not defined in joint_sets (defined: "
                                                 f"{', '.join(joint_sets) or 'none'})")
            fields["joint_set"] = joint_sets[joint_set]
            count = len(joint_sets[joint_set])
            for (name, value), key, width in zip(joints.items(), ("joints_img", "joints_cam", "joints_valid"),
                                                 (2, 3, None)):
                if value is not None:
                    shape = (count,) if width is None else (count, width)
                    fields[name] = array(value, f"{where}.{key}", shape)
            valid = fields.get("joints_valid")
            if valid is not None and not np.all((valid >= 0) & (valid <= 1)):
                raise fail(f"{where}.joints_valid", "must be in [0, 1] per joint (1 = annotated)")
        # the fit: body-model parameters and / or stored vertices
        body_model, params = ann.get("body_model"), ann.get("body_params")
        fields["body_gender"] = choice(ann.get("body_gender", "neutral"), f"{where}.body_gender", GENDERS)
        if body_model is not None:
            fields["body_model"] = choice(body_model, f"{where}.body_model", BODY_MODELS)
            model_kind, pose_size, shape_min, shape_max = BODY_MODELS[body_model]
            if model_kind != kind:
                raise fail(f"{where}.body_model", f"{body_model!r} is a {model_kind} model but kind is {kind!r}")
        if params is not None:
            if body_model is None:
                raise fail(f"{where}.body_model", "missing: body_params given without the body model they drive")
            mapping(params, f"{where}.body_params", ("pose", "shape", "trans"), ("pose",))
            arrays = {k: array(v, f"{where}.body_params.{k}") for k, v in params.items() if v is not None}
            if "pose" not in arrays:
                raise fail(f"{where}.body_params.pose", "must be given (null)")
            sizes = {"pose": (pose_size, pose_size), "shape": (shape_min, shape_max), "trans": (3, 3)}
            for key, a in arrays.items():
                low, high = sizes[key]
                if not low <= a.size <= high:
                    want = str(low) if low == high else f"{low} to {high}"
                    raise fail(f"{where}.body_params.{key}", f"{body_model} takes {want} values; got {a.size}")
            fields["body_params"] = arrays
        vertices = ann.get("vertices")
        if vertices is not None:
            mapping(vertices, f"{where}.vertices", ("file", "row"), ("file", "row"))
            table = side(vertices["file"], f"{where}.vertices.file")
            if table.ndim != 3 or table.shape[2] != 3 or not np.issubdtype(table.dtype, np.floating):
                raise fail(f"{where}.vertices.file", f"{vertices['file']} must hold (N, V, 3) floats; got "
                                                     f"{table.dtype} {table.shape}")
            stem = Path(vertices["file"]).stem
            if stem.startswith("vertices_") and stem[9:].isdigit() and int(stem[9:]) != table.shape[1]:
                raise fail(f"{where}.vertices.file", f"{vertices['file']} holds {table.shape[1]}-vertex meshes")
            fields["vertices_cam_m"] = table[integer(vertices["row"], f"{where}.vertices.row", 0, table.shape[0])]
        flip = ann.get("vertex_flip_index")
        if flip is not None:
            mapping(flip, f"{where}.vertex_flip_index", ("file",), ("file",))
            index = np.asarray(side(flip["file"], f"{where}.vertex_flip_index.file"))
            num_v = len(fields["vertices_cam_m"]) if "vertices_cam_m" in fields else index.size
            if (index.shape != (num_v,) or not np.issubdtype(index.dtype, np.integer)
                    or (num_v and (index.min() < 0 or index.max() >= num_v))):
                raise fail(f"{where}.vertex_flip_index.file", f"{flip['file']} must be {num_v} vertex indices in "
                                                              f"[0, {num_v}) (one per mesh vertex); got {index.dtype} "
                                                              f"{index.shape}")
            fields["vertex_flip_index"] = index
        depth = ann.get("root_depth_m")
        if depth is not None:
            of_type(depth, f"{where}.root_depth_m", (int, float), "a number")
            if not (np.isfinite(depth) and depth > 0):
                raise fail(f"{where}.root_depth_m", f"must be a depth in front of the camera (> 0 m); got {depth}")
            fields["root_depth_m"] = float(depth)
        records.append(fields)
    return records


def read_dataset(root: str | os.PathLike, mmap: bool = True) -> list[SampleRecord]:
    """Read a dataset folder (or its annotations.json) into records; rejected annotations are counted in the log.

    The file is checked against the format's schema first (:func:`check_annotations`); a file that breaks it
    raises :class:`DatasetFormatError` (a ValueError) naming the file and the field. Vertex arrays are
    memory-mapped (``mmap``): a record's ``vertices_cam_m`` is a lazy row view.
    """
    root = Path(root)
    path = root if root.is_file() else root / ANNOTATION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {ANNOTATION_FILE} in {root}: not an i2lmesh dataset folder")
    try:
        doc = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise DatasetFormatError(f"{path} is not a text (JSON) file") from None
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{path} is not valid JSON: {exc}") from None
    records = [SampleRecord(**fields) for fields in check_annotations(doc, path, mmap)]
    return validate_records(records, str(path))


def load(root: str | os.PathLike, split: str = "train", **_) -> list[SampleRecord]:
    """Loader-registry entry: ``root`` is the dataset folder (the split is part of the folder the user picks)."""
    return read_dataset(root)


__all__ = ["write_dataset", "read_dataset", "check_annotations", "load", "DatasetFormatError", "FORMAT_NAME",
           "FORMAT_VERSION", "ANNOTATION_FILE", "BODY_MODELS"]

"""SURREAL converted COCO-style by the reference's ``tool/SURREAL/surreal2coco.py`` (official_spec.md 5.6).

The reference has no SURREAL loader, only the converter; this reads its output: {images: id, width (320), height
(240), file_name, cam_param {focal (600, 600), princpt (160, 120)}; annotations: id, image_id, joint_img (24x2 px),
joint_cam (24x3, camera metres), bbox (1.2 x the extent of the joints inside the image), smpl_param {pose, shape,
trans, gender "female"/"male"}} (left/right already un-mirrored by the converter).
The converter walks ``<root>/{train,val}/<run>/<sequence>/<clip>.mp4`` (the official ``test`` folder is skipped:
"use val as test following BodyNet") and writes ``<root>/train.json`` and ``<root>/val.json``, with ``file_name``
= ``<run>/<sequence>/<clip>_<frame:03d>.jpg`` relative to the split folder, where it extracts the frames. So
images are ``<root>/<split>/<file_name>``; a folder ``images/`` (or ``root`` itself) is used when the split folder
is absent. The json may also sit under ``data/`` or ``annotations/``, or be named ``surreal_<split>.json``.
Splits: train (1 fps) and test = val (the middle frame of each BodyNet validation clip).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..record import SMPL_24, SampleRecord
from . import read_json
from ._common import RejectCounter, image_dir, k_from, smpl_params

SPLITS = {"train": "train", "test": "val", "val": "val"}


def annotation_file(root: Path, split: str) -> Path:
    name = SPLITS[split]
    candidates = [folder / f"{prefix}{name}.json" for folder in (root, root / "data", root / "annotations")
                  for prefix in ("", "surreal_", "SURREAL_")]
    for path in candidates:
        if path.is_file():
            return path
    return candidates[0]  # the converter's name; read_json reports it as missing


def load(root: str | Path, split: str = "train", **_) -> list[SampleRecord]:
    if split not in SPLITS:
        raise ValueError(f"SURREAL split must be 'train' or 'test' (BodyNet val), got {split!r}")
    root = Path(root)
    data = read_json(annotation_file(root, split))
    images = image_dir(root, SPLITS[split], "images", ".")
    image_by_id = {img["id"]: img for img in data["images"]}
    rejects = RejectCounter(f"SURREAL {split}")
    records: list[SampleRecord] = []
    for ann in data["annotations"]:
        img = image_by_id[ann["image_id"]]
        cam = img["cam_param"]
        joints_img = np.asarray(ann["joint_img"], np.float64).reshape(24, 2)
        joints_cam = np.asarray(ann["joint_cam"], np.float64).reshape(24, 3)
        p = ann["smpl_param"]
        path = images / img["file_name"]
        if not rejects.check(str(path), joints_img, joints_cam, p["pose"], p["shape"], p["trans"], cam["focal"],
                             cam["princpt"], bbox=ann["bbox"]):
            continue
        gender = {"m": "male", "f": "female"}.get(str(p.get("gender", "neutral"))[:1], "neutral")
        records.append(SampleRecord(
            image_path=str(path), image_size=(int(img["width"]), int(img["height"])),
            bbox_xywh=np.asarray(ann["bbox"], np.float64), K=k_from(cam["focal"], cam["princpt"]), kind="body",
            joint_set=SMPL_24, joints_img_px=joints_img, joints_cam_m=joints_cam, joints_valid=np.ones(24),
            has_3d=True, body_model="smpl", body_params=smpl_params(p), body_gender=gender, fit_valid=True,
            sample_id=str(ann["id"]), dataset="surreal"))
    rejects.report(len(records))
    return records

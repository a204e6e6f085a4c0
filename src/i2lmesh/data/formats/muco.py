"""MuCo-3DHP in the files the reference reads (official_spec.md 5.3); train split only.

``root`` is the MuCo folder: ``data/MuCo-3DHP.json`` (images: id, width, height, file_name, f, c; annotations:
image_id, keypoints_cam (21x3, mm), keypoints_img (21x2 px), bbox), ``data/smpl_param.json`` (str(ann_id) ->
{pose, shape, trans}, camera metres) and the images under ``data/``. Only the person closest to the camera
(smallest root depth) is used per image. Joints are converted from mm to metres.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..record import MUCO_21, SampleRecord
from . import read_json
from ._common import RejectCounter, k_from, smpl_params


def load(root: str | Path, split: str = "train", **_) -> list[SampleRecord]:
    if split != "train":
        raise ValueError(f"MuCo-3DHP has only a train split (the reference asserts so), got {split!r}")
    root = Path(root)
    data = read_json(root / "data" / "MuCo-3DHP.json")
    fits_path = root / "data" / "smpl_param.json"
    fits = read_json(fits_path) if fits_path.is_file() else {}
    image_by_id = {img["id"]: img for img in data["images"]}
    closest: dict[int, dict] = {}
    root_index = MUCO_21.root_index
    for ann in data["annotations"]:
        depth = np.asarray(ann["keypoints_cam"], np.float64).reshape(21, 3)[root_index, 2]
        best = closest.get(ann["image_id"])
        if best is None or depth < best["_depth"]:
            closest[ann["image_id"]] = {**ann, "_depth": depth}
    rejects = RejectCounter("MuCo-3DHP")
    records: list[SampleRecord] = []
    for image_id, ann in closest.items():
        img = image_by_id[image_id]
        joints_cam = np.asarray(ann["keypoints_cam"], np.float64).reshape(21, 3) / 1000.0
        joints_img = np.asarray(ann["keypoints_img"], np.float64).reshape(21, 2)
        path = root / "data" / img["file_name"]
        if not rejects.check(str(path), joints_cam, joints_img, img["f"], img["c"], bbox=ann["bbox"]):
            continue
        record = SampleRecord(image_path=str(path), image_size=(int(img["width"]), int(img["height"])),
                              bbox_xywh=np.asarray(ann["bbox"], np.float64), K=k_from(img["f"], img["c"]),
                              kind="body", joint_set=MUCO_21, joints_img_px=joints_img, joints_cam_m=joints_cam,
                              joints_valid=np.ones(21), has_3d=True, sample_id=str(ann["id"]), dataset="muco")
        fit = fits.get(str(ann["id"]))
        if fit is not None and rejects.check(f"{path} (SMPL fit)", fit["pose"], fit["shape"], fit["trans"]):
            record.body_model, record.body_params, record.fit_valid = "smpl", smpl_params(fit), True
        records.append(record)
    rejects.report(len(records))
    return records

"""MSCOCO 2017 keypoints with the SMPLify-X fits, in the files the reference reads (official_spec.md 5.2).

``root`` is the MSCOCO folder: ``images/{train2017,val2017}/``, ``annotations/person_keypoints_{train,val}2017.json``,
``annotations/coco_smplifyx_train.json`` (str(ann_id) -> {smpl_param {pose, shape, trans}, cam_param {focal,
princpt}}, camera frame, metres) and for the test split ``rootnet_output/bbox_root_coco_output.json``.
Crowd annotations and those without keypoints are skipped. Joints: the 17 COCO keypoints plus a Pelvis (mean of
the hips, valid only if both are), 2D only (has_3d False). Intrinsics: the fit's camera when there is a fit,
otherwise f = 1500 px at the image centre (also for the test split, as the reference).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...geometry.camera import default_intrinsics
from ..record import COCO_18, SampleRecord
from . import read_json
from ._common import RejectCounter, apply_rootnet, image_dir, k_from, rootnet_entries, smpl_params

SPLIT_DIRS = {"train": "train2017", "test": "val2017", "val": "val2017"}


def add_pelvis(joints_uv: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Append the Pelvis = mean of L_Hip (11) and R_Hip (12); valid = product of the hips' validity."""
    pelvis = (joints_uv[11] + joints_uv[12]) / 2.0
    return np.concatenate([joints_uv, pelvis[None]]), np.concatenate([valid, [valid[11] * valid[12]]])


def load(root: str | Path, split: str = "train", use_rootnet: bool = True, **_) -> list[SampleRecord]:
    if split not in SPLIT_DIRS:
        raise ValueError(f"MSCOCO split must be 'train' or 'test' (val2017), got {split!r}")
    root = Path(root)
    sub = SPLIT_DIRS[split]
    data = read_json(root / "annotations" / f"person_keypoints_{sub}.json")
    fits_path = root / "annotations" / "coco_smplifyx_train.json"
    fits = read_json(fits_path) if fits_path.is_file() else {}
    images = image_dir(root, "images") / sub
    image_by_id = {img["id"]: img for img in data["images"]}
    rejects = RejectCounter(f"MSCOCO {split}")
    records: list[SampleRecord] = []
    if split != "train" and use_rootnet:
        rootnet = rootnet_entries(root / "rootnet_output" / "bbox_root_coco_output.json")
        if rootnet is not None:  # the test split is RootNet's detections on val2017 images
            for image_id, entry in rootnet.items():
                img = image_by_id.get(image_id)
                if img is None:
                    continue
                w, h = int(img["width"]), int(img["height"])
                record = SampleRecord(image_path=str(images / img["file_name"]), image_size=(w, h),
                                      bbox_xywh=np.asarray(entry["bbox"], np.float64), K=default_intrinsics(w, h),
                                      sample_id=str(image_id), dataset="coco")
                if rejects.check(record.image_path, entry["root_cam"], bbox=entry["bbox"]):
                    apply_rootnet(record, entry)
                    records.append(record)
            rejects.report(len(records))
            return records
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) == 0:
            continue
        img = image_by_id[ann["image_id"]]
        w, h = int(img["width"]), int(img["height"])
        kp = np.asarray(ann["keypoints"], np.float64).reshape(17, 3)
        path = images / img["file_name"]
        if not rejects.check(str(path), kp, bbox=ann["bbox"]):
            continue
        joints, valid = add_pelvis(kp[:, :2], (kp[:, 2] > 0).astype(np.float64))
        record = SampleRecord(image_path=str(path), image_size=(w, h), bbox_xywh=np.asarray(ann["bbox"], np.float64),
                              K=default_intrinsics(w, h), kind="body", joint_set=COCO_18, joints_img_px=joints,
                              joints_valid=valid, has_3d=False, sample_id=str(ann["id"]), dataset="coco")
        fit = fits.get(str(ann["id"])) if split == "train" else None
        if fit is not None and rejects.check(f"{path} (SMPL fit)", fit["smpl_param"]["pose"],
                                             fit["smpl_param"]["shape"], fit["smpl_param"]["trans"],
                                             fit["cam_param"]["focal"], fit["cam_param"]["princpt"]):
            record.K = k_from(fit["cam_param"]["focal"], fit["cam_param"]["princpt"])
            record.body_model, record.body_params, record.fit_valid = "smpl", smpl_params(fit["smpl_param"]), True
        records.append(record)
    rejects.report(len(records))
    return records

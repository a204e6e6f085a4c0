"""3DPW in the files the reference reads (official_spec.md 5.4): test (and validation/train) json, no flip pairs.

``root`` is the PW3D folder: ``data/3DPW_{train,validation,test}.json`` (images: id, sequence, file_name, width,
height, cam_param {focal, princpt}; annotations: id, image_id, bbox, smpl_param {pose, shape, trans, gender} with
the camera rotation merged into the root pose and trans), images under ``data/imageFiles/<sequence>/``, and
``rootnet_output/bbox_root_pw3d_output.json`` keyed by ann_id, root_cam in **metres** (the reference adds it to
metre offsets). The ground truth is the **gendered** SMPL mesh in camera metres (record.body_gender); evaluation
joints come from the Human3.6M regressor on that mesh.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..record import SampleRecord
from . import read_json
from ._common import RejectCounter, apply_rootnet, k_from, rootnet_entries, rootnet_unit, smpl_params

SPLIT_FILES = {"test": "test", "val": "validation", "validation": "validation", "train": "train"}


def load(root: str | Path, split: str = "test", use_rootnet: bool = True, **_) -> list[SampleRecord]:
    if split not in SPLIT_FILES:
        raise ValueError(f"3DPW split must be one of {', '.join(SPLIT_FILES)}, got {split!r}")
    root = Path(root)
    data = read_json(root / "data" / f"3DPW_{SPLIT_FILES[split]}.json")
    rootnet = rootnet_entries(root / "rootnet_output" / "bbox_root_pw3d_output.json", key="ann_id") \
        if split == "test" and use_rootnet else None
    depth_unit = rootnet_unit(rootnet, "pw3d", "3DPW RootNet")
    image_by_id = {img["id"]: img for img in data["images"]}
    rejects = RejectCounter(f"3DPW {split}")
    records: list[SampleRecord] = []
    for ann in data["annotations"]:
        img = image_by_id[ann["image_id"]]
        path = root / "data" / "imageFiles" / img["sequence"] / img["file_name"]
        p = ann["smpl_param"]
        cam = img["cam_param"]
        if not rejects.check(str(path), p["pose"], p["shape"], p["trans"], cam["focal"], cam["princpt"],
                             bbox=ann["bbox"]):
            continue
        gender = {"m": "male", "f": "female"}.get(str(p.get("gender", "neutral"))[:1], "neutral")
        record = SampleRecord(image_path=str(path), image_size=(int(img["width"]), int(img["height"])),
                              bbox_xywh=np.asarray(ann["bbox"], np.float64), K=k_from(cam["focal"], cam["princpt"]),
                              kind="body", has_3d=True, body_model="smpl", body_params=smpl_params(p),
                              body_gender=gender, fit_valid=True, sample_id=str(ann["id"]), dataset="pw3d",
                              extra={"sequence": img["sequence"]})
        if rootnet is not None:
            apply_rootnet(record, rootnet.get(int(ann["id"])), depth_unit)
        records.append(record)
    rejects.report(len(records))
    return records

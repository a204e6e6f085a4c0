"""FreiHAND in the files the reference reads (official_spec.md 5.5): train and eval, right hand, MANO.

``root`` is the FreiHAND folder, files under ``data/``: train ``freihand_train_coco.json`` (images: id,
file_name, width, height, db_idx; annotations: id, image_id, bbox) and ``freihand_train_data.json`` (str(db_idx) ->
{cam_param {focal, princpt}, mano_param {pose 48, shape 10, trans 3} in the camera frame, joint_3d (21x3, m)});
eval ``freihand_eval_coco.json``, ``freihand_eval_data.json`` (-> {cam_param, scale}) and
``rootnet_output/bbox_root_freihand_output.json`` (keyed by image_id, root_cam in **metres**, as the reference adds it
to metre offsets). Images are ``data/<file_name>``. As the reference there are no "orig" joint targets: the MANO
fit is the target (joint_3d is kept in ``extra["joint_3d_m"]``). Hands are never flipped.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..record import SampleRecord
from . import read_json
from ._common import RejectCounter, apply_rootnet, k_from, rootnet_entries, rootnet_unit, smpl_params

SPLITS = {"train": "train", "test": "eval", "eval": "eval"}


def load(root: str | Path, split: str = "train", use_rootnet: bool = True, **_) -> list[SampleRecord]:
    if split not in SPLITS:
        raise ValueError(f"FreiHAND split must be 'train' or 'test' (eval), got {split!r}")
    root = Path(root)
    name = SPLITS[split]
    coco = read_json(root / "data" / f"freihand_{name}_coco.json")
    db = read_json(root / "data" / f"freihand_{name}_data.json")
    rootnet = rootnet_entries(root / "rootnet_output" / "bbox_root_freihand_output.json") \
        if name == "eval" and use_rootnet else None
    depth_unit = rootnet_unit(rootnet, "freihand", "FreiHAND RootNet")
    image_by_id = {img["id"]: img for img in coco["images"]}
    rejects = RejectCounter(f"FreiHAND {name}")
    records: list[SampleRecord] = []
    for ann in coco["annotations"]:
        img = image_by_id[ann["image_id"]]
        entry = db[str(img["db_idx"])]
        cam = entry["cam_param"]
        path = root / "data" / img["file_name"]
        if not rejects.check(str(path), cam["focal"], cam["princpt"], bbox=ann["bbox"]):
            continue
        record = SampleRecord(image_path=str(path), image_size=(int(img["width"]), int(img["height"])),
                              bbox_xywh=np.asarray(ann["bbox"], np.float64), K=k_from(cam["focal"], cam["princpt"]),
                              kind="hand", sample_id=str(ann["id"]), dataset="freihand",
                              extra={"db_idx": int(img["db_idx"])})
        if name == "train":
            m = entry["mano_param"]
            if not rejects.check(f"{path} (MANO)", m["pose"], m["shape"], m["trans"], entry.get("joint_3d")):
                continue
            record.body_model, record.body_params, record.fit_valid = "mano", smpl_params(m), True
            record.has_3d = True
            if entry.get("joint_3d") is not None:
                record.extra["joint_3d_m"] = np.asarray(entry["joint_3d"], np.float64).tolist()
        else:
            record.extra["scale"] = float(entry["scale"]) if "scale" in entry else None
            if rootnet is not None:
                apply_rootnet(record, rootnet.get(int(ann["image_id"])), depth_unit)
        records.append(record)
    rejects.report(len(records))
    return records

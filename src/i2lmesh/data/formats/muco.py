"""MuCo-3DHP in the files the reference reads (official_spec.md 5.3); train split only.

``root`` is the MuCo folder: ``data/MuCo-3DHP.json`` (images: id, width, height, file_name, f, c; annotations:
image_id, keypoints_cam (21x3, mm), keypoints_img (21x2 px), bbox), ``data/smpl_param.json`` (str(ann_id) ->
{pose, shape, trans}, camera metres) and the images under ``data/``. Only the person closest to the camera
(smallest root depth) is used per image. Joints are converted from mm to metres.

Fit rejection (the reference's ``is_valid_fit``): the fit's Human3.6M-regressed joints vs the MuCo joints with
Human3.6M names (14), translation-aligned; error > 25 mm gives ``fit_valid = False`` (``extra["fit_error_mm"]``).
The regressor is the reference's ``data/Human36M/J_regressor_h36m_correct.npy``: looked for beside this folder
(``../Human36M/``), in it, or given as ``fit_regressor``; it also needs the SMPL model (``bank`` / ``model_path``).
Without them the fits are kept unchecked, with a warning.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...bodymodels.joint_sets import H36M_17
from ..record import MUCO_21, SampleRecord
from . import read_json
from ._common import (H36M_REGRESSOR_FILE, RejectCounter, body_model_bank, check_3d_fits, find_fit_regressor, k_from,
                      smpl_params, warn_unchecked_fits)


def load(root: str | Path, split: str = "train", bank=None, model_path: str | None = None,
         fit_regressor: str | None = None, check_fits: bool = True, **_) -> list[SampleRecord]:
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
    with_fit: list[SampleRecord] = []
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
            with_fit.append(record)
        records.append(record)
    rejects.report(len(records))
    if check_fits and with_fit:
        bank = body_model_bank(bank, model_path)
        smpl_ok = bank is not None and bank.get("smpl", "neutral") is not None
        candidates = [fit_regressor, root.parent / "Human36M" / H36M_REGRESSOR_FILE, root / H36M_REGRESSOR_FILE,
                      root / "data" / H36M_REGRESSOR_FILE]
        regressor = find_fit_regressor(candidates, bank, "h36m17", len(H36M_17)) if smpl_ok else None
        if regressor is not None:
            check_3d_fits(with_fit, bank, regressor, "MuCo-3DHP")
        else:
            warn_unchecked_fits("MuCo-3DHP", len(with_fit), "no SMPL model given" if not smpl_ok else
                                f"no {H36M_REGRESSOR_FILE} in {root.parent / 'Human36M'} or {root}")
    return records

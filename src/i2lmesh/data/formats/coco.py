"""MSCOCO 2017 keypoints with the SMPLify-X fits, in the files the reference reads (official_spec.md 5.2).

``root`` is the MSCOCO folder: ``images/{train2017,val2017}/``, ``annotations/person_keypoints_{train,val}2017.json``,
``annotations/coco_smplifyx_train.json`` (str(ann_id) -> {smpl_param {pose, shape, trans}, cam_param {focal,
princpt}}, camera frame, metres), ``J_regressor_coco_hip_smpl.npy`` (for the fit check) and for the test split
``rootnet_output/bbox_root_coco_output.json`` (a list, one entry per detected person, root_cam in millimetres).
Crowd annotations and those without keypoints are skipped. Joints: the 17 COCO keypoints plus a Pelvis (mean of
the hips, valid only if both are), 2D only (has_3d False). Intrinsics: the fit's camera when there is a fit,
otherwise f = 1500 px at the image centre (also for the test split, as the reference).

Fit rejection (the reference's ``is_valid_fit``): mean 2D distance between the annotated joints and the projected
COCO-regressed fit joints in the 64 x 64 heatmap grid of the (unaugmented) crop; above 3.0 gives
``fit_valid = False`` (``extra["fit_error_hm"]``). Needs the SMPL model (``bank`` / ``model_path``) and the
regressor (``root/J_regressor_coco_hip_smpl.npy`` or ``fit_regressor``); without them the fits are kept unchecked,
with a warning. The fit's Pelvis is the mean of its projected hips; ``pelvis_bug=True`` reproduces the reference,
which adds the Pelvis to the 3D joints before projecting (docs/datasets.md, "Differences from the reference").
The test split has one sample per RootNet entry (several per image), ``sample_id`` "<image_id>_<k>".
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...geometry.camera import default_intrinsics
from ..record import COCO_18, SampleRecord
from . import read_json
from ._common import (COCO_17_NAMES, COCO_REGRESSOR_FILE, FIT_THRESHOLD_HM, RejectCounter, apply_rootnet,
                      body_model_bank, coco_fit_error_hm, find_fit_regressor, image_dir, k_from, regressor_matches,
                      report_rejected_fits, rootnet_list, rootnet_unit, smpl_params, smpl_vertices,
                      warn_unchecked_fits)

SPLIT_DIRS = {"train": "train2017", "test": "val2017", "val": "val2017"}


def add_pelvis(joints_uv: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Append the Pelvis = mean of L_Hip (11) and R_Hip (12); valid = product of the hips' validity."""
    pelvis = (joints_uv[11] + joints_uv[12]) / 2.0
    return np.concatenate([joints_uv, pelvis[None]]), np.concatenate([valid, [valid[11] * valid[12]]])


def load(root: str | Path, split: str = "train", use_rootnet: bool = True, bank=None, model_path: str | None = None,
         fit_regressor: str | None = None, check_fits: bool = True, pelvis_bug: bool = False,
         **_) -> list[SampleRecord]:
    """Records of one split. bank / model_path: SMPL for the fit check; fit_regressor: the 17 x 6890 COCO
    regressor (default ``root/J_regressor_coco_hip_smpl.npy``); check_fits=False keeps every fit;
    pelvis_bug=True measures the fit error as the reference does (3D pelvis before projection)."""
    if split not in SPLIT_DIRS:
        raise ValueError(f"MSCOCO split must be 'train' or 'test' (val2017), got {split!r}")
    root = Path(root)
    sub = SPLIT_DIRS[split]
    data = read_json(root / "annotations" / f"person_keypoints_{sub}.json")
    images = image_dir(root, "images") / sub
    image_by_id = {img["id"]: img for img in data["images"]}
    rejects = RejectCounter(f"MSCOCO {split}")
    records: list[SampleRecord] = []
    if split != "train" and use_rootnet:
        rootnet = rootnet_list(root / "rootnet_output" / "bbox_root_coco_output.json")
        if rootnet is not None:  # the test split: one sample per RootNet detection on a val2017 image
            unit = rootnet_unit(rootnet, "coco", "MSCOCO RootNet")
            per_image: dict[int, int] = {}
            for entry in rootnet:
                image_id = int(entry["image_id"])
                img = image_by_id.get(image_id)
                if img is None:
                    continue
                k = per_image[image_id] = per_image.get(image_id, -1) + 1
                w, h = int(img["width"]), int(img["height"])
                record = SampleRecord(image_path=str(images / img["file_name"]), image_size=(w, h),
                                      bbox_xywh=np.asarray(entry["bbox"], np.float64), K=default_intrinsics(w, h),
                                      sample_id=f"{image_id}_{k}", dataset="coco", extra={"image_id": image_id})
                if rejects.check(record.image_path, entry["root_cam"], bbox=entry["bbox"]):
                    apply_rootnet(record, entry, unit)
                    records.append(record)
            rejects.report(len(records))
            return records
    fits_path = root / "annotations" / "coco_smplifyx_train.json"
    fits = read_json(fits_path) if fits_path.is_file() and split == "train" else {}
    with_fit: list[SampleRecord] = []
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
        fit = fits.get(str(ann["id"]))
        if fit is not None and rejects.check(f"{path} (SMPL fit)", fit["smpl_param"]["pose"],
                                             fit["smpl_param"]["shape"], fit["smpl_param"]["trans"],
                                             fit["cam_param"]["focal"], fit["cam_param"]["princpt"]):
            record.K = k_from(fit["cam_param"]["focal"], fit["cam_param"]["princpt"])
            record.body_model, record.body_params, record.fit_valid = "smpl", smpl_params(fit["smpl_param"]), True
            with_fit.append(record)
        records.append(record)
    rejects.report(len(records))
    if check_fits and with_fit:
        bank = body_model_bank(bank, model_path)
        smpl_ok = bank is not None and bank.get("smpl", "neutral") is not None
        regressor = find_fit_regressor([fit_regressor, root / COCO_REGRESSOR_FILE], bank, None, len(COCO_17_NAMES)) \
            if smpl_ok else None
        if regressor is not None:
            check_coco_fits(with_fit, bank, regressor, pelvis_bug, f"MSCOCO {split}")
        else:
            warn_unchecked_fits(f"MSCOCO {split}", len(with_fit), "no SMPL model given" if not smpl_ok else
                                f"no {COCO_REGRESSOR_FILE} in {root} and no fit_regressor given")
    return records


def check_coco_fits(records: list[SampleRecord], bank, regressor: np.ndarray, pelvis_bug: bool, source: str) -> None:
    """Set ``fit_valid`` (error <= 3.0 heatmap bins) and ``extra["fit_error_hm"]``, as the reference's MSCOCO
    ``get_fitting_error`` on the sample at scale 1, no rotation, no flip."""
    meshes = smpl_vertices(bank, [r.body_params for r in records])
    rejected = 0
    for record, verts in zip(records, meshes):
        regressor_matches(regressor, verts, source)
        error = coco_fit_error_hm(record.joints_img_px, record.joints_valid, regressor @ verts, record.K,
                                  record.bbox_xywh, record.image_size, pelvis_bug)
        if error is None:  # unusable box (the sample is skipped when built) or nothing annotated
            continue
        record.extra["fit_error_hm"] = error
        record.fit_valid = not error > FIT_THRESHOLD_HM
        rejected += not record.fit_valid
    report_rejected_fits(source, rejected, len(records), f"{FIT_THRESHOLD_HM:g} heatmap bins")

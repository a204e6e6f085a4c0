"""Human3.6M in the files the reference reads (official_spec.md 5.1).

``root`` is the Human36M folder: ``images/``, ``annotations/Human36M_subject{S}_data.json``, ``_camera.json``,
``_joint_3d.json``, ``_smpl_param.json``, ``J_regressor_h36m_correct.npy`` (for the fit check) and for the test split
``rootnet_output/bbox_root_human36m_output.json`` (root_cam in millimetres).
Split train: subjects 1, 5, 6, 7, 8, every 5th frame; test: subjects 9, 11, every 64th frame, camera 4 only.
Each per-subject file is keyed without the subject (the reference stores each file under its subject itself):
camera [cam_idx] -> {R, t (mm), f, c}; joints and SMPL fits [action_idx][subaction_idx][frame_idx] -> 17x3 world
mm / {pose 72, shape 10, trans 3}. Joints are converted from world millimetres to camera metres (X_cam = R X + t).
The SMPL fits are stored in world coordinates (metres); turning them into camera coordinates needs the shaped root
joint J0, so the fits are used only when a body-model bank (or ``model_path``) for SMPL is given: root := R root,
trans := R trans + t - J0 + R J0.

Fit rejection (the reference's ``is_valid_fit``): a fit whose Human3.6M-regressed joints are more than 25 mm (mean,
translation-aligned) from the annotated joints gets ``fit_valid = False``; the error is kept in
``extra["fit_error_mm"]``. It needs the regressor (``J_regressor_h36m_correct.npy`` in ``root``, ``fit_regressor``,
or an SMPL model with an "h36m17" regressor); without one the fits are kept unchecked, with a warning.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...bodymodels.joint_sets import H36M_17
from ..record import SampleRecord
from . import read_json
from ._common import (H36M_REGRESSOR_FILE, RejectCounter, apply_rootnet, body_model_bank,
                      check_3d_fits, find_fit_regressor, image_dir, k_from, log, project, rootnet_entries,
                      rootnet_unit, rotate_root, smpl_params, warn_unchecked_fits)

SUBJECTS = {"train": (1, 5, 6, 7, 8), "test": (9, 11)}
SAMPLING = {"train": 5, "test": 64}
TEST_CAMERA = 4  # the frontal camera, following HMR and SPIN


def load(root: str | Path, split: str = "train", bank=None, model_path: str | None = None, use_rootnet: bool = True,
         subjects: tuple[int, ...] | None = None, sampling: int | None = None, fit_regressor: str | None = None,
         check_fits: bool = True, **_) -> list[SampleRecord]:
    """Records of one split. bank: a ``BodyModelBank`` (or model_path: SMPL files) to convert the SMPL fits.
    fit_regressor: the 17 x 6890 Human3.6M regressor for the fit check (default ``root/J_regressor_h36m_correct.npy``);
    check_fits=False keeps every fit (no rejection)."""
    if split not in SUBJECTS:
        raise ValueError(f"Human3.6M split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    bank = body_model_bank(bank, model_path)
    smpl_ok = bank is not None and bank.get("smpl", "neutral") is not None
    if not smpl_ok:
        log.warning("Human3.6M: no SMPL model given, so the SMPL fits (world coordinates) cannot be moved to the "
                    "camera; loading joints only (pass the SMPL model folder to use the fits)")
    regressor = find_fit_regressor([fit_regressor, root / H36M_REGRESSOR_FILE], bank, "h36m17", len(H36M_17)) \
        if smpl_ok and check_fits else None
    ann_dir, images = root / "annotations", image_dir(root, "images")
    sampling = sampling or SAMPLING[split]
    rootnet = rootnet_entries(root / "rootnet_output" / "bbox_root_human36m_output.json") \
        if split == "test" and use_rootnet else None
    depth_unit = rootnet_unit(rootnet, "h36m", "Human3.6M RootNet")
    rejects = RejectCounter(f"Human3.6M {split}")
    records: list[SampleRecord] = []
    with_fit: list[SampleRecord] = []
    for subject in subjects or SUBJECTS[split]:
        data = read_json(ann_dir / f"Human36M_subject{subject}_data.json")
        cameras = read_json(ann_dir / f"Human36M_subject{subject}_camera.json")
        joints_world = read_json(ann_dir / f"Human36M_subject{subject}_joint_3d.json")
        smpl_path = ann_dir / f"Human36M_subject{subject}_smpl_param.json"
        fits = read_json(smpl_path) if smpl_path.is_file() else {}
        image_by_id = {img["id"]: img for img in data["images"]}
        for ann in data["annotations"]:
            img = image_by_id[ann["image_id"]]
            frame = int(img["frame_idx"])
            if frame % sampling != 0 or (split == "test" and int(img["cam_idx"]) != TEST_CAMERA):
                continue
            cam = cameras[str(img["cam_idx"])]
            rot, t_mm = np.asarray(cam["R"], np.float64), np.asarray(cam["t"], np.float64).reshape(3)
            K = k_from(cam["f"], cam["c"])
            keys = (str(img["action_idx"]), str(img["subaction_idx"]), str(frame))
            world = np.asarray(joints_world[keys[0]][keys[1]][keys[2]], np.float64)
            joints_cam = (world @ rot.T + t_mm) / 1000.0
            path = images / img["file_name"]
            if not rejects.check(str(path), joints_cam, bbox=ann["bbox"]):
                continue
            record = SampleRecord(
                image_path=str(path), image_size=(int(img["width"]), int(img["height"])),
                bbox_xywh=np.asarray(ann["bbox"], np.float64), K=K, kind="body", joint_set=H36M_17,
                joints_img_px=project(joints_cam, K), joints_cam_m=joints_cam, joints_valid=np.ones(17),
                has_3d=True, sample_id=str(ann["id"]), dataset="h36m")
            fit = fits.get(keys[0], {}).get(keys[1], {}).get(keys[2])
            if fit is not None and smpl_ok and rejects.check(f"{path} (SMPL fit)", fit["pose"], fit["shape"],
                                                            fit["trans"]):
                params = smpl_params(fit)
                j0 = bank.rest_root_joint("smpl", "neutral", params["shape"])
                params["pose"] = rotate_root(params["pose"], rot)
                params["trans"] = rot @ params["trans"] + t_mm / 1000.0 - j0 + rot @ j0
                record.body_model, record.body_params, record.fit_valid = "smpl", params, True
                with_fit.append(record)
            if rootnet is not None:
                apply_rootnet(record, rootnet.get(int(ann["image_id"])), depth_unit)
            records.append(record)
    rejects.report(len(records))
    if regressor is not None:
        check_3d_fits(with_fit, bank, regressor, f"Human3.6M {split}")
    elif check_fits:
        warn_unchecked_fits(f"Human3.6M {split}", len(with_fit),
                            f"no {H36M_REGRESSOR_FILE} in {root} and no fit_regressor given")
    return records


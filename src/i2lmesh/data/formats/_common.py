"""Helpers shared by the real-dataset loaders."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np

from ...bodymodels.joint_sets import H36M_17, JointSet
from ...geometry.camera import intrinsics, project
from ...geometry.crop import apply_affine, crop_transforms, process_bbox
from ...geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..record import finite

log = logging.getLogger("i2lmesh.data.formats")

# The reference's fit rejection thresholds (``fitting_thr`` of Human36M.py / MuCo.py and MSCOCO.py).
FIT_THRESHOLD_MM = 25.0  # Human3.6M, MuCo: mean 3D joint error, translation-aligned, millimetres
FIT_THRESHOLD_HM = 3.0   # MSCOCO: mean 2D joint error in the 64 x 64 heatmap grid of the 256 x 256 crop
H36M_REGRESSOR_FILE = "J_regressor_h36m_correct.npy"    # the reference keeps it in data/Human36M/
COCO_REGRESSOR_FILE = "J_regressor_coco_hip_smpl.npy"   # the reference keeps it in data/MSCOCO/
COCO_17_NAMES = ("Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow",
                 "L_Wrist", "R_Wrist", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle")

# Units of RootNet's ``root_cam`` per dataset, as the reference adds them: Human3.6M and MSCOCO to millimetre
# offsets, 3DPW and FreiHAND to metre offsets (PW3D.py / FreiHAND.py ``evaluate``).
ROOTNET_UNITS: dict[str, Literal["mm", "m"]] = {"h36m": "mm", "coco": "mm", "pw3d": "m", "freihand": "m"}


class RejectCounter:
    """Counts annotations rejected at load time (NaN/inf, empty box) and logs the total with examples."""

    def __init__(self, source: str) -> None:
        self.source, self.count, self.examples = source, 0, []

    def check(self, what: str, *values: Any, bbox: Any = None) -> bool:
        ok = finite(*values, bbox)
        if ok and bbox is not None:
            ok = len(bbox) == 4 and bbox[2] > 0 and bbox[3] > 0
        if not ok:
            self.count += 1
            if len(self.examples) < 3:
                self.examples.append(what)
        return ok

    def report(self, kept: int) -> None:
        if self.count:
            log.warning("%s: rejected %d of %d annotations with NaN/inf or an empty box, e.g. %s", self.source,
                        self.count, kept + self.count, "; ".join(self.examples))


def k_from(focal, princpt) -> np.ndarray:
    return intrinsics(np.asarray(focal, np.float64), np.asarray(princpt, np.float64))


def rootnet_list(path: Path) -> list[dict] | None:
    """RootNet's test output as a list of entries ({image_id or ann_id, bbox, root_cam}), in file order; None if
    the file is absent. Several entries may share an image (one per detected person)."""
    if not path.is_file():
        return None
    import json
    data = json.loads(path.read_text())
    return list(data.values() if isinstance(data, dict) else data)


def rootnet_entries(path: Path, key: str = "image_id") -> dict[int, dict] | None:
    """RootNet's test output keyed by ``key`` (image_id or ann_id); None if absent. For files with one entry per
    key (Human3.6M, 3DPW, FreiHAND); the last entry wins, as the reference's dict. MSCOCO: use ``rootnet_list``."""
    items = rootnet_list(path)
    return None if items is None else {int(item[key]): item for item in items}


MM_DEPTH_ABOVE = 100.0  # a root depth in metres is below 100 (m); in millimetres above 100 (mm = 0.1 m)


def rootnet_unit(items: list[dict] | dict[int, dict] | None, dataset: str, source: str = "") -> Literal["mm", "m"]:
    """The unit of a RootNet file: the reference's for ``dataset`` (``ROOTNET_UNITS``), unless the file's median
    depth says otherwise (a metres file has depths below 100, a millimetres file above), which is logged."""
    unit = ROOTNET_UNITS[dataset]
    values = list(items.values()) if isinstance(items, dict) else list(items or [])
    depths = [float(np.asarray(e["root_cam"], np.float64).reshape(-1)[2]) for e in values
              if finite(e.get("root_cam")) and np.size(e.get("root_cam")) >= 3]
    if not depths:
        return unit
    seen: Literal["mm", "m"] = "mm" if float(np.median(np.abs(depths))) > MM_DEPTH_ABOVE else "m"
    if seen != unit:
        log.warning("%s: RootNet depths look like %s (median %.4g) although the reference's %s file is in %s; "
                    "reading them as %s", source or dataset, "millimetres" if seen == "mm" else "metres",
                    float(np.median(depths)), dataset, unit, seen)
    return seen


def rootnet_depth_m(entry: dict, unit: Literal["mm", "m"]) -> float:
    """RootNet's root depth (``root_cam[2]``) in metres; ``unit`` is the file's (see ``ROOTNET_UNITS``)."""
    if unit not in ("mm", "m"):
        raise ValueError(f"RootNet depth unit must be 'mm' or 'm', got {unit!r}")
    depth = float(np.asarray(entry["root_cam"], np.float64).reshape(-1)[2])
    return depth / 1000.0 if unit == "mm" else depth


def apply_rootnet(record, entry: dict | None, unit: Literal["mm", "m"]) -> None:
    """Use RootNet's box as is (already squared and enlarged) and its root depth, converted from ``unit`` to m."""
    if entry is None:
        return
    record.bbox_xywh = np.asarray(entry["bbox"], np.float64)
    record.bbox_is_final = True
    record.root_depth_m = rootnet_depth_m(entry, unit)


def rotate_root(pose: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Axis-angle pose with its root orientation pre-multiplied by ``rotation`` (3x3)."""
    pose = np.array(pose, np.float64).reshape(-1)
    pose[:3] = matrix_to_axis_angle(rotation @ axis_angle_to_matrix(pose[:3]))
    return pose


def smpl_params(data: dict) -> dict[str, np.ndarray]:
    return {"pose": np.asarray(data["pose"], np.float64).reshape(-1),
            "shape": np.asarray(data["shape"], np.float64).reshape(-1),
            "trans": np.asarray(data["trans"], np.float64).reshape(3)}


def image_dir(root: Path, *candidates: str) -> Path:
    """The first existing folder among ``root/candidate``; else the first candidate (errors come per image)."""
    for c in candidates:
        if (root / c).is_dir():
            return root / c
    return root / candidates[0]


# ------------------------------------------------------------------------------------------------ fit rejection

def body_model_bank(bank=None, model_path: str | None = None):
    """``bank``, or a ``BodyModelBank`` on the SMPL/MANO files at ``model_path``, or None."""
    if bank is None and model_path is not None:
        from ..targets import BodyModelBank
        bank = BodyModelBank(model_path=model_path)
    return bank


def find_fit_regressor(candidates: Iterable[Path | str | None], bank=None, extra_name: str | None = None,
                       rows: int | None = None) -> np.ndarray | None:
    """The joint regressor (rows x V) of a fit check: the first existing ``.npy`` among ``candidates`` (the
    reference reads it from the dataset folders), else the SMPL model's extra regressor ``extra_name`` (e.g.
    "h36m17", registered with ``h36m_regressor_path``), else None."""
    for path in candidates:
        if path is None or not Path(path).is_file():
            continue
        try:
            regressor = np.load(Path(path), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"{path}: cannot read the joint regressor ({exc})") from None
        if regressor.ndim != 2 or (rows is not None and regressor.shape[0] != rows):
            raise ValueError(f"{path}: joint regressor has shape {regressor.shape}, expected ({rows}, V)")
        return regressor.astype(np.float64)
    model = bank.get("smpl", "neutral") if bank is not None else None
    if model is not None and extra_name is not None and hasattr(model, f"regressor_{extra_name}"):
        return getattr(model, f"regressor_{extra_name}").detach().cpu().double().numpy()
    return None


def smpl_vertices(bank, params_list: list[dict[str, np.ndarray]], gender: str = "neutral",
                  batch: int = 256) -> list[np.ndarray]:
    """SMPL meshes (V, 3) in metres for many parameter sets (batched; the reference's neutral layer)."""
    import torch

    model = bank.get("smpl", gender)
    out: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(params_list), batch):
            chunk = params_list[start:start + batch]
            tensors = {key: torch.as_tensor(np.stack([np.asarray(p[key], np.float32).reshape(-1) for p in chunk]))
                       for key in ("pose", "shape", "trans")}
            verts = model(**tensors).vertices_m.double().numpy()
            out.extend(verts)
    return out


def regressor_matches(regressor: np.ndarray, vertices: np.ndarray, source: str) -> None:
    if regressor.shape[1] != vertices.shape[0]:
        raise ValueError(f"{source}: the fit-check joint regressor has {regressor.shape[1]} columns but the body "
                         f"model has {vertices.shape[0]} vertices")


def fit_error_3d_mm(joints_cam_m: np.ndarray, joint_set: JointSet, regressed_h36m_m: np.ndarray) -> float:
    """The reference's Human3.6M / MuCo ``get_fitting_error``, millimetres.

    The dataset's 3D joints and the Human3.6M-regressed fit joints are compared on the joints of ``joint_set``
    that have Human3.6M names (all 17 for Human3.6M, 14 for MuCo), after translation alignment (both centred on
    their mean, which also makes them root-relative): mean Euclidean distance.
    """
    names = [n for n in H36M_17.names if n in joint_set.names]
    gt = np.asarray(joints_cam_m, np.float64)[[joint_set.index(n) for n in names]]
    fit = np.asarray(regressed_h36m_m, np.float64)[[H36M_17.index(n) for n in names]]
    gt, fit = gt - gt.mean(0), fit - fit.mean(0)
    return float(np.linalg.norm(gt - fit, axis=1).mean() * 1000.0)


def coco_fit_error_hm(joints_img_px: np.ndarray, joints_valid: np.ndarray, regressed_coco_m: np.ndarray,
                      K: np.ndarray, bbox_xywh: np.ndarray, image_size: tuple[int, int], pelvis_bug: bool = False,
                      input_size: int = 256, heatmap_size: int = 64) -> float | None:
    """The reference's MSCOCO ``get_fitting_error`` at scale 1, no rotation, no flip: mean 2D distance between the
    annotated joints (17 + Pelvis) and the projected COCO-regressed fit joints, in heatmap bins of the crop of the
    processed box. None when the box is unusable or no joint is annotated.

    The Pelvis of the fit is the mean of its projected hips, as the annotated Pelvis is the mean of the annotated
    hips. ``pelvis_bug=True`` reproduces the reference instead: the Pelvis is added to the *3D* joints (mean of
    the hips with z = z_L_Hip * z_R_Hip) before projecting, which misplaces it (official_spec.md 5.2).
    """
    width, height = image_size
    box = process_bbox(bbox_xywh, width, height)
    valid = np.asarray(joints_valid, np.float64).reshape(-1) > 0
    if box is None or not valid.any():
        return None
    joints3d = np.asarray(regressed_coco_m, np.float64)
    lhip, rhip = COCO_17_NAMES.index("L_Hip"), COCO_17_NAMES.index("R_Hip")
    if pelvis_bug:
        pelvis = (joints3d[lhip] + joints3d[rhip]) / 2.0
        pelvis[2] = joints3d[lhip, 2] * joints3d[rhip, 2]
        fit_px = project(np.concatenate([joints3d, pelvis[None]]), K)
    else:
        fit_px = project(joints3d, K)
        fit_px = np.concatenate([fit_px, (fit_px[lhip] + fit_px[rhip])[None] / 2.0])
    img2patch, _ = crop_transforms(box, input_size)
    to_hm = heatmap_size / input_size
    gt_hm = apply_affine(np.asarray(joints_img_px, np.float64), img2patch) * to_hm
    fit_hm = apply_affine(fit_px, img2patch) * to_hm
    return float(np.linalg.norm(gt_hm[valid] - fit_hm[valid], axis=1).mean())


def check_3d_fits(records: list, bank, regressor: np.ndarray, source: str) -> None:
    """Set ``fit_valid`` (error <= 25 mm) and ``extra["fit_error_mm"]`` of records with a camera-frame SMPL fit
    and 3D joints (Human3.6M, MuCo), as the reference's ``get_fitting_error`` on the unflipped sample."""
    meshes = smpl_vertices(bank, [r.body_params for r in records])
    rejected = 0
    for record, verts in zip(records, meshes):
        regressor_matches(regressor, verts, source)
        error = fit_error_3d_mm(record.joints_cam_m, record.joint_set, regressor @ verts)
        record.extra["fit_error_mm"] = error
        record.fit_valid = not error > FIT_THRESHOLD_MM  # the reference rejects only error > threshold
        rejected += not record.fit_valid
    if records:
        report_rejected_fits(source, rejected, len(records), f"{FIT_THRESHOLD_MM:g} mm")


def warn_unchecked_fits(source: str, count: int, why: str) -> None:
    if count:
        log.warning("%s: %d body-model fits are NOT checked (%s), so none is rejected; the reference rejects fits "
                    "whose error exceeds its threshold (docs/datasets.md)", source, count, why)


def report_rejected_fits(source: str, rejected: int, checked: int, threshold: str) -> None:
    log.info("%s: %d of %d body-model fits rejected as the reference's is_valid_fit (error > %s)", source, rejected,
             checked, threshold)


__all__ = ["RejectCounter", "k_from", "rootnet_list", "rootnet_entries", "rootnet_depth_m", "apply_rootnet",
           "ROOTNET_UNITS", "rootnet_unit", "rotate_root", "smpl_params", "image_dir", "project", "log",
           "FIT_THRESHOLD_MM", "FIT_THRESHOLD_HM", "H36M_REGRESSOR_FILE", "COCO_REGRESSOR_FILE", "body_model_bank",
           "find_fit_regressor", "smpl_vertices", "regressor_matches", "fit_error_3d_mm", "coco_fit_error_hm",
           "check_3d_fits", "warn_unchecked_fits", "report_rejected_fits"]

"""Pseudo-labels for records: fit a body model (Anny by default) to each record's keypoints, keep the fit and its
error, and mark ``fit_valid`` with the reference's rejection rules (:mod:`.rules`).

A record's own joints (2D pixels, and camera-frame 3D metres when ``has_3d``) are mapped by name onto the keypoint
set the body model is fitted to (:data:`FIT_SETS`: MSCOCO's COCO-17 through Anny's own COCO regressor, Human3.6M
and MuCo on Human3.6M's 17 joints, SMPL-24 sets on SMPL_29, hands on MANO-21); keypoints the record lacks get
confidence 0 and are ignored by the fitter. Records are fitted in batches (``fitting.fit_to_keypoints``;
``FitConfig(joint=True)`` by default: one problem per batch, several times faster, measured in
docs/pseudo_label.md). The fitting method is SMPLify's, as the paper made its MSCOCO and Human3.6M meshes
(section 5.1, supplement section 11).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..bodymodels.base import BodyModel
from ..bodymodels.joint_sets import MANO_21, JointSet
from ..data.formats._common import COCO_17_NAMES, coco_fit_error_hm
from ..data.record import SampleRecord, map_joints
from ..fitting import FitConfig, fit_to_keypoints, get_keypoint_set
from ..geometry.camera import project
from .rules import FIT_THRESHOLD_HM, default_threshold_mm, fit_error_3d_mm, fit_error_hm, is_rejected

log = logging.getLogger(__name__)

# The dataset joint set -> the keypoint set the body model is fitted to (names must mean the same points).
FIT_SETS: dict[str, str] = {"coco18": "coco17", "coco17": "coco17", "blazepose33": "coco17", "h36m17": "h36m17",
                            "muco21": "h36m17", "smpl24": "smpl29", "smpl29": "smpl29", "mano21": "mano21"}
# BlazePose-33 landmarks kept for COCO-17 (same names; its inner/outer eyes, mouth, hand and foot points are not COCO).
BLAZEPOSE_TO_COCO = COCO_17_NAMES


@dataclass(frozen=True)
class LabelOptions:
    """How records are pseudo-labelled.

    use_3d: fit 3D joints too when a record has them (else 2D only, as for MSCOCO). keypoint_set: force the fitted
    set (None: :data:`FIT_SETS`). threshold_mm / threshold_hm: rejection thresholds (None: 25 mm bodies, 3.75 mm
    hands; 3 heatmap bins). min_keypoints: fewer confident keypoints and the record is skipped (not fitted).
    joint / batch_size: ``FitConfig.joint`` and people per ``fit_to_keypoints`` call. stages: override
    ``FitConfig.stages`` (fewer iterations). save_vertices: also store the mesh (V, 3) in the record (always for
    left hands, whose parameters drive the mirrored model). body_model: "anny" (the only built-in one).
    from_fits: fit the joints of each record's existing SMPL / MANO fit (evaluated with the user's model files,
    ``fit_bank``) instead of its annotated joints: model -> model conversion by keypoints (see :mod:`.convert`)."""

    use_3d: bool = True
    keypoint_set: str | None = None
    threshold_mm: float | None = None
    threshold_hm: float = FIT_THRESHOLD_HM
    min_keypoints: int = 6
    joint: bool = True
    batch_size: int = 32
    stages: tuple[tuple[float, ...], ...] | None = None
    save_vertices: bool = False
    body_model: str = "anny"
    from_fits: bool = False

    def fit_config(self) -> FitConfig:
        """The :class:`FitConfig` of these options."""
        return FitConfig(joint=self.joint) if self.stages is None else FitConfig(joint=self.joint,
                                                                                 stages=tuple(self.stages))


@dataclass
class Problem:
    """One record's fitting inputs on its fitted keypoint set (K keypoints): kp2d (K, 2) px, conf (K,) in [0, 1],
    kp3d (K, 3) camera m or None, K_cam (3, 3), side ("right"/"left" for hands), fit_set name."""

    index: int
    fit_set: JointSet
    kp2d: np.ndarray
    conf: np.ndarray
    kp3d: np.ndarray | None
    K_cam: np.ndarray
    kind: str
    side: str = "right"


@dataclass
class LabelStats:
    """Counts of one labelling run: fitted, rejected, skipped (by reason)."""

    fitted: int = 0
    rejected: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


class ModelBank:
    """Body models to fit, built lazily once: Anny body (reduced mesh), Anny right and left hand."""

    def __init__(self, models: dict[tuple[str, str], BodyModel] | None = None, device: str = "cpu") -> None:
        self.models = dict(models or {})
        self.device = device

    def get(self, kind: str, side: str = "right") -> BodyModel:
        key = (kind, side if kind == "hand" else "")
        if key not in self.models:
            from ..bodymodels import create_body_model

            kwargs = {"side": side} if kind == "hand" else {}
            self.models[key] = create_body_model("anny", kind, device=self.device, **kwargs).eval()
        return self.models[key]


def record_keypoints(record: SampleRecord) -> tuple[JointSet | None, np.ndarray | None, np.ndarray | None,
                                                    np.ndarray | None]:
    """A record's (joint set, 2D px (J, 2), 3D camera m (J, 3) or None, confidence (J,)): its own joints, or for
    hand records without them (FreiHAND) the MANO-21 joints kept in ``extra["joint_3d_m"]`` (projected with K).
    Detected keypoints' scores (``extra["keypoint_scores"]``) are the confidences of the valid ones."""
    js, img, cam = record.joint_set, record.joints_img_px, record.joints_cam_m if record.has_3d else None
    if js is None or (img is None and cam is None):
        extra3d = record.extra.get("joint_3d_m")
        if record.kind == "hand" and extra3d is not None and np.shape(extra3d) == (21, 3):
            cam = np.asarray(extra3d, np.float64)
            return MANO_21, project(cam, np.asarray(record.K, np.float64)), cam, np.ones(21)
        return None, None, None, None
    count = len(js)
    if img is None:
        img = project(np.asarray(cam, np.float64), np.asarray(record.K, np.float64))
    valid = np.ones(count) if record.joints_valid is None else np.asarray(record.joints_valid, np.float64).reshape(-1)
    scores = record.extra.get("keypoint_scores")
    if scores is not None and np.shape(scores) == (count,):
        valid = valid * np.clip(np.asarray(scores, np.float64), 0.0, 1.0)
    return js, np.asarray(img, np.float64), None if cam is None else np.asarray(cam, np.float64), valid


def fit_keypoints(record: SampleRecord, fit_bank) -> tuple[JointSet | None, np.ndarray | None,
                                                             np.ndarray | None, np.ndarray | None]:
    """Like :func:`record_keypoints`, from the record's existing SMPL / MANO fit: the fit model's own joints
    (SMPL_29 / MANO_21) in the camera frame, projected with K, all confident. (None, ...) without a usable fit or
    without the model files in ``fit_bank`` (a ``data.targets.BodyModelBank``)."""
    if fit_bank is None or record.body_model is None or not record.body_params:
        return None, None, None, None
    evaluated = fit_bank.evaluate(record.body_model, record.body_gender, record.body_params)
    if evaluated is None:
        return None, None, None, None
    _, joints, model = evaluated
    return model.joint_set, project(joints, np.asarray(record.K, np.float64)), joints, np.ones(len(joints))


def make_problem(index: int, record: SampleRecord, options: LabelOptions, fit_bank=None) -> Problem | str:
    """The fitting inputs of ``record``, or the reason it cannot be fitted (a short string)."""
    if options.from_fits:
        js, img, cam, conf = fit_keypoints(record, fit_bank)
        if js is None:
            return "no SMPL/MANO fit to convert (or no model files)"
    else:
        js, img, cam, conf = record_keypoints(record)
    if js is None:
        return "no keypoints"
    name = options.keypoint_set or FIT_SETS.get(js.name)
    if name is None:  # an unknown set: the known fitting set sharing most names with it
        candidates = ["mano21"] if record.kind == "hand" else ["h36m17", "coco17", "smpl29"]
        name = max(candidates, key=lambda n: len(set(get_keypoint_set(n).names) & set(js.names)))
    fit_js = get_keypoint_set(name)
    kp2d = map_joints(img, js, fit_js)
    c = map_joints(conf, js, fit_js)
    c = np.where(np.isfinite(kp2d).all(1), c, 0.0)
    if int((c > 0).sum()) < options.min_keypoints:
        return "too few keypoints"
    kp3d = map_joints(cam, js, fit_js) if cam is not None and options.use_3d else None
    side = str(record.extra.get("side", "right")) if record.kind == "hand" else "right"
    return Problem(index, fit_js, kp2d, c, kp3d, np.asarray(record.K, np.float64), record.kind,
                   side if side in ("left", "right") else "right")


def label_records(records: Sequence[SampleRecord], options: LabelOptions = LabelOptions(),
                  models: ModelBank | None = None, stats: LabelStats | None = None,
                  progress=None, fit_bank=None) -> list[SampleRecord]:
    """Fit every record; returns the fitted records (skipped ones dropped, counted in ``stats.skipped``).

    Each returned record is a copy with ``body_model`` "anny" / "anny-hand", ``body_params`` {pose (Kb, 3)
    axis-angle, shape (6,), trans (3,) m} in the camera frame, ``fit_valid`` by the rejection rules and in
    ``extra``: ``fit_error_mm`` (3D rule) or ``fit_error_hm`` (2D rule), ``fit_reprojection_px`` (mean over the
    confident keypoints), ``fit_keypoint_set``, ``fit_rule`` ("3d"/"2d"), ``source_body_model``. Left hands
    store their mesh as ``vertices_cam_m`` (their parameters drive the mirrored model: ``extra["fit_params"]``).
    ``progress``: an optional callable(n) told after each batch how many records it finished. ``fit_bank``: the
    SMPL / MANO models for ``options.from_fits`` (a ``data.targets.BodyModelBank``).
    """
    models = models or ModelBank()
    stats = stats if stats is not None else LabelStats()
    problems: list[Problem] = []
    for i, record in enumerate(records):
        problem = make_problem(i, record, options, fit_bank)
        if isinstance(problem, str):
            stats.skip(problem)
        else:
            problems.append(problem)
    groups: dict[tuple, list[Problem]] = {}
    for p in problems:
        groups.setdefault((p.kind, p.side, p.fit_set.name, p.kp3d is not None), []).append(p)
    out: dict[int, SampleRecord] = {}
    config = options.fit_config()
    for (kind, side, set_name, with_3d), group in groups.items():
        model = models.get(kind, side)
        for start in range(0, len(group), max(1, options.batch_size)):
            batch = group[start:start + max(1, options.batch_size)]
            result = fit_to_keypoints(
                model, np.stack([p.kp2d for p in batch]), np.stack([p.conf for p in batch]),
                np.stack([p.K_cam for p in batch]), keypoint_set=batch[0].fit_set,
                keypoints_3d=np.stack([p.kp3d for p in batch]) if with_3d else None, config=config)
            vertices = result.vertices_m.detach().cpu().numpy()
            keypoints = result.keypoints_m.detach().cpu().numpy()
            fit_px = result.keypoints_px.detach().cpu().numpy()
            residual = result.residual_px.detach().cpu().numpy()
            params = {k: v.detach().cpu().numpy().astype(np.float64) for k, v in result.params.items()}
            for b, p in enumerate(batch):
                record = records[p.index]
                out[p.index] = _labelled(record, p, model, options, keypoints[b], fit_px[b], residual[b],
                                         {k: v[b] for k, v in params.items()}, vertices[b], stats)
            if progress is not None:
                progress(len(batch))
    return [out[i] for i in sorted(out)]


def _labelled(record: SampleRecord, p: Problem, model: BodyModel, options: LabelOptions, keypoints_m: np.ndarray,
              fit_px: np.ndarray, residual_px: np.ndarray, params: dict[str, np.ndarray], vertices: np.ndarray,
              stats: LabelStats) -> SampleRecord:
    extra = {k: v for k, v in record.extra.items() if k not in ("fit_error_mm", "fit_error_hm")}
    extra.update({"fit_keypoint_set": p.fit_set.name, "source_body_model": record.body_model,
                  "fit_reprojection_px": _round(np.nanmean(residual_px) if np.isfinite(residual_px).any() else None)})
    if p.kp3d is not None:
        threshold = options.threshold_mm if options.threshold_mm is not None else default_threshold_mm(p.kind)
        error = fit_error_3d_mm(p.kp3d, keypoints_m, p.conf)
        extra.update({"fit_rule": "3d", "fit_error_mm": _round(error)})
    else:
        threshold = options.threshold_hm
        if record.joint_set is not None and record.joint_set.name == "coco18" and p.fit_set.name == "coco17":
            # exactly the MSCOCO loader's rule: the 17 keypoints + the Pelvis (mean of the projected hips)
            error = coco_fit_error_hm(record.joints_img_px, np.asarray(record.joints_valid, np.float64) > 0,
                                      keypoints_m, p.K_cam, record.bbox_xywh, record.image_size)
        else:
            error = fit_error_hm(p.kp2d, p.conf, fit_px, record.bbox_xywh, record.image_size)
        extra.update({"fit_rule": "2d", "fit_error_hm": _round(error)})
    rejected = is_rejected(error, threshold)
    stats.fitted += 1
    stats.rejected += int(rejected)
    left_hand = p.kind == "hand" and p.side == "left"
    body_params = {"pose": params["pose"], "shape": params["shape"], "trans": params["trans"]}
    if left_hand:
        extra["fit_params"] = {k: np.asarray(v).tolist() for k, v in body_params.items()}
        extra["fit_side"] = "left"
    keep_vertices = options.save_vertices or left_hand
    flip = getattr(model, "flip_index", None)
    return dataclasses.replace(
        record, body_model=model.name, body_gender="neutral", body_params=None if left_hand else body_params,
        fit_valid=not rejected, vertices_cam_m=vertices.astype(np.float32) if keep_vertices else None,
        vertex_flip_index=(flip.cpu().numpy() if keep_vertices and flip is not None and p.kind == "body" else None),
        extra=extra)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else round(float(value), digits)


def blazepose_to_coco18(keypoints_xy: np.ndarray, scores: np.ndarray, min_score: float = 0.5
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BlazePose-33 keypoints (33, 2) px and scores (33,) -> COCO-18 (17 + Pelvis) joints (18, 2), validity (18,)
    (score >= ``min_score``) and scores (18,), by name: nose, eyes (not inner/outer), ears, shoulders, elbows, wrists,
    hips, knees, ankles; the Pelvis is the mean of the hips (valid if both are, score their minimum), as the
    MSCOCO loader builds it. Raises ValueError for other shapes."""
    from ..data.record import COCO_18
    from ..inference.keypoints import BLAZEPOSE_33

    xy, s = np.asarray(keypoints_xy, np.float64), np.asarray(scores, np.float64).reshape(-1)
    if xy.shape != (len(BLAZEPOSE_33), 2) or s.shape != (len(BLAZEPOSE_33),):
        raise ValueError(f"BlazePose keypoints should be (33, 2) with (33,) scores, got {xy.shape} and {s.shape}")
    idx = [BLAZEPOSE_33.index(n) for n in BLAZEPOSE_TO_COCO]
    joints, sc = xy[idx], s[idx]
    lh, rh = BLAZEPOSE_TO_COCO.index("L_Hip"), BLAZEPOSE_TO_COCO.index("R_Hip")
    joints = np.concatenate([joints, (joints[lh] + joints[rh])[None] / 2.0])
    sc = np.concatenate([sc, [min(sc[lh], sc[rh])]])
    valid = (sc >= min_score).astype(np.float64)
    assert len(joints) == len(COCO_18)
    return joints, valid, sc


def summarize(records: Sequence[SampleRecord]) -> dict:
    """Fit errors and rejections of labelled records: per rule, count, rejected, error percentiles (50/90/99),
    and reprojection error percentiles (px)."""
    out: dict = {"fitted": len(records), "valid": int(sum(r.fit_valid for r in records))}
    out["rejected"] = out["fitted"] - out["valid"]
    for rule, key, unit in (("3d", "fit_error_mm", "mm"), ("2d", "fit_error_hm", "heatmap bins")):
        errors = [r.extra.get(key) for r in records if r.extra.get("fit_rule") == rule]
        values = np.asarray([e for e in errors if e is not None], np.float64)
        if not len(errors):
            continue
        entry = {"count": len(errors), "rejected": int(sum(not r.fit_valid for r in records
                                                          if r.extra.get("fit_rule") == rule)), "unit": unit}
        if len(values):
            entry.update({f"p{q}": round(float(np.percentile(values, q)), 3) for q in (50, 90, 99)})
        out[f"rule_{rule}"] = entry
    reproj = np.asarray([r.extra["fit_reprojection_px"] for r in records
                         if r.extra.get("fit_reprojection_px") is not None], np.float64)
    if len(reproj):
        out["reprojection_px"] = {f"p{q}": round(float(np.percentile(reproj, q)), 3) for q in (50, 90, 99)}
    return out


def tensor_params(params: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Record parameters -> batched float32 tensors for a body model's forward."""
    return {k: torch.as_tensor(np.asarray(v, np.float32))[None] for k, v in params.items()}


__all__ = ["FIT_SETS", "LabelOptions", "LabelStats", "ModelBank", "Problem", "record_keypoints", "make_problem",
           "label_records", "blazepose_to_coco18", "summarize", "tensor_params"]

"""The fitting stage of the Predictor (methods "fit" and "network+fit", docs/fitting.md): keypoints for each box,
the body-model fit of :class:`~i2lmesh.inference.keypoint_fit.KeypointFitter`, and the fitted people as
:class:`~i2lmesh.inference.result.PersonResult` in original pixels.

The Predictor builds one :class:`FitStage` and calls it after the network (if any) with its crops; what each
keypoint means, which are fitted and how residuals are summarised is ``inference.keypoint_fit``'s.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from ..bodymodels.joint_sets import JointSet
from ..fitting.keypoints import get_keypoint_set, keypoint_regressor
from ..geometry.camera import project
from .boxes import Crop
from .detect import Detection, box_iou
from .errors import BadInputError
from .images import LoadedImage
from .keypoint_fit import (MIN_KEYPOINTS, NETWORK_FIT_2D_EXCLUDED, RESIDUAL_WARNING_FRACTION, FitTarget,
                           KeypointFitter, detector_keypoints, out_of_frame, residual_summary, truncation_warning)
from .result import PersonResult

log = logging.getLogger(__name__)

KEYPOINT_SEARCH_SCALE = 1.5  # a box without keypoints: the keypoint detector runs on a square this x its longer side
KEYPOINT_MATCH_IOU = 0.3  # ... and the person found there must overlap the box this much


def keypoint_set_to_fit(method: str, kind: str, fitter: KeypointFitter, topology: dict, joint_names: list[str],
                        root_index: int) -> JointSet:
    """The keypoints the fit compares: COCO-17 / MANO-21 (method "fit"), the network's joints ("network+fit",
    named by ``topology["joint_set"]`` or else by ``joint_names``). Raises BadInputError when the network's joints
    are not joints of the fitting body model."""
    if method == "fit":
        return get_keypoint_set(fitter.keypoint_set)
    try:
        joint_set = get_keypoint_set(topology.get("joint_set") or "")
        if list(joint_set.names) != joint_names:
            raise KeyError(joint_set.name)
    except KeyError:
        joint_set = JointSet("network", tuple(joint_names), root_index, (), ())
    try:
        keypoint_regressor(fitter.body_model, joint_set)
    except KeyError as exc:
        raise BadInputError(f"method network+fit: the network's joints are not joints of the {kind} "
                            f"model it would fit ({str(exc).strip(chr(34) + chr(39))}); use --method network"
                            ) from None
    return joint_set


def keypoints_in_box(rgb: np.ndarray, det: Detection, keypoint_detector: Callable[[], Any]) -> Detection:
    """``det`` with the keypoints of the detector ``keypoint_detector()`` returns (called only when the region is
    at least 2 px wide and high) run on a square region ``KEYPOINT_SEARCH_SCALE`` x its box's longer side (rgb
    (H, W, 3) uint8, working px): the found person overlapping the box most (IoU >= ``KEYPOINT_MATCH_IOU``), or
    ``det`` unchanged when none is. The box and, when set, the side stay ``det``'s."""
    h, w = rgb.shape[:2]
    x, y, bw, bh = det.box_xywh
    half = KEYPOINT_SEARCH_SCALE / 2 * max(bw, bh)
    cx, cy = x + bw / 2, y + bh / 2
    x0, y0 = int(max(0, math.floor(cx - half))), int(max(0, math.floor(cy - half)))
    x1, y1 = int(min(w, math.ceil(cx + half))), int(min(h, math.ceil(cy + half)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return det
    found = keypoint_detector().detect(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
    if not found:
        return det
    shift = np.array([x0, y0, 0.0, 0.0])
    ious = box_iou(np.stack([f.box_xywh + shift for f in found]), det.box_xywh[None])[:, 0]
    best = int(np.argmax(ious))
    if ious[best] < KEYPOINT_MATCH_IOU:
        return det
    f = found[best]
    return replace(det, keypoints_xy=f.keypoints_xy + shift[:2], keypoint_scores=f.keypoint_scores,
                   keypoint_set=f.keypoint_set, keypoints_3d_m=f.keypoints_3d_m,
                   side=f.side if det.side is None else det.side, side_score=f.side_score)


def fit_is_off(person: PersonResult) -> bool:
    """Whether a fit's median keypoint residual exceeds ``RESIDUAL_WARNING_FRACTION`` of the person's box."""
    median = person.fit["median_residual_px"]
    return median is not None and median > RESIDUAL_WARNING_FRACTION * max(person.box_xywh[2:])


class FitStage:
    """Fit the body model to each crop's keypoints (and, "network+fit", its network joints).

    fitter: the KeypointFitter; kind "body"/"hand"; method "fit" or "network+fit"; keypoint_set: what the fit
    compares (:func:`keypoint_set_to_fit`); keypoint_detector: returns the detector that finds keypoints in a box
    that has none (called only then: it may load mediapipe or raise BadInputError)."""

    def __init__(self, fitter: KeypointFitter, kind: str, method: str, keypoint_set: JointSet,
                 keypoint_detector: Callable[[], Any]) -> None:
        self.fitter, self.kind, self.method = fitter, kind, method
        self.keypoint_set, self.keypoint_detector = keypoint_set, keypoint_detector

    def __call__(self, crops: list[Crop], loaded_images: list[LoadedImage], people: list[PersonResult | None],
                 timings: dict[str, float]) -> None:
        """Replace ``people`` entries (one per crop: the network's result or None) with fitted results, adding
        the seconds spent to ``timings["detect_s"]`` and ``timings["fit_s"]``. People without enough keypoints
        are dropped (method "fit") or keep their network result with a warning ("network+fit"). Warm starts
        (``Crop.init``) that end far from the keypoints are redone cold. Raises BadInputError for a fit that does
        not converge (non-finite mesh)."""
        fitter = self.fitter
        target_set = self.keypoint_set
        exclude = NETWORK_FIT_2D_EXCLUDED if self.method == "network+fit" and self.kind == "body" else ()
        targets, where, outside = [], [], {}
        for index, crop in enumerate(crops):
            loaded = loaded_images[crop.image_index]
            det = crop.detection
            if det.keypoints_xy is None:
                t = time.perf_counter()
                det = crop.detection = keypoints_in_box(loaded.rgb, det, self.keypoint_detector)
                timings["detect_s"] += time.perf_counter() - t
            shown = np.round(crop.box / loaded.scale, 1).tolist()
            if det.keypoints_xy is None:
                self._unfitted(people, index, loaded, f"no keypoints found in box {shown}")
                continue
            # keypoints the detector placed outside the image are not fitted (keypoint_fit.OUT_OF_FRAME_MARGIN)
            height, width = loaded.rgb.shape[:2]
            outside[index] = out_of_frame(det.keypoints_xy, det.keypoint_set, target_set, (width, height),
                                          det.box_xywh)
            kp, conf = detector_keypoints(det.keypoints_xy, det.keypoint_scores, det.keypoint_set, target_set,
                                          tuple(exclude) + tuple(outside[index]))
            if not fitter.usable(conf):
                self._unfitted(people, index, loaded, f"too few confident keypoints in box {shown} "
                               f"({int(np.sum(conf > 0))}, at least {MIN_KEYPOINTS[self.kind]} needed)")
                continue
            joints_3d = None
            if self.method == "network+fit":
                joints_3d = people[index].joints_m.astype(np.float64)
            targets.append(FitTarget(kp, conf, crop.K, joints_3d, crop.init))
            where.append(index)
        if not targets:
            return
        warm = [i for i, t in enumerate(targets) if t.init is not None]
        cold = [i for i in range(len(targets)) if targets[i].init is None]
        # Warm starts and cold fits are separate calls (a warm start skips the first stages). A warm fit that ends
        # far from the keypoints (the person turned or moved more than the start could follow, or the track was
        # given to someone else) is redone cold.
        for group, is_warm in ((warm, True), (cold, False)):
            if not group:
                continue
            t = time.perf_counter()
            result = fitter.fit([targets[i] for i in group], target_set)
            timings["fit_s"] += time.perf_counter() - t
            for b, i in enumerate(group):
                index = where[i]
                person = self._fitted(crops[index], loaded_images[crops[index].image_index], result, b,
                                      people[index], out_of_frame_names=outside[index])
                if is_warm and fit_is_off(person):
                    targets[i].init = crops[index].init = None
                    cold.append(i)
                    continue
                people[index] = person

    def _unfitted(self, people: list, index: int, loaded: LoadedImage, reason: str) -> None:
        if self.method == "fit":
            log.warning("%s: %s: not fitted", loaded.source, reason)
            people[index] = None
        else:
            message = f"{reason}: the network's mesh, not fitted"
            log.warning("%s: %s", loaded.source, message)
            people[index].warnings.append(message)

    def _fitted(self, crop: Crop, loaded: LoadedImage, result, b: int, network: PersonResult | None,
                out_of_frame_names: list[str] | tuple[str, ...] = ()) -> PersonResult:
        """The b-th person of a FitResult as a PersonResult in original pixels; ``out_of_frame_names``: the
        keypoints found outside the image (not fitted; JSON ``fit["out_of_frame"]`` and a warning)."""
        s = loaded.scale
        model = self.fitter.body_model
        target_set = self.keypoint_set
        vertices = result.vertices_m[b].detach().cpu().numpy().astype(np.float64)
        joints = result.joints_m[b].detach().cpu().numpy().astype(np.float64)
        if not (np.all(np.isfinite(vertices)) and np.all(np.isfinite(joints))):
            raise BadInputError(f"{loaded.source}: the fit of box {np.round(crop.box / s, 1).tolist()} did not "
                                f"converge (non-finite mesh)")
        joints_px = project(joints, crop.K) / s
        residual = result.residual_px[b].detach().cpu().numpy().astype(np.float64) / s
        det, det_score = crop.detection, crop.detector_score
        fit = residual_summary(residual, target_set.names, target_set.name, out_of_frame_names)
        fit["evaluations"] = None if result.evaluations is None else int(result.evaluations[b])
        fit["warm_start"] = crop.init is not None
        # the network's result already carries the crop's warnings (said once, not twice)
        warnings = list(network.warnings) if network is not None else list(crop.warnings)
        names = list(model.joint_set.names)
        root = int(model.joint_set.root_index)
        params = {k: v[b].detach().cpu().numpy() for k, v in result.params.items()}
        person = PersonResult(
            kind=self.kind, vertices_m=vertices.astype(np.float32), joints_m=joints.astype(np.float32),
            joints_2d_px=joints_px.astype(np.float32), faces=model.faces.cpu().numpy().astype(np.int64),
            joint_names=names, root_index=root, box_xywh=crop.box / s, box_processed_xywh=crop.processed / s,
            box_source=crop.box_source, K=np.diag([1.0 / s, 1.0 / s, 1.0]) @ crop.K,
            intrinsics_source=crop.intrinsics_source, root_depth_m=float(joints[root, 2]), root_depth_source="fit",
            vertex_uncertainty_mm=None, vertex_uncertainty_xyz_mm=None, joint_uncertainty_mm=None,
            joint_uncertainty_xyz_mm=None, score=1.0 if det_score is None else float(det_score),
            detector_score=det_score, heatmap_confidence=None if network is None else network.heatmap_confidence,
            warnings=warnings,
            keypoints_2d_px=None if det.keypoints_xy is None else (det.keypoints_xy / s).astype(np.float32),
            keypoint_scores=det.keypoint_scores, keypoint_set=det.keypoint_set, side=det.side, method=self.method,
            fit=fit, fit_params=params, track_id=det.track_id, box_index=crop.box_index)
        who = "" if det.track_id is None else f"person {det.track_id}: "
        truncated = truncation_warning(out_of_frame_names)
        if truncated:
            person.warnings.append(who + truncated)
            if crop.init is None:  # once per person in a video (its first, cold fit), every time in photos
                log.warning("%s: %s%s", loaded.source, who, truncated)
        if crop.init is None and fit_is_off(person):  # (a warm fit this far off is redone cold: warned then)
            message = (f"{who}fit: median keypoint residual {fit['median_residual_px']:.1f} px is more than "
                       f"{RESIDUAL_WARNING_FRACTION:.0%} of the box; the mesh may not match the person")
            log.warning("%s: %s", loaded.source, message)
            person.warnings.append(message)
        return person


__all__ = ["FitStage", "keypoint_set_to_fit", "keypoints_in_box", "fit_is_off", "KEYPOINT_SEARCH_SCALE",
           "KEYPOINT_MATCH_IOU"]

"""The Predictor's fitting step: a body model fitted to each person's detected keypoints.

Methods (``METHODS``; ``Predictor(method=...)``, ``i2lmesh demo --method``):

- ``"network"``: the I2L-MeshNet mesh (the paper).
- ``"fit"``: no network. The keypoint detector's 2D keypoints (BlazePose-33 bodies taken by name as COCO-17 plus
  COCO-WholeBody's heels and big toes, ``KEYPOINT_ALIASES``; MediaPipe's 21 hand keypoints in MANO-21 order) ->
  :func:`~i2lmesh.fitting.fit_to_keypoints` of the Anny body or hand (SMPLify-style, docs/fitting.md).
- ``"network+fit"``: SPIN's idea (Kolotouros et al., ICCV 2019: a regressor's output initialises SMPLify): the
  network's root-relative 3D joints and the detector's 2D keypoints together in one fit, so the network decides
  what 2D keypoints cannot (depth order of limbs, a turned torso) and the keypoints pull the mesh onto the image.
  The body hips are left out of the 2D term here: BlazePose's are surface hips, the network's joint set has SMPL's
  hip joint centres, a few centimetres apart (docs/fitting.md, "Keypoint sets").

The fitted mesh is the fitting body model's (Anny by default), whatever model the network was trained with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..bodymodels.joint_sets import MANO_21, JointSet
from ..fitting.keypoints import COCO_23, get_keypoint_set

METHODS = ("network", "fit", "network+fit")
MANO_NAMES = frozenset(MANO_21.names)
# A person needs this many keypoints with at least MIN_KEYPOINT_SCORE to be fitted (fewer leave pose and depth
# undetermined: the fit would follow the priors, not the image). A body's 6: e.g. both shoulders, hips and knees.
MIN_KEYPOINTS = {"body": 6, "hand": 8}
MIN_KEYPOINT_SCORE = 0.3
# Keypoints of a detector below MIN_KEYPOINT_SCORE are given confidence 0 (BlazePose's "visibility" of a limb
# hidden behind the body is ~0.1 while its position is a guess).
# A fit whose median reprojection residual exceeds this fraction of the person's box (larger side) gets a warning.
RESIDUAL_WARNING_FRACTION = 0.05
# Warm starts (video frames) of bodies run 5 LBFGS iterations instead of FitConfig's 15: on 12 held-out bodies
# PA-MPJPE 23.7 -> 27.8 mm, loss evaluations 17 -> 6 (docs/fitting.md). Hands keep 15: with 5 their reprojection
# error grew from 2.8 to 11.4 px.
BODY_WARM_ITERS = 5
# Warm starts of bodies keep the shape of the track's cold fit (FitConfig.warm_shape): from the 2D keypoints of a
# ~90 px pedestrian the shape is barely determined and wandered by 0.2-0.3 (of its [0, 1] range) per frame; fixed,
# the shape's linearisation is reused and a warm fit costs ~25 % less CPU (docs/fitting.md, "Video").
BODY_WARM_SHAPE = False
# "network+fit": weight of the network's 3D joints against the 2D keypoints (FitConfig.weight_3d). With a network
# trained 40 steps on pseudo-labelled real photos (basketball1, two players), weight 1 left median residuals of
# 7.3 and 10.7 px and the network's crouch in the mesh; 0.3: 3.8 and 3.1 px; 0.1: 2.0 and 2.7 px with the network
# still deciding what the keypoints leave open. SPIN (Kolotouros et al., ICCV 2019) uses the network's output only
# as the fit's start; a small weight keeps some of it through the fit. A well-trained network may deserve more.
NETWORK_FIT_WEIGHT_3D = 0.1
# Joints left out of the 2D term of "network+fit" bodies (surface hips vs SMPL hip joint centres, see above).
NETWORK_FIT_2D_EXCLUDED = ("L_Hip", "R_Hip")


# Truncated people: BlazePose gives all 33 landmarks even for body parts outside the image, and may score the
# invented ones as visible (basketball1: knees, ankles and feet 55-250 px below the 480 px frame, visibility up to
# 0.62, so the left knee was fitted).
# A detected keypoint lying outside the image by more than OUT_OF_FRAME_MARGIN of the person's box (its larger
# side; the box is the detector's, clipped to the image) is not fitted (confidence 0), is listed in the JSON's
# ``fit["out_of_frame"]`` and the person gets a warning: the body model's priors pose those parts. The margin lets
# a foot that touches the border (its keypoint a few pixels outside) count as seen.
OUT_OF_FRAME_MARGIN = 0.03
# The parts named in the truncation warning, by keypoint name (COCO-23 / MANO-21 names; others are "keypoints").
BODY_PARTS = {"head": ("Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear"),
              "shoulders": ("L_Shoulder", "R_Shoulder"), "hips": ("L_Hip", "R_Hip"),
              "arms": ("L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist"),
              "legs": ("L_Knee", "R_Knee", "L_Ankle", "R_Ankle"),
              "feet": ("L_Big_Toe", "L_Small_Toe", "L_Heel", "R_Big_Toe", "R_Small_Toe", "R_Heel")}

# Detector keypoints taken as another set's point of a different name. BlazePose's "foot index" is the tip of the
# foot (MediaPipe: "left_foot_index"), within ~1-2 cm of COCO-WholeBody's big toe; it has no small toe.
KEYPOINT_ALIASES = {"blazepose33": {"L_Foot_Index": "L_Big_Toe", "R_Foot_Index": "R_Big_Toe"}}


def _index_by_name(source: JointSet, target: JointSet, exclude: Sequence[str] = ()) -> list[tuple[int, int]]:
    """(target index, source index) of the names the two sets share (after ``KEYPOINT_ALIASES``), ``exclude``
    left out."""
    aliases = KEYPOINT_ALIASES.get(source.name, {})
    where = {aliases.get(name, name): i for i, name in enumerate(source.names)}
    return [(t, where[name]) for t, name in enumerate(target.names) if name in where and name not in exclude]


def detector_keypoints(keypoints_xy: np.ndarray, scores: np.ndarray | None, keypoint_set: str,
                       target: str | JointSet, exclude: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """A detector's keypoints as the keypoints of ``target``, by name.

    keypoints_xy (K, 2) px and scores (K,) in [0, 1] (None: all 1) of the set named ``keypoint_set``
    ("blazepose33", "mano21", ...). Returns (T, 2) px and (T,) confidences of the target set: keypoints the
    detector lacks, those in ``exclude`` and those scored below ``MIN_KEYPOINT_SCORE`` get confidence 0 (and
    position 0). Raises KeyError for an unknown set."""
    from .keypoints import BLAZEPOSE_33

    source = BLAZEPOSE_33 if keypoint_set == BLAZEPOSE_33.name else get_keypoint_set(keypoint_set)
    target = get_keypoint_set(target)
    xy = np.asarray(keypoints_xy, np.float64).reshape(len(source), 2)
    score = np.ones(len(source)) if scores is None else np.asarray(scores, np.float64).reshape(len(source))
    out_xy, out_conf = np.zeros((len(target), 2)), np.zeros(len(target))
    for t, s in _index_by_name(source, target, exclude):
        if np.all(np.isfinite(xy[s])) and np.isfinite(score[s]) and score[s] >= MIN_KEYPOINT_SCORE:
            out_xy[t], out_conf[t] = xy[s], min(1.0, score[s])
    return out_xy, out_conf


def out_of_frame(keypoints_xy: np.ndarray, keypoint_set: str, target: str | JointSet, image_size: tuple[int, int],
                 box_xywh: np.ndarray | None = None, margin: float = OUT_OF_FRAME_MARGIN) -> list[str]:
    """Names of ``target``'s keypoints whose detected position lies outside the image.

    keypoints_xy (K, 2) px of the detector's set ``keypoint_set`` (mapped to ``target`` by name as
    :func:`detector_keypoints` does, whatever their scores); image_size (width, height) px of the image the
    keypoints are in (the image spans [0, width] x [0, height]); box_xywh: the person's box (px), whose larger side
    times ``margin`` is the tolerance (None: the keypoints' own extent). Non-finite keypoints are not listed.
    Returns the names in ``target``'s order. Raises KeyError for an unknown set."""
    from .keypoints import BLAZEPOSE_33

    source = BLAZEPOSE_33 if keypoint_set == BLAZEPOSE_33.name else get_keypoint_set(keypoint_set)
    target = get_keypoint_set(target)
    xy = np.asarray(keypoints_xy, np.float64).reshape(len(source), 2)
    finite = np.all(np.isfinite(xy), 1)
    if box_xywh is not None:
        size = float(max(box_xywh[2], box_xywh[3]))
    else:
        size = float((xy[finite].max(0) - xy[finite].min(0)).max()) if finite.any() else 0.0
    tol = margin * size
    width, height = float(image_size[0]), float(image_size[1])
    outside = finite & ((xy[:, 0] < -tol) | (xy[:, 0] > width + tol) | (xy[:, 1] < -tol) | (xy[:, 1] > height + tol))
    return [target.names[t] for t, s in sorted(_index_by_name(source, target)) if outside[s]]


def truncation_warning(names: Sequence[str]) -> str | None:
    """The warning line for a person whose keypoints ``names`` lie outside the image (:func:`out_of_frame`), naming
    the body parts (``BODY_PARTS``), or None when there are none."""
    if not names:
        return None
    parts = [part for part, members in BODY_PARTS.items() if any(n in members for n in names)]
    other = [n for n in names if not any(n in m for m in BODY_PARTS.values())]
    if other:
        parts.append("hand keypoints" if all(n in MANO_NAMES for n in other) else "keypoints")
    listed = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
    return (f"truncated: {listed} outside the image ({', '.join(names)}): fitted to the visible keypoints, the body "
            f"model's priors pose the rest")


@dataclass
class FitTarget:
    """One person to fit: 2D keypoints (K, 2) working px with confidences (K,) of ``keypoint_set``, K (3, 3)
    working px, optional network joints (K, 3) camera metres of the same set, optional warm start (``init``: one
    person's {"pose", "shape", "trans"} without the batch dimension)."""

    keypoints_px: np.ndarray
    confidence: np.ndarray
    K: np.ndarray
    keypoints_3d_m: np.ndarray | None = None
    init: Mapping[str, Any] | None = None


class KeypointFitter:
    """Fits a body model (Anny by default) of ``kind`` to people's keypoints; the model is built on first use.

    body_model: a :class:`~i2lmesh.bodymodels.base.BodyModel` to use instead of Anny. config: a
    :class:`~i2lmesh.fitting.FitConfig` (None: the defaults of docs/fitting.md, with ``BODY_WARM_ITERS`` and
    ``BODY_WARM_SHAPE`` for bodies and, ``method`` "network+fit", ``NETWORK_FIT_WEIGHT_3D``)."""

    def __init__(self, kind: str, device: torch.device | str = "cpu", body_model=None, config=None,
                 method: str = "fit") -> None:
        from ..fitting import FitConfig

        assert kind in ("body", "hand"), f"kind should be 'body' or 'hand', got {kind!r}."
        if config is None:
            config = FitConfig(warm_iters=BODY_WARM_ITERS if kind == "body" else FitConfig.warm_iters,
                               warm_shape=BODY_WARM_SHAPE if kind == "body" else FitConfig.warm_shape,
                               weight_3d=NETWORK_FIT_WEIGHT_3D if method == "network+fit" else FitConfig.weight_3d)
        self.kind, self.device, self.config = kind, torch.device(device), config
        self._body_model = body_model

    @property
    def body_model(self):
        if self._body_model is None:
            from ..bodymodels import create_body_model

            self._body_model = create_body_model("anny", self.kind).to(self.device)
        return self._body_model

    @property
    def keypoint_set(self) -> str:
        """The keypoint set of method "fit": COCO-17 with COCO-WholeBody's feet (``coco23``) for bodies, MANO-21 for
        hands."""
        return COCO_23.name if self.kind == "body" else "mano21"

    def usable(self, confidence: np.ndarray) -> bool:
        """Whether enough keypoints are confident (``MIN_KEYPOINTS``) to fit this person."""
        return int(np.sum(np.asarray(confidence) > 0)) >= MIN_KEYPOINTS[self.kind]

    def fit(self, targets: list[FitTarget], keypoint_set: str) -> Any:
        """Fit every target (independent problems, one call); returns a
        :class:`~i2lmesh.fitting.FitResult` with a batch of len(targets). Targets with network joints use them
        as root-relative 3D keypoints; a warm start needs every target to have ``init``."""
        from ..fitting import fit_to_keypoints

        assert targets, "nothing to fit"
        kp = np.stack([t.keypoints_px for t in targets])
        conf = np.stack([t.confidence for t in targets])
        K = np.stack([t.K for t in targets])
        kwargs: dict[str, Any] = {}
        if all(t.keypoints_3d_m is not None for t in targets):
            kwargs.update(keypoints_3d=np.stack([t.keypoints_3d_m for t in targets]), keypoints_3d_relative=True,
                          confidence_3d=np.ones(conf.shape))
        if all(t.init is not None for t in targets):
            kwargs["init"] = {name: torch.stack([torch.as_tensor(t.init[name]) for t in targets]).to(self.device)
                              for name in ("pose", "shape", "trans")}
        return fit_to_keypoints(self.body_model, kp, conf, K, keypoint_set=keypoint_set, config=self.config,
                                **kwargs)


def residual_summary(residual_px: np.ndarray, names: Sequence[str], keypoint_set: str,
                     out_of_frame_names: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON ``fit`` entry: per-keypoint reprojection residuals (px of the original image; null where the
    keypoint was not used) and their median; ``out_of_frame`` (the keypoints found outside the image, not used:
    :func:`out_of_frame`) and ``truncated`` (whether there are any)."""
    values = [None if not np.isfinite(v) else round(float(v), 2) for v in residual_px]
    used = residual_px[np.isfinite(residual_px)]
    return {"keypoint_set": keypoint_set, "keypoint_names": list(names), "residual_px": values,
            "median_residual_px": None if used.size == 0 else round(float(np.median(used)), 2),
            "keypoints_used": int(used.size), "out_of_frame": list(out_of_frame_names),
            "truncated": bool(len(out_of_frame_names))}


__all__ = ["METHODS", "MIN_KEYPOINTS", "MIN_KEYPOINT_SCORE", "RESIDUAL_WARNING_FRACTION", "OUT_OF_FRAME_MARGIN",
           "FitTarget", "KeypointFitter", "detector_keypoints", "out_of_frame", "truncation_warning",
           "residual_summary", "NETWORK_FIT_2D_EXCLUDED"]

"""The predictor: image(s) -> detect -> crop -> network -> decode -> meshes in camera space, with uncertainty.

    from i2lmesh import Predictor
    predictor = Predictor.from_checkpoint("body.pt")
    people = predictor.predict("photo.jpg")               # list of PersonResult, one per detected person
    people[0].vertices_m, people[0].joints_2d_px, people[0].vertex_uncertainty_mm

Every step follows the reference (official_spec.md 4.2, 4.4, 4.8): the box is sanitised, made square and enlarged
1.25x (``process_bbox``), cropped with the affine crop of training (``geometry.crop.warp_image``: bilinear, zero
border) into an S x S patch of RGB in [0, 1] (the network applies its checkpoint's own mean/std), and the lixel
outputs are decoded by
:func:`~i2lmesh.inference.decode.decode` (paper Eq. 7: joints = J x the camera-space mesh) with the root depth and
intrinsics K, the decoder evaluation uses too.

Frames and units: image pixels of the *original* image (origin top-left) for every 2D output, box and K; camera
metres (x right, y down, z forward) for 3D outputs; uncertainties in millimetres. Images are read with their EXIF
orientation applied (the reference ignores it), converted to 8-bit RGB, and downscaled internally when their
longest side exceeds ``MAX_IMAGE_SIDE_PX`` (outputs are mapped back to the original pixels).
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..device import resolve_device
from ..bodymodels.joint_sets import JointSet
from ..fitting.keypoints import get_keypoint_set
from ..geometry.camera import default_intrinsics, project
from ..geometry.crop import crop_transforms, process_bbox, warp_image
from .decode import decode, heatmap_confidence, spread_to_camera_mm
from .detect import Detection, DetectorUnavailable, create_detector
from .errors import (FOCAL_RANGE_PX, MAX_THREADS, ROOT_DEPTH_RANGE_M, BadInputError, check_focal,  # noqa: F401
                     check_root_depth)
from .images import (IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE_PX, LoadedImage, as_loaded_image, file_problem,
                     read_image)
from .keypoint_fit import (METHODS, MIN_KEYPOINTS, NETWORK_FIT_2D_EXCLUDED, RESIDUAL_WARNING_FRACTION, FitTarget,
                           KeypointFitter, detector_keypoints, residual_summary)
from .root_depth import ASSUMED_BOX_SIZE_M, k_value_root_depth

log = logging.getLogger(__name__)

MAX_BOXES_PER_IMAGE = 100  # more user boxes for one image are refused (each is a network crop: minutes)
MAX_BOX_COORDINATE_PX = 1e7  # |x|, |y|, w, h of a user box (the box is then clipped to the image)
# Box width/height ranges that a person's box takes (beyond them a box gets a warning, ``box_shape_warning``).
# Bodies: from a thin standing person (~0.25 in COCO person boxes) to a person lying sideways (~3:1 is rare; 2.0
# covers sitting, arms out and most lying poses). Hands: a spread or fisted hand is roughly square; 3:1 either way
# already means an arm or background in the box.
PERSON_BOX_ASPECT = {"body": (0.2, 2.0), "hand": (1 / 3, 3.0)}


# ----------------------------------------------------------------------------------------------------------------
# Results


@dataclass
class PersonResult:
    """One body or hand in one image. Pixels refer to the original image; 3D is camera metres.

    vertices_m (V,3), joints_m (J,3): camera space; joints = J x vertices_m, the regressor applied to the
    camera-space mesh (paper Eq. 7, ``inference.decode``; evaluation scores the same joints).
    joints_2d_px (J,2): joints_m projected with K, in image pixels.
    faces (F,3) int64. box_xywh (4,): the detector's or the user's box; box_processed_xywh (4,): the square x1.25
    box that was cropped. box_source: "user", "hog" or "mediapipe". K (3,3): intrinsics used (original pixels);
    intrinsics_source: "user", "user focal", "default (f = 1500 px)" (``geometry.camera.default_intrinsics``).
    root_depth_m and root_depth_source: "user" or "k-value (assumed W x H m)".
    *_uncertainty_xyz_mm (N,3): 1-sigma per axis from the heatmap spreads (x/y through the crop scale and K at each
    point's depth, z through bbox_3d_size / D); *_uncertainty_mm (N,): their norm.
    score = detector_score x heatmap_confidence; heatmap_confidence in [0, 1] is 1 - mean joint x/y spread /
    the spread of a uniform heatmap (0: flat heatmaps, 1: one-hot peaks). warnings: one-line notes on results
    that are likely wrong (e.g. ``box_shape_warning``); empty when none.
    keypoints_2d_px (K,2), keypoint_scores (K,), keypoint_set ("blazepose33", "mano21"): the keypoint detector's
    own keypoints in original pixels (None for HOG and user boxes); side: "left"/"right" for detected hands.
    method: "network", "fit" or "network+fit" (``inference.keypoint_fit``). For fitted people the mesh is the
    fitting body model's (Anny), the uncertainties and heatmap_confidence are None (no heatmaps), score is the
    detector's, root_depth_source is "fit", and ``fit`` holds the per-keypoint reprojection residuals (original px)
    and ``fit_params`` the body model's pose (J,3 axis-angle), shape (S,) and trans (3,) metres (a warm start).
    track_id: the person's track in a video (``inference.tracking``), else None. box_index: the index of the box
    (user box or detection) this person came from, among the image's boxes (people not fitted leave gaps).
    """

    kind: str
    vertices_m: np.ndarray
    joints_m: np.ndarray
    joints_2d_px: np.ndarray
    faces: np.ndarray
    joint_names: list[str]
    root_index: int
    box_xywh: np.ndarray
    box_processed_xywh: np.ndarray
    box_source: str
    K: np.ndarray
    intrinsics_source: str
    root_depth_m: float
    root_depth_source: str
    vertex_uncertainty_mm: np.ndarray | None
    vertex_uncertainty_xyz_mm: np.ndarray | None
    joint_uncertainty_mm: np.ndarray | None
    joint_uncertainty_xyz_mm: np.ndarray | None
    score: float
    detector_score: float | None
    heatmap_confidence: float | None
    warnings: list[str] = field(default_factory=list)
    keypoints_2d_px: np.ndarray | None = None
    keypoint_scores: np.ndarray | None = None
    keypoint_set: str | None = None
    side: str | None = None
    method: str = "network"
    fit: dict[str, Any] | None = None
    fit_params: dict[str, np.ndarray] | None = None
    track_id: int | None = None
    box_index: int | None = None

    def to_dict(self, with_vertices: bool = False) -> dict[str, Any]:
        """JSON-ready summary (lists of floats). Vertices and faces only when ``with_vertices``."""
        def r(a, nd=6):
            return np.round(np.asarray(a, dtype=np.float64), nd).tolist()

        def stat(a):
            return None if a is None else {"mean": round(float(a.mean()), 1), "median": round(float(np.median(a)), 1),
                                           "max": round(float(a.max()), 1)}

        out = {
            "kind": self.kind, "method": self.method, "score": round(self.score, 4),
            "detector_score": None if self.detector_score is None else round(self.detector_score, 4),
            "heatmap_confidence": None if self.heatmap_confidence is None else round(self.heatmap_confidence, 4),
            "box_xywh_px": r(self.box_xywh, 2), "box_processed_xywh_px": r(self.box_processed_xywh, 2),
            "box_source": self.box_source, "camera": {"K": r(self.K, 4), "source": self.intrinsics_source},
            "root_depth_m": round(self.root_depth_m, 4), "root_depth_source": self.root_depth_source,
            "joint_names": list(self.joint_names), "root_index": self.root_index,
            "joints_2d_px": r(self.joints_2d_px, 2), "joints_3d_m": r(self.joints_m, 5),
            "joint_uncertainty_mm": None if self.joint_uncertainty_mm is None else r(self.joint_uncertainty_mm, 1),
            "joint_uncertainty_xyz_mm": None if self.joint_uncertainty_xyz_mm is None
            else r(self.joint_uncertainty_xyz_mm, 1),
            "vertex_uncertainty_mm": stat(self.vertex_uncertainty_mm),
            "num_vertices": int(len(self.vertices_m)), "num_faces": int(len(self.faces)),
            "warnings": list(self.warnings),
        }
        if self.box_index is not None:
            out["box_index"] = int(self.box_index)
        if self.keypoints_2d_px is not None:
            out["detector_keypoints"] = {"set": self.keypoint_set, "names": _keypoint_names(self.keypoint_set),
                                         "xy_px": r(self.keypoints_2d_px, 2), "scores": r(self.keypoint_scores, 3)}
        if self.side is not None:
            out["side"] = self.side
        if self.track_id is not None:
            out["track_id"] = int(self.track_id)
        if self.fit is not None:
            out["fit"] = dict(self.fit)
        if with_vertices:
            out["vertices_m"] = r(self.vertices_m, 5)
            out["faces"] = np.asarray(self.faces).tolist()
            if self.vertex_uncertainty_mm is not None:
                out["vertex_uncertainty_mm_all"] = r(self.vertex_uncertainty_mm, 1)
        return out


def _keypoint_names(keypoint_set: str | None) -> list[str] | None:
    """The names of a detector's keypoint set ("blazepose33", "mano21", ...), None when unknown."""
    from .keypoints import BLAZEPOSE_33

    if keypoint_set == BLAZEPOSE_33.name:
        return list(BLAZEPOSE_33.names)
    try:
        return list(get_keypoint_set(keypoint_set).names)
    except KeyError:
        return None


def _user_boxes(boxes: Any, source: str) -> np.ndarray:
    """User boxes -> (N, 4) float64 (x, y, w, h); N = 0 for an empty list (nobody in this image)."""
    try:
        if np.iscomplexobj(boxes):  # numpy would drop the imaginary part silently
            raise TypeError
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInputError(f"{source}: boxes should be numbers (x, y, w, h), got {type(boxes).__name__}"
                            ) from None
    if arr.size == 0:
        return arr.reshape(0, 4)
    arr = arr.reshape(1, 4) if arr.shape == (4,) else arr
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise BadInputError(f"{source}: boxes should be (x, y, w, h) rows, got shape {arr.shape}")
    if len(arr) > MAX_BOXES_PER_IMAGE:
        raise BadInputError(f"{source}: {len(arr)} boxes for one image (at most {MAX_BOXES_PER_IMAGE})")
    if not np.all(np.abs(arr) <= MAX_BOX_COORDINATE_PX):  # also NaN and inf
        raise BadInputError(f"{source}: box values must be finite and within +-{MAX_BOX_COORDINATE_PX:g} px, got "
                            f"{arr.tolist()}")
    return arr


def _given_detections(boxes: Any, loaded: LoadedImage) -> list[Detection]:
    """The caller's boxes (x, y, w, h rows, or Detection objects) in original px -> Detections in working px."""
    if isinstance(boxes, (list, tuple)) and boxes and all(isinstance(b, Detection) for b in boxes):
        if len(boxes) > MAX_BOXES_PER_IMAGE:
            raise BadInputError(f"{loaded.source}: {len(boxes)} boxes for one image (at most {MAX_BOXES_PER_IMAGE})")
        checked = [replace(d, box_xywh=_user_boxes(d.box_xywh, loaded.source)[0], score=float(d.score)) for d in boxes]
        return [d.scaled(loaded.scale) for d in checked]
    return [Detection(b * loaded.scale, 1.0, "user") for b in _user_boxes(boxes, loaded.source)]


# ``_fitted`` projects its joints with this name: geometry.camera.project, the package's one pinhole projection.
_project_np = project


def box_shape_warning(box_xywh: np.ndarray, kind: str) -> str | None:
    """A warning when a box's width/height is far from a person's (or hand's), else None.

    The crop is made square around the box's centre (``process_bbox``), so a box much wider than a body (e.g. a
    whole wide image) puts a small person inside mostly background, and the network's mesh is then unreliable.
    Limits in ``PERSON_BOX_ASPECT`` (w/h)."""
    lo, hi = PERSON_BOX_ASPECT[kind]
    w, h = float(box_xywh[2]), float(box_xywh[3])
    if w <= 0 or h <= 0 or lo <= w / h <= hi:
        return None
    return (f"box w/h = {w / h:.2f} is far from a {kind}'s proportions ({lo:g} to {hi:g}): the square crop around "
            f"it is mostly background and the mesh may be wrong; give a box around the {kind}")


def _joint_regressor(net) -> np.ndarray:
    """The network's joint regressor J (J, V) as float64 numpy: the torch network's buffer, or the one an ONNX
    export carries in its metadata. BadInputError for an ONNX file exported without it (before joints were
    defined as J x the camera-space mesh everywhere)."""
    regressor = getattr(net, "joint_regressor", None)
    if regressor is None:
        raise BadInputError(f"{getattr(net, 'path', 'the network')}: exported without the joint regressor that "
                            f"gives the joints (J x the camera-space mesh); export it again with "
                            f"`i2lmesh export-onnx`")
    if isinstance(regressor, torch.Tensor):
        regressor = regressor.detach().cpu().double().numpy()
    return np.asarray(regressor, dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------------
# The predictor


@dataclass
class _Crop:
    image_index: int
    box: np.ndarray  # detection / user box, working px
    processed: np.ndarray  # square x1.25, working px
    box_source: str
    detector_score: float | None
    patch2img: np.ndarray | None  # None without a network
    K: np.ndarray  # working px
    intrinsics_source: str
    root_depth_m: float | None
    patch: np.ndarray | None  # (S, S, 3) float32 0..255 (None without a network)
    warnings: list[str]
    detection: Detection  # working px (its keypoints, side)
    init: dict | None = None  # a warm start for the fit
    box_index: int = 0  # among the image's boxes


class Predictor:
    """Detector, then a network, a body-model fit, or both, then meshes in camera space.

    Build with :meth:`from_checkpoint` (methods "network" and "network+fit") or :meth:`for_fitting` (method
    "fit": no checkpoint); call :meth:`predict`. net: an I2LMeshNet (eval mode) or an OnnxNetwork (None for "fit");
    config its ModelConfig; topology its joint names etc. detector: "auto" (mediapipe if installed, else HOG for
    bodies), "hog" or "mediapipe". batch_size: crops per network call. method: see ``inference.keypoint_fit``;
    fitter: the :class:`~i2lmesh.inference.keypoint_fit.KeypointFitter` of the fitting methods.
    ``last_timings`` holds the seconds spent per stage in the last :meth:`predict` call. ``joint_regressor``
    (J, V) float64: the network's J, which gives the joints from the camera-space mesh (None for method "fit").
    """

    def __init__(self, net, config, topology: dict, faces: np.ndarray | None, device: str = "cpu",
                 backend: str = "torch", batch_size: int = 8, detector: str = "auto", method: str = "network",
                 kind: str | None = None, fitter: KeypointFitter | None = None) -> None:
        if method not in METHODS:
            raise BadInputError(f"method should be one of {', '.join(METHODS)}, got {method!r}")
        if method != "fit" and net is None:
            raise BadInputError(f"method {method!r} needs a network checkpoint (method 'fit' needs none)")
        self.net, self.config, self.topology = net, config, dict(topology or {})
        self.device = resolve_device(device)
        self.backend, self.batch_size, self.detector_name = backend, max(1, batch_size), detector
        self.method = method
        self.kind = config.kind if config is not None else kind
        if self.kind not in ("body", "hand"):
            raise BadInputError(f"kind should be body or hand, got {self.kind!r}")
        self.fitter = fitter if fitter is not None or method == "network" else KeypointFitter(self.kind, self.device)
        if method == "fit":  # the result's mesh and joints are the fitting body model's
            model = self.fitter.body_model
            faces, self.topology = model.faces.cpu().numpy(), model.topology_info()
        self.faces = np.asarray(faces, dtype=np.int64)
        self.joint_regressor = None if net is None else _joint_regressor(net)
        num_joints = config.num_joints if config is not None else len(self.topology.get("joint_names", []))
        names = self.topology.get("joint_names") or [f"joint_{i}" for i in range(num_joints)]
        self.joint_names = list(names)
        self.root_index = int(self.topology.get("root_index", 0))
        self._detectors: dict[str, Any] = {}
        self.last_timings: dict[str, float] = {}
        self._fit_keypoint_set = None if method == "network" else self._keypoint_set_to_fit()

    def _keypoint_set_to_fit(self) -> JointSet:
        """The keypoints the fit compares: COCO-17 / MANO-21 (method "fit"), the network's joints ("network+fit",
        checked to be joints the fitting body model has: BadInputError otherwise)."""
        from ..fitting.keypoints import keypoint_regressor

        if self.method == "fit":
            return get_keypoint_set(self.fitter.keypoint_set)
        try:
            joint_set = get_keypoint_set(self.topology.get("joint_set") or "")
            if list(joint_set.names) != self.joint_names:
                raise KeyError(joint_set.name)
        except KeyError:
            joint_set = JointSet("network", tuple(self.joint_names), self.root_index, (), ())
        try:
            keypoint_regressor(self.fitter.body_model, joint_set)
        except KeyError as exc:
            raise BadInputError(f"method network+fit: the network's joints are not joints of the {self.kind} "
                                f"model it would fit ({str(exc).strip(chr(34) + chr(39))}); use --method network"
                                ) from None
        return joint_set

    @classmethod
    def for_fitting(cls, kind: str = "body", device: str = "cpu", detector: str = "auto", body_model=None,
                    fit_config=None) -> "Predictor":
        """Method "fit": the keypoint detector's keypoints -> a fitted Anny body or hand (or ``body_model``), no
        network (docs/fitting.md). fit_config: a :class:`~i2lmesh.fitting.FitConfig`. Raises BadInputError for
        an unknown kind or a device this machine lacks."""
        if kind not in ("body", "hand"):
            raise BadInputError(f"kind should be body or hand, got {kind!r}")
        device = resolve_device(device)
        fitter = KeypointFitter(kind, device, body_model, fit_config)
        return cls(None, None, {}, None, device, "none", 1, detector, "fit", kind, fitter)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "cpu", backend: str = "torch",
                        optimise: bool = True, batch_size: int = 8, detector: str = "auto",
                        num_threads: int | None = None, method: str = "network", fit_config=None) -> "Predictor":
        """Load an i2lmesh checkpoint (backend "torch") or an exported .onnx file (backend "onnx").

        optimise: fold BatchNorm and use channels_last (exact up to float rounding; torch backend only).
        num_threads: CPU threads for the network (None: the runtime's default, one per core). On a machine shared
        with other work, 1 thread is often faster than fighting for the cores.
        method: "network" (the paper) or "network+fit" (the network's joints and the detector's keypoints fitted
        together, ``inference.keypoint_fit``); fit_config: its :class:`~i2lmesh.fitting.FitConfig`.
        """
        device = resolve_device(device)  # a device this machine lacks is one line, before any loading
        if method not in ("network", "network+fit"):
            hint = " (method 'fit' needs no checkpoint: Predictor.for_fitting)" if method == "fit" else ""
            raise BadInputError(f"method should be network or network+fit with a checkpoint, got {method!r}{hint}")
        if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int)
                                        or not 1 <= num_threads <= MAX_THREADS):
            raise BadInputError(f"num_threads must be a whole number from 1 to {MAX_THREADS}, got {num_threads!r}")
        path = Path(path)
        if num_threads is not None and backend == "torch":
            torch.set_num_threads(int(num_threads))

        def build(net, config, topology, faces, device, backend):
            fitter = None
            if method == "network+fit":
                fitter = KeypointFitter(config.kind, device, None, fit_config, method="network+fit")
            return cls(net, config, topology, faces, device, backend, batch_size, detector, method, None, fitter)

        if backend == "onnx":
            if path.suffix != ".onnx":
                raise BadInputError(f"{path}: --backend onnx needs an .onnx file; make one with "
                                    f"`i2lmesh export-onnx --checkpoint {path} --out MODEL.onnx`")
            from ..export.onnx import OnnxNetwork

            net = OnnxNetwork(path, num_threads=num_threads)
            return build(net, net.config, net.topology, net.faces.numpy(), "cpu", "onnx")
        if backend != "torch":
            raise BadInputError(f"unknown backend {backend!r}; choose torch or onnx")
        if path.suffix == ".onnx":
            raise BadInputError(f"{path}: an ONNX file needs --backend onnx")
        from ..nets.factory import load_network

        net, config = load_network(path, device)
        topology, faces = net.topology, net.faces.cpu().numpy()
        if optimise:
            from ..nets.fast import optimise_for_inference

            fast = optimise_for_inference(net)
            fast.topology = topology
            net = fast
        return build(net.eval(), config, topology, faces, device, "torch")

    # -- helpers -------------------------------------------------------------------------------------------------

    def _input_dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def check_kind(self, kind: str | None) -> str:
        if kind is None:
            return self.kind
        if kind not in ("body", "hand"):
            raise BadInputError(f"kind should be body or hand, got {kind!r}")
        if kind != self.kind and self.net is None:
            raise BadInputError(f"this predictor fits a {self.kind}; it cannot predict a {kind} (make one with "
                                f"kind={kind!r})")
        if kind != self.kind:
            raise BadInputError(f"this checkpoint is a {self.kind} network; it cannot predict a {kind} "
                                f"(use a {kind} checkpoint, or --kind {self.kind})")
        return kind

    def detector(self):
        if self.kind not in self._detectors:
            self._detectors[self.kind] = create_detector(self.kind, self.detector_name)
        return self._detectors[self.kind]

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Run the built-in detector for this predictor's kind on an RGB uint8 image (boxes and keypoints in its
        pixels)."""
        return self.detector().detect(rgb)

    def default_intrinsics(self, image: Any, focal_px: float | None = None) -> np.ndarray:
        """The K (3x3, original pixels) that :meth:`predict` uses for ``image`` (a path, array or LoadedImage) when
        given ``focal_px`` (None: ``geometry.camera.default_intrinsics``, f = 1500 px, principal point at the
        centre)."""
        loaded = as_loaded_image(image)
        K, _ = self._intrinsics(focal_px, loaded)
        return np.diag([1.0 / loaded.scale, 1.0 / loaded.scale, 1.0]) @ K

    def _intrinsics(self, value, loaded: LoadedImage) -> tuple[np.ndarray, str]:
        """K in working pixels from None, a focal length (original px) or a 3x3 K (original px)."""
        s = loaded.scale
        if value is None:
            K = default_intrinsics(*loaded.original_size)
            source = "default (f = 1500 px)"
        elif np.ndim(value) == 0:
            K = default_intrinsics(*loaded.original_size, check_focal(value))
            source = "user focal"
        else:
            try:
                if np.iscomplexobj(value):  # numpy would drop the imaginary part silently
                    raise TypeError
                K = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise BadInputError(f"intrinsics should be a 3x3 K of numbers, got {str(value)[:60]!r}") from None
            if K.shape != (3, 3) or not np.all(np.isfinite(K)) or np.any(K[2] != (0, 0, 1)):
                raise BadInputError(f"intrinsics should be a finite 3x3 K with last row (0, 0, 1), got "
                                    f"{np.asarray(K).tolist()}")
            check_focal(K[0, 0], "intrinsics fx")
            check_focal(K[1, 1], "intrinsics fy")
            source = "user"
        return np.diag([s, s, 1.0]) @ K, source

    # -- the call ------------------------------------------------------------------------------------------------

    def predict(self, image, boxes=None, intrinsics=None, root_depth_m=None, kind: str | None = None, *,
                init=None):
        """Meshes for one image or a list of images.

        image: a path, an (H, W, 3) uint8 RGB array (gray, RGBA, 16-bit, float are converted), a LoadedImage, or a
            list of them.
        boxes: None (run the built-in detector), or per image a list of (x, y, w, h) boxes in original pixels
            (for a single image: a list of boxes or one box), or of :class:`~i2lmesh.inference.detect.Detection`
            in original pixels (their keypoints are used by the fitting methods). Boxes skip detection; the
            fitting methods find keypoints inside a box that has none (mediapipe).
        intrinsics: None (f = 1500 px, centre principal point), a focal length in px, or a 3x3 K; for a list
            of images one value for all or a list with one per image.
        root_depth_m: None (RootNet-style k-value from the box), a depth in metres for everyone, or per image a
            list with one depth per box. Method "fit" finds the depth itself (the value is ignored).
        kind: "body" / "hand" to check against the checkpoint (a mismatch is a BadInputError).
        init: fitting methods: per image (for one image: directly) a list with, per box, a warm start (a previous
            frame's ``PersonResult.fit_params``) or None; every box needs one for a warm start.
        Returns: for one image, a list of :class:`PersonResult` (empty when nobody was found); for a list, a list
        of such lists. Raises BadInputError (one line) for a bad image, box, intrinsics or depth.
        """
        self.check_kind(kind)
        single = not isinstance(image, (list, tuple))
        images = [image] if single else list(image)
        n = len(images)

        def per_image(value, name, is_scalar_like):
            if single:
                return [value]
            if value is None or is_scalar_like(value):
                return [value] * n
            value = list(value)
            if len(value) != n:
                raise BadInputError(f"{name}: got {len(value)} entries for {n} images")
            return value

        boxes_per = per_image(boxes, "boxes", lambda v: False) if not single else [boxes]
        k_per = per_image(intrinsics, "intrinsics", lambda v: np.ndim(v) == 0 or np.shape(v) == (3, 3))
        depth_per = per_image(root_depth_m, "root_depth_m", lambda v: np.ndim(v) == 0)
        init_per = per_image(init, "init", lambda v: False) if not single else [init]

        t0 = time.perf_counter()
        timings = {"load_s": 0.0, "detect_s": 0.0, "crop_s": 0.0, "network_s": 0.0, "decode_s": 0.0, "fit_s": 0.0}
        loaded_images: list[LoadedImage] = []
        crops: list[_Crop] = []
        size = self.config.input_size if self.config is not None else 0
        for i, (img, user_boxes, k_value, depth_value, inits) in enumerate(zip(images, boxes_per, k_per, depth_per,
                                                                              init_per)):
            t = time.perf_counter()
            loaded = as_loaded_image(img, name="<array>" if single else f"<image {i} of the list>")
            loaded_images.append(loaded)
            timings["load_s"] += time.perf_counter() - t
            K, k_source = self._intrinsics(k_value, loaded)
            h, w = loaded.rgb.shape[:2]
            if user_boxes is not None:
                detections = _given_detections(user_boxes, loaded)  # an empty list: an outside detector found nobody
            else:
                t = time.perf_counter()
                try:
                    detections = self.detect(loaded.rgb)
                except DetectorUnavailable as exc:
                    raise BadInputError(str(exc)) from None
                timings["detect_s"] += time.perf_counter() - t
            depths = depth_value
            if depths is not None and np.ndim(depths) > 0:
                try:
                    depths = list(np.asarray(depths, np.float64).reshape(-1))
                except (TypeError, ValueError):
                    raise BadInputError(f"root_depth_m should be numbers (metres), got {str(depths)[:60]!r}"
                                        ) from None
                if len(depths) != len(detections):
                    raise BadInputError(f"root_depth_m: {len(depths)} depths for {len(detections)} boxes")
            if inits is not None and len(inits) != len(detections):
                raise BadInputError(f"init: {len(inits)} warm starts for {len(detections)} boxes")
            t = time.perf_counter()
            for j, det in enumerate(detections):
                processed = process_bbox(det.box_xywh, w, h)
                if processed is None:
                    shown = np.round(det.box_xywh / loaded.scale, 1).tolist()
                    raise BadInputError(f"{loaded.source}: box {shown} (x, y, w, h) lies outside the "
                                        f"{loaded.original_size[0]}x{loaded.original_size[1]} image or is empty")
                d = depths[j] if isinstance(depths, list) else depths
                d = None if d is None else check_root_depth(d, "root_depth_m")
                warning = box_shape_warning(det.box_xywh, self.kind)
                if warning:
                    log.warning("%s: %s", loaded.source, warning)
                if self.net is not None:
                    img2patch, patch2img = crop_transforms(processed, size)
                    patch = warp_image(loaded.rgb, img2patch, size)
                else:
                    patch2img, patch = None, None
                crops.append(_Crop(i, det.box_xywh, processed, det.source, None if det.source == "user" else
                                   det.score, patch2img, K, k_source, None if d is None else float(d), patch,
                                   [warning] if warning else [], det, None if inits is None else inits[j], j))
            timings["crop_s"] += time.perf_counter() - t

        people: list[PersonResult | None] = [None] * len(crops)
        if self.net is not None:
            self._run_network(crops, loaded_images, people, timings)
        if self.method != "network":
            self._fit(crops, loaded_images, people, timings)
        results: list[list[PersonResult]] = [[] for _ in range(n)]
        for crop, person in zip(crops, people):
            if person is not None:
                results[crop.image_index].append(person)
        timings["total_s"] = time.perf_counter() - t0
        self.last_timings = timings
        return results[0] if single else results

    @torch.inference_mode()
    def _run_network(self, crops: list[_Crop], loaded_images: list[LoadedImage], people: list,
                     timings: dict[str, float]) -> None:
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start:start + self.batch_size]
            t = time.perf_counter()
            batch = torch.from_numpy(np.stack([c.patch for c in chunk]).transpose(0, 3, 1, 2) / 255.0)
            # The patches enter in the network's own precision (float32 unless it was converted, e.g. .double()).
            out = self.net(batch.to(self.device, self._input_dtype()) if self.backend == "torch" else batch.float())
            arrays = {name: getattr(out, name).detach().float().cpu().numpy().astype(np.float64) for name in
                      ("joints_spread", "vertices_hm", "vertices_spread")}
            timings["network_s"] += time.perf_counter() - t
            t = time.perf_counter()
            for b, crop in enumerate(chunk):
                people[start + b] = self._decode(crop, {k: v[b] for k, v in arrays.items()},
                                                 loaded_images[crop.image_index])
            timings["decode_s"] += time.perf_counter() - t

    # -- fitting (methods "fit" and "network+fit") ---------------------------------------------------------------

    def _keypoint_detector(self):
        """The mediapipe keypoint detector (the built-in one when it is mediapipe), for boxes without keypoints."""
        built_in = self._detectors.get(self.kind)
        if built_in is None and self.detector_name != "hog":
            try:
                built_in = self.detector()
            except DetectorUnavailable:
                built_in = None
        if getattr(built_in, "name", None) == "mediapipe":
            return built_in
        key = f"{self.kind}:keypoints"
        if key not in self._detectors:
            try:
                self._detectors[key] = create_detector(self.kind, "mediapipe")
            except DetectorUnavailable as exc:
                raise BadInputError(f"method {self.method!r} needs keypoints and boxes without them need the "
                                    f"mediapipe detector: {exc}") from None
        return self._detectors[key]

    def _keypoints_in_box(self, rgb: np.ndarray, det: Detection) -> Detection:
        """``det`` with the keypoints of the keypoint detector run on a square region 1.5x its box (working px):
        the found person overlapping the box most (IoU >= 0.3), or ``det`` unchanged when none is."""
        from .detect import box_iou

        h, w = rgb.shape[:2]
        x, y, bw, bh = det.box_xywh
        half = 0.75 * max(bw, bh)
        cx, cy = x + bw / 2, y + bh / 2
        x0, y0 = int(max(0, math.floor(cx - half))), int(max(0, math.floor(cy - half)))
        x1, y1 = int(min(w, math.ceil(cx + half))), int(min(h, math.ceil(cy + half)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return det
        found = self._keypoint_detector().detect(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
        if not found:
            return det
        shift = np.array([x0, y0, 0.0, 0.0])
        ious = box_iou(np.stack([f.box_xywh + shift for f in found]), det.box_xywh[None])[:, 0]
        best = int(np.argmax(ious))
        if ious[best] < 0.3:
            return det
        f = found[best]  # its keypoints, the caller's box
        return replace(det, keypoints_xy=f.keypoints_xy + shift[:2], keypoint_scores=f.keypoint_scores,
                       keypoint_set=f.keypoint_set, keypoints_3d_m=f.keypoints_3d_m,
                       side=f.side if det.side is None else det.side, side_score=f.side_score)

    def _fit(self, crops: list[_Crop], loaded_images: list[LoadedImage], people: list,
             timings: dict[str, float]) -> None:
        """Fit the body model to each crop's keypoints (and, "network+fit", its network joints); replaces
        ``people`` entries with fitted results. People without enough keypoints are dropped (method "fit") or
        keep their network result with a warning ("network+fit")."""
        from .keypoint_fit import out_of_frame

        fitter = self.fitter
        target_set = self._fit_keypoint_set
        exclude = NETWORK_FIT_2D_EXCLUDED if self.method == "network+fit" and self.kind == "body" else ()
        targets, where, outside = [], [], {}
        for index, crop in enumerate(crops):
            loaded = loaded_images[crop.image_index]
            det = crop.detection
            if det.keypoints_xy is None:
                t = time.perf_counter()
                det = crop.detection = self._keypoints_in_box(loaded.rgb, det)
                timings["detect_s"] += time.perf_counter() - t
            shown = np.round(crop.box / loaded.scale, 1).tolist()
            if det.keypoints_xy is None:
                self._unfitted(people, index, crop, loaded, f"no keypoints found in box {shown}")
                continue
            # keypoints the detector placed outside the image are not fitted (keypoint_fit.OUT_OF_FRAME_MARGIN)
            height, width = loaded.rgb.shape[:2]
            outside[index] = out_of_frame(det.keypoints_xy, det.keypoint_set, target_set, (width, height),
                                          det.box_xywh)
            kp, conf = detector_keypoints(det.keypoints_xy, det.keypoint_scores, det.keypoint_set, target_set,
                                          tuple(exclude) + tuple(outside[index]))
            if not fitter.usable(conf):
                self._unfitted(people, index, crop, loaded, f"too few confident keypoints in box {shown} "
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
                                      target_set, people[index], out_of_frame_names=outside[index])
                if is_warm and self._fit_is_off(person):
                    targets[i].init = crops[index].init = None
                    cold.append(i)
                    continue
                people[index] = person

    @staticmethod
    def _fit_is_off(person: PersonResult) -> bool:
        """Whether a fit's median keypoint residual exceeds ``RESIDUAL_WARNING_FRACTION`` of the person's box."""
        median = person.fit["median_residual_px"]
        return median is not None and median > RESIDUAL_WARNING_FRACTION * max(person.box_xywh[2:])

    def _unfitted(self, people: list, index: int, crop: _Crop, loaded: LoadedImage, reason: str) -> None:
        if self.method == "fit":
            log.warning("%s: %s: not fitted", loaded.source, reason)
            people[index] = None
        else:
            message = f"{reason}: the network's mesh, not fitted"
            log.warning("%s: %s", loaded.source, message)
            people[index].warnings.append(message)

    def _fitted(self, crop: _Crop, loaded: LoadedImage, result, b: int, target_set: JointSet,
                network: PersonResult | None, out_of_frame_names: list[str] | tuple[str, ...] = ()) -> PersonResult:
        """The b-th person of a FitResult as a PersonResult in original pixels; ``out_of_frame_names``: the
        keypoints found outside the image (not fitted; JSON ``fit["out_of_frame"]`` and a warning)."""
        from .keypoint_fit import truncation_warning

        s = loaded.scale
        model = self.fitter.body_model
        vertices = result.vertices_m[b].detach().cpu().numpy().astype(np.float64)
        joints = result.joints_m[b].detach().cpu().numpy().astype(np.float64)
        if not (np.all(np.isfinite(vertices)) and np.all(np.isfinite(joints))):
            raise BadInputError(f"{loaded.source}: the fit of box {np.round(crop.box / s, 1).tolist()} did not "
                                f"converge (non-finite mesh)")
        joints_px = _project_np(joints, crop.K) / s
        residual = result.residual_px[b].detach().cpu().numpy().astype(np.float64) / s
        det, det_score = crop.detection, crop.detector_score
        fit = residual_summary(residual, target_set.names, target_set.name, out_of_frame_names)
        fit["evaluations"] = None if result.evaluations is None else int(result.evaluations[b])
        fit["warm_start"] = crop.init is not None
        warnings = list(crop.warnings) + (list(network.warnings) if network is not None else [])
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
        if crop.init is None and self._fit_is_off(person):  # (a warm fit this far off is redone cold: warned then)
            message = (f"{who}fit: median keypoint residual {fit['median_residual_px']:.1f} px is more than "
                       f"{RESIDUAL_WARNING_FRACTION:.0%} of the box; the mesh may not match the person")
            log.warning("%s: %s", loaded.source, message)
            person.warnings.append(message)
        return person

    def _decode(self, crop: _Crop, out: dict[str, np.ndarray], loaded: LoadedImage) -> PersonResult:
        cfg = self.config
        s = loaded.scale
        if crop.root_depth_m is None:
            root_depth = k_value_root_depth(crop.processed, crop.K, self.kind)
            w_m, h_m = ASSUMED_BOX_SIZE_M[self.kind]
            depth_source = f"k-value (assumed {w_m:g} x {h_m:g} m)"
        else:
            root_depth, depth_source = crop.root_depth_m, "user"
        decoded = decode(out["vertices_hm"], self.joint_regressor, crop.patch2img, crop.K, root_depth, cfg,
                         vertices_spread=out["vertices_spread"], joints_spread=out["joints_spread"],
                         box_size_px=(crop.processed[2], crop.processed[3]))
        vertices, joints, joints_px = decoded.vertices_m, decoded.joints_m, decoded.joints_2d_px
        vertex_unc, joint_unc = decoded.vertex_uncertainty_xyz_mm, decoded.joint_uncertainty_xyz_mm
        confidence = heatmap_confidence(out["joints_spread"], cfg.heatmap_size)
        outputs = {"vertices": vertices, "joints": joints, "2D joints": joints_px, "uncertainty": vertex_unc,
                   "joint uncertainty": joint_unc}
        f32_max = float(np.finfo(np.float32).max)  # outputs are float32: larger values would become inf
        bad = [name for name, value in outputs.items() if not np.all(np.abs(value) < f32_max)]  # NaN fails too
        if bad:  # never written as NaN/inf: an absurd focal, root depth or box, or a network with NaN weights
            raise BadInputError(
                f"{loaded.source}: the {', '.join(bad)} are not finite (NaN or inf) with focal "
                f"{crop.K[0, 0] / s:.6g} px, root depth {root_depth:.6g} m, box "
                f"{np.round(crop.box / s, 1).tolist()}; check these values (or the checkpoint's weights)")
        det_score, det = crop.detector_score, crop.detection
        K_orig = np.diag([1.0 / s, 1.0 / s, 1.0]) @ crop.K
        return PersonResult(
            kind=self.kind, vertices_m=vertices.astype(np.float32), joints_m=joints.astype(np.float32),
            joints_2d_px=(joints_px / s).astype(np.float32), faces=self.faces, joint_names=self.joint_names,
            root_index=self.root_index, box_xywh=crop.box / s, box_processed_xywh=crop.processed / s,
            box_source=crop.box_source, K=K_orig, intrinsics_source=crop.intrinsics_source,
            root_depth_m=float(root_depth), root_depth_source=depth_source,
            vertex_uncertainty_mm=np.linalg.norm(vertex_unc, axis=1).astype(np.float32),
            vertex_uncertainty_xyz_mm=vertex_unc.astype(np.float32),
            joint_uncertainty_mm=np.linalg.norm(joint_unc, axis=1).astype(np.float32),
            joint_uncertainty_xyz_mm=joint_unc.astype(np.float32),
            score=confidence * (1.0 if det_score is None else det_score), detector_score=det_score,
            heatmap_confidence=confidence, warnings=list(crop.warnings),
            keypoints_2d_px=None if det.keypoints_xy is None else (det.keypoints_xy / s).astype(np.float32),
            keypoint_scores=det.keypoint_scores, keypoint_set=det.keypoint_set, side=det.side, track_id=det.track_id,
            box_index=crop.box_index)


__all__ = ["Predictor", "PersonResult", "METHODS", "LoadedImage", "BadInputError", "read_image", "as_loaded_image",
           "spread_to_camera_mm", "heatmap_confidence", "box_shape_warning", "PERSON_BOX_ASPECT", "check_focal",
           "check_root_depth", "file_problem", "MAX_BOXES_PER_IMAGE", "FOCAL_RANGE_PX", "ROOT_DEPTH_RANGE_M",
           "MAX_BOX_COORDINATE_PX", "MAX_IMAGE_SIDE_PX", "MAX_IMAGE_PIXELS", "IMAGE_SUFFIXES"]

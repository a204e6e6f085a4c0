"""The predictor: image(s) -> detect -> crop -> network or fit -> decode -> meshes in camera space, with uncertainty.

    from i2lmesh import Predictor
    predictor = Predictor.from_checkpoint("body.pt")
    people = predictor.predict("photo.jpg")               # list of PersonResult, one per detected person
    people[0].vertices_m, people[0].joints_2d_px, people[0].vertex_uncertainty_mm

:class:`Predictor` is the pipeline (after detectron2's ``DefaultPredictor``); each stage has its home: images
(``inference.images``), detection (``inference.detect``, ``inference.keypoints``), the user's boxes
(``inference.boxes``), the crop (``geometry.crop``), the network, the fit (``inference.fit_pipeline`` over
``inference.keypoint_fit``), the decoder (``inference.decode``) and the result (``inference.result``).

Every step follows the reference (official_spec.md 4.2, 4.4, 4.8): the box is sanitised, made square and enlarged
1.25x (``process_bbox``), cropped with the affine crop of training (``geometry.crop.warp_image``: bilinear, zero
border) into an S x S patch of RGB in [0, 1] (the network applies its checkpoint's own mean/std), and the lixel
outputs are decoded by :func:`~i2lmesh.inference.decode.decode` (paper Eq. 7: joints = J x the camera-space mesh)
with the root depth and intrinsics K, the decoder evaluation uses too.

Frames and units: image pixels of the *original* image (origin top-left) for every 2D output, box and K; camera
metres (x right, y down, z forward) for 3D outputs; uncertainties in millimetres. Images are read with their EXIF
orientation applied (the reference ignores it), converted to 8-bit RGB, and downscaled internally when their
longest side exceeds ``MAX_IMAGE_SIDE_PX`` (outputs are mapped back to the original pixels).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..device import resolve_device
from ..geometry.camera import default_intrinsics
from ..geometry.crop import process_bbox
from .boxes import (MAX_BOX_COORDINATE_PX, MAX_BOXES_PER_IMAGE, PERSON_BOX_ASPECT, Crop, box_shape_warning,
                    given_detections)
from .decode import decode, heatmap_confidence, spread_to_camera_mm
from .detect import Detection, DetectorUnavailable, create_detector
from .errors import (FOCAL_RANGE_PX, MAX_THREADS, ROOT_DEPTH_RANGE_M, BadInputError, check_focal,  # noqa: F401
                     check_root_depth)
from .fit_pipeline import FitStage, keypoint_set_to_fit
from .images import (IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE_PX, LoadedImage, as_loaded_image, file_problem,
                     read_image)
from .keypoint_fit import METHODS, KeypointFitter
from ..geometry.preprocessing import Preprocessing
from .result import PersonResult
from .root_depth import ASSUMED_BOX_SIZE_M, k_value_root_depth

log = logging.getLogger(__name__)


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


class Predictor:
    """Detector, then a network, a body-model fit, or both, then meshes in camera space.

    Build with :meth:`from_checkpoint` (methods "network" and "network+fit") or :meth:`for_fitting` (method
    "fit": no checkpoint); call :meth:`predict`. net: an I2LMeshNet (eval mode) or an OnnxNetwork (None for "fit");
    config its ModelConfig; topology its joint names etc. detector: "auto" (mediapipe if installed, else HOG for
    bodies), "hog" or "mediapipe". batch_size: crops per network call. method: see ``inference.keypoint_fit``;
    fitter: the :class:`~i2lmesh.inference.keypoint_fit.KeypointFitter` of the fitting methods.
    ``last_timings`` holds the seconds spent per stage in the last :meth:`predict` call. ``joint_regressor``
    (J, V) float64: the network's J, which gives the joints from the camera-space mesh (None for method "fit").
    ``preprocessing``: the network's input as data (:class:`~i2lmesh.geometry.preprocessing.Preprocessing`;
    None for method "fit").
    """

    def __init__(self, net, config, topology: dict, faces: np.ndarray | None, device: str = "cpu",
                 backend: str = "torch", batch_size: int = 8, detector: str = "auto", method: str = "network",
                 kind: str | None = None, fitter: KeypointFitter | None = None) -> None:
        if method not in METHODS:
            raise BadInputError(f"method should be one of {', '.join(METHODS)}, got {method!r}")
        if method != "fit" and net is None:
            raise BadInputError(f"method {method!r} needs a network checkpoint (method 'fit' needs none)")
        self.net, self.config, self.topology = net, config, dict(topology or {})
        self.preprocessing = None if config is None else Preprocessing.from_config(config)
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
        self._fit_stage = None if method == "network" else FitStage(
            self.fitter, self.kind, method, keypoint_set_to_fit(method, self.kind, self.fitter, self.topology,
                                                                self.joint_names, self.root_index),
            self._keypoint_detector)

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

    def detector(self) -> Any:
        """The built-in detector of this predictor's kind (``create_detector``), built on first use."""
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

    def predict(self, image: Any, boxes: Any = None, intrinsics: Any = None, root_depth_m: Any = None,
                kind: str | None = None, *, init: Any = None) -> list[PersonResult] | list[list[PersonResult]]:
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
        crops: list[Crop] = []
        for i, (img, given, k_value, depth_value, inits) in enumerate(zip(images, boxes_per, k_per, depth_per,
                                                                          init_per)):
            t = time.perf_counter()
            loaded = as_loaded_image(img, name="<array>" if single else f"<image {i} of the list>")
            loaded_images.append(loaded)
            timings["load_s"] += time.perf_counter() - t
            K, k_source = self._intrinsics(k_value, loaded)
            if given is not None:
                detections = given_detections(given, loaded)  # an empty list: an outside detector found nobody
            else:
                t = time.perf_counter()
                try:
                    detections = self.detect(loaded.rgb)
                except DetectorUnavailable as exc:
                    raise BadInputError(str(exc)) from None
                timings["detect_s"] += time.perf_counter() - t
            t = time.perf_counter()
            crops += self._crops(i, loaded, detections, K, k_source, depth_value, inits)
            timings["crop_s"] += time.perf_counter() - t

        people: list[PersonResult | None] = [None] * len(crops)
        if self.net is not None:
            self._run_network(crops, loaded_images, people, timings)
        if self._fit_stage is not None:
            self._fit_stage(crops, loaded_images, people, timings)
        results: list[list[PersonResult]] = [[] for _ in range(n)]
        for crop, person in zip(crops, people):
            if person is not None:
                results[crop.image_index].append(person)
        timings["total_s"] = time.perf_counter() - t0
        self.last_timings = timings
        return results[0] if single else results

    def _crops(self, image_index: int, loaded: LoadedImage, detections: list[Detection], K: np.ndarray,
               k_source: str, depth_value: Any, inits: list | None) -> list[Crop]:
        """One image's boxes (working px) -> Crops: the root depth checked per box, the square x1.25 box and, with
        a network, its patch; K (3x3, working px). Raises BadInputError for a box outside the image, a bad depth,
        or counts of depths / warm starts that do not match the boxes."""
        h, w = loaded.rgb.shape[:2]
        depths = depth_value
        if depths is not None and np.ndim(depths) > 0:
            try:
                depths = list(np.asarray(depths, np.float64).reshape(-1))
            except (TypeError, ValueError):
                raise BadInputError(f"root_depth_m should be numbers (metres), got {str(depths)[:60]!r}") from None
            if len(depths) != len(detections):
                raise BadInputError(f"root_depth_m: {len(depths)} depths for {len(detections)} boxes")
        if inits is not None and len(inits) != len(detections):
            raise BadInputError(f"init: {len(inits)} warm starts for {len(detections)} boxes")
        prep = self.preprocessing
        crops = []
        for j, det in enumerate(detections):
            # without a network (method "fit") the reference's square x1.25 box, which the result reports
            processed = process_bbox(det.box_xywh, w, h) if prep is None else prep.crop_box(det.box_xywh, w, h)
            if processed is None:
                shown = np.round(det.box_xywh / loaded.scale, 1).tolist()
                raise BadInputError(f"{loaded.source}: box {shown} (x, y, w, h) lies outside the "
                                    f"{loaded.original_size[0]}x{loaded.original_size[1]} image or is empty")
            d = depths[j] if isinstance(depths, list) else depths
            d = None if d is None else check_root_depth(d, "root_depth_m")
            # the network's crop only (fitting alone makes none); said once per person in a video (its first frame)
            warning = None if self.net is None else box_shape_warning(det.box_xywh, self.kind, det.source == "user")
            if warning and (inits is None or inits[j] is None):
                log.warning("%s: %s", loaded.source, warning)
            if self.net is not None:
                img2patch, patch2img = prep.transforms(processed)
                patch = prep.warp(loaded.rgb, img2patch)
            else:
                patch2img, patch = None, None
            crops.append(Crop(image_index, det.box_xywh, processed, det.source, None if det.source == "user" else
                              det.score, patch2img, K, k_source, None if d is None else float(d), patch,
                              [warning] if warning else [], det, None if inits is None else inits[j], j))
        return crops

    @torch.inference_mode()
    def _run_network(self, crops: list[Crop], loaded_images: list[LoadedImage], people: list,
                     timings: dict[str, float]) -> None:
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start:start + self.batch_size]
            t = time.perf_counter()
            batch = torch.from_numpy(self.preprocessing.to_unit_chw(np.stack([c.patch for c in chunk])))
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

    def _keypoint_detector(self) -> Any:
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

    def _decode(self, crop: Crop, out: dict[str, np.ndarray], loaded: LoadedImage) -> PersonResult:
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

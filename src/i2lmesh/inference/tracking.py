"""Following people across video frames: each frame's detections are assigned to tracks, so that smoothing and the
fit's warm start follow the same person (:class:`VideoPredictor`: ``i2lmesh demo`` on videos, the web page).

Assignment: the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) on a cost per (track, detection)
pair of ``1 - IoU`` of the boxes, averaged with the keypoint distance (mean over keypoints both have, divided by
the track box's diagonal, capped at 1) when both carry keypoints; a pair costing more than ``MAX_COST`` is not a
match. Unmatched detections start new tracks; a track unseen for more than ``max_missed`` frames ends. This is
SORT's association step (Bewley et al., ICIP 2016) without its Kalman filter: at video frame rates a person's box
moves little between frames, and the keypoint term separates people whose boxes overlap.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .detect import Detection, box_iou

MAX_COST = 0.8  # 1 - IoU = 0.8: boxes overlapping by IoU 0.2 still match when nothing better does
MAX_MISSED_FRAMES = 10


@dataclass
class Track:
    """One followed person: id, last box (x, y, w, h px), last keypoints (K, 2) or None, frames since last seen,
    and ``state``: what the caller keeps per person (e.g. the fit's warm start, smoothing filters)."""

    track_id: int
    box_xywh: np.ndarray
    keypoints_xy: np.ndarray | None
    missed: int = 0
    state: dict[str, Any] = field(default_factory=dict)


class PersonTracker:
    """Assigns each frame's detections to tracks (see the module docstring). ``max_missed``: frames a track may
    go unseen before it ends."""

    def __init__(self, max_missed: int = MAX_MISSED_FRAMES, max_cost: float = MAX_COST) -> None:
        self.max_missed, self.max_cost = max_missed, max_cost
        self.tracks: list[Track] = []
        self._next_id = 0

    def cost(self, track: Track, det: Detection, iou: float | None = None) -> float:
        """The assignment cost in [0, 1] of ``det`` to ``track`` (``iou``: their box IoU, when already known)."""
        if iou is None:
            iou = float(box_iou(track.box_xywh[None], np.asarray(det.box_xywh, np.float64)[None])[0, 0])
        cost = 1.0 - iou
        a, b = track.keypoints_xy, det.keypoints_xy
        if a is not None and b is not None and np.shape(a) == np.shape(b):
            both = np.all(np.isfinite(a), 1) & np.all(np.isfinite(b), 1)
            if both.any():
                diagonal = max(float(np.hypot(track.box_xywh[2], track.box_xywh[3])), 1e-6)
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
            ious = box_iou(np.stack([t.box_xywh for t in self.tracks]),
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
            if track is None:
                track = Track(self._next_id, np.asarray(det.box_xywh, np.float64), None)
                self._next_id += 1
                self.tracks.append(track)
                assigned[i] = track
            track.box_xywh = np.asarray(det.box_xywh, np.float64).copy()
            track.keypoints_xy = None if det.keypoints_xy is None else np.asarray(det.keypoints_xy, np.float64).copy()
            track.missed = 0
            seen.add(track.track_id)
        for track in self.tracks:
            if track.track_id not in seen:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return [t for t in assigned if t is not None]


class VideoPredictor:
    """A Predictor applied to the frames of one video, in order: people followed across frames
    (:class:`PersonTracker`; each result's ``track_id``), each track's fit warm-started from its previous frame
    (fitting methods), and optionally each track's vertices, joints and 2D joints smoothed by a One Euro filter
    (``inference.smoothing``).

        video = VideoPredictor(predictor, fps=25.0, smooth=True)
        for frame in frames:                    # (H, W, 3) uint8 RGB arrays or LoadedImages
            people = video(frame)               # list of PersonResult sorted by track_id

    boxes: the same user boxes (x, y, w, h original px) for every frame, or None (the built-in detector).
    intrinsics, root_depth_m: as :meth:`Predictor.predict`. Raises what :meth:`Predictor.predict` raises."""

    def __init__(self, predictor, fps: float = 30.0, smooth: bool = False, boxes=None, intrinsics=None,
                 root_depth_m=None, tracker: PersonTracker | None = None) -> None:
        self.predictor, self.dt_s, self.smooth = predictor, 1.0 / max(float(fps), 1e-6), smooth
        self.boxes, self.intrinsics, self.root_depth_m = boxes, intrinsics, root_depth_m
        self.tracker = tracker or PersonTracker()

    def __call__(self, frame, name: str = "<frame>") -> list:
        from .predictor import _user_boxes, as_loaded_image
        from .smoothing import OneEuroFilter

        predictor = self.predictor
        loaded = as_loaded_image(frame, name=name)
        if self.boxes is None:
            # detections come in working pixels; predict takes original ones
            detections = [d.scaled(1.0 / loaded.scale) for d in predictor.detect(loaded.rgb)]
        else:  # the same boxes in every frame (a bad one raises BadInputError)
            detections = [Detection(b, 1.0, "user") for b in _user_boxes(self.boxes, loaded.source)]
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


__all__ = ["PersonTracker", "Track", "VideoPredictor", "MAX_COST", "MAX_MISSED_FRAMES"]

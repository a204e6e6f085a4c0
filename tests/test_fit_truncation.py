"""Truncated people (``inference.keypoint_fit.out_of_frame``): keypoints the detector placed outside the image are
not fitted, are named in the JSON (``fit["out_of_frame"]``, ``fit["truncated"]``) and give a warning; a person inside
the image is not flagged. Synthetic keypoints (exact projections of an Anny body) stand in for the detector; the
real photos of ``../shared/photos`` are checked when they and mediapipe are there."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from i2lmesh.inference.keypoint_fit import (OUT_OF_FRAME_MARGIN, detector_keypoints, out_of_frame,
                                            residual_summary, truncation_warning)
from i2lmesh.inference.keypoints import BLAZEPOSE_33

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos"
LEGS = ("L_Knee", "R_Knee", "L_Ankle", "R_Ankle", "L_Heel", "R_Heel", "L_Foot_Index", "R_Foot_Index")


def _blazepose_person() -> np.ndarray:
    """A standing person's 33 BlazePose keypoints (px), head at y = 40, feet at y = 400, x around 200."""
    xy = np.zeros((33, 2))
    rows = {"Nose": 40, "L_Shoulder": 110, "R_Shoulder": 110, "L_Elbow": 180, "R_Elbow": 180, "L_Wrist": 240,
            "R_Wrist": 240, "L_Hip": 230, "R_Hip": 230, "L_Knee": 320, "R_Knee": 320, "L_Ankle": 395, "R_Ankle": 395,
            "L_Heel": 400, "R_Heel": 400, "L_Foot_Index": 405, "R_Foot_Index": 405}
    for i, name in enumerate(BLAZEPOSE_33.names):
        side = 1.0 if name.startswith("L_") else -1.0 if name.startswith("R_") else 0.0
        xy[i] = (200.0 + 30.0 * side, rows.get(name, 35.0))
    return xy


def test_keypoints_outside_the_image_are_named_and_zeroed():
    xy = _blazepose_person()
    box = np.array([150.0, 20.0, 100.0, 390.0])  # larger side 390 px: the margin is 3 % of it, 11.7 px
    # all inside a 480 x 640 image (W x H): nobody is flagged, every COCO-23 keypoint it has is used
    assert out_of_frame(xy, "blazepose33", "coco23", (480, 640), box) == []
    # the same person in a 480 x 300 image: knees (y 320), ankles, heels and toes lie below the bottom edge
    names = out_of_frame(xy, "blazepose33", "coco23", (480, 300), box)
    assert names == ["L_Knee", "R_Knee", "L_Ankle", "R_Ankle", "L_Big_Toe", "L_Heel", "R_Big_Toe", "R_Heel"]
    scores = np.full(33, 0.9)
    kp, conf = detector_keypoints(xy, scores, "blazepose33", "coco23", names)
    from i2lmesh.fitting.keypoints import COCO_23

    for i, name in enumerate(COCO_23.names):
        if name in names or name in ("L_Small_Toe", "R_Small_Toe"):  # BlazePose has no small toes
            assert conf[i] == 0.0 and np.all(kp[i] == 0.0), name
        else:
            assert conf[i] == pytest.approx(0.9) and np.allclose(kp[i], xy[BLAZEPOSE_33.names.index(
                {"L_Big_Toe": "L_Foot_Index", "R_Big_Toe": "R_Foot_Index"}.get(name, name))]), name


def test_margin_and_sides():
    xy = _blazepose_person()
    box = np.array([150.0, 20.0, 100.0, 390.0])
    margin = OUT_OF_FRAME_MARGIN * 390.0
    inside = xy.copy()
    inside[BLAZEPOSE_33.names.index("L_Wrist")] = (-0.5 * margin, 240.0)  # just past the left edge: still seen
    assert out_of_frame(inside, "blazepose33", "coco17", (480, 640), box) == []
    for position, edge in (((-1.5 * margin, 240.0), "left"), ((480 + 1.5 * margin, 240.0), "right"),
                           ((200.0, -1.5 * margin), "top"), ((200.0, 640 + 1.5 * margin), "bottom")):
        moved = xy.copy()
        moved[BLAZEPOSE_33.names.index("L_Wrist")] = position
        assert out_of_frame(moved, "blazepose33", "coco17", (480, 640), box) == ["L_Wrist"], edge
    moved = xy.copy()
    moved[BLAZEPOSE_33.names.index("L_Wrist")] = np.nan  # not a position: not "outside"
    assert out_of_frame(moved, "blazepose33", "coco17", (480, 640), box) == []
    # hands: MANO-21 names, "hand keypoints" in the warning
    hand = np.tile([100.0, 100.0], (21, 1))
    hand[8] = (100.0, 400.0)
    assert out_of_frame(hand, "mano21", "mano21", (300, 300)) == ["Index_4"]
    assert "hand keypoints outside the image" in truncation_warning(["Index_4"])


def test_warning_and_json_entries():
    assert truncation_warning([]) is None
    text = truncation_warning(["L_Knee", "R_Knee", "L_Ankle", "R_Ankle", "L_Heel"])
    assert text.startswith("truncated: legs and feet outside the image (L_Knee, R_Knee, L_Ankle, R_Ankle, L_Heel)")
    assert "fitted to the visible keypoints" in text
    assert "arms" in truncation_warning(["L_Wrist"]) and "legs" not in truncation_warning(["L_Wrist"])
    fit = residual_summary(np.array([1.0, np.nan, 2.0]), ["Nose", "L_Knee", "R_Knee"], "x", ["L_Knee"])
    assert fit["out_of_frame"] == ["L_Knee"] and fit["truncated"] is True and fit["residual_px"][1] is None
    assert residual_summary(np.array([1.0]), ["Nose"], "x")["truncated"] is False


@pytest.fixture(scope="module")
def truncated_scene(anny_body):
    """One synthetic body seen whole in a 512 px image, and the same keypoints in an image cut above its knees."""
    pytest.importorskip("anny")
    from i2lmesh.fitting.synthetic import synthetic_targets
    from i2lmesh.inference.detect import Detection

    target = synthetic_targets(anny_body, 8, seed=21, keypoint_set="coco17")
    kp = target["keypoints_2d"].double().numpy()
    # an upright person seen whole: every keypoint inside the 512 px image with room to spare
    upright = [i for i in range(8) if kp[i].min() > 40 and kp[i].max() < 470
               and kp[i, 15:17, 1].min() > kp[i, 5:7, 1].max() + 50]
    assert upright, "no upright, whole person among the synthetic bodies"
    i = upright[0]
    xy = kp[i]
    cut = int(round(0.5 * (xy[11:13, 1].max() + xy[13:15, 1].min())))  # between the hips and the knees
    lo, hi = xy.min(0), xy.max(0)
    det = Detection(np.r_[lo - 5, hi - lo + 10], 0.9, "test", keypoints_xy=xy, keypoint_scores=np.ones(17),
                    keypoint_set="coco17")
    return {"K": target["K"][i].double().numpy(), "det": det, "cut": cut, "xy": xy}


def test_predictor_flags_a_truncated_person_and_not_a_whole_one(anny_body, truncated_scene, caplog):
    from i2lmesh.fitting import FitConfig
    from i2lmesh.inference.predictor import Predictor

    short = FitConfig(rigid_iters=10, stages=((10.0, 10.0, 10, 10.0), (1.0, 1.0, 8, 1.0)))
    predictor = Predictor.for_fitting("body", body_model=anny_body, fit_config=short)
    scene = truncated_scene
    whole = predictor.predict(np.zeros((512, 512, 3), np.uint8), boxes=[scene["det"]], intrinsics=scene["K"])
    assert len(whole) == 1 and whole[0].fit["out_of_frame"] == [] and whole[0].fit["truncated"] is False
    assert not any("truncated" in w for w in whole[0].warnings)
    with caplog.at_level(logging.WARNING):
        cut = predictor.predict(np.zeros((scene["cut"], 512, 3), np.uint8), boxes=[scene["det"]],
                                intrinsics=scene["K"])
    assert len(cut) == 1
    fit = cut[0].fit
    assert fit["out_of_frame"] == ["L_Knee", "R_Knee", "L_Ankle", "R_Ankle"] and fit["truncated"] is True
    # not fitted: no residual, and the legs are the priors' (not pulled below the image)
    names = fit["keypoint_names"]
    assert all(fit["residual_px"][names.index(n)] is None for n in fit["out_of_frame"])
    assert fit["keypoints_used"] == 13 and whole[0].fit["keypoints_used"] == 17
    assert any(w.startswith("truncated: legs outside the image") for w in cut[0].warnings)
    assert "truncated: legs outside the image" in caplog.text
    doc = json.loads(json.dumps(cut[0].to_dict(), allow_nan=False))
    assert doc["fit"]["out_of_frame"] == fit["out_of_frame"] and doc["fit"]["truncated"] is True


@pytest.mark.skipif(not (PHOTOS / "basketball1.png").is_file(), reason="real photos not here (../shared/photos)")
def test_real_photo_legs_below_the_frame_are_flagged():
    """basketball1 (640x480): the right player is cut at the hips; BlazePose puts his knees and ankles 55-250 px
    below the image with visibilities up to 0.62. The left player is whole."""
    from PIL import Image

    from i2lmesh.inference.keypoints import MediaPipeKeypointDetector, mediapipe_keypoints_available

    if not mediapipe_keypoints_available():
        pytest.skip("mediapipe's models are not installed")
    rgb = np.asarray(Image.open(PHOTOS / "basketball1.png").convert("RGB"))
    people = MediaPipeKeypointDetector("body").detect(rgb)
    assert len(people) == 2
    flagged = {("right" if p.box_xywh[0] > 320 else "left"): out_of_frame(p.keypoints_xy, p.keypoint_set, "coco23",
                                                                          (640, 480), p.box_xywh) for p in people}
    assert flagged["left"] == []
    assert {"L_Knee", "R_Knee", "L_Ankle", "R_Ankle"} <= set(flagged["right"])

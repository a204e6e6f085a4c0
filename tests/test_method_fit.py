"""The Predictor's fitting methods ("fit", "network+fit"), people followed across video frames, and
``i2lmesh demo --method``. Keypoints come as Detections with exact projections of synthetic Anny bodies (no
detector needed), so the bounds are the fitting benchmark's (docs/fitting.md) with margin."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("anny")
pytest.importorskip("roma")

from i2lmesh import get_preset  # noqa: E402
from i2lmesh.fitting import FitConfig  # noqa: E402
from i2lmesh.fitting.synthetic import synthetic_targets  # noqa: E402
from i2lmesh.inference.detect import Detection  # noqa: E402
from i2lmesh.inference.keypoint_fit import detector_keypoints  # noqa: E402
from i2lmesh.inference.predictor import BadInputError, Predictor  # noqa: E402
from i2lmesh.inference.tracking import PersonTracker  # noqa: E402
from i2lmesh.metrics import pa_errors  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
SHORT = FitConfig(rigid_iters=10, stages=((10.0, 10.0, 10, 10.0), (1.0, 1.0, 8, 1.0)), warm_iters=6)


@pytest.fixture(scope="module")
def scene(anny_body):
    """Two synthetic bodies in one 512 px image: exact COCO-17 keypoints as Detections, and the ground truth."""
    target = synthetic_targets(anny_body, 2, seed=14, keypoint_set="coco17")
    K = target["K"][0].double().numpy()
    kp = target["keypoints_2d"].double().numpy()
    # the second person seen through the first one's camera (one image, one K)
    from i2lmesh.geometry.camera import project

    kp[1] = project(target["keypoints_3d"][1].double().numpy(), K)
    detections = []
    for i in range(2):
        lo, hi = kp[i].min(0), kp[i].max(0)
        detections.append(Detection(np.r_[lo - 10, hi - lo + 20], 0.9, "test", keypoints_xy=kp[i],
                                    keypoint_scores=np.ones(17), keypoint_set="coco17"))
    return {"target": target, "K": K, "detections": detections, "image": np.zeros((512, 512, 3), np.uint8)}


@pytest.fixture(scope="module")
def fitted(anny_body, scene):
    predictor = Predictor.for_fitting("body", body_model=anny_body, fit_config=SHORT)
    return predictor, predictor.predict(scene["image"], boxes=scene["detections"], intrinsics=scene["K"])


def test_detector_keypoints_by_name():
    from i2lmesh.inference.keypoints import BLAZEPOSE_33

    xy = np.arange(66, dtype=np.float64).reshape(33, 2)
    scores = np.full(33, 0.9)
    scores[BLAZEPOSE_33.names.index("L_Knee")] = 0.1  # below MIN_KEYPOINT_SCORE: dropped
    out, conf = detector_keypoints(xy, scores, "blazepose33", "coco17")
    from i2lmesh.fitting.keypoints import COCO_17

    for name in ("Nose", "L_Eye", "R_Ear", "L_Shoulder", "R_Wrist", "L_Hip", "R_Ankle"):
        np.testing.assert_array_equal(out[COCO_17.index(name)], xy[BLAZEPOSE_33.index(name)])
    assert conf[COCO_17.index("L_Knee")] == 0 and conf.sum() == pytest.approx(16 * 0.9)
    _, conf = detector_keypoints(xy, scores, "blazepose33", "coco17", exclude=("L_Hip", "R_Hip"))
    assert conf[COCO_17.index("L_Hip")] == 0 and conf[COCO_17.index("R_Hip")] == 0


def test_fit_method_recovers_bodies(anny_body, scene, fitted):
    predictor, people = fitted
    assert len(people) == 2 and [p.method for p in people] == ["fit", "fit"]
    target = scene["target"]
    for i, person in enumerate(people):
        assert person.vertices_m.shape == (anny_body.num_vertices, 3)
        assert person.vertex_uncertainty_mm is None and person.root_depth_source == "fit"
        # bench_fitting (H36M-14 joints, full schedule): median PA-MPJPE 33 mm, 90th percentile 75 mm; the mean
        # pose ~130 mm. Here all SMPL_29 joints, short schedule: 36 and 46 mm.
        pa = pa_errors(torch.as_tensor(person.joints_m)[None], target["joints_m"][i:i + 1]).mean()
        assert float(pa) < 80.0
        assert person.fit["median_residual_px"] < 4.0 and person.fit["keypoints_used"] == 17
        # the 2D joints are the 3D joints projected with the K that was used
        z = person.joints_m[:, 2:]
        uv = person.joints_m[:, :2] / z * np.diag(person.K)[:2] + person.K[:2, 2]
        np.testing.assert_allclose(person.joints_2d_px, uv, atol=1e-2)
    # the first person's camera is the image's: its depth is recovered (2D only: up to the body's size, 8 % here)
    assert abs(people[0].root_depth_m - float(target["joints_m"][0, 0, 2])) < 0.15 * float(target["joints_m"][0, 0, 2])


def test_fit_json_is_strict_and_names_residuals(fitted):
    _, people = fitted
    doc = json.loads(json.dumps(people[0].to_dict(with_vertices=True), allow_nan=False))
    assert doc["method"] == "fit" and doc["heatmap_confidence"] is None and doc["vertex_uncertainty_mm"] is None
    # bodies are fitted on COCO-17 + COCO-WholeBody's feet; the detector (here exact COCO-17) gave no feet: null
    assert doc["fit"]["keypoint_set"] == "coco23" and len(doc["fit"]["residual_px"]) == 23
    assert doc["fit"]["residual_px"][17:] == [None] * 6 and None not in doc["fit"]["residual_px"][:17]
    assert doc["fit"]["keypoint_names"][0] == "Nose" and "vertex_uncertainty_mm_all" not in doc


def test_warm_start_is_cheaper_and_stays(fitted, scene):
    predictor, people = fitted
    again = predictor.predict(scene["image"], boxes=scene["detections"], intrinsics=scene["K"],
                              init=[p.fit_params for p in people])
    for cold, warm in zip(people, again):
        assert warm.fit["warm_start"] and not cold.fit["warm_start"]
        assert warm.fit["evaluations"] < cold.fit["evaluations"]
        # from its own solution the fit stays near (the short schedule had not converged: it goes on a little)
        assert np.linalg.norm(warm.vertices_m - cold.vertices_m, axis=1).mean() < 0.03
        assert warm.fit["median_residual_px"] < cold.fit["median_residual_px"] + 2.0
    with pytest.raises(BadInputError, match="init: 1 warm starts for 2 boxes"):
        predictor.predict(scene["image"], boxes=scene["detections"], intrinsics=scene["K"], init=[None])


def test_too_few_keypoints_is_skipped_with_a_warning(anny_body, scene, caplog):
    predictor = Predictor.for_fitting("body", body_model=anny_body, fit_config=SHORT)
    det = scene["detections"][0]
    scores = np.zeros(17)
    scores[:4] = 1.0
    few = Detection(det.box_xywh, 0.9, "test", keypoints_xy=det.keypoints_xy, keypoint_scores=scores,
                    keypoint_set="coco17")
    assert predictor.predict(scene["image"], boxes=[few], intrinsics=scene["K"]) == []
    assert "too few confident keypoints" in caplog.text


def _joint_net(kind: str = "body"):
    """A tiny random network whose 12 joints carry SMPL_29 names (so network+fit can use them)."""
    from i2lmesh.bodymodels.joint_sets import SMPL_29
    from i2lmesh.nets import I2LMeshNet

    names = ["Pelvis", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle", "Neck", "L_Shoulder",
             "R_Shoulder", "L_Elbow", "R_Elbow"]
    config = get_preset("cpu-small", backbone_depth=18, input_size=64, depth_bins=16, deconv_channels=16,
                        num_joints=len(names), num_vertices=40, kind=kind)
    torch.manual_seed(0)
    reg = torch.rand(len(names), 40)
    net = I2LMeshNet(config, reg / reg.sum(1, keepdim=True), torch.randint(0, 40, (60, 3)))
    net.topology = {"kind": kind, "joint_names": names, "root_index": SMPL_29.root_index}
    return net.eval(), config


def test_network_plus_fit_uses_network_joints_and_keypoints(anny_body, scene):
    from i2lmesh.inference.keypoint_fit import KeypointFitter

    net, config = _joint_net()
    fitter = KeypointFitter("body", "cpu", anny_body, SHORT)
    predictor = Predictor(net, config, net.topology, net.faces.numpy(), method="network+fit", fitter=fitter)
    people = predictor.predict(scene["image"], boxes=scene["detections"][:1], intrinsics=scene["K"])
    (person,) = people
    assert person.method == "network+fit" and person.vertices_m.shape == (anny_body.num_vertices, 3)
    assert person.fit["keypoint_names"] == list(net.topology["joint_names"])
    # the hips are left out of the 2D term (surface hips vs joint centres), Pelvis and Neck are not COCO points:
    # the 8 knees, ankles, shoulders and elbows are used
    residual = person.fit["residual_px"]
    assert [i for i, r in enumerate(residual) if r is None] == [0, 1, 2, 7]
    assert person.fit["keypoints_used"] == 8 and person.heatmap_confidence is not None
    # a network whose joints the body model does not have is refused with one line
    net.topology = {"kind": "body", "joint_names": [f"j{i}" for i in range(12)], "root_index": 0}
    with pytest.raises(BadInputError, match="network\\+fit: the network's joints"):
        Predictor(net, config, net.topology, net.faces.numpy(), method="network+fit", fitter=fitter)


def test_box_proportions_are_warned_for_the_network_crop_only(anny_body, scene, caplog):
    # a detector's box 3x wider than tall (e.g. a lying person): fitting makes no crop and says nothing; the
    # network's square crop of it is mostly background: network+fit warns (without asking the user for a box)
    from i2lmesh.inference.keypoint_fit import KeypointFitter

    det = scene["detections"][0]
    x, y, w, h = det.box_xywh
    wide = Detection(np.array([x + w / 2 - 1.5 * h, y, 3.0 * h, h]), 0.9, "mediapipe", keypoints_xy=det.keypoints_xy,
                     keypoint_scores=det.keypoint_scores, keypoint_set="coco17")
    fit_only = Predictor.for_fitting("body", body_model=anny_body, fit_config=SHORT)
    with caplog.at_level("WARNING"):
        (person,) = fit_only.predict(scene["image"], boxes=[wide], intrinsics=scene["K"])
    assert not any("proportions" in w for w in person.warnings) and "proportions" not in caplog.text
    net, config = _joint_net()
    both = Predictor(net, config, net.topology, net.faces.numpy(), method="network+fit",
                     fitter=KeypointFitter("body", "cpu", anny_body, SHORT))
    with caplog.at_level("WARNING"):
        (person,) = both.predict(scene["image"], boxes=[wide], intrinsics=scene["K"])
    (warning,) = [w for w in person.warnings if "proportions" in w]
    assert "w/h = 3.00" in warning and "network's square crop" in warning and "give a box" not in warning
    assert "w/h = 3.00" in caplog.text


def test_methods_and_checkpoints_are_checked(anny_body):
    with pytest.raises(BadInputError, match="method should be one of"):
        Predictor(None, None, {}, None, method="magic")
    with pytest.raises(BadInputError, match="needs a network checkpoint"):
        Predictor(None, None, {}, None, method="network")
    with pytest.raises(BadInputError, match="needs no checkpoint"):
        Predictor.from_checkpoint("missing.pt", method="fit")
    with pytest.raises(BadInputError, match="kind should be body or hand"):
        Predictor.for_fitting("face")
    predictor = Predictor.for_fitting("body", body_model=anny_body)
    with pytest.raises(BadInputError, match="fits a body; it cannot predict a hand"):
        predictor.predict(np.zeros((8, 8, 3), np.uint8), boxes=[], kind="hand")


# ----------------------------------------------------------------------------------------------------------------
# Tracking


def _det(x, y, w=50.0, h=120.0, keypoints=None):
    return Detection(np.array([x, y, w, h], np.float64), 0.9, "test", keypoints_xy=keypoints)


def test_tracker_follows_people_moving_and_crossing():
    tracker = PersonTracker(max_missed=2)
    ids = [t.track_id for t in tracker.update([_det(0, 0), _det(300, 0)])]
    assert ids == [0, 1]
    # both move 10 px per frame towards each other, listed in the other order: ids follow the people
    for step in range(1, 6):
        tracks = tracker.update([_det(300 - 10 * step, 0), _det(10 * step, 0)])
        assert [t.track_id for t in tracks] == [1, 0]
    # a new person far away starts a new track; a person unseen for more than max_missed frames ends
    tracks = tracker.update([_det(50, 0), _det(600, 300)])
    assert [t.track_id for t in tracks] == [0, 2]
    for _ in range(2):
        tracker.update([_det(50, 0)])
    assert sorted(t.track_id for t in tracker.tracks) == [0, 2]  # unseen for 2 frames: kept
    tracker.update([_det(50, 0)])
    assert sorted(t.track_id for t in tracker.tracks) == [0]  # 3 frames: ended


def test_tracker_keypoints_separate_overlapping_boxes():
    """Two people with the same box (one behind the other): the keypoints decide."""
    a = np.array([[10.0, 10.0], [40.0, 100.0]])
    b = np.array([[40.0, 10.0], [10.0, 100.0]])
    tracker = PersonTracker()
    tracker.update([_det(0, 0, keypoints=a), _det(0, 0, keypoints=b)])
    tracks = tracker.update([_det(0, 0, keypoints=b + 1), _det(0, 0, keypoints=a - 1)])
    assert [t.track_id for t in tracks] == [1, 0]


# ----------------------------------------------------------------------------------------------------------------
# The command line


def test_demo_method_and_checkpoint_must_agree(tmp_path, capsys):
    from i2lmesh.cli import main

    image = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    assert main(["demo", str(image), "--out", str(tmp_path / "o"), "--method", "network"]) == 2
    assert "--method network needs --checkpoint" in capsys.readouterr().err
    assert main(["demo", str(image), "--out", str(tmp_path / "o"), "--method", "fit", "--checkpoint",
                 str(tmp_path / "x.pt")]) == 2
    assert "--method fit uses no checkpoint" in capsys.readouterr().err


def test_demo_fit_writes_meshes_and_residuals(tmp_path, scene, monkeypatch):
    """``i2lmesh demo IMAGE`` with no checkpoint fits; the detector is replaced by the scene's exact keypoints."""
    from PIL import Image

    import trimesh

    from i2lmesh.cli import main
    from i2lmesh.inference import predictor as predictor_module

    image = tmp_path / "people.png"
    Image.fromarray(scene["image"]).save(image)
    monkeypatch.setattr(predictor_module.Predictor, "detect", lambda self, rgb: list(scene["detections"][:1]))
    monkeypatch.setattr(predictor_module.Predictor, "detector", lambda self: object())
    focal = float(scene["K"][0, 0])
    code = main(["demo", str(image), "--out", str(tmp_path / "out"), "--focal", str(focal), "--no-progress",
                 "--ply"])
    assert code == 0
    doc = json.loads((tmp_path / "out" / "people.json").read_text())
    assert doc["method"] == "fit" and doc["num_people"] == 1
    assert doc["people"][0]["fit"]["median_residual_px"] < 4.0
    mesh = trimesh.load(tmp_path / "out" / "people.obj", process=False, maintain_order=True)
    assert len(mesh.vertices) == 6890 and len(mesh.faces) == 13776  # SMPL
    assert (tmp_path / "out" / "people_overlay.png").stat().st_size > 1000
    assert (tmp_path / "out" / "people.ply").exists()


def test_duplicate_rule_drops_an_overlapping_ghost_but_keeps_a_person_behind():
    from i2lmesh.inference.keypoints import _drop_duplicates

    def det(box, score, shift):
        keypoints = np.array([[box[0] + shift, box[1] + shift], [box[0] + box[2] - shift, box[1] + box[3] - shift]])
        return Detection(np.array(box, np.float64), score, "mediapipe", keypoints_xy=keypoints)

    person = det([82, 28, 244, 484], 0.9, 40.0)
    for ghost_box in ([50, 13, 295, 499], [44.5, 58.1, 272, 454]):  # the two ghosts of the astronaut photo
        ghost = det(ghost_box, 0.6, 0.0)  # IoU 0.80 / 0.79 with the person's box, weaker
        assert _drop_duplicates([ghost, person]) == [person]
    child = det([100, 200, 100, 150], 0.9, 30.0)
    adult = det([60, 20, 200, 460], 0.7, 0.0)  # holds the child's box, but 6x its area: another person
    assert len(_drop_duplicates([child, adult])) == 2


def test_coco23_feet_from_anny_and_blazepose(anny_body):
    """COCO-WholeBody's foot points come from Anny's own regressor (the first 17 rows are COCO-17's); BlazePose's
    heels and foot tips map onto them, its (absent) small toes stay unused."""
    from i2lmesh.fitting import COCO_23, keypoint_regressor
    from i2lmesh.inference.keypoints import BLAZEPOSE_33

    _, r17 = keypoint_regressor(anny_body, "coco17")
    _, r23 = keypoint_regressor(anny_body, "coco23")
    assert r23.shape == (23, anny_body.num_vertices) and torch.equal(r23[:17], r17)
    np.testing.assert_allclose(r23.sum(1).numpy(), 1.0, atol=1e-5)
    rest = anny_body(torch.zeros(1, anny_body.num_pose_rotations * 3), None).vertices_m[0]
    points = r23 @ rest
    # heels behind the ankles and below them; big toes in front (Anny's rest pose faces -y, z up, metres)
    for side in ("L", "R"):
        ankle, heel, toe = (points[COCO_23.index(f"{side}_{n}")] for n in ("Ankle", "Heel", "Big_Toe"))
        assert float(torch.linalg.norm(heel - ankle)) < 0.12 and float(torch.linalg.norm(toe - ankle)) < 0.25
        assert float(torch.linalg.norm(toe - heel)) > 0.12  # a foot is longer than 12 cm
    xy = np.arange(66, dtype=np.float64).reshape(33, 2)
    out, conf = detector_keypoints(xy, np.ones(33), "blazepose33", "coco23")
    np.testing.assert_array_equal(out[COCO_23.index("R_Big_Toe")], xy[BLAZEPOSE_33.index("R_Foot_Index")])
    np.testing.assert_array_equal(out[COCO_23.index("L_Heel")], xy[BLAZEPOSE_33.index("L_Heel")])
    assert conf[COCO_23.index("L_Small_Toe")] == 0 and conf.sum() == 21


def test_video_predictor_follows_warm_starts_and_smooths(anny_body, scene):
    """Three frames of the two exact-keypoint people, listed in alternating order: track ids follow the people,
    fits after the first frame are warm starts, and smoothing changes the meshes of later frames only."""
    from i2lmesh.inference.tracking import VideoPredictor

    predictor = Predictor.for_fitting("body", body_model=anny_body, fit_config=SHORT)
    frames = []
    for step in range(3):
        moved = [Detection(d.box_xywh + [2.0 * step, 0, 0, 0], d.score, d.source, d.keypoints_xy + [2.0 * step, 0],
                           d.keypoint_scores, d.keypoint_set) for d in scene["detections"]]
        frames.append(moved if step % 2 == 0 else moved[::-1])
    runs = {}
    for smooth in (False, True):
        calls = iter(frames)
        predictor.detect = lambda rgb: next(calls)  # the detector sees the frame's people
        video = VideoPredictor(predictor, fps=25.0, smooth=smooth, intrinsics=scene["K"])
        runs[smooth] = [video(scene["image"]) for _ in frames]
    for people in runs[False]:
        assert [p.track_id for p in people] == [0, 1]
        # track 0 is the first scene person in every frame, whatever the listing order
        np.testing.assert_allclose(people[0].box_xywh[1:], scene["detections"][0].box_xywh[1:], atol=1e-6)
    assert [p.fit["warm_start"] for p in runs[False][0]] == [False, False]
    assert all(p.fit["warm_start"] for frame in runs[False][1:] for p in frame)
    np.testing.assert_array_equal(runs[True][0][0].vertices_m, runs[False][0][0].vertices_m)  # nothing to smooth yet
    assert not np.array_equal(runs[True][2][0].vertices_m, runs[False][2][0].vertices_m)


def test_demo_takes_inputs_after_options(tmp_path, capsys):
    from i2lmesh.cli import build_parser, parse_args

    parser = build_parser()
    args = parse_args(parser, ["demo", "a.jpg", "--focal", "1000", "b.jpg", "--out", "o", "c.mp4"])
    assert [str(p) for p in args.inputs] == ["a.jpg", "b.jpg", "c.mp4"] and args.focal == 1000.0
    with pytest.raises(SystemExit):  # an unknown option is still a usage error
        parse_args(parser, ["demo", "a.jpg", "--out", "o", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # commands without the opt-in keep argparse's rule
        parse_args(parser, ["eval", "--checkpoint", "c.pt", "--data", "d", "--out", "r.json", "extra"])


def test_warm_start_follows_a_person_who_moved(anny_body):
    """The next frame's person 40 cm to the side and 30 cm closer: the warm start is moved onto the new keypoints
    before the robust fit (without that step, ``_follow_keypoints`` replaced by the identity, the mesh stays
    tens of pixels behind)."""
    import i2lmesh.fitting.fit as fit_module
    from i2lmesh.fitting import fit_to_keypoints
    from i2lmesh.geometry.camera import project

    target = synthetic_targets(anny_body, 1, seed=21, keypoint_set="coco17")
    first = fit_to_keypoints(anny_body, target["keypoints_2d"], None, target["K"], config=SHORT)
    moved = project(target["keypoints_3d"] + torch.tensor([0.4, 0.0, -0.3]), target["K"])
    follows = fit_to_keypoints(anny_body, moved, None, target["K"], init=first.params, config=SHORT)
    original = fit_module._follow_keypoints
    try:
        fit_module._follow_keypoints = lambda setup, pose, shape, trans, data: trans
        stays = fit_to_keypoints(anny_body, moved, None, target["K"], init=first.params, config=SHORT)
    finally:
        fit_module._follow_keypoints = original
    size = float((moved[0].max(0).values - moved[0].min(0).values).max())
    assert float(follows.residual_px.nanmedian()) < 0.02 * size
    assert float(stays.residual_px.nanmedian()) > 2 * float(follows.residual_px.nanmedian())


def test_a_warm_start_from_someone_else_is_redone_cold(anny_body, scene, fitted):
    predictor, people = fitted
    swapped = [people[1].fit_params, people[0].fit_params]  # each box given the other person's fit
    again = predictor.predict(scene["image"], boxes=scene["detections"], intrinsics=scene["K"], init=swapped)
    assert [p.box_index for p in again] == [0, 1]
    for cold, redone in zip(people, again):
        assert not redone.fit["warm_start"]  # the warm fit ended far off: refitted from scratch
        assert redone.fit["median_residual_px"] < 4.0
    doc = again[0].to_dict()
    assert doc["box_index"] == 0 and doc["detector_keypoints"]["names"][:2] == ["Nose", "L_Eye"]


@pytest.mark.parametrize("size_m,depth_m", [(1.8, 1.0), (0.18, 0.6), (1.7, 12.0)])
def test_side_view_frames_the_people(size_m, depth_m):
    """Near bodies, hands and far bodies all fill the side panel: the turned box projects inside it, and its
    larger side spans SIDE_VIEW_FILL of the panel."""
    from i2lmesh.render.pictures import SIDE_VIEW_FILL, side_view_placement

    rng = np.random.default_rng(0)
    vertices = rng.uniform(-0.5, 0.5, (500, 3)) * [0.3 * size_m, size_m, 0.2 * size_m] + [0.5, 0.2, depth_m]
    K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
    rot, centre, target = side_view_placement(vertices, K, (480, 640))
    turned = (vertices - centre) @ rot.T + target
    uv = turned[:, :2] / turned[:, 2:] * 600.0 + [320, 240]
    assert np.all(turned[:, 2] > 0) and np.all(uv >= 0) and np.all(uv[:, 0] <= 640) and np.all(uv[:, 1] <= 480)
    span = (uv.max(0) - uv.min(0)) / [640, 480]
    assert 0.6 * SIDE_VIEW_FILL < span.max() <= SIDE_VIEW_FILL + 1e-9


def test_network_plus_fit_from_a_checkpoint_weights_the_network_lightly(tmp_path):
    from i2lmesh import save_network
    from i2lmesh.inference.keypoint_fit import BODY_WARM_ITERS, NETWORK_FIT_WEIGHT_3D

    net, _ = _joint_net()
    save_network(net, tmp_path / "net.pt")
    predictor = Predictor.from_checkpoint(tmp_path / "net.pt", method="network+fit")
    assert predictor.method == "network+fit" and predictor.fitter.config.weight_3d == NETWORK_FIT_WEIGHT_3D < 1.0
    assert predictor.fitter.config.warm_iters == BODY_WARM_ITERS
    assert Predictor.for_fitting("body").fitter.config.weight_3d == 1.0  # no network: nothing to weigh


def test_cli_starts_without_torch_and_knows_every_dataset_format():
    """``i2lmesh --help`` and usage errors do not wait for torch; the formats it offers are the loaders'."""
    import subprocess
    import sys

    from i2lmesh.cli import DATASET_FORMATS
    from i2lmesh.data.formats import LOADERS

    assert tuple(sorted(LOADERS)) == DATASET_FORMATS
    code = "import sys; from i2lmesh.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

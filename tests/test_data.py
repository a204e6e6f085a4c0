"""Data pipeline: records, augmentation and flips, targets, datasets with bad input, our on-disk format."""
from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch

from i2lmesh.bodymodels.joint_sets import H36M_17, SMPL_29
from i2lmesh.data import (Augmentation, BodyModelBank, MixedDataset, RecordDataset, SampleRecord, TargetSpec,
                          build_sample, collate)
from i2lmesh.data import augment as A
from i2lmesh.data.formats.i2lmesh import read_dataset, write_dataset
from i2lmesh.data.record import COCO_18
from i2lmesh.geometry import decode_to_camera, intrinsics, project
from i2lmesh.losses import i2l_losses

W, H = 320, 240
K = intrinsics((500.0, 510.0), (150.0, 125.0))  # principal point off-centre: the flip must still be exact


def _joints_cam(rng, n, centre=(0.0, 0.0, 4.0), spread=0.6):
    return np.asarray(centre) + rng.uniform(-spread, spread, (n, 3)) * [1, 1.4, 0.3]


def _record(tmp_path, rng, name="a", joint_set=H36M_17, has_3d=True, vertices=None, flip_index=None, dots=True,
            centre=(0.0, 0.0, 4.0)):
    joints_cam = _joints_cam(rng, len(joint_set), centre)
    joints_img = project(joints_cam, K)
    image = np.zeros((H, W, 3), np.uint8)
    if dots:
        for u, v in joints_img:
            cv2.circle(image, (int(round(u)), int(round(v))), 2, (255, 255, 255), -1)
    path = tmp_path / f"{name}.png"
    cv2.imwrite(str(path), image)
    lo, hi = joints_img.min(0), joints_img.max(0)
    return SampleRecord(image_path=str(path), image_size=(W, H), bbox_xywh=np.r_[lo, hi - lo], K=K,
                        joint_set=joint_set, joints_img_px=joints_img, joints_cam_m=joints_cam if has_3d else None,
                        joints_valid=np.ones(len(joint_set)), has_3d=has_3d, vertices_cam_m=vertices,
                        fit_valid=vertices is not None, vertex_flip_index=flip_index, sample_id=name, dataset="test")


def _spec(num_vertices=40, seed=0):
    rng = np.random.default_rng(seed)
    reg = rng.random((len(SMPL_29), num_vertices))
    return TargetSpec(256, 64, 64, 2.0, SMPL_29, num_vertices, reg / reg.sum(1, keepdims=True))


def _load(record):
    return cv2.imread(record.image_path)[:, :, ::-1].astype(np.float32)


# ------------------------------------------------------------------------------------------------ flips

def test_flip_twice_is_identity_for_images_joints_and_params():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (H, W, 3)).astype(np.uint8)
    np.testing.assert_array_equal(A.flip_image(A.flip_image(image)), image)
    joints, valid = rng.uniform(0, W, (17, 2)), (rng.random(17) > 0.3).astype(float)
    j2, v2 = A.flip_joints_img(*A.flip_joints_img(joints, valid, W, H36M_17), W, H36M_17)
    np.testing.assert_allclose(j2, joints)
    np.testing.assert_array_equal(v2, valid)
    cam = rng.normal(size=(17, 3))
    np.testing.assert_allclose(A.flip_joints_cam(A.flip_joints_cam(cam, H36M_17), H36M_17), cam)
    np.testing.assert_allclose(A.flip_intrinsics(A.flip_intrinsics(K, W), W), K)
    params = {"pose": rng.normal(size=72), "shape": rng.normal(size=10), "trans": rng.normal(size=3)}
    j0 = np.array([0.01, -0.2, 0.02])
    twice = A.flip_body_params(A.flip_body_params(params, A.SMPL_POSE_FLIP_PAIRS, j0), A.SMPL_POSE_FLIP_PAIRS, j0)
    for key in params:
        np.testing.assert_allclose(twice[key], params[key], atol=1e-12)
    box = np.array([10.0, 20.0, 50.0, 80.0])
    np.testing.assert_allclose(A.flip_bbox(A.flip_bbox(box, W), W), box)


def test_flip_vertices_with_mirror_map():
    rng = np.random.default_rng(1)
    half = rng.normal(size=(5, 3))
    half[:, 0] = np.abs(half[:, 0]) + 0.1
    verts = np.concatenate([half, half * [-1, 1, 1]])  # vertex i+5 mirrors vertex i
    flip_index = np.r_[np.arange(5, 10), np.arange(5)]
    np.testing.assert_allclose(A.flip_vertices(verts, flip_index), verts)  # a symmetric mesh is its own mirror
    moved = verts + [0.3, 0, 0]
    np.testing.assert_allclose(A.flip_vertices(A.flip_vertices(moved, flip_index), flip_index), moved)


@pytest.mark.parametrize("rot", [0.0, 25.0])
def test_flipped_sample_joints_land_on_the_flipped_dots(tmp_path, rot):
    rng = np.random.default_rng(2)
    record = _record(tmp_path, rng)
    spec = _spec()
    aug = Augmentation(scale=1.1, rot_deg=rot, flip=True)
    image, targets, meta = build_sample(record, _load(record), aug, spec)
    patch = image.numpy().sum(0)
    valid = targets["joints_valid"] > 0
    assert valid.sum() >= 12
    for x, y in targets["joints_hm"][valid, :2] * 4:  # heatmap bins -> crop px
        xi, yi = int(round(x)), int(round(y))
        assert patch[max(0, yi - 1):yi + 2, max(0, xi - 1):xi + 2].max() > 1.0, (x, y)
    # The left wrist target sits on the dot of the right wrist (mirror + swap), and decoding gives the mirrored
    # camera-space joints back in the flipped view.
    js = SMPL_29
    hm = torch.as_tensor(targets["joints_hm"][None], dtype=torch.float64)
    cam = decode_to_camera(hm, torch.as_tensor(meta["bb2img_trans"][None], dtype=torch.float64),
                           torch.tensor([float(meta["root_depth_m"])], dtype=torch.float64),
                           torch.as_tensor(meta["K"][None], dtype=torch.float64), 256, 64, 64, 2.0)[0].numpy()
    src = record.joints_cam_m[H36M_17.index("R_Wrist")] * [-1, 1, 1]
    np.testing.assert_allclose(cam[js.index("L_Wrist")], src, atol=1e-4)


def test_smpl_parameter_flip_mirrors_the_root(tmp_path):
    smplx = pytest.importorskip("smplx")  # noqa: F841
    from i2lmesh.bodymodels.model_files import write_synthetic_smpl_file
    from i2lmesh.bodymodels.smpl import SMPL
    smpl = SMPL(write_synthetic_smpl_file(tmp_path / "smpl.pkl", "smpl", seed=1))
    bank = BodyModelBank({"smpl": smpl})
    rng = np.random.default_rng(3)
    params = {"pose": rng.normal(0, 0.2, 72), "shape": rng.normal(0, 1, 10), "trans": np.array([0.2, 0.1, 4.0])}
    verts, joints, _ = bank.evaluate("smpl", "neutral", params)
    flipped = A.flip_body_params(params, A.SMPL_POSE_FLIP_PAIRS, bank.rest_root_joint("smpl", "neutral",
                                                                                        params["shape"]))
    _, joints_f, _ = bank.evaluate("smpl", "neutral", flipped)
    # SMPL's posed root joint (what trans and the global rotation act on, from smplx's lbs) is mirrored exactly.
    from smplx.lbs import lbs

    def posed_root(p):
        args = [torch.as_tensor(p[k], dtype=torch.float32)[None] for k in ("shape", "pose")]
        _, posed = lbs(*args, smpl.v_template, smpl.shapedirs, smpl.posedirs, smpl.kinematic_regressor,
                       smpl.parents, smpl.lbs_weights)
        return posed[0, 0].double().numpy() + p["trans"]

    np.testing.assert_allclose(posed_root(flipped), posed_root(params) * [-1, 1, 1], atol=1e-5)
    assert joints_f.shape == joints.shape


# ------------------------------------------------------------------------------------------------ targets

def test_targets_are_zero_loss_at_ground_truth(tmp_path):
    rng = np.random.default_rng(4)
    spec = _spec(num_vertices=40)
    verts = _joints_cam(rng, 40)
    record = _record(tmp_path, rng, vertices=verts)
    samples = [build_sample(record, _load(record), Augmentation(1.0, 10.0, False, (1.1, 0.9, 1.0)), spec)]
    record2 = _record(tmp_path, rng, name="b", vertices=_joints_cam(rng, 40), has_3d=False)
    samples.append(build_sample(record2, _load(record2), Augmentation(), spec))
    _, t, meta = collate(samples)
    assert t.joints_hm.shape == (2, 29, 3) and t.vertices_hm.shape == (2, 40, 3) and t.has_z.tolist() == [1, 0]
    assert t.vertices_valid.sum() > 40 and t.fit_joints_valid.sum() > 0
    faces = torch.as_tensor(rng.integers(0, 40, (30, 3)))
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    # Each pose term gets the prediction it supervises: dataset joints for the "orig" terms, fit joints for "fit".
    losses = i2l_losses(t.joints_hm, t.vertices_hm, t.joints_hm, faces, t)
    fit = i2l_losses(t.fit_joints_hm, t.vertices_hm, t.fit_joints_hm, faces, t, fit_orig_split=True)
    losses.update({k: v for k, v in fit.items() if k.endswith("_fit")})
    assert len(losses) == 7
    for name, value in losses.items():
        assert float(value) == pytest.approx(0.0, abs=1e-6), name
    # decode_to_camera of the mesh targets gives the camera-space mesh back
    root = torch.as_tensor(spec.joint_regressor[0] @ verts)[None, 2].double()
    back = decode_to_camera(t.vertices_hm[:1].double(), meta["bb2img_trans"][:1].double(), root,
                            meta["K"][:1].double(), 256, 64, 64, 2.0)[0].numpy()
    ok = t.vertices_valid[0].bool().numpy()
    np.testing.assert_allclose(back[ok], verts[ok], atol=1e-4)


def test_truncation_masks_points_outside_the_heatmap(tmp_path):
    rng = np.random.default_rng(5)
    record = _record(tmp_path, rng)
    # Move one joint far left of the box and one far behind the root (beyond +1 m)
    record.joints_img_px[H36M_17.index("L_Wrist"), 0] = -200.0
    record.joints_cam_m[H36M_17.index("R_Ankle"), 2] += 1.5
    _, t, _ = build_sample(record, _load(record), Augmentation(), _spec())
    assert t["joints_valid"][SMPL_29.index("L_Wrist")] == 0
    assert t["joints_valid"][SMPL_29.index("R_Ankle")] == 0
    assert t["joints_valid"][SMPL_29.index("R_Knee")] == 1
    # unmatched names (SMPL "Chest" has no H36M twin) are invalid
    assert t["joints_valid"][SMPL_29.index("Chest")] == 0
    inside = t["joints_valid"] > 0
    assert np.all((t["joints_hm"][inside] >= 0) & (t["joints_hm"][inside] < 64))


def test_z_is_masked_for_2d_samples(tmp_path):
    rng = np.random.default_rng(6)
    record = _record(tmp_path, rng, joint_set=COCO_18, has_3d=False)
    record.joints_cam_m = None
    _, t, meta = build_sample(record, _load(record), Augmentation(), _spec())
    assert t["has_z"] == 0 and t["joints_valid"].sum() == 18
    assert meta["joints_cam_valid"].sum() == 0
    # a 2D point far in front in "z" would not matter: only x, y are checked (COCO)
    from i2lmesh.losses import coord_l1
    pred = torch.as_tensor(t["joints_hm"][None]).clone()
    pred[..., 2] += 10
    loss = coord_l1(pred, torch.as_tensor(t["joints_hm"][None]), torch.as_tensor(t["joints_valid"][None]),
                    torch.as_tensor([t["has_z"]]))
    assert float(loss.sum()) == 0.0


def test_mesh_masked_without_fit_and_for_flipped_vertices_without_mirror_map(tmp_path):
    rng = np.random.default_rng(7)
    spec = _spec()
    record = _record(tmp_path, rng)
    _, t, meta = build_sample(record, _load(record), Augmentation(), spec)
    assert t["vertices_valid"].sum() == 0 and t["fit_joints_valid"].sum() == 0 and not meta["has_mesh"]
    record = _record(tmp_path, rng, name="v", vertices=_joints_cam(rng, 40))
    _, t, _ = build_sample(record, _load(record), Augmentation(flip=True), spec)
    assert t["vertices_valid"].sum() == 0
    record.vertex_flip_index = np.arange(40)[::-1].copy()
    _, t, _ = build_sample(record, _load(record), Augmentation(flip=True), spec)
    assert t["vertices_valid"].sum() > 0


def test_augmentation_ranges():
    rng = np.random.default_rng(8)
    draws = [A.sample_augmentation(rng) for _ in range(2000)]
    scales = np.array([d.scale for d in draws])
    rots = np.array([d.rot_deg for d in draws])
    assert scales.min() >= 0.75 and scales.max() <= 1.25
    assert np.abs(rots).max() <= 60 and 0.5 < np.mean(rots != 0) < 0.7
    assert 0.45 < np.mean([d.flip for d in draws]) < 0.55
    colours = np.array([d.colour for d in draws])
    assert colours.min() >= 0.8 and colours.max() <= 1.2
    assert not any(A.sample_augmentation(rng, allow_flip=False).flip for _ in range(100))


# ------------------------------------------------------------------------------------------------ datasets

def test_dataset_skips_missing_and_corrupt_images_and_rejects_bad_annotations(tmp_path, caplog):
    rng = np.random.default_rng(9)
    records = [_record(tmp_path, rng, name=f"r{i}") for i in range(4)]
    (tmp_path / "r1.png").unlink()                       # missing
    (tmp_path / "r2.png").write_bytes(b"not an image")   # corrupt
    bad_nan = _record(tmp_path, rng, name="nan")
    bad_nan.joints_cam_m[0, 0] = np.nan
    bad_box = _record(tmp_path, rng, name="box")
    bad_box.bbox_xywh = np.array([10.0, 10.0, 0.0, 30.0])
    with caplog.at_level(logging.WARNING):
        ds = RecordDataset(records + [bad_nan, bad_box], _spec(), train=True, name="fixture")
        assert len(ds) == 4 and "rejected 2 of 6" in caplog.text
        out = [ds[i] for i in range(len(ds))]
    assert [m["sample_id"] for _, _, m in out] == ["r0", "r3", "r3", "r3"]
    assert set(ds.skipped) == {str(tmp_path / "r1.png"), str(tmp_path / "r2.png")}
    assert "image missing" in caplog.text and "corrupt" in caplog.text and str(tmp_path / "r1.png") in caplog.text
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate)
    images, targets, meta = next(iter(loader))
    assert images.shape == (2, 3, 256, 256) and targets.joints_hm.shape == (2, 29, 3)
    assert meta["bb2img_trans"].shape == (2, 2, 3) and len(meta["image_path"]) == 2
    assert float(images.max()) <= 1.0 and float(images.min()) >= 0.0


def test_mixed_dataset_is_half_3d_half_2d():
    class Fake(torch.utils.data.Dataset):
        def __init__(self, tag, n):
            self.tag, self.n = tag, n

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            assert 0 <= i < self.n
            return self.tag

    mixed = MixedDataset([Fake("h36m", 7), Fake("muco", 3)], [Fake("coco", 4)])
    assert len(mixed) == 20
    tags = [mixed[i] for i in range(len(mixed))]
    assert tags[:10] == ["h36m"] * 7 + ["muco"] * 3 and tags[10:] == ["coco"] * 10
    assert len(MixedDataset([Fake("a", 5)])) == 5


# ------------------------------------------------------------------------------------------------ our format

def test_our_format_round_trip(tmp_path):
    rng = np.random.default_rng(10)
    records = [_record(tmp_path, rng, name="p0"),
               _record(tmp_path, rng, name="p1", vertices=_joints_cam(rng, 40), flip_index=np.arange(40)[::-1]),
               _record(tmp_path, rng, name="p2", joint_set=COCO_18, has_3d=False)]
    records[0].body_model, records[0].body_params, records[0].fit_valid = "smpl", {
        "pose": rng.normal(size=72), "shape": rng.normal(size=10), "trans": rng.normal(size=3)}, True
    records[0].body_gender = "female"
    records[2].root_depth_m = 3.5
    records[2].extra = {"note": "x"}
    for copy in (False, True):
        out = tmp_path / f"out{copy}"
        write_dataset(records, out, copy_images=copy)
        back = read_dataset(out)
        assert len(back) == len(records)
        for a, b in zip(records, back):
            for field in ("image_size", "kind", "has_3d", "body_model", "body_gender", "fit_valid", "bbox_is_final",
                          "root_depth_m", "sample_id", "dataset", "extra"):
                assert getattr(a, field) == getattr(b, field), field
            for field in ("bbox_xywh", "K", "joints_img_px", "joints_cam_m", "joints_valid", "vertex_flip_index"):
                va, vb = getattr(a, field), getattr(b, field)
                assert (va is None) == (vb is None), field
                if va is not None:
                    np.testing.assert_allclose(vb, va, atol=1e-12, err_msg=field)
            if a.vertices_cam_m is not None:
                np.testing.assert_allclose(b.vertices_cam_m, a.vertices_cam_m, atol=1e-6)  # float32 side file
            if a.body_params:
                for k in a.body_params:
                    np.testing.assert_allclose(b.body_params[k], a.body_params[k])
            assert a.joint_set == b.joint_set
            assert cv2.imread(b.image_path) is not None


# ------------------------------------------------------------------------------------------------ real-dataset loaders
# Each test writes a tiny dataset in the exact file layout the reference reads and checks fields and units.

import json  # noqa: E402

from i2lmesh.data.formats import load_records  # noqa: E402
from i2lmesh.geometry import axis_angle_to_matrix  # noqa: E402


def _image(path, w=64, h=48):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 80, np.uint8))
    return path


def _dump(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture(scope="module")
def smpl_bank(tmp_path_factory):
    pytest.importorskip("smplx")
    from i2lmesh.bodymodels.model_files import write_synthetic_smpl_file
    folder = tmp_path_factory.mktemp("bodymodels")
    write_synthetic_smpl_file(folder / "SMPL_NEUTRAL.pkl", "smpl", seed=2)
    write_synthetic_smpl_file(folder / "MANO_RIGHT.pkl", "mano", seed=2)
    return BodyModelBank(model_path=folder), folder


def _smpl_param(rng, trans=(0.0, 0.0, 0.0)):
    return {"pose": rng.normal(0, 0.2, 72).tolist(), "shape": rng.normal(0, 1, 10).tolist(), "trans": list(trans)}


def _check_pipeline(records, bank, spec=None):
    ds = RecordDataset(records, spec or _spec(num_vertices=6890), train=True, bank=bank)
    _, targets, meta = collate([ds[i] for i in range(len(ds))])
    assert not ds.skipped and torch.isfinite(targets.joints_hm).all()
    return targets, meta


def test_h36m_loader_units_splits_and_world_to_camera_fits(tmp_path, smpl_bank):
    bank, _ = smpl_bank
    rng = np.random.default_rng(20)
    root = tmp_path / "Human36M"
    rot = axis_angle_to_matrix(np.array([0.1, -1.2, 0.3]))
    t_mm = np.array([100.0, -200.0, 5000.0])
    for subject, frames in ((1, [(0, 1), (5, 2), (3, 1)]), (9, [(0, 4), (0, 1), (64, 4)])):
        images, anns, joints, fits = [], [], {}, {}
        cams = {str(c): {"R": rot.tolist(), "t": t_mm.tolist(), "f": [1145.0, 1144.0], "c": [512.0, 515.0]}
                for c in (1, 2, 4)}
        for i, (frame, cam) in enumerate(frames):
            name = f"s_{subject:02d}_act_02_subact_01_ca_{cam:02d}/img_{frame:06d}.jpg"
            _image(root / "images" / name)
            images.append({"id": i, "file_name": name, "width": 64, "height": 48, "frame_idx": frame,
                           "subject": subject, "action_idx": 2, "subaction_idx": 1, "cam_idx": cam})
            anns.append({"id": 100 + i, "image_id": i, "bbox": [10, 5, 30, 40]})
            joints.setdefault("2", {}).setdefault("1", {})[str(frame)] = (rng.normal(0, 300, (17, 3))).tolist()
            fits.setdefault("2", {}).setdefault("1", {})[str(frame)] = _smpl_param(rng, rng.normal(0, 1, 3))
        ann_dir = root / "annotations"
        _dump(ann_dir / f"Human36M_subject{subject}_data.json", {"images": images, "annotations": anns})
        _dump(ann_dir / f"Human36M_subject{subject}_camera.json", cams)
        _dump(ann_dir / f"Human36M_subject{subject}_joint_3d.json", joints)
        _dump(ann_dir / f"Human36M_subject{subject}_smpl_param.json", fits)
    _dump(root / "rootnet_output" / "bbox_root_human36m_output.json",
          [{"image_id": 0, "bbox": [0, 0, 40, 40], "root_cam": [10.0, 20.0, 4800.0]}])

    train = load_records("h36m", root, "train", bank=bank, subjects=(1,))
    assert [r.sample_id for r in train] == ["100", "101"]  # frame 3 is not a 5th frame
    r = train[0]
    world = np.asarray(json.loads((root / "annotations/Human36M_subject1_joint_3d.json").read_text())["2"]["1"]["0"])
    np.testing.assert_allclose(r.joints_cam_m, (world @ rot.T + t_mm) / 1000.0)  # mm -> m, X_cam = R X + t
    np.testing.assert_allclose(r.joints_img_px, project(r.joints_cam_m, r.K))
    assert r.joint_set.name == "h36m17" and r.has_3d and r.fit_valid and r.body_model == "smpl"
    # the camera-frame fit is the world-frame mesh moved by R, t
    fit = json.loads((root / "annotations/Human36M_subject1_smpl_param.json").read_text())["2"]["1"]["0"]
    world_verts, _, _ = bank.evaluate("smpl", "neutral", {k: np.asarray(v) for k, v in fit.items()})
    cam_verts, _, _ = bank.evaluate("smpl", "neutral", r.body_params)
    np.testing.assert_allclose(cam_verts, world_verts @ rot.T + t_mm / 1000.0, atol=1e-4)

    test = load_records("h36m", root, "test", bank=bank, subjects=(9,))
    assert [r.sample_id for r in test] == ["100", "102"]  # camera 4 only, every 64th frame
    assert test[0].bbox_is_final and test[0].root_depth_m == pytest.approx(4.8) and not test[1].bbox_is_final
    _check_pipeline(train + test, bank)
    # without SMPL the fits are dropped (logged), joints still load
    assert not any(r.fit_valid for r in load_records("h36m", root, "train", subjects=(1,)))
    with pytest.raises(FileNotFoundError, match="subject5"):
        load_records("h36m", root, "train")


def test_coco_loader_pelvis_fits_crowd_and_rejects(tmp_path, smpl_bank, caplog):
    bank, _ = smpl_bank
    rng = np.random.default_rng(21)
    root = tmp_path / "MSCOCO"
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 64, "height": 48} for i in range(3)]
    for img in images:
        _image(root / "images" / "train2017" / img["file_name"])
    kp = np.concatenate([rng.uniform(5, 40, (17, 2)), np.full((17, 1), 2.0)], 1)
    kp[12, 2] = 0  # right hip not labelled: the pelvis is invalid
    anns = [{"id": 1, "image_id": 0, "bbox": [5, 5, 30, 30], "keypoints": kp.ravel().tolist(), "num_keypoints": 16,
             "iscrowd": 0},
            {"id": 2, "image_id": 1, "bbox": [5, 5, 30, 30], "keypoints": kp.ravel().tolist(), "num_keypoints": 17,
             "iscrowd": 1},
            {"id": 3, "image_id": 1, "bbox": [5, 5, 30, 30], "keypoints": [0] * 51, "num_keypoints": 0, "iscrowd": 0},
            {"id": 4, "image_id": 2, "bbox": [5, 5, 0, 30], "keypoints": kp.ravel().tolist(), "num_keypoints": 17,
             "iscrowd": 0},
            {"id": 5, "image_id": 2, "bbox": [5, 5, 20, 30], "keypoints": [float("nan")] * 51, "num_keypoints": 17,
             "iscrowd": 0}]
    _dump(root / "annotations" / "person_keypoints_train2017.json", {"images": images, "annotations": anns})
    _dump(root / "annotations" / "coco_smplifyx_train.json",
          {"1": {"smpl_param": _smpl_param(rng, (0.0, 0.3, 6.0)), "cam_param": {"focal": [900, 900],
                                                                               "princpt": [31, 23]}}})
    with caplog.at_level(logging.WARNING):
        records = load_records("coco", root, "train")
    assert "rejected 2 of 3" in caplog.text  # empty box + NaN keypoints, with a count
    assert len(records) == 1
    r = records[0]
    assert r.joint_set.name == "coco18" and not r.has_3d and r.joints_cam_m is None
    np.testing.assert_allclose(r.joints_img_px[17], (kp[11, :2] + kp[12, :2]) / 2)
    assert r.joints_valid[17] == 0 and r.joints_valid[11] == 1 and r.joints_valid[12] == 0
    assert r.fit_valid and r.body_model == "smpl" and r.K[0, 0] == 900 and r.K[0, 2] == 31
    targets, _ = _check_pipeline(records, bank)
    assert targets.has_z.tolist() == [0.0]


def test_muco_loader_closest_person_and_mm(tmp_path, smpl_bank):
    bank, _ = smpl_bank
    rng = np.random.default_rng(22)
    root = tmp_path / "MuCo"
    _image(root / "data" / "augmented_set" / "img_000001.jpg")
    near, far = rng.normal(0, 300, (21, 3)) + [0, 0, 3000], rng.normal(0, 300, (21, 3)) + [0, 0, 6000]
    K = intrinsics((1500.0, 1500.0), (32.0, 24.0))
    anns = [{"id": i, "image_id": 0, "bbox": [5, 5, 30, 30], "keypoints_cam": j.tolist(),
             "keypoints_img": project(j, K).tolist()} for i, j in ((7, far), (8, near))]
    _dump(root / "data" / "MuCo-3DHP.json", {"images": [{"id": 0, "file_name": "augmented_set/img_000001.jpg",
                                                         "width": 64, "height": 48, "f": [1500, 1500],
                                                         "c": [32, 24]}], "annotations": anns})
    _dump(root / "data" / "smpl_param.json", {"8": _smpl_param(rng, (0.0, 0.0, 3.0))})
    records = load_records("muco", root, "train")
    assert len(records) == 1 and records[0].sample_id == "8" and records[0].fit_valid
    np.testing.assert_allclose(records[0].joints_cam_m, near / 1000.0)
    assert records[0].joint_set.name == "muco21"
    with pytest.raises(ValueError, match="only a train split"):
        load_records("muco", root, "test")
    _check_pipeline(records, bank)


def test_pw3d_loader_gendered_gt_and_rootnet(tmp_path, smpl_bank):
    bank, _ = smpl_bank
    rng = np.random.default_rng(23)
    root = tmp_path / "PW3D"
    images, anns = [], []
    for i, gender in enumerate(("m", "f")):
        _image(root / "data" / "imageFiles" / "downtown_walking_00" / f"image_{i:05d}.jpg")
        images.append({"id": i, "sequence": "downtown_walking_00", "file_name": f"image_{i:05d}.jpg", "width": 64,
                       "height": 48, "cam_param": {"focal": [1960.0, 1960.0], "princpt": [32.0, 24.0]}})
        anns.append({"id": 10 + i, "image_id": i, "bbox": [5, 5, 30, 30],
                     "smpl_param": {**_smpl_param(rng, (0, 0, 5.0)), "gender": gender}})
    _dump(root / "data" / "3DPW_test.json", {"images": images, "annotations": anns})
    _dump(root / "rootnet_output" / "bbox_root_pw3d_output.json",
          [{"ann_id": 11, "bbox": [1, 2, 40, 40], "root_cam": [0, 0, 5.1]}])
    records = load_records("pw3d", root, "test")
    assert [r.body_gender for r in records] == ["male", "female"]
    assert records[1].root_depth_m == pytest.approx(5.1) and records[1].bbox_is_final
    assert records[0].root_depth_m is None and records[0].body_model == "smpl" and records[0].fit_valid
    # every gender falls back to the one model given in the bank (the fixture has only a neutral file)
    gendered = BodyModelBank({"smpl": bank.get("smpl", "neutral")})
    _, meta = _check_pipeline(records, gendered)
    assert bool(meta["has_mesh"].all())


def test_freihand_loader_train_and_eval(tmp_path, smpl_bank):
    bank, _ = smpl_bank
    rng = np.random.default_rng(24)
    root = tmp_path / "FreiHAND"
    for split in ("train", "eval"):
        images = [{"id": i, "file_name": f"{'training' if split == 'train' else 'evaluation'}/rgb/{i:08d}.jpg",
                   "width": 64, "height": 48, "db_idx": i} for i in range(2)]
        for img in images:
            _image(root / "data" / img["file_name"])
        anns = [{"id": i, "image_id": i, "bbox": [10, 8, 30, 30]} for i in range(2)]
        cam = {"focal": [600.0, 600.0], "princpt": [32.0, 24.0]}
        if split == "train":
            db = {str(i): {"cam_param": cam, "mano_param": {"pose": rng.normal(0, 0.2, 48).tolist(),
                                                            "shape": rng.normal(0, 1, 10).tolist(),
                                                            "trans": [0.0, 0.0, 0.6]},
                           "joint_3d": (rng.normal(0, 0.05, (21, 3)) + [0, 0, 0.6]).tolist()} for i in range(2)}
        else:
            db = {str(i): {"cam_param": cam, "scale": 0.08} for i in range(2)}
        _dump(root / "data" / f"freihand_{split}_coco.json", {"images": images, "annotations": anns})
        _dump(root / "data" / f"freihand_{split}_data.json", db)
    _dump(root / "rootnet_output" / "bbox_root_freihand_output.json",
          [{"image_id": 0, "bbox": [0, 0, 48, 48], "root_cam": [0, 0, 0.65]}])
    train = load_records("freihand", root, "train")
    assert all(r.kind == "hand" and r.body_model == "mano" and r.fit_valid and r.joint_set is None for r in train)
    assert len(train[0].extra["joint_3d_m"]) == 21
    test = load_records("freihand", root, "test")
    assert test[0].root_depth_m == pytest.approx(0.65) and test[0].extra["scale"] == 0.08 and test[1].root_depth_m \
        is None
    from i2lmesh.bodymodels.joint_sets import MANO_21
    spec = TargetSpec(256, 64, 64, 0.3, MANO_21, 778)
    targets, meta = _check_pipeline(train, bank, spec)
    assert targets.vertices_valid.sum() > 0 and targets.joints_valid.sum() == 0 and not meta["flip"].any()


def test_surreal_loader(tmp_path, smpl_bank):
    bank, _ = smpl_bank
    rng = np.random.default_rng(25)
    root = tmp_path / "SURREAL"
    _image(root / "images" / "train" / "run0_clip_c0001_f000.jpg", 320, 240)
    K = intrinsics(600.0, (160.0, 120.0))
    joints_cam = rng.normal(0, 0.3, (24, 3)) + [0, 0, 5.0]
    _dump(root / "annotations" / "surreal_train.json", {
        "images": [{"id": 0, "width": 320, "height": 240, "file_name": "train/run0_clip_c0001_f000.jpg",
                    "cam_param": {"focal": [600.0, 600.0], "princpt": [160.0, 120.0]}}],
        "annotations": [{"id": 0, "image_id": 0, "joint_img": project(joints_cam, K).tolist(),
                         "joint_cam": joints_cam.tolist(), "bbox": [100, 50, 120, 150],
                         "smpl_param": {**_smpl_param(rng, (0, 0, 5.0)), "gender": "female"}}]})
    records = load_records("surreal", root, "train")
    assert len(records) == 1 and records[0].joint_set.name == "smpl24" and records[0].body_gender == "female"
    np.testing.assert_allclose(records[0].joints_cam_m, joints_cam)
    targets, _ = _check_pipeline(records, BodyModelBank({"smpl": bank.get("smpl", "neutral")}))
    assert targets.joints_valid.sum() > 0


def test_convert_dataset_command(tmp_path):
    from i2lmesh.cli import main
    rng = np.random.default_rng(26)
    root = tmp_path / "MuCo"
    _image(root / "data" / "a.jpg")
    j = rng.normal(0, 300, (21, 3)) + [0, 0, 3000]
    K = intrinsics(1500.0, (32.0, 24.0))
    _dump(root / "data" / "MuCo-3DHP.json", {
        "images": [{"id": 0, "file_name": "a.jpg", "width": 64, "height": 48, "f": [1500, 1500], "c": [32, 24]}],
        "annotations": [{"id": 3, "image_id": 0, "bbox": [5, 5, 30, 30], "keypoints_cam": j.tolist(),
                         "keypoints_img": project(j, K).tolist()}]})
    assert main(["convert-dataset", "--format", "muco", "--root", str(root), "--out", str(tmp_path / "out"),
                 "--copy-images"]) == 0
    back = read_dataset(tmp_path / "out")
    assert len(back) == 1 and back[0].dataset == "muco"
    np.testing.assert_allclose(back[0].joints_cam_m, j / 1000.0)
    assert main(["convert-dataset", "--format", "muco", "--root", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "o2")]) == 2

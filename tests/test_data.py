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

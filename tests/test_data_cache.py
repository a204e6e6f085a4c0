"""Posed-mesh cache of the data pipeline (``data.targets.PosedMeshes``): samples built with the records' meshes posed
once, in batches, are the samples built by posing the body model per sample, body and hand, with and without
augmentation; SMPL-style models still pose their flipped parameters per sample; the memory budget is kept."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from i2lmesh.data import Augmentation, BodyModelBank, RecordDataset, SampleRecord, TargetSpec, build_sample
from i2lmesh.data.targets import PosedMeshes
from i2lmesh.geometry import intrinsics, project

pytestmark = pytest.mark.usefixtures("one_thread")

W, H = 160, 120
K = intrinsics((150.0, 155.0), (78.0, 61.0))
EPS32 = float(np.finfo(np.float32).eps)
AUGMENTATIONS = [Augmentation(), Augmentation(1.1, 25.0, False, (1.1, 0.9, 1.0)), Augmentation(0.9, -15.0, True)]


def _spec(model, input_size: int = 64, bbox_3d_size_m: float = 2.0) -> TargetSpec:
    """What a network on ``model``'s mesh and joints expects (heatmaps at input/4, as the paper's)."""
    return TargetSpec(input_size, input_size // 4, input_size // 4, bbox_3d_size_m, model.joint_set,
                      model.num_vertices, model.joint_regressor.double().numpy())


def _records(tmp_path, model, n: int, depth_m: float, seed: int = 0) -> list[SampleRecord]:
    """``n`` records of ``model``'s random parameters ``depth_m`` in front of the camera, each with a noise image and
    the box of its projected mesh. Anny's root is turned upright (its native frame is Z up)."""
    from i2lmesh.bodymodels.anny import upright_root_rotvec

    generator = torch.Generator().manual_seed(seed)
    params = model.sample_params(n, generator)
    if model.kind == "body":
        params["pose"][:, 0] = upright_root_rotvec(torch.rand(n, generator=generator) * 2 - 1)
    rng = np.random.default_rng(seed)
    bank = BodyModelBank({model.name: model})
    records = []
    for i in range(n):
        p = {k: v[i].double().numpy() for k, v in params.items()}
        p["trans"] = np.array([rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), depth_m])
        verts, _, _ = bank.evaluate(model.name, "neutral", p)
        uv = project(verts, K)
        lo, hi = uv.min(0), uv.max(0)
        path = tmp_path / f"{model.name}_{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        records.append(SampleRecord(image_path=str(path), image_size=(W, H), bbox_xywh=np.r_[lo, hi - lo], K=K,
                                    kind=model.kind, body_model=model.name, body_params=p, fit_valid=True,
                                    sample_id=str(i), dataset="test"))
    return records


def _assert_same(a, b, tol_hm: float = 0.0, tol_m: float = 0.0) -> None:
    """Two samples (image, targets, meta) equal: bit for bit with zero tolerances, else heatmap-unit arrays within
    ``tol_hm`` and metre arrays within ``tol_m``; masks, images and everything else exactly."""
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
    for part in (1, 2):
        assert a[part].keys() == b[part].keys()
        for key, x in a[part].items():
            y = b[part][key]
            if isinstance(x, dict):
                assert x.keys() == y.keys()
                for k in x:
                    np.testing.assert_array_equal(x[k], y[k], err_msg=key)
            elif isinstance(x, (np.ndarray, np.generic)) and x.dtype.kind == "f":
                tol = tol_hm if key.endswith("_hm") else tol_m
                np.testing.assert_allclose(x, y, rtol=0, atol=tol, err_msg=key)
            else:
                np.testing.assert_array_equal(x, y, err_msg=key)


def _tolerances(sample, spec: TargetSpec, delta_m: float) -> tuple[float, float]:
    """How far a sample's float32 targets can move when its posed mesh and joints move by at most ``delta_m``
    (metres, max norm), derived from the pipeline's maps (``geometry.camera.camera_to_heatmap``):

    x, y bins: u = fx X / Z + cx moves by <= fx / Z (|dX| + |X / Z| |dZ|) <= fx / Z (1 + |X / Z|) delta, then through
    the crop (row norms of ``img2bb_trans``) and x heatmap / input; z bins: depth relative to the root joint, both
    moved, 2 delta x depth_bins / bbox_3d_size. Metres: root-relative points move <= 2 delta per coordinate (the
    crop rotation mixes x and y: x sqrt(2)). Plus half a float32 unit of the largest value, the final cast."""
    meta, targets = sample[2], sample[1]
    verts = meta["vertices_cam_m"].astype(np.float64)
    z = verts[:, 2]
    f = float(np.max(meta["K"][[0, 1], [0, 1]]))
    ratio = np.max(np.abs(verts[:, :2]) / z[:, None])
    crop = float(np.abs(meta["img2bb_trans"][:, :2]).sum(1).max())
    xy_gain = spec.heatmap_size / spec.input_size * crop * f / z.min() * (1.0 + ratio)
    z_gain = 2.0 * spec.depth_bins / spec.bbox_3d_size_m
    hm_max = max(float(np.abs(targets[k]).max()) for k in ("vertices_hm", "fit_joints_hm"))
    m_max = max(float(np.abs(meta[k]).max()) for k in ("vertices_cam_m", "fit_joints_cam_rel_m"))
    return max(xy_gain, z_gain) * delta_m + EPS32 * hm_max, 2.0 * np.sqrt(2.0) * delta_m + EPS32 * m_max


# ------------------------------------------------------------------------------------------------ posing


@pytest.mark.parametrize("which", ["anny_body", "anny_hand"])
def test_batched_posing_equals_per_record_posing_to_float32_rounding(tmp_path, request, which):
    model = request.getfixturevalue(which)
    depth = 4.0 if model.kind == "body" else 0.6
    records = _records(tmp_path, model, 6, depth)
    bank = BodyModelBank({model.name: model})
    posed = PosedMeshes.compute(records, bank, budget_bytes=2 ** 30, batch_size=4)  # a full and a partial batch
    assert len(posed) == 6
    assert posed.nbytes == 6 * (model.num_vertices + model.num_joints) * 3 * 4
    for i, r in enumerate(records):
        verts, joints, _ = bank.evaluate(r.body_model, r.body_gender, r.body_params)
        v, j = posed.get(i)
        assert v.dtype == j.dtype == np.float64 and v.shape == verts.shape and j.shape == joints.shape
        # The same float32 operations summed in another order: a few units of float32 at the largest coordinate
        # (the translation puts it at ~depth); one unit observed for Anny.
        unit = EPS32 * max(float(np.abs(verts).max()), float(np.abs(joints).max()))
        assert np.abs(v - verts).max() <= 4 * unit
        assert np.abs(j - joints).max() <= 4 * unit
        v[:] = 0.0  # fresh arrays: a caller writing into them does not touch the cache
        assert np.abs(posed.get(i)[0] - verts).max() <= 4 * unit


def test_budget_holds_the_first_records_and_poses_the_rest_per_sample(tmp_path, anny_hand):
    records = _records(tmp_path, anny_hand, 5, 0.6)
    records[1].fit_valid = False  # not a usable fit: never posed
    records[3].body_params = None
    bank = BodyModelBank({anny_hand.name: anny_hand})
    per_record = (anny_hand.num_vertices + anny_hand.num_joints) * 3 * 4
    posed = PosedMeshes.compute(records, bank, budget_bytes=2 * per_record)
    assert [posed.get(i) is not None for i in range(5)] == [True, False, True, False, False]
    assert posed.nbytes == 2 * per_record
    assert len(PosedMeshes.compute(records, bank, budget_bytes=per_record - 1)) == 0
    assert len(PosedMeshes.compute(records, BodyModelBank(), budget_bytes=2 ** 30)) == 0  # no model: nothing


# ------------------------------------------------------------------------------------------------ samples


@pytest.mark.parametrize("which", ["anny_body", "anny_hand"])
def test_samples_from_the_posed_mesh_are_bit_identical(tmp_path, request, which):
    """The plumbing alone: given exactly what the per-sample evaluation gives, every sample is bit-identical, with
    and without augmentation (flips mirror the posed mesh for Anny bodies; hands are not flipped in training)."""
    model = request.getfixturevalue(which)
    body = model.kind == "body"
    records = _records(tmp_path, model, 2, 4.0 if body else 0.6, seed=1)
    spec = _spec(model, bbox_3d_size_m=2.0 if body else 0.3)
    bank = BodyModelBank({model.name: model})
    for r in records:
        verts, joints, _ = bank.evaluate(r.body_model, r.body_gender, r.body_params)
        image = cv2.imread(r.image_path)[:, :, ::-1].astype(np.float32)
        for aug in AUGMENTATIONS if body else AUGMENTATIONS[:2]:
            expected = build_sample(r, image, aug, spec, bank)
            got = build_sample(r, image, aug, spec, bank, posed=(verts.copy(), joints.copy()))
            assert got[2]["has_mesh"]
            _assert_same(got, expected)


def test_smpl_flips_pose_their_flipped_parameters_per_sample(tmp_path):
    """SMPL has no vertex mirror map: a flipped sample evaluates flipped parameters, not the cached recorded ones."""
    pytest.importorskip("smplx")
    from i2lmesh.bodymodels.model_files import write_synthetic_smpl_file
    from i2lmesh.bodymodels.smpl import SMPL

    smpl = SMPL(write_synthetic_smpl_file(tmp_path / "smpl.pkl", "smpl", seed=1))
    assert getattr(smpl, "flip_index", None) is None
    rng = np.random.default_rng(3)
    params = {"pose": rng.normal(0, 0.2, 72), "shape": rng.normal(0, 1, 10), "trans": np.array([0.1, 0.0, 4.0])}
    bank = BodyModelBank({"smpl": smpl})
    verts, joints, _ = bank.evaluate("smpl", "neutral", params)
    uv = project(verts, K)
    path = tmp_path / "smpl.png"
    cv2.imwrite(str(path), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    record = SampleRecord(image_path=str(path), image_size=(W, H), bbox_xywh=np.r_[uv.min(0), np.ptp(uv, 0)], K=K,
                          body_model="smpl", body_params=params, fit_valid=True)
    spec = _spec(smpl)
    image = cv2.imread(str(path))[:, :, ::-1].astype(np.float32)
    for aug in AUGMENTATIONS:
        expected = build_sample(record, image, aug, spec, bank)
        _assert_same(build_sample(record, image, aug, spec, bank, posed=(verts, joints)), expected)


@pytest.mark.parametrize("which", ["anny_body", "anny_hand"])
@pytest.mark.parametrize("train", [False, True])
def test_dataset_with_posed_meshes_gives_the_samples_without(tmp_path, request, which, train):
    """The whole path (batched posing in the dataset, then samples): equal to posing per sample within the
    tolerance that the measured float32 differences of the posed meshes imply (``_tolerances``)."""
    model = request.getfixturevalue(which)
    body = model.kind == "body"
    records = _records(tmp_path, model, 6, 4.0 if body else 0.6, seed=2)
    spec = _spec(model, bbox_3d_size_m=2.0 if body else 0.3)
    bank = BodyModelBank({model.name: model})
    plain = RecordDataset(records, spec, train=train, bank=bank, seed=5)
    cached = RecordDataset(records, spec, train=train, bank=bank, seed=5, posed_cache_bytes=2 ** 30)
    assert plain.posed is None and len(cached.posed) == 6
    # Anny bodies flipped take their joints from the network's regressor: it moves them by <= its row sums x delta.
    gain = np.abs(spec.joint_regressor).sum(1).max()
    flips = 0
    for i, r in enumerate(records):
        verts, joints, _ = bank.evaluate(r.body_model, r.body_gender, r.body_params)
        v, j = cached.posed.get(i)
        delta = max(np.abs(v - verts).max(), np.abs(j - joints).max(), gain * np.abs(v - verts).max())
        expected, got = plain[i], cached[i]
        flips += bool(got[2]["flip"])
        assert got[2]["has_mesh"] and float(got[1]["vertices_valid"].mean()) > 0.3  # not a vacuous comparison
        _assert_same(got, expected, *_tolerances(expected, spec, delta))
    assert flips == 0 if not (train and body) else 0 < flips < 6  # seed 5 flips some bodies (never hands)


def test_dataset_beyond_the_budget_is_bit_identical_and_pose_meshes_drops(tmp_path, anny_hand):
    records = _records(tmp_path, anny_hand, 3, 0.6, seed=4)
    spec = _spec(anny_hand, bbox_3d_size_m=0.3)
    bank = BodyModelBank({anny_hand.name: anny_hand})
    per_record = (anny_hand.num_vertices + anny_hand.num_joints) * 3 * 4
    plain = RecordDataset(records, spec, train=True, bank=bank)
    cached = RecordDataset(records, spec, train=True, bank=bank, posed_cache_bytes=per_record)
    assert cached.posed.get(0) is not None and cached.posed.get(1) is None
    for i in (1, 2):  # not held: posed per sample as without the cache
        _assert_same(cached[i], plain[i])
    assert cached.pose_meshes(0) == 0 and cached.posed is None
    assert RecordDataset(records, spec, posed_cache_bytes=2 ** 30).posed is None  # no bank: nothing to pose


# ------------------------------------------------------------------------------------------------ joint regression


def test_sparse_joint_regression_equals_the_dense_product(anny_body):
    """TargetSpec.regress_joints uses a sparse regressor's nonzeros only: the dense product's sums in another order,
    so within float64 rounding: n terms summed differ by <= n eps64 sum |w v| (n = the row's nonzeros)."""
    spec = _spec(anny_body)
    index, weights = spec._regressor_rows
    assert weights.shape[1] <= 0.01 * anny_body.num_vertices  # sparse indeed: the fast path is taken
    rng = np.random.default_rng(7)
    for _ in range(5):
        verts = rng.normal(0.0, 0.5, (anny_body.num_vertices, 3)) + [0.1, -0.2, 4.0]
        dense = spec.joint_regressor @ verts
        bound = weights.shape[1] * np.finfo(np.float64).eps * (np.abs(spec.joint_regressor) @ np.abs(verts))
        assert np.all(np.abs(spec.regress_joints(verts) - dense) <= bound)
    dense_spec = TargetSpec(64, 16, 16, 2.0, anny_body.joint_set, 40, np.random.default_rng(0).random((29, 40)))
    assert dense_spec._regressor_rows is None  # a dense matrix keeps the dense product, bit for bit
    verts = rng.normal(size=(40, 3))
    np.testing.assert_array_equal(dense_spec.regress_joints(verts), dense_spec.joint_regressor @ verts)


def test_load_image_gives_the_reversed_channels_as_float32(tmp_path):
    """load_image swaps BGR -> RGB with cv2 (faster than the reversed-stride copy): the same values, bit for bit."""
    from i2lmesh.data.targets import load_image

    image = np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    loaded = load_image(tmp_path / "a.png")
    assert loaded.dtype == np.float32 and loaded.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(loaded, image[:, :, ::-1].astype(np.float32))

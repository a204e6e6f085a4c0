"""Anny body and hand models: shapes, regressors, sampler, reduced mesh, mirroring, frame, cache location."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from i2lmesh.bodymodels import fit_regressor as fr
from i2lmesh.bodymodels.joint_sets import H36M_17, H36M_EVAL_INDICES, MANO_21, SMPL_29


def _params(model, batch=3, seed=0):
    return model.sample_params(batch, torch.Generator().manual_seed(seed))


def _edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return directed, np.unique(np.sort(directed, 1), axis=0, return_counts=True)[1]


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    p = vertices[faces]
    return float(np.einsum("ij,ij->i", p[:, 0], np.cross(p[:, 1], p[:, 2])).sum() / 6.0)


# ---------------------------------------------------------------------------------------------------------------
# Shapes, dtypes, interface
# ---------------------------------------------------------------------------------------------------------------
def test_body_outputs(anny_body, anny_body_full):
    for model, num_vertices in ((anny_body, 6890), (anny_body_full, 13718)):
        out = model(**_params(model))
        assert out.vertices_m.shape == (3, num_vertices, 3) and out.vertices_m.dtype == torch.float32
        assert out.joints_m.shape == (3, 29, 3) and out.joints_m.dtype == torch.float32
        assert torch.isfinite(out.vertices_m).all()
        assert model.faces.dtype == torch.int64 and model.faces.shape[1] == 3
        assert int(model.faces.max()) == num_vertices - 1
        assert model.joint_names == SMPL_29.names and model.kind == "body" and model.name == "anny"
        assert model.regress_joints(out.vertices_m, "h36m17").shape == (3, 17, 3)
        assert model.topology_info()["num_vertices"] == num_vertices
    assert anny_body_full.faces.shape == (27420, 3)


def test_hand_outputs(anny_hand):
    out = anny_hand(**_params(anny_hand))
    assert out.vertices_m.shape == (3, 1609, 3) and out.joints_m.shape == (3, 21, 3)
    assert out.vertices_m.dtype == torch.float32 and anny_hand.faces.shape == (3196, 3)
    assert anny_hand.joint_names == MANO_21.names and anny_hand.kind == "hand"


def test_default_params_and_gradients(anny_body):
    pose = torch.zeros(2, anny_body.num_bones, 3, requires_grad=True)
    shape = torch.full((2, 6), 0.5, requires_grad=True)
    out = anny_body(pose=pose, shape=shape)
    out.joints_m.sum().backward()
    assert torch.isfinite(pose.grad).all() and pose.grad.abs().sum() > 0 and shape.grad.abs().sum() > 0
    # Average rest body: ~1.6-1.8 m tall, Z up, pelvis at the origin.
    v = out.vertices_m[0].detach()
    assert 1.5 < float(v[:, 2].max() - v[:, 2].min()) < 1.9
    assert out.joints_m[0, 0].detach().norm() < 0.03


# ---------------------------------------------------------------------------------------------------------------
# Regressors
# ---------------------------------------------------------------------------------------------------------------
def test_regressor_rows_convex(anny_body, anny_body_full, anny_hand):
    for model in (anny_body, anny_body_full, anny_hand):
        matrices = [model.joint_regressor] + [getattr(model, f"regressor_{n}") for n in model.extra_joint_sets]
        for matrix in matrices:
            assert (matrix >= 0).all()
            torch.testing.assert_close(matrix.sum(1), torch.ones(matrix.shape[0]), atol=1e-5, rtol=0)


def test_joints_follow_the_mesh(anny_body, anny_hand):
    for model in (anny_body, anny_hand):
        params = _params(model, 2)
        out = model(**params)
        shift = torch.tensor([0.3, -1.2, 2.5])
        torch.testing.assert_close(model.regress_joints(out.vertices_m + shift), out.joints_m + shift, atol=1e-5,
                                   rtol=0)
        moved = model(**{**params, "trans": params["trans"] + shift})
        torch.testing.assert_close(moved.vertices_m, out.vertices_m + shift, atol=1e-5, rtol=0)
        torch.testing.assert_close(moved.joints_m, out.joints_m + shift, atol=1e-5, rtol=0)


def _held_out_errors_mm(model, regressor: torch.Tensor, targets, names, seed: int, count: int, reduce=None):
    params = model.sample_params(count, torch.Generator().manual_seed(seed))
    vertices, heads = fr.posed_samples(model.anny, params["pose"], params["shape"])
    landmarks = model.fit_report["landmarks"]  # vertex ids of the full (Anny) mesh
    target = fr.target_points(targets, names, model.bone_labels, landmarks, vertices, heads)
    if reduce is not None:
        vertices = reduce(vertices)
    return ((regressor @ vertices) - target).norm(dim=-1) * 1000.0


def test_body_regressor_held_out_error(anny_body, anny_body_full):
    """Fresh samples (a seed the fit never saw) against Anny's skeleton: mean < 10 mm, every joint's mean < 25 mm."""
    h36m_names = [fr.H36M_TARGET_OF.get(n, n) for n in H36M_17.names]
    for model, reduce in ((anny_body_full, None), (anny_body, anny_body.full_to_reduced)):
        err = _held_out_errors_mm(model, model.joint_regressor, fr.BODY_TARGETS, SMPL_29.names, 1234, 48, reduce)
        assert err.mean() < 10.0, f"{model.mesh}: mean held-out error {err.mean():.1f} mm"
        assert err.mean(0).max() < 25.0, f"{model.mesh}: per-joint means {err.mean(0)}"
        assert err.max() < 80.0
        err = _held_out_errors_mm(model, model.regressor_h36m17, fr.BODY_TARGETS, h36m_names, 1234, 48, reduce)
        assert err[:, list(H36M_EVAL_INDICES)].mean() < 10.0


def test_hand_regressor_held_out_error(anny_hand):
    err = _held_out_errors_mm(anny_hand, anny_hand.joint_regressor, fr.HAND_TARGETS, MANO_21.names, 1234, 48)
    assert err.mean() < 2.0 and err.mean(0).max() < 5.0 and err.max() < 15.0


def test_fit_rows_is_convex_and_exact_on_a_rigid_point():
    """The fitting routine itself: a target that is an exact convex combination is recovered."""
    gen = torch.Generator().manual_seed(0)
    vertices = torch.randn(40, 10, 3, generator=gen)
    weights = torch.tensor([0.0, 0.2, 0.0, 0.5, 0.3, 0, 0, 0, 0, 0])
    target = (weights[None, :, None] * vertices).sum(1, keepdim=True)
    rows = fr.fit_rows(vertices, target, [np.arange(10)])
    assert (rows >= 0).all() and abs(rows.sum() - 1) < 1e-9
    np.testing.assert_allclose(rows[0], weights.numpy(), atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# Sampler
# ---------------------------------------------------------------------------------------------------------------
def test_sampler_is_seeded(anny_body, anny_hand):
    for model in (anny_body, anny_hand):
        a, b, c = _params(model, 4, 5), _params(model, 4, 5), _params(model, 4, 6)
        for key in ("pose", "shape", "trans"):
            assert torch.equal(a[key], b[key])
        assert not torch.equal(a["pose"], c["pose"]) and not torch.equal(a["shape"], c["shape"])
        assert torch.isfinite(a["pose"]).all() and ((a["shape"] >= 0) & (a["shape"] <= 1)).all()
        assert a["pose"][:, 0].abs().max() == 0  # root at rest: orientation is the caller's choice


def test_sampler_respects_ranges(anny_body):
    import roma

    params = _params(anny_body, 256, 3)
    knee = anny_body.bone_labels.index("lowerleg01.L")
    rot = roma.rotvec_to_rotmat(params["pose"][:, knee])
    flexion = torch.rad2deg(torch.atan2(rot[:, 2, 1], rot[:, 2, 2]))  # about the bone's X axis
    assert flexion.min() > -5.0 and flexion.max() < 135.0 and flexion.max() > 60.0
    angles = params["pose"].norm(dim=-1)
    assert angles.max() < math.radians(150)


def test_random_poses_keep_limbs_connected(anny_body, anny_hand):
    """One shape, many random poses: skeleton edge lengths barely change (no broken or stretched limbs)."""
    for model, joint_set, max_std_m, max_rel in ((anny_body, SMPL_29, 0.015, 0.08), (anny_hand, MANO_21, 0.001, 0.02)):
        params = _params(model, 32, 11)
        params["shape"][:] = params["shape"][:1]
        joints = model(**params).joints_m
        assert torch.isfinite(joints).all()
        edges = torch.tensor(joint_set.skeleton)
        lengths = (joints[:, edges[:, 0]] - joints[:, edges[:, 1]]).norm(dim=-1)
        assert lengths.std(0).max() < max_std_m, lengths.std(0)
        assert (lengths.std(0) / lengths.mean(0)).max() < max_rel


# ---------------------------------------------------------------------------------------------------------------
# Meshes
# ---------------------------------------------------------------------------------------------------------------
def test_reduced_mesh_is_closed_and_outward(anny_body):
    faces = anny_body.faces.numpy()
    directed, counts = _edges(faces)
    assert (counts == 2).all(), "every edge of the reduced mesh should have exactly two faces."
    assert len(np.unique(directed, axis=0)) == len(directed), "winding should be consistent."
    v = anny_body(pose=torch.zeros(1, anny_body.num_bones, 3)).vertices_m[0].numpy()
    assert _signed_volume(v, faces) > 0.03  # outward normals: positive enclosed volume (m^3)
    num_edges = len(counts)
    assert len(v) - num_edges + len(faces) == 2  # genus 0


def test_reduced_maps_to_full(anny_body, anny_body_full):
    params = _params(anny_body, 2, 1)
    full = anny_body_full(**params).vertices_m
    reduced = anny_body(**params).vertices_m
    torch.testing.assert_close(anny_body.full_to_reduced(full), reduced, atol=1e-6, rtol=0)
    back = anny_body.reduced_to_full(reduced)
    assert back.shape == full.shape
    skin = torch.zeros(full.shape[1], dtype=torch.bool)
    skin[anny_body.reduced_vertex_ids] = True
    torch.testing.assert_close(back[:, skin], full[:, skin], atol=1e-6, rtol=0)
    assert (back - full).norm(dim=-1).mean() < 0.003
    # Landmarks survive decimation: the same vertex in both meshes.
    for name, index in anny_body.landmark_vertices.items():
        assert int(anny_body.reduced_vertex_ids[index]) == anny_body_full.landmark_vertices[name]


def test_flip_index_mirrors_the_mesh(anny_body, anny_body_full):
    for model in (anny_body, anny_body_full):
        v = model(pose=torch.zeros(1, model.num_bones, 3)).vertices_m[0]
        mirrored = v[model.flip_index] * torch.tensor([-1.0, 1.0, 1.0])
        assert (mirrored - v).norm(dim=-1).max() < 0.002  # the rest pose is symmetric to 0.4 mm
        assert torch.equal(model.flip_index[model.flip_index], torch.arange(model.num_vertices))
        # Joint flip pairs agree with the mesh flip: regressing the mirrored mesh gives the mirrored joints.
        j = model.regress_joints(v)
        jm = model.regress_joints(v[model.flip_index]) * torch.tensor([-1.0, 1.0, 1.0])
        perm = list(range(29))
        for a, b in SMPL_29.flip_pairs:
            perm[a], perm[b] = b, a
        assert (jm - (j * torch.tensor([-1.0, 1.0, 1.0]))[perm]).norm(dim=-1).max() < 0.005


def test_left_hand_mirrors_right(anny_hand, anny_hand_left):
    params = _params(anny_hand, 2, 4)
    right, left = anny_hand(**params), anny_hand_left(**params)
    flip = torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(left.vertices_m, right.vertices_m * flip)
    torch.testing.assert_close(left.joints_m, right.joints_m * flip)
    v_r, v_l = right.vertices_m[0].numpy(), left.vertices_m[0].numpy()
    n_r = np.cross(*(v_r[anny_hand.faces[:, k]] - v_r[anny_hand.faces[:, 0]] for k in (1, 2)))
    n_l = np.cross(*(v_l[anny_hand_left.faces[:, k]] - v_l[anny_hand_left.faces[:, 0]] for k in (1, 2)))
    np.testing.assert_allclose(n_l, n_r * flip.numpy(), atol=1e-9)  # normals mirror too: winding re-flipped
    assert anny_hand_left.topology_info()["side"] == "left"


def test_hand_faces_point_outwards(anny_hand):
    """Open at the wrist, so compare each face normal with the direction from the bone it sits on."""
    out = anny_hand(pose=torch.zeros(1, anny_hand.num_bones, 3))
    v = out.vertices_m[0].numpy()
    f = anny_hand.faces.numpy()
    normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    centres = v[f].mean(1)
    nearest = np.linalg.norm(centres[:, None] - out.joints_m[0, 1:].numpy()[None], axis=-1).argmin(1)
    outward = (normals * (centres - out.joints_m[0, 1:].numpy()[nearest])).sum(1) > 0
    assert outward.mean() > 0.9


# ---------------------------------------------------------------------------------------------------------------
# Frame and cache
# ---------------------------------------------------------------------------------------------------------------
def test_upright_in_camera_frame(anny_body):
    from i2lmesh.bodymodels.anny import upright_root_rotvec

    pose = torch.zeros(2, anny_body.num_bones, 3)
    pose[:, 0] = upright_root_rotvec(torch.tensor([0.0, math.pi / 2]))
    j = anny_body(pose=pose).joints_m
    head, pelvis, nose = j[:, SMPL_29.index("Head")], j[:, 0], j[:, SMPL_29.index("Nose")]
    l_sh, r_sh = j[:, SMPL_29.index("L_Shoulder")], j[:, SMPL_29.index("R_Shoulder")]
    assert (head[:, 1] < pelvis[:, 1] - 0.4).all()       # y down: the head is above the pelvis
    assert nose[0, 2] < head[0, 2] - 0.05                 # facing the camera: the nose is nearer
    assert l_sh[0, 0] > r_sh[0, 0] + 0.2                  # facing the camera, its left is on the image right
    assert abs(float(l_sh[1, 0] - r_sh[1, 0])) < 0.05     # turned 90 degrees: shoulders aligned in depth


def test_cache_dir_resolution(monkeypatch, tmp_path):
    from i2lmesh.bodymodels.anny_cache import default_cache_dir

    monkeypatch.delenv("ANNY_CACHE_DIR", raising=False)
    monkeypatch.delenv("I2LMESH_CACHE_DIR", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "i2lmesh" / "anny"
    monkeypatch.setenv("I2LMESH_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "anny"
    monkeypatch.setenv("ANNY_CACHE_DIR", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"


def test_assets_are_small():
    for name in (fr.BODY_ASSET, fr.HAND_ASSET):
        assert (fr.ASSETS_DIR / name).stat().st_size < 3_000_000

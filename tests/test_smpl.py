"""SMPL / MANO from user files, tested on synthetic files in the official layout (no licensed data needed)."""
from __future__ import annotations

import hashlib
import pickle
import sys

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

pytest.importorskip("smplx")

from i2lmesh.bodymodels import BodyModelFileError  # noqa: E402
from i2lmesh.bodymodels.model_files import (MODEL_SIZES, dump_official_pickle, fake_ch, fake_chumpy,  # noqa: E402
                                            load_model_file, synthetic_model_data, write_synthetic_smpl_file)
from i2lmesh.bodymodels.smpl import MANO, SMPL, MANO_21_ORDER  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    out = {}
    for kind in ("smpl", "mano"):
        for fmt in ("pkl", "npz"):
            out[kind, fmt] = write_synthetic_smpl_file(root / f"{kind}_synthetic.{fmt}", kind, fmt, seed=3)
    return out


@pytest.fixture(scope="module")
def smpl_data(files):
    return load_model_file(files["smpl", "pkl"])


@pytest.fixture(scope="module")
def mano_data(files):
    return load_model_file(files["mano", "pkl"])


@pytest.fixture(scope="module")
def smpl(files):
    return SMPL(files["smpl", "pkl"])


@pytest.fixture(scope="module")
def mano(files):
    return MANO(files["mano", "pkl"])


def _aa(batch: int, joints: int, scale: float, seed: int) -> torch.Tensor:
    return scale * torch.randn(batch, 3 * joints, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------- files

def test_pkl_reads_without_chumpy_and_matches_npz(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "chumpy", None)  # any "import chumpy" would now fail
    for kind in ("smpl", "mano"):
        from_pkl, from_npz = load_model_file(files[kind, "pkl"]), load_model_file(files[kind, "npz"])
        for key, value in from_npz.items():
            np.testing.assert_array_equal(from_pkl[key], value, err_msg=key)
        assert type(from_pkl["shapedirs"]) is np.ndarray and from_pkl["shapedirs"].shape[:2] == (
            MODEL_SIZES[kind]["num_vertices"], 3)
        assert type(from_pkl["J_regressor"]) is np.ndarray  # sparse csc -> dense
        assert from_pkl["bs_style"] == "lbs"


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_python3_pickles_of_plain_arrays(files, tmp_path, protocol):
    """Files re-saved from Python 3 without chumpy (e.g. smplx's cleaned models) hold plain arrays."""
    data = load_model_file(files["mano", "npz"])
    data["scalar"] = np.float32(2.5)
    with open(tmp_path / "MANO_RIGHT.pkl", "wb") as fh:
        pickle.dump(data, fh, protocol=protocol)
    back = load_model_file(tmp_path / "MANO_RIGHT.pkl")
    np.testing.assert_array_equal(back["posedirs"], data["posedirs"])
    assert back["scalar"] == 2.5
    assert MANO(tmp_path).num_vertices == 778


def test_synthetic_pkl_is_official_layout(files):
    raw = files["smpl", "pkl"].read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2, as the Python-2 originals
    assert b"chumpy.ch\nCh\n" in raw and b"scipy.sparse" in raw
    sizes = MODEL_SIZES["smpl"]
    data = synthetic_model_data("smpl", seed=3)
    assert data["J_regressor"].format == "csc" and data["J_regressor"].shape == (24, 6890)
    assert data["f"].shape == (sizes["num_faces"], 3) and data["f"].dtype == np.uint32
    assert data["kintree_table"][0, 0] == 4294967295
    np.testing.assert_allclose(data["weights"].sum(1), 1.0)
    assert len(np.unique(data["f"])) == sizes["num_vertices"]
    assert all(len(set(face)) == 3 for face in data["f"][:500].tolist())


def test_synthetic_file_is_deterministic(tmp_path):
    digests = {hashlib.sha256(write_synthetic_smpl_file(tmp_path / f"m{i}.pkl", "mano", seed=7).read_bytes())
               .hexdigest() for i in range(2)}
    other = hashlib.sha256(write_synthetic_smpl_file(tmp_path / "m.pkl", "mano", seed=8).read_bytes()).hexdigest()
    assert len(digests) == 1 and other not in digests


def test_chumpy_reordering_stubs(tmp_path):
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    ch = fake_ch(x)
    obj = {
        "reshape": fake_chumpy("chumpy.reordering", "Reshape", a=ch, newshape=(6, 4)),
        "select": fake_chumpy("chumpy.reordering", "Select", a=ch, idxs=np.array([5, 0, 23]), preferred_shape=(3,)),
        "transpose": fake_chumpy("chumpy.reordering", "transpose", a=ch, axes=(2, 0, 1)),
        "concat": fake_chumpy("chumpy.reordering", "Concatenate", m0=ch, m1=fake_ch(x + 100), dterms=["m0", "m1"],
                              axis=1),
    }
    dump_official_pickle(obj, tmp_path / "ops.pkl")
    out = load_model_file(tmp_path / "ops.pkl")
    np.testing.assert_array_equal(out["reshape"], x.reshape(6, 4))
    np.testing.assert_array_equal(out["select"], x.ravel()[[5, 0, 23]])
    np.testing.assert_array_equal(out["transpose"], x.transpose(2, 0, 1))
    np.testing.assert_array_equal(out["concat"], np.concatenate([x, x + 100], 1))


# ---------------------------------------------------------------------------------------------------- errors

def test_missing_file_error_is_one_line_with_paths_and_url(tmp_path):
    with pytest.raises(BodyModelFileError) as err:
        SMPL(tmp_path, gender="female")
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path) in msg and str(tmp_path / "smpl") in msg
    assert "basicModel_f_lbs_10_207_0_v1.0.0.pkl" in msg and "https://smpl.is.tue.mpg.de" in msg
    with pytest.raises(BodyModelFileError, match="smplify"):
        SMPL(tmp_path)  # neutral: says it comes with SMPLify
    with pytest.raises(BodyModelFileError) as err:
        MANO(tmp_path / "nowhere" / "MANO_RIGHT.pkl")
    msg = str(err.value)
    assert "\n" not in msg and "nowhere" in msg and "https://mano.is.tue.mpg.de" in msg
    assert isinstance(err.value, FileNotFoundError)


def test_folder_layouts_are_found(files, tmp_path):
    (tmp_path / "smpl").mkdir()
    (tmp_path / "smpl" / "SMPL_NEUTRAL.pkl").symlink_to(files["smpl", "pkl"])
    (tmp_path / "basicModel_f_lbs_10_207_0_v1.0.0.pkl").symlink_to(files["smpl", "pkl"])
    (tmp_path / "mano").mkdir()
    (tmp_path / "mano" / "MANO_LEFT.npz").symlink_to(files["mano", "npz"])
    assert SMPL(tmp_path).num_vertices == 6890
    assert SMPL(tmp_path, gender="female").gender == "female"
    assert MANO(tmp_path, side="left").side == "left"


@pytest.mark.parametrize("payload, problem", [
    (b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R.", "refusing to load os.system"),
    (None, "not a readable model pickle"),
    (b"PK\x03\x04 not really a zip", "npz"),
])
def test_corrupt_file_error(files, tmp_path, payload, problem):
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(payload if payload is not None else files["mano", "pkl"].read_bytes()[:5000])
    with pytest.raises(BodyModelFileError) as err:
        MANO(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and problem in msg


def test_wrong_model_kind_and_missing_keys(files, tmp_path):
    with pytest.raises(BodyModelFileError, match="v_template has shape"):
        SMPL(files["mano", "pkl"])
    data = load_model_file(files["mano", "npz"])
    del data["hands_mean"]
    with open(tmp_path / "MANO_RIGHT.pkl", "wb") as fh:
        pickle.dump(data, fh, protocol=2)
    with pytest.raises(BodyModelFileError, match="missing hands_mean"):
        MANO(tmp_path)


def test_h36m_regressor(files, tmp_path):
    regressor = np.random.default_rng(0).random((17, 6890))
    np.save(tmp_path / "J_regressor_h36m_correct.npy", regressor)
    model = SMPL(files["smpl", "npz"], h36m_regressor_path=tmp_path / "J_regressor_h36m_correct.npy")
    out = model(_aa(2, 24, 0.3, 0))
    h36m = model.regress_joints(out.vertices_m, "h36m17")
    torch.testing.assert_close(h36m, torch.as_tensor(regressor, dtype=torch.float32) @ out.vertices_m)
    np.save(tmp_path / "bad.npy", regressor[:5])
    with pytest.raises(BodyModelFileError, match="expected"):
        SMPL(files["smpl", "npz"], h36m_regressor_path=tmp_path / "bad.npy")
    with pytest.raises(BodyModelFileError, match="absent.npy"):
        SMPL(files["smpl", "npz"], h36m_regressor_path=tmp_path / "absent.npy")


# ---------------------------------------------------------------------------------------------------- regressors

def test_smpl_29_regressor(smpl, smpl_data):
    assert smpl.joint_regressor.shape == (29, 6890) and smpl.num_joints == 29
    assert smpl.faces.shape == (13776, 3) and smpl.faces.dtype == torch.int64
    np.testing.assert_array_equal(smpl.faces.numpy(), smpl_data["f"].astype(np.int64))
    np.testing.assert_allclose(smpl.joint_regressor[:24].numpy(), smpl_data["J_regressor"], rtol=1e-6)
    for name, vertex in {"Nose": 331, "L_Eye": 2802, "R_Eye": 6262, "L_Ear": 3489, "R_Ear": 3990}.items():
        row = smpl.joint_regressor[smpl.joint_index(name)]
        assert row[vertex] == 1.0 and row.sum() == 1.0, name


def test_mano_21_regressor(mano, mano_data):
    assert mano.joint_regressor.shape == (21, 778) and mano.faces.shape == (1538, 3)
    tips = {"Thumb_4": 745, "Index_4": 317, "Middle_4": 445, "Ring_4": 556, "Pinky_4": 673}
    for name, vertex in tips.items():
        row = mano.joint_regressor[mano.joint_index(name)]
        assert row[vertex] == 1.0 and row.sum() == 1.0, name
    assert [mano.joint_index(n) for n in tips] == [4, 8, 12, 16, 20]
    # MANO's own joints: wrist, index 1-3, middle 1-3, pinky 1-3, ring 1-3, thumb 1-3
    mano_order = ["Wrist"] + [f"{f}_{i}" for f in ("Index", "Middle", "Pinky", "Ring", "Thumb") for i in (1, 2, 3)]
    for kin_row, name in enumerate(mano_order):
        np.testing.assert_allclose(mano.joint_regressor[mano.joint_index(name)].numpy(),
                                   mano_data["J_regressor"][kin_row], rtol=1e-6, err_msg=name)
    assert sorted(MANO_21_ORDER) == list(range(21))


# ---------------------------------------------------------------------------------------------------- forward

def test_rest_pose_is_template_plus_shape_blend(smpl, smpl_data, mano, mano_data):
    betas = torch.linspace(-1.5, 1.5, 10).reshape(1, 10)
    out = smpl(torch.zeros(1, 72), betas)
    expected = smpl_data["v_template"] + smpl_data["shapedirs"][..., :10] @ betas[0].double().numpy()
    assert out.vertices_m.dtype == torch.float32 and out.vertices_m.shape == (1, 6890, 3)
    np.testing.assert_allclose(out.vertices_m[0].numpy(), expected, atol=2e-6)
    np.testing.assert_allclose(smpl(torch.zeros(1, 72)).vertices_m[0].numpy(), smpl_data["v_template"], atol=2e-6)
    # MANO with flat_hand_mean=False adds hands_mean: the rest pose is pose = -hands_mean, not zero
    rest = torch.cat([torch.zeros(1, 3), -torch.as_tensor(mano_data["hands_mean"], dtype=torch.float32)[None]], 1)
    np.testing.assert_allclose(mano(rest).vertices_m[0].numpy(), mano_data["v_template"], atol=2e-6)
    assert not torch.allclose(mano(torch.zeros(1, 48)).vertices_m, mano(rest).vertices_m, atol=1e-4)
    flat = MANO(None, flat_hand_mean=True, _data=mano_data)
    np.testing.assert_allclose(flat(torch.zeros(1, 48)).vertices_m[0].numpy(), mano_data["v_template"], atol=2e-6)


@pytest.mark.parametrize("which", ["smpl", "mano"])
def test_global_rotation_is_rigid_about_root(which, smpl, mano, mano_data):
    model = smpl if which == "smpl" else mano
    num_pose = 72 if which == "smpl" else 48
    body_pose = _aa(1, num_pose // 3, 0.3, 1)
    body_pose[:, :3] = 0
    rotvec = torch.tensor([[0.4, -1.1, 2.0]])
    shape = torch.randn(1, 10, generator=torch.Generator().manual_seed(2))
    base = model(body_pose, shape)
    turned = model(torch.cat([rotvec, body_pose[:, 3:]], 1), shape)
    rot = torch.as_tensor(Rotation.from_rotvec(rotvec[0].numpy()).as_matrix(), dtype=torch.float32)
    # SMPL turns about the root joint of the shaped rest mesh (pelvis / wrist), not of the posed one
    v_shaped = model.v_template + torch.einsum("vck,bk->bvc", model.shapedirs, shape)
    root = (model.kinematic_regressor[0] @ v_shaped)[:, None]
    torch.testing.assert_close(turned.vertices_m, (base.vertices_m - root) @ rot.T + root, atol=2e-5, rtol=0)
    torch.testing.assert_close(turned.joints_m, (base.joints_m - root) @ rot.T + root, atol=2e-5, rtol=0)


def test_translation_adds_and_joints_regress_from_vertices(smpl, mano):
    for model, num_pose in ((smpl, 72), (mano, 48)):
        pose, trans = _aa(3, num_pose // 3, 0.4, 4), torch.tensor([[0.1, -2.0, 5.0], [0.0, 0.0, 0.0], [1, 2, 3.0]])
        shape = torch.randn(3, 10, generator=torch.Generator().manual_seed(5))
        moved, still = model(pose, shape, trans), model(pose, shape)
        torch.testing.assert_close(moved.vertices_m, still.vertices_m + trans[:, None], atol=1e-5, rtol=0)
        torch.testing.assert_close(moved.joints_m, still.joints_m + trans[:, None], atol=1e-5, rtol=0)
        torch.testing.assert_close(moved.joints_m, model.joint_regressor @ moved.vertices_m, atol=1e-6, rtol=0)


def test_rotation_matrix_pose_matches_axis_angle(smpl, mano):
    pose = _aa(2, 24, 0.5, 6)
    rotmats = torch.as_tensor(Rotation.from_rotvec(pose.reshape(-1, 3).numpy()).as_matrix(),
                              dtype=torch.float32).reshape(2, 24, 3, 3)
    torch.testing.assert_close(smpl(rotmats).vertices_m, smpl(pose).vertices_m, atol=1e-5, rtol=0)
    hand = _aa(2, 16, 0.5, 7)
    full = torch.cat([hand[:, :3], hand[:, 3:] + mano.hands_mean], 1)  # rotation input is used as given
    hand_rot = torch.as_tensor(Rotation.from_rotvec(full.reshape(-1, 3).numpy()).as_matrix(),
                               dtype=torch.float32).reshape(2, 16, 3, 3)
    torch.testing.assert_close(mano(hand_rot).vertices_m, mano(hand).vertices_m, atol=1e-5, rtol=0)


def test_sample_params_seeded_and_forwardable(smpl, mano):
    for model in (smpl, mano):
        a = model.sample_params(3, torch.Generator().manual_seed(0))
        b = model.sample_params(3, torch.Generator().manual_seed(0))
        for key in a:
            torch.testing.assert_close(a[key], b[key])
        assert a["shape"].abs().max() <= 2.0
        out = model(**a)
        assert torch.isfinite(out.vertices_m).all() and out.joints_m.shape == (3, model.num_joints, 3)


# ---------------------------------------------------------------------------------------------------- checkpoints

def _official_buffers(data, kind):
    """The smplpytorch / manopth buffers the authors' snapshots hold, built from the pkl data."""
    prefix = "module.human_model_layer."
    buffers = {
        "th_betas": torch.zeros(1, 10),
        "th_shapedirs": torch.as_tensor(data["shapedirs"][..., :10], dtype=torch.float32),
        "th_posedirs": torch.as_tensor(data["posedirs"], dtype=torch.float32),
        "th_v_template": torch.as_tensor(data["v_template"], dtype=torch.float32)[None],
        "th_J_regressor": torch.as_tensor(data["J_regressor"], dtype=torch.float32),
        "th_weights": torch.as_tensor(data["weights"], dtype=torch.float32),
        "th_faces": torch.as_tensor(data["f"].astype(np.int64)),
    }
    if kind == "mano":
        buffers["th_hands_mean"] = torch.as_tensor(data["hands_mean"], dtype=torch.float32)[None]
        buffers["th_selected_comps"] = torch.as_tensor(data["hands_components"][:6], dtype=torch.float32)
    return {prefix + k: v for k, v in buffers.items()}


def test_from_official_buffers_matches_file(smpl, smpl_data, mano, mano_data):
    buffers = _official_buffers(smpl_data, "smpl")
    assert buffers["module.human_model_layer.th_posedirs"].shape == (6890, 3, 207)
    from_ckpt = SMPL.from_official_buffers(buffers)
    pose, shape = _aa(2, 24, 0.4, 8), torch.randn(2, 10, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(from_ckpt(pose, shape).vertices_m, smpl(pose, shape).vertices_m)
    torch.testing.assert_close(from_ckpt.joint_regressor, smpl.joint_regressor)
    torch.testing.assert_close(from_ckpt.faces, smpl.faces)
    from_ckpt_hand = MANO.from_official_buffers(_official_buffers(mano_data, "mano"))
    hand = _aa(2, 16, 0.4, 10)
    torch.testing.assert_close(from_ckpt_hand(hand, shape).joints_m, mano(hand, shape).joints_m)
    with pytest.raises(KeyError, match="th_weights"):
        SMPL.from_official_buffers({k: v for k, v in buffers.items() if not k.endswith("th_weights")})


def test_model_data_stays_out_of_state_dict(smpl):
    assert smpl.state_dict() == {}  # licensed arrays never travel inside our checkpoints


def test_missing_smplx_is_one_line(smpl, monkeypatch):
    monkeypatch.setitem(sys.modules, "smplx", None)
    monkeypatch.setitem(sys.modules, "smplx.lbs", None)
    with pytest.raises(ImportError, match=r"pip install i2lmesh\[smpl\]"):
        smpl(torch.zeros(1, 72))

"""Network tests: soft-argmax, spreads, separable Pose2Feat vs the materialised oracle, gradient routing,
shapes for every preset, parameter counts against the reference, checkpoint round trip."""
from __future__ import annotations

import pytest
import torch

from i2lmesh import CheckpointError, get_preset, load_network, save_network
from i2lmesh.config import PRESETS
from i2lmesh.nets import I2LMeshNet, Pose2Feat, gaussian_heatmap_3d, rot6d_to_matrix, soft_argmax_1d


def _net(config, seed=0):
    torch.manual_seed(seed)
    j, v = config.num_joints, config.num_vertices
    reg = torch.rand(j, v)
    reg = reg / reg.sum(1, keepdim=True)
    faces = torch.randint(0, v, (2 * v, 3))
    return I2LMeshNet(config, reg, faces)


def _tiny(**kw):
    base = dict(backbone_depth=18, input_size=64, depth_bins=16, deconv_channels=16, num_joints=5, num_vertices=40)
    base.update(kw)
    return get_preset("cpu-small", **base)


def test_soft_argmax_of_one_hot_returns_its_index():
    d = 64
    idx = torch.tensor([0, 7, 31, 63])
    logits = torch.full((4, d), -1e4)
    logits[torch.arange(4), idx] = 1e4
    coord, spread = soft_argmax_1d(logits)
    assert torch.allclose(coord, idx.float(), atol=1e-4)
    assert torch.all(spread < 1e-3)


def test_soft_argmax_of_uniform_and_spread_shrinks_with_peakiness():
    d = 64
    coord, spread = soft_argmax_1d(torch.zeros(1, d))
    assert coord.item() == pytest.approx((d - 1) / 2, abs=1e-4)
    # Uniform distribution over 0..D-1 has variance (D^2 - 1) / 12.
    assert spread.item() == pytest.approx(((d * d - 1) / 12) ** 0.5, rel=1e-4)
    bins = torch.arange(d).float()
    spreads = []
    for sharpness in (0.05, 0.5, 5.0):
        c, s = soft_argmax_1d(-sharpness * (bins - 20.0) ** 2)
        assert c.item() == pytest.approx(20.0, abs=1e-3)
        spreads.append(s.item())
    assert spreads[0] > spreads[1] > spreads[2]
    # A Gaussian logit -(x-m)^2/(2 s^2) has std s: sharpness 0.05 -> s = sqrt(10).
    assert spreads[0] == pytest.approx(10 ** 0.5, rel=1e-3)


def test_gaussian_heatmap_peak_and_value():
    joints = torch.tensor([[[3.0, 5.0, 7.0]]])
    vol = gaussian_heatmap_3d(joints, 16, 12, 10, 2.5)
    assert vol.shape == (1, 1, 16, 12, 10)
    assert vol[0, 0, 7, 5, 3].item() == pytest.approx(1.0)
    expected = torch.exp(torch.tensor(-(1.0 + 4.0 + 9.0) / (2 * 2.5 ** 2)))
    assert vol[0, 0, 10, 7, 4].item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("batch", [1, 3])
def test_separable_pose2feat_equals_materialised_oracle(batch):
    torch.manual_seed(0)
    j, d, h, w = 4, 12, 10, 9
    sep = Pose2Feat(8, j, d, 2.5, out_channels=6, mode="separable").double()
    mat = Pose2Feat(8, j, d, 2.5, out_channels=6, mode="materialised").double()
    mat.load_state_dict(sep.state_dict())
    with torch.no_grad():
        sep.conv.weight.normal_()
        sep.conv.bias.normal_()
    mat.load_state_dict(sep.state_dict())
    feat = torch.randn(batch, 8, h, w, dtype=torch.double)
    # Joints inside, on the border and outside the grid (the zero padding must match too).
    joints = torch.stack([torch.rand(batch, j) * (w + 4) - 2, torch.rand(batch, j) * (h + 4) - 2,
                          torch.rand(batch, j) * (d + 4) - 2], dim=-1).double()
    out_s = sep(feat, joints)
    out_m = mat(feat, joints)
    assert out_s.shape == (batch, 6, h, w)
    assert torch.allclose(out_s, out_m, atol=1e-10, rtol=1e-9)
    grad = torch.randn_like(out_s)
    gs = torch.autograd.grad((out_s * grad).sum(), [sep.conv.weight, sep.conv.bias, sep.bn.weight])
    gm = torch.autograd.grad((out_m * grad).sum(), [mat.conv.weight, mat.conv.bias, mat.bn.weight])
    for a, b in zip(gs, gm):
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-8)


def test_separable_pose2feat_float32_tolerance_at_paper_size():
    torch.manual_seed(1)
    sep = Pose2Feat(64, 29, 64, 2.5, mode="separable").eval()
    mat = Pose2Feat(64, 29, 64, 2.5, mode="materialised").eval()
    with torch.no_grad():
        sep.conv.weight.normal_(std=0.01)
    mat.load_state_dict(sep.state_dict())
    feat = torch.randn(1, 64, 64, 64)
    joints = torch.rand(1, 29, 3) * 63
    with torch.no_grad():
        assert torch.allclose(sep(feat, joints), mat(feat, joints), atol=1e-4)


def test_no_gradient_reaches_posenet_through_the_gaussian():
    net = _net(_tiny()).train()
    out = net(torch.rand(2, 3, 64, 64))
    # A loss on MeshNet's output only: PoseNet's head must get no gradient (joints enter detached) ...
    out.vertices_hm.sum().backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in net.pose_net.parameters())
    # ... while the early image feature still carries gradient into the pose backbone's stem (as the reference).
    assert net.pose_backbone.conv1.weight.grad is not None and net.pose_backbone.conv1.weight.grad.abs().max() > 0
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in net.pose_backbone.layer4.parameters())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_shapes_for_every_preset(name):
    cfg = get_preset(name, num_vertices=50, num_joints=PRESETS[name].num_joints)
    net = _net(cfg).eval()
    s, d, hm = cfg.input_size, cfg.depth_bins, cfg.heatmap_size
    with torch.no_grad():
        out = net(torch.rand(2, 3, s, s))
    j = cfg.num_joints
    assert out.joints_hm.shape == (2, j, 3) and out.joints_spread.shape == (2, j, 3)
    assert out.vertices_hm.shape == (2, 50, 3) and out.vertices_spread.shape == (2, 50, 3)
    assert out.mesh_joints_hm.shape == (2, j, 3)
    for coords in (out.joints_hm, out.vertices_hm):
        assert coords[..., :2].min() >= 0 and coords[..., :2].max() <= hm - 1
        assert coords[..., 2].min() >= 0 and coords[..., 2].max() <= d - 1
    assert torch.allclose(out.mesh_joints_hm, net.joint_regressor @ out.vertices_hm, atol=1e-5)


def test_parameter_counts_match_the_reference():
    cfg = get_preset("paper-body", num_vertices=6890, num_joints=29, param_regressor=True)
    net = _net(cfg)
    count = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    # official_spec.md 1.8; our mesh backbone drops the reference's unused stem (9,536 parameters).
    assert count(net.pose_backbone) == 23_508_032
    assert count(net.pose_net) == 44_113_239
    assert count(net.pose2feat) == 1_106_112
    assert count(net.mesh_backbone) == 23_508_032 - 9_536
    assert count(net.mesh_net) == 49_403_070
    assert count(net.param_regressor) == 696_986
    assert count(net) == 142_335_471 - 9_536
    hand = _net(get_preset("paper-hand", num_vertices=778, num_joints=21, param_regressor=True,
                           param_num_rotations=16))
    assert count(hand) == 137_272_839 - 9_536


def test_rot6d_gives_rotations_and_identity():
    x = torch.randn(100, 6)
    r = rot6d_to_matrix(x)
    eye = torch.eye(3).expand(100, 3, 3)
    assert torch.allclose(r @ r.transpose(1, 2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(100), atol=1e-5)
    # Row-major 3x2 layout: columns (1,0,0) and (0,1,0) are elements (1,0 | 0,1 | 0,0).
    assert torch.allclose(rot6d_to_matrix(torch.tensor([1.0, 0, 0, 1, 0, 0])), torch.eye(3))


def test_save_load_round_trip_and_bad_files(tmp_path):
    net = _net(_tiny(pose2feat="materialised")).eval()
    path = tmp_path / "net.pt"
    save_network(net, path)
    loaded, cfg = load_network(path)
    assert cfg == net.config
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x).vertices_hm, loaded(x).vertices_hm)
    missing = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="nope.pt: checkpoint file not found"):
        load_network(missing)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt.pt: not a readable PyTorch checkpoint"):
        load_network(corrupt)
    official = tmp_path / "snapshot_7.pth.tar"
    torch.save({"epoch": 7, "network": {}}, official)
    with pytest.raises(CheckpointError, match="convert-official"):
        load_network(official)


def test_batchnorm_folding_is_exact():
    from i2lmesh.nets.fast import fold_batchnorm, optimise_for_inference

    net = _net(_tiny(param_regressor=True, param_num_rotations=3, param_shape_dim=4))
    # Non-trivial BN statistics: a few training-mode passes.
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(4, 3, 64, 64))
    net.eval()
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for m in folded.modules())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ref, out = net(x), optimise_for_inference(net)(x.contiguous(memory_format=torch.channels_last))
    for name in ("joints_hm", "vertices_hm", "joints_spread", "vertices_spread", "param_shape"):
        assert torch.allclose(getattr(ref, name), getattr(out, name), atol=1e-4), name
    # The original network is untouched (still has its BN layers).
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())

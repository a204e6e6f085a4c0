"""The paper's ablation variants (targets, marginalisation, cascade): analytic cases, round trips, and learning."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from toy_data import HM, J, V, ToyDataset, toy_network  # noqa: E402

from i2lmesh import get_preset  # noqa: E402
from i2lmesh.data.dataset import collate  # noqa: E402
from i2lmesh.engine.objective import forward_network, network_losses  # noqa: E402
from i2lmesh.nets.factory import build_network, load_network, save_network  # noqa: E402
from i2lmesh.geometry.rotations import matrix_to_rot6d, rot6d_to_matrix  # noqa: E402
from i2lmesh.nets.heads import PixelHead, soft_argmax_2d  # noqa: E402
from i2lmesh.nets.lixel import LixelHead, rescale_bins  # noqa: E402

# MeshNet alone, as the paper's ablations (Tables 1, 2, 8, 9, 10), plus the cascades of Table 3.
VARIANTS = {
    "lixel": dict(cascade="meshnet"),
    "xyz-fc": dict(cascade="meshnet", target="xyz-fc", fc_hidden=64),
    "lixel-fc": dict(cascade="meshnet", target="lixel-fc"),
    "voxel-8": dict(cascade="meshnet", target="voxel", xy_bins=8, depth_bins=8),
    "pixel-lixel-8": dict(cascade="meshnet", target="pixel-lixel", xy_bins=8, depth_bins=8),
    "2.5d-16": dict(cascade="meshnet", target="2.5d"),
    "lixel-4": dict(cascade="meshnet", xy_bins=4, depth_bins=4),
    "max": dict(cascade="meshnet", marginalisation="max"),
    "weighted": dict(cascade="meshnet", marginalisation="weighted"),
    "early": dict(cascade="meshnet", early_marginalisation=True),
    "posenet-meshnet": dict(),
    "gt-pose": dict(cascade="gt-pose"),
}


def _batch(n: int = 8):
    data = ToyDataset(n, seed=5)
    return collate([data[i] for i in range(n)])


@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_few_steps_reduce_the_loss(name):
    torch.set_num_threads(2)
    net = toy_network(seed=1, **VARIANTS[name])
    net.train()
    images, targets, _ = _batch(4)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        out = forward_network(net, net, images, targets)
        terms = network_losses(net, out, targets)
        assert ("posenet_pose" in terms) == net.has_posenet
        loss = sum(terms.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert out.vertices_hm.shape == (4, V, 3) and out.mesh_joints_hm.shape == (4, J, 3)
    # Heads start flat (weights ~ N(0, 0.001)), so the first steps move slowly: a steady few-percent drop.
    assert losses[-1] < 0.985 * losses[0] and losses[-1] < min(losses[:3]), losses


def test_coordinates_come_back_on_the_lixel_grid():
    # A coarse bin covers `factor` fine bins: bin 0 of a 4x coarser grid is centred at fine 1.5.
    coords, spreads = rescale_bins(torch.tensor([0.0, 1.0, 7.0]), torch.tensor([1.0, 1.0, 1.0]), 4)
    assert torch.allclose(coords, torch.tensor([1.5, 5.5, 29.5])) and torch.allclose(spreads, torch.full((3,), 4.0))
    # A uniform coarse heatmap lands in the middle of the fine grid, whatever the resolution.
    head = LixelHead(8, 3, 4, channels=8, num_upsample=1)
    for p in (head.conv_x, head.conv_y):
        torch.nn.init.zeros_(p.weight)
        torch.nn.init.zeros_(p.bias)
    head.eval()
    out = head(torch.randn(2, 8, 2, 2))
    assert torch.allclose(out.coords[..., :2], torch.full((2, 3, 2), (16 - 1) / 2))


def test_soft_argmax_2d_of_a_one_hot_heatmap_is_its_position():
    logits = torch.full((1, 2, 6, 9), -1e4)
    logits[0, 0, 4, 7] = 0.0  # y = 4, x = 7
    logits[0, 1, 0, 2] = 0.0
    coords, spreads, prob = soft_argmax_2d(logits)
    assert torch.allclose(coords[0], torch.tensor([[7.0, 4.0], [2.0, 0.0]]))
    assert spreads.max() < 1e-3 and torch.allclose(prob.sum(dim=(2, 3)), torch.ones(1, 2))


def test_2_5d_depth_is_the_depth_map_under_the_heatmap():
    head = PixelHead(8, 2, 16, channels=8, num_upsample=1, depth_map=True).eval()
    torch.nn.init.zeros_(head.conv.weight)
    with torch.no_grad():
        head.conv.bias.copy_(torch.tensor([0.0, 0.0, 0.25, -0.5]))  # heatmaps flat; depth maps constant
    out = head(torch.randn(3, 8, 2, 2))
    # z = (depth + 0.5) (D - 1); a flat 4x4 heatmap, 4x coarser than the 16-bin grid, centres at 7.5.
    assert torch.allclose(out.coords[0, :, 2], torch.tensor([0.75 * 15, 0.0]))
    assert torch.allclose(out.coords[..., :2], torch.full((3, 2, 2), 7.5))
    assert torch.isnan(out.spreads[..., 2]).all() and not torch.isnan(out.spreads[..., :2]).any()


def test_voxel_memory_grows_as_d_cubed():
    # The voxel head's heatmap has V * D^3 values: from D = 4 to D = 8 the logits grow 8x.
    sizes = {}
    for d in (4, 8):
        net = toy_network(cascade="meshnet", target="voxel", xy_bins=d, depth_bins=d).eval()
        feature = torch.randn(1, 512, 2, 2)
        up = net.mesh_net.upsample(feature)
        sizes[d] = net.mesh_net.conv(up).numel()
    assert sizes[8] == 8 * sizes[4] == V * 8 ** 3


def test_gt_pose_cascade_uses_the_given_pose_and_needs_it():
    net = toy_network(cascade="gt-pose").eval()
    images, targets, _ = _batch(2)
    a = net(images, pose_input_hm=targets.joints_hm).vertices_hm
    b = net(images, pose_input_hm=targets.joints_hm + 3.0).vertices_hm
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="gt-pose"):
        net(images)


def test_meshnet_alone_has_no_posenet_and_reports_mesh_joints():
    net = toy_network(cascade="meshnet").eval()
    assert net.pose_backbone is None and net.mesh_backbone.with_stem
    out = net(_batch(2)[0])
    assert torch.equal(out.joints_hm, out.mesh_joints_hm)


@pytest.mark.parametrize("name", ["voxel-8", "weighted", "early", "2.5d-16"])
def test_variant_checkpoints_round_trip(tmp_path, name):
    net = toy_network(seed=2, **VARIANTS[name]).eval()
    images = _batch(2)[0]
    save_network(net, tmp_path / "net.pt")
    loaded, config = load_network(tmp_path / "net.pt")
    assert config == net.config
    assert torch.equal(loaded(images).vertices_hm, net(images).vertices_hm)


@pytest.mark.parametrize("name", [n for n in VARIANTS if n != "gt-pose"] + ["param-regressor"])
def test_batchnorm_folding_is_exact_in_float64(name):
    # torch.nn.utils.fusion's folding of every BatchNorm (conv, transposed conv 1D/2D, Conv1d, Linear), with
    # random BN statistics and affine parameters: same outputs in float64 to rounding, no BatchNorm left.
    from i2lmesh.nets.fast import fold_batchnorm

    kw = dict(param_regressor=True, param_num_rotations=3, param_shape_dim=4) if name == "param-regressor" \
        else VARIANTS[name]
    net = toy_network(seed=1, **kw).double()
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.weight.data = torch.rand(m.weight.shape, generator=g, dtype=torch.float64) + 0.5
            m.bias.data = torch.randn(m.bias.shape, generator=g, dtype=torch.float64)
            m.running_mean = torch.randn(m.running_mean.shape, generator=g, dtype=torch.float64)
            m.running_var = torch.rand(m.running_var.shape, generator=g, dtype=torch.float64) + 0.5
    net.eval()
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original keeps its BNs
    images = torch.rand(2, 3, 64, 64, generator=g, dtype=torch.float64)
    with torch.no_grad():
        ref, out = net(images), folded(images)
    for field in ("joints_hm", "vertices_hm", "joints_spread", "vertices_spread", "param_rotations", "param_shape"):
        a, b = getattr(ref, field), getattr(out, field)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12, equal_nan=True, msg=field)


def test_bad_variant_settings_are_refused():
    with pytest.raises(ValueError, match="target must be one of"):
        get_preset("cpu-small", target="mesh")
    with pytest.raises(ValueError, match="xy_bins"):
        get_preset("cpu-small", xy_bins=12)
    with pytest.raises(ValueError, match="lixel-fc"):
        toy_network(cascade="meshnet", target="lixel-fc", depth_bins=8)


def test_rotation_6d_round_trip():
    angles = torch.randn(5, 3)
    import roma

    rot = roma.rotvec_to_rotmat(angles)
    assert torch.allclose(rot6d_to_matrix(matrix_to_rot6d(rot)), rot, atol=1e-6)


def test_param_target_starts_upright_and_learns(anny_body):
    torch.manual_seed(0)
    cfg = get_preset("cpu-small", cascade="meshnet", target="param", input_size=64, deconv_channels=16,
                     depth_bins=16, fc_hidden=64)
    net = build_network(cfg, anny_body)
    assert net.config.param_num_rotations == anny_body.num_bones and net.config.param_shape_dim == 6
    net.eval()
    out = net(torch.rand(1, 3, 64, 64))
    verts = out.vertices_hm[0]
    head = verts[:, 1].argmin()  # smallest y: the top of the image
    feet = verts[:, 1].argmax()
    assert verts[head, 1] < HM / 2 < verts[feet, 1]  # upright: head above, feet below the middle
    root = out.mesh_joints_hm[0, net.topology["root_index"]]
    assert abs(root[2].item() - 16 / 2) < 1e-4  # the root sits in the middle depth bin
    # A few steps towards a fixed posed mesh lower the vertex loss.
    params = anny_body.sample_params(2, torch.Generator().manual_seed(3))
    import roma

    from i2lmesh.bodymodels.anny import upright_root_rotvec

    pose = params["pose"].clone()
    pose[:, 0] = upright_root_rotvec(torch.zeros(2))
    target = anny_body(roma.rotvec_to_rotmat(pose), params["shape"]).vertices_m
    root_m = anny_body.regress_joints(target)[:, 0]
    target_hm = net.mesh_net.to_bins(target, root_m, torch.tensor([[8.0, 7.5, 7.5]] * 2))
    images = torch.rand(2, 3, 64, 64)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = (net(images).vertices_hm - target_hm).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("cascade", ["posenet-meshnet", "meshnet"])
def test_imagenet_weights_from_a_local_file_fill_every_backbone(tmp_path, cascade):
    import torchvision

    from i2lmesh.engine.checkpoint import load_imagenet_weights

    torch.manual_seed(7)
    state = torchvision.models.resnet18(weights=None).state_dict()  # stands in for the downloaded file
    torch.save(state, tmp_path / "resnet18.pth")
    net = toy_network(cascade=cascade)
    load_imagenet_weights(net, str(tmp_path / "resnet18.pth"))
    assert torch.equal(net.mesh_backbone.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    stem = net.pose_backbone if net.has_posenet else net.mesh_backbone
    assert torch.equal(stem.conv1.weight, state["conv1.weight"])
    with pytest.raises(FileNotFoundError, match="missing.pth: ImageNet weights file not found"):
        load_imagenet_weights(net, str(tmp_path / "missing.pth"))

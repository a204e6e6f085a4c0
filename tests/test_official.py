"""Converting the authors' snapshot_N.pth.tar: key rules, errors, and the same outputs as the authors' computation.

Snapshots are written here with random weights under the exact key names and shapes of the authors' state dicts
(shared/reference/official_state_dict_{body,hand}.txt). The expected outputs come from ``reference_forward``: an
independent functional re-statement of the reference forward (official_spec.md 1.1-1.5) that reads the raw
official state dict by its own key names, with torchvision ResNets for the backbones, the 3D Gaussian
materialised and the joint regressor rebuilt from the SMPL/MANO buffers as the reference builds it.
"""
from __future__ import annotations

import math
import re
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from i2lmesh import CheckpointError, load_network
from i2lmesh.export.official import (BODY_MODEL, DROP, convert_official_file, convert_official_snapshot,
                                     official_key_to_ours, our_key_to_official)
from i2lmesh.nets import I2LMeshNet

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
if not REFERENCE.is_dir():  # a checkout elsewhere: the listings live beside the repo in /work/shared
    REFERENCE = Path("/work/shared/reference")
SIZES = {"body": (29, 6890), "hand": (21, 778)}
HEATMAP_GAIN = {"conv_x": 60.0, "conv_y": 60.0, "conv_z_2": 12.0}


def read_listing(kind: str) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, dtype) of every entry of the authors' state-dict listing, in file order."""
    path = REFERENCE / f"official_state_dict_{kind}.txt"
    if not path.is_file():
        pytest.skip(f"official state-dict listing not found: {path}")
    entries = []
    for line in path.read_text().splitlines():
        match = re.match(r"(module\.\S+) \(([\d, ]*)\) (\w+)", line)
        if match:
            shape = tuple(int(s) for s in match.group(2).replace(" ", "").split(",") if s)
            entries.append((match.group(1), shape, match.group(3)))
    return entries


def _head_shape(key: str, shape: tuple[int, ...], channels: int, depth_bins: int, joints: int):
    """The listing's shape for a network with ``channels`` upsampling channels and ``depth_bins`` z bins."""
    if key.startswith(("module.pose_net.", "module.mesh_net.")):
        return tuple(channels if s == 256 else channels * depth_bins if s == 256 * 64 else s for s in shape)
    if key == "module.pose2feat.conv.0.weight":
        return (shape[0], 64 + joints * depth_bins) + shape[2:]
    return shape


def make_snapshot(kind: str, channels: int = 256, depth_bins: int = 64, seed: int = 0) -> dict:
    """A snapshot dict as the authors' train.py writes it, random weights of the listing's names and shapes.

    Weights are scaled (He-like, damped residual branches, BN statistics near 1) so that activations stay O(1)
    through both ResNets and the heatmaps are neither flat nor one-hot: a meaningful comparison.
    """
    joints, vertices = SIZES[kind]
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape, dtype in read_listing(kind):
        shape = _head_shape(key, shape, channels, depth_bins, joints)
        leaf = key.rsplit(".", 1)[1]
        if leaf == "num_batches_tracked":
            value = torch.tensor(1000, dtype=torch.int64)
        elif leaf == "th_faces":
            value = torch.randint(0, vertices, shape, generator=g)
        elif leaf.startswith("th_"):
            value = torch.rand(shape, generator=g)
            if leaf == "th_J_regressor":
                value = value / value.sum(1, keepdim=True)
        elif leaf == "running_var":
            value = 0.75 + 0.5 * torch.rand(shape, generator=g)
        elif leaf == "running_mean":
            value = 0.1 * torch.randn(shape, generator=g)
        elif leaf == "bias":
            value = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:  # BatchNorm weight; residual branches damped so 16 blocks do not blow up
            damped = re.search(r"\.(bn3|bn2|downsample\.1)\.weight$", key) and "backbone" in key
            value = (0.2 if damped else 1.0) * (0.5 + 0.5 * torch.rand(shape, generator=g))
        else:
            fan_in = math.prod(shape[1:]) if ".deconv." not in key else shape[0] * 4
            value = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
            # Peaked heatmaps whose peaks differ across points: random features vary little across x and y.
            value *= HEATMAP_GAIN.get(key.split(".")[-3], 1.0)
        state[key] = value.to(getattr(torch, dtype)) if value.is_floating_point() else value
    optimizer = {"state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros(3), "exp_avg_sq": torch.zeros(3)}},
                 "param_groups": [{"lr": 1e-6, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                                   "amsgrad": False, "params": [0]}]}
    return {"epoch": 12, "network": state, "optimizer": optimizer}


# ---------------------------------------------------------------------------------------------------------------
# The authors' computation, written functionally from their key names
# ---------------------------------------------------------------------------------------------------------------

def _resnet50(sd: dict, prefix: str) -> torchvision.models.ResNet:
    net = torchvision.models.resnet50(weights=None)
    own = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    missing, unexpected = net.load_state_dict(own, strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected, (missing, unexpected)
    return net.eval()


def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                        training=False, eps=1e-5)


def _lixel_net(sd: dict, p: str, feat: torch.Tensor, depth_bins: int) -> torch.Tensor:
    """PoseNet / MeshNet (module.py:8-46): deconv x3, marginalise, 1x1 conv1d, soft-argmax -> (B,N,3) bins."""
    x = feat
    for conv, bn in ((0, 1), (3, 4), (6, 7)):
        x = F.conv_transpose2d(x, sd[f"{p}.deconv.{conv}.weight"], stride=2, padding=1)
        x = F.relu(_bn(x, sd, f"{p}.deconv.{bn}"))
    hm_x = F.conv1d(x.mean(2), sd[f"{p}.conv_x.0.weight"], sd[f"{p}.conv_x.0.bias"])
    hm_y = F.conv1d(x.mean(3), sd[f"{p}.conv_y.0.weight"], sd[f"{p}.conv_y.0.bias"])
    z = F.conv1d(feat.mean((2, 3))[:, :, None], sd[f"{p}.conv_z_1.0.weight"], sd[f"{p}.conv_z_1.0.bias"])
    z = F.relu(_bn(z, sd, f"{p}.conv_z_1.1"))
    channels = sd[f"{p}.conv_x.0.weight"].shape[1]
    hm_z = F.conv1d(z.view(-1, channels, depth_bins), sd[f"{p}.conv_z_2.0.weight"], sd[f"{p}.conv_z_2.0.bias"])

    def soft_argmax(hm):
        return (F.softmax(hm, dim=2) * torch.arange(hm.shape[2], dtype=hm.dtype)).sum(2)

    return torch.stack([soft_argmax(hm_x), soft_argmax(hm_y), soft_argmax(hm_z)], dim=2)


def reference_regressor(sd: dict, kind: str) -> torch.Tensor:
    """common/utils/smpl.py:16-27 and mano.py:25-32: model regressor + one-hot rows (+ MANO's reorder)."""
    base = sd["module.human_model_layer.th_J_regressor"]
    extra = [331, 2802, 6262, 3489, 3990] if kind == "body" else [745, 317, 445, 556, 673]
    regressor = torch.cat([base, F.one_hot(torch.tensor(extra), base.shape[1]).to(base.dtype)])
    if kind == "hand":
        regressor = regressor[[0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]]
    return regressor


@torch.no_grad()
def reference_forward(snapshot: dict, image: torch.Tensor, kind: str, sigma: float = 2.5):
    """model.py:53-75 in test mode: (joint_coord_img, mesh_coord_img, joint_img_from_mesh), heatmap units."""
    sd = {k: v.float() if v.is_floating_point() else v for k, v in snapshot["network"].items()}
    depth_bins = sd["module.pose_net.conv_z_1.0.weight"].shape[0] // sd["module.pose_net.conv_x.0.weight"].shape[1]
    pose_backbone = _resnet50(sd, "module.pose_backbone.")
    shared = pose_backbone.maxpool(pose_backbone.relu(pose_backbone.bn1(pose_backbone.conv1(image))))
    pose_feat = pose_backbone.layer4(pose_backbone.layer3(pose_backbone.layer2(pose_backbone.layer1(shared))))
    joints = _lixel_net(sd, "module.pose_net", pose_feat, depth_bins)
    # make_gaussian_heatmap: meshgrid(z, y, x), exp(-d^2 / (2 sigma^2)), (B, J, D, H, W) viewed as J*D channels
    size = shared.shape[2]
    zz, yy, xx = torch.meshgrid(torch.arange(depth_bins).float(), torch.arange(size).float(),
                                torch.arange(size).float(), indexing="ij")
    jx, jy, jz = (joints[:, :, i, None, None, None] for i in range(3))
    heatmap = torch.exp(-((xx - jx) ** 2 + (yy - jy) ** 2 + (zz - jz) ** 2) / (2 * sigma ** 2))
    heatmap = heatmap.view(image.shape[0], -1, size, size)
    feat = F.conv2d(torch.cat([shared, heatmap], 1), sd["module.pose2feat.conv.0.weight"],
                    sd["module.pose2feat.conv.0.bias"], padding=1)
    feat = F.relu(_bn(feat, sd, "module.pose2feat.conv.1"))
    mesh_backbone = _resnet50(sd, "module.mesh_backbone.")  # skip_early=True: its conv1/bn1 are never used
    mesh_feat = mesh_backbone.layer4(mesh_backbone.layer3(mesh_backbone.layer2(mesh_backbone.layer1(feat))))
    mesh = _lixel_net(sd, "module.mesh_net", mesh_feat, depth_bins)
    return joints, mesh, torch.matmul(reference_regressor(sd, kind), mesh)


# ---------------------------------------------------------------------------------------------------------------
# Fixtures and tests
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_snapshots(tmp_path_factory):
    """Body and hand snapshots with the listings' key names, 16 upsampling channels and D = 8 (cheap)."""
    folder = tmp_path_factory.mktemp("official")
    files = {}
    for kind in ("body", "hand"):
        data = make_snapshot(kind, channels=16, depth_bins=8, seed=1 if kind == "body" else 2)
        files[kind] = (folder / f"snapshot_{kind}.pth.tar", data)
        torch.save(data, files[kind][0])
    return files


@pytest.mark.parametrize("kind", ["body", "hand"])
def test_rules_cover_the_listing_exactly(kind):
    """Every official key has one rule; the mapped names are exactly our network's weights; rules invert."""
    joints, vertices = SIZES[kind]
    entries = read_listing(kind)
    assert len(entries) == {"body": 730, "hand": 732}[kind]
    mapped, dropped, body_model = {}, [], []
    for key, _, _ in entries:
        target = official_key_to_ours(key[len("module."):])
        assert target is not None, f"no rule for {key}"
        if target == DROP:
            dropped.append(key)
        elif target == BODY_MODEL:
            body_model.append(key)
        else:
            mapped[target] = key
    assert sorted(dropped) == sorted(f"module.mesh_backbone.{n}" for n in (
        "conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"))
    assert len(body_model) == {"body": 7, "hand": 9}[kind]
    from i2lmesh import get_preset
    cfg = get_preset("paper-body", num_joints=joints, num_vertices=vertices, param_regressor=True,
                     param_num_rotations=24 if kind == "body" else 16)
    with torch.device("meta"):
        ours = I2LMeshNet(cfg, torch.zeros(joints, vertices), torch.zeros(1, 3, dtype=torch.long)).state_dict()
    assert set(mapped) == set(ours) - {"joint_regressor", "faces"}
    assert all("module." + our_key_to_official(k) == v for k, v in mapped.items())
    listing_shapes = {k: s for k, s, _ in entries}
    assert all(tuple(ours[k].shape) == listing_shapes[v] for k, v in mapped.items())


def _compare(net, snapshot, kind, image):
    joints, mesh, mesh_joints = reference_forward(snapshot, image, kind)
    with torch.no_grad():
        out = net(image)
    diffs = {"joints_hm": (out.joints_hm - joints).abs().max().item(),
             "vertices_hm": (out.vertices_hm - mesh).abs().max().item(),
             "mesh_joints_hm": (out.mesh_joints_hm - mesh_joints).abs().max().item()}
    # Not degenerate: the heatmaps put points all over the grid, not on one bin.
    assert out.vertices_hm.std(dim=1).min() > 0.5 and joints.std(dim=1).min() > 0.5, \
        "random weights gave collapsed outputs"
    return diffs


def test_convert_real_body_listing_matches_reference(tmp_path):
    """The full-size body snapshot (730 keys, listing shapes, 142M parameters): convert, save, load, compare."""
    start = time.perf_counter()
    snapshot = make_snapshot("body", seed=0)
    path = tmp_path / "snapshot_12.pth.tar"
    torch.save(snapshot, path)
    convert_official_file(path, tmp_path / "body.pt", kind="body")
    net, cfg = load_network(tmp_path / "body.pt")
    assert (cfg.backbone_depth, cfg.depth_bins, cfg.deconv_channels, cfg.num_joints, cfg.num_vertices) == \
        (50, 64, 256, 29, 6890)
    assert cfg.pixel_mean == (0.0, 0.0, 0.0) and cfg.pixel_std == (1.0, 1.0, 1.0) and cfg.bbox_3d_size_m == 2.0
    assert cfg.input_size == 256 and cfg.param_regressor and cfg.param_num_rotations == 24
    assert torch.equal(net.faces, snapshot["network"]["module.human_model_layer.th_faces"])
    assert net.topology["joint_names"][24] == "Nose"
    image = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    diffs = _compare(net, snapshot, "body", image)
    print(f"full body parity (bins): {diffs}; {time.perf_counter() - start:.1f} s")
    assert max(diffs.values()) < 1e-3, diffs


@pytest.mark.parametrize("kind", ["body", "hand"])
def test_convert_matches_reference(small_snapshots, kind):
    path, snapshot = small_snapshots[kind]
    net = convert_official_snapshot(path, kind=kind, input_size=64)
    joints, vertices = SIZES[kind]
    assert net.config.kind == kind and net.config.depth_bins == 8 and net.config.deconv_channels == 16
    assert net.config.bbox_3d_size_m == {"body": 2.0, "hand": 0.3}[kind]
    assert net.joint_regressor.shape == (joints, vertices)
    assert torch.equal(net.joint_regressor, reference_regressor(snapshot["network"], kind))
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    diffs = _compare(net, snapshot, kind, image)
    print(f"{kind} parity (bins): {diffs}")
    assert max(diffs.values()) < 1e-3, diffs


def _write(path, snapshot, **changes):
    network = dict(snapshot["network"])
    for key, value in changes.items():
        if value is None:
            network.pop(key)
        else:
            network[key] = value
    torch.save({**snapshot, "network": network}, path)
    return path


def test_unknown_and_missing_keys_are_listed(small_snapshots, tmp_path):
    _, snapshot = small_snapshots["body"]
    path = _write(tmp_path / "s.pth.tar", snapshot, **{
        "module.mesh_net.conv_z_2.0.bias": None, "module.pose_net.conv_y.0.weight": None,
        "module.pose_net.extra.weight": torch.zeros(3), "module.pose_backbone.fc.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError) as info:
        convert_official_snapshot(path, "body", input_size=64)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    unknown, missing = message.split(": not a complete I2L-MeshNet body snapshot: ")[1].split("; ")
    assert unknown.startswith("2 unknown key(s)") and missing.startswith("2 missing key(s)")
    for key in ("module.pose_net.extra.weight", "module.pose_backbone.fc.weight"):
        assert key in unknown
    for key in ("module.mesh_net.conv_z_2.0.bias", "module.pose_net.conv_y.0.weight"):
        assert key in missing
    path = _write(tmp_path / "m.pth.tar", snapshot, **{
        "module.mesh_net.conv_z_2.0.bias": None, "module.pose_net.conv_y.0.weight": None,
        "module.human_model_layer.th_faces": None})
    with pytest.raises(CheckpointError, match="3 missing key") as info:
        convert_official_snapshot(path, "body", input_size=64)
    for key in ("module.mesh_net.conv_z_2.0.bias", "module.pose_net.conv_y.0.weight",
                "module.human_model_layer.th_faces"):
        assert key in str(info.value)
    # A layer this ResNet-50 does not have matches a rule but is still unknown.
    path = _write(tmp_path / "x.pth.tar", snapshot, **{"module.pose_backbone.layer4.7.conv1.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"unknown key\(s\): module.pose_backbone.layer4.7.conv1.weight"):
        convert_official_snapshot(path, "body", input_size=64)


def test_misshapen_weight_is_listed(small_snapshots, tmp_path):
    _, snapshot = small_snapshots["hand"]
    path = _write(tmp_path / "s.pth.tar", snapshot, **{"module.mesh_net.conv_x.0.bias": torch.zeros(5)})
    with pytest.raises(CheckpointError, match=r"module.mesh_net.conv_x.0.bias \(5,\) \(expected \(778,\)\)"):
        convert_official_snapshot(path, "hand", input_size=64)


def test_wrong_kind_and_non_snapshot_files(small_snapshots, tmp_path):
    body_path, _ = small_snapshots["body"]
    with pytest.raises(CheckpointError, match=r"body snapshot \(6890 vertices, 29 joints\), not a hand one; "
                                              r"use --kind body") as info:
        convert_official_snapshot(body_path, "hand")
    assert str(body_path) in str(info.value)
    hand_path, _ = small_snapshots["hand"]
    with pytest.raises(CheckpointError, match="use --kind hand"):
        convert_official_snapshot(hand_path, "body")

    text = tmp_path / "notes.pth.tar"
    text.write_text("not a checkpoint")
    other = tmp_path / "other.pth.tar"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, other)
    for bad in (text, other, tmp_path / "absent.pth.tar"):
        with pytest.raises(CheckpointError) as info:
            convert_official_snapshot(bad, "body")
        assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_cli_convert_then_load(small_snapshots, tmp_path, capsys):
    from i2lmesh.cli import main

    path, snapshot = small_snapshots["hand"]
    out = tmp_path / "hand.pt"
    assert main(["convert-official", str(path), "--kind", "hand", "--out", str(out), "--input-size", "64"]) == 0
    net, cfg = load_network(out)
    assert cfg.kind == "hand" and cfg.body_model == "mano" and cfg.num_vertices == 778
    assert torch.load(out, weights_only=False)["source"]["official_snapshot"]["epoch"] == 12
    assert main(["convert-official", str(path), "--kind", "body", "--out", str(tmp_path / "b.pt")]) == 2
    err = capsys.readouterr().err
    assert "use --kind hand" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "b.pt").exists()


def test_legacy_serialisation_and_untrusted_objects(tmp_path):
    """Pre-1.6 (non-zip) files load without mmap; pickled objects need --trust-file and say so."""
    import argparse

    from i2lmesh.export.official import read_official_snapshot

    legacy = tmp_path / "legacy.pth.tar"
    torch.save({"epoch": 3, "network": {"module.pose_net.conv_x.0.bias": torch.ones(2)}}, legacy,
               _use_new_zipfile_serialization=False)
    snapshot = read_official_snapshot(legacy)
    assert snapshot.epoch == 3 and list(snapshot.state) == ["pose_net.conv_x.0.bias"]
    pickled = tmp_path / "pickled.pth.tar"
    torch.save({"epoch": 3, "network": {"module.w": torch.ones(1)}, "args": argparse.Namespace(lr=1)}, pickled)
    with pytest.raises(CheckpointError, match="pass --trust-file") as info:
        read_official_snapshot(pickled)
    assert str(pickled) in str(info.value) and "\n" not in str(info.value)
    assert read_official_snapshot(pickled, trust_file=True).state["w"].item() == 1.0

"""ONNX export: ONNX Runtime gives the PyTorch network's outputs (tiny config, batch 1 and 3, dynamic batch)."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnx", reason="onnx is not installed (pip install i2lmesh[onnx])")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install i2lmesh[onnx])")

from i2lmesh import get_preset, save_network  # noqa: E402
from i2lmesh.export.onnx import OUTPUT_NAMES, OnnxNetwork, export_onnx  # noqa: E402
from i2lmesh.nets import I2LMeshNet  # noqa: E402

TOLERANCE_BINS = 1e-3


def tiny_network(param_regressor: bool = False, seed: int = 0) -> I2LMeshNet:
    """ResNet-18 at 64 x 64, D = 8, 16 upsampling channels, 5 joints, 40 vertices; BN statistics randomised."""
    torch.manual_seed(seed)
    cfg = get_preset("cpu-small", input_size=64, depth_bins=8, deconv_channels=16, num_joints=5, num_vertices=40,
                     param_regressor=param_regressor, param_num_rotations=4, param_shape_dim=3)
    net = I2LMeshNet(cfg, torch.softmax(torch.randn(5, 40), 1), torch.randint(0, 40, (60, 3)))
    for module in net.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
    for head in (net.pose_net, net.mesh_net):  # peaked heatmaps, so differences would show
        for conv in (head.conv_x, head.conv_y, head.conv_z_2):
            conv.weight.data.mul_(20)
    return net.eval()


def _max_diffs(ours, theirs, names):
    return {name: (getattr(ours, name) - getattr(theirs, name)).abs().max().item() for name in names}


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_onnxruntime_matches_pytorch(tmp_path, exporter):
    net = tiny_network(param_regressor=exporter == "torchscript")
    path = export_onnx(net, tmp_path / "tiny.onnx", exporter=exporter)
    runner = OnnxNetwork(path, num_threads=1)
    assert runner.config == net.config and torch.equal(runner.faces, net.faces)
    names = OUTPUT_NAMES + (("param_rotations", "param_shape") if net.param_regressor is not None else ())
    assert runner.output_names == list(names)
    for batch in (1, 3):
        images = torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = net(images)
        got = runner(images)
        assert got.vertices_hm.shape == (batch, 40, 3)
        diffs = _max_diffs(got, expected, names)
        print(f"{exporter} batch {batch}: max |onnx - torch| {diffs}")
        assert max(diffs.values()) < TOLERANCE_BINS, diffs
    assert runner(images.numpy()).joints_hm.shape == (3, 5, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.onnx"]  # no temporary files left


def test_fixed_batch_and_unfolded_export(tmp_path):
    net = tiny_network()
    path = export_onnx(net, tmp_path / "fixed.onnx", batch_dynamic=False, optimise=False, batch_size=2)
    runner = OnnxNetwork(path)
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = net(images)
    assert max(_max_diffs(runner(images), expected, OUTPUT_NAMES).values()) < TOLERANCE_BINS
    with pytest.raises(Exception):
        runner(torch.rand(3, 3, 64, 64))


def test_cli_export_onnx(tmp_path, capsys):
    from i2lmesh.cli import main

    net = tiny_network()
    save_network(net, tmp_path / "tiny.pt")
    out = tmp_path / "tiny.onnx"
    assert main(["export-onnx", "--checkpoint", str(tmp_path / "tiny.pt"), "--out", str(out)]) == 0
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = net(images)
    assert max(_max_diffs(OnnxNetwork(out)(images), expected, OUTPUT_NAMES).values()) < TOLERANCE_BINS
    assert main(["export-onnx", "--checkpoint", str(tmp_path / "absent.pt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "absent.pt" in err[0]


def test_not_an_export(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.onnx"):
        OnnxNetwork(bad)

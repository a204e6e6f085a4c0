"""Loss tests: zero at ground truth, analytic values on hand-made cases, masks."""
from __future__ import annotations

import math

import pytest
import torch

from i2lmesh.losses import LossTargets, coord_l1, edge_length_loss, i2l_losses, normal_loss

TRI = torch.tensor([[0, 1, 2]])
GT_TRI = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])


def _targets(joints, vertices, has_z=1.0):
    b, j, _ = joints.shape
    v = vertices.shape[1]
    return LossTargets(joints, torch.ones(b, j), torch.full((b,), has_z), vertices, torch.ones(b, v),
                       joints.clone(), torch.ones(b, j))


def test_all_losses_zero_at_ground_truth():
    torch.manual_seed(0)
    verts = torch.rand(2, 30, 3) * 60
    faces = torch.randint(0, 30, (50, 3))
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    reg = torch.softmax(torch.randn(5, 30), dim=1)
    joints = reg @ verts
    losses = i2l_losses(joints, verts, reg @ verts, faces, _targets(joints, verts), fit_orig_split=True)
    assert set(losses) == {"posenet_pose", "meshnet_pose", "vertex", "normal", "edge", "posenet_pose_fit",
                           "meshnet_pose_fit"}
    for name, value in losses.items():
        assert value.item() == pytest.approx(0.0, abs=1e-5), name


def test_coord_l1_analytic_and_masks():
    target = torch.zeros(2, 2, 3)
    pred = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]])
    valid = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    has_z = torch.tensor([1.0, 0.0])
    loss = coord_l1(pred, target, valid, has_z)
    expected = torch.tensor([[[1.0, 2.0, 3.0], [0, 0, 0]], [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]])
    assert torch.equal(loss, expected)
    # The reference's reduction: mean over all elements, masked zeros included.
    assert loss.mean().item() == pytest.approx(10.0 / 12.0)


def test_normal_loss_hand_made_triangle():
    pred = GT_TRI.clone()
    pred[0, 2] = torch.tensor([0.0, 1.0, 1.0])  # lift the third corner out of the ground-truth plane z = 0
    loss = normal_loss(pred, GT_TRI, TRI, torch.ones(1, 3))
    # Unit edges vs normal (0,0,1): e01 = (1,0,0) -> 0; e02 = (0,1,1)/sqrt2 -> 1/sqrt2; e12 = (-1,1,1)/sqrt3.
    assert torch.allclose(loss, torch.tensor([[0.0, 1 / math.sqrt(2), 1 / math.sqrt(3)]]), atol=1e-6)
    # In-plane motion (any shape in the plane z = 0) costs nothing.
    flat = GT_TRI * torch.tensor([3.0, 0.5, 1.0])
    assert normal_loss(flat, GT_TRI, TRI, torch.ones(1, 3)).abs().max() < 1e-6
    # A masked vertex masks its face.
    assert normal_loss(pred, GT_TRI, TRI, torch.tensor([[1.0, 1.0, 0.0]])).abs().max() == 0


def test_edge_loss_hand_made_triangle():
    pred = GT_TRI.clone()
    pred[0, 2] = torch.tensor([0.0, 2.0, 0.0])
    loss = edge_length_loss(pred, GT_TRI, TRI, torch.ones(1, 3))
    assert torch.allclose(loss, torch.tensor([[0.0, 1.0, math.sqrt(5) - math.sqrt(2)]]), atol=1e-6)
    # Rigid motion keeps every edge length.
    rot = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    moved = GT_TRI @ rot.T + 5.0
    assert edge_length_loss(moved, GT_TRI, TRI, torch.ones(1, 3)).abs().max() < 1e-6


def test_total_loss_weights_normal_by_a_tenth_and_masks_missing_mesh():
    pred = GT_TRI.clone()
    pred[0, 2] = torch.tensor([0.0, 1.0, 1.0])
    joints = GT_TRI[:, :1]
    reg = torch.tensor([[1.0, 0.0, 0.0]])
    targets = _targets(joints, GT_TRI)
    losses = i2l_losses(joints, pred, reg @ pred, TRI, targets)
    raw = normal_loss(pred, GT_TRI, TRI, torch.ones(1, 3)).mean()
    assert losses["normal"].item() == pytest.approx(0.1 * raw.item())
    # Vertex L1: one vertex off by 1 in z over 3 vertices x 3 axes.
    assert losses["vertex"].item() == pytest.approx(1.0 / 9.0)
    targets.vertices_valid = torch.zeros(1, 3)
    masked = i2l_losses(joints, pred, reg @ pred, TRI, targets)
    assert masked["vertex"] == 0 and masked["normal"] == 0 and masked["edge"] == 0


def test_gradients_flow_and_point_the_right_way():
    target = torch.zeros(1, 4, 3)
    pred = torch.full((1, 4, 3), 2.0, requires_grad=True)
    coord_l1(pred, target, torch.ones(1, 4)).mean().backward()
    assert torch.all(pred.grad > 0)

"""Geometry: box, crop and its inverse, camera round trips, Procrustes, rotations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from i2lmesh.geometry import (apply_affine, axis_angle_to_matrix, camera_to_heatmap, compose_affine, crop_transforms,
                              decode_to_camera, default_intrinsics, flip_axis_angle_pose, flip_transform,
                              intrinsics, invert_affine, matrix_to_axis_angle, procrustes_align, process_bbox,
                              project, back_project, similarity_transform, warp_image)


# ------------------------------------------------------------------------------------------------ boxes

def test_process_bbox_hand_made():
    # Tall box inside a 640x480 image: 1 px narrower, then squared on its centre, then x1.25.
    box = process_bbox([100, 50, 41, 101], 640, 480)
    w, h = 40.0, 100.0
    cx, cy = 100 + w / 2, 50 + h / 2
    side = 100 * 1.25
    np.testing.assert_allclose(box, [cx - side / 2, cy - side / 2, side, side])
    # Box over the left and bottom borders: as the reference, x2 = x1 + w - 1 from the *clamped* x1 (the box
    # slides right rather than being cut), and y2 is clamped to H - 1.
    box = process_bbox([-20, 400, 200, 200], 640, 480)
    x1, y1, x2, y2 = 0, 400, 199, 479
    side = 199 * 1.25
    np.testing.assert_allclose(box, [(x1 + x2) / 2 - side / 2, (y1 + y2) / 2 - side / 2, side, side])
    # Other aspect ratio: w/h = 0.75.
    box = process_bbox([0, 0, 101, 101], 640, 480, aspect_ratio=0.75)
    np.testing.assert_allclose(box[2] / box[3], 0.75)


@pytest.mark.parametrize("bad", [[10, 10, 0, 50], [10, 10, -5, 50], [700, 10, 20, 20], [10, 10, 1, 1],
                                 [np.nan, 0, 10, 10], [0, 0, np.inf, 10]])
def test_process_bbox_rejects_unusable(bad):
    assert process_bbox(bad, 640, 480) is None


# ------------------------------------------------------------------------------------------------ crop

@pytest.mark.parametrize("scale,rot,flip", [(1.0, 0.0, False), (0.8, 37.0, False), (1.22, -55.0, True),
                                            (1.0, 60.0, True)])
def test_crop_then_uncrop_points(scale, rot, flip):
    rng = np.random.default_rng(0)
    img2patch, patch2img = crop_transforms([120.5, 80.25, 150.0, 150.0], 256, scale, rot)
    if flip:
        img2patch = compose_affine(img2patch, flip_transform(640))
        patch2img = invert_affine(img2patch)
    points = rng.uniform(0, 640, (50, 2))
    back = apply_affine(apply_affine(points, img2patch), patch2img)
    assert np.abs(back - points).max() < 1e-3
    # torch path agrees
    back_t = apply_affine(apply_affine(torch.as_tensor(points), torch.as_tensor(img2patch)),
                          torch.as_tensor(patch2img))
    assert (back_t.numpy() - points).__abs__().max() < 1e-3


def test_crop_matches_reference_points_and_rotation_sense():
    box, s = [100.0, 60.0, 80.0, 80.0], 256
    img2patch, _ = crop_transforms(box, s, scale=1.0, rot_deg=30.0)
    centre = np.array([140.0, 100.0])
    np.testing.assert_allclose(apply_affine(centre[None], img2patch)[0], [128, 128], atol=1e-9)
    # A point 20 px right of the centre lands at 128 + 64 (cos(-30), sin(-30)): content rotated by -rot.
    p = apply_affine((centre + [20.0, 0.0])[None], img2patch)[0]
    np.testing.assert_allclose(p, 128 + 64 * np.array([math.cos(-math.pi / 6), math.sin(-math.pi / 6)]), atol=1e-9)
    # Same map as cv2.getAffineTransform on the reference's three point pairs.
    import cv2
    th = math.radians(30.0)
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    src = np.float32([centre, centre + rot @ [0, 40], centre + rot @ [40, 0]])
    dst = np.float32([[128, 128], [128, 256], [256, 128]])
    np.testing.assert_allclose(cv2.getAffineTransform(src, dst), img2patch, atol=1e-4)


def test_warp_moves_a_bright_dot_where_the_points_go():
    image = np.zeros((240, 320, 3), np.uint8)
    image[100, 200] = 255
    img2patch, _ = crop_transforms([70, 50, 100, 100], 128, 1.1, 25.0)  # around the flipped dot (119, 100)
    img2patch = compose_affine(img2patch, flip_transform(320))
    patch = warp_image(image, img2patch, 128).astype(float).sum(-1)
    expected = apply_affine(np.array([[200.0, 100.0]]), img2patch)[0]
    ys, xs = np.nonzero(patch)
    centroid = np.array([(xs * patch[ys, xs]).sum(), (ys * patch[ys, xs]).sum()]) / patch[ys, xs].sum()
    assert np.abs(centroid - expected).max() < 0.5


# ------------------------------------------------------------------------------------------------ camera

def test_project_back_project_and_default_intrinsics():
    K = default_intrinsics(640, 480)
    np.testing.assert_allclose(K, [[1500, 0, 320], [0, 1500, 240], [0, 0, 1]])
    pts = np.array([[0.1, -0.2, 3.0], [-0.5, 0.3, 5.0]])
    uv = project(pts, K)
    np.testing.assert_allclose(back_project(uv, pts[:, 2], K), pts, atol=1e-12)


@pytest.mark.parametrize("use_torch", [False, True])
def test_decode_to_camera_inverts_camera_to_heatmap(use_torch):
    rng = np.random.default_rng(1)
    batch, n = 3, 40
    K = np.stack([intrinsics((1100 + 100 * b, 1150), (310 + b, 250)) for b in range(batch)])
    root = np.array([[0.1, 0.0, 4.0], [-0.3, 0.2, 6.0], [0.0, -0.1, 3.0]])
    pts = root[:, None] + rng.uniform(-0.9, 0.9, (batch, n, 3))
    trans = [crop_transforms([250 + 10 * b, 150, 120, 120], 256, 0.9 + 0.1 * b, 20.0 * b) for b in range(batch)]
    img2patch = np.stack([t[0] for t in trans])
    patch2img = np.stack([t[1] for t in trans])
    args = (pts, K, img2patch, root[:, 2])
    if use_torch:
        args = tuple(torch.as_tensor(a) for a in args)
    hm = camera_to_heatmap(*args, 256, 64, 64, 2.0)
    back_args = (hm, patch2img, root[:, 2], K)
    if use_torch:
        back_args = (hm,) + tuple(torch.as_tensor(a) for a in back_args[1:])
    back = decode_to_camera(*back_args, 256, 64, 64, 2.0)
    back = back.numpy() if use_torch else back
    assert np.abs(back - pts).max() < 1e-4
    # z bins: the root sits in the middle bin, +-1 m at the ends.
    assert float(camera_to_heatmap(root[:1, None], K[:1], img2patch[:1], root[:1, 2], 256, 64, 64, 2.0)[0, 0, 2]) \
        == pytest.approx(32.0)


# ------------------------------------------------------------------------------------------------ procrustes

@pytest.mark.parametrize("use_torch", [False, True])
def test_procrustes_recovers_similarity(use_torch):
    rng = np.random.default_rng(2)
    a = rng.normal(size=(4, 30, 3))
    rot = axis_angle_to_matrix(rng.normal(size=(4, 3)))
    scale = np.array([0.5, 1.0, 2.0, 3.3])
    trans = rng.normal(size=(4, 3)) * 5
    b = scale[:, None, None] * a @ np.swapaxes(rot, -1, -2) + trans[:, None]
    if use_torch:
        c, r, t = (x.numpy() for x in similarity_transform(torch.as_tensor(a), torch.as_tensor(b)))
        aligned = procrustes_align(torch.as_tensor(a), torch.as_tensor(b)).numpy()
    else:
        c, r, t = similarity_transform(a, b)
        aligned = procrustes_align(a, b)
    np.testing.assert_allclose(c, scale, atol=1e-9)
    np.testing.assert_allclose(r, rot, atol=1e-9)
    np.testing.assert_allclose(t, trans, atol=1e-9)
    np.testing.assert_allclose(aligned, b, atol=1e-9)


def test_procrustes_never_reflects():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(20, 3))
    b = a * np.array([-1.0, 1.0, 1.0])  # a mirror image: the best rotation must still be proper
    _, r, _ = similarity_transform(a, b)
    assert np.linalg.det(r) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------ rotations

def test_axis_angle_round_trip_including_near_pi_and_zero():
    rng = np.random.default_rng(4)
    axes = rng.normal(size=(200, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([rng.uniform(0, math.pi - 1e-3, 190), np.full(5, math.pi - 1e-7), np.full(5, 1e-9)])
    aa = axes * angles[:, None]
    mats = axis_angle_to_matrix(aa)
    np.testing.assert_allclose(mats @ np.swapaxes(mats, -1, -2), np.broadcast_to(np.eye(3), mats.shape), atol=1e-12)
    np.testing.assert_allclose(axis_angle_to_matrix(matrix_to_axis_angle(mats)), mats, atol=1e-9)
    from scipy.spatial.transform import Rotation
    np.testing.assert_allclose(mats, Rotation.from_rotvec(aa).as_matrix(), atol=1e-12)


def test_procrustes_matches_kabsch_from_scipy_on_noisy_points():
    # Not an exact similarity: the expected fit from scipy's Kabsch rotation (align_vectors, proper rotations
    # only) and Umeyama's closed forms c = tr(R^T M) / var(a), t = mu_b - c R mu_a, in float64.
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(7)
    a = rng.normal(size=(3, 25, 3))
    b = 1.7 * a @ axis_angle_to_matrix(np.array([0.3, -2.0, 1.1])).T + 0.4 + rng.normal(size=a.shape) * 0.3
    b[2] = a[2] * np.array([-1.0, 1.0, 1.0])  # a mirror image: the best proper rotation
    c, r, t = similarity_transform(a, b)
    aligned = procrustes_align(a, b)
    for k in range(3):
        a0, b0 = a[k] - a[k].mean(0), b[k] - b[k].mean(0)
        rot = Rotation.align_vectors(b0, a0)[0].as_matrix()
        scale = np.trace(rot.T @ (b0.T @ a0)) / (a0 ** 2).sum()
        np.testing.assert_allclose(r[k], rot, rtol=0, atol=1e-12)
        assert c[k] == pytest.approx(scale, rel=1e-12)
        np.testing.assert_allclose(t[k], b[k].mean(0) - scale * rot @ a[k].mean(0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(aligned[k], scale * a[k] @ rot.T + t[k], rtol=0, atol=1e-12)
    torch_c, torch_r, _ = similarity_transform(torch.as_tensor(a), torch.as_tensor(b))
    assert torch_r.dtype == torch.float64 and np.allclose(torch_r.numpy(), r, atol=1e-12)


def test_axis_angle_from_matrix_matches_scipy_and_keeps_the_sign_at_pi():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(8)
    rotations = Rotation.random(500, random_state=9)
    mats = rotations.as_matrix()
    np.testing.assert_allclose(matrix_to_axis_angle(mats), rotations.as_rotvec(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(matrix_to_axis_angle(torch.as_tensor(mats)).numpy(), rotations.as_rotvec(),
                               rtol=0, atol=1e-12)
    # Tiny angles: R = I + [w]x to first order, and back.
    w = rng.normal(size=(4, 3)) * 1e-9
    skew = np.zeros((4, 3, 3))
    skew[:, [2, 0, 1], [1, 2, 0]] = w
    skew -= np.swapaxes(skew, 1, 2)
    np.testing.assert_allclose(axis_angle_to_matrix(w), np.eye(3) + skew, rtol=0, atol=1e-17)
    np.testing.assert_allclose(matrix_to_axis_angle(np.eye(3) + skew), w, rtol=0, atol=1e-17)
    # Exactly pi: the axis of the largest quaternion component, positive (as before roma; its shortest_arc would
    # give -pi x here). Same rotation either way, but the stored vectors stay the same numbers.
    expected = np.array([[math.pi, 0, 0], [0, math.pi, 0], [0, 0, math.pi], [math.pi / 2 ** 0.5] * 2 + [0]])
    pis = np.stack([np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1]),
                    np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, -1]])])
    np.testing.assert_allclose(matrix_to_axis_angle(pis), expected, rtol=0, atol=1e-15)


def test_rot6d_layout_is_the_reference_row_major_3x2():
    from i2lmesh.geometry.rotations import matrix_to_rot6d, rot6d_to_matrix

    # Rz(90 deg): columns (0, 1, 0) and (-1, 0, 0); row-major 3x2 = (c1x, c2x, c1y, c2y, c1z, c2z).
    rz = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    code = torch.tensor([0.0, -1, 1, 0, 0, 0], dtype=torch.float64)
    assert torch.equal(matrix_to_rot6d(rz), code) and torch.equal(rot6d_to_matrix(code), rz)
    # Gram-Schmidt of columns a1 = x[0, 2, 4], a2 = x[1, 3, 5]: a1 = (2, 0, 0), a2 = (3, 5, 0) -> the identity,
    # whereas Zhou et al.'s own layout (a1 = x[0:3], a2 = x[3:6]) would read a1 = (2, 3, 0), a2 = (0, 5, 0).
    assert torch.equal(rot6d_to_matrix(torch.tensor([2.0, 3, 0, 5, 0, 0], dtype=torch.float64)),
                       torch.eye(3, dtype=torch.float64))
    x = torch.as_tensor(np.random.default_rng(3).normal(size=(4, 5, 6)))
    a1, a2 = x[..., 0::2], x[..., 1::2]
    b1 = a1 / a1.norm(dim=-1, keepdim=True)
    b2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = b2 / b2.norm(dim=-1, keepdim=True)
    expected = torch.stack([b1, b2, torch.linalg.cross(b1, b2, dim=-1)], dim=-1)
    torch.testing.assert_close(rot6d_to_matrix(x), expected, rtol=0, atol=1e-15)
    # A zero code gives zeros, not NaN (as torch.nn.functional.normalize did).
    assert torch.equal(rot6d_to_matrix(torch.zeros(6)), torch.zeros(3, 3))


def test_flip_pose_twice_is_identity_and_mirrors_rotations():
    rng = np.random.default_rng(5)
    pose = rng.normal(size=(2, 72))
    pairs = ((1, 2), (4, 5))
    flipped = flip_axis_angle_pose(pose, pairs)
    np.testing.assert_allclose(flip_axis_angle_pose(flipped, pairs), pose)
    mirror = np.diag([-1.0, 1.0, 1.0])
    r = axis_angle_to_matrix(pose.reshape(2, 24, 3)[:, 0])
    np.testing.assert_allclose(axis_angle_to_matrix(flipped.reshape(2, 24, 3)[:, 0]), mirror @ r @ mirror,
                               atol=1e-12)
    np.testing.assert_allclose(flipped.reshape(2, 24, 3)[:, 1], pose.reshape(2, 24, 3)[:, 2] * [1, -1, -1])


def test_procrustes_mean_of_moved_copies_is_the_shape_and_the_per_point_mean_is_not():
    # 30 copies of one 12-point shape, each rotated (any direction), scaled and moved: the Procrustes mean is that
    # shape (centred, at the copies' root-mean-square size), so its PA error to every copy is float64 noise; the
    # per-point mean of the copies is a shrunken blur, far from every one of them.
    from i2lmesh.geometry.procrustes import procrustes_mean
    from i2lmesh.metrics import pa_errors

    rng = np.random.default_rng(3)
    shape = rng.normal(size=(12, 3))
    rotations = axis_angle_to_matrix(rng.normal(size=(30, 3)) * 2.0)
    scales = rng.uniform(0.5, 2.0, size=(30, 1, 1))
    copies = scales * shape @ np.swapaxes(rotations, -1, -2) + rng.normal(size=(30, 1, 3))
    mean = procrustes_mean(copies)
    size = np.sqrt(((shape - shape.mean(0)) ** 2).sum(-1).mean())
    assert mean.shape == (12, 3) and np.abs(mean.mean(0)).max() < 1e-12
    assert np.sqrt((mean ** 2).sum(-1).mean()) == pytest.approx(np.sqrt((scales ** 2).mean()) * size, rel=1e-9)
    assert pa_errors(np.repeat(mean[None], 30, 0), copies).max() < 1e-9 * 1000 * size  # mm of metre inputs
    assert pa_errors(np.repeat(copies.mean(0)[None], 30, 0), copies).mean() > 0.2 * 1000 * size
    # one set: itself, centred
    np.testing.assert_allclose(procrustes_mean(copies[:1]), copies[0] - copies[0].mean(0), atol=1e-12)
    with pytest.raises(AssertionError):
        procrustes_mean(np.zeros((4, 2, 3)))

"""The one decoder (inference/decode.py), the one crop, the one default camera and the one projection (issue 12).

Joints are J x the camera-space mesh (paper Eq. 7) in the Predictor, evaluation and ONNX exports alike; the crop of
training and inference is ``geometry.crop.warp_image``, bit-identical to the reference's warp of the whole float
image; every default K is ``geometry.camera.default_intrinsics``.
"""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from i2lmesh import save_network
from i2lmesh.engine.evaluate import decode_camera
from i2lmesh.geometry.camera import (DEFAULT_FOCAL_PX, camera_to_heatmap, decode_to_camera, default_intrinsics,
                                     intrinsics, project)
from i2lmesh.geometry.crop import compose_affine, crop_transforms, flip_transform, process_bbox, warp_image
from i2lmesh.inference import BadInputError, Predictor
from i2lmesh.inference.decode import apply_joint_regressor, decode
from i2lmesh.inference.root_depth import image_intrinsics
from i2lmesh.render import project_points
from tiny_net import rendered_image, tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")

GEOMETRY = SimpleNamespace(input_size=256, heatmap_size=64, depth_bins=64, bbox_3d_size_m=2.0)  # HeatmapGeometry


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny_body.pt"
    save_network(tiny_net(), path)
    return path


# ------------------------------------------------------------------------------------------------ the decoder


def _scene(batch: int = 3, n: int = 50, seed: int = 0):
    """Camera-space point clouds around roots at 3-6 m, their crops, K and a row-stochastic regressor (5, n)."""
    rng = np.random.default_rng(seed)
    K = np.stack([intrinsics((1100.0 + 100 * b, 1150.0), (310.0 + b, 250.0)) for b in range(batch)])
    root = np.array([[0.1, 0.0, 4.0], [-0.3, 0.2, 6.0], [0.0, -0.1, 3.0]])[:batch]
    points = root[:, None] + rng.uniform(-0.9, 0.9, (batch, n, 3))
    crops = [crop_transforms([250.0 + 10 * b, 150.0, 120.0, 120.0], 256, 0.9 + 0.1 * b, 20.0 * b) for b in range(batch)]
    img2patch, patch2img = np.stack([c[0] for c in crops]), np.stack([c[1] for c in crops])
    regressor = rng.uniform(0, 1, (5, n))
    return points, K, img2patch, patch2img, root[:, 2], regressor / regressor.sum(1, keepdims=True)


@pytest.mark.parametrize("use_torch", [False, True])
def test_decode_returns_a_known_camera_mesh_its_joints_and_their_projection(use_torch):
    points, K, img2patch, patch2img, root_z, regressor = _scene()
    hm = camera_to_heatmap(points, K, img2patch, root_z, 256, 64, 64, 2.0)  # the training targets' encoding
    args = (hm, regressor, patch2img, K, root_z)
    if use_torch:
        args = tuple(torch.as_tensor(a, dtype=torch.float64) for a in args)
    out = decode(*args, GEOMETRY)
    got = {k: v.numpy() if use_torch else v for k, v in vars(out).items() if v is not None}
    assert got["vertices_m"].shape == (3, 50, 3) and got["joints_m"].shape == (3, 5, 3)
    assert got["joints_2d_px"].shape == (3, 5, 2)
    np.testing.assert_allclose(got["vertices_m"], points, rtol=0, atol=1e-12)  # metres, float64 round trip
    np.testing.assert_allclose(got["joints_m"], regressor @ points, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["joints_2d_px"], project(regressor @ points, K), rtol=0, atol=1e-9)


def test_joints_are_the_regressor_on_the_camera_mesh_not_on_the_heatmap_mesh():
    """Two vertices, J = [0.5, 0.5]: A = (-0.5, 0, 2) m, B = (0.5, 0, 4) m, f = 1000 px, principal point (0, 0),
    an identity crop (1 bin = 1 px) and the root depth 3 m. P = J M = (0, 0, 3) m exactly. J applied in heatmap
    units instead averages u_A = -250 and u_B = 125 px to -62.5 px and back-projects it at the mean depth 3 m:
    X = -62.5 / 1000 x 3 = -0.1875 m, a point 187.5 mm away (the covariance of u and Z over the joint's vertices)."""
    geometry = SimpleNamespace(input_size=64, heatmap_size=64, depth_bins=64, bbox_3d_size_m=4.0)
    K = intrinsics(1000.0, (0.0, 0.0))
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    mesh = np.array([[-0.5, 0.0, 2.0], [0.5, 0.0, 4.0]])
    hm = camera_to_heatmap(mesh, K, identity, 3.0, 64, 64, 64, 4.0)
    np.testing.assert_allclose(hm[:, 0], [-250.0, 125.0])
    J = np.array([[0.5, 0.5]])
    out = decode(hm, J, identity, K, 3.0, geometry)
    np.testing.assert_allclose(out.joints_m, [[0.0, 0.0, 3.0]], atol=1e-12)
    np.testing.assert_allclose(out.joints_2d_px, [[0.0, 0.0]], atol=1e-9)
    heatmap_joint = decode_to_camera(J @ hm, identity, 3.0, K, 64, 64, 64, 4.0)  # the former Predictor's joint
    np.testing.assert_allclose(heatmap_joint, [[-0.1875, 0.0, 3.0]], atol=1e-12)


def test_decode_uncertainty_needs_the_box_and_matches_the_spread_formula():
    points, K, img2patch, patch2img, root_z, regressor = _scene(batch=1)
    hm = camera_to_heatmap(points[0], K[0], img2patch[0], root_z[0], 256, 64, 64, 2.0)
    spread = np.full((50, 3), 2.0)
    with pytest.raises(ValueError, match="box_size_px"):
        decode(hm, regressor, patch2img[0], K[0], root_z[0], GEOMETRY, vertices_spread=spread)
    out = decode(hm, regressor, patch2img[0], K[0], root_z[0], GEOMETRY, vertices_spread=spread,
                 joints_spread=np.ones((5, 3)), box_size_px=(120.0, 120.0))
    # x: 2 bins x 120 px / 64 bins x Z / fx (1100 px); z: 2 bins x 2 m / 64 bins; in mm
    np.testing.assert_allclose(out.vertex_uncertainty_xyz_mm[:, 0], 2 * 120 / 64 * points[0, :, 2] / 1100 * 1000)
    np.testing.assert_allclose(out.vertex_uncertainty_xyz_mm[:, 2], 2 * 2.0 / 64 * 1000)
    np.testing.assert_allclose(out.joint_uncertainty_xyz_mm[:, 1], 120 / 64 * (regressor @ points[0])[:, 2] / 1150
                               * 1000)


def test_apply_joint_regressor_casts_to_the_vertices_kind():
    J = torch.tensor([[0.25, 0.75]], dtype=torch.float32)
    v = np.array([[[0.0, 0.0, 1.0], [4.0, 8.0, 3.0]]])
    np.testing.assert_array_equal(apply_joint_regressor(J, v), [[[3.0, 6.0, 2.5]]])
    t = apply_joint_regressor(J.numpy(), torch.as_tensor(v))
    assert t.dtype == torch.float64 and t.tolist() == [[[3.0, 6.0, 2.5]]]


def test_predictor_and_evaluation_give_the_same_joints_for_the_same_output(checkpoint):
    image, K = rendered_image()
    predictor = Predictor.from_checkpoint(checkpoint, optimise=False)
    net = predictor.net
    outputs = []
    hook = net.register_forward_hook(lambda module, inputs, output: outputs.append(output))
    box = [60.0, 25.0, 50.0, 70.0]
    (person,) = predictor.predict(image, boxes=[box], intrinsics=K, root_depth_m=2.5)
    hook.remove()
    (out,) = outputs  # the network output the Predictor decoded
    size = net.config.input_size
    _, patch2img = crop_transforms(process_bbox(box, image.shape[1], image.shape[0]), size)
    meta = {"bb2img_trans": torch.as_tensor(patch2img)[None], "K": torch.as_tensor(K)[None],
            "root_depth_m": torch.tensor([2.5], dtype=torch.float64)}
    vertices, joints = decode_camera(net, out, meta)  # evaluation's decoding
    np.testing.assert_allclose(person.vertices_m, vertices[0], rtol=1e-7, atol=0)  # float32 results
    np.testing.assert_allclose(person.joints_m, joints[0], rtol=1e-7, atol=0)
    np.testing.assert_allclose(joints[0], net.joint_regressor.double().numpy() @ vertices[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(person.joints_2d_px, project(joints[0], K), rtol=1e-7, atol=0)
    # the network's own J x mesh in bins, back-projected, is a different point (the former Predictor's joints)
    former = decode_to_camera(out.mesh_joints_hm[0].double().numpy(), patch2img, 2.5, K, size,
                              net.config.heatmap_size, net.config.depth_bins, net.config.bbox_3d_size_m)
    assert np.abs(former - joints[0]).max() > 1e-4


def test_onnx_export_carries_the_regressor_and_gives_the_torch_joints(checkpoint, tmp_path):
    pytest.importorskip("onnx", reason="onnx is not installed (pip install i2lmesh[onnx])")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install i2lmesh[onnx])")
    import onnx

    from i2lmesh.export.onnx import OnnxNetwork, export_onnx

    torch_predictor = Predictor.from_checkpoint(checkpoint, optimise=False)
    path = export_onnx(torch_predictor.net, tmp_path / "tiny.onnx", exporter="torchscript")
    assert torch.equal(OnnxNetwork(path).joint_regressor, torch_predictor.net.joint_regressor)  # exact, float32
    onnx_predictor = Predictor.from_checkpoint(path, backend="onnx", num_threads=1)
    image, K = rendered_image()
    kwargs = dict(boxes=[[60.0, 25.0, 50.0, 70.0]], intrinsics=K, root_depth_m=2.5)
    (a,), (b,) = torch_predictor.predict(image, **kwargs), onnx_predictor.predict(image, **kwargs)
    # ONNX Runtime's outputs agree with PyTorch's to 1e-3 bins (tests/test_onnx.py): ~0.1 mm here
    np.testing.assert_allclose(b.joints_m, a.joints_m, rtol=0, atol=2e-4)
    np.testing.assert_allclose(b.joints_m, onnx_predictor.joint_regressor @ b.vertices_m.astype(np.float64),
                               rtol=0, atol=1e-6)
    # a file exported before the regressor was stored: refused with a one-line way out
    proto = onnx.load(str(path))
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key != "i2lmesh.joint_regressor"]
    del proto.metadata_props[:]
    for key, value in keep:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(tmp_path / "old.onnx"))
    with pytest.raises(BadInputError, match="export-onnx"):
        Predictor.from_checkpoint(tmp_path / "old.onnx", backend="onnx")


# ------------------------------------------------------------------------------------------------ one crop


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_crop_equals_the_reference_warp_of_the_whole_float_image(dtype):
    """Boxes inside, across the border and wholly outside; scaled, rotated and mirrored as in training."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (90, 130, 3)).astype(dtype)
    whole = image.astype(np.float32)
    for i, box in enumerate(([20.3, 10.7, 40.0, 55.0], [-30.0, -20.0, 80.0, 60.0], [100.0, 60.0, 60.0, 60.0],
                             [500.0, 400.0, 30.0, 30.0], [5.5, 3.2, 120.0, 80.0])):
        img2patch, _ = crop_transforms(box, 64, 0.8 + 0.1 * i, 17.0 * i)
        if i % 2:
            img2patch = compose_affine(img2patch, flip_transform(130))
        expected = cv2.warpAffine(whole, img2patch, (64, 64), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        patch = warp_image(image, img2patch, 64)
        assert patch.dtype == np.float32 and patch.shape == (64, 64, 3)
        np.testing.assert_array_equal(patch, expected)
    assert not warp_image(image, crop_transforms([500.0, 400.0, 30.0, 30.0], 64)[0], 64).any()


# ------------------------------------------------------------------------------------------------ one camera


def test_one_default_camera_everywhere(checkpoint):
    np.testing.assert_array_equal(default_intrinsics(640, 480), [[1500, 0, 320], [0, 1500, 240], [0, 0, 1]])
    np.testing.assert_array_equal(default_intrinsics(640, 480, 800.0), [[800, 0, 320], [0, 800, 240], [0, 0, 1]])
    assert DEFAULT_FOCAL_PX == 1500.0 and image_intrinsics is default_intrinsics
    predictor = Predictor.from_checkpoint(checkpoint, optimise=False)
    image, _ = rendered_image()  # 160 x 120
    np.testing.assert_array_equal(predictor.default_intrinsics(image), default_intrinsics(160, 120))
    (person,) = predictor.predict(image, boxes=[[60.0, 25.0, 50.0, 70.0]])
    np.testing.assert_array_equal(person.K, default_intrinsics(160, 120))
    assert person.intrinsics_source == "default (f = 1500 px)"


def test_the_renderer_projects_with_the_camera_projection():
    points = np.array([[0.1, -0.2, 3.0], [-0.5, 0.3, 5.0]])
    K = intrinsics((1000.0, 900.0), (320.0, 240.0))
    np.testing.assert_array_equal(project_points(points, K), project(points, K))
    np.testing.assert_array_equal(project_points(points[0], K), project(points, K)[0])  # one point (3,) -> (2,)
    np.testing.assert_array_equal(project_points(points[None], K), project(points, K)[None])
    np.testing.assert_allclose(project_points(points, K), [[353.333333333, 180.0], [220.0, 294.0]])
    skewed = K.copy()
    skewed[0, 1] = 1.0
    with pytest.raises(AssertionError, match="skew"):
        project_points(points, skewed)

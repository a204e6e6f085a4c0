"""The thin Predictor (issue 12): its stages' homes (result, boxes, fit_pipeline) and the preprocessing described by
data (``geometry.preprocessing.Preprocessing``), bit-identical to the crop recipe it replaced."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from i2lmesh.config import ModelConfig
from i2lmesh.geometry.crop import crop_transforms, process_bbox, warp_image
from i2lmesh.inference import boxes, fit_pipeline, predictor, result
from i2lmesh.inference.detect import Detection
from i2lmesh.inference.errors import BadInputError
from i2lmesh.geometry.preprocessing import Preprocessing
from tiny_net import rendered_image, tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")


def test_moved_names_stay_importable_from_the_predictor():
    assert predictor.PersonResult is result.PersonResult
    for name in ("box_shape_warning", "PERSON_BOX_ASPECT", "MAX_BOXES_PER_IMAGE", "MAX_BOX_COORDINATE_PX"):
        assert getattr(predictor, name) is getattr(boxes, name)


def test_user_boxes_shapes_and_refusals():
    np.testing.assert_array_equal(boxes.user_boxes([1, 2, 3, 4], "x"), [[1.0, 2.0, 3.0, 4.0]])
    assert boxes.user_boxes([], "x").shape == (0, 4)
    for bad in ([1, 2, 3], [[1, 2, 3, 4, 5]], [[0, 0, np.nan, 1]], [[0, 0, 2e7, 1]], [1j, 2, 3, 4], "abcd",
                [[0, 0, 1, 1]] * (boxes.MAX_BOXES_PER_IMAGE + 1)):
        with pytest.raises(BadInputError):
            boxes.user_boxes(bad, "x")


def test_preprocessing_from_config_and_the_network_agree():
    cfg = ModelConfig(input_size=64, pixel_mean=(0.5, 0.25, 0.125), pixel_std=(2.0, 4.0, 8.0))
    prep = Preprocessing.from_config(cfg)
    assert (prep.input_size, prep.pixel_mean, prep.pixel_std) == (64, (0.5, 0.25, 0.125), (2.0, 4.0, 8.0))
    assert (prep.channel_order, prep.pixel_scale, prep.box_aspect_ratio, prep.box_extension) == ("RGB", 255.0, 1.0,
                                                                                                   1.25)
    net = tiny_net()
    net_prep = Preprocessing.from_config(net.config)
    np.testing.assert_array_equal(net.pixel_mean.flatten().numpy(), np.float32(net_prep.pixel_mean))
    np.testing.assert_array_equal(net.pixel_std.flatten().numpy(), np.float32(net_prep.pixel_std))
    with pytest.raises(AttributeError):  # frozen
        prep.input_size = 32


def test_preprocessing_is_the_crop_recipe_bit_for_bit():
    """The steps equal the explicit geometry.crop calls of the Predictor before and of training (data.targets), and
    the [0, 1] scaling equals both old divisions: the batch's (channels-last memory kept) and the sample's."""
    rgb, _ = rendered_image(160, 120)
    prep = Preprocessing(64)
    box = [30.5, 20.25, 41.0, 70.0]
    np.testing.assert_array_equal(prep.crop_box(box, 160, 120), process_bbox(box, 160, 120))
    processed = prep.crop_box(box, 160, 120)
    for scale, rot in ((1.0, 0.0), (1.2, 17.0)):
        for got, want in zip(prep.transforms(processed, scale, rot), crop_transforms(processed, 64, scale, rot)):
            np.testing.assert_array_equal(got, want)
    img2patch = prep.transforms(processed)[0]
    patch = prep.warp(rgb, img2patch)
    np.testing.assert_array_equal(patch, warp_image(rgb, img2patch, 64))
    patches = np.stack([patch, patch[::-1]])
    batch = prep.to_unit_chw(patches)
    old_batch = patches.transpose(0, 3, 1, 2) / 255.0
    assert batch.dtype == old_batch.dtype == np.float32 and batch.strides == old_batch.strides
    np.testing.assert_array_equal(batch, old_batch)
    sample = np.ascontiguousarray(patch.transpose(2, 0, 1) / 255.0, dtype=np.float32)  # data.targets.build_sample
    np.testing.assert_array_equal(np.ascontiguousarray(prep.to_unit_chw(patch)), sample)
    assert 0.0 <= batch.min() and batch.max() <= 1.0 and batch.max() > 0.5


def test_predictor_feeds_the_network_the_old_recipe():
    net = tiny_net()
    p = predictor.Predictor(net, net.config, net.topology, net.faces.numpy())
    seen = []
    net.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    rgb, K = rendered_image(160, 120)
    box = [40.0, 10.0, 60.0, 90.0]
    p.predict(rgb, boxes=[box], intrinsics=K, root_depth_m=5.0)
    img2patch, _ = crop_transforms(process_bbox(box, 160, 120), 64)
    old = torch.from_numpy(warp_image(rgb, img2patch, 64)[None].transpose(0, 3, 1, 2) / 255.0)
    assert len(seen) == 1 and seen[0].dtype == torch.float32
    assert torch.equal(seen[0], old)


class _FakeKeypointDetector:
    def __init__(self, found):
        self.found, self.calls = found, []

    def detect(self, rgb):
        self.calls.append(rgb.shape)
        return self.found


def test_keypoints_in_box_shifts_the_found_keypoints_and_keeps_the_box():
    rgb = np.zeros((200, 300, 3), np.uint8)
    det = Detection(np.array([100.0, 50.0, 40.0, 80.0]), 0.9, "user")
    # the search square: centre (120, 90), half side 0.75 x 80 = 60 -> x 60..180, y 30..150
    inside = Detection(np.array([38.0, 22.0, 42.0, 78.0]), 0.8, "mediapipe", keypoints_xy=np.array([[1.0, 2.0]]),
                       keypoint_scores=np.array([0.7]), keypoint_set="blazepose33", side="left")
    fake = _FakeKeypointDetector([inside])
    out = fit_pipeline.keypoints_in_box(rgb, det, lambda: fake)
    assert fake.calls == [(120, 120, 3)]
    np.testing.assert_array_equal(out.keypoints_xy, [[61.0, 32.0]])
    np.testing.assert_array_equal(out.box_xywh, det.box_xywh)
    assert out.keypoint_set == "blazepose33" and out.side == "left" and out.score == 0.9
    far = Detection(np.array([0.0, 0.0, 10.0, 10.0]), 0.8, "mediapipe", keypoints_xy=np.array([[1.0, 2.0]]))
    assert fit_pipeline.keypoints_in_box(rgb, det, lambda: _FakeKeypointDetector([far])) is det  # IoU < 0.3


def test_keypoints_in_box_does_not_build_a_detector_for_a_box_outside_the_image():
    rgb = np.zeros((50, 50, 3), np.uint8)
    det = Detection(np.array([500.0, 500.0, 10.0, 10.0]), 1.0, "user")

    def no_detector():
        raise AssertionError("the keypoint detector was built for an empty region")

    assert fit_pipeline.keypoints_in_box(rgb, det, no_detector) is det

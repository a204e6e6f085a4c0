"""Inference: the predictor (image -> camera-space meshes with uncertainty), detection, camera and root depth,
temporal smoothing and video. See docs/inference.md.

    from i2lmesh.inference import Predictor
    people = Predictor.from_checkpoint("body.pt").predict("photo.jpg")
"""
from __future__ import annotations

from .detect import (Detection, DetectorUnavailable, HOGPersonDetector, MediaPipeDetector, create_detector,
                     load_boxes_json, non_maximum_suppression, parse_bbox)
from .keypoints import MediaPipeKeypointDetector
from .predictor import (MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE_PX, BadInputError, LoadedImage, PersonResult, Predictor,
                        as_loaded_image, read_image)
from .root_depth import ASSUMED_BOX_SIZE_M, image_intrinsics, k_value_root_depth
from .smoothing import OneEuroFilter

__all__ = ["Predictor", "PersonResult", "LoadedImage", "BadInputError", "read_image", "as_loaded_image",
           "MAX_IMAGE_SIDE_PX", "MAX_IMAGE_PIXELS", "Detection", "DetectorUnavailable", "HOGPersonDetector",
           "MediaPipeDetector", "MediaPipeKeypointDetector", "create_detector", "parse_bbox", "load_boxes_json", "non_maximum_suppression",
           "ASSUMED_BOX_SIZE_M", "image_intrinsics", "k_value_root_depth", "OneEuroFilter"]

"""Inference: the predictor (image -> camera-space meshes with uncertainty), detection, camera and root depth,
temporal smoothing and video. See docs/inference.md.

    from i2lmesh.inference import Predictor
    people = Predictor.from_checkpoint("body.pt").predict("photo.jpg")
"""
from __future__ import annotations

# Imported on first use (PEP 562): the command line checks its options and files with the light modules
# (errors, images, detect, video) before anything imports torch.
_LAZY = {"Detection": "detect", "DetectorUnavailable": "detect", "HOGPersonDetector": "detect",
         "MediaPipeDetector": "detect", "create_detector": "detect", "load_boxes_json": "detect",
         "non_maximum_suppression": "detect", "parse_bbox": "detect", "MediaPipeKeypointDetector": "keypoints",
         "MAX_IMAGE_PIXELS": "images", "MAX_IMAGE_SIDE_PX": "images", "LoadedImage": "images",
         "as_loaded_image": "images", "read_image": "images", "BadInputError": "errors", "PersonResult": "predictor",
         "Predictor": "predictor", "ASSUMED_BOX_SIZE_M": "root_depth", "image_intrinsics": "root_depth",
         "k_value_root_depth": "root_depth", "OneEuroFilter": "smoothing"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'i2lmesh.inference' has no attribute {name!r}")


__all__ = ["Predictor", "PersonResult", "LoadedImage", "BadInputError", "read_image", "as_loaded_image",
           "MAX_IMAGE_SIDE_PX", "MAX_IMAGE_PIXELS", "Detection", "DetectorUnavailable", "HOGPersonDetector",
           "MediaPipeDetector", "MediaPipeKeypointDetector", "create_detector", "parse_bbox", "load_boxes_json",
           "non_maximum_suppression",
           "ASSUMED_BOX_SIZE_M", "image_intrinsics", "k_value_root_depth", "OneEuroFilter"]

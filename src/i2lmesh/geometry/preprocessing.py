"""The network's input described by data (after torchvision's ``Weights.transforms()``): :class:`Preprocessing`,
derived from a ``ModelConfig``, says which box is cropped, to what patch, in which channel order and value range.

The Predictor and training's crop (``data.targets.build_sample``, which adds the augmentation's scale, rotation,
flip and colour) both crop with it. The steps (official_spec.md 4.2,
4.4): the box sanitised, made ``box_aspect_ratio`` (w/h) and enlarged ``box_extension`` x (``process_bbox``), the
affine crop to an S x S patch (``crop_transforms``, ``warp_image``: bilinear, zero border), RGB divided by
``pixel_scale`` to [0, 1]; the network itself then applies (x - pixel_mean) / pixel_std (``nets.i2l``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .crop import BOX_EXTENSION, crop_transforms, process_bbox, warp_image

if TYPE_CHECKING:
    from ..config import ModelConfig


@dataclass(frozen=True)
class Preprocessing:
    """What goes into the network, as data.

    input_size: S, the square patch's side in pixels. box_aspect_ratio (w/h) and box_extension: the box the patch
    shows (the reference: 1.0 and 1.25). channel_order: "RGB". pixel_scale: patch values (0..255) are divided by it.
    pixel_mean, pixel_std: per RGB channel, applied inside the network to the [0, 1] values (the authors'
    checkpoints: 0 and 1, official_spec.md 1.1).
    """

    input_size: int
    pixel_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pixel_std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_order: str = "RGB"
    pixel_scale: float = 255.0
    box_aspect_ratio: float = 1.0
    box_extension: float = BOX_EXTENSION

    @classmethod
    def from_config(cls, config: "ModelConfig") -> "Preprocessing":
        """The preprocessing of a network with this ``ModelConfig`` (its input size, mean and std)."""
        return cls(int(config.input_size), tuple(config.pixel_mean), tuple(config.pixel_std))

    def crop_box(self, bbox_xywh: Sequence[float], image_width: int, image_height: int) -> np.ndarray | None:
        """The box the patch shows: ``bbox_xywh`` (x, y, w, h) px sanitised to the image, made
        ``box_aspect_ratio`` and enlarged ``box_extension`` x (``geometry.crop.process_bbox``); (4,) float64 px,
        or None for a box outside the image or empty."""
        return process_bbox(bbox_xywh, image_width, image_height, self.box_aspect_ratio, self.box_extension)

    def transforms(self, box_xywh: Sequence[float], scale: float = 1.0, rot_deg: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray]:
        """(img2patch, patch2img) 2x3 float64 between image px and the S x S patch of ``box_xywh`` (a
        :meth:`crop_box`), with training's augmentation ``scale`` and ``rot_deg`` (``geometry.crop.crop_transforms``)."""
        return crop_transforms(box_xywh, self.input_size, scale, rot_deg)

    def warp(self, image: np.ndarray, img2patch: np.ndarray) -> np.ndarray:
        """The (S, S, 3) float32 0..255 patch of an (H, W, 3) RGB image (uint8 or float 0..255) through
        ``img2patch`` (``geometry.crop.warp_image``)."""
        return warp_image(image, img2patch, self.input_size)

    def to_unit_chw(self, patches: np.ndarray) -> np.ndarray:
        """(..., S, S, 3) float32 0..255 patches -> (..., 3, S, S) float32 in [0, 1] (divided by ``pixel_scale`` in
        float32). The result keeps the patches' memory order (channels last), a layout a channels_last network
        takes as it is; make it contiguous where NCHW memory is wanted."""
        return np.moveaxis(np.asarray(patches, dtype=np.float32), -1, -3) / np.float32(self.pixel_scale)


__all__ = ["Preprocessing"]

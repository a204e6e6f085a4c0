"""Synthetic training data from the body model: random posed Anny bodies or hands, rendered with exact ground truth
over procedural (or the user's) backgrounds, written in our on-disk dataset format. See docs/synthetic.md.

- ``scene``: random camera (field of view, principal point), orientation and placement (mostly in view, sometimes
  truncated at the image border);
- ``appearance``: skin, hair and clothing colours per body part, lighting;
- ``backgrounds``: procedural textures and noise, or crops of a folder of images;
- ``occluders``: occasional random shapes in front of the person;
- ``generate``: the deterministic, multi-process generator (``i2lmesh synth``).
"""
from __future__ import annotations

from .generate import CHUNK_SIZE, SynthConfig, SynthRenderer, SynthSample, generate

__all__ = ["SynthConfig", "SynthRenderer", "SynthSample", "generate", "CHUNK_SIZE"]

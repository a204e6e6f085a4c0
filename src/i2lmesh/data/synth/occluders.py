"""Occasional random shapes in front of the person (or hand): the network must learn to guess hidden parts.

With probability ``prob`` a sample gets 1-2 occluders: a rotated rectangle, an ellipse, a random convex-ish polygon
or a long bar (a pole, a table edge). Each is 20-55% of the person's box in size and centred inside the box, so it
overlaps the person; it is filled with a flat colour with a shading gradient or with a procedural texture. The
ground truth is unaffected (occluded joints keep their exact positions); the generator records the share of the
person's silhouette that got covered.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from .backgrounds import _colour, procedural_background


def _shape_polygon(rng: np.random.Generator, centre: np.ndarray, size: float) -> list[tuple[float, float]] | None:
    """Corners of a rotated rectangle, a bar or a random polygon around ``centre``; None means an ellipse."""
    kind = int(rng.choice(4, p=[0.3, 0.25, 0.25, 0.2]))
    angle = rng.uniform(0.0, math.pi)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    if kind == 0:  # rectangle
        half = np.array([size * rng.uniform(0.3, 0.6), size * rng.uniform(0.3, 0.6)])
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    elif kind == 1:  # bar: long and thin, crossing much of the box
        half = np.array([size * rng.uniform(1.0, 2.0), size * rng.uniform(0.06, 0.15)])
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    elif kind == 2:  # polygon: random radii at sorted angles
        count = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0.0, 2.0 * math.pi, size=count))
        radii = size * rng.uniform(0.25, 0.55, size=count)
        corners = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], 1)
    else:
        return None
    return [tuple(p) for p in (corners @ rot.T + centre)]


def sample_occluders(rng: np.random.Generator, image_size: tuple[int, int], box_xyxy: np.ndarray, prob: float
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """Maybe draw occluders over a person box (x1, y1, x2, y2 pixels).

    Returns None (no occluder, with probability 1 - prob) or (colour (H, W, 3) float32 in [0, 1], mask (H, W) bool).
    """
    if rng.uniform() >= prob:
        return None
    H, W = image_size
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    canvas = Image.new("L", (W, H), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, 3))):
        centre = np.array([rng.uniform(x1, x2), rng.uniform(y1, y2)])
        size = rng.uniform(0.2, 0.55) * max(x2 - x1, y2 - y1, 8.0)
        polygon = _shape_polygon(rng, centre, size)
        if polygon is None:
            rx, ry = size * rng.uniform(0.25, 0.55), size * rng.uniform(0.25, 0.55)
            draw.ellipse([centre[0] - rx, centre[1] - ry, centre[0] + rx, centre[1] + ry], fill=255)
        else:
            draw.polygon(polygon, fill=255)
    mask = np.asarray(canvas) > 0
    if rng.uniform() < 0.5:
        colour = procedural_background(rng, (H, W))
    else:
        y = np.linspace(0.0, 1.0, H, dtype=np.float32)[:, None, None]
        gain = 1.0 + rng.uniform(-0.3, 0.3) * (y - 0.5)
        colour = np.clip(_colour(rng).astype(np.float32) * gain, 0.0, 1.0)
        colour = np.broadcast_to(colour, (H, W, 3))
    return colour.astype(np.float32), mask


__all__ = ["sample_occluders"]

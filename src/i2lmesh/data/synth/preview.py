"""Contact sheets: a grid of dataset images with their 2D joints and skeleton drawn, to check a dataset by eye.

Works on any records of our format (``read_dataset``), synthetic or converted. Left joints are drawn blue, right
joints red, the rest yellow (by the ``L_``/``R_`` prefix of the joint names); the box is drawn green.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

LEFT, RIGHT, MIDDLE, BOX = (70, 140, 255), (255, 70, 70), (255, 220, 60), (60, 220, 90)


def _side_colour(name: str) -> tuple[int, int, int]:
    return LEFT if name.startswith("L_") else RIGHT if name.startswith("R_") else MIDDLE


def draw_joints(image: Image.Image, record, scale: float = 1.0) -> Image.Image:
    """Draw a record's box, skeleton and joints (image pixels times ``scale``) on a copy of ``image``."""
    image = image.convert("RGB").copy()
    draw = ImageDraw.Draw(image)
    # pixel centres are at integer coordinates: the centre of pixel u is at (u + 0.5) * scale - 0.5 after a resize
    def to_tile(p):
        return (p + 0.5) * scale - 0.5

    x, y, w, h = (float(v) for v in record.bbox_xywh)
    draw.rectangle([to_tile(x - 0.5), to_tile(y - 0.5), to_tile(x + w - 0.5), to_tile(y + h - 0.5)], outline=BOX)
    if record.joint_set is None or record.joints_img_px is None:
        return image
    uv = to_tile(np.asarray(record.joints_img_px, dtype=np.float64))
    valid = np.ones(len(uv), bool) if record.joints_valid is None else np.asarray(record.joints_valid) > 0
    names = record.joint_set.names
    radius = max(1.5, 0.012 * image.size[0])
    for a, b in record.joint_set.skeleton:
        if valid[a] and valid[b]:
            colour = _side_colour(names[b]) if _side_colour(names[b]) != MIDDLE else _side_colour(names[a])
            draw.line([tuple(uv[a]), tuple(uv[b])], fill=colour, width=max(1, round(radius / 1.5)))
    for k, (u, v) in enumerate(uv):
        if valid[k]:
            draw.ellipse([u - radius, v - radius, u + radius, v + radius], fill=_side_colour(names[k]),
                         outline=(0, 0, 0))
    return image


def contact_sheet(records: Sequence, path: str | os.PathLike, columns: int = 4, tile: int = 192,
                  colours: int = 256) -> Path:
    """Save a grid of ``records``' images (each resized to ``tile`` px) with joints drawn, as PNG (quantised to
    ``colours`` colours to stay small; 0 keeps full RGB). Returns the path."""
    assert len(records) > 0, "contact_sheet needs at least one record."
    rows = -(-len(records) // columns)
    sheet = Image.new("RGB", (columns * tile, rows * tile), (0, 0, 0))
    for k, record in enumerate(records):
        with Image.open(record.image_path) as im:
            w, h = im.size
            scale = tile / max(w, h)
            picture = im.convert("RGB").resize((round(w * scale), round(h * scale)), Image.LANCZOS)
        sheet.paste(draw_joints(picture, record, scale), ((k % columns) * tile, (k // columns) * tile))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if colours:
        sheet = sheet.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
    sheet.save(path, optimize=True)
    return path


__all__ = ["draw_joints", "contact_sheet"]

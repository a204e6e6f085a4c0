"""Backgrounds for synthetic images: procedural textures and noise (default), or crops of the user's own images.

Procedural kinds (one drawn per image): multi-octave colour value noise, a linear gradient,
stripes or a checkerboard at a random angle, a wall-and-floor split with textures, and "clutter" (random rectangles
and ellipses over a noise base, a stand-in for furniture). All are drawn from the sample's numpy generator, so the
same generator state gives the same pixels.

User images (``--backgrounds DIR``): every .jpg/.jpeg/.png/.bmp/.webp under the folder (sorted, so the choice is
deterministic for a seed); each sample takes one at random, a random square crop of 50-100% of its shorter side,
resized to the output size, mirrored half of the time. Unreadable files are reported with their path and skipped.
"""
from __future__ import annotations

import colorsys
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _colour(rng: np.random.Generator, value: tuple[float, float] = (0.1, 0.95)) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.7), rng.uniform(*value)))


def _resize(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic resampling of a float grid (h, w) or (h, w, C) to size (H, W) (PIL, per channel). Not a numpy matrix
    product: numpy's multi-threaded BLAS is far slower for such small products on a busy machine."""
    H, W = size
    if grid.ndim == 2:
        return np.asarray(Image.fromarray(grid.astype(np.float32), mode="F").resize((W, H), Image.BICUBIC))
    return np.stack([_resize(grid[..., c], size) for c in range(grid.shape[2])], -1)


def value_noise(rng: np.random.Generator, size: tuple[int, int], channels: int = 1, octaves: int = 4,
                base_cells: int | None = None, persistence: float | None = None) -> np.ndarray:
    """Fractal value noise (H, W, channels) float32, about zero-mean with unit-ish range: random grids of
    base_cells * 2^k cells, weighted by persistence^k, summed on a grid of at most 64 cells a side and bicubically
    upsampled once (finer octaves would only add grain, which the generator adds separately)."""
    base = int(base_cells or rng.integers(2, 7))
    persistence = float(persistence if persistence is not None else rng.uniform(0.35, 0.7))
    H, W = size
    work = (min(H, 64), min(W, 64))
    out = np.zeros((*work, channels), np.float32)
    weight, total = 1.0, 0.0
    for k in range(octaves):
        cells = min(base * 2 ** k, max(work))
        grid = rng.uniform(-1.0, 1.0, size=(cells + 1, cells + 1, channels))
        out += weight * _resize(grid, work).reshape(*work, channels)
        total += weight
        weight *= persistence
    return _resize(out / total, size).reshape(H, W, channels)


def _noise_texture(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    a, b = _colour(rng), _colour(rng)
    t = np.clip(0.5 + value_noise(rng, size)[..., 0] * rng.uniform(0.6, 1.4), 0.0, 1.0)[..., None]
    colour_noise = value_noise(rng, size, channels=3, octaves=2) * rng.uniform(0.0, 0.15)
    return (1.0 - t) * a + t * b + colour_noise


def _gradient(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    H, W = size
    angle = rng.uniform(0.0, 2.0 * np.pi)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    t = (np.cos(angle) * x / W + np.sin(angle) * y / H)
    t = ((t - t.min()) / max(float(np.ptp(t)), 1e-6))[..., None]
    return (1.0 - t) * _colour(rng) + t * _colour(rng) + value_noise(rng, size, 1, 3)[..., :1] * 0.06


def _pattern(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Stripes or a checkerboard at a random angle and period, softened."""
    H, W = size
    angle = rng.uniform(0.0, np.pi)
    period = rng.uniform(0.04, 0.3) * max(H, W)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    a = (np.cos(angle) * x + np.sin(angle) * y) / period
    wave = np.sin(2.0 * np.pi * a)
    if rng.uniform() < 0.4:
        b = (-np.sin(angle) * x + np.cos(angle) * y) / period
        wave = wave * np.sin(2.0 * np.pi * b)
    sharpness = rng.uniform(1.0, 8.0)
    t = (0.5 + 0.5 * np.tanh(sharpness * wave))[..., None]
    return (1.0 - t) * _colour(rng) + t * _colour(rng) + value_noise(rng, size, 1, 3) * 0.08


def _wall_floor(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    H, W = size
    horizon = rng.uniform(0.3, 0.8) * H
    slope = rng.uniform(-0.15, 0.15)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    floor = (y > horizon + slope * (x - W / 2.0))[..., None]
    return np.where(floor, _noise_texture(rng, size) * 0.9, _noise_texture(rng, size))


def _clutter(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    H, W = size
    base = _noise_texture(rng, size)
    canvas = Image.fromarray(np.zeros((H, W), np.uint8))
    draw = ImageDraw.Draw(canvas)
    count = int(rng.integers(3, 12))
    colours = np.array([_colour(rng) for _ in range(count)])
    for k in range(count):
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        w, h = rng.uniform(0.05, 0.5) * W, rng.uniform(0.05, 0.5) * H
        box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        (draw.ellipse if rng.uniform() < 0.35 else draw.rectangle)(box, fill=k + 1)
    labels = np.asarray(canvas).astype(np.int64)
    shade = 1.0 + value_noise(rng, size, 1, 2)[..., 0] * 0.15
    out = np.where(labels[..., None] > 0, colours[np.maximum(labels - 1, 0)] * shade[..., None], base)
    return out


PROCEDURAL_KINDS = {"noise": _noise_texture, "gradient": _gradient, "pattern": _pattern, "wall_floor": _wall_floor,
                    "clutter": _clutter}
PROCEDURAL_WEIGHTS = {"noise": 0.3, "gradient": 0.1, "pattern": 0.15, "wall_floor": 0.2, "clutter": 0.25}


def procedural_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """One procedural background (H, W, 3) float32 in [0, 1] (quantised to 1/255)."""
    names = list(PROCEDURAL_WEIGHTS)
    kind = names[int(rng.choice(len(names), p=list(PROCEDURAL_WEIGHTS.values())))]
    H, W = size
    # Drawn at half resolution and upsampled once as 8-bit RGB (PIL's fast path): 4x less work, and the slight
    # softness reads as a background out of focus.
    work = (max(H // 2, 16), max(W // 2, 16))
    image = np.clip(PROCEDURAL_KINDS[kind](rng, work) * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
    return np.asarray(Image.fromarray(image).resize((W, H), Image.BICUBIC), dtype=np.float32) * (1.0 / 255.0)


class ImageBackgrounds:
    """Random square crops of the images in a user folder (recursively), resized to the output size."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"background folder {self.folder} does not exist")
        self.paths = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.paths:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under background folder {self.folder}")
        self.bad: set[Path] = set()

    def sample(self, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
        H, W = size
        for _ in range(8):
            path = self.paths[int(rng.integers(len(self.paths)))]
            fraction, ux, uy, mirror = rng.uniform(0.5, 1.0), rng.uniform(), rng.uniform(), rng.uniform() < 0.5
            if path in self.bad:
                continue
            try:
                with Image.open(path) as im:
                    im = im.convert("RGB")
                    side = max(1, int(min(im.size) * fraction))
                    x0, y0 = int(ux * (im.size[0] - side)), int(uy * (im.size[1] - side))
                    crop = im.resize((W, H), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side))
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                log.warning("background image %s is unreadable (%s); skipped", path, exc)
                self.bad.add(path)
                continue
            image = np.asarray(crop, dtype=np.float32) / 255.0
            return image[:, ::-1] if mirror else image
        return procedural_background(rng, size)


class BackgroundSource:
    """Where backgrounds come from: procedural (folder None) or a folder of the user's images."""

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.images = ImageBackgrounds(folder) if folder else None

    def sample(self, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
        """(H, W, 3) float32 in [0, 1] (a new array each call)."""
        image = self.images.sample(rng, size) if self.images else procedural_background(rng, size)
        return np.array(image, dtype=np.float32)


__all__ = ["BackgroundSource", "ImageBackgrounds", "procedural_background", "value_noise", "PROCEDURAL_KINDS"]

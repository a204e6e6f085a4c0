"""Reading images for the Predictor: files (EXIF orientation applied, corrupt / truncated / huge files refused with
one line) and arrays (gray, RGBA, 16-bit, float converted) -> 8-bit RGB, downscaled when very large.

Outputs are always described in the pixels of the *original* image: ``LoadedImage.scale`` (working px / original px)
maps them back.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadInputError

MAX_IMAGE_SIDE_PX = 4096  # larger images are downscaled to this longest side for processing
MAX_IMAGE_PIXELS = 250_000_000  # larger images are refused (decompression bombs, memory)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm")


@dataclass
class LoadedImage:
    """An image ready for processing. rgb (H, W, 3) uint8 is the working copy; ``scale`` = working px / original
    px (1 unless downscaled); original_size = (W, H) of the input; notes: conversions applied (for the JSON)."""

    rgb: np.ndarray
    scale: float = 1.0
    original_size: tuple[int, int] = (0, 0)
    source: str = "<array>"
    notes: list[str] = field(default_factory=list)


def _to_uint8_rgb(array: np.ndarray, notes: list[str], name: str) -> np.ndarray:
    """Grayscale / RGBA / 16-bit / float arrays -> (H, W, 3) uint8 RGB."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise BadInputError(f"{name}: expected an HxW, HxWx3 or HxWx4 image, got shape {array.shape}")
    if array.size == 0 or min(array.shape[:2]) < 1:
        raise BadInputError(f"{name}: empty image ({array.shape[1] if array.ndim > 1 else 0}x{array.shape[0]} px)")
    if not (array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer)
            or np.issubdtype(array.dtype, np.floating)):
        raise BadInputError(f"{name}: pixels should be numbers (uint8, integers, floats), got dtype {array.dtype}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16 or (np.issubdtype(array.dtype, np.integer) and array.dtype != np.uint8):
        peak = 65535.0 if array.max(initial=0) > 255 else 255.0
        if peak > 255:
            notes.append("converted 16-bit to 8-bit")
        array = np.clip(np.rint(array.astype(np.float64) * (255.0 / peak)), 0, 255).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        finite = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if finite.max(initial=0.0) <= 1.0 else 1.0  # [0, 1] floats, else 0..255 floats
        notes.append("converted floating-point to 8-bit")
        array = np.clip(np.rint(finite * scale), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        notes.append("converted grayscale to RGB")
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.shape[2] == 4:
        notes.append("dropped the alpha channel")
        array = array[:, :, :3]
    return np.ascontiguousarray(array)


def _downscale(loaded: LoadedImage, max_side: int = MAX_IMAGE_SIDE_PX) -> LoadedImage:
    import cv2

    h, w = loaded.rgb.shape[:2]
    if max(h, w) <= max_side:
        return loaded
    factor = max_side / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    loaded.rgb = cv2.resize(loaded.rgb, size, interpolation=cv2.INTER_AREA)
    # The exact ratio per axis is size/original; we use one factor (rounding changes it by < 1/max_side).
    loaded.scale *= factor
    loaded.notes.append(f"downscaled from {w}x{h} to {size[0]}x{size[1]} px (limit {max_side} px)")
    return loaded


# The first bytes of the formats Pillow reads here (JPEG, PNG, GIF, BMP, TIFF, WebP's RIFF, PNM).
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF", b"P5", b"P6")


def _has_image_signature(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return head.startswith(_IMAGE_SIGNATURES)


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as an input file (missing, a broken or looping link, not a regular file, a name
    the file system refuses, empty, unreadable), or None."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return "broken symbolic link" if path.is_symlink() else "file not found"
    except OSError as exc:  # ELOOP, ENAMETOOLONG, EACCES on a parent ...
        return f"cannot be opened ({exc.strerror or type(exc).__name__})"
    import stat

    if not stat.S_ISREG(info.st_mode):
        return "is a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a FIFO, socket or device)"
    if info.st_size == 0:
        return "empty file"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def read_image(path: str | os.PathLike, max_side: int = MAX_IMAGE_SIDE_PX) -> LoadedImage:
    """Read an image file as 8-bit RGB with its EXIF orientation applied. Raises BadInputError (one line) for a
    missing, empty, corrupt, truncated, unsupported or too large file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    problem = file_problem(path)
    if problem:
        raise BadInputError(f"{path}: {problem}")
    notes: list[str] = []
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise BadInputError(f"{path}: image too large ({w}x{h} px, limit {MAX_IMAGE_PIXELS / 1e6:.0f} MP)")
            if w < 1 or h < 1:
                raise BadInputError(f"{path}: empty image ({w}x{h} px)")
            if im.format == "JPEG" and max(w, h) > 2 * max_side and min(w, h) >= 2:
                im.draft("RGB", (w // 2, h // 2))  # let libjpeg decode at a reduced scale: fast for huge photos
            im.load()
            orientation = im.getexif().get(0x0112, 1)
            if orientation not in (None, 1):
                im = ImageOps.exif_transpose(im)
                notes.append(f"applied EXIF orientation {orientation}")
            if im.mode in ("RGB", "L", "I;16", "I;16B", "I;16L", "I;16N", "I", "F", "RGBA"):
                array = np.asarray(im)
            else:  # palette, CMYK, LA, YCbCr, 1-bit ...: let Pillow convert
                notes.append(f"converted {im.mode} to RGB")
                array = np.asarray(im.convert("RGBA" if "A" in im.mode or im.mode == "P" else "RGB"))
    except BadInputError:
        raise
    except UnidentifiedImageError:
        if _has_image_signature(path):  # the start of a known format, then garbage
            raise BadInputError(f"{path}: corrupt or unreadable image (a damaged header)") from None
        raise BadInputError(f"{path}: not an image or an unsupported format") from None
    except Image.DecompressionBombError:
        raise BadInputError(f"{path}: image too large (Pillow's decompression-bomb limit)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = "truncated" if "truncated" in str(exc) else "corrupt or unreadable"
        raise BadInputError(f"{path}: {reason} image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                            ) from None
    rgb = _to_uint8_rgb(array, notes, str(path))
    full_w, full_h = (h, w) if orientation in (5, 6, 7, 8) else (w, h)  # displayed size at full resolution
    loaded = LoadedImage(rgb, rgb.shape[1] / full_w, (full_w, full_h), str(path), notes)
    if rgb.shape[1] != full_w:  # JPEG decoded in draft mode
        notes.append(f"decoded at {rgb.shape[1]}x{rgb.shape[0]} px")
    return _downscale(loaded, max_side)


def as_loaded_image(image: Any, max_side: int = MAX_IMAGE_SIDE_PX, name: str = "<array>") -> LoadedImage:
    """A path or an (H, W[, C]) array (uint8 RGB preferred; gray, RGBA, 16-bit and float are converted). ``name``
    names an array in messages and warnings (e.g. "clip.mp4 frame 12")."""
    if isinstance(image, LoadedImage):
        return image
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, max_side)
    if type(image).__module__.split(".")[0] == "torch":  # a tensor (torch is not imported here for the rest)
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise BadInputError(f"{name}: expected an image path or a numpy HxWx3 RGB array, got "
                            f"{type(image).__name__}")
    notes: list[str] = []
    rgb = _to_uint8_rgb(image, notes, name)
    return _downscale(LoadedImage(rgb, 1.0, (rgb.shape[1], rgb.shape[0]), name, notes), max_side)


__all__ = ["LoadedImage", "read_image", "as_loaded_image", "file_problem", "IMAGE_SUFFIXES", "MAX_IMAGE_SIDE_PX",
           "MAX_IMAGE_PIXELS"]

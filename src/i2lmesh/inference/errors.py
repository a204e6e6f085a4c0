"""The error of a bad user input (image, box, option): one line naming the input and the problem; and the checks of
camera values that need nothing heavy (the command line runs them before loading any model)."""
from __future__ import annotations

import math
from typing import Any

# Plausible camera values; beyond them the outputs are absurd or overflow (a focal of 1e30 px puts the person
# 1e28 m away), so they are refused. Focal: a fisheye on a thumbnail (~1 px) to a 800 mm lens on 3.8 um pixels
# (~2e5 px). Root depth: 1 cm (a hand on the lens) to 10 km.
FOCAL_RANGE_PX = (1.0, 1e6)
ROOT_DEPTH_RANGE_M = (0.01, 1e4)
MAX_THREADS = 1024  # torch.set_num_threads overflows on absurd counts


class BadInputError(ValueError):
    """An input image, box or option that cannot be used; the message is one line naming the input."""


def _in_range(value: Any, name: str, unit: str, bounds: tuple[float, float]) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"{name} must be a number of {unit}, got {str(value)[:60]!r}") from None
    if not (math.isfinite(number) and bounds[0] <= number <= bounds[1]):
        raise BadInputError(f"{name} must be between {bounds[0]:g} and {bounds[1]:g} {unit}, got {value}")
    return number


def check_focal(value: Any, name: str = "focal length") -> float:
    """A focal length in pixels as float, or BadInputError (one line) outside ``FOCAL_RANGE_PX``."""
    return _in_range(value, name, "pixels", FOCAL_RANGE_PX)


def check_root_depth(value: Any, name: str = "root depth") -> float:
    """A root depth in metres as float, or BadInputError (one line) outside ``ROOT_DEPTH_RANGE_M``."""
    return _in_range(value, name, "metres", ROOT_DEPTH_RANGE_M)


__all__ = ["BadInputError", "check_focal", "check_root_depth", "FOCAL_RANGE_PX", "ROOT_DEPTH_RANGE_M", "MAX_THREADS"]

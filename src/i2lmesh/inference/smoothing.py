"""The One Euro filter (Casiez, Roussel & Vogel, CHI 2012) for smoothing per-frame predictions of a video.

A first-order low-pass filter whose cutoff rises with the signal's speed: slow motion (jitter) is smoothed
strongly, fast motion passes with little lag. Applied independently per point and per axis of an array.
"""
from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff_hz: np.ndarray | float, dt_s: float) -> np.ndarray | float:
    """Smoothing factor of an exponential filter with this cutoff at sampling period dt (paper eq. 4)."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz))
    return 1.0 / (1.0 + tau / dt_s)


class OneEuroFilter:
    """Filter arrays of any fixed shape (e.g. V x 3 vertices) frame by frame.

    min_cutoff_hz: cutoff at zero speed (lower = smoother, more lag at rest). beta: how fast the cutoff grows with
    speed (higher = less lag when moving). d_cutoff_hz: cutoff of the speed estimate. Units: the signal's units per
    second for the speed, so for metres a beta of ~1 and min_cutoff ~1 Hz are sensible at 25-30 fps.
    """

    def __init__(self, min_cutoff_hz: float = 1.0, beta: float = 0.5, d_cutoff_hz: float = 1.0) -> None:
        assert min_cutoff_hz > 0 and d_cutoff_hz > 0 and beta >= 0, "cutoffs must be > 0 and beta >= 0."
        self.min_cutoff_hz, self.beta, self.d_cutoff_hz = min_cutoff_hz, beta, d_cutoff_hz
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def __call__(self, x: np.ndarray, dt_s: float) -> np.ndarray:
        """Filter one sample taken ``dt_s`` seconds after the previous one; returns the filtered array."""
        x = np.asarray(x, dtype=np.float64)
        assert dt_s > 0, f"dt_s must be positive, got {dt_s}."
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            return x.copy()
        dx = (x - self._x) / dt_s
        a_d = _alpha(self.d_cutoff_hz, dt_s)
        self._dx = a_d * dx + (1.0 - a_d) * self._dx
        cutoff = self.min_cutoff_hz + self.beta * np.abs(self._dx)
        a = _alpha(cutoff, dt_s)
        self._x = a * x + (1.0 - a) * self._x
        return self._x.copy()


__all__ = ["OneEuroFilter"]

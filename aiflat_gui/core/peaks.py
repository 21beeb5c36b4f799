"""Sub-pixel peaks of correlation surfaces (numpy only): where a pattern is found."""

from __future__ import annotations

import numpy as np


def subpixel_peak(c: np.ndarray) -> tuple[float, float]:
    """(x, y) of the maximum of ``c`` (e.g. a ``cv2.matchTemplate`` result), refined by a parabola
    through it and its two neighbours along each axis (not at the border)."""
    iy, ix = np.unravel_index(int(np.argmax(c)), c.shape)
    fy = fx = 0.0
    if 0 < iy < c.shape[0] - 1:
        den = c[iy - 1, ix] - 2 * c[iy, ix] + c[iy + 1, ix]
        fy = 0.5 * (c[iy - 1, ix] - c[iy + 1, ix]) / den if den != 0 else 0.0
    if 0 < ix < c.shape[1] - 1:
        den = c[iy, ix - 1] - 2 * c[iy, ix] + c[iy, ix + 1]
        fx = 0.5 * (c[iy, ix - 1] - c[iy, ix + 1]) / den if den != 0 else 0.0
    return float(ix + fx), float(iy + fy)


def subpixel_peaks(cs: np.ndarray) -> np.ndarray:
    """:func:`subpixel_peak` of each surface of a stack ``cs`` (n, H, W) of float32 or float64
    surfaces at once: (n, 2) float64 (x, y), bit for bit the values of the one-at-a-time calls
    (the same element-wise operations in the surfaces' own type)."""
    n, h, w = cs.shape
    flat = cs.reshape(n, -1)
    k = np.argmax(flat, axis=1)
    iy, ix = np.divmod(k, w)
    rows = np.arange(n)
    out = np.empty((n, 2), np.float64)
    for axis, (i, size, step) in enumerate(((ix, w, 1), (iy, h, w))):
        inner = (i > 0) & (i < size - 1)
        f = np.zeros(n, cs.dtype)
        if inner.any():
            kk, r = k[inner], rows[inner]
            a, b, e = flat[r, kk - step], flat[r, kk], flat[r, kk + step]
            den = a - 2 * b + e
            num = 0.5 * (a - e)
            ok = den != 0
            f[inner] = np.where(ok, num / np.where(ok, den, 1), 0)
        out[:, axis] = i + f
    return out

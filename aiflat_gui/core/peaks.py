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

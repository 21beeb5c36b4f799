"""The dust mask: a bool ``(H, W)`` array, True = dust. Morphology and specks (no files: mask files
and the mask codec are :mod:`aiflat_gui.io.masks`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from ..errors import InputError

__all__ = ["Speck", "grow", "shrink", "remove_small",
           "invert", "components", "label_at", "component_mask", "disk"]


@dataclass
class Speck:
    """One connected dust region (8-connectivity).

    label: 1-based label (as in :func:`labels`); area: pixels; centroid: (x, y); bbox: (x, y, w, h);
    attenuation: the speck's darkening. With a flat: ``1 - mean(flat)`` over the speck, the darkening
    the calibration removes. Else, with a reference, an estimate: ``1 - mean(reference / fill)``
    inside the speck, the fill a smooth surface fitted to the ring around it (:func:`_ring_depth`);
    None without either (or when the ring is too small). 0.3 means the speck passes 70 % of the light.
    depth_from: "flat", "reference" or None -- where ``attenuation`` came from.
    """

    label: int
    area: int
    centroid: tuple[float, float]
    bbox: tuple[int, int, int, int]
    attenuation: Optional[float] = None
    depth_from: Optional[str] = None


# -- morphology --------------------------------------------------------------------------------

def _u8(mask: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(mask, dtype=bool)).view(np.uint8)


def disk(radius: int) -> np.ndarray:
    """A filled disc structuring element of the given radius (uint8, (2r+1)^2)."""
    r = int(radius)
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    return (x * x + y * y <= r * r + r).astype(np.uint8)  # +r: round discs, r=1 is a 3x3 cross+


def grow(mask: np.ndarray, px: int) -> np.ndarray:
    """Dilate by ``px`` pixels (disc). ``px <= 0`` returns a copy."""
    m = np.asarray(mask, dtype=bool)
    if px <= 0 or not m.any():
        return m.copy()
    return cv2.dilate(_u8(m), disk(px), borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def shrink(mask: np.ndarray, px: int) -> np.ndarray:
    """Erode by ``px`` pixels (disc); the image border does not erode. ``px <= 0`` returns a copy."""
    m = np.asarray(mask, dtype=bool)
    if px <= 0 or not m.any():
        return m.copy()
    return cv2.erode(_u8(m), disk(px), borderType=cv2.BORDER_CONSTANT, borderValue=1).astype(bool)


def invert(mask: np.ndarray) -> np.ndarray:
    return ~np.asarray(mask, dtype=bool)


def labels(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """``(n_labels including background, int32 label image)`` with 8-connectivity."""
    n, lab = cv2.connectedComponents(_u8(mask), connectivity=8, ltype=cv2.CV_32S)
    return n, lab


def remove_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Drop connected specks (8-connectivity) of fewer than ``min_area`` pixels."""
    m = np.asarray(mask, dtype=bool)
    if min_area <= 1 or not m.any():
        return m.copy()
    n, lab, stats, _ = cv2.connectedComponentsWithStats(_u8(m),
                                                        connectivity=8, ltype=cv2.CV_32S)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    return keep[lab]


def label_at(mask: np.ndarray, x: int, y: int) -> int:
    """Label (1-based, as in :func:`components`) of the speck under pixel (x, y); 0 if none."""
    m = np.asarray(mask, dtype=bool)
    x, y = int(x), int(y)
    if not (0 <= y < m.shape[0] and 0 <= x < m.shape[1]) or not m[y, x]:
        return 0
    _, lab = labels(m)
    return int(lab[y, x])


def component_mask(mask: np.ndarray, x: int, y: int) -> np.ndarray:
    """Bool mask of the single speck under (x, y) (all False when (x, y) is not dust). For
    click-to-remove: ``mask & ~component_mask(mask, x, y)``."""
    m = np.asarray(mask, dtype=bool)
    x, y = int(x), int(y)
    out = np.zeros(m.shape, dtype=bool)
    if not (0 <= y < m.shape[0] and 0 <= x < m.shape[1]) or not m[y, x]:
        return out
    # flood fill is local: cost proportional to the speck, not the image
    img = np.ascontiguousarray(m).view(np.uint8).copy()
    ffmask = np.zeros((m.shape[0] + 2, m.shape[1] + 2), np.uint8)
    cv2.floodFill(img, ffmask, (x, y), 2, loDiff=0, upDiff=0, flags=8)
    return img == 2


def _luminance(reference: np.ndarray) -> np.ndarray:
    ref = np.asarray(reference, dtype=np.float32)
    return ref.mean(axis=2) if ref.ndim == 3 else ref


def _ring_depth(lum: np.ndarray, m: np.ndarray, lab: np.ndarray, k: int, bbox: tuple[int, int, int, int],
                area: int) -> Optional[float]:
    """Darkening of speck ``k`` on the reference: ``1 - mean(reference / fill)`` inside it, where the
    fill is a quadratic surface fitted (3-sigma clipped, 3 rounds) to the ring 2..(2 + max(3,
    sqrt(area)/2)) px outside the speck with every mask pixel removed -- the surface follows the
    limb's gradient and texture under the speck, which a single median of the ring did not (real 3 %
    donuts came out negative). None when the ring is too small to fit or the fill is not positive."""
    x, y, w, h = bbox
    H, W = m.shape
    r = 2 + max(3, int(np.sqrt(area) / 2))
    x0, y0, x1, y1 = max(0, x - r), max(0, y - r), min(W, x + w + r), min(H, y + h + r)
    sub = (lab[y0:y1, x0:x1] == k).view(np.uint8)
    ring = cv2.dilate(sub, disk(r)).astype(bool) & ~cv2.dilate(sub, disk(2)).astype(bool) & ~m[y0:y1, x0:x1]
    if int(ring.sum()) < 12:
        return None
    L = lum[y0:y1, x0:x1].astype(np.float64)
    yy, xx = np.mgrid[0:y1 - y0, 0:x1 - x0].astype(np.float64)
    X, Y = (xx - (x1 - x0) / 2) / r, (yy - (y1 - y0) / 2) / r
    terms = (np.ones_like(X), X, Y, X * X, X * Y, Y * Y)
    A = np.stack([t[ring] for t in terms], axis=1)
    b = L[ring]
    keep = np.ones(len(b), bool)
    for _ in range(3):
        coef = np.linalg.lstsq(A[keep], b[keep], rcond=None)[0]
        res = b - A @ coef
        spread = 1.4826 * float(np.median(np.abs(res[keep] - np.median(res[keep])))) + 1e-12
        keep = np.abs(res) <= 3 * spread
        if keep.sum() < len(terms) * 2:
            return None
    inside = sub.astype(bool)
    fill = sum(c * t[inside] for c, t in zip(coef, terms))
    if not np.all(fill > 0):
        return None
    return float(1.0 - np.mean(L[inside] / fill))


def components(mask: np.ndarray, reference: Optional[np.ndarray] = None,
               flat: Optional[np.ndarray] = None) -> list[Speck]:
    """Connected specks with area, centroid, bbox and attenuation: from ``flat`` when given (a flat
    built for this mask), else estimated on ``reference``."""
    m = np.ascontiguousarray(np.asarray(mask, dtype=bool))
    if not m.any():
        return []
    n, lab, stats, cents = cv2.connectedComponentsWithStats(m.view(np.uint8), connectivity=8,
                                                            ltype=cv2.CV_32S)
    lum = _luminance(reference) if reference is not None else None
    fl = None
    if flat is not None:
        fl = _luminance(flat)
        if fl.shape != m.shape:
            raise InputError(f"flat is {fl.shape[1]}x{fl.shape[0]} but the mask is {m.shape[1]}x{m.shape[0]}")
    H, W = m.shape
    out: list[Speck] = []
    for k in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[k])
        att = None
        source = None
        if fl is not None:
            sub = lab[y:y + h, x:x + w] == k
            att = float(1.0 - fl[y:y + h, x:x + w][sub].astype(np.float64).mean())
            source = "flat"
        elif lum is not None:
            att = _ring_depth(lum, m, lab, k, (x, y, w, h), area)
            source = "reference" if att is not None else None
        out.append(Speck(label=k, area=area, centroid=(float(cents[k][0]), float(cents[k][1])),
                         bbox=(x, y, w, h), attenuation=att, depth_from=source))
    return out

"""The dust mask: a bool ``(H, W)`` array, True = dust. Import, export, morphology, specks.

Files we write are 8-bit PNG with 255 = dust. Files we read may be PNG, TIFF or FITS of any bit
depth; see :func:`load_mask` for how soft and colour masks are interpreted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ..errors import InputError

__all__ = ["Speck", "load_mask", "mask_from_array", "save_mask", "grow", "shrink", "remove_small",
           "invert", "components", "label_at", "component_mask", "disk"]


@dataclass
class Speck:
    """One connected dust region (8-connectivity).

    label: 1-based label (as in :func:`labels`); area: pixels; centroid: (x, y); bbox: (x, y, w, h);
    attenuation: the speck's darkening. With a flat: ``1 - mean(flat)`` over the speck, the darkening
    the calibration removes. Else, with a reference, an estimate: ``1 - median(reference inside) /
    median(ring around)``, where the ring is the band 2..(2 + max(3, sqrt(area)/2)) px outside the
    speck with every mask pixel removed (solar texture under a faint speck can make it negative);
    None without either (or when the ring is empty). 0.3 means the speck passes 70 % of the light.
    depth_from: "flat", "reference" or None -- where ``attenuation`` came from.
    """

    label: int
    area: int
    centroid: tuple[float, float]
    bbox: tuple[int, int, int, int]
    attenuation: Optional[float] = None
    depth_from: Optional[str] = None


# -- import / export ---------------------------------------------------------------------------

def _threshold(data: np.ndarray) -> np.ndarray:
    """Binary mask from any image: full scale is 1 when every value is <= 1 (0/1 masks, float
    masks), else 255 when every value is <= 255 (8-bit data even in a 16-bit container), else 65535,
    else the maximum. Dust is a value >= half the full scale. Colour: dust in any channel."""
    arr = np.asarray(data)
    if arr.dtype == bool:
        m = arr
    else:
        a = arr.astype(np.float64, copy=False)
        finite = np.isfinite(a)
        a = np.where(finite, a, 0.0)
        vmax = float(a.max()) if a.size else 0.0
        full = 1.0 if vmax <= 1.0 else 255.0 if vmax <= 255.0 else 65535.0 if vmax <= 65535.0 else vmax
        m = a >= full / 2.0
    if m.ndim == 3:
        m = m[..., :3].any(axis=2) if m.shape[2] != 2 else m[..., 0]  # (grey, alpha): use grey
    return m


def mask_from_array(data: np.ndarray, shape: tuple[int, int], name: str = "mask") -> tuple[np.ndarray, list[str]]:
    """Threshold ``data`` (see :func:`load_mask`) and fit it to ``shape`` (H, W)."""
    warnings: list[str] = []
    arr = np.asarray(data)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise InputError(f"a mask must be a 2-D image, not shape {arr.shape}", name)
    H, W = int(shape[0]), int(shape[1])
    h, w = arr.shape[:2]
    if (h, w) == (H, W):
        return _threshold(arr), warnings
    if h * W != w * H:
        raise InputError(f"mask is {w}x{h} but the frame is {W}x{H} (different aspect ratio; "
                         f"cannot be resampled)", name)
    soft = _threshold(arr).astype(np.float32)
    interp = cv2.INTER_AREA if (w > W) else cv2.INTER_LINEAR
    resized = cv2.resize(soft, (W, H), interpolation=interp)
    warnings.append(f"mask is {w}x{h}, resampled to the frame's {W}x{H} (scale {W / w:.4g}); "
                    f"check its edges")
    return resized >= 0.5, warnings


def load_mask(path: str | os.PathLike, shape: tuple[int, ...]) -> tuple[np.ndarray, list[str]]:
    """Read a mask file (PNG/TIFF/FITS/JPEG, any bit depth) for frames of ``shape`` (H, W[, C]).

    Soft masks are thresholded at half scale (see :func:`_threshold`); colour masks count dust in
    any channel. A mask whose size differs from the frame by a pure scale factor (same aspect
    ratio) is resampled and a warning returned; any other size is an :class:`InputError` naming
    both sizes. Returns ``(bool mask, warnings)``.
    """
    from ..io.single import read_image

    data = read_image(path, expect=tuple(shape[:2]))
    return mask_from_array(data, tuple(shape[:2]), name=str(path))


def save_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write ``mask`` as an 8-bit PNG (255 = dust, 0 = clean), atomically."""
    from ..io.single import write_image

    p = Path(path)
    if p.suffix.lower() not in (".png", ".tif", ".tiff"):
        raise InputError("masks are written as PNG (use a .png name)", p)
    m = np.asarray(mask)
    if m.ndim != 2:
        raise InputError(f"a mask must be 2-D, not shape {m.shape}", p)
    return write_image(p, np.where(m.astype(bool), np.uint8(255), np.uint8(0)))


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
            r = 2 + max(3, int(np.sqrt(area) / 2))
            x0, y0 = max(0, x - r), max(0, y - r)
            x1, y1 = min(W, x + w + r), min(H, y + h + r)
            sub = lab[y0:y1, x0:x1] == k
            outer = cv2.dilate(sub.view(np.uint8), disk(r)).astype(bool)
            inner = cv2.dilate(sub.view(np.uint8), disk(2)).astype(bool)
            ring = outer & ~inner & ~m[y0:y1, x0:x1]
            if ring.any():
                lsub = lum[y0:y1, x0:x1]
                around = float(np.median(lsub[ring]))
                inside = float(np.median(lsub[sub]))
                if around > 0:
                    att = 1.0 - inside / around
                    source = "reference"
        out.append(Speck(label=k, area=area, centroid=(float(cents[k][0]), float(cents[k][1])),
                         bbox=(x, y, w, h), attenuation=att, depth_from=source))
    return out

"""The one mask codec: mask files (PNG/TIFF/FITS/JPEG, any bit depth) to a bool ``(H, W)`` array
and back. Files we write are 8-bit PNG with 255 = dust; see :func:`load_mask` for how soft and
colour masks are read."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError

__all__ = ["decode_mask", "encode_mask", "mask_from_array", "load_mask", "read_mask", "save_mask"]


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


def _as_image(data: np.ndarray, name: str) -> np.ndarray:
    """(H, W) or (H, W, C) from a stored image (FITS may store the channels first)."""
    arr = np.asarray(data)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise InputError(f"a mask must be a 2-D image, not shape {arr.shape}", name)
    return arr


def mask_from_array(data: np.ndarray, shape: tuple[int, int], name: str = "mask") -> tuple[np.ndarray, list[str]]:
    """Threshold ``data`` (see :func:`load_mask`) and fit it to ``shape`` (H, W)."""
    warnings: list[str] = []
    arr = _as_image(data, name)
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
    from .single import read_image

    hw = (int(shape[0]), int(shape[1]))
    data = read_image(path, expect=hw)
    return mask_from_array(data, hw, name=str(path))


def read_mask(path: str | os.PathLike, expect: tuple[int, ...] | None = None) -> np.ndarray:
    """A mask file decoded as stored: bool ``(h, w)``, thresholded like :func:`load_mask` but never
    resampled (a session's own mask must match its input exactly; the caller compares sizes).
    ``expect`` (H, W): an image claiming far more pixels is refused by its header. Raises
    :class:`InputError` naming the file."""
    from .single import read_image

    data = read_image(path, expect=None if expect is None else (int(expect[0]), int(expect[1])))
    return _threshold(_as_image(data, str(path)))


def save_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write ``mask`` as an 8-bit PNG (255 = dust, 0 = clean), atomically."""
    from .single import write_image

    p = Path(path)
    if p.suffix.lower() not in (".png", ".tif", ".tiff"):
        raise InputError("masks are written as PNG (use a .png name)", p)
    m = np.asarray(mask)
    if m.ndim != 2:
        raise InputError(f"a mask must be 2-D, not shape {m.shape}", p)
    return write_image(p, encode_mask(m))


def encode_mask(mask: np.ndarray) -> np.ndarray:
    """The 8-bit image we store for a mask: 255 = dust, 0 = clean."""
    return np.where(np.asarray(mask).astype(bool), np.uint8(255), np.uint8(0))


def decode_mask(data: np.ndarray) -> np.ndarray:
    """A bool mask from any image of one (see :func:`_threshold`)."""
    return _threshold(data)


"""Single images: reference frames, masks, flats and AI "clean" images (FITS, TIFF, PNG, JPEG).

``read_image`` returns the stored samples (no normalisation) as (H, W) or (H, W, C) with RGB channel
order for colour files; ``write_image`` writes atomically.
"""

from __future__ import annotations

import io as _io
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import AtomicOutput, disk_errors

FITS_EXTS = (".fits", ".fit", ".fts")
TIFF_EXTS = (".tif", ".tiff")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image. Raises :class:`InputError` naming the file on any problem."""
    p = Path(path)
    if not p.is_file():
        raise InputError("no such file", p)
    ext = p.suffix.lower()
    try:
        if ext in FITS_EXTS or ext in TIFF_EXTS:
            # the sequence readers honour ROWORDER, BAYERPAT and the colour rules, so a reference
            # or mask from Siril lines up with the video
            from . import open_sequence

            with open_sequence(p) as seq:
                if seq.n_frames != 1:
                    raise InputError(f"holds {seq.n_frames} frames; expected a single image", p)
                return np.array(seq.frame(0))
        import cv2

        raw = np.fromfile(p, dtype=np.uint8)
        data = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
        if data is None:
            raise InputError("not a readable image (damaged or unsupported encoding)", p)
        if data.ndim == 3:
            data = data[..., :3][..., ::-1] if data.shape[2] >= 3 else data[..., 0]
        return np.ascontiguousarray(data)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure becomes one clear line
        raise InputError(f"cannot read image: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", p) from None


def encode_png(data: np.ndarray) -> bytes:
    """PNG bytes of a uint8/uint16 (H, W) or RGB (H, W, 3) array."""
    import cv2

    arr = np.asarray(data)
    if arr.ndim == 3:
        arr = arr[..., ::-1]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
    if not ok:
        raise InputError("cannot encode PNG")
    return buf.tobytes()


def write_image(path: str | os.PathLike, data: np.ndarray, header: dict | None = None,
                overwrite: bool = True) -> Path:
    """Write one image atomically: FITS (any dtype; colour as (C, H, W)), TIFF, or PNG (uint8/uint16)."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise InputError("output exists (use --overwrite to replace it)", p)
    if not p.resolve().parent.is_dir():
        raise InputError(f"output directory {p.resolve().parent} does not exist", p)
    ext = p.suffix.lower()
    arr = np.asarray(data)
    with AtomicOutput(p) as tmp, disk_errors(p):
        if ext in FITS_EXTS:
            from astropy.io import fits

            out = np.moveaxis(arr, -1, 0) if arr.ndim == 3 else arr
            hdu = fits.PrimaryHDU(np.ascontiguousarray(out))
            for k, v in (header or {}).items():
                hdu.header[k] = v
            buf = _io.BytesIO()
            hdu.writeto(buf)
            Path(tmp).write_bytes(buf.getvalue())
        elif ext in TIFF_EXTS:
            import tifffile

            tifffile.imwrite(tmp, arr, photometric="rgb" if arr.ndim == 3 else "minisblack")
        elif ext == ".png":
            if arr.dtype not in (np.uint8, np.uint16):
                raise InputError(f"PNG needs 8- or 16-bit integers, not {arr.dtype}", p)
            Path(tmp).write_bytes(encode_png(arr))
        else:
            raise InputError(f"cannot write images of type '{ext}' (use .fits, .tif or .png)", p)
    return p

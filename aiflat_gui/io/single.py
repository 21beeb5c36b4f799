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


#: an image given for frames of H x W (a mask, a flat) may be at most this many times their area
MAX_AREA_RATIO = 64


def _check_expected(w: int, h: int, expect, p: Path) -> None:
    if expect is None:
        return
    H, W = int(expect[0]), int(expect[1])
    if w * h > MAX_AREA_RATIO * max(1, H * W):
        raise InputError(f"image is {w}x{h}, far larger than the {W}x{H} frames it is for; "
                         "give the file made for this video", p)


def _probe(p: Path, expect) -> tuple:
    """(w, h, channels, dtype) from a PNG/JPEG header, checked against the file's size and the
    free memory before anything is decoded (a 0.75 MB PNG can claim 32000x24000 pixels)."""
    from .images import _check_claimed_size, _probe_jpeg, _probe_png

    with open(p, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89PNG"):
        fmt, probe = "png", _probe_png(p)
    elif head.startswith(b"\xff\xd8"):
        fmt, probe = "jpeg", _probe_jpeg(p)
    else:
        raise InputError("not a PNG or JPEG image (unknown signature)", p)
    _check_expected(probe[0], probe[1], expect, p)
    _check_claimed_size(p, probe, fmt)
    return probe


def read_image(path: str | os.PathLike, expect: tuple[int, ...] | None = None) -> np.ndarray:
    """Read one image. Raises :class:`InputError` naming the file on any problem. ``expect``:
    (H, W) of the frames the image is for (a mask, a flat): an image claiming far more pixels is
    refused by its header, before it is decoded."""
    from .inputs import check_input

    p = Path(path)
    check_input(p, folder_ok=False)
    ext = p.suffix.lower()
    try:
        if ext in FITS_EXTS or ext in TIFF_EXTS:
            # the sequence readers honour ROWORDER, BAYERPAT and the colour rules, so a reference
            # or mask from Siril lines up with the video
            from . import open_sequence

            with open_sequence(p) as seq:
                if seq.n_frames != 1:
                    raise InputError(f"holds {seq.n_frames} frames; expected a single image", p)
                _check_expected(seq.width, seq.height, expect, p)
                return np.array(seq.frame(0))
        import cv2

        _probe(p, expect)
        raw = np.fromfile(p, dtype=np.uint8)
        from .inputs import native_stderr_quiet

        with native_stderr_quiet():
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

"""The calibration arithmetic: ``out = round((raw - pedestal) / flat + pedestal)``, clipped to the
input's sample range (integer data: 0 .. 2**bit_depth - 1; float data stays float, neither rounded
nor clipped). Only the pixels where the flat differs from 1.0 are computed (their flat indices are
precomputed once); every other pixel is *copied*, so the output equals the input bit for bit there.
Streaming a whole sequence to a file is :func:`aiflat_gui.pipeline.calibrate_sequence`.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from ..errors import InputError


def validate_flat(flat: np.ndarray, name: str | os.PathLike | None = None) -> np.ndarray:
    """float32 copy of ``flat`` after checking every value is finite and > 0 (InputError otherwise)."""
    f = np.asarray(flat)
    if f.dtype.kind not in "fiub":
        raise InputError(f"flat has unsupported sample type {f.dtype}", name)
    f = f.astype(np.float32)
    bad = ~np.isfinite(f)
    if bad.any():
        raise InputError(f"flat has {int(bad.sum())} non-finite values (NaN or infinity)", name)
    nonpos = f <= 0
    if nonpos.any():
        raise InputError(f"flat has {int(nonpos.sum())} values <= 0 (a flat must be > 0 everywhere)", name)
    return f


def check_flat_is_ours(flat: np.ndarray, name: str | os.PathLike | None = None) -> np.ndarray:
    """A flat file given to calibrate must be an aiflat flat: exactly 1.0 away from the dust (most
    of its pixels). An export made for another program (AutoStakkert!/PSS 16-bit TIFF, PixInsight's
    0.5 x flat), a scaled flat or a camera master flat would change every pixel: refused
    (InputError) saying what it looks like and what to do. Returns the float32 flat."""
    raw = np.asarray(flat)
    f = validate_flat(raw, name)
    ones = float(np.count_nonzero(f == 1.0)) / max(1, f.size)
    if ones >= 0.5:
        return f
    med = float(np.median(f))
    if raw.dtype.kind in "ui" and med > 255:
        looks = f"a {raw.dtype.itemsize * 8}-bit integer flat (median {med:.0f}), like the AutoStakkert!/PSS export"
    elif abs(med - 0.5) < 0.05:
        looks = f"a flat scaled by 0.5 (median {med:.4g}), like the PixInsight export"
    else:
        looks = f"a flat whose median is {med:.6g}, not 1.0 (scaled, or a master flat from another program)"
    raise InputError(f"not an aiflat flat: {ones:.0%} of its pixels are exactly 1.0, it looks like {looks}; "
                     "give the flat.fits that 'aiflat flat' or 'aiflat run' wrote (export-flat files are "
                     "for other programs), or calibrate with --mask", name)


def fit_flat(flat: np.ndarray, seq, name: str | os.PathLike | None = None) -> np.ndarray:
    """Check ``flat`` against the frames of ``seq`` and return it shaped like one frame
    (a 2-D flat is used for every channel of colour data)."""
    f = validate_flat(flat, name)
    if f.ndim == 3 and f.shape[0] in (1, 3) and f.shape[-1] not in (1, 3):
        f = np.moveaxis(f, 0, -1)
    if f.ndim == 3 and f.shape[2] == 1:
        f = f[..., 0]
    if f.shape[:2] != (seq.height, seq.width):
        raise InputError(f"flat is {f.shape[1]}x{f.shape[0]} but the frames are {seq.width}x{seq.height}", name)
    if f.ndim == 3:
        if seq.channels == 1:
            raise InputError(f"flat has {f.shape[2]} channels but the frames are single-channel", name)
        if f.shape[2] != seq.channels:
            raise InputError(f"flat has {f.shape[2]} channels but the frames have {seq.channels}", name)
    elif seq.channels > 1:
        f = np.repeat(f[..., None], seq.channels, axis=2)
    return np.ascontiguousarray(f)


def sample_limits(seq) -> Optional[tuple[float, float]]:
    """(lo, hi) for integer data (``2**bit_depth - 1`` when the data uses fewer bits than its
    type holds), None for float data."""
    dt = np.dtype(seq.dtype)
    if dt.kind == "f":
        return None
    info = np.iinfo(dt)
    hi = info.max
    bits = int(getattr(seq, "bit_depth", 0) or 0)
    if 0 < bits < dt.itemsize * 8:
        hi = (1 << bits) - 1
    return float(info.min), float(hi)


class FrameCalibrator:
    """The per-frame arithmetic, shared by the streaming loop, previews and tests.

    ``apply(frames)`` calibrates a ``(k, *frame_shape)`` array of the sequence's sample type in
    place and returns the number of clipped values.
    """

    def __init__(self, flat: np.ndarray, dtype, limits: Optional[tuple[float, float]], pedestal: float = 0.0):
        f = np.ascontiguousarray(flat, dtype=np.float32).reshape(-1)
        self.idx = np.flatnonzero(f != 1.0)
        self.flat_values = f[self.idx].astype(np.float64)
        self.dtype = np.dtype(dtype)
        self.limits = limits
        self.pedestal = float(pedestal)

    def values(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated float64 values (before rounding/clipping) of raw samples at ``self.idx``."""
        p = self.pedestal
        return (raw.astype(np.float64) - p) / self.flat_values + p

    def compute(self, raw: np.ndarray) -> tuple[np.ndarray, int]:
        """New values for raw samples ``(k, len(idx))`` at ``self.idx``: (values in the sample type,
        number of values clipped)."""
        v = self.values(raw)
        clipped = 0
        if self.limits is not None:
            v = np.rint(v)
            lo, hi = self.limits
            clipped = int(np.count_nonzero((v < lo) | (v > hi)))
            np.clip(v, lo, hi, out=v)
        return v.astype(self.dtype), clipped

    def apply(self, frames: np.ndarray) -> int:
        if len(self.idx) == 0:
            return 0
        flat2 = frames.reshape(frames.shape[0], -1)
        v, clipped = self.compute(flat2[:, self.idx])
        flat2[:, self.idx] = v
        return clipped

    def frame(self, raw: np.ndarray) -> np.ndarray:
        """A calibrated copy of one frame."""
        out = np.array(raw, copy=True)[None]
        self.apply(out)
        return out[0]


def calibrate_array(raw: np.ndarray, flat: np.ndarray, pedestal: float = 0.0,
                    limits: Optional[tuple[float, float]] | str = "dtype") -> np.ndarray:
    """Calibrate one in-memory frame, or a stack of frames, exactly as :func:`calibrate_sequence`
    does (a 2-D flat applies to every channel). ``limits="dtype"``: the full range of the array's
    integer type; None: no rounding or clipping (float data)."""
    raw = np.asarray(raw)
    f = np.asarray(flat, dtype=np.float32)
    if limits == "dtype":
        limits = None if raw.dtype.kind == "f" else (float(np.iinfo(raw.dtype).min), float(np.iinfo(raw.dtype).max))
    single = raw.shape == f.shape or (f.ndim == 2 and raw.ndim == 3 and raw.shape[:2] == f.shape)
    stack = not single
    frame_shape = raw.shape[1:] if stack else raw.shape
    if f.shape != frame_shape:
        if f.ndim == 2 and len(frame_shape) == 3 and frame_shape[:2] == f.shape:
            f = np.repeat(f[..., None], frame_shape[2], axis=2)
        else:
            raise InputError(f"flat of shape {f.shape} does not fit data of shape {raw.shape}")
    fc = FrameCalibrator(f, raw.dtype, None if isinstance(limits, str) else limits, pedestal)
    out = np.array(raw if stack else raw[None], copy=True)
    fc.apply(out)
    return out if stack else out[0]

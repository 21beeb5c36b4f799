"""Display stretches: plain state plus fast LUT-based rendering. Display only, never changes data.

The display state is a plain dataclass (glue style): a mode, black/white points in *data units*
and the parameter of the non-linear curve. Rendering follows what the field notes measured as
fast with pyqtgraph: hand the raw (uint16/float) array to the image item together with
``levels=(black, white)`` and a 256-entry uint8 LUT that encodes the curve. For colour data,
where pyqtgraph ignores LUTs, :func:`apply` produces the stretched uint8 image directly.

Curves map ``t = clip((x - black) / (white - black), 0, 1)`` to ``[0, 1]``:

* ``linear``: ``t``
* ``auto``: PixInsight-STF-like midtones transfer function ``MTF(midtone, t)``; :func:`stf_auto`
  chooses black (median - 2.8 MAD) and midtone so the background lands at 0.25
* ``asinh``: ``asinh(beta t) / asinh(beta)``
* ``log``: ``log(1 + a t) / log(1 + a)``
* ``gamma``: ``t ** (1 / gamma)`` (gamma > 1 brightens the shadows)

Every function here reads its input array and never writes to it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import cv2
import numpy as np

from ..errors import InputError

MODES = ("linear", "auto", "asinh", "log", "gamma")
BAYER_CODES = {
    "RGGB": cv2.COLOR_BayerRGGB2RGB,
    "GRBG": cv2.COLOR_BayerGRBG2RGB,
    "GBRG": cv2.COLOR_BayerGBRG2RGB,
    "BGGR": cv2.COLOR_BayerBGGR2RGB,
}
#: pixels used by the statistics (auto levels, STF, histograms): enough for stable percentiles,
#: small enough to cost about a millisecond on a 4K frame
SAMPLE_PIXELS = 1 << 18


@dataclass
class StretchState:
    """What the screen shows; black/white are in data units (e.g. 0..65535 for uint16)."""

    mode: str = "linear"
    black: float = 0.0
    white: float = 65535.0
    gamma: float = 2.2        # "gamma" mode: t ** (1/gamma)
    asinh_beta: float = 10.0  # "asinh" mode softening (larger = stronger)
    log_a: float = 1000.0     # "log" mode strength
    midtone: float = 0.5      # "auto" mode MTF midtones balance (0.5 = linear)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"unknown stretch mode '{self.mode}' (choose from {', '.join(MODES)})")
        self.black = float(self.black)
        self.white = float(self.white)

    @property
    def levels(self) -> tuple[float, float]:
        """(black, white) with white strictly above black (what pyqtgraph's ``levels=`` wants)."""
        b, w = float(self.black), float(self.white)
        if not w > b:
            w = b + max(abs(b) * 1e-6, 1e-6)
        return b, w

    def copy(self, **changes) -> "StretchState":
        return replace(self, **changes)


def subsample(image: np.ndarray, target: int = SAMPLE_PIXELS) -> np.ndarray:
    """A strided view with about ``target`` pixels per channel (no copy). The stride is odd, so
    every colour of a raw 2x2 Bayer pattern is sampled."""
    h, w = image.shape[:2]
    step = max(1, int(np.sqrt(h * w / float(target))))
    if step > 1 and step % 2 == 0:
        step += 1
    return image[::step, ::step]


def _finite(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values).ravel()
    if v.dtype.kind == "f":
        v = v[np.isfinite(v)]
    return v


def sample_values(image: np.ndarray, target: int = SAMPLE_PIXELS) -> np.ndarray:
    """Flattened finite values of a subsample of ``image`` (all channels), a new array."""
    return _finite(subsample(np.asarray(image), target))


def dtype_range(dtype) -> tuple[float, float]:
    """Nominal (min, max) of a sample type: the integer range, or (0, 1) for floats."""
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        return float(info.min), float(info.max)
    if dt.kind == "b":
        return 0.0, 1.0
    return 0.0, 1.0


def auto_levels(image: np.ndarray, low_pct: float = 0.1, high_pct: float = 99.9) -> tuple[float, float]:
    """Percentile black/white points (data units) from a subsample of ``image``."""
    v = sample_values(image)
    if v.size == 0:
        return dtype_range(np.asarray(image).dtype)
    lo, hi = np.percentile(v, [low_pct, high_pct])
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        hi = lo + (1.0 if np.asarray(image).dtype.kind in "uib" else max(abs(lo) * 1e-3, 1e-6))
    return lo, hi


def mtf(m: float, x):
    """PixInsight's midtones transfer function: MTF(m, 0)=0, MTF(m, m)=0.5, MTF(m, 1)=1."""
    x = np.asarray(x, dtype=np.float64)
    m = float(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = (m - 1.0) * x / ((2.0 * m - 1.0) * x - m)
    y = np.where(x <= 0.0, 0.0, np.where(x >= 1.0, 1.0, y))
    return y if y.ndim else float(y)


def stf_auto(image: np.ndarray, shadows_clip: float = -2.8, target_background: float = 0.25,
             base: Optional[StretchState] = None) -> StretchState:
    """A PixInsight ScreenTransferFunction-like automatic stretch.

    black = median + shadows_clip * MADN (MAD scaled by 1.4826), white = the data maximum, and the
    midtones balance is chosen so that the median maps to ``target_background`` on screen."""
    v = sample_values(image)
    state = (base or StretchState()).copy(mode="auto")
    if v.size == 0:
        lo, hi = dtype_range(np.asarray(image).dtype)
        return state.copy(black=lo, white=hi, midtone=0.5)
    v = v.astype(np.float64, copy=False)
    med = float(np.median(v))
    madn = 1.4826 * float(np.median(np.abs(v - med)))
    vmin, vmax = float(v.min()), float(v.max())
    black = max(vmin, med + shadows_clip * madn)
    white = vmax
    if not white > black:
        white = black + 1.0
    x0 = (med - black) / (white - black)
    if x0 <= 0.0:
        midtone = 0.5
    else:
        midtone = float(mtf(target_background, x0))  # solves MTF(midtone, x0) = target_background
    midtone = min(max(midtone, 1e-6), 1.0 - 1e-6)
    return state.copy(black=black, white=white, midtone=midtone)


def curve(state: StretchState, t) -> np.ndarray:
    """The non-linear part of ``state`` applied to normalised ``t`` in [0, 1] (float64 in [0, 1])."""
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    mode = state.mode
    if mode == "linear":
        y = t
    elif mode == "auto":
        y = mtf(state.midtone, t)
    elif mode == "asinh":
        beta = max(float(state.asinh_beta), 1e-6)
        y = np.arcsinh(beta * t) / np.arcsinh(beta)
    elif mode == "log":
        a = max(float(state.log_a), 1e-6)
        y = np.log1p(a * t) / np.log1p(a)
    elif mode == "gamma":
        g = max(float(state.gamma), 1e-3)
        y = np.power(t, 1.0 / g)
    else:  # __post_init__ guards construction; a mutated mode still gets a clear error
        raise InputError(f"unknown stretch mode '{mode}'")
    return np.clip(y, 0.0, 1.0)


def make_lut(state: StretchState, dtype=np.uint8, n: int = 256) -> np.ndarray:
    """An ``n``-entry lookup table of the curve (index i <-> t = i/(n-1)), monotonic
    non-decreasing, scaled to the full range of ``dtype`` (uint8: 0..255; float: 0..1).

    With pyqtgraph: ``ImageItem.setImage(data, levels=state.levels, lut=make_lut(state))``."""
    if n < 2:
        raise InputError(f"a LUT needs at least 2 entries, not {n}")
    y = curve(state, np.linspace(0.0, 1.0, int(n)))
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return y.astype(dt)
    top = np.iinfo(dt).max
    return np.round(y * top).astype(dt)


def apply(image: np.ndarray, state: StretchState, out: Optional[np.ndarray] = None) -> np.ndarray:
    """The stretched uint8 display image of ``image`` (same shape; mono or (H, W, C)).

    Integer data of up to 16 bits goes through one table lookup per pixel; float data is scaled
    to 4096 bins first. ``image`` is never modified."""
    image = np.asarray(image)
    black, white = state.levels
    if image.dtype.kind in "ub" and image.dtype.itemsize <= 2:
        if image.dtype.kind == "b":
            image = image.view(np.uint8)
        values = np.arange(1 << (8 * image.dtype.itemsize), dtype=np.float64)
        full = np.round(curve(state, (values - black) / (white - black)) * 255.0).astype(np.uint8)
        return np.take(full, image, out=out)
    lut = make_lut(state, np.uint8, 4096)
    scale = 4095.0 / (white - black)
    idx = np.subtract(image, black, dtype=np.float32)
    idx *= np.float32(scale)
    np.nan_to_num(idx, copy=False, nan=0.0, posinf=4095.0, neginf=0.0)
    np.clip(idx, 0.0, 4095.0, out=idx)
    return np.take(lut, idx.astype(np.int32), out=out)


_CV_DEPTHS = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64)}


def apply_fast(image: np.ndarray, state: StretchState) -> np.ndarray:
    """Like :func:`apply`, at display (8-bit) precision, with OpenCV: ``t`` is rounded to one of
    256 steps and looked up in ``make_lut(state)`` — exactly what pyqtgraph does with the mono
    ``levels`` + 256-entry LUT route, so colour and mono frames look alike. Avoids numpy's
    64-bit index arrays (faster on 16-bit colour frames). ``image`` is not modified."""
    image = np.asarray(image)
    if image.dtype not in _CV_DEPTHS or image.ndim not in (2, 3) or image.size == 0:
        return apply(image, state)
    black, white = state.levels
    alpha = 255.0 / (white - black)
    src = image if image.flags.c_contiguous else np.ascontiguousarray(image)
    if src.dtype.kind == "f" and not np.isfinite(src).all():
        src = np.nan_to_num(src, nan=black, posinf=white, neginf=black)
    flat = src.reshape(src.shape[0], -1)  # one channel: OpenCV scalars then apply to every value
    # clamp below black first: convertScaleAbs takes |x*alpha + beta| before saturating to 0..255
    if not (src.dtype.kind == "u" and black <= 0):
        flat = cv2.max(flat, float(black))  # type: ignore[call-overload]  # OpenCV takes a scalar; its stubs say array
    idx = cv2.convertScaleAbs(flat, alpha=alpha, beta=-black * alpha)
    return cv2.LUT(idx, make_lut(state, np.uint8, 256)).reshape(image.shape)


def _check_bayer(frame: np.ndarray, pattern: str) -> tuple[str, np.ndarray]:
    """The upper-cased pattern and the frame as a 2-D array, or a clear InputError."""
    pattern = str(pattern).upper()
    if pattern not in BAYER_CODES:
        raise InputError(f"unknown Bayer pattern '{pattern}' (choose from {', '.join(BAYER_CODES)})")
    frame = np.asarray(frame)
    if frame.ndim != 2:
        raise InputError(f"a Bayer frame must be 2-D, not of shape {frame.shape}")
    return pattern, frame


def debayer_for_display(frame: np.ndarray, pattern: str) -> np.ndarray:
    """Demosaic a raw CFA frame (RGGB/GRBG/GBRG/BGGR) to an (H, W, 3) RGB array of the same
    type, for display only (bilinear). Odd sizes are handled; the input is not modified."""
    pattern, frame = _check_bayer(frame, pattern)
    src = frame
    if src.dtype not in (np.uint8, np.uint16, np.float32):
        src = src.astype(np.float32)
    if src.dtype == np.float32:
        # cv2 demosaics only 8/16-bit data: scale floats into uint16 and back
        lo, hi = float(np.nanmin(src)), float(np.nanmax(src))
        span = hi - lo if hi > lo else 1.0
        q = np.round((np.nan_to_num(src, nan=lo) - lo) * (65535.0 / span)).astype(np.uint16)
        rgb = cv2.cvtColor(q, BAYER_CODES[pattern]).astype(np.float32)
        rgb *= np.float32(span / 65535.0)
        rgb += np.float32(lo)
        return rgb
    return cv2.cvtColor(np.ascontiguousarray(src), BAYER_CODES[pattern])


def stretch_bayer_for_display(frame: np.ndarray, pattern: str, state: StretchState) -> np.ndarray:
    """The stretched uint8 RGB display image of a raw CFA frame: stretch first (one value per
    pixel, a third of the work), then demosaic the 8-bit result. Equal to demosaic-then-stretch
    on uniform colour areas; differs only by the curve's curvature across interpolated edges,
    invisible on screen. Display only; ``frame`` is not modified."""
    pattern, frame = _check_bayer(frame, pattern)
    return cv2.cvtColor(apply_fast(frame, state), BAYER_CODES[pattern])


def to_display_rgb(frame: np.ndarray, color: str = "mono") -> tuple[np.ndarray, bool]:
    """What to show for ``frame`` of layout ``color`` ("mono", a Bayer pattern, "RGB", "BGR"):
    returns ``(array, is_colour)`` where ``array`` is (H, W) mono or (H, W, 3) in RGB order.
    Mono data is returned as is (no copy); BGR as a reversed-channel view."""
    frame = np.asarray(frame)
    color = str(color or "mono")
    up = color.upper()
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[..., 0]
    if frame.ndim == 2:
        if up in BAYER_CODES:
            return debayer_for_display(frame, up), True
        return frame, False
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        rgb = frame[..., :3]
        if up == "BGR":
            rgb = rgb[..., ::-1]
        return rgb, True
    raise InputError(f"cannot display an array of shape {frame.shape} as '{color}'")


def display_args(frame: np.ndarray, color: str, state: StretchState):
    """``(data, levels, lut)`` to hand to a pyqtgraph ImageItem for ``frame`` under ``state``.

    Mono: the raw data with ``levels=state.levels`` and a 256-entry LUT (fast; pyqtgraph does
    the scaling). Colour: an already stretched uint8 RGB image (:func:`apply_fast`),
    ``levels=(0, 255)`` and no LUT."""
    data, is_colour = to_display_rgb(frame, color)
    if not is_colour:
        return data, state.levels, make_lut(state)
    return apply_fast(data, state), (0.0, 255.0), None


def histogram(image: np.ndarray, bins: int = 256, value_range: Optional[tuple[float, float]] = None):
    """``(counts, edges)`` of a subsample of ``image`` (all channels), for histogram widgets."""
    v = sample_values(image)
    if value_range is None:
        if v.size:
            lo, hi = float(v.min()), float(v.max())
        else:
            lo, hi = dtype_range(np.asarray(image).dtype)
        if not hi > lo:
            hi = lo + 1.0
        value_range = (lo, hi)
    counts, edges = np.histogram(v, bins=int(bins), range=value_range)
    return counts, edges


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of ``sigma`` px, computed on a copy shrunk so the kernel stays a few pixels
    wide (the blur of a 4K frame with sigma 100 in milliseconds, not seconds)."""
    h, w = values.shape
    f = max(1, int(sigma // 4))
    if f > 1:
        small = cv2.resize(values, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma / f, borderType=cv2.BORDER_REFLECT)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(values, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def visualize_dust(image: np.ndarray, color: str = "mono", sigma: Optional[float] = None,
                   contrast: float = 5.0) -> tuple[np.ndarray, tuple[float, float]]:
    """Make sensor dust visible, like Lightroom's Visualize Spots: the image's luminance divided by
    its smooth version (a Gaussian of ``sigma`` px, default 1/40 of the longer side, larger than
    a dust shadow), as a float32 (H, W) ratio that is about 1.0 on clean surface and below 1 in
    a dust shadow; and display levels ``1 -+ contrast`` robust standard deviations of the ratio.

    The smooth version is a normalised convolution over the lit part of the image (above 10 % of
    its bright level), so the limb of the sun or moon does not darken the disk next to it; the
    dark sky shows 1.0. Colour is averaged to luminance; a Bayer frame is box-filtered 2x2 first
    (each 2x2 window holds every CFA colour, so the mosaic pattern cancels). Reads ``image``, never
    writes it."""
    a = np.asarray(image)
    lum: np.ndarray
    if a.ndim == 3:
        lum = a.astype(np.float32).mean(axis=2)
    elif a.ndim == 2:
        lum = a.astype(np.float32)
        if str(color).upper() in BAYER_CODES:
            lum = cv2.blur(lum, (2, 2), borderType=cv2.BORDER_REFLECT)
    else:
        raise InputError(f"cannot visualize dust in an array of shape {a.shape}")
    if lum.dtype.kind == "f" and np.asarray(image).dtype.kind == "f":
        lum = np.nan_to_num(lum, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    h, w = lum.shape
    if sigma is None:
        sigma = max(4.0, max(h, w) / 40.0)
    step = max(1, int(np.sqrt(h * w / SAMPLE_PIXELS)))
    sample = lum[::step, ::step]
    bright = float(np.percentile(sample, 99)) if sample.size else 0.0
    if not bright > 0:
        return np.ones((h, w), np.float32), (0.99, 1.01)
    lit = (lum > np.float32(0.1 * bright)).astype(np.float32)
    num = _smooth(lum * lit, float(sigma))
    den = _smooth(lit, float(sigma))
    smooth = num / np.maximum(den, np.float32(1e-6))
    ratio = lum / np.maximum(smooth, np.float32(1e-6))
    # the sky, and whatever has too little lit surface around it to compare with, shows neutral
    ratio[(lit == 0) | (den <= 0.05) | (num <= 0)] = 1.0
    sub = ratio[::step, ::step]
    v = sub[lit[::step, ::step] > 0]
    if v.size == 0:
        v = np.ones(1, np.float32)
    med = float(np.median(v))
    spread = 1.4826 * float(np.median(np.abs(v - med)))
    spread = min(max(spread, 1e-3), 0.2)
    return ratio, (med - contrast * spread, med + contrast * spread)

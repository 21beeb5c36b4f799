"""Synthetic flats: exactly 1.0 wherever the (grown) mask is 0; inside, observed / dust-free.

``calibrated = raw / flat``. Inside the grown mask the flat is the ratio of the observed signal to
an estimate of what that pixel would show without dust, both with the camera pedestal removed,
clipped to ``[FLOOR, 1]`` (:data:`FLOOR` = 0.05: no real dust shadow on a sensor window passes less
than 5 % of the light, and dividing by less would only amplify noise 20-fold). Where the dust-free
estimate has no measurable signal (below :data:`MIN_SIGNAL` of the plane's 99.9th percentile, e.g.
dark sky off the limb) the attenuation cannot be measured and the flat stays 1.0.

Methods (the dust-free estimate):

``local``
    a harmonic (Laplace) fill of every speck from the pixels just outside it, on the reference
    frame: the smoothest surface that matches the surroundings. Deterministic, needs one frame.
``multiframe``
    the same fill, solved for each of up to ``max_frames`` evenly spaced frames of the sequence;
    the flat is the per-pixel median over frames of observed / filled. The dust stays put while the
    solar surface moves under it, so the fill's errors differ from frame to frame and the median
    averages them out.
``ai``
    an AI "clean" image (resampled to the frame if needed), histogram-matched to the reference on
    the unmasked pixels (quantile mapping, as the blog author's reference code did), then
    reference / clean.

Colour: RGB/BGR data per channel; raw Bayer data (``color`` one of RGGB, GRBG, GBRG, BGGR) per CFA
phase: each of the four same-colour sub-images is filled from its own neighbours and the results are
re-interleaved; the data are never debayered.

Feather (px): inside the grown mask only, the flat is blended toward 1.0 near the mask's edge,
``flat = 1 + w * (flat - 1)`` with ``w = min(1, d / feather)`` and ``d`` the distance in pixels to the
nearest pixel outside the grown mask (1 for an edge pixel).
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import InputError, ProcessingError
from ..progress import ProgressFn, report, sub_progress
from . import mask as maskmod

METHODS = ("local", "multiframe", "ai")
BAYER = ("RGGB", "GRBG", "GBRG", "BGGR")
FLOOR = 0.05
MIN_SIGNAL = 0.01
DEFAULT_MULTIFRAME_FRAMES = 64


# -- harmonic fill ---------------------------------------------------------------------------------

class HarmonicFill:
    """Laplace fill of the True pixels of a 2-D mask from their 4-neighbours outside it.

    The linear system depends only on the mask, so it is factorised once; :meth:`fill` then costs
    one sparse solve per image (several images at once are solved together).
    """

    def __init__(self, mask2d: np.ndarray):
        m = np.asarray(mask2d, dtype=bool)
        H, W = m.shape
        self.shape = (H, W)
        self.idx = np.flatnonzero(m)
        n = len(self.idx)
        self.n = n
        if n == 0:
            self.bidx = np.zeros(0, np.int64)
            self._lu = None
            return
        if n == m.size:
            raise InputError("the mask covers the whole frame; nothing is left to estimate the dust-free signal from")
        num = np.full(H * W, -1, dtype=np.int64)
        num[self.idx] = np.arange(n)
        ys, xs = np.divmod(self.idx, W)
        deg = np.zeros(n, dtype=np.float64)
        a_rows, a_cols, b_rows, b_pix = [], [], [], []
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            ny, nx = ys + dy, xs + dx
            ok = (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)
            deg += ok
            src = np.flatnonzero(ok)
            nb = ny[ok] * W + nx[ok]
            inside = num[nb]
            is_in = inside >= 0
            a_rows.append(src[is_in])
            a_cols.append(inside[is_in])
            b_rows.append(src[~is_in])
            b_pix.append(nb[~is_in])
        a_rows = np.concatenate(a_rows)
        a_cols = np.concatenate(a_cols)
        A = sp.csc_matrix(
            (np.concatenate([deg, -np.ones(len(a_rows))]),
             (np.concatenate([np.arange(n), a_rows]), np.concatenate([np.arange(n), a_cols]))),
            shape=(n, n))
        b_rows = np.concatenate(b_rows)
        b_pix = np.concatenate(b_pix)
        self.bidx, b_cols = np.unique(b_pix, return_inverse=True)
        self.B = sp.csr_matrix((np.ones(len(b_rows)), (b_rows, b_cols)), shape=(n, len(self.bidx)))
        self._lu = spla.splu(A, permc_spec="COLAMD")

    def fill(self, image: np.ndarray) -> np.ndarray:
        """Filled values at the mask pixels (``self.idx`` order). ``image``: 2-D plane, or a stack
        ``(K, H, W)`` of planes -> ``(K, n)``."""
        img = np.asarray(image)
        if self.n == 0:
            return np.zeros((0,) if img.ndim == 2 else (img.shape[0], 0))
        if img.ndim == 2:
            f = img.reshape(-1)[self.bidx].astype(np.float64)
            return self._lu.solve(self.B @ f)
        f = img.reshape(img.shape[0], -1)[:, self.bidx].astype(np.float64).T  # (nb, K)
        return self._lu.solve(np.asarray(self.B @ f)).T

    def apply(self, image: np.ndarray) -> np.ndarray:
        """A float32 copy of the 2-D ``image`` with the mask pixels filled."""
        out = np.asarray(image, dtype=np.float32).copy()
        if self.n:
            out.reshape(-1)[self.idx] = self.fill(image)
        return out


# -- planes (channels / CFA phases) ---------------------------------------------------------------

def plane_slices(shape: tuple[int, ...], color: str = "mono") -> list[tuple]:
    """Index tuples selecting the independent 2-D planes of an image: one per channel of an
    (H, W, C) image, one per CFA phase of raw Bayer data, else the image itself."""
    if len(shape) == 3:
        return [(slice(None), slice(None), c) for c in range(shape[2])]
    if color in BAYER:
        return [(slice(dy, None, 2), slice(dx, None, 2)) for dy in (0, 1) for dx in (0, 1)]
    return [(slice(None), slice(None))]


def _plane_color(color: str, sl: tuple, n_channels: int) -> Optional[int]:
    """Which RGB channel (0 R, 1 G, 2 B) a plane holds, when known."""
    if color in BAYER:
        dy = sl[0].start or 0
        dx = sl[1].start or 0
        return "RGB".index(color[dy * 2 + dx])
    if len(sl) == 3:
        c = sl[2]
        if n_channels == 3:
            return 2 - c if color == "BGR" else c
    return None


def _ratio(obs: np.ndarray, est: np.ndarray, pedestal: float, min_signal: float) -> np.ndarray:
    o = np.asarray(obs, dtype=np.float64) - pedestal
    e = np.asarray(est, dtype=np.float64) - pedestal
    with np.errstate(divide="ignore", invalid="ignore"):
        r = o / e
    r = np.where((e > min_signal) & np.isfinite(r), r, np.nan)
    return r


def _finish(r: np.ndarray) -> np.ndarray:
    r = np.where(np.isfinite(r), r, 1.0)
    return np.clip(r, FLOOR, 1.0).astype(np.float32)


def _min_signal(plane: np.ndarray, pedestal: float) -> float:
    hi = float(np.percentile(plane, 99.9)) - pedestal
    return max(hi * MIN_SIGNAL, 1e-12)


# -- AI clean image -------------------------------------------------------------------------------

def match_histogram(source: np.ndarray, target: np.ndarray, use: np.ndarray, n_quantiles: int = 1024) -> np.ndarray:
    """Map ``source`` values onto ``target``'s brightness scale by matching their distributions on
    the pixels where ``use`` is True (quantile mapping; monotone, piecewise linear)."""
    s = np.asarray(source, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if not use.any():
        return s
    q = np.linspace(0.0, 1.0, n_quantiles)
    sq = np.quantile(s[use], q)
    tq = np.quantile(t[use], q)
    # strictly increasing x for interp: merge flat runs of the source quantiles
    sq, first = np.unique(sq, return_index=True)
    tq = np.array([t_run.mean() for t_run in np.split(tq, first[1:])]) if len(first) > 1 else tq[:1]
    if len(sq) == 1:
        return np.full_like(s, tq[0])
    return np.interp(s, sq, tq)


def _clean_plane(clean: np.ndarray, shape_hw: tuple[int, int], sl: tuple, color: str, n_ref_channels: int) -> np.ndarray:
    """The AI clean image's plane matching plane ``sl`` of the reference, at the frame size."""
    c = np.asarray(clean)
    if c.ndim == 3 and c.shape[2] == 4:
        c = c[..., :3]
    if c.ndim == 3 and c.shape[2] == 1:
        c = c[..., 0]
    H, W = shape_hw
    c = c.astype(np.float32)
    if c.shape[:2] != (H, W):
        interp = cv2.INTER_AREA if c.shape[1] > W else cv2.INTER_CUBIC
        c = cv2.resize(c, (W, H), interpolation=interp)
    if c.ndim == 3:
        ch = _plane_color(color, sl, n_ref_channels)
        c = c.mean(axis=2) if ch is None else c[..., ch]
    return c[sl[:2]]


# -- the flat ---------------------------------------------------------------------------------------

def synthesize_flat(reference: np.ndarray, mask: np.ndarray, method: str = "local", sequence=None,
                    clean: Optional[np.ndarray] = None, grow: int = 0, feather: int = 0,
                    pedestal: float = 0.0, color: str = "mono", progress: Optional[ProgressFn] = None,
                    max_frames: Optional[int] = DEFAULT_MULTIFRAME_FRAMES) -> np.ndarray:
    """A float32 flat shaped like ``reference``: exactly 1.0 outside ``grow(mask, grow)``.

    ``reference``: (H, W) or (H, W, C) in data units; ``mask``: bool (H, W); ``sequence``: needed
    for ``multiframe`` (uses up to ``max_frames`` evenly spaced frames); ``clean``: the AI image for
    ``ai``; ``pedestal``: camera offset in ADU, subtracted before any ratio is taken.
    """
    if method not in METHODS:
        raise InputError(f"unknown flat method '{method}' (choose from {', '.join(METHODS)})")
    ref = np.asarray(reference, dtype=np.float32)
    m = np.asarray(mask, dtype=bool)
    if ref.ndim not in (2, 3):
        raise InputError(f"reference must be 2-D or 3-D, not shape {ref.shape}")
    H, W = ref.shape[:2]
    if m.shape != (H, W):
        raise InputError(f"mask is {m.shape[1]}x{m.shape[0]} but the frame is {W}x{H}")
    if color in BAYER and ref.ndim == 3:
        raise InputError(f"Bayer pattern {color} given for a {ref.shape[2]}-channel image")
    if method == "multiframe" and sequence is None:
        raise InputError("the multiframe method needs the sequence")
    if method == "ai" and clean is None:
        raise InputError("the ai method needs the AI clean image")
    grown = maskmod.grow(m, grow)
    flat = np.ones(ref.shape, dtype=np.float32)
    if not grown.any():
        report(progress, 1.0, "empty mask: flat is 1.0")
        return flat

    slices = plane_slices(ref.shape, color)
    n_ch = ref.shape[2] if ref.ndim == 3 else 1
    frame_idx = None
    if method == "multiframe":
        from .reference import frame_indices

        frame_idx = frame_indices(sequence.n_frames, max_frames)
        if (sequence.height, sequence.width) != (H, W):
            raise InputError(f"sequence is {sequence.width}x{sequence.height} but the reference is {W}x{H}",
                             getattr(sequence, "path", None))

    # each plane: fill system from its own (sub-sampled) mask
    fills: dict[int, HarmonicFill] = {}
    for p, sl in enumerate(slices):
        pm = grown[sl[:2]]
        fills[p] = HarmonicFill(pm)
        report(progress, 0.1 * (p + 1) / len(slices), "preparing the fill")

    if method == "local":
        for p, sl in enumerate(slices):
            plane = ref[sl]
            hf = fills[p]
            if hf.n == 0:
                continue
            est = hf.fill(plane)
            r = _ratio(plane.reshape(-1)[hf.idx], est, pedestal, _min_signal(plane, pedestal))
            _assign(flat, sl, hf.idx, _finish(r))
            report(progress, 0.1 + 0.9 * (p + 1) / len(slices), "local fill")
    elif method == "ai":
        for p, sl in enumerate(slices):
            plane = ref[sl]
            hf = fills[p]
            if hf.n == 0:
                continue
            c = _clean_plane(clean, (H, W), sl, color, n_ch)
            unmasked = ~grown[sl[:2]]
            matched = match_histogram(c, plane, unmasked)
            est = matched.reshape(-1)[hf.idx]
            r = _ratio(plane.reshape(-1)[hf.idx], est, pedestal, _min_signal(plane, pedestal))
            _assign(flat, sl, hf.idx, _finish(r))
            report(progress, 0.1 + 0.9 * (p + 1) / len(slices), "AI ratio")
    else:
        _multiframe(flat, ref, sequence, frame_idx, slices, fills, pedestal, sub_progress(progress, 0.1, 1.0))

    if feather and feather > 0:
        flat = _feather(flat, grown, feather)

    outside = ~grown
    check = flat[outside] if flat.ndim == 2 else flat[outside, :]
    if not np.all(check == 1.0):  # the product's one promise; never let a bug break it silently
        raise ProcessingError("internal error: the flat is not exactly 1.0 outside the mask")
    report(progress, 1.0, "flat done")
    return flat


def _assign(flat: np.ndarray, sl: tuple, idx: np.ndarray, values: np.ndarray) -> None:
    view = flat[sl]
    if view.flags.c_contiguous:
        view.reshape(-1)[idx] = values
    else:
        ys, xs = np.divmod(idx, view.shape[1])
        view[ys, xs] = values


def _multiframe(flat, ref, seq, frame_idx, slices, fills, pedestal, progress) -> None:
    K = len(frame_idx)
    ratios = {p: np.empty((K, fills[p].n), dtype=np.float32) for p in fills}
    min_sig = {p: _min_signal(ref[sl], pedestal) for p, sl in enumerate(slices)}
    chunk = 16
    for k0 in range(0, K, chunk):
        ks = frame_idx[k0:k0 + chunk]
        frames = np.stack([np.asarray(seq.frame(int(i)), dtype=np.float32) for i in ks])
        if frames.shape[1:] != ref.shape:
            raise InputError(f"frames are {frames.shape[1:]} but the reference is {ref.shape}",
                             getattr(seq, "path", None))
        for p, sl in enumerate(slices):
            hf = fills[p]
            if hf.n == 0:
                continue
            planes = np.ascontiguousarray(frames[(slice(None),) + sl])
            est = hf.fill(planes)  # (k, n)
            obs = planes.reshape(planes.shape[0], -1)[:, hf.idx]
            ratios[p][k0:k0 + len(ks)] = _ratio(obs, est, pedestal, min_sig[p])
        report(progress, (k0 + len(ks)) / K, f"frame {k0 + len(ks)}/{K}")
    for p, sl in enumerate(slices):
        if fills[p].n == 0:
            continue
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels -> 1.0 below
                med = np.nanmedian(ratios[p], axis=0)
        _assign(flat, sl, fills[p].idx, _finish(med))


def _feather(flat: np.ndarray, grown: np.ndarray, feather: int) -> np.ndarray:
    d = cv2.distanceTransform(grown.astype(np.uint8), cv2.DIST_L2, 5)
    w = np.minimum(1.0, d / float(feather)).astype(np.float32)
    if flat.ndim == 3:
        w = w[..., None]
    out = (1.0 + w * (flat - 1.0)).astype(np.float32)
    out[~grown] = 1.0
    return out

"""Synthetic flats: exactly 1.0 wherever the (grown) mask is 0; inside, observed / dust-free.

``calibrated = raw / flat``. Inside the grown mask the flat is the ratio of the observed signal to
an estimate of what that pixel would show without dust, both with the camera pedestal removed,
clipped to ``[FLOOR, 1]`` (:data:`FLOOR` = 0.05: no real dust shadow on a sensor window passes less
than 5 % of the light, and dividing by less would only amplify noise 20-fold), and set to exactly 1.0
above ``1 - NEGLIGIBLE`` (0.5 %: a darkening no eye sees, within the estimate's noise on a mask
pixel without dust, which then stays untouched). Where the dust-free
estimate has no measurable signal (below :data:`MIN_SIGNAL` of the plane's 99.9th percentile, e.g.
dark sky off the limb) the attenuation cannot be measured and the flat stays 1.0.

Methods (the dust-free estimate):

``auto`` (the default of ``aiflat flat``/``run``/``calibrate --mask``)
    ``multiframe`` when a sequence of at least :data:`AUTO_MIN_FRAMES` frames is given, else
    ``local``. (``multiframe`` itself falls back to its prior, the ``local`` flat, when the sun did not move.)

``local``
    a harmonic (Laplace) fill of every speck from the pixels just outside it, on the reference
    frame: the smoothest surface that matches the surroundings. Deterministic, needs one frame.
``multiframe``
    uses the motion of the sun under the fixed dust, over up to ``max_frames`` evenly spaced frames.
    The prior is the ``local`` flat of the reference. The frames are registered with the prior's
    dust divided out (registration below), then every frame is compared with one dust-free sun
    (:class:`_SunFlat`): in logs, frame ``k`` at sensor pixel ``x`` shows ``g(x) + s(x - d_k)``
    with ``g = log flat`` unknown only inside the grown mask and 0 outside -- the boundary that
    makes the problem well posed even for drifts smaller than the specks (classical
    Kuhn-Lin-Loranz self-flats need large, deliberate offsets) -- and ``s`` the sun in the
    registration base's coordinates, one unknown per sun pixel of each 64-px seeing tile that the
    dust can reach. Least squares over ``g`` and ``s`` together, ``s`` eliminated: this is the
    Kuhn, Lin & Loranz (1991) self-flat over EVERY pair of frames at once (``log raw_k(x) - log
    raw_j(x + d) = g(x) - g(x + d)`` is the difference of two frames' equations), but its cost
    grows with the frames, not the pairs: the frames are read once (after a first pass over a
    few of them for the registration base), each tile keeping two running sums and the frames'
    shifts, and the remaining system in ``g`` is one convolution kernel per tile, solved by
    conjugate gradients with FFTs, from the prior and with a weak pull toward it
    (:data:`PRIOR_WEIGHT`) where the motion says nothing. Frame pairs are no longer sampled (the
    pair solver before it used at most 150-300 pairs); a tile whose frames did not move (less than
    :data:`MIN_PAIR_SHIFT` on both axes) keeps the prior. A sun pixel counts only when every frame
    of its group reads it inside the frame and above the signal floor of the reference (within the
    frames' spread): no equation reads the sky or beyond the frame's edge. When the sun drifts
    farther than about 2 x :data:`SUN_MAX_SPREAD` px, the frames are split into groups by their
    shift, each with a sun of its own (a sun seen by every frame must lie inside all of them).
    Registration (:class:`_Registrar`): phase correlation refined by ECC alignment, first against
    the temporal median, then against the mean of the frames aligned by that first pass (at most
    :data:`SHARPEN_FRAMES` = 32 of them, evenly spaced; the
    median of a drifting sun is smeared along the drift and shifts measured against it come out
    short: the `aiflat demo` default went from 94.8 % to 98.7 % removed); the precision of the
    shifts is what limits this method. Seeing bends the image locally,
    so every 64-px tile holding dust gets its own shift per frame (normalised cross-correlation
    around the global shift, :class:`_LocalShifts`, on the frames divided by the prior); in that
    second pass the global shift is the phase correlation's alone, of the frame divided by the
    prior against the sharpened base (the tiles refine it), replaced by the first pass's shifts
    interpolated in time when it lands farther than :data:`PREDICT_TOLERANCE` from them. While
    one chunk of frames is summed, the next is read and registered in a thread.
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

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Optional

import cv2
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import InputError, ProcessingError
from ..progress import ProgressFn, report, sub_progress
from . import BAYER_PATTERNS
from . import mask as maskmod

METHODS = ("auto", "local", "multiframe", "ai")
#: ``auto`` uses ``multiframe`` when the sequence has at least this many frames, else ``local``.
AUTO_MIN_FRAMES = 8
BAYER = BAYER_PATTERNS
FLOOR = 0.05
#: Inside the mask, a flat above 1 - NEGLIGIBLE is set to exactly 1.0 (a darkening under 0.5 % is
#: not corrected; the verifier's ``min_depth`` is the same 0.5 %: a shadow too faint to matter).
NEGLIGIBLE = 0.005
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
        ``(K, H, W)`` or a list of planes -> ``(K, n)`` (one solve for all: ~3x cheaper per plane)."""
        if isinstance(image, (list, tuple)):  # planes apart: only their boundary pixels are gathered
            if self.n == 0:
                return np.zeros((len(image), 0))
            f = np.stack([np.asarray(im).reshape(-1)[self.bidx] for im in image], axis=1).astype(np.float64)
            return self._lu.solve(np.asarray(self.B @ f)).T
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

def resolve_method(method: str, sequence=None) -> str:
    """The method ``auto`` stands for with this sequence (other methods are returned as they are)."""
    if method != "auto":
        return method
    n = int(getattr(sequence, "n_frames", 0) or 0) if sequence is not None else 0
    return "multiframe" if n >= AUTO_MIN_FRAMES else "local"


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
    method = resolve_method(method, sequence)
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
        _multiframe(flat, ref, sequence, frame_idx, slices, fills, pedestal, sub_progress(progress, 0.1, 1.0),
                    color=color, grown=grown)

    if feather and feather > 0:
        flat = _feather(flat, grown, feather)
    # a darkening under NEGLIGIBLE is not corrected: no eye sees it, and a mask pixel without dust
    # (a mask drawn wide, the grow ring) measures a flat within noise of 1.0 that would otherwise
    # change it; those pixels stay untouched, bit for bit
    flat[flat > np.float32(1.0 - NEGLIGIBLE)] = 1.0

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


def _luminance_and_mask(img: np.ndarray, grown: np.ndarray, color: str) -> tuple[np.ndarray, np.ndarray, float]:
    """A single-plane image for registration, its dust mask, and its pixel scale (2 for binned
    Bayer data: one luminance pixel is two sensor pixels)."""
    a = np.asarray(img, dtype=np.float32)
    if a.ndim == 3:
        return a.mean(axis=2), grown, 1.0
    if color in BAYER:
        h, w = (a.shape[0] // 2) * 2, (a.shape[1] // 2) * 2
        lum = a[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        m = grown[:h, :w].reshape(h // 2, 2, w // 2, 2).any(axis=(1, 3))
        return lum, m, 2.0
    return a, grown, 1.0


class _Registrar:
    """Sub-pixel global shift of each frame against the dust-filled reference frame (luminance,
    central crop of at most :attr:`CROP` px): a phase correlation (Hanning window) for the coarse
    shift -- replaced by the previous frame's shift when it jumps more than :attr:`MAX_COARSE` from
    it (a wrong peak) -- refined by a Gauss-Newton fit of ECC's own objective (:meth:`_refine_lk`;
    OpenCV's findTransformECC when that fails), kept when it moves the coarse shift by at most
    :attr:`MAX_REFINE`. On the demo (normal difficulty)
    ECC made every seed's dust removal land within 95-105 % where phase correlation alone left
    86-108 %. Without a reference the first frame is the base. The crop is 512 px: on the
    1920x1200 bench video a 1024-px crop cost 2.5x the time (ECC dominates) for no better a flat
    (mean |flat - true flat| on the dust 0.00568 with 1024, 0.00554 with 512); the dust's own
    tiles get their shifts from :class:`_LocalShifts` anyway."""

    CROP = 512
    MAX_COARSE = 20.0  # px: a phase-correlation answer this far from the previous frame's is a failure
    MAX_REFINE = 3.0  # px: ECC may move the coarse shift by this much at most

    def __init__(self, shape: tuple, grown: np.ndarray, color: str, reference: Optional[np.ndarray] = None,
                 fill: bool = True):
        self.color = color
        self.grown = grown
        h, w = shape[:2]
        self.scale = 2.0 if (color in BAYER and len(shape) == 2) else 1.0
        if self.scale == 2.0:
            h, w = h // 2, w // 2
        ch, cw = min(h, self.CROP), min(w, self.CROP)
        self.box = (slice((h - ch) // 2, (h - ch) // 2 + ch), slice((w - cw) // 2, (w - cw) // 2 + cw))
        self.fill = None if fill else False  # False: frames come with their dust already divided out
        #: False: the phase correlation's shift alone (when per-tile shifts refine it anyway)
        self.refine = True
        # the coarse shift from a 2x binned crop (4x cheaper; ECC refines it at full resolution)
        self.coarse = 2 if min(ch, cw) >= 256 else 1
        self.cwin = cv2.createHanningWindow((cw // self.coarse, ch // self.coarse), cv2.CV_64F)
        self.coarse_base = None
        self.base = None
        self._lk_windows: dict = {}  # see _refine_lk
        self.last = (0.0, 0.0)  # frames come in time order and the sun drifts smoothly
        if reference is not None:
            self.base = self._prep(np.asarray(reference, dtype=np.float32))

    def _coarse(self, img: np.ndarray) -> np.ndarray:
        """The image binned ``self.coarse`` x for the phase correlation (a fresh array: OpenCV's
        phaseCorrelate windows float64 inputs IN PLACE)."""
        if self.coarse == 1:
            return img.copy()
        h, w = img.shape
        return cv2.resize(img, (w // self.coarse, h // self.coarse), interpolation=cv2.INTER_AREA)

    def _prep(self, frame: np.ndarray) -> np.ndarray:
        lum, m, _ = _luminance_and_mask(frame, self.grown, self.color)
        if self.fill is None:
            mb = m[self.box]
            self.fill = HarmonicFill(mb) if mb.any() and not mb.all() else False
        a = lum[self.box]
        return (self.fill.apply(a) if self.fill else a).astype(np.float64)

    def shift(self, frame: np.ndarray) -> tuple[float, float]:
        """(dx, dy) in sensor pixels: where a solar feature of the base is in ``frame``."""
        if self.base is None:
            self.base = self._prep(frame)
            return 0.0, 0.0
        return self.accept(self.propose(frame))

    def propose(self, frame: np.ndarray) -> tuple:
        """The part of :meth:`shift` that does not depend on earlier frames (and so may run for
        several frames at once, in threads): the prepared crop, the phase-correlation shift, and
        the ECC refinement started from it -- right whenever :meth:`accept` keeps that start."""
        img = self._prep(frame)
        # fresh arrays: OpenCV's phaseCorrelate applies the window IN PLACE to float64 inputs (the
        # old registrar's base decayed a little with every frame, and registration drifted)
        (dx, dy), _resp = cv2.phaseCorrelate(self._coarse_base().copy(), self._coarse(img), self.cwin)
        dx, dy = dx * self.coarse, dy * self.coarse
        img32 = img.astype(np.float32)  # what ECC works on (half the memory to keep until accept)
        refined = self._refine(img32, dx, dy) if self.refine and np.isfinite(dx) and np.isfinite(dy) else None
        return img32, dx, dy, refined

    def accept(self, proposal: tuple) -> tuple[float, float]:
        """Finish :meth:`propose`'s work in frame order: a coarse shift far from the previous
        frame's is a wrong peak, so ECC starts again from the previous frame's shift."""
        img, dx, dy, refined = proposal
        lx, ly = self.last
        if not (np.isfinite(dx) and np.isfinite(dy) and np.hypot(dx - lx, dy - ly) < self.MAX_COARSE):
            dx, dy = lx, ly  # phase correlation locked onto a far, wrong peak: start from the previous frame
            refined = self._refine(img, dx, dy) if self.refine else None
        if refined is not None:
            dx, dy = refined
        self.last = (dx, dy)
        return dx * self.scale, dy * self.scale

    def rebase(self, base: np.ndarray) -> None:
        """Register against ``base`` from now on: an image in this registrar's own space (the
        luminance crop with the dust filled, as :meth:`_prep` makes), in the old base's position."""
        self.base = np.asarray(base, dtype=np.float64)
        self.coarse_base = None
        self._b32 = None
        self._lk = None
        self._lk_windows = {}
        self.last = (0.0, 0.0)

    def _coarse_base(self) -> np.ndarray:
        if self.coarse_base is None:
            self.coarse_base = self._coarse(self.base)
        return self.coarse_base

    def _refine(self, img: np.ndarray, dx: float, dy: float) -> Optional[tuple[float, float]]:
        """The sub-pixel shift from (dx, dy): :meth:`_refine_lk` (ECC's objective, ~10x cheaper),
        and OpenCV's ECC where that cannot run (a shift near the crop's margin) or does not
        converge; None when both fail or wander more than :attr:`MAX_REFINE` away."""
        lk = self._refine_lk(img, dx, dy)
        if lk is not None:
            return lk
        return self._refine_ecc(img, dx, dy)

    #: Gauss-Newton iterations of :meth:`_refine_lk` at most, and the step (px) that counts as
    #: converged.
    LK_ITERATIONS = 30
    LK_TOL = 1e-3

    def _lk_base(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The base smoothed as ECC smooths it, zero-mean, and its x and y gradients (central
        differences), float32."""
        lk = getattr(self, "_lk", None)
        if lk is None:
            b = self._base32()
            t = cv2.GaussianBlur(b - np.float32(b.mean()), (5, 5), 0, borderType=cv2.BORDER_REPLICATE)
            gx = np.zeros_like(t)
            gy = np.zeros_like(t)
            gx[:, 1:-1] = 0.5 * (t[:, 2:] - t[:, :-2])
            gy[1:-1] = 0.5 * (t[2:] - t[:-2])
            lk = self._lk = (t, gx, gy)
        return lk

    def _refine_lk(self, img: np.ndarray, dx: float, dy: float) -> Optional[tuple[float, float]]:
        """Gauss-Newton for the translation ``p`` with a gain and an offset: ``T(x) = a I(x + p) + c``
        in least squares over the part of the crop that the frame covers for any ``p`` within
        :attr:`MAX_REFINE` of the start, both images smoothed as ECC does (Gaussian 5x5). Its
        minimum is the maximum of ECC's correlation coefficient (``T`` is fixed, so the residual
        is ``|T - mean T|^2 (1 - rho^2)``); ~10x cheaper than OpenCV's ECC. The step uses the
        base's gradient (``a grad I(x + p) = grad T`` at the solution; the base is a mean of many
        frames, so its gradient is far less noisy than a frame's, and Gauss-Newton converges in a
        few steps instead of creeping). ``I`` is sampled with exact bilinear weights (no
        fixed-point coordinates). None when the fit degenerates or does not converge."""
        t2, gx2, gy2 = self._lk_base()
        im = np.asarray(img, dtype=np.float32)
        im = cv2.GaussianBlur(im - np.float32(im.mean()), (5, 5), 0, borderType=cv2.BORDER_REPLICATE)
        h, w = im.shape
        r = int(np.ceil(self.MAX_REFINE)) + 2
        xa, xb = max(1, int(np.ceil(-dx)) + r), min(w - 1, w - int(np.ceil(dx)) - r)
        ya, yb = max(1, int(np.ceil(-dy)) + r), min(h - 1, h - int(np.ceil(dy)) - r)
        ih, iw = yb - ya, xb - xa
        if ih < 32 or iw < 32:
            return None
        # the base's part (its gradients, the constant, their products) depends only on the window:
        # kept per window (the drift visits a few), read-only, so threads may share it
        key = (ya, yb, xa, xb)
        win = self._lk_windows.get(key)
        if win is None:
            G3 = np.empty((3, ih * iw), np.float32)  # rows: d/dx, d/dy, constant
            G3[0].reshape(ih, iw)[...] = gx2[ya:yb, xa:xb]
            G3[1].reshape(ih, iw)[...] = gy2[ya:yb, xa:xb]
            G3[2] = 1.0
            tv = np.ascontiguousarray(t2[ya:yb, xa:xb]).ravel()
            win = self._lk_windows[key] = (G3, tv, (G3 @ tv).astype(np.float64), G3 @ G3.T)
        G3, tv, gt, GG3 = win
        GG = np.zeros((4, 4))
        GG[np.ix_([0, 1, 3], [0, 1, 3])] = GG3  # the rows that stay
        g2 = np.empty(ih * iw, np.float32)  # I at x + p
        px, py = float(dx), float(dy)
        for _ in range(self.LK_ITERATIONS):
            ox, oy = int(np.floor(px)), int(np.floor(py))
            fx, fy = np.float32(px - ox), np.float32(py - oy)
            y0, x0 = ya + oy, xa + ox
            if y0 < 0 or x0 < 0 or y0 + ih + 1 > h or x0 + iw + 1 > w:
                return None
            s = im[y0:y0 + ih + 1, x0:x0 + iw + 1]
            row = s[:, :-1] * (1 - fx) + s[:, 1:] * fx
            g2.reshape(ih, iw)[...] = row[:-1] * (1 - fy) + row[1:] * fy
            rhs = np.array([gt[0], gt[1], float(g2 @ tv), gt[2]])
            cross = G3 @ g2
            GG[[0, 1, 3], 2] = GG[2, [0, 1, 3]] = cross
            GG[2, 2] = g2 @ g2
            try:
                v = np.linalg.solve(GG, rhs)
            except np.linalg.LinAlgError:
                return None
            if not (np.isfinite(v).all() and v[2] > 0):
                return None
            sx, sy = v[0], v[1]
            px, py = px + sx, py + sy
            if np.hypot(px - dx, py - dy) > self.MAX_REFINE:
                return None
            if np.hypot(sx, sy) < self.LK_TOL:
                return px, py
        return None

    def _refine_ecc(self, img: np.ndarray, dx: float, dy: float) -> Optional[tuple[float, float]]:
        """ECC from (dx, dy); None when it fails or wanders more than :attr:`MAX_REFINE` away."""
        warp = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
        crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
        try:
            _cc, warp = cv2.findTransformECC(self._base32(), img.astype(np.float32, copy=False), warp,
                                             cv2.MOTION_TRANSLATION, crit, None, 5)
        except cv2.error:
            return None  # did not converge (flat or featureless crop): keep the coarse shift
        ex, ey = float(warp[0, 2]), float(warp[1, 2])
        if np.isfinite(ex) and np.isfinite(ey) and np.hypot(ex - dx, ey - dy) <= self.MAX_REFINE:
            return ex, ey
        return None  # ECC wandered off to another optimum: keep the coarse shift

    def _base32(self) -> np.ndarray:
        b = getattr(self, "_b32", None)
        if b is None:
            b = self._b32 = self.base.astype(np.float32)
        return b


def _sharpen_reference(reg: "_Registrar", loc: Optional["_LocalShifts"], seq, frame_idx: np.ndarray, chunk: int,
                       pool, clean, progress, shape: tuple) -> np.ndarray:
    """Make ``reg`` (and the per-tile ``loc``) register against the mean of the frames aligned by
    a first registration against the temporal median, and return those first shifts. The median
    of a drifting sun is smeared along the drift, and shifts measured against it shrink (on the
    demo: 7 % too small along an 11 px drift, 0.29 px rms error; against the aligned mean 0.11 px),
    which leaves the self-flat short of the dust's depth. ``clean``: a frame with the prior's dust
    divided out (what is registered); ``shape``: the reference's (every frame must match it)."""
    h, w = reg.grown.shape[:2]
    if reg.scale == 2.0:
        h, w = h // 2, w // 2
    total = np.zeros((h, w), np.float32)  # at most 32 frames: float32 sums keep ~1e-6
    cover_x: list = []
    cover_y: list = []
    K = len(frame_idx)
    measured = np.zeros((K, 2))

    def cover(size: int, s: float) -> np.ndarray:
        """How much of each pixel of a line of ``size`` ones moved by ``-s`` px (bilinear, zero
        outside) covers: the frame's coverage is the outer product of its two lines."""
        x = np.arange(size) + s
        return np.clip(np.minimum(x + 1.0, size - x), 0.0, 1.0)

    def moved(img: np.ndarray, shift) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        lum = np.asarray(_luminance_and_mask(img, reg.grown, reg.color)[0], dtype=np.float32)
        M = np.float32([[1, 0, -float(shift[0]) / reg.scale], [0, 1, -float(shift[1]) / reg.scale]])
        return (cv2.warpAffine(lum, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT),
                (cover(w, float(shift[0]) / reg.scale), cover(h, float(shift[1]) / reg.scale)))

    for k0 in range(0, K, chunk):
        ks = frame_idx[k0:k0 + chunk]
        raw = _read_frames(seq, ks, shape)
        shifts, _ = register_frames(reg, None, raw, pool)
        frames = clean(raw, inplace=True)  # raw is not needed any more
        raw = None
        measured[k0:k0 + len(ks)] = shifts
        items = [(frames[j], shifts[j]) for j in range(len(ks))]
        for img, (cx, cy) in (pool.map(lambda it: moved(*it), items) if pool is not None
                              else (moved(*it) for it in items)):
            cv2.add(total, img, dst=total)
            cover_x.append(cx)
            cover_y.append(cy)
        report(progress, (k0 + len(ks)) / K, f"aligning frame {k0 + len(ks)}/{K}")
    count = np.asarray(cover_y).T @ np.asarray(cover_x)  # the sum of every frame's coverage
    covered = count > 0.5 * K
    if covered.mean() < 0.5:
        return measured  # the sun moved too far for a common field: keep the median
    mid = clean(np.asarray(seq.frame(int(frame_idx[len(frame_idx) // 2])), np.float32))
    full = np.where(covered, total / np.maximum(count, 1e-9), _luminance_and_mask(mid, reg.grown, reg.color)[0])
    reg.rebase(full[reg.box])
    if loc is not None:
        loc.base = full.astype(np.float32)
    return measured


def _read_frames(seq, ks, shape: tuple) -> np.ndarray:
    """Frames ``ks`` of ``seq`` as one float32 stack (each converted straight into it); every
    frame must be shaped like the reference, ``shape``."""
    out = np.empty((len(ks),) + tuple(shape), dtype=np.float32)
    for j, i in enumerate(ks):
        out[j] = _read_one(seq, i, shape)  # converted at once: a reader may reuse its buffer
    return out


def _read_one(seq, i, shape: tuple) -> np.ndarray:
    f = np.asarray(seq.frame(int(i)))
    if f.shape != tuple(shape):
        raise InputError(f"frames are {f.shape} but the reference is {tuple(shape)}", getattr(seq, "path", None))
    return f


def _read_raw(seq, ks, shape: tuple) -> list:
    """Frames ``ks`` of ``seq`` in their sample type, each shaped like the reference (``shape``)
    and each its own: views of a memory map are; anything else a reader gives is copied (it may
    reuse one buffer for every frame)."""
    mapped = bool(getattr(seq, "memmapped", False))
    return [f if mapped else f.copy() for f in (_read_one(seq, i, shape) for i in ks)]


def _as_float32(frames: list) -> np.ndarray:
    out = np.empty((len(frames),) + frames[0].shape, dtype=np.float32) if frames else np.zeros((0,), np.float32)
    for j, f in enumerate(frames):
        out[j] = f
    return out


def register_frames(reg: Optional["_Registrar"], loc: Optional["_LocalShifts"], frames: np.ndarray,
                    pool=None, fill_values: Optional[list] = None,
                    tile_frames: Optional[np.ndarray] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Global shifts ``(k, 2)`` and per-tile shifts ``(n_tiles, k, 2)`` of ``frames`` (in time order),
    the same numbers as calling ``reg.shift`` and ``loc.shifts`` frame by frame; with a thread
    ``pool`` the independent parts run for several frames at once (OpenCV releases the GIL: ~1.8x
    on 2 cores). ``fill_values``: per frame, the dust fill of its luminance when already known
    (see :meth:`_LocalShifts.shifts`); ``tile_frames``: the frames ``loc`` registers, when not
    ``frames`` (e.g. with the dust divided out)."""
    k = len(frames)
    shifts = np.zeros((k, 2))
    local = np.zeros((loc.n if loc is not None else 0, k, 2))
    if reg is None:
        return shifts, (local if loc is not None else None)
    run = (lambda f, items: list(pool.map(f, items))) if pool is not None else (lambda f, items: [f(x) for x in items])
    if reg.base is None:
        reg.shift(frames[0])
    batch = 2 * REGISTER_THREADS if pool is not None else 1
    for b0 in range(0, k, batch):  # a few proposals at a time: each holds its frame's crop
        for j, prop in enumerate(run(reg.propose, list(frames[b0:b0 + batch])), start=b0):
            shifts[j] = reg.accept(prop)
    if loc is not None:
        known = fill_values if fill_values is not None else [None] * k
        tf = frames if tile_frames is None else tile_frames
        for j, sh in enumerate(run(lambda j: loc.shifts(tf[j], shifts[j], known[j]), range(k))):
            local[:, j] = sh
    return shifts, (local if loc is not None else None)


class _LocalShifts:
    """Local shifts: the seeing bends the image by up to a pixel or two over tens of pixels, which a
    global shift cannot follow. The luminance is cut into :attr:`TILE`-pixel tiles; every tile that
    holds dust gets its own shift per frame: the normalised cross-correlation (OpenCV matchTemplate)
    of the dust-filled tile of the reference over the frame, searched within :attr:`SEARCH` px of the
    frame's global shift, its peak refined to sub-pixel by a parabola through the neighbours. A flat
    or ambiguous correlation (peak on the search border, peak correlation below
    :attr:`MIN_CORR`) keeps the global shift. Shifts are in sensor pixels like the global ones."""

    TILE = 64
    SEARCH = 3
    MAX_DEV = 3.0  # px: how far a tile's shift may be from the global one (SEARCH, rounding)
    MIN_CORR = 0.5

    def __init__(self, reference: np.ndarray, grown: np.ndarray, color: str, tiles: bool = True,
                 fill: Optional[HarmonicFill] = None):
        self.color = color
        self.grown = grown
        lum, m, self.scale = _luminance_and_mask(reference, grown, color)
        # ``fill``: the same system already factorised (mono data: the flat's own fill of the plane)
        self.fill = fill if fill is not None else (HarmonicFill(m) if m.any() and not m.all() else None)
        if not tiles:  # only the dust fill of the luminance (see _sharpen_reference)
            self.hw = lum.shape
            self.n = 0
            return
        base = self._filled(lum)
        h, w = lum.shape
        self.hw = (h, w)
        T = self.TILE
        self.grid = (-(-h // T), -(-w // T))
        self.tile_of = np.full(self.grid, -1, dtype=np.int64)
        ys, xs = np.nonzero(m)
        cells = np.unique((ys // T) * self.grid[1] + xs // T) if len(ys) else np.zeros(0, np.int64)
        self.boxes = []
        for c in cells:
            ty, tx = divmod(int(c), self.grid[1])
            y0, y1 = ty * T, min(h, (ty + 1) * T)
            x0, x1 = tx * T, min(w, (tx + 1) * T)
            if y1 - y0 < 16 or x1 - x0 < 16:
                continue  # a sliver at the frame's edge: too little to correlate
            self.tile_of[ty, tx] = len(self.boxes)
            self.boxes.append((y0, y1, x0, x1))
        self.base = base
        self.n = len(self.boxes)

    def _filled(self, lum: np.ndarray, values: Optional[np.ndarray] = None) -> np.ndarray:
        """``lum`` as float32 with the dust filled (``values``: the fill at the mask pixels when
        already solved)."""
        if not self.fill:
            return np.asarray(lum, dtype=np.float32)
        if values is None:
            return self.fill.apply(lum)
        out = np.asarray(lum, dtype=np.float32).copy()
        out.reshape(-1)[self.fill.idx] = values
        return out

    def shifts(self, frame: np.ndarray, global_shift, values: Optional[np.ndarray] = None) -> np.ndarray:
        """``(n_tiles, 2)`` (dx, dy) in sensor pixels for one frame (``values``: the dust fill of its
        luminance, when already solved)."""
        g = np.asarray(global_shift, dtype=np.float64) / self.scale
        out = np.tile(g, (self.n, 1))
        if self.n == 0:
            return out
        lum, _m, _ = _luminance_and_mask(frame, self.grown, self.color)
        img = self._filled(lum, values)
        h, w = self.hw
        R = self.SEARCH
        gx, gy = int(round(g[0])), int(round(g[1]))
        cc = np.full((self.n, 2 * R + 1, 2 * R + 1), -np.inf, np.float32)
        for t, (y0, y1, x0, x1) in enumerate(self.boxes):
            # at the frame's edge the template shrinks so that its search window stays inside
            y0, y1 = max(y0, R - gy), min(y1, h - gy - R)
            x0, x1 = max(x0, R - gx), min(x1, w - gx - R)
            if y1 - y0 < 16 or x1 - x0 < 16:
                continue  # too little left to correlate: the global shift
            window = img[y0 + gy - R:y1 + gy + R, x0 + gx - R:x1 + gx + R]
            cc[t] = cv2.matchTemplate(window, self.base[y0:y1, x0:x1], cv2.TM_CCOEFF_NORMED)
        # every tile's peak at once: on the search border, or below MIN_CORR, keeps the global shift
        n2 = 2 * R + 1
        best = cc.reshape(self.n, -1).argmax(axis=1)
        py, px = np.divmod(best, n2)
        ti = np.arange(self.n)
        inner = (py > 0) & (py < n2 - 1) & (px > 0) & (px < n2 - 1)
        py_, px_ = np.clip(py, 1, n2 - 2), np.clip(px, 1, n2 - 2)
        mid = cc[ti, py_, px_].astype(np.float64)
        ok = inner & (cc[ti, py, px] >= self.MIN_CORR)
        sub = []
        with np.errstate(invalid="ignore", divide="ignore"):  # skipped tiles: -inf, never kept
            for lo, hi in ((cc[ti, py_, px_ - 1], cc[ti, py_, px_ + 1]), (cc[ti, py_ - 1, px_], cc[ti, py_ + 1, px_])):
                lo, hi = lo.astype(np.float64), hi.astype(np.float64)
                den = lo - 2 * mid + hi
                sub.append(np.where(den < 0, 0.5 * (lo - hi) / np.where(den < 0, den, -1.0), 0.0))
        d = np.stack([gx + px - R + sub[0], gy + py - R + sub[1]], axis=1)
        ok &= np.isfinite(d).all(axis=1) & (np.hypot(d[:, 0] - g[0], d[:, 1] - g[1]) <= self.MAX_DEV)
        out[ok] = d[ok]
        return out * self.scale

    def plane_tiles(self, plane_shape: tuple) -> np.ndarray:
        """Tile index (-1: none, use the global shift) of every pixel of a plane, flattened. Planes
        and the luminance share coordinates (Bayer planes and the binned luminance are both half
        size)."""
        h, w = plane_shape[:2]
        ty = np.minimum(np.arange(h) // self.TILE, self.grid[0] - 1)
        tx = np.minimum(np.arange(w) // self.TILE, self.grid[1] - 1)
        return self.tile_of[ty[:, None], tx[None, :]].reshape(-1)


# -- the frame-based self-flat: one dust-free sun per seeing tile, all frames against it -----------

#: A tile's frames may lie this far (plane px) from its typical position at most (farther: not
#: used); the tile's FFT grid is the tile and this much around it.
SUN_MAX_SPREAD = 12


def _fast_len(n: int) -> int:
    """The smallest m >= n with no prime factor above 7 (a size pocketfft transforms fast)."""
    m = max(1, int(n))
    while True:
        k = m
        for p in (2, 3, 5, 7):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


class _SunFlat:
    """The self-flat of one plane from every frame against one dust-free sun per seeing tile.

    Model, in logs: frame ``k`` at sensor pixel ``x`` shows ``L_k(x) = g(x) + s(x - d_k)``:
    ``g = log flat`` (unknown on the grown mask, 0 elsewhere), ``s`` the sun in the registration
    base's coordinates, ``d_k`` the frame's shift in the seeing tile at hand (see
    :class:`_LocalShifts`). Every tile's part of the sun (its pixels ``y`` in the tile that lie
    within reach of the dust) is an unknown of its own, seen in frame ``k`` at ``y + d_k`` by
    bilinear interpolation: one equation per frame and sun pixel, ``(B_k L_k)(y) = (B_k g)(y) +
    s(y)`` (``B_k``: sample at ``y + d_k``). Least squares over ``g`` and the sun together;
    eliminating the sun (its mean over frames) leaves, per tile, ``A_t = sum_k B_k^T C B_k - K
    Bbar^T C Bbar`` and ``b_t = sum_k B_k^T C B_k L_k - K Bbar^T C mean_k(B_k L_k)`` (``C``: the
    tile's sun pixels, ``Bbar = mean_k B_k``), and ``(sum_t A_t + mu) g = sum_t b_t + mu log prior``.
    That is the Kuhn-Lin-Loranz self-flat over every pair of frames at once (each pair's
    difference ``log raw_k(x) - log raw_j(x + d)`` is a difference of two of these equations), but
    its cost grows with the frames, not the pairs: while the frames are read, a tile keeps two sums
    (``B_k L_k`` on its sun pixels, and that moved back, ``B_k^T B_k L_k``) and every frame's
    shift; ``Bbar`` is then one kernel ``h`` (the frames' histogram of bilinear positions) and the
    ``B_k^T C B_k`` sum a 3x3 stencil whose weights near the tile's edge are ``C`` summed over the
    frames' corner products. The operator runs by FFT on all tiles at once (a tile's grid: its sun
    pixels and the reach of its shifts around them); conjugate gradients from the prior, Jacobi
    preconditioned, with the prior's weak pull (:data:`PRIOR_WEIGHT`). Logs are taken of the
    signal above the pedestal, floored at the signal floor (dark sky says nothing; the flat is
    1.0 there anyway); frames are extended by their edge beyond the plane."""

    def __init__(self, plane_shape, idx: np.ndarray, tile: int, tile_of: Optional[np.ndarray], center, spread: float,
                 pedestal: float, min_signal: float, level: float = 0.0, bright: Optional[np.ndarray] = None):
        h, w = plane_shape[:2]
        self.hw = (h, w)
        self.idx = idx
        self.level = np.float32(level)  # a typical log value, subtracted from every log
        self.pedestal = np.float32(pedestal)
        self.floor = np.float32(max(min_signal, 1e-12))
        # (G, 2) (dx, dy): the frames' typical shifts; a frame goes to the nearest, its offsets are
        # taken around it, and each such group of frames has a sun of its own
        self.centers = np.asarray(center, dtype=np.float64).reshape(-1, 2)
        self.R = int(np.clip(np.ceil(spread), 1, SUN_MAX_SPREAD))
        self.P = self.R + 1  # the positions o + q span -P..P
        self.Q = self.P + 2  # a tile's grid: its sun pixels and Q px around them
        self.N = _fast_len(tile + 2 * self.Q)
        m = np.zeros(h * w, np.uint8)
        m[idx] = 1
        # the sun pixels that can see dust: within P of a mask pixel
        box = np.ones((2 * self.P + 1, 2 * self.P + 1), np.uint8)
        reach = cv2.dilate(m.reshape(h, w), box)
        # ... and whose every frame reads inside the frame, above the signal floor: the sun pixels
        # within P of the frame's edge or of a dark pixel of the reference are no equations
        ok = np.ones((h, w), np.uint8) if bright is None else np.asarray(bright, np.uint8)
        valid = cv2.erode(ok, box, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        reach = np.minimum(reach, valid)
        ys, xs = np.divmod(idx, w)
        T = tile
        gx = -(-w // T)
        self.cells = []
        self.suns = []  # per tile: its sun pixels (C) in the box of the cell
        for c in np.unique((ys // T) * gx + xs // T):
            ty, tx = divmod(int(c), gx)
            y0, y1, x0, x1 = ty * T, min(h, (ty + 1) * T), tx * T, min(w, (tx + 1) * T)
            ry, rx = np.nonzero(reach[y0:y1, x0:x1])
            if len(ry) == 0:
                continue  # no sun pixel here sees the dust (sky, the frame's edge): the prior
            t = -1
            if tile_of is not None and ty < tile_of.shape[0] and tx < tile_of.shape[1]:
                t = int(tile_of[ty, tx])
            cy0, cy1, cx0, cx1 = y0 + int(ry.min()), y0 + int(ry.max()) + 1, x0 + int(rx.min()), x0 + int(rx.max()) + 1
            # the whole box of those sun pixels where valid (rows that reach no unknown add nothing,
            # and a box keeps the solver's set-up cheap)
            sun = valid[cy0:cy1, cx0:cx1].astype(np.float32)
            for g in range(len(self.centers)):
                self.cells.append((cy0, cy1, cx0, cx1, t))
                self.suns.append(sun)
        n = len(self.cells)
        self.full_suns = [bool(sun.all()) for sun in self.suns]
        self.cell_group = np.arange(n) % len(self.centers)
        self.used: list = [[] for _ in range(n)]  # per tile: the (dx, dy) offsets of its frames
        self.tile_index = np.array([c[4] for c in self.cells], np.int64)
        # float32 sums: the logs are taken relative to ``level`` (near 0), 64-frame sums keep ~1e-6
        self.wsum = [np.zeros((c[1] - c[0], c[3] - c[2]), np.float32) for c in self.cells]
        self.usum = [np.zeros((c[1] - c[0] + 2 * self.Q, c[3] - c[2] + 2 * self.Q), np.float32) for c in self.cells]

    def add(self, plane: np.ndarray, shift, local: Optional[np.ndarray], pool=None) -> None:
        """One frame's plane (data units), its global shift and per-tile shifts (plane px); with a
        thread ``pool`` the tiles are split between its threads (each tile's sums are its own)."""
        L = getattr(self, "_L", None)  # one buffer for every frame's logs (no fresh 4 bytes/px a frame)
        if L is None or L.shape != plane.shape[:2]:
            L = self._L = np.empty(plane.shape[:2], np.float32)
        np.subtract(plane, self.pedestal, out=L, dtype=np.float32, casting="unsafe")
        np.maximum(L, self.floor, out=L)
        cv2.log(L, L)
        L -= self.level  # logs near 0: the sums keep their precision (a constant cancels out)
        Q, R = self.Q, self.R
        tiles = self.tile_index
        shift = np.asarray(shift, np.float64)
        grp = int(np.argmin(np.abs(shift - self.centers).max(axis=1))) if np.isfinite(shift).all() else 0
        d = np.tile(shift, (len(self.cells), 1))
        if local is not None:
            has = tiles >= 0
            d[has] = np.asarray(local)[tiles[has]]
        d -= self.centers[grp]
        ok = np.isfinite(d).all(axis=1) & (np.abs(d).max(axis=1) <= R) & (self.cell_group == grp)
        todo = [(c, float(d[c, 0]), float(d[c, 1])) for c in np.flatnonzero(ok)]
        inv = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP

        full = self.full_suns

        def part(items):
            for c, dx, dy in items:
                y0, y1, x0, x1, _t = self.cells[c]
                # B_k L_k on the tile's sun pixels: L at y + d (bilinear; the frame extended by its edge)
                W = cv2.warpAffine(L, np.array([[1, 0, x0 + dx], [0, 1, y0 + dy]]), (x1 - x0, y1 - y0), flags=inv,
                                   borderMode=cv2.BORDER_REPLICATE)
                if not full[c]:  # (all of a box of sun pixels: nothing to mask)
                    cv2.multiply(W, self.suns[c], dst=W)
                ws = self.wsum[c]
                cv2.add(ws, W, dst=ws)
                # B_k^T W: the transpose of bilinear sampling at y + d is bilinear sampling at x - d;
                # it is 0 but on the box moved by floor(d) and one px more (warped there alone)
                ox, oy = math.floor(dx), math.floor(dy)
                u = self.usum[c][Q + oy:Q + oy + y1 - y0 + 1, Q + ox:Q + ox + x1 - x0 + 1]
                cv2.add(u, cv2.warpAffine(W, np.array([[1, 0, ox - dx], [0, 1, oy - dy]]), (u.shape[1], u.shape[0]),
                                          flags=inv, borderMode=cv2.BORDER_CONSTANT, borderValue=0), dst=u)
                self.used[c].append((dx, dy))

        if pool is None or len(todo) < 8:
            part(todo)
        else:
            list(pool.map(part, [todo[0::2], todo[1::2]]))

    def solve(self, prior: np.ndarray, progress: Optional[ProgressFn] = None) -> Optional[np.ndarray]:
        """The flat at the mask pixels (``idx`` order); None when no tile's frames moved.
        ``progress`` hears of every iteration (and may raise to cancel)."""
        h, w = self.hw
        N, Q, P = self.N, self.Q, self.P
        cells = [c for c in range(len(self.cells)) if len(self.used[c]) >= 3]
        if not cells:
            return None
        nw = len(cells)
        nk = 2 * P + 1
        # per tile: the positions' kernel h (mean over frames) and, per stencil offset u, the
        # corner products sum_k w_q w_{q+u} at o + q (summed over frames)
        ds = [np.asarray(self.used[c]) for c in cells]
        Kc = np.array([len(d) for d in ds], np.float64)
        moved = np.array([np.ptp(d[:, 0]) > MIN_PAIR_SHIFT or np.ptp(d[:, 1]) > MIN_PAIR_SHIFT for d in ds])
        if not moved.any():
            return None
        d = np.concatenate(ds)
        cj = np.repeat(np.arange(nw), Kc.astype(np.int64))
        o = np.floor(d).astype(np.int64)
        f = d - o
        wq = np.stack([(1 - f[:, 0]) * (1 - f[:, 1]), f[:, 0] * (1 - f[:, 1]), (1 - f[:, 0]) * f[:, 1],
                       f[:, 0] * f[:, 1]])
        qs = ((0, 0), (1, 0), (0, 1), (1, 1))  # (qx, qy)
        hk = np.zeros((nw, nk, nk))
        mk = np.zeros((9, nw, nk, nk))
        for qi, (qx, qy) in enumerate(qs):
            at = (cj, o[:, 1] + qy + P, o[:, 0] + qx + P)
            np.add.at(hk, at, wq[qi] / Kc[cj])
            for qj, (px, py) in enumerate(qs):
                np.add.at(mk[(py - qy + 1) * 3 + (px - qx + 1)], at, wq[qi] * wq[qj])
        # each tile's grid pixels that are unknowns (a pixel is in its neighbours' grids too)
        inner = np.full(h * w, -1, np.int64)
        inner[self.idx] = np.arange(len(self.idx))
        num = np.full((h + 2 * N, w + 2 * N), -1, np.int64)
        num[N:N + h, N:N + w] = inner.reshape(h, w)
        gi_flat, gi_unk, bvals, cvals, dvals = [], [], [], [], []
        cgrid = np.zeros((nw, N, N), np.float32)
        box = np.array([self.full_suns[c] for c in cells])  # the tile's sun pixels fill their box

        def conv(img, k):  # sum_v k(v) img(x - v), k centred on (P, P)
            return cv2.filter2D(img, -1, k[::-1, ::-1].copy(), anchor=(P, P), borderType=cv2.BORDER_CONSTANT)

        for j, c in enumerate(cells):
            y0, y1, x0, x1, _t = self.cells[c]
            gh, gw = y1 - y0 + 2 * Q, x1 - x0 + 2 * Q
            sub = num[N + y0 - Q:N + y0 - Q + gh, N + x0 - Q:N + x0 - Q + gw]
            ly, lx = np.nonzero(sub >= 0)
            gi_flat.append(j * N * N + ly * N + lx)
            gi_unk.append(sub[ly, lx])
            C = np.zeros((gh, gw))
            C[Q:Q + y1 - y0, Q:Q + x1 - x0] = self.suns[c]
            cgrid[j, :gh, :gw] = Kc[j] * C  # C, times K
            # the right-hand side: sum_k B_k^T C B_k L_k - K Bbar^T C mean_k(B_k L_k); Bbar^T is the
            # convolution with h
            wb = np.zeros((gh, gw))
            wb[Q:Q + y1 - y0, Q:Q + x1 - x0] = self.wsum[c]
            bvals.append((self.usum[c] - conv(wb, hk[j]))[ly, lx])
            # the stencil's weights c_u(x) = sum_v M_u(v) C(x - v), and the diagonal's h^2 part: box
            # sums of the kernels where C is the whole box (below, all such tiles at once)
            if box[j]:
                cvals.append(np.zeros((9, len(ly))))
                dvals.append(np.zeros(len(ly)))
            else:
                cvals.append(np.stack([conv(C, mk[ui, j])[ly, lx] for ui in range(9)]))
                dvals.append(Kc[j] * conv(C, hk[j] ** 2)[ly, lx])
        del num, inner  # (the set-up's largest arrays go as soon as they are done with)
        gi_flat = np.concatenate(gi_flat)
        gi_unk = np.concatenate(gi_unk)
        n = len(self.idx)
        b = np.bincount(gi_unk, weights=np.concatenate(bvals), minlength=n)
        gj, rem = np.divmod(gi_flat, N * N)
        gyy, gxx = np.divmod(rem, N)
        cu_g = np.concatenate(cvals, axis=1)
        dpart = np.concatenate(dvals)
        del bvals, cvals, dvals, rem
        inb = np.flatnonzero(box[gj])
        if len(inb):  # C a box [Q, Q + ch) x [Q, Q + cw): v runs over a box too (integral images)
            bj = gj[inb]
            ch = np.array([self.cells[c][1] - self.cells[c][0] for c in cells])[bj]
            cw = np.array([self.cells[c][3] - self.cells[c][2] for c in cells])[bj]
            ya, yb = gyy[inb], gxx[inb]
            iy0, iy1 = np.clip(ya - Q - ch + 1 + P, 0, nk), np.clip(ya - Q + P + 1, 0, nk)
            ix0, ix1 = np.clip(yb - Q - cw + 1 + P, 0, nk), np.clip(yb - Q + P + 1, 0, nk)
            nonempty = (iy1 > iy0) & (ix1 > ix0)

            # the integral images' four corners as flat indices (the same for the ten kernels)
            base = bj * (nk + 1) ** 2
            c11, c01 = base + iy1 * (nk + 1) + ix1, base + iy0 * (nk + 1) + ix1
            c10, c00 = base + iy1 * (nk + 1) + ix0, base + iy0 * (nk + 1) + ix0
            S = np.zeros((nw, nk + 1, nk + 1))
            Sf = S.reshape(-1)

            def boxsum(k):  # (nw, nk, nk): each entry's sum over [iy0, iy1) x [ix0, ix1) of its tile's k
                S[:, 1:, 1:] = k.cumsum(1).cumsum(2)
                return np.where(nonempty, Sf[c11] - Sf[c01] - Sf[c10] + Sf[c00], 0.0)

            for ui in range(9):
                cu_g[ui, inb] = boxsum(mk[ui])
            dpart[inb] = Kc[bj] * boxsum(hk ** 2)
        dvec = np.bincount(gi_unk, weights=cu_g[4] - dpart, minlength=n)
        g0 = np.log(np.clip(prior, FLOOR, 1.0))
        # the prior's weight: relative to the diagonal of the unknowns that equations reach (those
        # out of every tile's reach -- near the frame's edge, under dark sky -- have none: the prior)
        seen = dvec > 1e-3 * float(dvec.max()) if dvec.size and dvec.max() > 0 else np.zeros(n, bool)
        if not seen.any():
            return None
        mu = PRIOR_WEIGHT * float(np.median(dvec[seen]))
        b = b + mu * g0
        # the kernels' spectra, OpenCV's packed (CCS) real DFT per tile grid: for these small grids
        # cv2.dft is ~5x faster than numpy.fft (1920x1200 bench: 238 tiles of 96 x 96)
        ii = np.arange(-P, P + 1) % N
        hhat = np.empty((nw, N, N), np.float32)
        hp = np.zeros((N, N), np.float32)
        for j in range(nw):
            hp[ii[:, None], ii[None, :]] = hk[j]
            hhat[j] = cv2.dft(hp)
        del hp
        G = np.zeros((nw, N, N), np.float32)
        Gf = G.reshape(-1)
        gi_pad = gj * (N + 2) * (N + 2) + (gyy + 1) * (N + 2) + gxx + 1  # one px of zeros around each grid
        # the 3x3 stencil part, sum_t sum_k B_k^T C B_k, as one sparse matrix over the unknowns
        where = np.full(nw * (N + 2) * (N + 2), -1, np.int32)  # (int32 indices: half the memory)
        where[gi_pad] = gi_unk
        rows, cols, vals = [], [], []
        for ui in range(9):
            nb = where[gi_pad + (ui // 3 - 1) * (N + 2) + (ui % 3 - 1)]
            keep = (nb >= 0) & (cu_g[ui] != 0)
            rows.append(gi_unk[keep].astype(np.int32))
            cols.append(nb[keep])
            vals.append(cu_g[ui, keep])
        del where, cu_g
        stencil = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
        del rows, cols, vals

        # the tiles' transforms in two threads (OpenCV releases the GIL; each tile writes its own)
        pool = ThreadPoolExecutor(max_workers=2) if nw >= 8 else None
        halves = [range(0, nw // 2), range(nw // 2, nw)]

        def each_tile(f):
            if pool is None:
                f(range(nw))
            else:
                list(pool.map(f, halves))

        def grids(v):  # v on the tiles' grids, and its DFT (CCS, per tile)
            G.fill(0.0)
            Gf[gi_flat] = v[gi_unk]
            out = np.empty_like(G)

            def part(js):
                for j in js:
                    out[j] = cv2.dft(G[j])

            each_tile(part)
            return out

        back = cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE
        hs = np.empty_like(G)

        def matvec(v, vhat):
            """A v from v and its grids' DFT."""
            def part(js):
                for j in js:
                    s = cv2.idft(cv2.mulSpectrums(vhat[j], hhat[j], 0, conjB=True), flags=back)
                    s *= cgrid[j]
                    hs[j] = cv2.idft(cv2.mulSpectrums(cv2.dft(s), hhat[j], 0), flags=back)

            each_tile(part)
            return stencil @ v - np.bincount(gi_unk, weights=hs.reshape(-1)[gi_flat], minlength=n) + mu * v

        try:
            # preconditioned CG; the grids' FFT of the search direction is kept up to date linearly
            # (p = z + beta p): one forward FFT of z per iteration instead of two
            pre = 1.0 / np.maximum(dvec + mu, 1e-12)
            g = g0.copy()
            r = b - matvec(g, grids(g))
            z = pre * r
            p = z.copy()
            phat = grids(p)
            rz = float(r @ z)
            bn = float(np.linalg.norm(b)) or 1.0
            it = 0
            report(progress, 0.2, "self-flat solve")
            done = 0.0
            for it in range(CG_MAXITER):
                rn = float(np.linalg.norm(r))
                if rn <= CG_RTOL * bn:
                    break
                # the residual falls about geometrically: the share of the way to the tolerance, in logs
                done = max(done, float(np.clip(np.log(bn / max(rn, 1e-300)) / np.log(1.0 / CG_RTOL), 0.0, 1.0)))
                report(progress, 0.2 + 0.8 * done, f"self-flat solve, iteration {it + 1}")
                Ap = matvec(p, phat)
                alpha = rz / float(p @ Ap)
                g += alpha * p
                r -= alpha * Ap
                z = pre * r
                rz_new = float(r @ z)
                beta = rz_new / rz
                p = z + beta * p
                phat = grids(z) + np.float32(beta) * phat
                rz = rz_new
            self.iterations = it
            return np.exp(g)
        finally:
            if pool is not None:
                pool.shutdown()


#: A seeing tile whose frames span less than this (plane px) on both axes has no motion to measure
#: with: the prior stays there.
MIN_PAIR_SHIFT = 0.7
#: Weight of the prior relative to the data term (per unknown, relative to the median diagonal of
#: the equations): the prior only decides where the frames' motion says nothing.
PRIOR_WEIGHT = 0.002
#: Relative residual at which CG stops, and its iterations at most.
CG_RTOL = 1e-3
CG_MAXITER = 400
#: px: a frame's global shift (second pass, phase correlation only) farther than this from the
#: first pass's shifts interpolated in time is taken as a wrong peak: the interpolation is used.
PREDICT_TOLERANCE = 2.5
#: Per-tile local shifts (:class:`_LocalShifts`) in the self-flat equations.
LOCAL_SHIFTS = True
#: Register against the mean of the frames aligned by a first pass (see :func:`_sharpen_reference`).
SHARPEN_REFERENCE = True
#: Frames (evenly spaced among those used) whose aligned mean becomes the registration base: a
#: mean of 16 is already far sharper and less noisy than any frame, and the pass costs a quarter.
SHARPEN_FRAMES = 32
#: Threads registering frames at once (OpenCV releases the GIL; the result does not depend on it).
REGISTER_THREADS = 2


_OPENCV_THREADS = {"lock": threading.Lock(), "depth": 0, "saved": None}


@contextmanager
def _opencv_threads(n: int):
    """OpenCV's own thread count set to ``n`` for a while (process-wide), then restored. The frame
    passes call OpenCV thousands of times on small tiles from their own threads; OpenCV's internal
    threads only add overhead there (1920x1200 bench: a 70 x 70 matchTemplate 127 -> 86 us CPU, a
    47 x 45 warpAffine 25 -> 10 us CPU). Flats built at once in several threads (the GUI's worker
    pool) overlap safely: the first one in saves the count, the last one out restores it."""
    st = _OPENCV_THREADS
    with st["lock"]:
        if st["depth"] == 0:
            st["saved"] = cv2.getNumThreads()
            cv2.setNumThreads(n)
        st["depth"] += 1
    try:
        yield
    finally:
        with st["lock"]:
            st["depth"] -= 1
            if st["depth"] == 0:
                cv2.setNumThreads(st["saved"])


def _sun_groups(shifts: np.ndarray, margin: float, cap: float) -> tuple[np.ndarray, float]:
    """Centres ``(G, 2)`` of groups of the (time-ordered) ``shifts``, each group's shifts within
    ``cap - margin`` of its centre on both axes (a frame's own tiles may move ``margin`` more),
    and the spread to allow around a centre: the largest such distance plus ``margin``. One
    group unless the sun drifted farther than ``2 (cap - margin)``: a sun seen by every frame of
    a group must lie inside all of them."""
    s = np.asarray(shifts, dtype=np.float64).reshape(-1, 2)
    s = s[np.isfinite(s).all(axis=1)]
    if not len(s):
        return np.zeros((1, 2)), float(cap)
    half = max(cap - margin, 1.0)
    groups, lo, hi, members = [], s[0].copy(), s[0].copy(), [s[0]]
    for v in s[1:]:
        nlo, nhi = np.minimum(lo, v), np.maximum(hi, v)
        if (nhi - nlo).max() <= 2 * half:
            lo, hi = nlo, nhi
            members.append(v)
        else:
            groups.append(np.array(members))
            lo, hi, members = v.copy(), v.copy(), [v]
    groups.append(np.array(members))
    centres = np.unique(np.array([np.round((g.max(0) + g.min(0)) / 2) for g in groups]), axis=0)
    near = np.abs(s[:, None, :] - centres[None]).max(axis=2)
    return centres, float(near.min(axis=1).max()) + margin


def _multiframe(flat, ref, seq, frame_idx, slices, fills, pedestal, progress, color="mono", grown=None) -> dict:
    """Per plane: the prior (the ``local`` flat of the reference); where the sun moved, the
    frame-based self-flat (:class:`_SunFlat`) from frames registered per seeing tile, pulled weakly
    toward the prior. The frames are registered with the prior's dust removed (divided by it), so
    no frame needs a fill of its own. Returns diagnostics."""
    K = len(frame_idx)
    min_sig = {p: _min_signal(ref[sl], pedestal) for p, sl in enumerate(slices)}
    priors: dict = {}
    flat0 = np.ones(ref.shape, np.float32)
    for p, sl in enumerate(slices):
        hf = fills[p]
        if hf.n == 0:
            continue
        plane = ref[sl]
        priors[p] = _finish(_ratio(plane.reshape(-1)[hf.idx], hf.fill(plane), pedestal, min_sig[p])).astype(np.float64)
        _assign(flat0, sl, hf.idx, priors[p].astype(np.float32))
    ped = np.float32(pedestal)

    dust = np.flatnonzero(flat0.reshape(-1) != 1.0)  # only these pixels change
    dust_flat = flat0.reshape(-1)[dust]

    def clean(frame: np.ndarray, inplace: bool = False) -> np.ndarray:
        """The frame (or a stack of frames) with the prior's dust divided out: a float32 copy (or
        ``frame`` itself, when ``inplace`` and already float32) in which only the prior's dust
        pixels change (elsewhere the prior is exactly 1.0)."""
        out = frame if (inplace and isinstance(frame, np.ndarray) and frame.dtype == np.float32
                        and frame.flags.c_contiguous) else np.array(frame, dtype=np.float32)
        v = out.reshape(-1, flat0.size)
        v[:, dust] = (v[:, dust] - ped) / dust_flat + ped
        return out

    info: dict = {"shifts": np.zeros((K, 2)), "local_shifts": np.zeros((0, K, 2)), "kll": {}}
    suns: dict = {}
    if K >= 3:
        reg = _Registrar(ref.shape, grown, color, reference=ref)
        loc = _LocalShifts(clean(ref), grown, color, fill=False) if LOCAL_SHIFTS else None
        chunk = int(max(1, min(16, (128 << 20) // max(1, ref.size * 4))))  # <= 128 MB of float32 frames
        with ThreadPoolExecutor(max_workers=REGISTER_THREADS) as pool, _opencv_threads(1):
            early = np.zeros((0, 2))
            if SHARPEN_REFERENCE:
                sharp = frame_idx if K <= SHARPEN_FRAMES else \
                    frame_idx[np.round(np.linspace(0, K - 1, SHARPEN_FRAMES)).astype(np.int64)]
                # a few frames at a time: registration batches them so anyway, and the pass holds
                # each frame twice (as read, and aligned) -- 14 at once held ~260 MB at 1920x1200
                early = _sharpen_reference(reg, loc, seq, sharp, min(chunk, 2 * REGISTER_THREADS), pool, clean,
                                           sub_progress(progress, 0.0, 0.15), shape=ref.shape)
                progress = sub_progress(progress, 0.15, 1.0)
            for p, sl in enumerate(slices):
                if fills[p].n == 0:
                    continue
                step = 2 if color in BAYER and len(sl) == 2 else 1
                centre, spread = _sun_groups(early / step, (_LocalShifts.MAX_DEV + 1) / step, SUN_MAX_SPREAD)
                level = float(np.log(max(float(np.median(ref[sl])) - pedestal, min_sig[p])))
                suns[p] = (_SunFlat(ref[sl].shape, fills[p].idx, _LocalShifts.TILE,
                                    loc.tile_of if (loc is not None and loc.n) else None, centre, spread, pedestal,
                                    min_sig[p], level, bright=ref[sl] - pedestal > 2 * min_sig[p]), step)
            shifts = info["shifts"]
            local = np.zeros((loc.n if loc is not None else 0, K, 2))
            # the per-tile shifts are searched around the global one and refined on their own: the
            # global shift needs no refinement of its own (where a tile's correlation fails, its
            # global shift is the phase correlation's against the sharpened base)
            reg.refine = loc is None or loc.n == 0
            # with tiles and a first pass to check against, the global shift is the phase
            # correlation of the frame with the prior's dust divided out (no fill of its own)
            cheap = not reg.refine and SHARPEN_REFERENCE and len(early) >= 2
            if cheap:
                reg.fill = False
            step2 = max(1, chunk // 2)  # two chunks are alive at once (one read ahead)

            def prepare(k0: int) -> tuple:
                """Read frames k0.. and register them (in a thread, while the previous chunk's
                frames are added to the sums; chunks in order: registration follows time)."""
                ks = frame_idx[k0:k0 + step2]
                # the frames as stored (the sums take their logs straight from them), and a float32
                # copy with the prior's dust divided out for the registration
                frames = _read_raw(seq, ks, ref.shape)
                cl = clean(_as_float32(frames), inplace=True) if (cheap or loc is not None) else None
                if cheap:
                    # the cleaned frames' phase correlation against the sharpened base, checked
                    # against the first pass's shifts (interpolated in time): the tiles refine it
                    sh, _ = register_frames(reg, None, cl)
                    pred = np.stack([np.interp(ks, sharp, early[:, a]) for a in (0, 1)], axis=1)
                    off = ~(np.abs(sh - pred).max(axis=1) <= PREDICT_TOLERANCE)
                    sh[off] = pred[off]
                    loc_sh = None
                    if loc is not None:
                        # half the frames' tiles on the pool's other thread (the main thread adds
                        # the previous chunk meanwhile; the tiles are the larger part of the work)
                        def tiles(js):
                            return [loc.shifts(cl[j], sh[j]) for j in js]

                        other = pool.submit(tiles, range(1, len(ks), 2))
                        per = [None] * len(ks)
                        per[0::2] = tiles(range(0, len(ks), 2))
                        per[1::2] = other.result()
                        loc_sh = np.stack(per, axis=1)
                else:
                    sh, loc_sh = register_frames(reg, loc, frames, tile_frames=cl)
                return frames, sh, loc_sh

            starts = list(range(0, K, step2))
            ahead = pool.submit(prepare, starts[0])
            try:
                for i, k0 in enumerate(starts):
                    frames, sh, loc_sh = ahead.result()
                    if i + 1 < len(starts):
                        ahead = pool.submit(prepare, starts[i + 1])
                    n_k = len(frames)
                    shifts[k0:k0 + n_k] = sh
                    if loc_sh is not None:
                        local[:, k0:k0 + n_k] = loc_sh
                    for j in range(n_k):
                        for p, sl in enumerate(slices):
                            if p in suns:
                                sun, step = suns[p]
                                sun.add(frames[j][sl], sh[j] / step,
                                        local[:, k0 + j] / step if loc is not None and loc.n else None)
                        report(progress, 0.7 * (k0 + j + 1) / K, f"frame {k0 + j + 1}/{K}")
                    frames = None  # the chunk's frames go before the next read
            finally:
                ahead.cancel()
            info["local_shifts"] = local
    for p, sl in enumerate(slices):
        if fills[p].n == 0:
            continue
        part = sub_progress(progress, 0.7 + 0.3 * p / len(slices), 0.7 + 0.3 * (p + 1) / len(slices))
        solved = suns.pop(p)[0].solve(priors[p], part) if p in suns else None
        info["kll"][p] = solved is not None
        if solved is not None:
            # where the reference divided by the flat has no measurable signal (dark sky beside
            # the limb) the attenuation cannot be measured: 1.0, as for the other methods
            est = (ref[sl].reshape(-1)[fills[p].idx] - pedestal) / np.maximum(solved, FLOOR)
            solved = np.where(est > min_sig[p], solved, 1.0)
        _assign(flat, sl, fills[p].idx, _finish(solved if solved is not None else priors[p]))
        report(progress, 0.7 + 0.3 * (p + 1) / len(slices), "self-flat solve")
    return info



def _feather(flat: np.ndarray, grown: np.ndarray, feather: int) -> np.ndarray:
    d = cv2.distanceTransform(grown.astype(np.uint8), cv2.DIST_L2, 5)
    w = np.minimum(1.0, d / float(feather)).astype(np.float32)
    if flat.ndim == 3:
        w = w[..., None]
    out = (1.0 + w * (flat - 1.0)).astype(np.float32)
    out[~grown] = 1.0
    return out

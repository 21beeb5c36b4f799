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
    ``local``. (``multiframe`` itself falls back to its per-frame prior when the sun did not move.)

``local``
    a harmonic (Laplace) fill of every speck from the pixels just outside it, on the reference
    frame: the smoothest surface that matches the surroundings. Deterministic, needs one frame.
``multiframe``
    uses the motion of the sun under the fixed dust, over up to ``max_frames`` evenly spaced frames.
    First a prior: the harmonic fill solved for each frame, and the per-pixel median over frames of
    observed / filled. Then the frames are registered (global sub-pixel shift by phase correlation)
    and the self-flat equations of Kuhn, Lin & Loranz (1991) are solved in least squares: for
    frames k, j whose sun moved by d, ``log raw_k(x) - log raw_j(x + d) = g(x) - g(x + d)`` with
    ``g = log flat`` unknown only inside the grown mask and 0 outside -- the boundary that makes
    the problem well posed even for drifts smaller than the specks (classical KLL needs large,
    deliberate offsets). A weak pull toward the prior (:data:`PRIOR_WEIGHT`) decides where the
    motion says nothing; with too little motion (fewer than 8 frame pairs moved by 0.7 px) the prior
    is the result. Frame pairs: up to :data:`MAX_PAIRS` (300), fewer for large masks
    (:data:`PAIR_BUDGET`; 150 at 1920x1200 with ~135 k dust pixels), chosen so that every frame is
    in about as many. On the demo it cuts the flat error 2-4x against ``local`` when the sun drifts
    a few pixels; with ~1-2 px of drift under strong seeing it is no better than ``local``.
    Registration (:class:`_Registrar`): phase correlation refined by ECC alignment, first against
    the temporal median, then against the mean of the frames aligned by that first pass (at most
    :data:`SHARPEN_FRAMES` = 32 of them, evenly spaced; the
    median of a drifting sun is smeared along the drift and shifts measured against it come out
    short: the `aiflat demo` default went from 94.8 % to 98.7 % removed); the precision of the
    shifts is what limits this method (with the demo's true
    shifts the removal lands within 97-104 % on every seed tried). Seeing bends the image locally,
    so every 64-px tile holding dust gets its own shift per frame (normalised cross-correlation
    around the global shift, :class:`_LocalShifts`); on the demo's hard difficulty (strong seeing,
    2 px of drift, faint specks) that brought the mean |removal - 100 %| over seeds 1-8 from 16 to
    9 points (worst seed 150 % -> 131 %); hard stays outside 95-105 % on some seeds.
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

from concurrent.futures import ThreadPoolExecutor
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

    def __init__(self, shape: tuple, grown: np.ndarray, color: str, reference: Optional[np.ndarray] = None):
        self.color = color
        self.grown = grown
        h, w = shape[:2]
        self.scale = 2.0 if (color in BAYER and len(shape) == 2) else 1.0
        if self.scale == 2.0:
            h, w = h // 2, w // 2
        ch, cw = min(h, self.CROP), min(w, self.CROP)
        self.box = (slice((h - ch) // 2, (h - ch) // 2 + ch), slice((w - cw) // 2, (w - cw) // 2 + cw))
        self.fill = None
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
        refined = self._refine(img32, dx, dy) if np.isfinite(dx) and np.isfinite(dy) else None
        return img32, dx, dy, refined

    def accept(self, proposal: tuple) -> tuple[float, float]:
        """Finish :meth:`propose`'s work in frame order: a coarse shift far from the previous
        frame's is a wrong peak, so ECC starts again from the previous frame's shift."""
        img, dx, dy, refined = proposal
        lx, ly = self.last
        if not (np.isfinite(dx) and np.isfinite(dy) and np.hypot(dx - lx, dy - ly) < self.MAX_COARSE):
            dx, dy = lx, ly  # phase correlation locked onto a far, wrong peak: start from the previous frame
            refined = self._refine(img, dx, dy)
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
                       pool, progress, cache: Optional[dict] = None, shape: Optional[tuple] = None) -> None:
    """Make ``reg`` (and the per-tile ``loc``) register against the mean of the frames aligned by
    a first registration against the temporal median. The median of a drifting sun is smeared
    along the drift, and shifts measured against it shrink (on the demo: 7 % too small along an
    11 px drift, 0.29 px rms error; against the aligned mean 0.11 px), which leaves the self-flat
    short of the dust's depth. ``cache``: when given, the dust fill of every frame's luminance (its
    values at the mask pixels, float64) is kept in it by frame index, for the second pass.
    ``shape``: the reference's (every frame must match it; default the sequence's frame shape)."""
    shape = tuple(seq.frame_shape) if shape is None else tuple(shape)
    filler = loc if loc is not None else _LocalShifts(np.zeros(seq.frame_shape, np.float32), reg.grown, reg.color,
                                                       tiles=False)
    h, w = filler.hw
    total = np.zeros((h, w), np.float64)
    cover_x: list = []
    cover_y: list = []
    K = len(frame_idx)

    def cover(size: int, s: float) -> np.ndarray:
        """How much of each pixel of a line of ``size`` ones moved by ``-s`` px (bilinear, zero
        outside) covers: the frame's coverage is the outer product of its two lines."""
        x = np.arange(size) + s
        return np.clip(np.minimum(x + 1.0, size - x), 0.0, 1.0)

    def moved(frame: np.ndarray, shift, values) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        lum, _m, scale = _luminance_and_mask(frame, reg.grown, reg.color)
        img = filler._filled(lum, values).astype(np.float32)
        M = np.float32([[1, 0, -float(shift[0]) / scale], [0, 1, -float(shift[1]) / scale]])
        return (cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT),
                (cover(w, float(shift[0]) / scale), cover(h, float(shift[1]) / scale)))

    for k0 in range(0, K, chunk):
        ks = frame_idx[k0:k0 + chunk]
        frames = _read_frames(seq, ks, shape)
        shifts, _ = register_frames(reg, None, frames, pool)
        values = [None] * len(ks)
        if filler.fill:  # the chunk's dust fills in one solve (several right-hand sides: ~3x cheaper)
            filled = filler.fill.fill([_luminance_and_mask(f, reg.grown, reg.color)[0] for f in frames])
            values = list(filled)
            if cache is not None:
                cache.update((int(i), v) for i, v in zip(ks, values))
        items = [(frames[j], shifts[j], values[j]) for j in range(len(ks))]
        for img, (cx, cy) in (pool.map(lambda it: moved(*it), items) if pool is not None
                              else (moved(*it) for it in items)):
            total += img
            cover_x.append(cx)
            cover_y.append(cy)
        report(progress, (k0 + len(ks)) / K, f"aligning frame {k0 + len(ks)}/{K}")
    count = np.asarray(cover_y).T @ np.asarray(cover_x)  # the sum of every frame's coverage
    covered = count > 0.5 * K
    if covered.mean() < 0.5:
        return  # the sun moved too far for a common field: keep the median
    full = np.where(covered, total / np.maximum(count, 1e-9), filler._filled(
        _luminance_and_mask(np.asarray(seq.frame(int(frame_idx[len(frame_idx) // 2])), np.float32),
                            reg.grown, reg.color)[0]))
    reg.rebase(full[reg.box])
    if loc is not None:
        loc.base = full.astype(np.float32)


def _read_frames(seq, ks, shape: tuple) -> np.ndarray:
    """Frames ``ks`` of ``seq`` as one float32 stack (each converted straight into it); every
    frame must be shaped like the reference, ``shape``."""
    out = np.empty((len(ks),) + tuple(shape), dtype=np.float32)
    for j, i in enumerate(ks):
        f = np.asarray(seq.frame(int(i)))
        if f.shape != tuple(shape):
            raise InputError(f"frames are {f.shape} but the reference is {tuple(shape)}", getattr(seq, "path", None))
        out[j] = f
    return out


def register_frames(reg: Optional["_Registrar"], loc: Optional["_LocalShifts"], frames: np.ndarray,
                    pool=None, fill_values: Optional[list] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Global shifts ``(k, 2)`` and per-tile shifts ``(n_tiles, k, 2)`` of ``frames`` (in time order),
    the same numbers as calling ``reg.shift`` and ``loc.shifts`` frame by frame; with a thread
    ``pool`` the independent parts run for several frames at once (OpenCV releases the GIL: ~1.8x
    on 2 cores). ``fill_values``: per frame, the dust fill of its luminance when already known
    (see :meth:`_LocalShifts.shifts`)."""
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
        for j, sh in enumerate(run(lambda j: loc.shifts(frames[j], shifts[j], known[j]), range(k))):
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
        for t, (y0, y1, x0, x1) in enumerate(self.boxes):
            # at the frame's edge the template shrinks so that its search window stays inside
            y0, y1 = max(y0, R - gy), min(y1, h - gy - R)
            x0, x1 = max(x0, R - gx), min(x1, w - gx - R)
            if y1 - y0 < 16 or x1 - x0 < 16:
                continue  # too little left to correlate: the global shift
            window = img[y0 + gy - R:y1 + gy + R, x0 + gx - R:x1 + gx + R]
            cc = cv2.matchTemplate(window, self.base[y0:y1, x0:x1], cv2.TM_CCOEFF_NORMED)
            py, px = np.unravel_index(int(np.argmax(cc)), cc.shape)
            if not (0 < py < cc.shape[0] - 1 and 0 < px < cc.shape[1] - 1) or cc[py, px] < self.MIN_CORR:
                continue
            sub = []
            for lo, mid, hi in ((cc[py, px - 1], cc[py, px], cc[py, px + 1]),
                                (cc[py - 1, px], cc[py, px], cc[py + 1, px])):
                den = lo - 2 * mid + hi
                sub.append(0.5 * (lo - hi) / den if den < 0 else 0.0)
            d = np.array([gx + px - R + sub[0], gy + py - R + sub[1]], dtype=np.float64)
            if np.isfinite(d).all() and np.hypot(*(d - g)) <= self.MAX_DEV:
                out[t] = d
        return out * self.scale

    def plane_tiles(self, plane_shape: tuple) -> np.ndarray:
        """Tile index (-1: none, use the global shift) of every pixel of a plane, flattened. Planes
        and the luminance share coordinates (Bayer planes and the binned luminance are both half
        size)."""
        h, w = plane_shape[:2]
        ty = np.minimum(np.arange(h) // self.TILE, self.grid[0] - 1)
        tx = np.minimum(np.arange(w) // self.TILE, self.grid[1] - 1)
        return self.tile_of[ty[:, None], tx[None, :]].reshape(-1)


#: Pairs of frames closer than this (plane pixels) carry no information; farther than the cap are
#: not used (the halo of pixels kept per frame extends that far around the mask).
MIN_PAIR_SHIFT = 0.7
MAX_PAIR_SHIFT = 24.0
#: Pairs used at most (:func:`_balanced_pairs` picks them): :data:`MAX_PAIRS`, fewer when pairs
#: times unknowns would pass :data:`PAIR_BUDGET` (a pair costs ~0.3 us of CPU per unknown; ~45 ms
#: at 1920x1200 with ~135 k dust pixels), never fewer than :data:`MIN_PAIRS`. The flat's error is
#: set by the frames far more than by the pairs: on the bench video (64 frames) 150 pairs instead
#: of 300 left the error on the dust at 0.00558 instead of 0.00548 (100 pairs 0.0061; 32 frames
#: with 300 pairs 0.0066) for 40 % less self-flat time; on small demos 150 pairs cost up to ~5 %
#: of error, where 300 pairs are cheap anyway.
MAX_PAIRS = 300
MIN_PAIRS = 150
PAIR_BUDGET = 20_000_000
#: Weight of the per-frame-fill prior relative to the data term (per unknown, relative to the
#: median data weight): the prior only decides where the frames' motion says nothing.
PRIOR_WEIGHT = 0.002
#: Self-flat systems up to this many unknowns are solved directly, larger ones by conjugate
#: gradients (a direct solve of a large speck's equations fills in almost densely).
DIRECT_MAX = 600
#: Pair equations are folded into AtA this many matrix entries at a time (bounded memory; larger
#: batches mean fewer sums of the partial AtA, which dominate the time).
FOLD_NNZ = 2_000_000
#: Relative residual at which CG stops. On the 1920x1200 bench video 1e-5 and 1e-7 give flats
#: within 6e-5 of each other (mean 4e-6; their error against the true flat is 0.0055) for ~35 %
#: fewer iterations.
CG_RTOL = 1e-5
CG_MAXITER = 400
#: Per-tile local shifts (:class:`_LocalShifts`) in the self-flat equations.
LOCAL_SHIFTS = True
#: Register against the mean of the frames aligned by a first pass (see :func:`_sharpen_reference`).
SHARPEN_REFERENCE = True
#: Frames (evenly spaced among those used) whose aligned mean becomes the registration base: a
#: mean of 16 is already far sharper and less noisy than any frame, and the pass costs a quarter.
SHARPEN_FRAMES = 32
#: Threads registering frames at once (OpenCV releases the GIL; the result does not depend on it).
REGISTER_THREADS = 2
#: Threads building the self-flat's right-hand side (numpy releases the GIL; same result for any).
SELF_FLAT_THREADS = 2


def _multiframe(flat, ref, seq, frame_idx, slices, fills, pedestal, progress, color="mono", grown=None) -> dict:
    """Per plane: (1) the median over frames of observed / harmonic fill (prior); (2) where the
    sun moved, the least-squares solution of the self-flat equations (Kuhn-Lin-Loranz): for frames
    k, j with relative shift d, ``log raw_k(x) - log raw_j(x + d) = g(x) - g(x + d)``, ``g = log flat``
    unknown only inside the grown mask (0 outside: this anchors the solution), plus a weak pull
    toward the prior. Returns diagnostics."""
    K = len(frame_idx)
    ratios = {p: np.empty((K, fills[p].n), dtype=np.float32) for p in fills}
    min_sig = {p: _min_signal(ref[sl], pedestal) for p, sl in enumerate(slices)}
    reg = _Registrar(ref.shape, grown, color, reference=ref) if K >= 3 else None
    shifts = np.zeros((K, 2))
    # mono data: the luminance is the frame and its dust fill the plane's own (one factorisation,
    # and each frame's fill solved once, in the first registration pass, for all later uses)
    mono = ref.ndim == 2 and color not in BAYER and len(slices) == 1 and fills[0].n > 0
    loc = (_LocalShifts(ref, grown, color, fill=fills[0] if mono else None)
           if (reg is not None and LOCAL_SHIFTS) else None)
    cache: Optional[dict] = {} if mono else None
    local = np.zeros((loc.n if loc else 0, K, 2))
    # halo: the pixels each frame must keep for the pair equations
    halos = {}
    for p, sl in enumerate(slices):
        pm = grown[sl[:2]]
        step = 2 if color in BAYER and len(sl) == 2 else 1
        r = int(np.ceil(MAX_PAIR_SHIFT / step)) + 2
        halo = maskmod.grow(pm, r) if pm.any() else pm
        halos[p] = (np.flatnonzero(halo), step)
    halo_vals = {p: np.empty((K, len(halos[p][0])), dtype=np.float32) for p in halos}
    chunk = int(max(1, min(16, (128 << 20) // max(1, ref.size * 4))))  # <= 128 MB of float32 frames
    with ThreadPoolExecutor(max_workers=REGISTER_THREADS) as pool:
        if reg is not None and SHARPEN_REFERENCE:
            sharp = frame_idx if K <= SHARPEN_FRAMES else \
                frame_idx[np.round(np.linspace(0, K - 1, SHARPEN_FRAMES)).astype(np.int64)]
            _sharpen_reference(reg, loc, seq, sharp, chunk, pool, sub_progress(progress, 0.0, 0.15), cache,
                               shape=ref.shape)
            progress = sub_progress(progress, 0.15, 1.0)
        for k0 in range(0, K, chunk):
            ks = frame_idx[k0:k0 + chunk]
            frames = _read_frames(seq, ks, ref.shape)
            # the dust fill of every frame's luminance (local shifts; for mono data the plane's own
            # fill, the prior's estimate): kept from the sharpen pass, else the chunk's in one solve
            known = None
            if cache is not None:
                miss = [j for j, i in enumerate(ks) if int(i) not in cache]
                if miss:
                    cache.update(zip((int(ks[j]) for j in miss), fills[0].fill([frames[j] for j in miss])))
                known = [cache.pop(int(i)) for i in ks]
            elif loc is not None and loc.n and loc.fill:
                known = list(loc.fill.fill([_luminance_and_mask(f, grown, color)[0] for f in frames]))
            if reg is not None:
                sh, loc_sh = register_frames(reg, loc, frames, pool, known)
                shifts[k0:k0 + len(ks)] = sh
                if loc_sh is not None:
                    local[:, k0:k0 + len(ks)] = loc_sh
            for p, sl in enumerate(slices):
                hf = fills[p]
                if hf.n == 0:
                    continue
                planes = np.ascontiguousarray(frames[(slice(None),) + sl])
                est = np.stack(known) if mono else hf.fill(planes)  # (k, n)
                flat2 = planes.reshape(planes.shape[0], -1)
                obs = flat2[:, hf.idx]
                ratios[p][k0:k0 + len(ks)] = _ratio(obs, est, pedestal, min_sig[p])
                halo_vals[p][k0:k0 + len(ks)] = flat2[:, halos[p][0]]
            report(progress, 0.7 * (k0 + len(ks)) / K, f"frame {k0 + len(ks)}/{K}")
            frames = known = planes = flat2 = obs = est = None  # the chunk's frames go before the next read
    info = {"shifts": shifts, "local_shifts": local, "kll": {}}
    for p, sl in enumerate(slices):
        hf = fills[p]
        if hf.n == 0:
            continue
        import warnings

        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels -> 1.0 below
            rp = ratios[p]  # np.median partitions; nanmedian sorts masked arrays (~10x slower)
            med = np.median(rp, axis=0) if not np.isnan(rp).any() else np.nanmedian(rp, axis=0)
        prior = _finish(med).astype(np.float64)
        hidx, step = halos[p]
        plane_shape = ref[sl].shape
        tiles = ((loc.plane_tiles(plane_shape), local / step, loc.TILE, loc.grid) if loc is not None and loc.n
                 else None)
        solved = _self_flat(hf, plane_shape, hidx, halo_vals.pop(p), shifts / step, prior, pedestal, min_sig[p],
                            local=tiles, progress=sub_progress(progress, 0.7 + 0.3 * p / len(slices), 0.7 + 0.3 * (p + 1) / len(slices)))
        info["kll"][p] = solved is not None
        _assign(flat, sl, hf.idx, _finish(solved if solved is not None else prior))
        report(progress, 0.7 + 0.3 * (p + 1) / len(slices), "self-flat solve")
    return info


def _shift_cells(h: int, w: int, local) -> tuple[list, np.ndarray]:
    """Rectangles ``(y0, y1, x0, x1)`` tiling the plane, inside each of which every row of the
    self-flat equations uses one shift per pair, and each one's tile (-1: the global shift).
    ``local``: as in :func:`_self_flat`."""
    if local is None:
        return [(0, h, 0, w)], np.array([-1])
    tile_map, _sh, T, grid = local
    ye = [min(c * T, h) for c in range(grid[0])] + [h]
    xe = [min(c * T, w) for c in range(grid[1])] + [w]
    tm = np.asarray(tile_map).reshape(h, w)
    rects, tiles = [], []
    for y0, y1 in zip(ye[:-1], ye[1:]):
        for x0, x1 in zip(xe[:-1], xe[1:]):
            if y1 <= y0 or x1 <= x0:
                continue
            t = int(tm[y0, x0])
            if not np.all(tm[y0:y1, x0:x1] == t):
                raise ProcessingError("internal error: the seeing tiles are not rectangles")
            rects.append((y0, y1, x0, x1))
            tiles.append(t)
    return rects, np.array(tiles, dtype=np.int64)


def _bilinear(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer offsets ``(..., 4, 2)`` (dx, dy) and weights ``(..., 4)`` of bilinear interpolation at
    shift ``d`` ``(..., 2)``, corners in the order (0,0), (1,0), (0,1), (1,1)."""
    o = np.floor(d).astype(np.int64)
    f = d - o
    fx, fy = f[..., 0], f[..., 1]
    wts = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=-1)
    q = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    return o[..., None, :] + q, wts


def _self_flat(hf: HarmonicFill, shape, hidx, vals, shifts, prior, pedestal, min_signal, progress=None, local=None):
    """Solve the self-flat equations for ``g = log flat`` at the mask pixels ``hf.idx``; None when
    the frames did not move enough to say anything. ``local``: (tile index of every plane pixel,
    -1 = none; per-tile shifts ``(n_tiles, K, 2)``; the tile size; the tile grid) used instead of
    the global shifts there.

    The equations are those of one row per frame pair and pixel ``x`` that involves an unknown:
    ``g(x) - sum_q w_q g(x + o + q) = log raw_k(x) - interp log raw_j(x + d)`` (the same bilinear
    interpolation on both sides), kept when every
    pixel it reads is in the frame, in the halo and above the signal floor in its frame. Their
    normal matrix is summed by pixel offset, never row by row: inside a rectangle of constant shift
    (a seeing tile) every pair's rows are the same stencil moved, so ``A^T A`` is the count of
    pairs on the diagonal, per tile and offset one weight ``-sum w_q`` for the (x, x + o + q)
    entries, and the (x + o + q, x + o + q') products summed over shifted rectangles (2-D
    cumulative sums); the few rows that are dropped (frame edge, halo, dark pixels) are then taken
    out again explicitly. Same equations, same solution as summing every row (up to rounding),
    without forming the rows' giant sparse products."""
    K = vals.shape[0]
    h, w = shape
    n = hf.n
    pairs = []
    for k in range(K):
        for j in range(K):
            if k != j:
                d = shifts[j] - shifts[k]
                dist = float(np.hypot(d[0], d[1]))
                if MIN_PAIR_SHIFT <= dist <= MAX_PAIR_SHIFT - 1:
                    pairs.append((k, j))
    if len(pairs) < 8:
        return None
    cap = int(np.clip(PAIR_BUDGET // max(n, 1), MIN_PAIRS, MAX_PAIRS))
    if len(pairs) > cap:
        pairs = _balanced_pairs(pairs, K, cap)
    P = len(pairs)
    pk = np.array([p[0] for p in pairs])
    pj = np.array([p[1] for p in pairs])
    num = np.full(h * w, -1, dtype=np.int64)
    num[hf.idx] = np.arange(n)
    pos = np.full(h * w, -1, dtype=np.int64)
    pos[hidx] = np.arange(len(hidx))
    mask2d = num.reshape(h, w) >= 0
    dist = cv2.distanceTransform((~mask2d).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE).reshape(-1)
    # per frame: the log signal of the halo pixels (float32, what the rows interpolate), NaN where
    # it is not above the signal floor: a row reading such a pixel comes out NaN, whatever its
    # weights, and is no equation; the appended column is what a halo position of -1 (outside the
    # halo or the frame) reads: NaN
    valsp = np.full((K, vals.shape[1] + 1), np.nan, dtype=np.float32)
    for k in range(K):  # frame by frame: no float64 copy of every frame's halo at once
        v = vals[k] - np.float32(pedestal)  # float32 throughout: what is kept (logs ~4x cheaper)
        with np.errstate(invalid="ignore", divide="ignore"):
            valsp[k, :-1] = np.where(v > min_signal, np.log(np.maximum(v, np.float32(min_signal))), np.nan)
        del v
    del vals  # the caller hands its only reference over: the raw halo values go now
    hdist = dist[hidx]
    order = np.argsort(hdist, kind="stable")
    hdist, hsorted = hdist[order], hidx[order]
    hys, hxs = np.divmod(hsorted, w)
    htid = local[0][hsorted] if local is not None else None
    # the halo's radius: a row reading an unknown lies in the halo unless its shift is about this long
    r_halo = float(np.min(np.where(pos.reshape(h, w) < 0, dist.reshape(h, w), np.inf))) if (pos < 0).any() else np.inf

    # -- per rectangle of constant shift: every pair's offsets and weights
    rects, rtile = _shift_cells(h, w, local)
    dg = shifts[pj] - shifts[pk]  # (P, 2)
    dl = (local[1][:, pj] - local[1][:, pk]) if local is not None else None  # (n_tiles, P, 2)
    cd = np.stack([dl[t] if t >= 0 else dg for t in rtile])  # (cells, P, 2)
    offs, wts = _bilinear(cd)  # (cells, P, 4, 2), (cells, P, 4)
    report(progress, 0.05, "self-flat: the normal equations by offset")

    # diagonal: every pair has a row at every unknown
    diag = np.full(n, float(P))
    # x -> x + o + q: one weight per rectangle and offset; entries (a, a + s) for unknowns a, a + s
    ys_u, xs_u = np.divmod(hf.idx, w)
    ye = sorted({r[0] for r in rects})
    xe = sorted({r[2] for r in rects})
    cy = np.searchsorted(ye, ys_u, side="right") - 1
    cx = np.searchsorted(xe, xs_u, side="right") - 1
    cell_grid = np.full((len(ye), len(xe)), -1, dtype=np.int64)
    for c, r in enumerate(rects):
        cell_grid[ye.index(r[0]), xe.index(r[2])] = c
    cid = cell_grid[cy, cx]
    order_u = np.argsort(cid, kind="stable")  # unknowns grouped by rectangle: C's rows, in that order
    inv_u = np.empty(n, np.int64)
    inv_u[order_u] = np.arange(n)
    bounds = np.searchsorted(cid[order_u], np.arange(len(rects) + 1))
    # the unknowns' numbers in the plane padded by the longest offset: no bounds checks below
    mc = int(np.abs(offs).max()) + 1
    Wc = w + 2 * mc
    pad = np.full((h + 2 * mc, Wc), -1, dtype=np.int64)
    pad[mc:mc + h, mc:mc + w] = inv_u[np.maximum(num, 0)].reshape(h, w)
    pad[mc:mc + h, mc:mc + w][~mask2d] = -1
    num_c = pad.reshape(-1)
    del pad
    apad = (ys_u + mc) * Wc + (xs_u + mc)
    # C is built in two passes over the rectangles (count, then fill arrays of the final size): the
    # per-rectangle pieces and their concatenation would hold it twice (~0.5 GB on the bench video)
    kaps: list = []
    counts = np.zeros(n, np.int64)  # entries per row, rows in the grouped order

    def rect_cols(c):
        us = order_u[bounds[c]:bounds[c + 1]]
        col = num_c[apad[us][:, None] + kaps[c][0][None, :]]  # (unknowns of the rectangle, offsets)
        return col, col >= 0

    for c in range(len(rects)):
        o = offs[c].reshape(-1, 2)
        ukey, inv = np.unique(o[:, 1] * Wc + o[:, 0], return_inverse=True)
        kaps.append((ukey, np.bincount(inv, weights=wts[c].reshape(-1))))
        if bounds[c + 1] > bounds[c]:
            col, keep = rect_cols(c)
            counts[bounds[c]:bounds[c + 1]] = keep.sum(axis=1)
            del col, keep
    indptr = np.concatenate([np.zeros(1, np.int64), np.cumsum(counts)])
    nnz = int(indptr[-1])
    indices = np.empty(nnz, np.int32)
    data = np.empty(nnz)
    for c in range(len(rects)):
        if bounds[c + 1] > bounds[c]:
            col, keep = rect_cols(c)
            a, b_ = int(indptr[bounds[c]]), int(indptr[bounds[c + 1]])
            indices[a:b_] = col[keep]
            data[a:b_] = np.broadcast_to(-kaps[c][1][None, :], keep.shape)[keep]
            del col, keep
    # C: rows in the grouped order; its entries (a, a + s) and their transposes are the cross terms
    C = sp.csr_matrix((data, indices, indptr.astype(np.int32 if nnz < 2 ** 31 else np.int64)), shape=(n, n))
    del data, indices, kaps
    report(progress, 0.2, "self-flat: corner products")
    # (x + o + q, x + o + q'): for every rectangle, pair and corner pair, the rectangle moved by
    # o + q gets w_q w_q' at offset q' - q; summed by 2-D cumulative sums of corner marks
    qo = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    rr = np.array(rects, dtype=np.int64)  # (cells, 4): y0, y1, x0, x1
    near = [(a_q, b_q, tuple(qo[b_q] - qo[a_q])) for a_q in range(4) for b_q in range(4)]
    rows_s, cols_s, vals_s = [], [], []
    for dxy in sorted({t[2] for t in near}):
        acc = np.zeros((h + 1) * (w + 1))
        for a_q, b_q, s in near:
            if s != dxy:
                continue
            ox = offs[:, :, a_q, 0]  # (cells, P)
            oy = offs[:, :, a_q, 1]
            v = (wts[:, :, a_q] * wts[:, :, b_q]).reshape(-1)
            y0 = np.clip(rr[:, 0:1] + oy, 0, h).reshape(-1)
            y1 = np.clip(rr[:, 1:2] + oy, 0, h).reshape(-1)
            x0 = np.clip(rr[:, 2:3] + ox, 0, w).reshape(-1)
            x1 = np.clip(rr[:, 3:4] + ox, 0, w).reshape(-1)
            ok = (y1 > y0) & (x1 > x0) & (v != 0)
            y0, y1, x0, x1, v = y0[ok], y1[ok], x0[ok], x1[ok], v[ok]
            W1 = w + 1
            acc += np.bincount(np.concatenate([y0 * W1 + x0, y0 * W1 + x1, y1 * W1 + x0, y1 * W1 + x1]),
                               weights=np.concatenate([v, -v, -v, v]), minlength=(h + 1) * W1)
        img = np.cumsum(np.cumsum(acc.reshape(h + 1, w + 1), axis=0), axis=1)[:h, :w].reshape(-1)
        del acc
        dx_, dy_ = dxy
        by, bx = ys_u + dy_, xs_u + dx_
        inside = (by >= 0) & (by < h) & (bx >= 0) & (bx < w)
        col = np.where(inside, num[np.where(inside, by * w + bx, 0)], -1)
        keep = col >= 0
        rows_s.append(np.flatnonzero(keep))
        cols_s.append(col[keep])
        vals_s.append(img[hf.idx[keep]])
        del img
    # -- the rows: right-hand side, and the rows the sums above counted that are not equations.
    # Pixels are numbered in the plane padded by ``mg`` on every side, so that a row's corners need
    # no bounds checks; -1 (unknown number, halo position) outside the frame.
    mg = int(np.ceil(np.abs(cd).max())) + 2
    Wp = w + 2 * mg
    pad = np.full((h + 2 * mg, Wp), -1, dtype=np.int64)
    pad[mg:mg + h, mg:mg + w] = num.reshape(h, w)
    num_p = pad.reshape(-1)
    pad = np.full((h + 2 * mg, Wp), -1, dtype=np.int64)
    pad[mg:mg + h, mg:mg + w] = pos.reshape(h, w)
    pos_p = pad.reshape(-1)
    del pad
    m4 = (num_p >= 0).reshape(h + 2 * mg, Wp)
    any4 = m4.copy()  # any of the four corners (x0, y0) .. (x0 + 1, y0 + 1) is an unknown
    any4[:, :-1] |= m4[:, 1:]
    any4[:-1, :] |= m4[1:, :]
    any4[:-1, :-1] |= m4[1:, 1:]
    any4 = any4.reshape(-1)
    del m4
    hp = (hys + mg) * Wp + (hxs + mg)  # the halo pixels (distance order), padded numbering
    hown = np.where(num[hsorted] >= 0, num[hsorted], n)  # n: not an unknown
    # a padded pixel's unknown number (n: none) and halo position (-1: none) in one word: one gather
    # per corner instead of two
    packed = (pos_p.astype(np.int64) << 32) | np.where(num_p >= 0, num_p, n)
    del num_p, pos_p
    hpc = order  # their positions in the halo arrays
    corner = np.array([0, 1, Wp, Wp + 1])
    if local is not None:
        tix = np.where(htid >= 0, htid, dl.shape[0])  # the global shift as one more "tile"
        # the halo grouped by tile, by distance inside each: a pair's rows in tile t are those within
        # |shift of t| + 1.5 of the mask (no farther row's corners reach an unknown)
        by_tile = np.argsort(tix, kind="stable")
        tstep = 2.0 * (float(hdist[-1]) + 2.0) if len(hdist) else 1.0  # keys of tile t: t * tstep + distance
        tkey = tix[by_tile] * tstep + hdist[by_tile]
        tstart = np.searchsorted(tix[by_tile], np.arange(dl.shape[0] + 1))
        hp_bt, hown_bt, hpc_bt = hp[by_tile], hown[by_tile], hpc[by_tile]
    def pair_terms(p0: int, p1: int) -> tuple:
        """Pairs p0 <= p < p1: their part of A^T b and their dropped rows (numbered from 0)."""
        part = np.zeros(n + 1)
        ex_r: list = []
        ex_c: list = []
        ex_v: list = []
        cnt = 0
        for pi in range(p0, p1):
            k, j = pairs[pi]
            dx, dy = dg[pi]
            if local is None:
                nr = slice(0, int(np.searchsorted(hdist, float(np.hypot(dx, dy)) + 1.5, side="right")))
            # per tile: the shift's whole part (as an offset) and its weights (float32 like the logs:
            # the rows' right sides then carry ~1e-6 of rounding, far below any dust's depth)
            if local is not None:
                tdx = np.append(dl[:, pi, 0], dg[pi, 0])
                tdy = np.append(dl[:, pi, 1], dg[pi, 1])
                tox, toy = np.floor(tdx), np.floor(tdy)
                tfx, tfy = tdx - tox, tdy - toy
                tw = np.stack([(1 - tfx) * (1 - tfy), tfx * (1 - tfy), (1 - tfx) * tfy, tfx * tfy],
                              axis=-1).astype(np.float32)
                tend = np.searchsorted(tkey, np.arange(len(tdx)) * tstep + np.minimum(np.hypot(tdx, tdy) + 1.5, 0.5 * tstep), side="right")
                tlen = np.maximum(tend - tstart, 0)
                tot = int(tlen.sum())
                # the rows, tile after tile (positions in the by-tile halo arrays)
                nr = np.arange(tot) + np.repeat(tstart - (np.cumsum(tlen) - tlen), tlen)
                base = hp_bt[nr] + np.repeat((toy * Wp + tox).astype(np.int64), tlen)
                own = hown_bt[nr]
            else:
                ox, oy = np.floor(dx), np.floor(dy)
                base = hp[nr] + int(oy * Wp + ox)
                own = hown[nr]
            keep = (own < n) | any4[base]  # rows that may involve an unknown
            r1 = np.flatnonzero(keep)
            base, own = base[r1], own[r1]
            if local is not None:
                ck = np.concatenate([[0], np.cumsum(keep)])
                ends = np.cumsum(tlen)
                wmat = np.repeat(tw, ck[ends] - ck[ends - tlen], axis=0)  # each kept row its tile's weights
                pc = hpc_bt[nr[r1]]
            else:
                pc = hpc[nr][r1]
                fx, fy = dx - ox, dy - oy
                wmat = np.broadcast_to(np.array([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy],
                                                np.float32), (len(r1), 4))
            cw = packed[base[:, None] + corner]
            cnum = cw & 0xFFFFFFFF  # n: no unknown
            cpos = cw >> 32
            del cw
            # a row's four corners as one 32-bit word: "any" without numpy's slow short-axis reductions
            involved = (own < n) | (((cnum < n) & (wmat > 0)).view(np.uint32).ravel() != 0)
            # log raw_k(x) - interp log raw_j(x + d) (the rows' left side interpolates g = log flat
            # the same way): NaN where a pixel it reads is not valid; 0 on the rows that are not
            # equations; unknown n collects the rest
            b = valsp[k][pc] - np.einsum("ij,ij->i", wmat, valsp[j][cpos])
            good = ~np.isnan(b)
            b[~(good & involved)] = 0.0
            part += np.bincount(own, weights=b, minlength=n + 1)
            part -= np.bincount(cnum.ravel(), weights=(wmat * b[:, None]).ravel(), minlength=n + 1)
            bad = np.flatnonzero(involved & ~good)
            if len(bad):
                own_b = own[bad]
                u = own_b < n
                cs = cnum[bad]
                cu = cs < n
                ex_r.append(np.concatenate([cnt + np.flatnonzero(u), cnt + np.nonzero(cu)[0]]))
                ex_c.append(np.concatenate([own_b[u], cs[cu]]))
                ex_v.append(np.concatenate([np.ones(int(u.sum())), -wmat[bad][cu]]))
                cnt += len(bad)
            # rows outside the halo (far shifts): counted above, not equations
            for c in np.flatnonzero(np.hypot(cd[:, pi, 0], cd[:, pi, 1]) + 1.5 > r_halo):
                e = _far_rows(rects[c], offs[c, pi], wts[c, pi], num, pos, ys_u, xs_u, h, w)
                if e is not None:
                    ex_r.append(cnt + e[0])
                    ex_c.append(e[1])
                    ex_v.append(e[2])
                    cnt += e[3]
        return part[:n], ex_r, ex_c, ex_v, cnt

    # pairs 16 at a time, two chunks at once (numpy releases the GIL), summed in pair order: the
    # same numbers whatever the threads do
    Atb = np.zeros(n)
    ex_rows, ex_cols, ex_vals = [], [], []
    n_ex = 0
    chunks = [(p0, min(P, p0 + 16)) for p0 in range(0, P, 16)]
    with ThreadPoolExecutor(max_workers=SELF_FLAT_THREADS) as pool:
        running = [pool.submit(pair_terms, *c) for c in chunks[:SELF_FLAT_THREADS]]
        try:
            for ci in range(len(chunks)):
                part, r_, c_, v_, cnt = running.pop(0).result()
                if ci + SELF_FLAT_THREADS < len(chunks):
                    running.append(pool.submit(pair_terms, *chunks[ci + SELF_FLAT_THREADS]))
                Atb += part
                ex_rows += [r + n_ex for r in r_]
                ex_cols += c_
                ex_vals += v_
                n_ex += cnt
                report(progress, 0.3 + 0.5 * chunks[ci][1] / P, f"self-flat equations {chunks[ci][1]}/{P}")
        finally:
            for f in running:
                f.cancel()
    report(progress, 0.8, "self-flat solve")
    # the normal matrix in the grouped order: C + C^T + (diagonal + corner products - dropped rows)
    S2 = sp.csr_matrix((np.concatenate(vals_s), (inv_u[np.concatenate(rows_s)], inv_u[np.concatenate(cols_s)])),
                       shape=(n, n))
    S2 = S2 + sp.diags(diag)
    if n_ex:
        E = sp.csr_matrix((np.concatenate(ex_vals), (np.concatenate(ex_rows), inv_u[np.concatenate(ex_cols)])),
                          shape=(n_ex, n))
        S2 = S2 - (E.T @ E)
    S2 = S2.tocsr()
    Ct = C.T  # a transposed view: its products need no copy
    dvec = S2.diagonal() + 2 * C.diagonal()
    if not np.any(dvec > 0):
        return None
    mu = PRIOR_WEIGHT * float(np.median(dvec[dvec > 0]))
    g0 = np.log(np.clip(prior, FLOOR, 1.0))[order_u]
    rhs = (Atb + mu * np.log(np.clip(prior, FLOOR, 1.0)))[order_u]
    S2 = (S2 + sp.identity(n, format="csr") * mu).tocsr()
    if n <= DIRECT_MAX:
        g = spla.spsolve((C + Ct + S2).tocsc(), rhs)
    else:  # conjugate gradients from the prior, Jacobi-preconditioned: no fill-in
        # the product split by rows over threads (scipy's sparse products release the GIL):
        # block i gives (C_i + S2_i) v to its own rows and C_i^T v_i to every row
        nb = max(1, SELF_FLAT_THREADS)
        cuts = np.linspace(0, n, nb + 1).astype(np.int64)
        blocks = [(int(a), int(b_), _csr_rows(C, a, b_), _csr_rows(S2, a, b_))
                  for a, b_ in zip(cuts[:-1], cuts[1:])]

        def block_product(blk, v):
            a, b_, Ci, Si = blk
            return Ci @ v + Si @ v, Ci.T @ v[a:b_]

        with ThreadPoolExecutor(max_workers=nb) as mpool:
            def matvec(v):
                v = np.ravel(v)
                out = np.empty(n)
                parts = list(mpool.map(lambda blk: block_product(blk, v), blocks)) if nb > 1 else \
                    [block_product(blocks[0], v)]
                for (a, b_, _c, _s), (own_rows, _t) in zip(blocks, parts):
                    out[a:b_] = own_rows
                for _own, tr in parts:
                    out += tr
                return out

            op = spla.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
            pre = sp.diags(1.0 / (dvec + mu))
            g, _info = spla.cg(op, rhs, x0=g0, M=pre, rtol=CG_RTOL, maxiter=CG_MAXITER)
    out = np.empty(n)
    out[order_u] = g
    return np.exp(out)


def _csr_rows(M: sp.csr_matrix, a: int, b: int) -> sp.csr_matrix:
    """Rows ``a:b`` of ``M`` sharing its data and indices (slicing would copy them)."""
    s, e = int(M.indptr[a]), int(M.indptr[b])
    return sp.csr_matrix((M.data[s:e], M.indices[s:e], M.indptr[a:b + 1] - s), shape=(b - a, M.shape[1]))


def _balanced_pairs(pairs: list, K: int, count: int) -> list:
    """``count`` of the candidate ``pairs`` (frame k, frame j), in a fixed random order, taken so
    that every frame is in about as many pairs as any other: first no frame in more than
    ``ceil(2 count / K)``, then the rest of the order. A plain random choice leaves some frames
    in no pair and others in many; their noise then does not average out as well."""
    order = np.random.default_rng(0).permutation(len(pairs))
    cap = -(-2 * count // K)
    use = np.zeros(K, np.int64)
    chosen: list = []
    taken = np.zeros(len(pairs), bool)
    for i in order:
        k, j = pairs[i]
        if use[k] < cap and use[j] < cap:
            chosen.append(i)
            taken[i] = True
            use[k] += 1
            use[j] += 1
            if len(chosen) == count:
                break
    for i in order:
        if len(chosen) >= count:
            break
        if not taken[i]:
            chosen.append(i)
    return [pairs[i] for i in sorted(chosen)]


def _far_rows(rect, offs, wts, num, pos, ys_u, xs_u, h, w):
    """Rows of one rectangle and pair that read an unknown but lie outside the halo (not
    equations): ``(row numbers, unknown numbers, coefficients, count)`` or None."""
    y0, y1, x0, x1 = rect
    xs_all = []
    for (ox, oy) in offs:
        ry, rx = ys_u - oy, xs_u - ox
        inr = (ry >= y0) & (ry < y1) & (rx >= x0) & (rx < x1)
        xs_all.append(ry[inr] * w + rx[inr])
    rows = np.unique(np.concatenate(xs_all))
    rows = rows[pos[rows] < 0]
    if len(rows) == 0:
        return None
    ry, rx = np.divmod(rows, w)
    r_, c_, v_ = [], [], []
    own = num[rows]
    u = own >= 0
    r_.append(np.flatnonzero(u)); c_.append(own[u]); v_.append(np.ones(int(u.sum())))
    for (ox, oy), wq in zip(offs, wts):
        cy, cx = ry + oy, rx + ox
        cin = (cy >= 0) & (cy < h) & (cx >= 0) & (cx < w)
        cn = np.where(cin, num[np.where(cin, cy * w + cx, 0)], -1)
        u = cn >= 0
        r_.append(np.flatnonzero(u)); c_.append(cn[u]); v_.append(np.full(int(u.sum()), -wq))
    return np.concatenate(r_), np.concatenate(c_), np.concatenate(v_), len(rows)


def _feather(flat: np.ndarray, grown: np.ndarray, feather: int) -> np.ndarray:
    d = cv2.distanceTransform(grown.astype(np.uint8), cv2.DIST_L2, 5)
    w = np.minimum(1.0, d / float(feather)).astype(np.float32)
    if flat.ndim == 3:
        w = w[..., None]
    out = (1.0 + w * (flat - 1.0)).astype(np.float32)
    out[~grown] = 1.0
    return out

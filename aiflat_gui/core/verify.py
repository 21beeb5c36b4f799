"""Check every speck of a mask against the physics of dust, whoever drew the mask (numpy/OpenCV, no Qt).

Sensor dust is a static multiplicative shadow: in sensor coordinates it darkens the same pixels by
the same factor in every frame, while the Sun or the Moon moves under it. A sunspot, a crater rim,
a filament or a stroke on clean sky moves WITH the target. So, for every speck (connected
component of the mask), on a crop around it and up to ``max_frames`` evenly spaced frames, the log
intensity is modelled as

    log Y_k(x) = g(x) + s(x - d_k)

with ``d_k`` the target's measured displacement in frame k (phase correlation of the frames,
mask left out), ``s`` the target's own log brightness in target coordinates (unknown, free) and
``g = log flat`` the static shadow, unknown on the mask pixels (grown by :data:`G_GROW` px) and 0
elsewhere -- the self-flat equations of Kuhn, Lin & Loranz (1991), solved jointly in weighted
least squares. A feature that moves with the target is absorbed by ``s`` and leaves ``g`` at 0;
dust cannot be absorbed by ``s`` (it does not move with the target) and shows in ``g``.

The speck's measured depth is ``1 - mean(exp g)`` over its pixels. Its uncertainty is the larger
of the least-squares posterior (residual scatter times the covariance, with a weak prior on ``g``,
so a speck the motion cannot reach -- much wider than the drift, or frames that did not move --
comes out with a huge uncertainty) and a leave-one-block-out jackknife over contiguous blocks of
frames (seeing and the target's evolution are correlated in time).

Verdicts (:class:`VerifyParams` holds the thresholds):

``dust``        depth >= ``dust_sigmas`` uncertainties and >= ``min_depth``. A speck the offline
                detector found by searching (``searched``) needs ``search_sigmas``: the detector
                looks at hundreds of candidates per frame and keeps the darkest, most static ones,
                so some reach 3 uncertainties by chance (the look-elsewhere effect: 3 sigma for one
                hypothesis is ~4.3 sigma for 150 candidates, ~4.8 for 1,500). A speck a person drew
                or an AI proposed is one hypothesis: ``dust_sigmas``.
``not dust``    depth within ``clear_sigmas`` uncertainties of 0 (or below 0: dust never
                brightens), measured to better than ``max_sigma``: a shadow deeper than a few
                ``max_sigma`` would have been seen, and none was.
``unverified``  everything else: a single image (no time axis), a target that did not move,
                a speck the motion cannot resolve, no signal (sky), too few frames.

A speck judged ``not dust`` is left out of the mask the flat is built from (:func:`apply_verdicts`),
so its pixels keep a flat of exactly 1.0, unless the user overrides the verdict; so is an
``unverified`` one when the video could verify (it moved), unless the caller keeps unverified
specks: the flat then only corrects what the video shows to be dust. With a single image or
frames that never moved nothing can be verified and nothing is refused. The user's mask itself is
never changed. Of a speck judged dust (not overridden), the flat gets exactly the pixels where the
video shows its shadow (:attr:`Verification.shadow`: inside the speck, and its faint rim up to
:data:`G_GROW` px outside it) and no margin around them (:func:`verdicts_with_outlines`): a mask
drawn wider than the dust, or a rim the flat's margin would add, changes no clean pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import cv2
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import InputError
from ..progress import ProgressFn, report
from .peaks import subpixel_peak

__all__ = ["VerifyParams", "SpeckCheck", "Verification", "verify_mask", "apply_verdicts", "verdicts_with_outlines",
           "effective_verdict", "refuses", "with_overrides", "DUST", "NOT_DUST", "UNVERIFIED", "VERDICTS"]

DUST = "dust"
NOT_DUST = "not dust"
UNVERIFIED = "unverified"
VERDICTS = (DUST, NOT_DUST, UNVERIFIED)

#: g (the static shadow) is unknown on the mask grown by this many px (soft edges of the shadow).
G_GROW = 2
#: Registration: central crop (px, before binning) and high-pass scale.
REG_CROP = 768
REG_SIGMA = 6.0
_ORDER = "MMD_AT_PLUS_A"
#: Frame pairs closer than this (px) say nothing; at most MAX_PAIRS pairs per speck.
MIN_PAIR_SHIFT = 0.7
MAX_PAIRS = 80
#: Specks whose grown mask on their crop holds more than this many px are measured on 2x2 binned
#: crops, 4x more on 4x4 (the cost of the solve grows ~ area^1.5; the mean depth needs no detail).
BIN_AREA = 900
#: ... and at most motion / MOTION_BINS px on a side (frame pairs shifted by less than
#: MIN_PAIR_SHIFT bins are left out: coarser bins would leave too few pairs, and the prior would
#: pull a wide speck's shadow to 0).
MOTION_BINS = 2.5
#: Gauss-Newton steps of the per-crop shift refinement (the first on smoothed crops).
LOCAL_STEPS = 3
#: Weight of the smoothness prior (relative to the median data weight of an unknown).
SMOOTH = 0.01
#: Weak prior g ~ 0, relative to the median data weight of an unknown.
PRIOR = 1e-4
#: How the verdicts name the parts of VerifyParams.parts.
_PART_NAMES = {0.5: "darker half", 0.25: "darkest quarter", 0.125: "darkest eighth"}
BAYER = ("RGGB", "GRBG", "GBRG", "BGGR")


@dataclass
class VerifyParams:
    """Every default of the verifier, once.

    max_frames: frames used, evenly spaced (bounded work whatever the video's length).
    min_motion: px; below this total motion of the target the frames cannot tell a shadow from a
        feature and every speck stays unverified.
    dust_sigmas, min_depth: a speck is dust when its depth is at least this many uncertainties and
        at least this deep (fraction of the light).
    clear_sigmas, max_sigma: a speck is not dust when its depth is below ``clear_sigmas``
        uncertainties or below ``min_depth`` (a shadow too faint to matter), measured to better than
        ``max_sigma``; or when it is significantly brighter (dust only darkens). Else unverified.
    sigma_floor: the smallest uncertainty ever quoted (fraction): what the model leaves out (seeing
        blur changing from frame to frame, the target's evolution) can fake a static shadow of a
        few tenths of a percent on a clean patch.
    min_steps: with integer samples, a shadow must also darken by this many ADU at the speck's
        level to count as dust: an 8-bit compressed video's quantisation and codec blocks are static
        on the sensor as well (on 8-bit lunar data at ~100 ADU that is 2 %).
    pedestal: camera offset in ADU (subtracted before the logarithm).
    blocks: contiguous frame blocks of the jackknife.
    max_ring: px of context around a speck at most (the target's motion sets it).
    local_shifts: refine the target's shift per frame on each speck's crop (seeing bends the image
        locally by a pixel or more; a global shift leaves the target's edges in the residuals).
    hug_sigmas, hug_seed_sigmas, edge_sigmas: a pixel of a speck judged dust, or within
        :data:`G_GROW` px of it, is part of its shadow when its static darkening (3x3 mean) is
        ``hug_sigmas`` jackknife uncertainties of that mean deep, its own darkening at least
        ``edge_sigmas`` of them (about one uncertainty of a single pixel: the 3x3 mean spreads a
        deep shadow's edge one pixel outward), and it is connected to pixels ``hug_seed_sigmas``
        deep (see :attr:`Verification.shadow`); outside the speck also ``rim_fraction`` of the
        speck's measured depth deep.
    parts: a speck that is not dust as a whole is also judged on its darkest ``part`` of pixels in
        the median frame, for each part (chosen without looking at ``g``, so no selection bias; a
        mask or a detector blob drawn 4-8x wider than a small faint speck dilutes its mean below
        the evidence needed). On the physics scenes' tuning seeds the darkest eighth finds one more
        real speck and no false one.
    leak_fraction, keep_fraction: a shadow pixel shallower than ``keep_fraction`` of its speck's
        deep part (90th percentile) must also be darker than ``leak_fraction`` times the target's
        own contrast there (:func:`_target_dev`). Seeing bends the image locally, so the motion the
        solve uses falls short of the true one somewhere, and a static-looking target feature under
        a mask drawn wider than the dust then leaks into ``g`` in proportion to its contrast (a dark
        filament beside a disc of dust, with little drift). Measured on the physics scenes' tuning
        seeds (bench/physics_quality.py): 0.6 / 0.5 halve the changed pixels away from dust
        (201 -> 106) for 0.8 points of removed darkening (63.5 -> 62.7 %).
    search_sigmas: ``dust_sigmas`` for the specks the offline detector found by its own search (see
        the module docstring); measured on the physics scenes' tuning seeds (bench/physics_quality.py),
        4.5 refuses the false specks the detector accepted at 3.7-4.0 uncertainties and no real one.
    pattern_snr, static_px: a speck too wide for the motion to measure is dust when its outline's
        pattern stays within ``static_px`` px rms on the sensor (found at an SNR of at least
        ``pattern_snr``) while the target moved at least twice as much (see :func:`_pattern_motion`).
    """

    max_frames: int = 48
    min_motion: float = 1.0
    dust_sigmas: float = 3.0
    search_sigmas: float = 4.5
    min_depth: float = 0.005
    clear_sigmas: float = 2.0
    max_sigma: float = 0.01
    sigma_floor: float = 0.0025
    min_steps: float = 2.0
    pedestal: float = 0.0
    blocks: int = 4
    max_ring: int = 32
    local_shifts: bool = True
    hug_sigmas: float = 3.0
    hug_seed_sigmas: float = 5.0
    edge_sigmas: float = 3.0
    rim_fraction: float = 0.25
    leak_fraction: float = 0.6
    keep_fraction: float = 0.5
    parts: tuple[float, ...] = (0.5, 0.125)
    pattern_snr: float = 4.0
    static_px: float = 1.1


@dataclass
class SpeckCheck:
    """The verdict on one speck.

    label: 1-based component label of the mask it was measured on (8-connectivity, as
    ``core.mask.components``); anchor: (x, y) of its first pixel in raster order, which identifies
    it for overrides even after the mask is edited elsewhere; area, centroid (x, y), bbox
    (x, y, w, h) as ``core.mask.Speck``; verdict: one of :data:`VERDICTS`; depth: measured mean
    darkening (fraction; None when not measured); depth_err: its 1-sigma uncertainty; reason: one
    line for people.
    """

    label: int
    anchor: tuple[int, int]
    area: int
    centroid: tuple[float, float]
    bbox: tuple[int, int, int, int]
    verdict: str = UNVERIFIED
    depth: Optional[float] = None
    depth_err: Optional[float] = None
    reason: str = ""

    def describe(self) -> str:
        x, y = self.centroid
        d = "" if self.depth is None else f", depth {100 * self.depth:.1f} ± {100 * (self.depth_err or 0):.1f} %"
        return f"speck at ({x:.0f}, {y:.0f}), {self.area} px{d}: {self.reason}"


@dataclass
class Verification:
    """All checks of one mask. ``frames``: frames used; ``motion``: the target's total motion
    (px, largest distance between two frames' positions); ``note``: why nothing could be verified,
    when that is the case (single image, no motion), else ''."""

    shape: tuple[int, int]
    checks: list[SpeckCheck] = field(default_factory=list)
    frames: int = 0
    motion: float = 0.0
    note: str = ""
    shifts: Optional[np.ndarray] = None
    #: bool (H, W): the pixels of the specks judged dust, and of the :data:`G_GROW` px around
    #: them, where the video shows the static shadow itself (:func:`_shadow_pixels`); None when
    #: nothing was measured
    shadow: Optional[np.ndarray] = None
    #: bool (H, W): the part of ``shadow`` outside the mask that was verified (the rims the
    #: outline missed); what the user erases from a speck later is not in it, so it never comes back
    rim: Optional[np.ndarray] = None

    def count(self, verdict: str) -> int:
        return sum(1 for c in self.checks if c.verdict == verdict)


# -- helpers ---------------------------------------------------------------------------------------

def _luminance(frame: np.ndarray, color: Optional[str]) -> np.ndarray:
    a = np.asarray(frame)
    if a.ndim == 3:
        return a.astype(np.float32).mean(axis=2)
    y: np.ndarray = a.astype(np.float32)
    if color in BAYER:
        y = cv2.blur(y, (2, 2), borderType=cv2.BORDER_REFLECT)
    return y


def _frame_indices(n: int, k: int) -> np.ndarray:
    k = max(1, min(int(n), int(k)))
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(int))


def _labels(mask: np.ndarray):
    m = np.ascontiguousarray(np.asarray(mask, dtype=bool))
    return cv2.connectedComponentsWithStats(m.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)


def _anchors(lab: np.ndarray, stats: np.ndarray, n: int) -> list[tuple[int, int]]:
    out = [(0, 0)]
    for k in range(1, n):
        x, y, w, h = (int(v) for v in stats[k][:4])
        sub = lab[y:y + h, x:x + w] == k
        iy, ix = divmod(int(np.argmax(sub.ravel())), w)
        out.append((x + ix, y + iy))
    return out


def _grow(m: np.ndarray, px: int) -> np.ndarray:
    if px <= 0 or not m.any():
        return m.copy()
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(m.view(np.uint8), k).astype(bool)


class _Registrar:
    """The target's displacement in each frame relative to a base frame: phase correlation of
    high-passed, clipped, mask-blanked luminance crops (static dust cannot pull the answer to 0)."""

    def __init__(self, shape: tuple[int, int], mask: np.ndarray):
        h, w = shape
        ch, cw = min(h, REG_CROP), min(w, REG_CROP)
        self.box = (slice((h - ch) // 2, (h - ch) // 2 + ch), slice((w - cw) // 2, (w - cw) // 2 + cw))
        self.bin = 2 if min(ch, cw) >= 256 else 1
        m: np.ndarray = _grow(np.ascontiguousarray(mask[self.box]), 3).astype(np.float32)
        if self.bin > 1:
            m = cv2.resize(m, (cw // self.bin, ch // self.bin), interpolation=cv2.INTER_AREA)
        self.keep = (m == 0).astype(np.float32)
        self.window = cv2.createHanningWindow((self.keep.shape[1], self.keep.shape[0]), cv2.CV_64F)
        self.base: Optional[np.ndarray] = None
        self.clip: Optional[float] = None

    def prep(self, lum: np.ndarray) -> np.ndarray:
        a: np.ndarray = np.ascontiguousarray(lum[self.box], dtype=np.float32)
        if self.bin > 1:
            a = cv2.resize(a, (a.shape[1] // self.bin, a.shape[0] // self.bin), interpolation=cv2.INTER_AREA)
        bg = cv2.GaussianBlur(a, (0, 0), REG_SIGMA / self.bin)
        hi = float(np.percentile(bg, 99)) if bg.size else 1.0
        d = (a - bg) / np.maximum(bg, 0.05 * max(hi, 1e-6))
        d *= self.keep
        if self.clip is None:
            v = d[self.keep > 0]
            mad = float(np.median(np.abs(v - np.median(v)))) if v.size else 0.0
            self.clip = max(4.0 * 1.4826 * mad, 1e-6)
        clip = self.clip
        np.clip(d, -clip, clip, out=d)
        return d.astype(np.float64)

    def shift(self, lum: np.ndarray) -> tuple[float, float]:
        d = self.prep(lum)
        if self.base is None:
            self.base = d
            return 0.0, 0.0
        (dx, dy), _r = cv2.phaseCorrelate(self.base.copy(), d, self.window)
        if not (np.isfinite(dx) and np.isfinite(dy)):
            return 0.0, 0.0
        return float(dx) * self.bin, float(dy) * self.bin


def _motion(shifts: np.ndarray) -> float:
    if len(shifts) < 2:
        return 0.0
    d = shifts[:, None, :] - shifts[None, :, :]
    return float(np.sqrt((d ** 2).sum(axis=2)).max())


def _pattern_motion(stack: np.ndarray, own: np.ndarray, reach: int, group: int = 3) -> tuple[float, float]:
    """How far the speck's own pattern moves from frame to frame, in sensor coordinates: the
    high-passed median of ``stack`` (K, h, w: the frames' crops as recorded, in time order) over
    the speck's outline grown by 3 px, found by cross-correlation (within +-``reach`` px) in the
    mean of every ``group`` consecutive frames; returns the rms scatter (px) of where it is found
    and how clearly it stands out of the texture around it (an SNR). A static shadow's outline
    stays put whatever the target does; a feature of the target moves with it."""
    k, h, w = stack.shape
    win = cv2.dilate(own.view(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))).astype(np.float32)
    ys, xs = np.nonzero(win)
    if len(ys) < 4 or k < 2 * group:
        return math.nan, 0.0
    ty0, ty1, tx0, tx1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    ya, yb = max(0, ty0 - reach), min(h, ty1 + reach)
    xa, xb = max(0, tx0 - reach), min(w, tx1 + reach)
    if ty0 - ya < 1 or xb - tx1 < 1 or yb - ty1 < 1 or tx0 - xa < 1:
        return math.nan, 0.0
    sub = stack[:, ya:yb, xa:xb].astype(np.float32)

    def hp(a: np.ndarray) -> np.ndarray:
        return a - cv2.GaussianBlur(a, (0, 0), 6.0)

    med = hp(np.median(sub, axis=0))
    wn = win[ya:yb, xa:xb][ty0 - ya:ty1 - ya, tx0 - xa:tx1 - xa]
    t = med[ty0 - ya:ty1 - ya, tx0 - xa:tx1 - xa]
    n_w = float(wn.sum())
    t = (t - float((t * wn).sum()) / n_w) * wn
    if not float(np.abs(t).sum()) > 0:
        return math.nan, 0.0
    found, noise = [], []
    for j in range(0, k - group + 1, group):
        a = hp(sub[j:j + group].mean(axis=0))
        found.append(subpixel_peak(cv2.matchTemplate(a, t, cv2.TM_CCORR)))
        rest = a[ty0 - ya:ty1 - ya, tx0 - xa:tx1 - xa][wn == 0]
        if rest.size >= 16:
            noise.append(float(np.std(rest)))
    d = np.array(found)
    dev = d - np.median(d, axis=0)
    rms = float(np.sqrt((dev ** 2).sum(axis=1).mean()))
    sd = (float(np.median(noise)) if noise else float(np.std(med))) * math.sqrt(n_w)
    snr = float(np.sqrt((t * t).sum())) / max(sd, 1e-12) * math.sqrt(len(d))
    return rms, snr


# -- the per-speck solve ---------------------------------------------------------------------------

def _pairs(shifts: np.ndarray, reach: float, max_pairs: int) -> np.ndarray:
    """Frame pairs (k, j) whose relative motion is between MIN_PAIR_SHIFT and ``reach`` px (at most
    ``max_pairs``, chosen deterministically, spread over all separations)."""
    K = len(shifts)
    k, j = np.triu_indices(K, 1)
    d = np.hypot(*(shifts[j] - shifts[k]).T)
    ok = (d >= MIN_PAIR_SHIFT) & (d <= reach)
    k, j = k[ok], j[ok]
    if len(k) > max_pairs:
        pick = np.random.default_rng(0).choice(len(k), max_pairs, replace=False)
        pick.sort()
        k, j = k[pick], j[pick]
    return np.stack([k, j], axis=1) if len(k) else np.zeros((0, 2), np.int64)


def _bin(a: np.ndarray, b: int) -> np.ndarray:
    """Mean over b x b blocks of the last two axes (trailing rows/columns dropped)."""
    h, w = a.shape[-2] // b * b, a.shape[-1] // b * b
    a = a[..., :h, :w]
    return a.reshape(a.shape[:-2] + (h // b, b, w // b, b)).mean(axis=(-3, -1))


def _warp(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``out(x) = img(x + (dx, dy))`` (bilinear; 0 outside)."""
    M = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    return cv2.warpAffine(img, M, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _local_shifts(logs: np.ndarray, wts: np.ndarray, gmask: np.ndarray, shifts: np.ndarray,
                  pairs: np.ndarray) -> np.ndarray:
    """The target's shift per frame on this crop: ``shifts`` + a correction per frame (Lucas-Kanade
    of each frame against the mean of all frames aligned on the target, dust pixels left out;
    the first step on smoothed crops for a wider reach). Corrections are bounded to 3 px."""
    K, h, w = logs.shape
    free = (~_grow(np.ascontiguousarray(gmask), 1)).astype(np.float32)
    if free.sum() < 64:
        return shifts
    out = shifts.astype(np.float64).copy()
    W32 = (wts * free[None]).astype(np.float32)
    for step in range(LOCAL_STEPS):
        L = np.stack([cv2.GaussianBlur(a_.astype(np.float32), (0, 0), 1.2) if step == 0 else a_.astype(np.float32)
                      for a_ in logs])
        num = np.zeros((h, w), np.float32)
        den = np.zeros((h, w), np.float32)
        for k in range(K):  # the template: every frame moved onto the target's coordinates
            wk = _warp(W32[k], out[k, 0], out[k, 1])
            num += wk * _warp(L[k] * W32[k], out[k, 0], out[k, 1])
            den += wk * _warp(W32[k], out[k, 0], out[k, 1])
        cover = den > 1e-6
        if cover.sum() < 64:
            return shifts
        fill = float(np.median((num[cover] / den[cover])))
        T = np.where(cover, num / np.maximum(den, 1e-6), fill).astype(np.float32)
        # no gradient from the edges of what the frames cover (the dust's hole, the crop's border)
        have = cv2.erode(cover.astype(np.uint8), np.ones((5, 5), np.uint8), borderValue=0).astype(np.float32)
        gy, gx = (np.asarray(g) for g in np.gradient(T))
        dd = np.zeros((K, 2))
        for k in range(K):  # L_k(x) = T(x - d_k - c_k) ~ T(x - d_k) - grad T . c_k
            P = _warp(T, -out[k, 0], -out[k, 1])
            ok = W32[k] * _warp(have, -out[k, 0], -out[k, 1])
            ex, ey = _warp(gx, -out[k, 0], -out[k, 1]), _warp(gy, -out[k, 0], -out[k, 1])
            r_ = L[k] - P
            a11, a12, a22 = float((ok * ex * ex).sum()), float((ok * ex * ey).sum()), float((ok * ey * ey).sum())
            b1, b2 = float((ok * ex * r_).sum()), float((ok * ey * r_).sum())
            det = a11 * a22 - a12 * a12
            if det <= 1e-12 * max(a11 * a22, 1e-30):
                continue
            dd[k] = [-(a22 * b1 - a12 * b2) / det, -(a11 * b2 - a12 * b1) / det]
        dd -= dd.mean(axis=0)
        out += np.clip(dd, -1.0, 1.0)
        if np.abs(out - shifts).max() > 3.0:
            return shifts
    return out


def _laplacian(G: np.ndarray, gnum: np.ndarray, w: int) -> sp.csr_matrix:
    """Graph Laplacian (4-neighbours) of the unknowns, with the neighbours outside them held at 0."""
    ng = int(G.sum())
    ys, xs = np.nonzero(G)
    me = gnum[ys * w + xs]
    h = G.shape[0]
    rows, cols, vals = [me], [me], [np.full(ng, 4.0)]
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        nb = np.where(inside, gnum[np.clip(ny, 0, h - 1) * w + np.clip(nx, 0, w - 1)], -1)
        u = nb >= 0
        rows.append(me[u]); cols.append(nb[u]); vals.append(-np.ones(int(u.sum())))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(ng, ng))


def _solve_crop(logs: np.ndarray, wts: np.ndarray, gmask: np.ndarray, shifts: np.ndarray, pairs: np.ndarray,
                block_of: np.ndarray, blocks: int):
    """Least squares of the self-flat equations on one crop: for frame pairs (k, j) with relative
    motion d = d_j - d_k, ``log Y_k(x) - log Y_j(x + d) = g(x) - g(x + round(d))`` (the data
    interpolated bilinearly at the sub-pixel point, so the target's own structure cancels; the
    shadow's side rounded, which only adds a little noise at its edges), ``g`` unknown where
    ``gmask`` is True and 0 elsewhere (the anchor), plus a weak prior ``g ~ 0`` that decides only
    what the motion cannot. The normal equations are accumulated per class of pairs (the blocks
    its two frames belong to), so the jackknife needs no second pass over the data.

    logs, wts: (K, h, w) log intensities and weights (0 = unusable); shifts: (K, 2) (dx, dy).
    Returns ``(g (h, w), gnum, posterior_var(wvec), jackknife g's)`` or None."""
    K, h, w = logs.shape
    G = np.ascontiguousarray(gmask, dtype=bool)
    ng_idx = np.flatnonzero(G.ravel())
    ng = len(ng_idx)
    if ng == 0 or len(pairs) == 0:
        return None
    gnum = np.full(h * w, -1, np.int64)
    gnum[ng_idx] = np.arange(ng)
    kk, jj = pairs[:, 0], pairs[:, 1]
    d = shifts[jj] - shifts[kk]
    o = np.floor(d).astype(np.int64)
    f = d - o
    r = np.rint(d).astype(np.int64)
    M = int(np.abs(o).max()) + 2
    hp, wp = h + 2 * M, w + 2 * M
    Lp = np.zeros((K, hp, wp))
    Lp[:, M:M + h, M:M + w] = logs
    Wp = np.zeros((K, hp, wp))
    Wp[:, M:M + h, M:M + w] = wts
    Gp = np.zeros((hp, wp), bool)
    Gp[M:M + h, M:M + w] = G
    Lp, Wp = Lp.ravel(), Wp.ravel()
    yy, xx = np.mgrid[0:h, 0:w]
    base = ((yy + M) * wp + (xx + M)).ravel()  # (h*w,) in the padded frame
    roff = r[:, 1] * wp + r[:, 0]
    gflat = G.ravel()
    # only the (pair, pixel) equations that involve an unknown
    inv = gflat[None, :] | Gp.ravel()[base[None, :] + roff[:, None]]
    pe, xe = np.nonzero(inv)
    be = base[xe]
    je = jj[pe] * (hp * wp) + be + (o[:, 1] * wp + o[:, 0])[pe]
    interp = np.zeros(len(pe))
    wmin = np.full(len(pe), np.inf)
    for ax, ay in ((0, 0), (1, 0), (0, 1), (1, 1)):
        wq = ((f[:, 0] if ax else 1 - f[:, 0]) * (f[:, 1] if ay else 1 - f[:, 1]))[pe]
        q = je + (ay * wp + ax)
        interp += wq * Lp[q]
        np.minimum(wmin, np.where(wq > 1e-9, Wp[q], np.inf), out=wmin)
    ke = kk[pe]
    c = np.minimum(wts.reshape(K, -1)[ke, xe], wmin)
    lhs = logs.reshape(K, -1)[ke, xe] - interp
    ok = c > 0
    pe, xe, be, c, lhs = pe[ok], xe[ok], be[ok], c[ok], lhs[ok]
    pl = c * lhs
    # group the pairs by (class, rounded offset); sums over each group
    cls = np.minimum(block_of[kk], block_of[jj]) * blocks + np.maximum(block_of[kk], block_of[jj])
    span = 2 * M + 1
    key = (cls * span + (r[:, 1] + M)) * span + (r[:, 0] + M)
    keys, kid = np.unique(key, return_inverse=True)
    nk = len(keys)
    kcls = keys // (span * span)
    krx = keys % span - M
    kry = (keys // span) % span - M
    hw = h * w
    Csum = np.bincount(kid[pe] * hw + xe, weights=c, minlength=nk * hw).reshape(nk, hw)
    # A^T b: +pl at x (x in g), -pl at x + r (x + r in g)
    ncls = blocks * blocks
    ec = cls[pe]
    atb = np.bincount(ec * hw + xe, weights=pl * gflat[xe], minlength=ncls * hw).reshape(ncls, hw)
    tz = be + roff[pe]
    gz_e = Gp.ravel()[tz]
    zy, zx = np.divmod(tz, wp)
    zi = (zy - M) * w + (zx - M)
    atb -= np.bincount(ec[gz_e] * hw + zi[gz_e], weights=pl[gz_e], minlength=ncls * hw).reshape(ncls, hw)
    sums = np.bincount(ec, weights=pl * lhs, minlength=ncls)
    rows = np.bincount(ec, minlength=ncls)
    # A^T A: the Laplacian of the edges x -- x + r, weight c
    ki, pi = np.nonzero(Csum > 0)
    cv = Csum[ki, pi]
    ys, xs = np.divmod(pi, w)
    gx = gnum[pi]
    gz = gnum[(ys + kry[ki]) * w + xs + krx[ki]]
    ec = kcls[ki]
    mats = {}
    present = np.unique(kcls)
    for cl in present:
        s_ = ec == cl
        R_, C_, V_ = [], [], []
        for a_, b_, sg in ((gx, gx, 1.0), (gz, gz, 1.0), (gx, gz, -1.0), (gz, gx, -1.0)):
            u = s_ & (a_ >= 0) & (b_ >= 0)
            R_.append(a_[u]); C_.append(b_[u]); V_.append(sg * cv[u])
        mats[int(cl)] = sp.csr_matrix((np.concatenate(V_), (np.concatenate(R_), np.concatenate(C_))), shape=(ng, ng))
    AtA = sum(mats.values())
    Atb_all = atb[:, ng_idx]
    Atb = Atb_all.sum(axis=0)
    total = float(sums.sum())
    nrow = int(rows.sum())
    diag = AtA.diagonal()
    if not np.any(diag > 0):
        return None
    lam = PRIOR * float(np.median(diag[diag > 0]))
    # the prior: a shadow is smooth and ends at the mask's edge (graph Laplacian of the unknowns,
    # 0 beyond them), so where the motion says nothing (the middle of a speck much wider than the
    # drift) g follows its measured rim instead of falling to 0; plus a tiny ridge
    Rg = (_laplacian(G, gnum, w) * (SMOOTH * lam / PRIOR) + sp.identity(ng, format="csc") * lam).tocsc()

    def solve(Mx, rhs):
        lu_ = spla.splu((Mx + Rg).tocsc(), permc_spec=_ORDER, diag_pivot_thresh=0.0,
                        options=dict(SymmetricMode=True))
        return lu_, lu_.solve(rhs)

    lu, x = solve(AtA, Atb)
    rss = max(0.0, total - 2.0 * float(x @ Atb) + float(x @ (AtA @ x)))
    var = rss / max(1, nrow - ng)
    # every frame's noise enters all the pairs it belongs to: count frames, not pairs
    inflate = max(1.0, len(pairs) / max(1, K))
    g = np.zeros(h * w)
    g[ng_idx] = x
    jk = []
    if blocks >= 2:
        # leave-one-block-out systems, by conjugate gradients preconditioned with the full one
        pre = spla.LinearOperator((ng, ng), matvec=lu.solve, dtype=np.float64)
        for bi in range(blocks):
            keep = [cl for cl in mats if bi not in (cl // blocks, cl % blocks)]
            if not keep or len(keep) == len(mats):
                continue
            Mb = sum(mats[cl] for cl in keep) + Rg
            xb, info = spla.cg(Mb, Atb_all[keep].sum(axis=0), x0=x, M=pre, rtol=1e-6, maxiter=60)
            if info != 0 or not np.all(np.isfinite(xb)):
                continue
            gb = np.zeros(h * w)
            gb[ng_idx] = xb
            jk.append(gb.reshape(h, w))

    def posterior_var(wvec: np.ndarray) -> float:
        """Variance of sum(wvec * g) over the g unknowns."""
        return float(wvec @ lu.solve(wvec)) * var * inflate

    return g.reshape(h, w), gnum, posterior_var, jk


# -- the verifier ----------------------------------------------------------------------------------

def _fill_holes(m: np.ndarray) -> np.ndarray:
    """``m`` with every hole (background not connected to the border) filled."""
    h, w = m.shape
    pad = np.zeros((h + 2, w + 2), np.uint8)
    pad[1:-1, 1:-1] = m
    flood = pad.copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    return m | (flood[1:-1, 1:-1] == 0)


def _target_dev(med: np.ndarray, g: np.ndarray, gmask: np.ndarray) -> np.ndarray:
    """How far the target's own log brightness (the median frame ``med`` less the static shadow
    ``g``) departs from its level around the speck (the median over the crop's known pixels),
    3x3 mean of the absolute value."""
    target = np.log(np.maximum(med, 1e-6)) - g
    around = ~gmask & (med > 0)
    level = float(np.median(target[around] if around.any() else target))
    return cv2.blur(np.abs(target - level), (3, 3))


def _shadow_pixels(g: np.ndarray, jk: list, gmask: np.ndarray, own: np.ndarray, p: VerifyParams,
                   step_depth: float, depth: float, target_dev: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """The pixels of ``own`` grown by :data:`G_GROW` px (within the unknowns ``gmask``: a faint
    rim the mask missed) where the static shadow ``g`` (log flat) itself is significant: its 3x3
    mean (over unknowns) is darker than ``hug_sigmas`` jackknife uncertainties of that mean (the
    block replicates ``jk``, smoothed the same way; their variance over 5x5), than ``min_depth``
    and than ``step_depth``, the pixel's own ``g`` darker than ``edge_sigmas`` of them (outside
    ``own`` also darker than ``rim_fraction`` of the speck's ``depth``), in
    connected parts darker than ``hug_seed_sigmas`` somewhere; holes filled (a donut's brighter
    middle, a wide shadow's interior the motion resolves less well). None without replicates."""
    if len(jk) < 2:
        return None
    wm = gmask.astype(np.float64)
    den = np.maximum(cv2.blur(wm, (3, 3)), 1e-9)

    def sm(a):
        return cv2.blur(a * wm, (3, 3)) / den

    gs = sm(g)
    reps = np.stack([sm(b) for b in jk])
    n = len(reps)
    var = (n - 1) / n * ((reps - reps.mean(axis=0)) ** 2).sum(axis=0)
    sig = np.sqrt(np.maximum(cv2.blur(var, (5, 5)), p.sigma_floor ** 2))
    dark = -gs
    # a rim pixel outside the speck also needs rim_fraction of the speck's depth: just outside a
    # sharp edge the model's interpolation leaves up to ~15 % of the edge's contrast, significant
    # on a bright target
    near = own | (_grow(np.ascontiguousarray(own), G_GROW) & gmask & (-g > p.rim_fraction * max(depth, 0.0)))
    sel = near & (-g > p.edge_sigmas * sig) & (dark > p.hug_sigmas * sig) & (dark > p.min_depth) & (1.0 - np.exp(gs) > step_depth)
    if target_dev is not None and p.leak_fraction > 0 and (sel & own).any():
        # leakage: a pixel much shallower than the speck's deep part must also be darker than
        # leak_fraction of the target's own contrast there (see VerifyParams)
        deep = float(np.percentile(dark[sel & own], 90))
        sel &= (dark > p.leak_fraction * target_dev) | (dark > p.keep_fraction * deep)
    if sel.any():
        # hysteresis (as Canny's edges): only the parts that reach hug_seed_sigmas somewhere; tested
        # pixel by pixel over a wide mask, a few islands pass hug_sigmas by chance (the jackknife's
        # few blocks make its uncertainty itself uncertain)
        n, lab = cv2.connectedComponents(sel.view(np.uint8), connectivity=8)
        strong = np.zeros(n, bool)
        strong[np.unique(lab[sel & (dark > p.hug_seed_sigmas * sig)])] = True
        strong[0] = False
        sel = strong[lab]
    return _fill_holes(sel) if sel.any() else sel


def _verdict(depth: float, err: float, p: VerifyParams, step_depth: float = 0.0) -> tuple[str, str]:
    """``step_depth``: the darkening ``min_steps`` ADU make at the speck's level (integer data)."""
    if not (np.isfinite(depth) and np.isfinite(err)):
        return UNVERIFIED, "could not be measured"
    dd = f"{100 * depth:.1f} ± {100 * err:.1f} %"
    if depth >= p.dust_sigmas * err and depth >= p.min_depth:
        if depth < step_depth:
            return UNVERIFIED, (f"a static darkening of {dd} is under {p.min_steps:g} ADU here: the data's own "
                                f"quantisation and compression blocks are static on the sensor too")
        return DUST, f"static shadow in sensor coordinates, {dd} darker in every frame"
    if depth < -p.dust_sigmas * err:
        return NOT_DUST, f"brighter than the target there ({dd}); dust only darkens"
    if err > p.max_sigma:
        return UNVERIFIED, f"the motion cannot resolve it ({dd}): too wide for the drift, or too little signal"
    if depth <= max(p.clear_sigmas * err, p.min_depth):
        return NOT_DUST, f"no static shadow ({dd}): its darkening moves with the target"
    return UNVERIFIED, f"weak evidence of a shadow ({dd})"


def _checks_for(mask: np.ndarray) -> tuple[list[SpeckCheck], np.ndarray, np.ndarray]:
    n, lab, stats, cents = _labels(mask)
    anchors = _anchors(lab, stats, n)
    checks = []
    for k in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[k])
        checks.append(SpeckCheck(label=k, anchor=anchors[k], area=area,
                                 centroid=(float(cents[k][0]), float(cents[k][1])), bbox=(x, y, w, h)))
    return checks, lab, stats


def verify_mask(mask: np.ndarray, sequence: Any = None, params: Optional[VerifyParams] = None,
                progress: Optional[ProgressFn] = None, searched: Optional[np.ndarray] = None) -> Verification:
    """Verify every speck of ``mask`` (bool (H, W)) against ``sequence`` (an object with
    ``n_frames``, ``height``, ``width``, ``frame(i)`` and optionally ``color``; None or a single
    frame: every speck unverified). ``searched``: bool (H, W), what the offline detector's search
    found; a speck with most of its pixels there needs ``search_sigmas``. See the module docstring."""
    p = params or VerifyParams()
    m = np.ascontiguousarray(np.asarray(mask, dtype=bool))
    if m.ndim != 2:
        raise InputError(f"a mask must be 2-D, not shape {m.shape}")
    H, W = m.shape
    if searched is not None and np.shape(searched) != (H, W):
        raise InputError(f"the detector's mask is {np.shape(searched)[::-1]} but the mask is {W}x{H}")
    checks, lab, stats = _checks_for(m)
    ver = Verification(shape=(H, W), checks=checks)
    n_frames = int(getattr(sequence, "n_frames", 0) or 0) if sequence is not None else 0
    if sequence is not None and (int(sequence.height), int(sequence.width)) != (H, W):
        raise InputError(f"mask is {W}x{H} but the frames are {sequence.width}x{sequence.height}",
                         getattr(sequence, "path", None))
    if not checks:
        report(progress, 1.0, "empty mask")
        return ver
    if n_frames < 3:
        ver.note = ("a single image has no time axis: dust cannot be told from the target's own features, "
                    "so no speck is verified and none is refused")
        for c in checks:
            c.verdict, c.reason = UNVERIFIED, "single image: no time axis to verify against"
        report(progress, 1.0, "single image: nothing verified")
        return ver

    color = getattr(sequence, "color", None)
    idx = _frame_indices(n_frames, p.max_frames)
    K = len(idx)
    ver.frames = K
    # 1. frames: register and keep one generous crop per speck (bounded memory: crops only)
    reg = _Registrar((H, W), m)
    shifts = np.zeros((K, 2))
    order = np.argsort(np.abs(idx - idx[K // 2]), kind="stable")  # the middle frame is the base
    pad = p.max_ring + 2
    boxes = []
    for c in checks:
        x, y, w, h = c.bbox
        boxes.append((max(0, y - pad), min(H, y + h + pad), max(0, x - pad), min(W, x + w + pad)))
    crops = [np.empty((K, y1 - y0, x1 - x0), np.float32) for (y0, y1, x0, x1) in boxes]
    sat: Optional[float] = None
    for n_done, j in enumerate(order):
        fr = np.asarray(sequence.frame(int(idx[j])))
        if sat is None:
            integer = fr.dtype.kind in "ui"
            sat = float(np.iinfo(fr.dtype).max) if integer else np.inf
        lum = _luminance(fr, color)
        shifts[j] = reg.shift(lum)
        for ci, (y0, y1, x0, x1) in enumerate(boxes):
            crops[ci][j] = lum[y0:y1, x0:x1]
        report(progress, 0.4 * (n_done + 1) / K, f"reading frame {n_done + 1}/{K}")
    assert sat is not None  # K >= 1 frames were read
    ver.shifts = shifts
    ver.motion = _motion(shifts)
    if ver.motion < p.min_motion:
        ver.note = (f"the target moved only {ver.motion:.1f} px over {K} frames: a static shadow cannot be told "
                    f"from the target's own features without motion, so no speck is verified and none is refused")
        for c in checks:
            c.verdict, c.reason = UNVERIFIED, f"no motion ({ver.motion:.1f} px): cannot verify"
        report(progress, 1.0, "no motion: nothing verified")
        return ver
    ring = int(min(p.max_ring, max(4, math.ceil(ver.motion) + 3)))
    shifts_c = shifts - shifts.mean(axis=0)
    block_of = np.minimum((np.arange(K) * p.blocks) // K, p.blocks - 1)
    # 2. every speck: the joint solve on its crop
    for ci, c in enumerate(checks):
        y0, y1, x0, x1 = boxes[ci]
        x, y, w, h = c.bbox
        cy0, cy1 = max(y0, y - ring), min(y1, y + h + ring)
        cx0, cx1 = max(x0, x - ring), min(x1, x + w + ring)
        crop = crops[ci][:, cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0].astype(np.float64) - p.pedestal
        own = lab[cy0:cy1, cx0:cx1] == c.label
        allm = m[cy0:cy1, cx0:cx1]
        gmask = _grow(np.ascontiguousarray(allm), G_GROW)
        hi = float(np.percentile(crop[::4], 95))
        if not hi > 0:
            c.verdict, c.reason = UNVERIFIED, "no signal around it (sky?)"
            continue
        valid = (crop > 0.05 * hi) & (crop + p.pedestal < sat)
        level = float(np.median(crop[::4][valid[::4]])) if valid[::4].any() else hi
        step_depth = p.min_steps / level if (integer and level > 0) else 0.0
        if valid[:, own].mean() < 0.5:
            c.verdict, c.reason = UNVERIFIED, "too little signal under it (sky or saturated)"
            continue
        ng = int(gmask.sum())
        b = 1 if ng <= BIN_AREA else 2 if ng <= 4 * BIN_AREA else 4
        # ... but the motion must still span a few bins: the shadow is seen through it
        b = max(1, min(b, int(ver.motion // MOTION_BINS)))
        sh = shifts_c
        if b > 1:  # a wide speck: its mean depth does not need every pixel (cost grows ~ area^1.5)
            crop, valid, own, gmask = _bin(crop, b), _bin(valid.astype(np.float64), b) == 1.0, \
                _bin(own.astype(np.float64), b) > 0, _bin(gmask.astype(np.float64), b) > 0
            sh = shifts_c / b
        logs = np.log(np.where(valid, crop, 1.0))
        wts = np.where(valid, np.clip(crop / hi, 0.0, 1.0), 0.0)
        med = np.median(crop[::2], axis=0)
        cp = _pairs(sh, max(2.0, (ring - 1.0) / b), MAX_PAIRS)
        if p.local_shifts and len(cp):
            sh = _local_shifts(logs, wts, gmask, sh, cp)
        out = _solve_crop(logs, wts, gmask, sh, cp, block_of, p.blocks)
        if out is None:
            c.verdict, c.reason = UNVERIFIED, "could not be measured"
            continue
        g, gnum, posterior_var, jk = out

        def measure(region):
            eg = np.exp(np.clip(g[region], -5, 1))
            d_ = float(1.0 - eg.mean())
            wvec = np.zeros(int(gnum.max()) + 1)
            wvec[gnum.reshape(region.shape)[region]] = eg / len(eg)
            e_ = math.sqrt(max(posterior_var(wvec), 0.0))
            if len(jk) >= 2:
                d_jk = np.array([1.0 - np.exp(np.clip(gb[region], -5, 1)).mean() for gb in jk])
                e_ = max(e_, math.sqrt((len(jk) - 1) / len(jk) * float(((d_jk - d_jk.mean()) ** 2).sum())))
            return d_, max(e_, p.sigma_floor)

        depth, err = measure(own)
        c.depth, c.depth_err = depth, err
        pc = p
        if searched is not None and p.search_sigmas > p.dust_sigmas:
            own_all = lab[y:y + h, x:x + w] == c.label
            if np.count_nonzero(searched[y:y + h, x:x + w][own_all]) * 2 > c.area:
                pc = replace(p, dust_sigmas=p.search_sigmas)
        c.verdict, c.reason = _verdict(depth, err, pc, step_depth)
        # a mask drawn much larger than its dust dilutes the mean: judge its darker half and its
        # darkest eighth (VerifyParams.parts) too; dust if any shows a shadow, not dust only if the
        # whole and its darker half show none
        for part in p.parts:
            if c.verdict == DUST or own.sum() * part < 8:
                break
            name = f"its {_PART_NAMES.get(part, f'darkest {100 * part:g} %')}"
            core = own & (med <= np.percentile(med[own], 100 * part))
            if not core.any():
                continue
            dc, ec = measure(core)
            vc, rc = _verdict(dc, ec, pc, step_depth)
            if vc == DUST:
                c.verdict, c.reason = DUST, f"{name}: {rc}"
            elif vc == UNVERIFIED and c.verdict == NOT_DUST and part == 0.5:
                c.verdict, c.reason = UNVERIFIED, f"{name}: {rc}"
        if pc is not p and c.verdict == UNVERIFIED and err <= p.max_sigma and depth >= p.dust_sigmas * err:
            c.reason = (f"found by the detector's search: a static darkening of {100 * depth:.1f} ± "
                        f"{100 * err:.1f} % ({depth / err:.1f} sigma) is what the darkest of its hundreds of "
                        f"candidates show by chance; it needs {pc.dust_sigmas:g} sigma")
        if c.verdict == UNVERIFIED and err > p.max_sigma and len(shifts) >= 6:
            # a speck much wider than the motion: the joint solve cannot resolve its middle, but
            # its outline is sharp: a shadow's stays put on the sensor while the target moves
            # under it, a feature's moves with the target (frames in time order)
            tord = np.argsort(idx, kind="stable")
            reach = int(math.ceil(ver.motion)) + 2
            own_full = lab[y0:y1, x0:x1] == c.label
            pm, psnr = _pattern_motion(crops[ci][tord], own_full, reach)
            # (the target's motion here: the crop's own shifts, seeing included, when refined)
            loc = np.asarray(sh, dtype=np.float64) * b
            tm = max(float(np.sqrt(((v - np.median(v, axis=0)) ** 2).sum(axis=1).mean()))
                     for v in (shifts, loc))
            if np.isfinite(pm) and psnr >= p.pattern_snr and pm <= p.static_px and tm >= 2.0 * max(pm, 0.5):
                c.verdict = DUST
                c.reason = (f"its outline stays put on the sensor ({pm:.1f} px rms) while the target moved "
                            f"{tm:.1f} px rms under it: a static shadow too wide for the motion to measure its "
                            f"depth ({100 * depth:.1f} ± {100 * err:.1f} %)")
        if c.verdict == DUST:
            sh_ = _shadow_pixels(g, jk, gmask, own, p, step_depth, depth, _target_dev(med, g, gmask))
            if sh_ is not None and sh_.any():
                if b > 1:
                    sh_ = np.repeat(np.repeat(sh_, b, axis=0), b, axis=1)
                # at full resolution: grown by the bin size (the shadow's edge) within the speck;
                # its rim within G_GROW px outside it, not on another speck
                full = np.zeros(lab[cy0:cy1, cx0:cx1].shape, bool)
                full[:sh_.shape[0], :sh_.shape[1]] = sh_
                lc = lab[cy0:cy1, cx0:cx1]
                mine = lc == c.label
                full = (_grow(full, b) & mine) | (full & (lc == 0) & _grow(np.ascontiguousarray(mine), G_GROW))
                if ver.shadow is None:
                    ver.shadow = np.zeros((H, W), bool)
                ver.shadow[cy0:cy1, cx0:cx1] |= full
        report(progress, 0.4 + 0.6 * (ci + 1) / len(checks), f"speck {ci + 1}/{len(checks)}")
    if ver.shadow is not None:
        ver.rim = ver.shadow & ~m
    report(progress, 1.0, "verified")
    return ver


# -- using the verdicts ----------------------------------------------------------------------------

def effective_verdict(check: SpeckCheck, overrides: Optional[dict] = None) -> str:
    """The verdict after the user's override (``overrides``: {anchor (x, y): verdict})."""
    if overrides:
        v = overrides.get(tuple(check.anchor))
        if v in VERDICTS:
            return v
    return check.verdict


def refuses(check: SpeckCheck, verification: Verification, overrides: Optional[dict] = None,
            keep_unverified: bool = False) -> bool:
    """Whether the flat leaves this speck out: judged (or overridden to) not dust; or unverified
    in a video that could verify (it moved), unless ``keep_unverified``. A user's "dust" override
    always keeps it; with nothing verifiable (single image, no motion) nothing is refused."""
    v = effective_verdict(check, overrides)
    if v == NOT_DUST:
        return True
    return v == UNVERIFIED and not keep_unverified and not verification.note


def apply_verdicts(mask: np.ndarray, verification: Optional[Verification], overrides: Optional[dict] = None,
                   keep_unverified: bool = False) -> tuple[np.ndarray, list[SpeckCheck]]:
    """The mask the flat is built from: ``mask`` without the specks :func:`refuses` leaves out;
    and the refused checks. ``mask`` is not modified. Specks are matched to the verification
    through their anchors, so the mask may have been edited since (a speck holding several
    anchors is refused only when all of them are; a speck holding none is kept). A speck judged
    dust is outlined by its measured shadow (:attr:`Verification.shadow`, which may reach
    :data:`G_GROW` px beyond what was drawn); see :func:`verdicts_with_outlines`."""
    kept, refused, _measured = verdicts_with_outlines(mask, verification, overrides, keep_unverified)
    return kept, refused


def verdicts_with_outlines(mask: np.ndarray, verification: Optional[Verification],
                           overrides: Optional[dict] = None,
                           keep_unverified: bool = False) -> tuple[np.ndarray, list[SpeckCheck], np.ndarray]:
    """:func:`apply_verdicts`, and ``measured``: the pixels of the kept mask whose outline the
    video measured (the shadows of specks judged dust, where not overridden); a flat changes those
    and no pixel around them (its margin is for outlines someone drew)."""
    m = np.asarray(mask, dtype=bool)
    if verification is None or not verification.checks or not m.any():
        return m.copy(), [], np.zeros(m.shape, bool)
    if tuple(verification.shape) != m.shape:
        raise InputError(f"the verification is for {verification.shape[1]}x{verification.shape[0]} "
                         f"but the mask is {m.shape[1]}x{m.shape[0]}")
    n, lab, _stats, _c = _labels(m)
    refuse = np.zeros(n, bool)
    keep = np.zeros(n, bool)
    whole = np.zeros(n, bool)
    hits = []
    for c in verification.checks:
        ax, ay = c.anchor
        k = int(lab[ay, ax]) if (0 <= ay < m.shape[0] and 0 <= ax < m.shape[1]) else 0
        if k == 0:
            continue
        if refuses(c, verification, overrides, keep_unverified):
            refuse[k] = True
            hits.append((k, c))
        else:
            keep[k] = True
            # what the user vouched for, or what the video could not outline, stays whole
            if effective_verdict(c, overrides) != DUST or (overrides and tuple(c.anchor) in overrides):
                whole[k] = True
    refuse &= ~keep
    refused = [c for k, c in hits if refuse[k]]
    out = m & ~refuse[lab]
    measured = np.zeros(m.shape, bool)
    sh = verification.shadow
    if sh is not None and sh.shape == m.shape:
        # a speck judged dust keeps only the pixels where the video shows its shadow (a mask drawn
        # wider than the dust changes nothing around it), and gains its shadow's faint rim the
        # mask missed (the shadow's parts connected to it); one with no such pixel stays whole
        hug = keep & ~whole
        has = np.zeros(n, bool)
        has[np.unique(lab[sh & m])] = True
        trim = hug & has
        trim[0] = False
        if trim.any():
            out &= ~trim[lab] | sh
            inside = sh & trim[lab]
            rim = verification.rim if verification.rim is not None and verification.rim.shape == m.shape \
                else np.zeros(m.shape, bool)
            # the rims (outside the mask that was verified) joined to a kept speck's shadow
            n2, lab2 = cv2.connectedComponents((inside | rim).view(np.uint8), connectivity=8)
            joined = np.zeros(n2, bool)
            joined[np.unique(lab2[inside])] = True
            joined[0] = False
            # (and within G_GROW px of what is left of it: a part the user erased keeps no rim)
            measured = inside | (joined[lab2] & rim & ~m & _grow(np.ascontiguousarray(m & trim[lab]), G_GROW))
            out |= measured
    return out, refused, measured


def with_overrides(verification: Verification, overrides: Optional[dict]) -> Verification:
    """A copy whose checks carry the effective verdicts (reason says when the user overrode it)."""
    checks = []
    for c in verification.checks:
        v = effective_verdict(c, overrides)
        checks.append(c if v == c.verdict else replace(c, verdict=v, reason=f"set by you (measured: {c.reason})"))
    return replace(verification, checks=checks)

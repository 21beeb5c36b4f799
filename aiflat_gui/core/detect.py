"""The offline dust detector (numpy/OpenCV only, no Qt).

Dust sits still on the sensor and darkens by the same factor in every frame; solar features drift
with the sun and wobble with seeing. The detector uses that in three steps:

1. **Frames.** Up to ``max_frames`` evenly spaced frames are read (streamed through
   ``sequence.frame(i)``) and averaged in consecutive groups into the slots of a float16 stack
   that fits ``memory_mb`` (so a few hundred frames all contribute, in bounded memory). Each slot
   holds the exposure-normalised log intensity ``d = median(log Y) - log Y`` (positive = darker;
   a speck that removes 5% of the light adds ~0.05), and the sun's drift of each slot is measured
   by FFT cross-correlation of local-darkening maps (see :class:`_DriftMeter`).
2. **Sun and sensor separated** (a KLL-style self-flat on the measured drift, robust estimates):
   ``sun = median_i[(d_i - dust)(x + s_i)]`` over frames aligned on the sun, then
   ``dust = median_i[d_i - sun(x - s_i)]`` over frames as recorded, a few times. Pores, filaments,
   the sunspot, plage and the limb move with the sun and end up in ``sun``; dust stays in
   ``dust``. The per-pixel scatter of the residuals marks edges that wobble with seeing, and
   scores are divided by it. A speck much wider than the total drift is only partly recovered
   (its rim), so the plain temporal median (which holds every speck whole) is used to let a
   detected speck grow to its full extent.
3. **Shape and scale.** The dust map minus its own smooth baseline is matched-filtered with
   Gaussians (0-3.5 px, discs and donuts) and Hessian ridge filters (1-1.8 px, fibres); each is
   normalised by its robust (MAD) noise over the judged pixels and the best one is the score.
   Very dark pixels (> ``max_depth``) and a 3 px frame border are not judged.

**The limb** moves with the sun, so its temporal separation leaves residuals, and a ratio to a
smooth background is unstable where the background has a step. It is handled as a moving edge:
every frame read marks where it is off the disc (5x5 mean below ``SKY_FRACTION`` of the disc
level), and nothing within ``limb_margin`` px of where ANY frame was off the disc is judged (the
limb in every position it took, its steep limb-darkened rim, seeing). The sky is floored at that
level in the log stack (its noise and the full step would ring through the interpolation);
backgrounds and baselines are normalised convolutions that leave the sky and unjudged pixels out;
and the median profile across the limb (judged pixels binned by their distance to it) is
subtracted, which a fixed-scale background cannot follow on a single image. A speck on the disc
more than ``limb_margin`` px inside the limb is judged like any other. A sunspot is left out whole
(see :func:`_sunspots`): its umbra is off the disc too, its penumbra would look like a dark ring;
but in a video whose sun drifted at least :data:`SPOT_DRIFT` px, only its umbrae (and
:data:`UMBRA_MARGIN` px around them) are: the separation puts the moving sunspot in ``sun`` and
leaves a clump on its penumbra in ``dust``.

With no time axis (a single image, or fewer than 3 frames) step 3 runs on the reference's local
darkening (the reference divided by a smooth background that ignores dips): faint dust below the
granulation contrast, pores and filaments cannot be told from dust there, so it is weaker.

``ScoreMap.mask(sensitivity)`` re-thresholds with hysteresis (seeds above a high threshold, grown
into a lower one) in milliseconds; sensitivity 0..1, 0.5 default, higher finds more.

Colour: RGB/BGR data is reduced to the mean of its channels; raw Bayer (CFA) data to a 2x2 box
average (a luminance that is the same on every CFA phase), so a speck darkens it like any frame.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Optional

import cv2
import numpy as np

from ..errors import InputError
from . import BAYER_PATTERNS
from ..progress import ProgressFn, report
from .median16 import median_1d, median_f16, sub_to_f16, to_f16
from .peaks import subpixel_peaks

#: z-score of the seed threshold at sensitivity 0.5, 0 and 1 (geometric in between): below ~4.5
#: noise and granulation residue flood the mask, so the slider's top end stops there.
SEED_Z = 7.0
SEED_Z_MAX = 14.0
SEED_Z_MIN = 4.5
#: The grow threshold is this fraction of the seed threshold.
GROW_FRACTION = 0.45
#: Lowest grow threshold ever used (sensitivity 1).
MIN_GROW_Z = 1.6
#: How far (px) a speck may grow from its seed pixels.
GROW_REACH = 8
_REACH_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * GROW_REACH + 1, 2 * GROW_REACH + 1))
#: Gaussian pre-smoothing (px) of each darkening map: tames interpolation and pixel noise.
PRESMOOTH = 0.7
#: Gaussian matched-filter scales (px) for discs and donuts, and Hessian scales for fibres.
BLOB_SCALES = (0.0, 1.0, 2.0, 3.5)
RIDGE_SCALES = (1.0, 1.8)
RIDGE_WEIGHT = 0.8
#: Border (px) not judged in sequence mode.
EDGE = 3
#: Off the disc: a 5x5 average below this fraction of the disc level (sky beyond the limb).
SKY_FRACTION = 0.3
#: Width (px) of the strip just inside the limb margin where no speck is seeded (it may grow in).
RIM_SEEDLESS = 4.0
#: A sunspot's penumbra: below this fraction of the disc level, connected to an umbra.
PENUMBRA_FRACTION = 0.8
#: Pixels within this many px of where any frame was off the disc are not judged: the limb's
#: steep limb-darkened rim and its seeing wobble (the drift is covered by taking every frame).
LIMB_MARGIN = 12.0
#: Sequence mode, when the sun drifted at least SPOT_DRIFT px: sunspots are judged but for their
#: umbrae and UMBRA_MARGIN px around them (the separation tells a clump on a penumbra, which stays
#: on the sensor, from the sunspot, which moves with the sun); with less drift they are left out whole.
SPOT_DRIFT = 3.0
UMBRA_MARGIN = 6.0
#: A connected region darker than SKY_FRACTION of the disc, not reaching the frame's edge and at
#: most this many px, is a dust clump to judge, not sky or an umbra to skip.
OFF_SPECK_AREA = 2500
#: ... unless a penumbra surrounds it: see _sky_and_umbrae.
PENUMBRA_RING = 0.88
#: Sequence mode: at most this many stack slots (frames are averaged in groups into them) and
#: this many rounds of the sun/sensor separation (speed: issue 10 item 5).
MAX_SLOTS = 24
ITERATIONS = 3
#: Sequence mode: a speck darkens by at least this much on average (log units ~ fraction), and
#: each half of the frames (split along the drift) finds at least HALF_AGREEMENT of the other's.
MIN_DEPTH = 0.01
#: 8-bit data: a speck darkens its surroundings by at least this many ADU (1 ADU quantisation,
#: compression errors of a few ADU in smooth areas).
QUANT_ADU_8BIT = 3.0
HALF_AGREEMENT = 0.5
#: Sequence mode: the reference's own compact dips (closing fill, as for a single image) are
#: candidates too; and a candidate whose own pattern moves by more than STATIC_PX rms from slot to
#: slot (see _own_motion) moves with the target: not dust.
REF_CANDIDATES = True
STATIC_PX = 1.1
MOTION_GROUP = 3
MOTION_SNR = 4.5
#: Single image: radius (px) of the grey-level closing that fills specks (see closing_dip), and of
#: the one that fills opaque clumps, counted where it finds a dip deeper than DEEP_DIP (log units).
CLOSE_RADIUS = 8
#: Single image: a speck grows only into pixels darkened by at least this fraction of its peak.
HUG_FRACTION = 0.3
#: ... or darkened by at least this much (log units): the soft edge of an opaque clump is dust too.
HUG_DEPTH = 0.05
#: Single image: the closing residue's MAD noise is scaled by this (see compute_scores).
SINGLE_NOISE_FACTOR = 1.4
CLOSE_RADIUS_DEEP = 24
DEEP_DIP = 0.3
#: ... and where it finds a compact region (axis ratio <= WIDE_ELONGATION, <= OFF_SPECK_AREA px)
#: darker than WIDE_DIP (and 4 noise sigmas).
WIDE_DIP = 0.03
#: (a wide candidate must reach WIDE_PEAK somewhere and cover at most WIDE_AREA px: shallower or
#: larger smooth dark patches cannot be told from solar mottling in a single image)
WIDE_PEAK = 0.08
WIDE_AREA = 1200
WIDE_ELONGATION = 2.0
#: round shadows in the reference (discs, donuts: the aperture's image, 30-90 px across; the closing
#: fills hold the smaller ones): radii (px) of the disc-against-ring contrast, the smallest contrast
#: (log units) and z-score kept, and the share of the mean contrast each of ROUND_SECTORS sectors
#: must show (a lane along a filament or plage edge is dark in the ring along it, a round shadow
#: is darker all round)
ROUND_RADII = (15, 20, 27, 36, 45)
ROUND_DIP = 0.03
ROUND_Z = 3.0
ROUND_SECTORS = 8
ROUND_SECTOR_SHARE = 0.35
#: ... and, on average over the sectors, the share the inside's median must lie below the ring's
#: 30th percentile (see :func:`round_dip`)
ROUND_LOW_SHARE = 0.7


def luminance(image: np.ndarray, color: Optional[str] = None) -> np.ndarray:
    """A float32 (H, W) luminance plane of a frame: mono as is, colour the mean of its channels,
    raw Bayer (``color`` one of RGGB/GRBG/GBRG/BGGR) a 2x2 box average."""
    a = np.asarray(image)
    if a.ndim == 3:
        return a.astype(np.float32).mean(axis=2)
    if a.ndim != 2:
        raise InputError(f"expected an image of shape (H, W) or (H, W, C), got {a.shape}")
    y = a.astype(np.float32, copy=True)
    if color in BAYER_PATTERNS:
        y = cv2.blur(y, (2, 2), borderType=cv2.BORDER_REFLECT)
    return y


def _box(y: np.ndarray) -> np.ndarray:
    """5x5 box average: a pixel's level, steady against noise, sharp enough to place the limb."""
    return cv2.blur(y, (5, 5), borderType=cv2.BORDER_REPLICATE)


def _mark_off(y: np.ndarray, floor: float, off: np.ndarray) -> None:
    """``off |= _box(y) < floor``, the box computed only on the rows within 2 px of a pixel below
    ``floor`` (a 5x5 mean below it needs one; the sky or an umbra covers a few rows of most
    frames): the same pixels, set in place. ``y`` is float32 or an integer frame as read (e.g. a
    memory-mapped uint16 view: compared as is, only the boxed rows are cast to float32). In an
    integer frame, rows whose 5-row neighbourhood lies wholly and surely below ``floor`` (the sky
    beyond the limb) are set without the box."""
    h = y.shape[0]
    integer = y.dtype.kind in "ui"
    whole = None
    if integer:
        # an integer sample is below float32(floor), as its float32 value compares, exactly when
        # it is below that value's ceiling
        t = math.ceil(float(np.float32(floor)))
        info = np.iinfo(y.dtype)
        if t <= info.min:
            return
        low = y.min(axis=1) < t if t <= info.max else np.ones(h, bool)
        # a 5x5 box of integer samples all <= ``safe`` is below floor: its float32 sum is exact
        # (< 2**24) and its scaling by 1/25 errs by far less than the margin
        safe = math.floor(float(np.float32(floor)) * (1.0 - 1e-5)) - 1
        lows = np.flatnonzero(low)
        if safe >= info.min and lows.size:
            # (a dark row is a low row: only the span of the low rows is read again)
            dark = np.zeros(h, bool)
            a, b = int(lows[0]), int(lows[-1]) + 1
            dark[a:b] = y[a:b].max(axis=1) <= min(safe, info.max)
            dark = np.pad(dark, 2, mode="edge")
            whole = dark[:h] & dark[1:h + 1] & dark[2:h + 2] & dark[3:h + 3] & dark[4:h + 4]
            off[whole] = True
    else:
        low = (y < floor).any(axis=1)
    if not low.any():
        return
    # rows whose 5x5 box holds a low row (and not set whole above)
    lp = np.pad(low, 2)
    need = lp[:h] | lp[1:h + 1] | lp[2:h + 2] | lp[3:h + 3] | lp[4:h + 4]
    if whole is not None:
        need &= ~whole
    edges = np.flatnonzero(np.diff(np.concatenate(([False], need, [False])).view(np.int8)))
    for r0, r1 in zip(edges[::2], edges[1::2]):
        r0, r1 = int(r0), int(r1)
        c0, c1 = max(0, r0 - 2), min(h, r1 + 2)  # the rows those boxes read
        rows = y[c0:c1].astype(np.float32) if integer else y[c0:c1]
        off[r0:r1] |= _box(rows)[r0 - c0:r1 - c0] < floor


def _sunspots(y: np.ndarray, off: np.ndarray, sigma: float) -> np.ndarray:
    """Sunspots whole: the connected regions darker than ``PENUMBRA_FRACTION`` of their
    surroundings (lightly smoothed, against an edge-aware background of scale ``sigma``) that hold
    an umbra, i.e. a part of ``off`` that does not reach the frame's edge (the sky beyond the limb
    does). A penumbra is darker than its surroundings on the scale of dust and would otherwise
    look like a dark ring; dust never darkens that much over such an area by itself."""
    n, labels = cv2.connectedComponents(off.view(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(off.shape, bool)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    umbra = off & ~np.isin(labels, edge)
    if not umbra.any():
        return np.zeros(off.shape, bool)
    dark = (_blur(y, 1.5) < PENUMBRA_FRACTION * background(y, sigma, (~off).astype(np.float32))) | umbra
    n, labels = cv2.connectedComponents(dark.view(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[np.unique(labels[umbra])] = True
    keep[0] = False
    return keep[labels]


def _large_only(off: np.ndarray) -> np.ndarray:
    """``off`` (darker than ``SKY_FRACTION`` of the disc) without its small parts away from the
    frame's edge: the sky beyond the limb reaches the edge and an umbra is large, but the core of
    an opaque dust clump (3-45 % of its surroundings) is as dark and must be judged, not skipped."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(off.view(np.uint8), connectivity=8)
    if n <= 1:
        return off
    h, w = off.shape
    x0, y0, bw, bh, area = stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3], stats[:, 4]
    edge = (x0 == 0) | (y0 == 0) | (x0 + bw == w) | (y0 + bh == h)
    keep = edge | (area > OFF_SPECK_AREA)
    keep[0] = False
    return keep[labels]


def _sky_and_umbrae(y: np.ndarray, off: np.ndarray, bg_sigma: float) -> np.ndarray:
    """The parts of ``off`` (darker than ``SKY_FRACTION`` of the disc) that are not judged: the
    sky and large umbrae (:func:`_large_only`), and small dark cores with a penumbra, i.e. a ring
    5-10 px outside the core (the part below half the background) whose median level is below
    ``PENUMBRA_RING`` of the background. An opaque dust clump's soft edge is back to the
    background there (0.92-1.0 on the real frame); a penumbra is not (0.74-0.84 on the demos)."""
    big = _large_only(off)
    small = off & ~big
    if not small.any():
        return big
    bg = background(y, 2.0 * bg_sigma, (~big).astype(np.float32))
    rel = _blur(y, 1.5) / np.maximum(bg, 1e-6)
    core = (rel < 0.5) | small
    n, labels, stats, _ = cv2.connectedComponentsWithStats(core.view(np.uint8), connectivity=8)
    has = np.zeros(n, bool)
    has[np.unique(labels[small])] = True
    has[0] = False
    h, w = y.shape
    k_in = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))
    k_out = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (21, 21))
    umbra = np.zeros(n, bool)
    for i in np.flatnonzero(has):
        x0, y0, bw, bh = stats[i, :4]
        xa, ya, xb, yb = max(0, x0 - 11), max(0, y0 - 11), min(w, x0 + bw + 11), min(h, y0 + bh + 11)
        c = (labels[ya:yb, xa:xb] == i).view(np.uint8)
        ring = (cv2.dilate(c, k_out) > 0) & ~(cv2.dilate(c, k_in) > 0)
        if ring.any() and float(np.median(rel[ya:yb, xa:xb][ring])) < PENUMBRA_RING:
            umbra[i] = True
    return big | (umbra[labels] & off)


def closing_dip(y: np.ndarray, floor: float) -> np.ndarray:
    """Single-image darkening (log units, >= 0): how far each pixel lies below a smooth fill of its
    surroundings, the grey-level closing of the (floored, lightly smoothed) log image with a disc
    of radius ``CLOSE_RADIUS`` px. A dip narrower than the disc is filled (a speck, a clump, a
    fibre); a step (the dark side of a plage edge) or a dark region wider than the disc (an umbra, a
    filament, the sky) is followed, so it does not count as a dip. Where the fill with a disc of
    ``CLOSE_RADIUS_DEEP`` px goes more than ``DEEP_DIP`` deeper (an opaque clump wider than the small
    disc), that deeper value counts."""
    h, w = y.shape
    lg = _blur(np.log(np.maximum(y, max(floor, 1e-6))).astype(np.float32), PRESMOOTH)
    dip = _fill(lg, CLOSE_RADIUS) - lg
    big = _fill(lg, CLOSE_RADIUS_DEEP, 2) - lg
    deep = big > DEEP_DIP
    # a wider shadow (a big disc or donut) is not filled by the small disc: the wide fill's
    # dips count where they form a compact, roundish, clearly dark region (a lane along a plage edge or a
    # filament is elongated; an umbra is wider than the wide disc and is followed by it)
    # (what the small fill already explains is taken out, so a speck does not lift a faint patch
    # beside it; candidates touching the frame's edge have no surroundings there and are left out)
    sb = _blur(big - dip, 2.0)
    cand = sb > max(WIDE_DIP, 4.0 * _robust_sigma(sb, np.arange(sb.size)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cand.view(np.uint8), connectivity=8)
    if n > 1:
        ok = np.zeros(n, bool)
        area = stats[:, cv2.CC_STAT_AREA]
        x0s, y0s, bws, bhs = stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3]
        inner = (x0s > 0) & (y0s > 0) & (x0s + bws < w) & (y0s + bhs < h)
        for i in np.flatnonzero((area >= 20) & (area <= WIDE_AREA) & inner):
            x, y0, bw, bh = stats[i, :4]
            sub = labels[y0:y0 + bh, x:x + bw] == i
            if sb[y0:y0 + bh, x:x + bw][sub].max() < WIDE_PEAK:
                continue
            yy, xx = np.nonzero(sub)
            c = np.cov(np.vstack([xx, yy]).astype(np.float64)) if xx.size > 2 else np.eye(2)
            ev = np.linalg.eigvalsh(c)
            ok[i] = ev[1] <= WIDE_ELONGATION ** 2 * max(ev[0], 1e-6)
        deep |= ok[labels]
    dip[deep] = np.maximum(dip[deep], big[deep])
    return dip


def _disc_kernel(r: float, r0: float = 0.0) -> np.ndarray:
    """A normalised annulus kernel ``r0 <= |x| <= r`` (a disc when ``r0`` is 0)."""
    k = int(math.ceil(r))
    yy, xx = np.mgrid[-k:k + 1, -k:k + 1]
    d = np.hypot(xx, yy)
    a = ((d <= r) & (d >= r0)).astype(np.float32)
    return a / max(float(a.sum()), 1.0)


def round_dip(y: np.ndarray, floor: float, valid: np.ndarray) -> np.ndarray:
    """Darkening (log units, >= 0) of the round dark regions of ``y``: dust's aperture shadows
    (discs and donuts) wider than the closing fills of :func:`closing_dip` reach, whose middle a
    person sees at once but whose faint, wide profile no local filter holds. At each radius of
    ``ROUND_RADII`` (on a grid coarsened 2-9 times) the mean log level in a ring 1.25-1.7 r around
    each point is compared with the mean inside radius r (normalised convolutions over ``valid``
    pixels only); a local maximum of that contrast, deeper than ``ROUND_DIP`` and ``ROUND_Z``
    robust sigmas, is a round shadow when each of ``ROUND_SECTORS`` sectors around it is darker
    inside than in its ring by at least ``ROUND_SECTOR_SHARE`` of the mean (an elongated lane is
    not darker along itself) and the inside's median lies below the ring's darker part (30th
    percentile) by ``ROUND_LOW_SHARE`` of it on average (a dark patch framed by bright plage does
    not). Its pixels within 1.25 r (a shadow up to that size peaks at r) get their own darkening
    below the ring's median level where it exceeds 0.2 of the contrast (0.5 beyond r). Zero
    elsewhere."""
    h, w = y.shape
    lg = np.log(np.maximum(y, max(floor, 1e-6))).astype(np.float32)
    lg1 = _blur(lg, 1.0)
    vf = valid.astype(np.float32)
    lgv = lg * vf
    out = np.zeros((h, w), np.float32)
    for r in ROUND_RADII:
        f = max(2, r // 5)
        rr = r / f
        ls, vs = _down(lgv, f), _down(vf, f)
        kin, kring = _disc_kernel(rr), _disc_kernel(1.7 * rr, 1.25 * rr)
        win = cv2.filter2D(vs, -1, kin, borderType=cv2.BORDER_CONSTANT)
        wring = cv2.filter2D(vs, -1, kring, borderType=cv2.BORDER_CONSTANT)
        inner = cv2.filter2D(ls, -1, kin, borderType=cv2.BORDER_CONSTANT) / np.maximum(win, 1e-3)
        ring = cv2.filter2D(ls, -1, kring, borderType=cv2.BORDER_CONSTANT) / np.maximum(wring, 1e-3)
        c = ring - inner
        ok = (win > 0.9) & (wring > 0.6)
        if not ok.any():
            continue
        c[~ok] = 0.0
        thr = max(ROUND_DIP, ROUND_Z * _robust_sigma(c, ok))
        peak = (c >= thr) & (c >= cv2.dilate(c, np.ones((5, 5), np.uint8)))
        ys, xs = np.nonzero(peak)
        if ys.size == 0:
            continue
        # the template of offsets around a centre: code 2 * sector + part (part 0 inside, 1 the
        # ring; the pixels between them, painted but not compared, get the extra code 2 * SECTORS)
        R = int(math.ceil(1.7 * r)) + 1
        oy, ox = np.mgrid[-R:R + 1, -R:R + 1]
        d = np.hypot(ox, oy)
        sect = ((np.arctan2(oy, ox) + math.pi) * (ROUND_SECTORS / (2 * math.pi))).astype(np.int64) % ROUND_SECTORS
        part = np.where(d <= r, 0, np.where((d >= 1.25 * r) & (d <= 1.7 * r), 1, -1))
        use = (part >= 0) | (d <= 1.25 * r)
        oy, ox = oy[use], ox[use]
        code = np.where(part >= 0, sect * 2 + part, 2 * ROUND_SECTORS)[use]
        paint = d[use] <= 1.25 * r
        # (beyond r, where a shadow of radius r has already ended, a pixel must be clearly dark)
        share = np.where(d[use] <= r, 0.2, 0.5)
        nb = 2 * ROUND_SECTORS + 1
        order = np.argsort(-c[ys, xs], kind="stable")[:200]
        for py, px in zip(ys[order], xs[order]):
            cy, cx = int(round((py + 0.5) * f - 0.5)), int(round((px + 0.5) * f - 0.5))
            yy, xx = oy + cy, ox + cx
            inb = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            yy, xx, cd_, pt, sh_ = yy[inb], xx[inb], code[inb], paint[inb], share[inb]
            v = valid[yy, xx]
            vals = lg1[yy, xx]
            n_ = np.bincount(cd_[v], minlength=nb)[:-1].reshape(ROUND_SECTORS, 2)
            s_ = np.bincount(cd_[v], weights=vals[v], minlength=nb)[:-1].reshape(ROUND_SECTORS, 2)
            enough = (n_ >= 3).all(axis=1)
            if enough.sum() < ROUND_SECTORS - 2:
                continue
            mean = s_[enough] / n_[enough]
            cs = mean[:, 1] - mean[:, 0]
            cm = float(cs.mean())
            if cm <= 0 or float(cs.min()) < ROUND_SECTOR_SHARE * cm:
                continue
            # ... and darker than the ring's darker part, not only its mean: a dark patch of the
            # target framed by bright plage is as dark as the rest of the ring away from the plage
            low = [float(np.percentile(vals[v & (cd_ == 2 * k_ + 1)], 30) - np.median(vals[v & (cd_ == 2 * k_)]))
                   for k_ in np.flatnonzero(enough)]
            if float(np.mean(low)) < ROUND_LOW_SHARE * cm:
                continue
            level = float(np.median(vals[v & (cd_ % 2 == 1)]))
            sel = v & pt
            dd = level - vals[sel]
            keep = dd > sh_[sel] * cm
            py_, px_ = yy[sel][keep], xx[sel][keep]
            out[py_, px_] = np.maximum(out[py_, px_], dd[keep])
    return out


def _fill(lg: np.ndarray, r: int, f: int = 1) -> np.ndarray:
    """Grey-level closing with a disc of radius ``r`` (at 1/``f`` resolution), smoothed at r/3 and
    never below ``lg``."""
    k = max(1, int(round(r / f)))
    se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    c = _up(cv2.morphologyEx(_down(lg, f), cv2.MORPH_CLOSE, se, borderType=cv2.BORDER_REPLICATE), lg.shape)
    return np.maximum(_blur(c, r / 3.0), lg)


def _judged(off: np.ndarray, margin: float) -> np.ndarray:
    """Pixels farther than ``margin`` px from every pixel of ``off``."""
    if not off.any():
        return np.ones(off.shape, bool)
    r = max(1, int(round(margin)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(off.view(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) == 0


def _remove_limb_profile(a: np.ndarray, off: np.ndarray, valid: np.ndarray, reach: float) -> np.ndarray:
    """``a`` minus its median profile across the limb: judged pixels within ``reach`` px of the
    off-disc region are binned by their distance to it (1 px bins, long strips along the limb,
    whatever its side or curvature) and each bin's median is subtracted. The limb-darkened rim
    darkens steeply towards the limb, which a smooth background of a fixed scale cannot follow
    (on a single image it would look like a dark band); dust covers a small part of a strip, so
    the medians ignore it. A copy is returned."""
    a = a.copy()
    if not off.any():
        return a
    dist = cv2.distanceTransform((~off).view(np.uint8), cv2.DIST_L2, 5)
    near = valid & (dist < reach)
    idx = np.flatnonzero(near)
    if idx.size == 0:
        return a
    bins = dist.ravel()[idx].astype(np.int32)
    order = np.argsort(bins, kind="stable")
    idx, bins = idx[order], bins[order]
    cuts = np.flatnonzero(np.diff(bins)) + 1
    flat = a.ravel()
    for part in np.split(idx, cuts):
        if part.size >= 20:
            flat[part] -= np.median(flat[part])
    return a


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return a
    return cv2.GaussianBlur(a, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def _down(a: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return a
    h, w = a.shape
    return cv2.resize(a, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)


def _up(a: np.ndarray, shape) -> np.ndarray:
    if a.shape == tuple(shape):
        return a
    return cv2.resize(a, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _nblur(a: np.ndarray, sigma: float, weight: Optional[np.ndarray] = None) -> np.ndarray:
    """Gaussian blur of ``a`` at reduced resolution; with ``weight`` (float32 in [0, 1]) a
    normalised convolution ``blur(a * weight) / blur(weight)``: pixels of weight 0 (the sky beyond
    the limb, pixels not judged) neither pull the result nor are pulled by it, so a smooth
    background stays edge-aware at the limb instead of sagging into the step."""
    f = max(1, min(4, int(sigma // 3)))
    s = sigma / f
    if weight is None:
        return _up(_blur(_down(a, f), s), a.shape)
    num = _blur(_down(a * weight, f), s)
    den = _blur(_down(weight, f), s)
    out = _up(num / np.maximum(den, 1e-3), a.shape)
    # far from any weighted pixel there is nothing to go on: use the plain blur there
    lost = _up(den, a.shape) < 1e-3
    if lost.any():
        out[lost] = _up(_blur(_down(a, f), s), a.shape)[lost]
    return out


def background(y: np.ndarray, sigma: float, weight: Optional[np.ndarray] = None) -> np.ndarray:
    """Smooth local background of ``y`` that ignores dark dips smaller than ~``sigma``: blur, fill
    everything darker than the blur with the blur, blur again (at reduced resolution). ``weight``
    (see :func:`_nblur`) leaves pixels out, e.g. the sky beyond the limb."""
    b1 = _nblur(y, sigma, weight)
    filled = np.maximum(y, b1)
    return _nblur(filled, sigma, weight)


def darkening(y: np.ndarray, sigma: float, weight: Optional[np.ndarray] = None) -> np.ndarray:
    """``1 - y / background(y)``, clipped to [-1, 1]: positive where darker than the surroundings."""
    b = background(y, sigma, weight)
    d = 1.0 - y / np.maximum(b, 1e-3)
    np.clip(d, -1.0, 1.0, out=d)
    return d


def _lower_envelope(a: np.ndarray, sigma: float, weight: Optional[np.ndarray] = None) -> np.ndarray:
    """Smooth baseline of ``a`` ignoring positive peaks (the mirror of :func:`background`),
    edge-aware with ``weight``."""
    b1 = _nblur(a, sigma, weight)
    return _nblur(np.minimum(a, b1), sigma, weight)


def _robust_sigma(a: np.ndarray, valid: np.ndarray) -> float:
    """1.4826 MAD of ``a`` over ``valid`` (a mask, or the flat indices of one: see
    :func:`_filter_scores`), on at most ~200,000 evenly spaced of its pixels."""
    idx = valid if valid.dtype.kind in "iu" else np.flatnonzero(valid)
    if idx.size > 200_000:
        idx = idx[:: idx.size // 200_000 + 1]
    if idx.size == 0:
        return 1.0
    v = a.ravel()[idx]
    med = median_1d(v)
    mad = median_1d(np.abs(v - med))
    return float(max(1.4826 * mad, 1e-6))


class _DriftMeter:
    """Displacement (dx, dy) of the sun in a frame relative to a reference frame, by FFT cross-
    correlation of their local-darkening maps on a central crop. The maps are clipped at 2.5
    robust sigmas so static dust cannot dominate and pull the answer towards zero shift, and the
    cross-power spectrum is only partly whitened (|X|**0.25): full phase correlation lets noise
    at high frequencies win on blurred, noisy frames. Shifts beyond a quarter of the crop are not
    searched; the peak is refined to sub-pixel precision by parabolas."""

    def __init__(self, y_ref: np.ndarray, crop, bg_sigma: float):
        self.crop = crop
        self.bg_sigma = bg_sigma
        d = darkening(np.ascontiguousarray(y_ref[crop]), bg_sigma)
        self.clip = 2.5 * _robust_sigma(d, np.ones(d.shape, bool))
        self.window = cv2.createHanningWindow((d.shape[1], d.shape[0]), cv2.CV_32F)
        self.ref = np.fft.rfft2(self._prep(d))

    def _prep(self, d: np.ndarray) -> np.ndarray:
        return np.clip(d, -self.clip, self.clip) * self.window

    def __call__(self, y: np.ndarray) -> tuple[float, float]:
        d = darkening(np.ascontiguousarray(y[self.crop]), self.bg_sigma)
        x = self.ref * np.conj(np.fft.rfft2(self._prep(d)))
        x /= np.abs(x) ** 0.25 + 1e-20
        c = np.fft.fftshift(np.fft.irfft2(x, s=d.shape))
        h, w = c.shape
        cy, cx = h // 2, w // 2
        qy, qx = max(1, h // 4), max(1, w // 4)
        sub = c[cy - qy:cy + qy, cx - qx:cx + qx]
        iy, ix = np.unravel_index(int(np.argmax(sub)), sub.shape)
        iy, ix = iy + cy - qy, ix + cx - qx

        def vertex(a: float, b: float, e: float) -> float:
            den = a - 2.0 * b + e
            return 0.5 * (a - e) / den if den != 0 else 0.0

        fy = vertex(c[iy - 1, ix], c[iy, ix], c[(iy + 1) % h, ix]) if 0 < iy else 0.0
        fx = vertex(c[iy, ix - 1], c[iy, ix], c[iy, (ix + 1) % w]) if 0 < ix else 0.0
        return float(cx - (ix + fx)), float(cy - (iy + fy))


@dataclass
class ScoreMap:
    """The detector's cached result, re-thresholded by :meth:`mask` without recomputation.

    score: float32 (H, W) signal-to-noise of dust (best matched-filter scale); seeds a speck.
    extent: float32 (H, W) single-scale signal-to-noise a seeded speck grows into.
    valid: bool (H, W) pixels that were judged (not within ``limb_margin`` of the sky in any
        frame, not a sunspot, not the frame border).
    darkening: float32 (H, W) the dust darkening estimate (log units, ~fraction darker).
    shifts: float32 (K, 2) measured solar drift per stack slot (sequence mode), or None.
    """

    score: np.ndarray
    extent: np.ndarray
    valid: np.ndarray
    frames_used: int = 0
    darkening: Optional[np.ndarray] = None
    shifts: Optional[np.ndarray] = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a seed pixel always lies in the grow region; seed candidates sorted by score, so any
        # sensitivity takes a prefix of them
        self._grow = np.maximum(self.extent, self.score)
        lowest_seed, _ = self.thresholds(1.0)
        flat = self.score.ravel()
        cand = np.flatnonzero(flat >= lowest_seed)
        order = np.argsort(-flat[cand], kind="stable")
        self._seed_idx = cand[order]
        self._seed_neg = -flat[self._seed_idx]

    @staticmethod
    def thresholds(sensitivity: float) -> tuple[float, float]:
        """(seed, grow) z-thresholds for a sensitivity in [0, 1]."""
        s = min(1.0, max(0.0, float(sensitivity)))
        if s <= 0.5:
            seed = SEED_Z * (SEED_Z_MAX / SEED_Z) ** (1.0 - 2.0 * s)
        else:
            seed = SEED_Z * (SEED_Z_MIN / SEED_Z) ** (2.0 * s - 1.0)
        grow = max(MIN_GROW_Z, GROW_FRACTION * seed)
        return seed, grow

    def mask(self, sensitivity: float = 0.5) -> np.ndarray:
        """Binary dust mask (bool (H, W)) at ``sensitivity`` (0..1, higher finds more): connected
        regions above the grow threshold that hold a pixel above the seed threshold."""
        seed_t, grow_t = self.thresholds(sensitivity)
        count = int(np.searchsorted(self._seed_neg, -seed_t, side="right"))
        if count == 0:
            return np.zeros(self.score.shape, bool)
        grow = (self._grow >= grow_t).view(np.uint8)
        # growth reaches at most GROW_REACH px from a seed: a speck's faint rim and (for specks
        # wider than the drift) its interior, not the granulation around it
        near = np.zeros(self.score.shape, np.uint8)
        near.ravel()[self._seed_idx[:count]] = 1
        near = cv2.dilate(near, _REACH_KERNEL)
        grow &= near
        n, labels = cv2.connectedComponents(grow, connectivity=8, ltype=cv2.CV_32S)
        keep = np.zeros(n, bool)
        keep[labels.ravel()[self._seed_idx[:count]]] = True
        keep[0] = False
        return keep[labels]

    def soft(self) -> np.ndarray:
        """The score mapped to [0, 1]: 0 at half the most sensitive seed threshold, 1 at the least
        sensitive one."""
        lo, _ = self.thresholds(1.0)
        hi, _ = self.thresholds(0.0)
        return np.clip((self.score - lo * 0.5) / (hi - lo * 0.5), 0.0, 1.0).astype(np.float32)


def _select_frames(n: int, max_frames: int) -> np.ndarray:
    k = max(1, min(int(n), int(max_frames)))
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(int))


def compute_scores(reference: np.ndarray, sequence: Any = None, max_frames: int = 200,
                   progress: Optional[ProgressFn] = None, *, color: Optional[str] = None,
                   memory_mb: float = 512.0, bg_sigma: float = 12.0, max_depth: float = 0.6,
                   iterations: int = ITERATIONS, limb_margin: float = LIMB_MARGIN,
                   max_slots: Optional[int] = MAX_SLOTS) -> ScoreMap:
    """Score every pixel of ``reference`` for dust, using the frames of ``sequence`` (any object
    with ``n_frames`` and ``frame(i)``, e.g. an :class:`~aiflat_gui.io.base.Sequence`) when given.

    ``max_frames`` evenly spaced frames are read and averaged in groups into as many stack slots
    as fit in ``memory_mb`` (peak memory stays near it, but never below ~100 bytes per pixel: the
    full-frame maps plus three slots). ``progress`` may raise
    :class:`~aiflat_gui.errors.Cancelled`. ``color`` defaults to ``sequence.color``; ``iterations``
    of the sun/sensor separation, ``bg_sigma`` the scale (px) of the smooth background,
    ``max_depth`` the darkening above which pixels are not judged, and ``limb_margin`` how far
    (px) from where any frame was off the disc (sky beyond the limb) pixels are not judged;
    ``max_slots`` caps the stack slots (None: as many as fit in ``memory_mb``)."""
    # (one side thread: the reference's own candidates are scored while the sun and the sensor are
    # separated, and judged while the separation's are; the results do not depend on it)
    with ThreadPoolExecutor(max_workers=1) as side:
        return _compute_scores(reference, sequence, max_frames, progress, color=color, memory_mb=memory_mb,
                               bg_sigma=bg_sigma, max_depth=max_depth, iterations=iterations,
                               limb_margin=limb_margin, max_slots=max_slots, side=side)


def _compute_scores(reference: np.ndarray, sequence: Any, max_frames: int, progress: Optional[ProgressFn], *,
                    color: Optional[str], memory_mb: float, bg_sigma: float, max_depth: float, iterations: int,
                    limb_margin: float, max_slots: Optional[int], side: ThreadPoolExecutor) -> ScoreMap:
    t0 = time.perf_counter()
    ref = np.asarray(reference)
    if ref.ndim not in (2, 3) or ref.shape[0] < 8 or ref.shape[1] < 8:
        raise InputError(f"reference must be an image of at least 8x8 pixels, got shape {ref.shape}")
    if color is None and sequence is not None:
        color = getattr(sequence, "color", None)
    yref = luminance(ref, color if ref.ndim == 2 else None)
    h, w = yref.shape
    if not np.isfinite(yref).all():
        yref = np.nan_to_num(yref, nan=0.0, posinf=0.0, neginf=0.0)
    report(progress, 0.0, "dust: reference")

    # the disc level and the "off the disc" threshold (sky beyond the limb; umbrae fall below it
    # too, which does no harm: they are never judged)
    level = float(np.percentile(_box(yref)[:: 4, :: 4], 90))
    floor = SKY_FRACTION * max(level, 1e-6)

    def first_judged() -> tuple[np.ndarray, np.ndarray]:
        off_ = _sky_and_umbrae(yref, _box(yref) < floor, bg_sigma)
        off_ |= _sunspots(yref, off_, 2.0 * bg_sigma)
        return off_, _judged(off_, limb_margin)

    n_frames = int(getattr(sequence, "n_frames", 0) or 0) if sequence is not None else 0
    if n_frames < 3:
        off, valid = first_judged()
    shifts = None
    noise = None
    halves = None
    plain = None
    ref_cands = None
    slots = None
    stack_n = 0
    if n_frames >= 3:
        # every selected frame is read; frames are averaged in consecutive groups into the slots
        # of a float16 stack that, with one float16 working stack (sun-aligned, then residuals)
        # on a slightly larger canvas, fits in memory_mb
        idx = _select_frames(n_frames, max(3, int(max_frames)))
        # (about 20 full-frame float32 maps come on top, whatever the number of slots)
        budget = memory_mb * 2 ** 20 - 20 * 4 * h * w
        cap = max(3, int(budget // max(1, h * w * 2 * 2.3)))
        if max_slots:
            # the separation's cost grows with the slots; beyond ~24 slots (each the mean of
            # its group of frames) its medians gain little
            cap = min(cap, max(3, int(max_slots)))
        n_read = len(idx)
        groups = np.array_split(idx, min(n_read, cap))
        k = len(groups)
        stack = np.empty((k, h, w), np.float16)
        # the drift is measured on a central crop
        cy, cx = h // 2, w // 2
        ph, pw = min(h, 512), min(w, 512)
        crop = (slice(cy - ph // 2, cy - ph // 2 + ph), slice(cx - pw // 2, cx - pw // 2 + pw))

        def first_sample() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            off_, valid_ = first_judged()
            sample = valid_.copy()
            sample[::3] = False
            sample[:, ::3] = False
            if not sample.any():
                sample[:] = True
            # (indexing by position: ~15x faster than by a mask)
            return off_, valid_, np.flatnonzero(sample)

        # (the reference's sky, umbrae and sunspots are found in the side thread while the first
        # frames are read: the pixels sampled for each slot's level are judged ones)
        first = side.submit(first_sample)

        def read(fi: int, raw_ok: bool = False) -> np.ndarray:
            a = sequence.frame(int(fi))
            if raw_ok and isinstance(a, np.ndarray) and a.ndim == 2 and a.dtype in (np.uint8, np.uint16) \
                    and color not in BAYER_PATTERNS:
                # a mono integer frame as read (its luminance is its float32 copy): summed and
                # tested for the sky without that copy
                y = a
            else:
                y = luminance(a, color)
            if y.shape != (h, w):
                raise InputError(f"frame {fi} is {y.shape[1]}x{y.shape[0]} but the reference is {w}x{h}",
                                 getattr(sequence, "path", None))
            if y.dtype.kind == "f" and not np.isfinite(y).all():
                y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
            return y

        meter = _DriftMeter(read(groups[k // 2][0]), crop, bg_sigma)
        shifts = np.zeros((k, 2), np.float32)
        lfloor = max(floor, 1.0)

        def to_slot(n_i: int, y: np.ndarray) -> None:
            shifts[n_i] = meter(y)
            # log intensity, exposure-normalised: dust adds a fixed dip, the sun moves. The sky is
            # floored at the off-disc threshold: its noise (huge in log units) and the limb's full
            # step would otherwise ring through the interpolation of the sun/sensor separation.
            # (in place: y is this slot's own array, not used after the drift)
            ly = np.log(np.maximum(y, lfloor, out=y), out=y)
            lev = median_1d(ly.ravel()[first.result()[2]])
            to_f16(_blur(np.subtract(lev, ly, out=ly), PRESMOOTH), stack[n_i])

        done = 0
        # (where each frame is off the disc, joined with the reference's below)
        off_frames = np.zeros((h, w), bool)
        # each slot is finished (drift, log, median, smoothing) in one of two threads while the
        # next group of frames is read (two slots in flight: two frames' memory more)
        with ThreadPoolExecutor(max_workers=2) as pool:
            pending: deque = deque()
            for n_i, group in enumerate(groups):
                acc = None
                for fi in group:
                    report(progress, 0.02 + 0.5 * done / n_read, f"dust: frame {done + 1}/{n_read}")
                    y = read(fi, raw_ok=True)
                    # the limb moves with the sun: whatever is off the disc in ANY frame read is
                    # remembered (each frame, not the group average, which would blur the limb)
                    _mark_off(y, floor, off_frames)
                    if acc is None:
                        # (a fresh float32 array from read() is summed in place)
                        acc = y.astype(np.float32) if y.dtype != np.float32 else y
                    elif y.dtype == np.float32:
                        acc += y
                    else:
                        cv2.accumulate(y, acc)  # (acc += y in float32, as numpy adds)
                    done += 1
                if len(group) > 1:
                    acc /= len(group)
                y = acc
                if len(pending) >= 2:
                    pending.popleft().result()
                pending.append(pool.submit(to_slot, n_i, y))
            while pending:
                pending.popleft().result()
        stack_n = k
        off = first.result()[0] | off_frames

        def judged_and_reference(stack: np.ndarray) -> tuple:
            # not judged: within limb_margin of where any frame was off the disc (the limb in
            # every position it took, plus its steep limb-darkened rim and seeing), and the
            # outermost pixels, which lack interpolation support in the sun frame
            if float(np.ptp(shifts, axis=0).max()) >= SPOT_DRIFT:
                # the sun moved: a sunspot moves with it into the separated sun, a clump on its
                # penumbra stays on the sensor. Not judged: the sky with the limb margin, and the
                # umbrae (below the sky threshold in some frame) with UMBRA_MARGIN px around them
                off_ = _sky_and_umbrae(yref, (_box(yref) < floor) | off_frames, bg_sigma)
                n_, lab_, st_, _ = cv2.connectedComponentsWithStats(off_.view(np.uint8), connectivity=8)
                x0_, y0_, bw_, bh_ = st_[:, 0], st_[:, 1], st_[:, 2], st_[:, 3]
                sky_ = (x0_ == 0) | (y0_ == 0) | (x0_ + bw_ == w) | (y0_ + bh_ == h)
                sky_[0] = False
                umbrae_ = ~sky_
                umbrae_[0] = False
                valid_ = _judged(sky_[lab_], limb_margin) & _judged(umbrae_[lab_], UMBRA_MARGIN)
            else:
                off_ = _sky_and_umbrae(yref, off, bg_sigma)
                valid_ = _judged(off_, limb_margin)
            b = EDGE
            valid_[:b] = False
            valid_[-b:] = False
            valid_[:, :b] = False
            valid_[:, -b:] = False
            # very dark pixels are not judged, except the small dark regions _sky_and_umbrae left
            # to judge (opaque clumps: their cores are as dark as an umbra) and their soft edges
            # (and compact regions darker than max_depth that are not below it: a clump 55-70 %
            # deep is darker than max_depth without reaching the sky floor); dref: the
            # reference's local darkening against an edge-aware background (the sky does not
            # pull it)
            on_ = (~off_).astype(np.float32)
            dref = darkening(np.maximum(yref, floor), bg_sigma, on_)
            deep = ((_box(yref) < floor) | (dref >= max_depth)) & ~off_
            clumps = (deep & ~_large_only(deep)).view(np.uint8)
            clumps = cv2.dilate(clumps, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))) > 0
            valid_ &= (dref < max_depth) | clumps
            # no seeds right at the limb margin: the filters' support reaches across it there,
            # and what is left of the rim's steep profile answers like a fibre along the limb
            rim_ = ~_judged(off_, limb_margin + RIM_SEEDLESS) if off_.any() else None
            ref_ = _reference_candidates(yref, floor, valid_, rim_) if REF_CANDIDATES else None
            # the plain temporal median also shows the whole of each speck, interior included,
            # and whatever of the sun stayed put: it only lets a detected speck grow to its full
            # extent (its z-score, against its own baseline, is a floor of the extent)
            plain_ = median_f16(stack)
            plain_[~valid_] = float(median_1d(plain_[valid_])) if valid_.any() else 0.0
            pdip = _blur(plain_ - _lower_envelope(plain_, bg_sigma, valid_.astype(np.float32)), 1.0)
            pdip[~valid_] = 0.0
            return off_, valid_, on_, rim_, ref_, plain_, pdip / _robust_sigma(pdip, valid_)

        # (the judged pixels, the reference's own candidates and the plain median need only the
        # reference, the slots and where the frames were off the disc: found in the side thread
        # while the sun and sensor are separated)
        prep = side.submit(judged_and_reference, stack)
        shifts -= np.median(shifts, axis=0)
        med, noise, halves = _separate(stack, shifts, iterations, progress)
        # (the slots stay, in sensor coordinates: every candidate's own motion is measured on them)
        slots = stack
        del stack
        off, valid, on, rim, ref_cands, plain, plain_z = prep.result()
        del off_frames
        frames_used = n_read
    else:
        frames_used = 1 if n_frames <= 1 else n_frames
    report(progress, 0.9, "dust: scoring")

    if not stack_n:
        med = closing_dip(yref, floor)
        rim = ~_judged(off, limb_margin + RIM_SEEDLESS) if off.any() else None
    # pixels not judged (sky, limb rim, frame border) neither drag the baseline of their
    # neighbours nor get a value of their own
    wv = valid.astype(np.float32)
    med = _remove_limb_profile(med, off, valid, limb_margin + 3 * bg_sigma)
    med[~valid] = float(median_1d(med[valid])) if valid.any() else 0.0
    base = _lower_envelope(med, bg_sigma, wv) if stack_n else 0.0
    dip = med - base
    if noise is not None:
        # per-pixel temporal scatter of the residuals: edges that wobble with seeing count less
        nz = noise / max(float(median_1d(noise[valid])) if valid.any() else 1.0, 1e-6)
        dip = dip / np.maximum(nz, 1.0)
    dip[~valid] = 0.0
    score, extent = _filter_scores(dip, valid, pool=side)
    if plain is not None:
        np.maximum(extent, plain_z, out=extent)
    score[~valid] = 0.0
    if rim is not None:
        score[rim] = np.minimum(score[rim], 0.0)
    extent = extent.astype(np.float32)
    extent[~valid] = 0.0
    cd = None
    if not stack_n:
        _hug(score, extent, med)
    elif ref_cands is not None:
        cd, rscore, rext = ref_cands
    judged = None
    if stack_n:
        # 8-bit data (often compressed): a darkening of a few ADU cannot be told from quantisation
        # and compression error, whatever its z-score after averaging many frames
        low_bits = np.dtype(getattr(sequence, "dtype", np.uint16)).kind in "iu" and \
            int(getattr(sequence, "bit_depth", 16) or 16) <= 8
        floor_map = None
        if low_bits:
            floor_map = QUANT_ADU_8BIT / np.maximum(_nblur(np.maximum(yref, floor), bg_sigma, on), 1.0)
        dust = med - base
        # (each judge measures half its candidates' own motion in the side thread)
        judged = _judge_static(score, extent, valid, dust, None if halves is None else halves - base,
                               floor_map, slots=slots, plain=plain, pool=side)
        if cd is not None:
            # the reference's candidates on their own (merged with the separation's, a speck
            # would vouch for the moving structure beside it, or the other way round)
            rj = _judge_static(rscore, rext, valid, dust, None, floor_map, slots=slots, plain=plain, ref_dip=cd,
                               pool=side)
            judged["reference_candidates"] = rj.get("candidates", 0)
            judged["reference_kept"] = rj.get("kept", 0)
            np.maximum(score, rscore, out=score)
            np.maximum(extent, rext, out=extent)
        del slots
    sm = ScoreMap(score=score.astype(np.float32), extent=extent, valid=valid,
                  frames_used=frames_used, darkening=med, shifts=shifts)
    sm.info = dict(frames_used=frames_used, stacked=stack_n, seconds=round(time.perf_counter() - t0, 3),
                   mode="sequence" if stack_n else "single image",
                   drift_px=float(np.ptp(shifts, axis=0).max()) if shifts is not None and len(shifts) > 1 else 0.0)
    if judged is not None:
        sm.info.update(judged)
    report(progress, 1.0, "dust: done")
    return sm


def _reference_candidates(yref: np.ndarray, floor: float, valid: np.ndarray,
                          rim: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sequence mode: (dip, score, extent) of the reference's own compact dips (closing fills and
    round shadows), scored like a single image. Opaque clumps and big shadows stay whole and sharp
    in the temporal median while the target is smeared, but the separation recovers only the rim
    of a shadow much wider than the drift; :func:`_judge_static` keeps only those that do not
    move with the target. No seeds in ``rim`` (see compute_scores)."""
    cd = np.maximum(closing_dip(yref, floor), round_dip(yref, floor, valid))
    cd[~valid] = 0.0
    rscore, rext = _filter_scores(cd, valid)
    _hug(rscore, rext, cd)
    if rim is not None:
        rscore[rim] = np.minimum(rscore[rim], 0.0)
    return cd, rscore, rext


def _filter_scores(dip: np.ndarray, valid: np.ndarray,
                   pool: Optional[ThreadPoolExecutor] = None) -> tuple[np.ndarray, np.ndarray]:
    """(score, extent) of a darkening map: the best of the Gaussian matched filters (discs, donuts)
    and the Hessian ridge filters (fibres), each normalised by its robust noise over ``valid``;
    extent is the 1 px Gaussian's z-score. With ``pool`` the ridge filters run in its thread
    meanwhile (a maximum: the same values)."""
    h, w = dip.shape
    at = np.flatnonzero(valid)  # (the judged pixels found once for the 6 noise estimates)

    def ridges() -> Optional[np.ndarray]:
        best = None
        for s in RIDGE_SCALES:
            r = _ridge(dip, s)
            r[~valid] = 0.0
            # -lambda_min is skewed positive on pure noise: centre it, and let it count a bit less
            r -= float(median_1d(r.ravel()[at])) if at.size else 0.0
            z = RIDGE_WEIGHT * r / _robust_sigma(r, at)
            best = z if best is None else np.maximum(best, z, out=best)
        return best

    job = pool.submit(ridges) if pool is not None else None
    score = np.zeros((h, w), np.float32)
    extent = None
    for s in BLOB_SCALES:
        ds = _blur(dip, s) if s > 0 else dip
        z = ds / _robust_sigma(ds, at)
        np.maximum(score, z, out=score)
        if s == 1.0:
            extent = z
    rz = job.result() if job is not None else ridges()
    if rz is not None:
        np.maximum(score, rz, out=score)
    return score, extent


def _hug(score: np.ndarray, extent: np.ndarray, dip: np.ndarray) -> None:
    """Single-image scores of a closing dip, in place. Outlines hug the dust: a speck grows only
    where it darkens by at least HUG_FRACTION of the deepest darkening near it, or by HUG_DEPTH
    (its faint halo and the shallow fill around it stay out; the soft edge of a deep clump stays
    in). The closing residue is one-sided (>= 0), so its MAD understates the spread of texture
    (granulation, compression blocks) it holds: z-scores count 1 / SINGLE_NOISE_FACTOR."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * GROW_REACH + 1, 2 * GROW_REACH + 1))
    peak = cv2.dilate(_blur(dip, 1.0), k)
    low = dip < np.minimum(HUG_FRACTION * peak, HUG_DEPTH)
    extent[low] = 0.0
    score[low] = np.minimum(score[low], extent[low])
    score /= SINGLE_NOISE_FACTOR
    extent /= SINGLE_NOISE_FACTOR


def _own_motion(slots: np.ndarray, plain: np.ndarray, labels: np.ndarray, stats: np.ndarray,
                idx: np.ndarray, reach: int = 3,
                pool: Optional[ThreadPoolExecutor] = None) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate ``i`` in ``idx`` (a component of ``labels``), how far (px rms) its own
    darkening pattern moves from slot to slot in sensor coordinates: the candidate's profile in the
    temporal median (``plain``, high-passed, on the candidate grown by 3 px, zero mean) is
    cross-correlated with every slot within +-``reach`` px, and the peaks' scatter about their
    median is returned (NaN where the crop would leave the frame). Dust is a static shadow: its
    pattern stays put whatever the target does (drift, seeing). A feature of the target moves
    with it, by the drift and by the local seeing warp, even when the target as a whole did not
    drift. With ``pool``, half the candidates are measured in its thread meanwhile."""
    k, h, w = slots.shape
    out = np.full(len(stats), np.nan)
    snr = np.zeros(len(stats))
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    R = int(reach)

    def one(i: int) -> None:
        x0, y0, bw, bh = (int(v) for v in stats[i, :4])
        m = 3 + R
        xa, ya, xb, yb = x0 - m, y0 - m, x0 + bw + m, y0 + bh + m
        # at the frame's edge the crop is completed by reflection (outside the frame nothing moves)
        pads = (max(0, -ya), max(0, yb - h), max(0, -xa), max(0, xb - w))
        xa, ya, xb, yb = max(xa, 0), max(ya, 0), min(xb, w), min(yb, h)

        def cut(a: np.ndarray, kind=cv2.BORDER_REFLECT) -> np.ndarray:
            c = a[ya:yb, xa:xb]
            c = c.astype(np.float32) if c.dtype == np.float16 else c
            return cv2.copyMakeBorder(c, *pads, kind, value=0) if any(pads) else c

        win = cv2.dilate((cut(labels, cv2.BORDER_CONSTANT) == i).view(np.uint8), grow)[R:-R, R:-R]
        win = win.astype(np.float32)
        crop = cut(plain)
        hp = crop - _blur(crop, 6.0)
        t = hp[R:-R, R:-R]
        n_w = float(win.sum())
        if n_w < 4:
            return
        t = (t - float((t * win).sum()) / n_w) * win
        if float(np.abs(t).sum()) <= 0:
            return
        g = max(1, int(MOTION_GROUP))
        d = np.empty(((k + g - 1) // g, 2))
        # (every slot's crop in one cast; a group's sum is reflected at the frame's edge once:
        # the same values as summing the reflected crops)
        block = slots[:, ya:yb, xa:xb].astype(np.float32)
        cs = np.empty((len(d), 2 * R + 1, 2 * R + 1), np.float32)
        for jj, j in enumerate(range(0, k, g)):
            a = block[j]
            for j2 in range(j + 1, min(k, j + g)):
                a = a + block[j2]
            if any(pads):
                a = cv2.copyMakeBorder(a, *pads, cv2.BORDER_REFLECT)
            hp_last = (a - _blur(a, 6.0)) / (min(k, j + g) - j)
            cs[jj] = cv2.matchTemplate(hp_last, t, cv2.TM_CCORR)
        # (every group's correlation peak at once)
        d[:] = subpixel_peaks(cs) - R
        dev = d - np.median(d, axis=0)
        out[i] = float(np.sqrt((dev ** 2).sum(axis=1).mean()))
        # how clearly the pattern stands out of what moves around it (texture, noise): its
        # energy over the scatter of a group's high-passed crop outside the candidate
        rest = (win == 0)
        if rest.sum() >= 16:
            inner = hp_last[R:-R, R:-R] if hp_last.shape != t.shape else hp_last
            sd = float(np.std(inner[rest])) * math.sqrt(n_w)
            snr[i] = float(np.sqrt((t * t).sum())) / max(sd, 1e-9) * math.sqrt(len(d))

    def run(part: np.ndarray) -> None:
        for i in part:
            one(int(i))

    if pool is not None and len(idx) > 1:
        job = pool.submit(run, idx[1::2])
        run(idx[0::2])
        job.result()
    else:
        run(idx)
    return out, snr


def _judge_static(score: np.ndarray, extent: np.ndarray, valid: np.ndarray, dust: np.ndarray,
                  halves: Optional[np.ndarray], floor_map: Optional[np.ndarray] = None,
                  slots: Optional[np.ndarray] = None, plain: Optional[np.ndarray] = None,
                  ref_dip: Optional[np.ndarray] = None, pool: Optional[ThreadPoolExecutor] = None) -> dict:
    """Sequence mode: judge every candidate (a connected region of the most sensitive mask) by the
    physics of dust, in place: a candidate whose darkening is not that of a static shadow gets a
    score and extent of 0, so no sensitivity marks it. Kept: a mean darkening of at least
    ``MIN_DEPTH`` (shallower is below what a person sees, and below the residue that seeing and
    compression leave), and, when the target drifted (``halves``), the same darkening in the two
    halves of the frames split along the drift: each half at least ``HALF_AGREEMENT`` of the
    other, both above ``MIN_DEPTH`` / 2 (a residue of a crater rim, a plage edge or a filament
    sits elsewhere on the sensor in each half). With ``floor_map`` (8-bit data: ``QUANT_ADU_8BIT``
    over the local level) the depth must exceed it too. Returns counts and the judged candidates
    for ``ScoreMap.info``."""
    dust = dust.astype(np.float32)
    # candidates: the connected regions of seed pixels at the most sensitive setting (not grown:
    # grown regions merge neighbours, and a speck would vouch for the structure beside it)
    m = score >= ScoreMap.thresholds(1.0)[0]
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    if n <= 1:
        return dict(candidates=0, rejected_not_static=0, rejected_shallow=0)
    # (every per-candidate sum and maximum runs over the candidates' own pixels only, in raster
    # order: label 0, the background and most of the frame, is never judged)
    fg = np.flatnonzero(labels.ravel())
    lab = labels.ravel()[fg]
    cnt = np.maximum(np.bincount(lab, minlength=n), 1).astype(np.float64)
    # depth: the deepest darkening of the candidate (lightly smoothed); a speck much wider than
    # the drift is only partly recovered by the separation (its rim), so a mean would understate it
    sdust = _blur(dust, 1.0).ravel()[fg]
    peak = _label_max(lab, sdust, n, -np.inf)
    need = np.full(n, MIN_DEPTH)
    if floor_map is not None:
        need = np.maximum(need, np.bincount(lab, weights=floor_map.ravel()[fg].astype(np.float64), minlength=n) / cnt)
    shallow = peak < need
    unstable = np.zeros(n, bool)
    if halves is not None:
        # each half's darkening projected on the candidate's own profile (weights: the full
        # estimate's darkening, >= 0), so the pixels a grown outline adds around it count little
        wgt = np.maximum(sdust, 0.0).astype(np.float64)
        wsum = np.maximum(np.bincount(lab, weights=wgt, minlength=n), 1e-12)
        a = np.bincount(lab, weights=wgt * halves[0].ravel()[fg], minlength=n) / wsum
        b = np.bincount(lab, weights=wgt * halves[1].ravel()[fg], minlength=n) / wsum
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        unstable = (lo < HALF_AGREEMENT * hi) | (lo < 0.5 * MIN_DEPTH)
    motion = np.full(n, np.nan)
    snr = np.zeros(n)
    refpeak = np.zeros(n)
    if slots is not None and plain is not None:
        if ref_dip is not None:
            refpeak = np.maximum(_label_max(lab, _blur(ref_dip, 1.0).ravel()[fg], n, 0.0), 0.0)
        # (only the candidates whose verdict the measure can change are worth measuring: the
        # reference's candidates deep enough there; the separation's deep enough and not already
        # refused by the halves)
        worth = np.flatnonzero(refpeak >= need if ref_dip is not None else (peak >= need) & ~unstable)
        motion, snr = _own_motion(slots, plain, labels, stats, worth[worth > 0], pool=pool)
    if slots is not None and plain is not None:
        if ref_dip is not None:
            # the reference's candidates must show themselves static: their own pattern stays put
            # (their depth is the reference's: the separation recovers only the rim of a shadow
            # much wider than the drift)
            still = np.isfinite(motion) & (motion <= STATIC_PX)
            shallow = np.where(still, refpeak, -np.inf) < need
        else:
            # the separation's candidates whose own pattern clearly moves with the target are not
            # dust (a faint pattern's measured motion is mostly noise: the tests above judge it)
            unstable |= np.isfinite(motion) & (snr >= MOTION_SNR) & (motion > STATIC_PX)
    bad = shallow | unstable
    bad[0] = False
    drop = bad[labels]
    score[drop] = 0.0
    extent[drop] = 0.0
    if ref_dip is not None and slots is not None and plain is not None:
        # a reference candidate whose own pattern clearly stays put while the target moves is a
        # static shadow by the physics, however busy the texture that sets its z-score: it is
        # found at the default sensitivity (its strongest pixel seeds it)
        sure = ~bad & np.isfinite(motion) & (snr >= MOTION_SNR) & (motion <= STATIC_PX)
        sure[0] = False
        for i in np.flatnonzero(sure):
            x0, y0, bw, bh = (int(v) for v in stats[i, :4])
            sub = score[y0:y0 + bh, x0:x0 + bw]
            inside = labels[y0:y0 + bh, x0:x0 + bw] == i
            j = int(np.argmax(np.where(inside, sub, -np.inf)))
            sub.flat[j] = max(float(sub.flat[j]), SEED_Z)
    # the candidates deep enough to be judged by the halves, for the record (deepest first)
    ys, xs = np.divmod(fg.astype(np.float64), labels.shape[1])
    cx = np.bincount(lab, weights=xs, minlength=n) / cnt
    cy = np.bincount(lab, weights=ys, minlength=n) / cnt
    rec = []
    deep = np.flatnonzero(~shallow)
    deep = deep[deep > 0]
    for i in deep[np.argsort(-peak[deep], kind="stable")][:50]:
        r = dict(x=round(float(cx[i]), 1), y=round(float(cy[i]), 1), px=int(cnt[i]), depth=round(float(peak[i]), 4),
                 static=not bool(unstable[i]))
        if halves is not None:
            r["halves"] = (round(float(a[i]), 4), round(float(b[i]), 4))
        rec.append(r)
    return dict(candidates=n - 1, kept=int((~bad[1:]).sum()), rejected_shallow=int(shallow[1:].sum()),
                rejected_not_static=int((unstable & ~shallow)[1:].sum()), judged=rec)


def _label_max(lab: np.ndarray, values: np.ndarray, n: int, empty: float) -> np.ndarray:
    """Per label (0..n-1) the maximum of ``values`` (float64; ``empty`` for a label without
    values): ``np.maximum.at`` by a sort and ``np.maximum.reduceat`` (ufunc.at is ~100x slower)."""
    out = np.full(n, empty, np.float64)
    if lab.size:
        order = np.argsort(lab, kind="stable")
        sl = lab[order]
        starts = np.flatnonzero(np.concatenate(([True], sl[1:] != sl[:-1])))
        out[sl[starts]] = np.maximum.reduceat(values[order], starts)
    return out


def _ridge(a: np.ndarray, sigma: float) -> np.ndarray:
    """Scale-normalised dark-line/blob strength: minus the most negative Hessian eigenvalue of
    ``a`` smoothed at ``sigma`` (a thin fibre answers as strongly as a disc of its width)."""
    g = _blur(a, sigma)
    dxx = cv2.Sobel(g, cv2.CV_32F, 2, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    dyy = cv2.Sobel(g, cv2.CV_32F, 0, 2, ksize=3, borderType=cv2.BORDER_REFLECT)
    dxy = cv2.Sobel(g, cv2.CV_32F, 1, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    # -(0.5 (dxx + dyy) - sqrt(0.25 (dxx - dyy)^2 + dxy^2)) sigma^2, in place (the same float32
    # operations in the same order, without the full-frame temporaries)
    t = np.subtract(dxx, dyy)
    np.square(t, out=t)
    t *= 0.25
    np.square(dxy, out=dxy)
    t += dxy
    np.sqrt(t, out=t)
    lam_min = np.add(dxx, dyy, out=dxx)
    lam_min *= 0.5
    lam_min -= t
    np.negative(lam_min, out=lam_min)
    lam_min *= sigma * sigma
    return lam_min


def _cubic_taps(f: float) -> np.ndarray:
    """OpenCV's bicubic weights (A = -0.75) of the samples at -1, 0, 1 and 2 px from the one just
    before a point ``f`` (0 <= f < 1) px past it."""
    A = -0.75
    c0 = ((A * (f + 1) - 5 * A) * (f + 1) + 8 * A) * (f + 1) - 4 * A
    c1 = ((A + 2) * f - (A + 3)) * f * f + 1
    c2 = ((A + 2) * (1 - f) - (A + 3)) * (1 - f) * (1 - f) + 1
    return np.array([c0, c1, c2, 1.0 - c0 - c1 - c2], np.float32)


def _translate(a: np.ndarray, dx: float, dy: float, size: tuple[int, int], border=None,
               minus: Optional[np.ndarray] = None) -> np.ndarray:
    """``out(x, y) = a(x - dx, y - dy)`` on an output of ``size`` (w, h), cubic interpolation;
    outside ``a`` the value is ``border`` or the replicated edge when ``border`` is None. With
    ``minus`` (float32, the shape of ``a``), ``a - minus`` (in float32) is moved instead. A
    translation moves every pixel by the same fraction, so the bicubic weights are the same
    everywhere and the interpolation is a separable 4-tap filter (2x faster than OpenCV's
    warpAffine, whose float coordinates also make the fraction wobble by ~1e-4 px along a row)."""
    w, h = size
    H, W = a.shape
    sx, sy = -float(dx), -float(dy)  # where out(0, 0) comes from
    ix, iy = math.floor(sx), math.floor(sy)
    r0, c0 = iy - 1, ix - 1  # the 4x4 support of out(0, 0) starts here
    r1, c1 = r0 + h + 3, c0 + w + 3
    kx, ky = _cubic_taps(sx - ix), _cubic_taps(sy - iy)
    if minus is not None:
        if border is not None and r0 <= 0 and c0 <= 0 and r1 >= H and c1 >= W:
            # the whole of ``a`` inside a constant border: the difference is written straight into
            # the bordered source (the same array copyMakeBorder would make, one pass less)
            src = np.empty((r1 - r0, c1 - c0), np.float32)
            t, lf = -r0, -c0
            src[:t] = border
            src[t + H:] = border
            src[t:t + H, :lf] = border
            src[t:t + H, lf + W:] = border
            cv2.subtract(a, minus, dst=src[t:t + H, lf:lf + W], dtype=cv2.CV_32F)
            return cv2.sepFilter2D(src, cv2.CV_32F, kx, ky, anchor=(1, 1))[1:1 + h, 1:1 + w]
        a = cv2.subtract(a, minus, dtype=cv2.CV_32F)
    if r0 >= H or c0 >= W or r1 <= 0 or c1 <= 0:  # (nothing of ``a`` in the output)
        m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], np.float32)
        mode = cv2.BORDER_REPLICATE if border is None else cv2.BORDER_CONSTANT
        return cv2.warpAffine(a, m, size, flags=cv2.INTER_CUBIC, borderMode=mode,
                              borderValue=0.0 if border is None else border)
    src = a[max(r0, 0):min(r1, H), max(c0, 0):min(c1, W)]
    pads = (max(0, -r0), max(0, r1 - H), max(0, -c0), max(0, c1 - W))
    if any(pads):
        # (a NaN border value is not safe: OpenCV's cubic path spreads it far beyond the edge)
        src = (cv2.copyMakeBorder(src, *pads, cv2.BORDER_REPLICATE) if border is None else
               cv2.copyMakeBorder(src, *pads, cv2.BORDER_CONSTANT, value=border))
    out = cv2.sepFilter2D(src, cv2.CV_32F, kx, ky, anchor=(1, 1))
    return out[1:1 + h, 1:1 + w]


#: Stand-in for "no data" in the sun-aligned stack (float16 holds it; real values are ~0.01).
_FAR = 1000.0

#: Rows per band of the sun/sensor separation: every slot's move of a band of rows, the band's
#: median and (last round) its scatter and halves are done while the band is in the cache, and the
#: moved stacks are never held whole (a 4-tap filter reads 3 rows more than it writes).
BAND_ROWS = 32


def _move_plan(dx: float, dy: float) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(r0, c0, kx, ky) of the move ``out(x, y) = a(x - dx, y - dy)`` (see :func:`_translate`): the
    source row and column where the 4x4 support of out(0, 0) starts, and the bicubic taps."""
    sx, sy = -float(dx), -float(dy)  # where out(0, 0) comes from
    ix, iy = math.floor(sx), math.floor(sy)
    return iy - 1, ix - 1, _cubic_taps(sx - ix), _cubic_taps(sy - iy)


def _sun_band(slot: np.ndarray, dust: np.ndarray, i: int, shift: np.ndarray, pad: int, cw: int,
              rows: tuple[int, int], src: np.ndarray, out: np.ndarray, plan: Optional[tuple] = None) -> None:
    """Rows ``rows`` of the padded sun canvas (``cw`` wide) of slot ``i``: ``out`` (float16) =
    ``slot - dust`` moved by ``pad - shift``, with the far fill outside the slot's field. The same
    values as :func:`_translate` of the whole slot with a border of 0 (the slot lies wholly inside
    the canvas: pad > drift + 1), cropped to the rows. ``src``: float32 scratch of at least
    ``rows`` + 3 rows by ``cw`` + 3; ``plan``: the move's :func:`_move_plan` if known."""
    h, w = dust.shape
    y_a, y_b = rows
    tx, ty = pad - float(shift[0]), pad - float(shift[1])
    r0, c0, kx, ky = plan if plan is not None else _move_plan(tx, ty)
    t, lf = -r0, -c0  # where the slot starts in the bordered source
    s = src[:y_b - y_a + 3, :cw + 3]
    d0, d1 = max(y_a, t), min(y_b + 3, t + h)  # the source rows of this band that hold the slot
    if d0 < d1:
        s[:d0 - y_a] = 0.0
        s[d1 - y_a:] = 0.0
        s[d0 - y_a:d1 - y_a, :lf] = 0.0
        s[d0 - y_a:d1 - y_a, lf + w:] = 0.0
        cv2.subtract(slot[d0 - t:d1 - t], dust[d0 - t:d1 - t], dst=s[d0 - y_a:d1 - y_a, lf:lf + w], dtype=cv2.CV_32F)
    else:
        s[:] = 0.0
    bh = y_b - y_a
    a = cv2.sepFilter2D(s, cv2.CV_32F, kx, ky, anchor=(1, 1))[1:1 + bh, 1:1 + cw]
    # outside this frame's field (and its interpolation support) there is no data: fill
    # alternately far above and far below, so that the median of a pixel's values is (to half a
    # rank) the median of its real ones, and a plain median does the job of a slow NaN-aware one
    fill = _FAR if i % 2 == 0 else -_FAR
    x0, x1 = int(math.ceil(tx + 1)), int(math.floor(tx + w - 2)) + 1
    y0, y1 = int(math.ceil(ty + 1)), int(math.floor(ty + h - 2)) + 1
    a[:min(bh, max(0, max(y0, 0) - y_a))] = fill
    a[min(bh, max(0, max(y1, 0) - y_a)):] = fill
    a[:, :max(x0, 0)] = fill
    a[:, max(x1, 0):] = fill
    to_f16(a, out)


def _sensor_band(slot: np.ndarray, sun: np.ndarray, shift: np.ndarray, pad: int, rows: tuple[int, int],
                 out: np.ndarray, plan: Optional[tuple] = None) -> None:
    """Rows ``rows`` of ``slot`` less the padded ``sun`` moved by ``shift`` onto the sensor, into
    ``out`` (float16): the same values as :func:`_translate` of the whole sun (whose padding holds
    the move's support: pad > drift + 1), cropped to the rows; ``plan`` as for :func:`_sun_band`."""
    w = slot.shape[1]
    y_a, y_b = rows
    r0, c0, kx, ky = plan if plan is not None else _move_plan(float(shift[0]) - pad, float(shift[1]) - pad)
    back = cv2.sepFilter2D(sun[r0 + y_a:r0 + y_b + 3, c0:c0 + w + 3], cv2.CV_32F, kx, ky,
                           anchor=(1, 1))[1:1 + y_b - y_a, 1:1 + w]
    sub_to_f16(slot[y_a:y_b], back, out)


#: Threads of the sun/sensor separation: bands of rows are moved, and their pixels' medians taken,
#: this many at once (OpenCV and numpy release the GIL; the result does not depend on it).
SEPARATE_THREADS = 2


def _separate(stack: np.ndarray, shifts: np.ndarray, iterations: int,
              progress: Optional[ProgressFn]) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    with ThreadPoolExecutor(max_workers=SEPARATE_THREADS) as pool:
        return _separate_in(stack, shifts, iterations, progress, pool)


def _separate_in(stack: np.ndarray, shifts: np.ndarray, iterations: int, progress: Optional[ProgressFn],
                 pool: ThreadPoolExecutor) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Split the darkening stack into what is fixed to the sensor (dust) and what moves with the
    sun, by alternating robust estimates (a KLL-style self-flat on the measured drift):

        sun(x)  = median_i [ (d_i - dust)(x + s_i) ]      (frames aligned on the sun)
        dust(x) = median_i [ d_i(x) - sun(x - s_i) ]       (frames as recorded)

    The sun map lives on a canvas padded by the largest shift, so every frame's field is covered.
    Each estimate is made in bands of ``BAND_ROWS`` rows (all slots moved, then the median), in
    ``SEPARATE_THREADS`` threads. Returns (dust, scatter, halves): the dust darkening map, the
    per-pixel temporal scatter (mean absolute residual) of the last iteration, and the dust map of
    each half of the slots split along the drift's main axis ((2, H, W), None without drift or
    with fewer than 4 slots)."""
    k, h, w = stack.shape
    dust = np.zeros((h, w), np.float32)
    reach = float(np.abs(shifts).max())
    moving = reach >= 0.5
    pad = int(math.ceil(reach)) + 2
    ch, cw = h + 2 * pad, w + 2 * pad
    n_it = max(1, iterations) if moving else 1
    scatter = np.zeros((h, w), np.float32)
    # the two halves of the slots along the drift's main axis, each on its own: dust is static in
    # sensor coordinates and darkens the same pixels by the same factor in both; what is left of
    # a feature that moves with the target sat elsewhere on the sensor in each half
    halves = None
    parts: tuple = ()
    if moving and k >= 4:
        c = shifts - shifts.mean(axis=0)
        _, _, vt = np.linalg.svd(c.astype(np.float64), full_matrices=False)
        order = np.argsort(c @ vt[0], kind="stable")
        parts = (np.sort(order[:k // 2]), np.sort(order[k - k // 2:]))
        halves = np.zeros((2, h, w), np.float32)
    sun = np.empty((ch, cw), np.float32) if moving else None
    B = max(1, int(BAND_ROWS))
    n_t = max(1, int(SEPARATE_THREADS))
    # (scratch of each thread, reused by every band: a moved band in float32, the moved stack band)
    src = [np.empty((B + 3, cw + 3), np.float32) for _ in range(n_t)] if moving else []
    work = [np.empty((k, B, cw), np.float16) for _ in range(n_t)] if moving else []
    # (each slot's two moves, planned once)
    to_sun = [_move_plan(pad - float(s[0]), pad - float(s[1])) for s in shifts]
    to_sensor = [_move_plan(float(s[0]) - pad, float(s[1]) - pad) for s in shifts]

    def in_bands(job, n_rows: int) -> None:
        bands = iter([(y, min(n_rows, y + B)) for y in range(0, n_rows, B)])
        lock = threading.Lock()

        def worker(j: int) -> None:
            while True:
                with lock:
                    band = next(bands, None)
                if band is None:
                    return
                job(band, j)

        for _ in pool.map(worker, range(n_t)):
            pass

    def sun_band(band: tuple[int, int], j: int) -> None:
        y_a, y_b = band
        al = work[j][:, :y_b - y_a]
        for i in range(k):
            _sun_band(stack[i], dust, i, shifts[i], pad, cw, band, src[j], al[i], to_sun[i])
        s = median_f16(al)
        s[np.abs(s) > _FAR / 2] = 0.0  # points no frame saw
        sun[y_a:y_b] = s

    def dust_band(band: tuple[int, int], j: int, last: bool) -> None:
        y_a, y_b = band
        if moving:
            # (each slot's band contiguous in the scratch)
            res = work[j].reshape(-1)[:k * (y_b - y_a) * w].reshape(k, y_b - y_a, w)
            for i in range(k):
                _sensor_band(stack[i], sun, shifts[i], pad, band, res[i], to_sensor[i])
        else:
            res = stack[:, y_a:y_b]
        d = median_f16(res)
        if last:
            # (the mean absolute residual summed slot after slot in float32, as numpy's mean
            # along the first axis does)
            sc = scatter[y_a:y_b]
            for i in range(k):
                r = cv2.subtract(res[i], d, dtype=cv2.CV_32F)
                np.abs(r, out=r)
                sc += r
            if halves is not None:
                for jj, part in enumerate(parts):
                    halves[jj, y_a:y_b] = median_f16(res, part)
        dust[y_a:y_b] = d

    for it in range(n_it):
        if moving:
            report(progress, 0.52 + 0.38 * it / n_it, f"dust: separating sun and sensor ({it + 1}/{n_it})")
            in_bands(sun_band, ch)
        in_bands(lambda band, j: dust_band(band, j, it == n_it - 1), h)
    scatter /= np.float32(k)
    return dust, scatter, halves

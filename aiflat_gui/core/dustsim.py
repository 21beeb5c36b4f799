"""Test videos made from the physics of sensor dust, not from what our detector looks for.

Pure numpy/OpenCV; no file I/O (a real background is read by the caller, e.g. with
``aiflat_gui.io``, and passed in as an array). One call::

    from aiflat_gui.core.dustsim import SimSpec, simulate, TUNING_SEEDS
    sim = simulate(SimSpec(seed=TUNING_SEEDS[0], background="sun", seeing_px=3.0, drift_px=0.4))
    sim.frames        # (N, H, W) uint8/uint16 raw frames: dust, noise, pedestal
    sim.flat          # (H, W) float32 true attenuation: the exact flat, 1.0 away from dust
    sim.mask          # (H, W) bool, sim.flat < 1
    sim.labels        # (H, W) int32, 1 + index into sim.specks of the speck darkening a pixel most
    sim.specks        # [Speck(kind, x, y, size, depth, ...)]: kind disc | donut | clump | fibre
    sim.clean(i)      # float32 dust-free, noise-free frame i INCLUDING the pedestal

Physics (``/work/shared/field-notes.md``, "What sensor dust looks like"):

* A particle at distance d in front of the sensor, in a beam of focal ratio N, shadows a copy of
  the telescope's aperture d/N across: a **disc** (refractor, off-axis aperture) or a **donut**
  (central obstruction, ratio 0.25-0.5), 3-80 px, the larger the fainter (a few % deep), with a
  slightly darker Fresnel rim ("ringed discs"). A particle ON the window glass is a **clump**:
  its own irregular silhouette, barely blurred, nearly opaque (core at 3-45 % of the
  surroundings). **Fibres** and hairs: thin, long, curved silhouettes blurred by their
  footprint.
* Dust is multiplicative and fixed in sensor coordinates; it multiplies the signal, not the
  camera pedestal: ``raw = pedestal + noise(signal * flat)``.
* The target moves: a random-walk drift (``drift_px`` rms per frame, 0 = none), a global
  jitter (``jitter_px``), and poor seeing, i.e. a smooth random displacement field of rms
  ``seeing_px`` and correlation length ``seeing_scale`` px that changes from frame to frame
  (AR(1) memory ``seeing_memory``), plus a seeing blur. All of it acts on the target, before
  the dust.

Backgrounds that fight back (``background``):

``"sun"``
    H-alpha-like chromosphere: limb darkening, granulation/mottle texture, pores (dust-sized
    dark dots), a sunspot (umbra + penumbra with fibrils), plage (bright patches with sharp
    edges and dark lanes along them), filaments (dark curved ribbons); with ``limb`` the limb
    crosses the frame with sky and prominences beyond it.
``"moon"``
    lunar terrain: maria/highland albedo, craters (bowls, raised rims) of all sizes, shaded by a
    low sun with cast shadows, the terminator crossing the frame; with ``limb`` the lunar limb.
``"image"``
    a real frame (2-D array) or real frames (3-D stack; frame i uses ``image[i % n]``) given in
    ``image``, moved around by the same drift/jitter/seeing. Its own features (and any real dust
    it holds: the real H-alpha median has some) move with the target: they are NOT dust here.

Seeds: :data:`TUNING_SEEDS` may be used to tune anything; :data:`HELDOUT_SEEDS` must never be
used for tuning -- benches report them separately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Optional

import cv2
import numpy as np

from .demo import _bandpass_noise, _curve, _line_distance, _smooth01, _smooth_field

#: Seeds anyone may tune on.
TUNING_SEEDS = (101, 102, 103, 104, 105, 106, 107, 108)
#: Seeds nobody tunes on: benches report them in their own table.
HELDOUT_SEEDS = (9001, 9002, 9003, 9004, 9005, 9006, 9007, 9008)

KINDS = ("disc", "donut", "clump", "fibre")
BACKGROUNDS = ("sun", "moon", "image", "flat")
#: Darkening below this is snapped to exactly 1.0 in the true flat (well below one 8-bit step).
SNAP = 2e-3


@dataclass(frozen=True)
class SimSpec:
    """Everything a scene is made from. Sizes are px, depths are darkening fractions (1 - transmission).

    Dust counts are per 640x480 and scale with the frame area (at least 1 each when non-zero).
    Size: disc/donut outer diameter; clump equivalent diameter; fibre length.
    """

    width: int = 640
    height: int = 480
    frames: int = 32
    seed: int = TUNING_SEEDS[0]
    dust_seed: Optional[int] = None  # the dust layout's own seed (None: from ``seed``)
    background: str = "sun"
    image: Optional[np.ndarray] = None  # for background="image": (H', W') or (N', H', W')
    limb: bool = False
    # target features (sun): counts per 640x480
    sunspot: bool = True
    n_pores: int = 10
    n_filaments: int = 3
    plage: bool = True
    granulation: float = 0.05
    # dust: counts per 640x480
    n_disc: int = 6
    n_donut: int = 4
    n_clump: int = 4
    n_fibre: int = 2
    disc_size: tuple[float, float] = (3.0, 80.0)
    disc_depth: tuple[float, float] = (0.02, 0.40)
    donut_size: tuple[float, float] = (10.0, 80.0)
    donut_depth: tuple[float, float] = (0.02, 0.30)
    clump_size: tuple[float, float] = (4.0, 40.0)
    clump_depth: tuple[float, float] = (0.55, 0.97)
    fibre_size: tuple[float, float] = (15.0, 150.0)
    fibre_depth: tuple[float, float] = (0.08, 0.70)
    # motion
    drift_px: float = 0.4  # rms per-frame step of the random walk (0: no drift)
    jitter_px: float = 0.3  # rms of an independent global shift per frame
    seeing_px: float = 1.0  # rms of the local warp
    seeing_scale: float = 48.0  # its correlation length (px)
    seeing_memory: float = 0.5  # AR(1) correlation of the warp between frames
    seeing_blur: tuple[float, float] = (0.6, 1.6)  # Gaussian sigma range per frame (px)
    # camera
    bit_depth: int = 16  # 8 or 16 (the sample type of the frames)
    level: float = 0.6  # the target's median brightness as a fraction of full scale
    full_well: float = 12000.0  # electrons at full scale (shot noise)
    read_noise: float = 3.0  # electrons rms
    pedestal: float = 0.0  # camera offset in ADU, added after the dust

    def with_(self, **changes) -> "SimSpec":
        return replace(self, **changes)


@dataclass
class Speck:
    """One dust speck. ``x, y``: centroid (px); ``size``: diameter (disc, donut, clump: equivalent
    diameter) or length (fibre); ``depth``: max darkening (1 - min transmission); ``bbox``:
    (x0, y0, x1, y1) exclusive; ``label``: its value in :attr:`Sim.labels`; ``on_target``: share of
    its pixels where the target (sun/moon disc, not sky or night side) lies under it in frame 0."""

    kind: str
    x: float
    y: float
    size: float
    depth: float
    bbox: tuple[int, int, int, int]
    label: int
    area: int = 0
    on_target: float = 1.0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sim:
    spec: SimSpec
    flat: np.ndarray
    labels: np.ndarray
    specks: list[Speck]
    shifts: np.ndarray  # (N, 2) drift + jitter of the target in frame i vs frame 0 (dx, dy), px
    _renderer: Any = None
    _frames: Optional[np.ndarray] = None

    @property
    def mask(self) -> np.ndarray:
        return self.flat < 1.0

    @property
    def n_frames(self) -> int:
        return self.spec.frames

    @property
    def dtype(self):
        return np.uint8 if self.spec.bit_depth == 8 else np.uint16

    @property
    def frames(self) -> np.ndarray:
        """All frames (rendered once and kept). For large videos use :meth:`frame`/:meth:`iter_frames`."""
        if self._frames is None:
            self._frames = np.stack([self.frame(i) for i in range(self.n_frames)])
        return self._frames

    def frame(self, i: int) -> np.ndarray:
        """Raw frame ``i`` (deterministic: the same array every call)."""
        if self._frames is not None:
            return self._frames[i]
        clean = self._renderer.signal(i)
        return self._renderer.expose(i, clean * self.flat)

    def iter_frames(self) -> Iterator[np.ndarray]:
        for i in range(self.n_frames):
            yield self.frame(i)

    def clean(self, i: int) -> np.ndarray:
        """float32 dust-free, noise-free frame ``i`` including the pedestal (what a perfect flat gives back)."""
        return self._renderer.signal(i) + np.float32(self.spec.pedestal)

    def full_scale(self) -> int:
        return 255 if self.spec.bit_depth == 8 else 65535


# -- dust ------------------------------------------------------------------------------------------

def _disc_coverage(r: np.ndarray, radius: float) -> np.ndarray:
    """Anti-aliased coverage of a disc of ``radius`` at distance ``r``."""
    return np.clip(radius + 0.5 - r, 0.0, 1.0)


def _aperture_shadow(rng, diameter: float, depth: float, obstruction: float) -> tuple[np.ndarray, dict]:
    """Darkening patch of an out-of-focus aperture shadow: a disc (obstruction 0) or an annulus,
    edge blurred by the particle's own size, with a faint darker Fresnel rim."""
    R = diameter / 2.0
    blur = rng.uniform(0.3, 1.0) + 0.04 * R  # the particle's extent blurs the footprint's edge
    pad = int(math.ceil(R + 3 * blur + 2))
    yy, xx = np.mgrid[-pad:pad + 1, -pad:pad + 1].astype(np.float32)
    fx, fy = rng.uniform(-0.5, 0.5, 2)
    r = np.hypot(xx - fx, yy - fy)
    cov = _disc_coverage(r, R)
    if obstruction > 0:
        cov = cov - _disc_coverage(r, R * obstruction)
    rim = rng.uniform(0.0, 0.35) if R >= 4 else 0.0
    prof = cov * (1.0 + rim * np.exp(-((r - (R - 1.2)) / 1.2) ** 2))
    if blur > 0.25:
        prof = cv2.GaussianBlur(prof, (0, 0), blur)
    peak = float(prof.max())
    d = prof * (depth / peak) if peak > 0 else prof
    return d, dict(obstruction=float(obstruction), rim=float(rim), edge_blur=float(blur))


def _clump(rng, diameter: float, depth: float) -> tuple[np.ndarray, dict]:
    """A particle on the window: irregular silhouette (random Fourier outline, sometimes two lobes),
    blurred by a small footprint, nearly opaque core."""
    R = diameter / 2.0
    blur = rng.uniform(0.5, 1.5) + 0.03 * R
    pad = int(math.ceil(1.7 * R + 3 * blur + 3))
    yy, xx = np.mgrid[-pad:pad + 1, -pad:pad + 1].astype(np.float32)
    th = np.arctan2(yy, xx)
    r = np.hypot(xx, yy)
    k = np.arange(2, 7)
    amp = rng.uniform(0.05, 0.25, len(k)) / k ** 0.5
    ph = rng.uniform(0, 2 * np.pi, len(k))
    outline = R * (1.0 + (amp[:, None, None] * np.cos(k[:, None, None] * th + ph[:, None, None])).sum(0))
    sil = np.clip(outline + 0.5 - r, 0.0, 1.0)
    if rng.random() < 0.4:  # a second lobe stuck to the first
        a = rng.uniform(0, 2 * np.pi)
        r2 = R * rng.uniform(0.35, 0.7)
        cx, cy = (R * 0.8) * math.cos(a), (R * 0.8) * math.sin(a)
        sil = np.maximum(sil, np.clip(r2 + 0.5 - np.hypot(xx - cx, yy - cy), 0.0, 1.0))
    # uneven opacity inside (a clump of grains, not a sheet)
    tex = 1.0 - 0.15 * np.abs(cv2.GaussianBlur(rng.standard_normal(sil.shape).astype(np.float32), (0, 0), 1.5)) * 3
    prof = cv2.GaussianBlur(sil * np.clip(tex, 0.6, 1.0), (0, 0), blur)
    peak = float(prof.max())
    d = prof * (depth / peak) if peak > 0 else prof
    return d, dict(edge_blur=float(blur))


def _fibre(rng, length: float, depth: float) -> tuple[np.ndarray, dict, tuple[float, float]]:
    width = rng.uniform(0.8, 3.0)
    blur = rng.uniform(0.5, 2.5)
    pts = _curve(rng, length, curvature=rng.uniform(0.3, 1.5))
    dist, x0, y0 = _line_distance(pts, pad=width + 3 * blur + 3)
    sil = np.clip(width / 2.0 + 0.5 - dist, 0.0, 1.0)
    prof = cv2.GaussianBlur(sil, (0, 0), blur)
    peak = float(prof.max())
    d = prof * (depth / peak) if peak > 0 else prof
    # origin of the patch relative to the curve's start point
    return d, dict(width=float(width), edge_blur=float(blur)), (float(x0), float(y0))


def _loguniform(rng, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _make_dust(rng, spec: SimSpec) -> tuple[np.ndarray, np.ndarray, list[Speck]]:
    H, W = spec.height, spec.width
    scale = H * W / (640.0 * 480.0)
    counts = {k: getattr(spec, f"n_{k}") for k in KINDS}
    counts = {k: (max(1, int(round(n * scale))) if n > 0 else 0) for k, n in counts.items()}
    order = [k for k in KINDS for _ in range(counts[k])]
    rng.shuffle(order)
    trans = np.ones((H, W), np.float32)
    best = np.zeros((H, W), np.float32)
    labels = np.zeros((H, W), np.int32)
    occupied = np.zeros((H, W), bool)
    specks: list[Speck] = []
    for kind in order:
        lo, hi = getattr(spec, f"{kind}_size")
        dlo, dhi = getattr(spec, f"{kind}_depth")
        size = _loguniform(rng, lo, hi)
        depth = _loguniform(rng, dlo, dhi)
        origin = None
        if kind == "disc":
            patch, det = _aperture_shadow(rng, size, depth, 0.0)
        elif kind == "donut":
            patch, det = _aperture_shadow(rng, size, depth, rng.uniform(0.25, 0.5))
        elif kind == "clump":
            patch, det = _clump(rng, size, depth)
        else:
            patch, det, origin = _fibre(rng, size, depth)
        ph, pw = patch.shape
        if ph >= H - 4 or pw >= W - 4:
            continue
        for _try in range(40):  # keep specks apart (each is judged on its own) and inside the frame
            x0 = int(rng.integers(2, W - pw - 1))
            y0 = int(rng.integers(2, H - ph - 1))
            box = (slice(y0, y0 + ph), slice(x0, x0 + pw))
            if not occupied[box][patch > SNAP].any():
                break
        else:
            continue
        d = patch
        trans[box] *= 1.0 - d
        lab = len(specks) + 1
        win = d > best[box]
        labels[box][win & (d > SNAP)] = lab
        best[box] = np.maximum(best[box], d)
        occupied[box] |= cv2.dilate((d > SNAP).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        ys, xs = np.nonzero(d > SNAP)
        wts = d[ys, xs]
        specks.append(Speck(kind=kind, x=float(x0 + (xs * wts).sum() / wts.sum()),
                            y=float(y0 + (ys * wts).sum() / wts.sum()), size=float(size), depth=float(d.max()),
                            bbox=(x0, y0, x0 + pw, y0 + ph), label=lab, details=det))
    flat = np.where(1.0 - trans < SNAP, 1.0, trans).astype(np.float32)
    labels[flat >= 1.0] = 0
    for s in specks:
        s.area = int((labels == s.label).sum())
    return flat, labels, specks


# -- backgrounds (a canvas larger than the frame, relative brightness ~1 on the target) ---------

def _ellipse_blob(xx, yy, cx, cy, r, rng, k=(2, 3, 4), amp=0.2):
    th = np.arctan2(yy - cy, xx - cx)
    rr = np.hypot(xx - cx, yy - cy)
    out = np.full_like(rr, r)
    for kk in k:
        out += r * rng.uniform(0, amp) * np.cos(kk * th + rng.uniform(0, 2 * np.pi))
    return rr, out, th


def _sun_canvas(rng, shape, spec: SimSpec, frame_hw) -> tuple[np.ndarray, np.ndarray]:
    """(image, on_target) of a chromospheric scene on a canvas of ``shape``."""
    ch, cw = shape
    fh, fw = frame_hw
    area = fh * fw / (640.0 * 480.0)
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    img = 1.0 + spec.granulation * _bandpass_noise(rng, shape, 1.2, 4.0)
    img += 0.6 * spec.granulation * _bandpass_noise(rng, shape, 4.0, 14.0)  # mottles
    on = np.ones(shape, bool)
    if spec.plage:
        field_ = _smooth_field(rng, shape, 70.0) + 0.3 * _smooth_field(rng, shape, 20.0)
        thr = rng.uniform(0.6, 1.0)
        edge = rng.uniform(1.0, 2.5)
        p = _smooth01((field_ - thr) / (0.12 * edge))
        img *= 1.0 + rng.uniform(0.2, 0.4) * p
        # dark lanes (fibrils) just outside the plage edge
        band = _smooth01((field_ - (thr - 0.35)) / 0.12) * (1.0 - _smooth01((field_ - thr + 0.05) / 0.1))
        lanes = 0.5 + 0.5 * np.sin(_smooth_field(rng, shape, 8.0) * 3.0)
        img *= 1.0 - rng.uniform(0.08, 0.2) * band * lanes
    if spec.sunspot:
        cx, cy = rng.uniform(0.25, 0.75) * cw, rng.uniform(0.25, 0.75) * ch
        ru = rng.uniform(8.0, 28.0) * max(1.0, area ** 0.25)
        rp = ru * rng.uniform(2.0, 2.6)
        rr, outline_u, th = _ellipse_blob(xx, yy, cx, cy, ru, rng)
        _, outline_p, _ = _ellipse_blob(xx, yy, cx, cy, rp, rng)
        umbra = _smooth01((outline_u + 1.5 - rr) / 3.0)
        pen = _smooth01((outline_p + 2.0 - rr) / 4.0)
        fib = 0.08 * np.sin(th * int(rng.integers(20, 40)) + 3 * np.sin(th * 3))
        img *= 1.0 - pen * (0.3 + fib) - umbra * rng.uniform(0.4, 0.55)
    for _ in range(int(round(spec.n_pores * area))):
        rad = rng.uniform(1.5, 5.0)
        depth = rng.uniform(0.15, 0.5)
        px, py = rng.uniform(0, cw), rng.uniform(0, ch)
        y0, y1 = max(0, int(py - 5 * rad)), min(ch, int(py + 5 * rad) + 2)
        x0, x1 = max(0, int(px - 5 * rad)), min(cw, int(px + 5 * rad) + 2)
        sub = (slice(y0, y1), slice(x0, x1))
        d2 = (xx[sub] - px) ** 2 + (yy[sub] - py) ** 2
        img[sub] *= 1.0 - depth * np.exp(-d2 / (2 * (rad / 1.4) ** 2))
    for _ in range(int(round(spec.n_filaments * area))):
        length = rng.uniform(60.0, 300.0)
        width = rng.uniform(3.0, 10.0)
        depth = rng.uniform(0.15, 0.45)
        pts = _curve(rng, length, 0.8) + [rng.uniform(0, cw), rng.uniform(0, ch)]
        dist, x0, y0 = _line_distance(pts, pad=width + 6)
        x1, y1 = x0 + dist.shape[1], y0 + dist.shape[0]
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, cw), min(y1, ch)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        d = dist[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        prof = np.exp(-(d / (width / 2.0)) ** 2)
        img[cy0:cy1, cx0:cx1] *= 1.0 - depth * prof
    # limb darkening (always a gentle gradient: the field is a part of a large disc)
    r_sun = 3.0 * max(fh, fw)
    if spec.limb:
        side = int(rng.integers(4))
        cut = rng.uniform(0.15, 0.3) * (fw if side < 2 else fh)
        cx, cy = cw / 2.0, ch / 2.0
        if side == 0:
            cx = (cw - fw) / 2.0 + cut + r_sun
        elif side == 1:
            cx = (cw + fw) / 2.0 - cut - r_sun
        elif side == 2:
            cy = (ch - fh) / 2.0 + cut + r_sun
        else:
            cy = (ch + fh) / 2.0 - cut - r_sun
    else:
        a = rng.uniform(0, 2 * np.pi)
        cx, cy = cw / 2.0 + 1.6 * r_sun * math.cos(a) * 0.5, ch / 2.0 + 1.6 * r_sun * math.sin(a) * 0.5
    r = np.hypot(xx - cx, yy - cy)
    mu = np.sqrt(np.clip(1.0 - (r / r_sun) ** 2, 0.0, 1.0))
    disc = _smooth01((r_sun + 1.0 - r) / 2.0)
    img = img * (1.0 - 0.6 * (1.0 - mu)) * disc
    if spec.limb:
        on = r < r_sun
        # prominences: bright loops and plumes above the limb; spicule forest at the limb
        sky = 0.01 + 0.04 * np.exp(-np.clip(r - r_sun, 0, None) / 6.0) * (1 - disc)
        prom = np.zeros(shape, np.float32)
        th = np.arctan2(yy - cy, xx - cx)
        for _ in range(int(rng.integers(2, 5))):
            t0 = math.atan2(ch / 2.0 - cy, cw / 2.0 - cx) + rng.uniform(-0.5, 0.5) * max(fw, fh) / r_sun
            hgt = rng.uniform(15.0, 60.0)
            wid = rng.uniform(10.0, 50.0) / r_sun
            texture = 0.5 + 0.5 * _smooth_field(rng, shape, 6.0)
            prom += (rng.uniform(0.05, 0.2) * np.exp(-((th - t0) / wid) ** 2)
                     * np.exp(-np.clip(r - r_sun, 0, None) / hgt) * np.clip(texture, 0, 1.5))
        img = img + (sky + prom) * (1 - disc)
    return img.astype(np.float32), on


def _moon_canvas(rng, shape, spec: SimSpec, frame_hw) -> tuple[np.ndarray, np.ndarray]:
    ch, cw = shape
    fh, fw = frame_hw
    area = ch * cw / (640.0 * 480.0)
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    height = 0.6 * _bandpass_noise(rng, shape, 2.0, 30.0) + 6.0 * _smooth_field(rng, shape, 150.0)
    n_craters = int(60 * area)
    for _ in range(n_craters):
        R = _loguniform(rng, 3.0, 90.0)
        cx, cy = rng.uniform(0, cw), rng.uniform(0, ch)
        pad = int(2.2 * R) + 2
        y0, y1 = max(0, int(cy) - pad), min(ch, int(cy) + pad)
        x0, x1 = max(0, int(cx) - pad), min(cw, int(cx) + pad)
        if y1 <= y0 or x1 <= x0:
            continue
        sub = (slice(y0, y1), slice(x0, x1))
        rr = np.hypot(xx[sub] - cx, yy[sub] - cy) / R
        depth = 0.2 * R
        bowl = -depth * np.clip(1.0 - rr ** 2, 0, None)
        rim = 0.06 * R * np.exp(-((rr - 1.0) / 0.18) ** 2) + 0.02 * R * np.exp(-np.clip(rr - 1, 0, None) * 3) * (rr > 1)
        height[sub] += bowl + rim
    # albedo: maria (dark, smooth) and highlands
    maria = _smooth01((_smooth_field(rng, shape, 200.0) - 0.2) / 0.4)
    albedo = (1.0 - 0.4 * maria) * (1.0 + 0.05 * _bandpass_noise(rng, shape, 1.5, 10.0))
    # light: azimuth, elevation falling across the frame to the terminator
    az = rng.uniform(0, 2 * np.pi)
    lx, ly = math.cos(az), math.sin(az)
    along = (xx - cw / 2.0) * lx + (yy - ch / 2.0) * ly  # toward the sun
    span = max(fw, fh)
    # elevation at the frame's centre 6-35 deg, falling 15-40 deg per frame width toward the night side
    elev = np.deg2rad(np.clip(rng.uniform(6.0, 35.0) + along / span * rng.uniform(15.0, 40.0), -30, 70))
    gy, gx = np.gradient(cv2.GaussianBlur(height, (0, 0), 0.7))
    nz = 1.0 / np.sqrt(1 + gx ** 2 + gy ** 2)
    nx, ny = -gx * nz, -gy * nz
    cos_i = np.sin(elev) * nz + np.cos(elev) * (nx * lx + ny * ly)
    lit = np.clip(cos_i, 0, None)
    # cast shadows: rotate so the light comes from the left, running max along rows
    M = cv2.getRotationMatrix2D((cw / 2.0, ch / 2.0), math.degrees(az) + 180.0, 1.0)
    Mi = cv2.invertAffineTransform(M)
    h_rot = cv2.warpAffine(height, M, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    t_rot = np.tan(cv2.warpAffine(elev.astype(np.float32), M, (cw, ch), borderMode=cv2.BORDER_REPLICATE))
    t_rot = np.maximum(t_rot, 0.02)
    x_idx = np.arange(cw, dtype=np.float32)[None, :]
    # shadowed if some earlier point along the ray is higher than the light ray through this point
    key = h_rot + x_idx * t_rot
    shadow_rot = (np.maximum.accumulate(key, axis=1) - key) > 0.5
    shadow = cv2.warpAffine(shadow_rot.astype(np.float32), Mi, (cw, ch), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    lit = lit * (1.0 - 0.95 * np.clip(shadow, 0, 1))
    night = elev <= 0
    img = albedo * lit * (~night) + 0.005
    on = ~night
    if spec.limb:
        R = 4.0 * span
        a = rng.uniform(0, 2 * np.pi)
        dcx, dcy = cw / 2.0 - math.cos(a) * (R - 0.25 * span), ch / 2.0 - math.sin(a) * (R - 0.25 * span)
        r = np.hypot(xx - dcx, yy - dcy)
        disc = _smooth01((R + 1.0 - r) / 2.0)
        img = img * disc + 0.003
        on &= r < R
    return (0.9 * img).astype(np.float32), on


class _Renderer:
    """Per-frame target rendering: canvas sampled at the moved + warped coordinates, seeing blur,
    scaled to ADU; and exposure: shot + read noise, pedestal, quantisation."""

    def __init__(self, spec: SimSpec, rng: np.random.Generator):
        self.spec = spec
        H, W = spec.height, spec.width
        N = spec.frames
        # motion: random walk + jitter (target displacement in px, frame 0 at 0)
        steps = rng.normal(0.0, spec.drift_px, size=(N, 2)) if spec.drift_px > 0 else np.zeros((N, 2))
        steps[0] = 0
        walk = np.cumsum(steps, axis=0)
        jit = rng.normal(0.0, spec.jitter_px, size=(N, 2)) if spec.jitter_px > 0 else np.zeros((N, 2))
        jit -= jit[0]
        self.shifts = (walk + jit).astype(np.float32)
        # seeing: coarse random displacement fields, AR(1) in time
        cell = max(8.0, spec.seeing_scale)
        self.gh, self.gw = int(math.ceil(H / cell)) + 3, int(math.ceil(W / cell)) + 3
        fields = np.zeros((N, 2, self.gh, self.gw), np.float32)
        a = float(np.clip(spec.seeing_memory, 0.0, 0.99))
        prev = rng.standard_normal((2, self.gh, self.gw)).astype(np.float32)
        for i in range(N):
            new = rng.standard_normal((2, self.gh, self.gw)).astype(np.float32)
            prev = a * prev + math.sqrt(1 - a * a) * new if i else prev
            fields[i] = prev
        self.fields = fields
        # cubic interpolation of a unit-variance grid has a smaller rms; calibrate the scale once
        probe = cv2.resize(fields[0, 0], (W, H), interpolation=cv2.INTER_CUBIC)
        self.warp_gain = spec.seeing_px / max(float(probe.std()), 1e-6) if spec.seeing_px > 0 else 0.0
        self.blur = rng.uniform(*spec.seeing_blur, size=N) if spec.seeing_blur[1] > 0 else np.zeros(N)
        self.noise_seed = int(rng.integers(1 << 31))
        reach = float(np.abs(self.shifts).max()) + 4.0 * spec.seeing_px + 4.0 * float(self.blur.max()) + 8
        self.margin = M = int(math.ceil(reach))
        shape = (H + 2 * M, W + 2 * M)
        self.image: Optional[np.ndarray] = None  # (n, h, w) frames of a "image" background
        self.image_gain = 1.0
        canvas: Optional[np.ndarray]
        on: Optional[np.ndarray]
        self.canvas: Optional[np.ndarray]
        if spec.background == "sun":
            canvas, on = _sun_canvas(rng, shape, spec, (H, W))
        elif spec.background == "moon":
            canvas, on = _moon_canvas(rng, shape, spec, (H, W))
        elif spec.background == "flat":
            canvas, on = np.ones(shape, np.float32), np.ones(shape, bool)
        elif spec.background == "image":
            if spec.image is None:
                raise ValueError("background 'image' needs SimSpec.image")
            img = np.asarray(spec.image, dtype=np.float32)
            if img.ndim == 4:
                img = img.mean(axis=3)
            self.image = img if img.ndim == 3 else img[None]
            canvas = on = None
        else:
            raise ValueError(f"unknown background {spec.background!r} (choose from {', '.join(BACKGROUNDS)})")
        full = 255.0 if spec.bit_depth == 8 else 65535.0
        self.base = np.mgrid[0:H, 0:W][::-1].astype(np.float32)  # (x, y)
        if canvas is not None and on is not None:
            inner, inner_on = canvas[M:M + H, M:M + W], on[M:M + H, M:M + W]
            med = float(np.median(inner[inner_on])) if inner_on.any() else 1.0
            # the median at `level`, but the brightest features (plage, lit crater walls) below 92 %
            gain = min(spec.level * full / max(med, 1e-6), 0.92 * full / max(float(np.percentile(inner, 99.95)), 1e-6))
            self.canvas = canvas * np.float32(gain)
            self.on = on[M:M + H, M:M + W]
        else:
            assert self.image is not None
            self.canvas = None
            ref = self.image[0]
            hi = float(np.median(ref[ref > 0.2 * np.percentile(ref, 99.5)])) if (ref > 0).any() else 1.0
            self.image_gain = min(spec.level * full / max(hi, 1e-6),
                                  0.92 * full / max(float(np.percentile(ref, 99.95)), 1e-6))
            self.on = self._sample_image(0, *self._maps(0)) > 0.2 * spec.level * full
        self.full = full

    def _maps(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        H, W = self.spec.height, self.spec.width
        dx, dy = self.shifts[i]
        mx = self.base[0] - dx
        my = self.base[1] - dy
        if self.warp_gain:
            mx = mx + self.warp_gain * cv2.resize(self.fields[i, 0], (W, H), interpolation=cv2.INTER_CUBIC)
            my = my + self.warp_gain * cv2.resize(self.fields[i, 1], (W, H), interpolation=cv2.INTER_CUBIC)
        return mx, my

    def _sample_image(self, i: int, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
        assert self.image is not None
        img = self.image[i % len(self.image)]
        ih, iw = img.shape
        H, W = self.spec.height, self.spec.width
        ox, oy = (iw - W) / 2.0, (ih - H) / 2.0  # the frame sits at the image's centre
        out = cv2.remap(img, (mx + ox).astype(np.float32), (my + oy).astype(np.float32), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REFLECT101)
        return out * np.float32(self.image_gain)

    def signal(self, i: int) -> np.ndarray:
        """Dust-free noise-free signal of frame i in ADU (no pedestal), float32."""
        mx, my = self._maps(i)
        if self.canvas is None:
            out = self._sample_image(i, mx, my)
        else:
            M = self.margin
            out = cv2.remap(self.canvas, mx + M, my + M, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        if self.blur[i] > 0.25:
            out = cv2.GaussianBlur(out, (0, 0), float(self.blur[i]))
        return out

    def expose(self, i: int, signal: np.ndarray) -> np.ndarray:
        s = self.spec
        rng = np.random.default_rng([self.noise_seed, i])
        e_per_adu = s.full_well / self.full
        sig = np.maximum(signal, 0.0)
        sigma = np.sqrt(sig / e_per_adu + (s.read_noise / e_per_adu) ** 2)
        raw = sig + sigma * rng.standard_normal(sig.shape, dtype=np.float32) + np.float32(s.pedestal)
        dtype = np.uint8 if s.bit_depth == 8 else np.uint16
        return np.clip(np.rint(raw), 0, self.full).astype(dtype)


def simulate(spec: SimSpec = SimSpec()) -> Sim:
    """Render the dust and the moving target of ``spec`` (frames are made on first use of
    :attr:`Sim.frames` or :meth:`Sim.frame`; same seed, same data)."""
    if spec.bit_depth not in (8, 16):
        raise ValueError("bit_depth must be 8 or 16")
    if spec.width < 32 or spec.height < 32 or spec.frames < 1:
        raise ValueError("the frame must be at least 32x32 and the video at least 1 frame")
    rng = np.random.default_rng(spec.seed)
    dust_rng = np.random.default_rng([spec.seed if spec.dust_seed is None else spec.dust_seed, 1])
    flat, labels, specks = _make_dust(dust_rng, spec)
    r = _Renderer(spec, rng)
    for s in specks:
        sel = labels == s.label
        s.on_target = float(r.on[sel].mean()) if sel.any() else 0.0
    return Sim(spec=spec, flat=flat, labels=labels, specks=specks, shifts=r.shifts, _renderer=r)


def size_band(size: float) -> str:
    """Size class for per-class tables."""
    return "<8px" if size < 8 else "8-20px" if size < 20 else "20-45px" if size < 45 else ">=45px"


def depth_band(depth: float) -> str:
    return "<5%" if depth < 0.05 else "5-15%" if depth < 0.15 else "15-50%" if depth < 0.5 else ">=50%"

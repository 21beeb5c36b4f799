"""Synthetic dusty solar videos with exact ground truth (numpy/OpenCV only, no Qt).

``generate_demo`` renders a drifting, seeing-distorted solar surface (granulation, plage, a sunspot
with umbra and penumbra, dark pores and filaments of dust-like size as distractors, optionally the
limb on one side) and multiplies static sensor dust onto it (soft discs, donuts = out-of-focus
ring shadows, thin curved fibres) BEFORE photon/read noise; a camera pedestal is added after the
dust (dust attenuates the signal, not the offset).

Conventions (what the engine's acceptance tests judge against)::

    signal[i]  = level * sun[i]                    # dust-free, noise-free, no pedestal (ADU)
    clean[i]   = offset + signal[i]                # DemoData.clean: float32, WITH the pedestal
    frames[i]  = round(offset + noise(signal[i] * true_flat))   # uint16, clipped to [0, 65535]

so ``E[frames[i]] == offset + (clean[i] - offset) * true_flat`` up to rounding, and a perfect
calibration ``offset + (frames - offset) / true_flat`` gives back ``clean`` plus (amplified) noise.
``true_flat`` is exactly 1.0 outside the dust (darkening < 1e-4 at soft edges is snapped to 1.0),
``true_mask = true_flat < 1``. Dust is placed
on the quiet disc (never beyond the limb nor on the sunspot's path) so every speck is detectable in
principle; distractors (pores, filaments) may pass under dust as they do in real data.

Everything is deterministic for a given ``seed`` (and size, frames, difficulty, offset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import cv2
import numpy as np

from ..errors import InputError

#: Bump when the generator's output changes: ``ensure_demo`` regenerates cached demos then.
GENERATOR_VERSION = 3

DIFFICULTIES = ("easy", "normal", "hard")
#: Where the sky lies when the limb crosses the frame (``generate_demo(limb=...)``).
LIMB_SIDES = ("left", "right", "top", "bottom")

# Per-difficulty settings. Speck counts are for 640x480 and scale with the frame area.
_PRESETS: dict[str, dict[str, Any]] = {
    "easy": dict(n_specks=6, depth=(0.10, 0.30), faint_fraction=0.0, radius=(6.0, 16.0),
                 seeing_px=0.5, blur=(0.6, 1.1), drift=0.35, gain=6.0, read_noise=1.5, level=2400.0,
                 n_pores=3, n_filaments=1, granulation=0.04, limb=False, evolve=0.15),
    "normal": dict(n_specks=12, depth=(0.02, 0.30), faint_fraction=0.25, radius=(4.0, 16.0),
                   seeing_px=0.9, blur=(0.6, 1.7), drift=0.25, gain=4.0, read_noise=2.0, level=2400.0,
                   n_pores=8, n_filaments=3, granulation=0.045, limb=True, evolve=0.3),
    "hard": dict(n_specks=16, depth=(0.02, 0.25), faint_fraction=0.6, radius=(3.0, 14.0),
                 seeing_px=1.6, blur=(0.8, 2.5), drift=0.06, gain=2.5, read_noise=3.0, level=2000.0,
                 n_pores=16, n_filaments=6, granulation=0.055, limb=True, evolve=0.5),
}
_FAINT = (0.02, 0.05)
FPS = 30.0
#: 2026-06-21T10:00:00Z in SER ticks, the demo's first timestamp.
_T0_TICKS = 621355968000000000 + 1782036000 * 10_000_000


@dataclass
class DemoData:
    """A synthetic sequence and its truth. See the module docstring for the exact conventions.

    frames: uint16 (N, H, W) raw dusty data incl. pedestal and noise (12-bit values).
    clean: float32 (N, H, W) dust-free, noise-free signal INCLUDING the pedestal ``offset``.
    true_flat: float32 (H, W), exactly 1.0 outside the dust, in (0, 1] inside.
    true_mask: bool (H, W), ``true_flat < 1`` (darkening below 1e-4 is snapped to exactly 1.0).
    specks: one dict per dust speck: kind ("disc", "donut", "fibre"), centroid (x, y), radius
        (discs/donuts; outer radius in px) or length (fibres, px), depth (max darkening fraction),
        bbox (x0, y0, x1, y1) exclusive, plus shape details (inner_radius, centre_depth, width).
    offset: the camera pedestal in ADU.
    distractors: solar features that are not dust: kind ("sunspot", "pore", "filament"), centroid
        (x, y) in frame 0, radius/length, depth (darkening of the feature itself).
    shifts: float32 (N, 2) the sun's drift: displacement (dx, dy) in px of solar features in frame i
        relative to frame 0 (seeing wobble comes on top).
    params: the generator settings (difficulty, seed, level, gain, ...).
    """

    frames: np.ndarray
    clean: np.ndarray
    true_flat: np.ndarray
    true_mask: np.ndarray
    specks: list[dict[str, Any]]
    offset: int = 0
    distractors: list[dict[str, Any]] = field(default_factory=list)
    shifts: Optional[np.ndarray] = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def timestamps(self) -> np.ndarray:
        """int64 SER ticks, 30 frames per second."""
        n = self.frames.shape[0]
        return (_T0_TICKS + np.round(np.arange(n) * 1e7 / FPS)).astype(np.int64)

    def sky_distance(self) -> np.ndarray:
        """Truth for judging the limb: distance (px) to where ANY frame is off the disc (5x5 mean
        below 30 % of the disc level) in a region reaching the frame's edge — the sky, not a
        sunspot's umbra. +inf everywhere when no frame shows sky."""
        lvl = float(np.percentile(self.frames[0], 90))
        off = np.zeros(self.frames.shape[1:], bool)
        for f in self.frames:
            off |= cv2.blur(f.astype(np.float32), (5, 5)) < 0.3 * lvl
        _n, labels = cv2.connectedComponents(off.view(np.uint8), connectivity=8)
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        off = np.isin(labels, edge[edge > 0])
        if not off.any():
            return np.full(off.shape, np.inf, np.float32)
        return cv2.distanceTransform((~off).view(np.uint8), cv2.DIST_L2, 5)


# -- helpers -----------------------------------------------------------------------------------

def _smooth01(x: np.ndarray) -> np.ndarray:
    """Smoothstep with compact support: 0 for x <= 0, 1 for x >= 1."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _bandpass_noise(rng: np.random.Generator, shape: tuple[int, int], s1: float, s2: float) -> np.ndarray:
    """White noise band-passed by a difference of Gaussians, normalised to unit std."""
    w = rng.standard_normal(shape, dtype=np.float32)
    a = cv2.GaussianBlur(w, (0, 0), s1)
    b = cv2.GaussianBlur(w, (0, 0), s2) if s2 > 0 else 0.0
    out = a - b
    out /= max(float(out.std()), 1e-12)
    return out


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """A smooth random field of unit-ish std with correlation length ``cell`` px (cheap: low-res
    noise resized with cubic interpolation)."""
    h, w = shape
    gh, gw = max(2, int(math.ceil(h / cell)) + 2), max(2, int(math.ceil(w / cell)) + 2)
    small = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _curve(rng: np.random.Generator, length: float, curvature: float) -> np.ndarray:
    """Points (x, y) of a smooth curve of ``length`` px starting at 0 with random bending."""
    n = max(8, int(length))
    ang = rng.uniform(0, 2 * np.pi)
    bend = rng.normal(0, curvature, size=3)
    t = np.linspace(0, 1, n)
    heading = ang + bend[0] * t + bend[1] * t ** 2 + bend[2] * np.sin(np.pi * t)
    step = length / (n - 1)
    pts = np.zeros((n, 2))
    pts[1:, 0] = np.cumsum(np.cos(heading[:-1]) * step)
    pts[1:, 1] = np.cumsum(np.sin(heading[:-1]) * step)
    return pts


def _line_distance(pts: np.ndarray, pad: float) -> tuple[np.ndarray, int, int]:
    """Distance (px) from every pixel of a patch to the polyline ``pts``; returns (dist, x0, y0)
    where (x0, y0) is the patch origin in the coordinates of ``pts``."""
    x0 = int(math.floor(pts[:, 0].min() - pad))
    y0 = int(math.floor(pts[:, 1].min() - pad))
    x1 = int(math.ceil(pts[:, 0].max() + pad)) + 1
    y1 = int(math.ceil(pts[:, 1].max() + pad)) + 1
    sub = 4  # draw at 4x resolution so the distance is sub-pixel accurate
    canvas = np.full(((y1 - y0) * sub, (x1 - x0) * sub), 255, np.uint8)
    p = np.round((pts - [x0, y0]) * sub + (sub - 1) / 2.0).astype(np.int32)
    cv2.polylines(canvas, [p.reshape(-1, 1, 2)], False, 0, 1)
    dist = cv2.distanceTransform(canvas, cv2.DIST_L2, 5)
    dist = cv2.resize(dist, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA) / sub
    return dist.astype(np.float32), x0, y0


# -- the sun -----------------------------------------------------------------------------------

class _Sun:
    """The solar scene on a canvas larger than the frame (room for drift and warp)."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], p: dict[str, Any], frame_hw):
        ch, cw = shape
        self.shape = shape
        fh, fw = frame_hw
        self.g1 = _bandpass_noise(rng, shape, 1.3, 3.6) * p["granulation"]
        self.g2 = _bandpass_noise(rng, shape, 1.3, 3.6) * p["granulation"]
        base = 1.0 + 0.02 * _bandpass_noise(rng, shape, 10.0, 40.0)
        plage = _smooth_field(rng, shape, 60.0)
        base += 0.2 * _smooth01((plage - 0.5) / 1.6)
        texture_gain = np.ones(shape, np.float32)
        self.distractors: list[dict[str, Any]] = []
        yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)

        # limb: a huge disc whose edge crosses one side of the frame
        self.limb = None
        self.limb_side = None
        if p["limb"]:
            side = int(rng.integers(4))
            if p["limb"] in LIMB_SIDES:
                side = LIMB_SIDES.index(p["limb"])
            r_sun = 4.0 * max(fh, fw)
            cut = rng.uniform(0.10, 0.16) * (fw if side < 2 else fh)
            cx, cy = cw / 2.0, ch / 2.0
            # centre of the disc so that its edge lies `cut` px inside the frame from `side`
            if side == 0:      # sky on the left
                cx = (cw - fw) / 2.0 + cut + r_sun
            elif side == 1:    # sky on the right
                cx = (cw + fw) / 2.0 - cut - r_sun
            elif side == 2:    # sky at the top
                cy = (ch - fh) / 2.0 + cut + r_sun
            else:              # sky at the bottom
                cy = (ch + fh) / 2.0 - cut - r_sun
            r = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
            mu = np.sqrt(np.clip(1.0 - (r / r_sun) ** 2, 0.0, 1.0))
            disc = _smooth01((r_sun + 1.0 - r) / 2.0)
            ld = (1.0 - 0.6 * (1.0 - mu)) * disc
            sky = 0.012 + 0.05 * np.exp(-np.clip(r - r_sun, 0, None) / 12.0) * (1 - disc)
            base = base * ld + sky
            texture_gain *= disc
            self.limb = (cx, cy, r_sun)
            self.limb_side = LIMB_SIDES[side]

        # the sunspot: umbra + penumbra with radial fibrils
        ru = rng.uniform(7.0, 12.0)
        rp = ru * rng.uniform(2.0, 2.5)
        sx, sy = self._free_spot(rng, rp + 10)
        r = np.sqrt((xx - sx) ** 2 + (yy - sy) ** 2)
        th = np.arctan2(yy - sy, xx - sx)
        fib = 0.08 * np.sin(th * rng.integers(18, 30) + 3 * np.sin(th * 3)) * (r > ru)
        umbra = _smooth01((ru + 1.5 - r) / 3.0)
        pen = _smooth01((rp + 2.0 - r) / 4.0)
        spot = 1.0 - pen * (0.3 + fib) - umbra * 0.45
        base *= spot
        texture_gain *= 1.0 - 0.8 * pen
        self.distractors.append(dict(kind="sunspot", canvas=(sx, sy), radius=float(rp),
                                     umbra_radius=float(ru), depth=0.75))
        self.spot = (sx, sy, rp)

        # pores: small dark soft dots of dust size
        for _ in range(p["n_pores"]):
            rad = rng.uniform(1.5, 4.5)
            depth = rng.uniform(0.15, 0.45)
            px, py = self._free_spot(rng, 3 * rad)
            x0, y0 = int(px - 4 * rad), int(py - 4 * rad)
            x1, y1 = int(px + 4 * rad) + 2, int(py + 4 * rad) + 2
            x0, y0 = max(x0, 0), max(y0, 0)
            sub = (slice(y0, y1), slice(x0, x1))
            d2 = (xx[sub] - px) ** 2 + (yy[sub] - py) ** 2
            base[sub] *= 1.0 - depth * np.exp(-d2 / (2 * (rad / 1.4) ** 2))
            self.distractors.append(dict(kind="pore", canvas=(px, py), radius=float(rad), depth=float(depth)))

        # filaments: dark, thin, curved, fibre-like
        for _ in range(p["n_filaments"]):
            length = rng.uniform(30, 110)
            width = rng.uniform(1.0, 2.5)
            depth = rng.uniform(0.15, 0.35)
            pts = _curve(rng, length, 1.2)
            fx, fy = self._free_spot(rng, length)
            pts = pts - pts.mean(axis=0) + [fx, fy]
            dist, x0, y0 = _line_distance(pts, width + 6)
            prof = np.exp(-0.5 * (dist / width) ** 2)
            x0c, y0c = max(x0, 0), max(y0, 0)
            x1c, y1c = min(x0 + dist.shape[1], cw), min(y0 + dist.shape[0], ch)
            if x1c > x0c and y1c > y0c:
                base[y0c:y1c, x0c:x1c] *= 1.0 - depth * prof[y0c - y0:y1c - y0, x0c - x0:x1c - x0]
            self.distractors.append(dict(kind="filament", canvas=tuple(pts.mean(axis=0)), length=float(length),
                                         width=float(width), depth=float(depth)))

        self.base = base.astype(np.float32)
        self.texture_gain = texture_gain.astype(np.float32)

    def _free_spot(self, rng, margin):
        ch, cw = self.shape
        margin = min(margin, 0.45 * min(ch, cw))
        for _ in range(200):
            x = rng.uniform(margin, cw - margin)
            y = rng.uniform(margin, ch - margin)
            if self.limb is None:
                return x, y
            cx, cy, rs = self.limb
            if math.hypot(x - cx, y - cy) < rs - margin - 5:
                return x, y
        return cw / 2.0, ch / 2.0

    def frame(self, phase: float) -> np.ndarray:
        tex = self.g1 * math.cos(phase) + self.g2 * math.sin(phase)
        return self.base * (1.0 + tex * self.texture_gain)


# -- dust --------------------------------------------------------------------------------------

def _render_speck(kind: str, rng: np.random.Generator, rad: float, depth: float):
    """A speck's darkening profile on a small patch: returns (dark in [0, depth], cx, cy, info)
    with (cx, cy) the patch coordinates of its anchor point."""
    info: dict[str, Any] = {}
    if kind == "fibre":
        length = rng.uniform(2.5, 6.0) * rad
        width = rng.uniform(0.6, 1.4)
        pts = _curve(rng, length, 1.5)
        dist, x0, y0 = _line_distance(pts, width + 3)
        e = 0.6
        prof = _smooth01((width + e - dist) / (2 * e))
        info.update(length=float(length), width=float(2 * width))
        return (depth * prof).astype(np.float32), -x0, -y0, info
    half = int(math.ceil(rad + 3))
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
    r = np.sqrt(xx ** 2 + yy ** 2)
    e = rng.uniform(0.5, 1.5) if kind == "disc" else rng.uniform(0.5, 1.0)
    outer = _smooth01((rad + e - r) / (2 * e))
    if kind == "disc":
        prof = outer
        info.update(radius=float(rad))
    else:  # donut: dark ring, lighter centre
        inner = rad * rng.uniform(0.4, 0.65)
        centre = rng.uniform(0.25, 0.55)
        ring = _smooth01((r - (inner - e)) / (2 * e))
        prof = outer * (centre + (1.0 - centre) * ring)
        info.update(radius=float(rad), inner_radius=float(inner), centre_depth=float(depth * centre))
    return (depth * prof).astype(np.float32), half, half, info


def _place_dust(rng, p, h, w, allowed: np.ndarray, n_specks: int):
    flat = np.ones((h, w), np.float32)
    occupied = np.zeros((h, w), bool)
    specks: list[dict[str, Any]] = []
    kinds = ("disc", "donut", "fibre")
    for k in range(n_specks):
        kind = kinds[int(rng.choice(3, p=[0.35, 0.4, 0.25]))]
        if rng.uniform() < p["faint_fraction"]:
            lo, hi = _FAINT
        else:
            lo, hi = p["depth"]
        depth = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        rad = float(rng.uniform(*p["radius"]))
        if kind == "donut":
            rad = max(rad, 5.0)
        dark, ax, ay, info = _render_speck(kind, rng, rad, depth)
        ph, pw = dark.shape
        for _ in range(100):
            x0 = int(rng.integers(2, max(3, w - pw - 2)))
            y0 = int(rng.integers(2, max(3, h - ph - 2)))
            if x0 + pw > w - 2 or y0 + ph > h - 2:
                continue
            sl = (slice(y0, y0 + ph), slice(x0, x0 + pw))
            if occupied[sl].any() or not allowed[sl].all():
                continue
            break
        else:
            continue
        flat[sl] *= 1.0 - dark
        occupied[max(0, y0 - 4):y0 + ph + 4, max(0, x0 - 4):x0 + pw + 4] = True
        ys, xs = np.nonzero(dark > 0)
        wgt = dark[ys, xs].astype(np.float64)
        cx = float((xs * wgt).sum() / wgt.sum() + x0)
        cy = float((ys * wgt).sum() / wgt.sum() + y0)
        speck = dict(id=len(specks), kind=kind, centroid=(round(cx, 3), round(cy, 3)),
                     depth=round(float(dark.max()), 5), bbox=(x0 + int(xs.min()), y0 + int(ys.min()),
                                                               x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1))
        speck.update({k2: round(v, 4) if isinstance(v, float) else v for k2, v in info.items()})
        specks.append(speck)
    return flat, specks


# -- the generator -----------------------------------------------------------------------------

def generate_demo(frames: int = 40, width: int = 640, height: int = 480, seed: int = 1, offset: int = 0,
                  difficulty: str = "normal", limb: Optional[bool | str] = None) -> DemoData:
    """Render a synthetic dusty solar sequence and its truth (see the module docstring).

    ``difficulty``: "easy" (few big dark specks, mild seeing), "normal", "hard" (mostly faint 2-5%
    specks, strong seeing, more pores and filaments, more noise, slow drift). ``limb`` overrides
    whether the solar limb crosses one side (default: normal and hard; the side is drawn from the
    seed), or names the side the sky lies on: one of ``LIMB_SIDES`` ("left", "right", "top",
    "bottom"); the random draws stay the same, so only the limb's side changes."""
    if difficulty not in _PRESETS:
        raise InputError(f"unknown difficulty '{difficulty}' (choose from {', '.join(DIFFICULTIES)})")
    frames, width, height, offset = int(frames), int(width), int(height), int(offset)
    if frames < 1 or width < 64 or height < 64:
        raise InputError(f"demo needs at least 1 frame and 64x64 pixels, got {frames} frames of {width}x{height}")
    if width * height * frames > 400_000_000:
        raise InputError(f"demo of {frames} frames of {width}x{height} is too large (max 4e8 pixels)")
    if not 0 <= offset <= 60000:
        raise InputError(f"demo offset must be 0..60000 ADU, got {offset}")
    p = dict(_PRESETS[difficulty])
    if isinstance(limb, str):
        if limb not in LIMB_SIDES:
            raise InputError(f"unknown limb side '{limb}' (choose from {', '.join(LIMB_SIDES)})")
        p["limb"] = limb
    elif limb is not None:
        p["limb"] = bool(limb)
    rng = np.random.default_rng([int(seed), 0xD05])

    # drift: slow linear motion plus a small random walk, sub-pixel per frame
    ang = rng.uniform(0, 2 * np.pi)
    steps = np.zeros((frames, 2))
    if frames > 1:
        steps[1:] = p["drift"] * np.array([math.cos(ang), math.sin(ang)]) + rng.normal(0, 0.04, (frames - 1, 2))
    shifts = np.cumsum(steps, axis=0)
    reach = float(np.abs(shifts).max()) if frames > 1 else 0.0
    margin = int(math.ceil(reach + 4 * p["seeing_px"] + 16))
    ch, cw = height + 2 * margin, width + 2 * margin
    sun = _Sun(rng, (ch, cw), p, (height, width))

    # sensor coordinates of a canvas point in frame i: canvas - margin - shift_i
    def to_sensor(pt, i=0):
        return (pt[0] - margin - shifts[i, 0], pt[1] - margin - shifts[i, 1])

    # where dust may go: on the quiet disc in every frame (not beyond the limb, not on the spot's path)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    allowed = np.ones((height, width), bool)
    for i in (0, frames - 1):
        if sun.limb is not None:
            lx, ly = to_sensor(sun.limb[:2], i)
            allowed &= np.hypot(xx - lx, yy - ly) < sun.limb[2] - 12
        sx, sy = to_sensor(sun.spot[:2], i)
        allowed &= np.hypot(xx - sx, yy - sy) > sun.spot[2] + 8
    area_scale = width * height / (640.0 * 480.0)
    n_specks = max(1, int(round(p["n_specks"] * min(area_scale, 8.0) ** 0.75)))
    true_flat, specks = _place_dust(rng, p, height, width, allowed, n_specks)
    true_flat[true_flat >= 1.0 - 1e-4] = 1.0  # negligible soft-edge tails become exactly 1.0
    true_mask = true_flat < 1.0

    distractors = []
    for d in sun.distractors:
        d = dict(d)
        c = d.pop("canvas")
        x, y = to_sensor(c, 0)
        d["centroid"] = (round(float(x), 3), round(float(y), 3))
        distractors.append(d)

    # per-frame rendering: evolve, warp (drift + seeing), blur, dust, noise, pedestal
    data = np.empty((frames, height, width), np.uint16)
    clean = np.empty((frames, height, width), np.float32)
    level = float(p["level"])
    cell = 40.0
    # render each frame with a border of `eb` px so the seeing blur sees real sun at the edges
    eb = 8
    gx, gy = np.meshgrid(np.arange(-eb, width + eb, dtype=np.float32), np.arange(-eb, height + eb, dtype=np.float32))
    lo_b, hi_b = p["blur"]
    for i in range(frames):
        phase = p["evolve"] * (math.pi / 2) * (i / max(frames - 1, 1))
        scene = sun.frame(phase)
        wx = _smooth_field(rng, gx.shape, cell) * p["seeing_px"]
        wy = _smooth_field(rng, gx.shape, cell) * p["seeing_px"]
        mx = gx + float(margin + shifts[i, 0]) + wx
        my = gy + float(margin + shifts[i, 1]) + wy
        img = cv2.remap(scene, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        sigma = rng.uniform(lo_b, hi_b)
        img = cv2.GaussianBlur(img, (0, 0), sigma)[eb:eb + height, eb:eb + width]
        signal = img * level
        np.add(signal, offset, out=clean[i])
        dusty = signal * true_flat
        noise_sd = np.sqrt(np.maximum(dusty, 0) / p["gain"] + p["read_noise"] ** 2)
        dusty += noise_sd * rng.standard_normal((height, width), dtype=np.float32)
        dusty += offset
        np.clip(np.rint(dusty), 0, 65535, out=dusty)
        data[i] = dusty
    params = dict(generator_version=GENERATOR_VERSION, difficulty=difficulty, seed=int(seed), frames=frames,
                  width=width, height=height, offset=offset, level=level, gain=p["gain"],
                  read_noise=p["read_noise"], drift_px_per_frame=p["drift"], seeing_px=p["seeing_px"],
                  blur_sigma=list(p["blur"]), limb=bool(sun.limb is not None), limb_side=sun.limb_side,
                  bit_depth=12 if int(data.max(initial=0)) < 4096 else 16, fps=FPS,
                  clean_definition="clean = offset + dust-free noise-free signal (ADU); "
                                   "frames ~= offset + (clean - offset) * true_flat + noise")
    return DemoData(frames=data, clean=clean, true_flat=true_flat, true_mask=true_mask, specks=specks,
                    offset=offset, distractors=distractors, shifts=(-shifts).astype(np.float32), params=params)


# -- files -------------------------------------------------------------------------------------

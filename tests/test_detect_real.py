"""The offline detector on real material (``<repo root>/../shared/real-data``; skipped when absent).

Acceptance of issue 10 on the real dusty H-alpha frame (single image, default sensitivity): every
opaque clump a person sees is covered, the solar structure the README lists is never touched,
Gemini's specks are found, the mask stays close to the dust (area, blob size), and the faint ringed
specks Gemini misses are found too."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from aiflat_gui.core.detect import compute_scores

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real-data"
FRAME = REAL / "solar-halpha-median.jpg"
GEMINI = REAL / "solar-halpha-median.gemini-mask.jpg"

# README of real-data: what a person sees (x, y)
CLUMPS = [(1270, 248), (1362, 740), (1773, 924), (859, 859), (1186, 1041), (261, 450), (1643, 760),
          (1349, 570), (1167, 997), (1450, 313)]
SOLAR_STRICT = [(766, 694), (888, 734), (680, 749), (778, 779)]
FAINT_RINGED = [(969, 655), (908, 657), (649, 710), (754, 536), (1741, 134), (1785, 212), (1546, 251),
                (1595, 361), (297, 667), (376, 870)]

pytestmark = pytest.mark.skipif(not FRAME.exists() or not GEMINI.exists(), reason="no ../shared/real-data")


def clump_core(img: np.ndarray, x: int, y: int, fraction: float = 0.6, radius: int = 30) -> np.ndarray:
    """The dark core of the clump listed at (x, y), defined objectively: the pixels within
    ``radius`` px of the point that are darker than ``fraction`` of the local background (the median
    of the ring 38-50 px from the point, outside any clump listed) and connected (8-neighbours) to
    such a pixel within 6 px of the point."""
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(xx - x, yy - y)
    bg = float(np.median(img[(d >= radius + 8) & (d < radius + 20)]))
    dark = (d <= radius) & (img < fraction * bg)
    n, labels = cv2.connectedComponents(dark.view(np.uint8), connectivity=8)
    ids = np.unique(labels[(d <= 6) & dark])
    ids = ids[ids > 0]
    return np.isin(labels, ids)


@pytest.fixture(scope="module")
def real():
    img = cv2.imread(str(FRAME), cv2.IMREAD_GRAYSCALE)
    gem = cv2.imread(str(GEMINI), cv2.IMREAD_GRAYSCALE) > 30
    sm = compute_scores(img.astype(np.float32))
    return img, gem, sm, sm.mask(0.5)


def test_every_opaque_clump_is_covered(real):
    img, _, sm, mask = real
    assert sm.info["mode"] == "single image"
    for x, y in CLUMPS:
        core = clump_core(img, x, y)
        assert core.sum() >= 30, (x, y)
        assert mask[core].mean() >= 0.5, ((x, y), mask[core].mean())


def test_solar_structure_is_never_marked(real):
    img, _, _, mask = real
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w]
    for x, y in SOLAR_STRICT + [(379, 686)]:
        assert not (mask & (np.hypot(xx - x, yy - y) <= 3)).any(), (x, y)
    # the dark solar patch around (1646, 360) holds a ringed dust speck 6 px below the point (its
    # core at (1646, 366), which Gemini marks too): whatever is marked near the point is that
    # speck, a small blob centred on it, not the patch
    n, labels, stats, cent = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    near = np.unique(labels[(np.hypot(xx - 1646, yy - 360) <= 3) & mask])
    for i in near:
        assert stats[i, cv2.CC_STAT_AREA] < 300 and np.hypot(*(cent[i] - (1646, 366))) < 4, stats[i]


def test_gemini_specks_found_and_mask_stays_on_dust(real):
    _, gem, _, mask = real
    n, labels, stats, _ = cv2.connectedComponentsWithStats(gem.view(np.uint8), connectivity=8)
    specks = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= 4]
    hit = np.zeros(n, bool)
    hit[np.unique(labels[mask])] = True
    found = sum(hit[i] for i in specks)
    assert len(specks) > 200 and found >= 0.95 * len(specks), (found, len(specks))
    assert mask.sum() <= 2.5 * gem.sum(), mask.sum() / gem.sum()
    m, _, mstats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    assert mstats[1:, cv2.CC_STAT_AREA].max() <= 2500


def test_faint_ringed_specks_gemini_misses_are_found(real):
    _, gem, _, mask = real
    for x, y in FAINT_RINGED:
        assert mask[y - 3:y + 4, x - 3:x + 4].any(), (x, y)


MOON = REAL / "moon-45frames.avi"


@pytest.mark.skipif(not MOON.exists(), reason="no ../shared/real-data/moon-45frames.avi")
def test_lunar_video_craters_and_rims_are_not_dust(moon_scan):
    # a real lunar capture (DIVX colour, 45 frames, the Moon drifts ~20 px, real seeing) with
    # little or no visible dust: the earlier detector reported 287 "specks" on crater rims,
    # ridges and the limb. Every candidate is now judged by physics: deep enough to be seen
    # in 8-bit compressed data, and static in sensor coordinates (the same darkening in both
    # halves of the frames split along the drift).
    sm = moon_scan.scores  # compute_scores(median reference, video), shared (tests/conftest.py)
    assert sm.info["mode"] == "sequence" and sm.info["drift_px"] > 5
    for s in (0.5, 1.0):
        n = cv2.connectedComponents(sm.mask(s).view(np.uint8), connectivity=8)[0] - 1
        assert n <= 3, (s, n)
    # the deepest candidate is the small crater at (1147, 454), dark floor and bright wall: when
    # it is deep enough to be judged by the halves (it depends on how the frames are grouped) it
    # moves with the Moon, so its halves disagree
    crater = [r for r in sm.info["judged"] if abs(r["x"] - 1147) < 10 and abs(r["y"] - 454) < 10]
    assert all(not r["static"] for r in crater), crater

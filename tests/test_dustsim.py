"""The physics test-data generator: dust is static and multiplicative in sensor coordinates, the
target moves, the truth is exact and the requested ranges are honoured."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from aiflat_gui.core.dustsim import (HELDOUT_SEEDS, KINDS, SNAP, TUNING_SEEDS, SimSpec, depth_band, simulate,
                                     size_band)

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "real-data"
SMALL = dict(width=320, height=240, frames=12)


def _quiet(**kw):
    """No noise: the frames are the signal times the flat, rounded."""
    return SimSpec(**{**SMALL, "full_well": 1e16, "read_noise": 0.0, **kw})


def test_seeds_are_split():
    assert TUNING_SEEDS and HELDOUT_SEEDS
    assert not set(TUNING_SEEDS) & set(HELDOUT_SEEDS)


@pytest.mark.parametrize("background", ["sun", "moon"])
def test_dust_is_static_and_multiplicative_in_sensor_coordinates(background):
    sim = simulate(_quiet(background=background, seed=TUNING_SEEDS[0], seeing_px=2.0, drift_px=0.5, pedestal=100))
    assert sim.frames.dtype == np.uint16 and sim.frames.shape == (12, 240, 320)
    m = sim.mask
    assert m.any()
    for i in (0, 5, 11):
        clean = sim.clean(i) - 100.0
        raw = sim.frame(i).astype(np.float64) - 100.0
        ok = m & (clean > 200)
        # raw = clean * flat (pedestal excluded) up to rounding, in every frame, at the same pixels
        np.testing.assert_allclose(raw[ok], clean[ok] * sim.flat[ok], atol=0.51)
        away = ~m & (clean > 0)
        np.testing.assert_allclose(raw[away], clean[away], atol=0.51)


def test_the_target_moves_and_the_dust_does_not():
    sim = simulate(SimSpec(**{**SMALL, "frames": 20}, seed=TUNING_SEEDS[1], drift_px=1.0, jitter_px=0.0,
                           seeing_px=0.0))
    a, b = sim.clean(0).astype(np.float64), sim.clean(19).astype(np.float64)
    (dx, dy), _ = cv2.phaseCorrelate(a, b, cv2.createHanningWindow((320, 240), cv2.CV_64F))
    np.testing.assert_allclose([dx, dy], sim.shifts[19], atol=0.3)
    assert np.hypot(*sim.shifts[19]) > 1.0
    # the ratio raw / clean at the dust is the same in the first and the last frame
    m = sim.mask & (sim.flat < 0.8)
    r0 = sim.frame(0)[m] / sim.clean(0)[m]
    r1 = sim.frame(19)[m] / sim.clean(19)[m]
    assert np.median(np.abs(r0 - r1)) < 0.03


def test_seeing_warps_locally_by_the_requested_amount():
    sim = simulate(_quiet(seed=TUNING_SEEDS[2], drift_px=0.0, jitter_px=0.0, seeing_px=3.0))
    r = sim._renderer
    mx, my = r._maps(3)
    d = np.hypot(mx - r.base[0], my - r.base[1])
    assert 2.0 < float(np.sqrt((d ** 2).mean())) < 6.0
    # different frames warp differently
    mx2, _ = r._maps(7)
    assert np.abs(mx2 - mx).max() > 1.0


def test_attenuation_is_exactly_one_away_from_dust_and_truth_is_consistent():
    sim = simulate(SimSpec(**SMALL, seed=TUNING_SEEDS[3]))
    f = sim.flat
    assert f.dtype == np.float32 and f.max() == 1.0 and f.min() > 0.0
    assert np.all(f[sim.labels == 0] == 1.0)
    assert np.all((sim.labels > 0) == sim.mask)
    assert np.all(1.0 - f[sim.mask] >= SNAP)
    far = np.ones(f.shape, bool)
    for s in sim.specks:
        x0, y0, x1, y1 = s.bbox
        far[y0:y1, x0:x1] = False
        assert s.area == int((sim.labels == s.label).sum()) > 0
    assert np.all(f[far] == 1.0)


def test_kinds_sizes_and_depths_honour_the_spec():
    spec = SimSpec(width=640, height=480, frames=2, seed=TUNING_SEEDS[4], n_disc=8, n_donut=6, n_clump=6, n_fibre=4,
                   disc_size=(20, 40), disc_depth=(0.03, 0.06), clump_depth=(0.6, 0.9))
    sim = simulate(spec)
    kinds = {k: [s for s in sim.specks if s.kind == k] for k in KINDS}
    assert all(len(kinds[k]) >= 3 for k in KINDS), {k: len(v) for k, v in kinds.items()}
    for s in sim.specks:
        lo, hi = getattr(spec, f"{s.kind}_size")
        assert lo <= s.size <= hi
        dlo, dhi = getattr(spec, f"{s.kind}_depth")
        assert dlo * 0.999 <= s.depth <= dhi * 1.001, (s.kind, s.depth)
        # the measured darkening in the truth flat matches the speck's depth
        assert abs((1.0 - sim.flat[sim.labels == s.label].min()) - s.depth) < 0.02
    for s in kinds["disc"]:
        # an aperture shadow: the darkened area is about a disc of that diameter
        eq = 2 * np.sqrt(s.area / np.pi)
        assert 0.7 * s.size < eq < 1.6 * s.size + 4
    for s in kinds["donut"]:  # the centre of a donut is lighter than its ring
        cx, cy = int(round(s.x)), int(round(s.y))
        if s.size >= 20:
            assert 1.0 - sim.flat[cy, cx] < 0.6 * s.depth
    assert size_band(3) == "<8px" and depth_band(0.9) == ">=50%"


def test_deterministic_and_seed_dependent():
    a = simulate(SimSpec(**SMALL, seed=TUNING_SEEDS[5]))
    b = simulate(SimSpec(**SMALL, seed=TUNING_SEEDS[5]))
    c = simulate(SimSpec(**SMALL, seed=TUNING_SEEDS[6]))
    np.testing.assert_array_equal(a.frame(4), b.frame(4))
    np.testing.assert_array_equal(a.frame(4), a.frame(4))
    np.testing.assert_array_equal(a.flat, b.flat)
    assert not np.array_equal(a.flat, c.flat)
    np.testing.assert_array_equal(a.frames[7], b.frame(7))


def test_eight_bit_and_pedestal():
    sim = simulate(SimSpec(**SMALL, seed=TUNING_SEEDS[0], bit_depth=8, pedestal=16, background="moon", limb=True))
    assert sim.frames.dtype == np.uint8
    # the night side / sky sits at the pedestal, not at 0
    sky = ~sim._renderer.on
    assert sky.any()
    assert 14 <= np.median(sim.frame(0)[sky]) <= 20
    assert np.percentile(sim.frames, 99.9) < 255


def test_moon_has_terminator_shadows_and_craters():
    sim = simulate(SimSpec(width=480, height=360, frames=2, seed=TUNING_SEEDS[1], background="moon"))
    c = sim.clean(0)
    lvl = np.median(c[c > 0.05 * c.max()])
    dark = (c < 0.1 * lvl).mean()
    assert 0.02 < dark < 0.9  # shadows and/or the night side
    assert np.std(c[c > 0.3 * lvl]) / lvl > 0.1  # rough terrain


def test_limb_with_prominences():
    sim = simulate(SimSpec(width=480, height=360, frames=2, seed=TUNING_SEEDS[2], limb=True))
    c = sim.clean(0)
    lvl = np.median(c[sim._renderer.on])
    sky = ~sim._renderer.on
    assert 0.05 < sky.mean() < 0.5
    assert c[sky].max() > 0.04 * lvl  # something bright above the limb


def test_real_image_background_moves_under_static_dust():
    path = REAL / "solar-halpha-median.jpg"
    if not path.exists():
        pytest.skip("real data not present")
    from aiflat_gui.io.single import read_image

    img = read_image(path)
    sim = simulate(SimSpec(**SMALL, seed=TUNING_SEEDS[0], background="image", image=img, drift_px=1.0,
                           seeing_px=0.0, jitter_px=0.0, bit_depth=8))
    assert sim.frames.dtype == np.uint8
    a, b = sim.clean(0).astype(np.float64), sim.clean(11).astype(np.float64)
    (dx, dy), _ = cv2.phaseCorrelate(a, b, cv2.createHanningWindow((320, 240), cv2.CV_64F))
    np.testing.assert_allclose([dx, dy], sim.shifts[11], atol=0.5)
    assert 0.3 * 255 < np.median(sim.frames[0]) < 0.9 * 255


def test_large_frames_render_lazily():
    sim = simulate(SimSpec(width=1920, height=1200, frames=200, seed=HELDOUT_SEEDS[0], n_disc=1, n_donut=1,
                           n_clump=1, n_fibre=1))
    f = sim.frame(150)
    assert f.shape == (1200, 1920) and f.dtype == np.uint16
    assert sim._frames is None  # nothing else was rendered or kept

"""Issue 10's acceptance for the verifier: masks that over-mark, on physics-made moving videos
(core.dustsim, tuning seeds), and real data (../shared/real-data).

* the true mask plus 25 discs on dust-free sun, and a Gemini-style mask that also covers the
  sunspot umbra: after the verify step not one pixel away from the dust changes (bit-exact), and
  >= 95 % of the dust's darkening is still removed;
* the real lunar video (little or no dust): the offline detector's mask, verified, gives a flat of
  exactly 1.0 everywhere except on specks the video shows to be dust;
* the real single H-alpha frame: every speck unverified, nothing refused, and the user is told.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import pytest

from aiflat_gui.core.calibrate import calibrate_array
from aiflat_gui.core.dustsim import TUNING_SEEDS, SimSpec, simulate
from aiflat_gui.core.flat import synthesize_flat
from aiflat_gui.core.mask import grow
from aiflat_gui.core.reference import compute_reference
from aiflat_gui.core.verify import DUST, NOT_DUST, UNVERIFIED
from aiflat_gui.io import ArraySequence
from aiflat_gui.pipeline import FlatParams, build_flat, verify_step

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real-data"
GROW = 2
SPEC = dict(seeing_px=0.5)  # seeing the flat itself handles (issue 10 item 4 is the flat's own work)


@functools.lru_cache(maxsize=None)
def _sim(seed):
    """The physics-made video of a tuning seed, rendered once for the tests that start from it
    (read-only: a test that changed it in place would fail, not mislead the next)."""
    sim = simulate(SimSpec(seed=seed, **SPEC))
    frames = sim.frames
    frames.flags.writeable = False
    return sim, frames


@functools.lru_cache(maxsize=None)
def _clean(seed):
    """Its dust-free, noise-free frames (``sim.clean(i)`` for every frame), read-only."""
    sim, _ = _sim(seed)
    clean = np.stack([sim.clean(i) for i in range(sim.n_frames)])
    clean.flags.writeable = False
    return clean


@pytest.fixture(scope="module", autouse=True)
def _free_the_videos():
    yield
    _sim.cache_clear()
    _clean.cache_clear()


def _extra_discs(true, n, seed, avoid=None):
    """``n`` discs (radius 3-10 px) on dust-free target, at least 12 px from any dust."""
    H, W = true.shape
    rng = np.random.default_rng(seed)
    busy = true | (avoid if avoid is not None else False)
    far = cv2.distanceTransform((~busy).view(np.uint8), cv2.DIST_L2, 5)
    yy, xx = np.mgrid[0:H, 0:W]
    extra = np.zeros_like(true)
    while extra.sum() == 0 or len(np.unique(cv2.connectedComponents(extra.view(np.uint8))[1])) - 1 < n:
        r = rng.uniform(3, 10)
        x, y = rng.uniform(15, W - 15), rng.uniform(15, H - 15)
        if far[int(y), int(x)] < r + 12:
            continue
        d = np.hypot(xx - x, yy - y) <= r
        if (cv2.dilate(extra.view(np.uint8), np.ones((11, 11), np.uint8)).astype(bool) & d).any():
            continue
        extra |= d
    return extra


def _umbra(sim, true):
    """The sunspot's umbra as Gemini would outline it: a disc at the darkest point of the dust-free
    target (median over the video), away from the dust."""
    med = np.median(_clean(sim.spec.seed)[::4], axis=0)
    blurred = cv2.GaussianBlur(med, (0, 0), 3.0)
    far = cv2.distanceTransform((~true).view(np.uint8), cv2.DIST_L2, 5)
    H, W = true.shape
    ok = far > 25
    ok[:20], ok[-20:], ok[:, :20], ok[:, -20:] = False, False, False, False
    y, x = np.unravel_index(int(np.argmin(np.where(ok, blurred, np.inf))), blurred.shape)
    level = float(np.median(med))
    assert blurred[y, x] < 0.75 * level, "no sunspot in this scene"
    yy, xx = np.mgrid[0:H, 0:W]
    return np.hypot(xx - x, yy - y) <= 8


def _run(sim, frames, mask):
    seq = ArraySequence(frames)
    outcome = verify_step(mask, seq)
    ref = compute_reference(seq)
    flat = build_flat(seq, ref, outcome.mask, FlatParams(grow=GROW), measured=outcome.measured)
    full = 255.0 if frames.dtype == np.uint8 else 65535.0
    cal = calibrate_array(frames, flat, limits=(0.0, full))
    true = sim.mask
    clean = _clean(sim.spec.seed)
    before = (clean[:, true] - frames[:, true].astype(np.float64)).mean()
    after = (clean[:, true] - cal[:, true].astype(np.float64)).mean()
    changed = (cal != frames).any(axis=0)
    return outcome, 1.0 - after / before, changed


@pytest.mark.parametrize("seed", TUNING_SEEDS[:2])
def test_true_mask_plus_25_discs_on_clean_sun(seed):
    sim, frames = _sim(seed)
    true = sim.mask
    extra = _extra_discs(true, 25, seed)
    outcome, removed, changed = _run(sim, frames, true | extra)
    ver = outcome.verification
    on_extra = [c for c in ver.checks if extra[c.anchor[1], c.anchor[0]]]
    assert len(on_extra) == 25
    assert all(c.verdict != DUST for c in on_extra), [c.describe() for c in on_extra if c.verdict == DUST]
    # not one pixel away from the dust changes (the flat's 2 px margin around real dust is the
    # same with the true mask alone), and no pixel of the 25 discs
    assert int((changed & ~grow(true, GROW)).sum()) == 0
    assert int((changed & extra).sum()) == 0
    assert removed >= 0.95, removed


@pytest.mark.parametrize("seed", TUNING_SEEDS[:2])
def test_gemini_style_mask_with_the_sunspot_umbra(seed):
    sim, frames = _sim(seed)
    true = sim.mask
    umbra = _umbra(sim, true)
    mask = true | umbra
    outcome, removed, changed = _run(sim, frames, mask)
    ver = outcome.verification
    spot = [c for c in ver.checks if umbra[c.anchor[1], c.anchor[0]]]
    assert len(spot) == 1 and spot[0].verdict in (NOT_DUST, UNVERIFIED), spot[0].describe()
    assert spot[0] in outcome.refused
    assert int((changed & umbra).sum()) == 0
    assert int((changed & ~grow(true, GROW)).sum()) == 0
    assert removed >= 0.95, removed


# -- real data ------------------------------------------------------------------------------------

needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real-data not present")


@needs_real
def test_real_lunar_video_flat_is_one_except_on_verified_dust(moon_scan):
    from aiflat_gui.io import open_sequence

    # the reference and LocalProvider().find_mask(reference, video), shared (tests/conftest.py)
    ref = moon_scan.reference
    mask = np.asarray(moon_scan.local.mask, bool)
    with open_sequence(moon_scan.path) as seq:
        outcome = verify_step(mask, seq)
        flat = synthesize_flat(ref, outcome.mask, method="auto", sequence=seq, grow=GROW, color=seq.color)
    ver = outcome.verification
    if not ver.checks:  # the detector marked nothing: nothing to verify, the flat is 1.0 everywhere
        assert np.all(flat == 1.0)
        return
    assert not ver.note and ver.motion > 5
    dust = np.zeros(mask.shape, bool)
    n, lab = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    for c in ver.checks:
        if c.verdict == DUST:
            dust |= lab == lab[c.anchor[1], c.anchor[0]]
    lum = flat if flat.ndim == 2 else flat.min(axis=2)
    assert np.all(lum[~grow(dust, GROW)] == 1.0)  # exactly 1.0 except on specks shown to be dust
    assert dust.sum() <= mask.sum()
    # every kept speck is a measured static shadow
    for c in ver.checks:
        if c.verdict == DUST:
            assert c.depth >= 3 * c.depth_err


@needs_real
def test_real_single_image_every_speck_unverified_nothing_refused(capsys, tmp_path):
    from aiflat_gui.cli import main
    from aiflat_gui.io.masks import load_mask
    from aiflat_gui.io import open_sequence

    img = REAL / "solar-halpha-median.jpg"
    gem = REAL / "solar-halpha-median.gemini-mask.jpg"
    with open_sequence(img) as seq:
        mask, _w = load_mask(gem, (seq.height, seq.width))
        outcome = verify_step(mask, seq)
    ver = outcome.verification
    assert len(ver.checks) > 10
    assert {c.verdict for c in ver.checks} == {UNVERIFIED}
    assert outcome.refused == [] and np.array_equal(outcome.mask, mask)
    assert "single image" in ver.note
    # and the command line says so
    capsys.readouterr()
    code = main(["-q", "flat", str(img), "--mask", str(gem), "-o", str(tmp_path / "f.fits"), "--method", "local"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"{len(ver.checks)} specks unverified, none refused" in err and "single image" in err


@needs_real
def test_real_lunar_video_a_mask_on_crater_shadows_is_refused(moon_scan):
    """A careless mask on the lunar video (the 15 largest dark crater shadows of the reference, as
    an over-eager AI might draw them): none is shown to be dust, so the flat is 1.0 everywhere."""
    from aiflat_gui.io import open_sequence

    ref = moon_scan.reference  # compute_reference(video), shared (tests/conftest.py)
    with open_sequence(moon_scan.path) as seq:
        lum = (ref.mean(axis=2) if ref.ndim == 3 else ref).astype(np.float32)
        dark = lum / np.maximum(cv2.GaussianBlur(lum, (0, 0), 8), 1) < 0.85
        dark &= lum > 0.1 * np.percentile(lum, 99)
        n, lab, st, _ = cv2.connectedComponentsWithStats(dark.view(np.uint8), connectivity=8)
        keep = sorted((k for k in range(1, n) if 20 <= st[k, 4] <= 400), key=lambda k: -st[k, 4])[:15]
        mask = np.isin(lab, keep)
        outcome = verify_step(mask, seq)
        flat = synthesize_flat(ref, outcome.mask, method="auto", sequence=seq, grow=GROW, color=seq.color)
    ver = outcome.verification
    assert len(ver.checks) == 15 and ver.motion > 5 and not ver.note
    assert ver.count(DUST) == 0, [c.describe() for c in ver.checks if c.verdict == DUST]
    assert len(outcome.refused) == 15
    assert np.all(flat == 1.0)


def test_a_measured_shadow_gets_no_margin():
    """The true mask: of each speck judged dust the flat gets exactly the pixels where the video
    shows its shadow, and no margin around them (a 2 px margin used to change ~450 clean pixels by
    a fraction of a percent); a mask drawn 1 px too tight gains back the rim the video measures."""
    sim, frames = _sim(TUNING_SEEDS[0])
    true = sim.mask
    clean = sim.flat == 1.0
    outcome, removed, changed = _run(sim, frames, true)
    assert outcome.measured is not None and outcome.measured.any()
    assert int((changed & ~grow(true, 1)).sum()) == 0
    assert int((changed & clean).sum()) <= 10, int((changed & clean).sum())
    assert removed >= 0.95, removed
    tight = true & ~grow(~true, 1)
    outcome, removed, changed = _run(sim, frames, tight)
    assert int((outcome.mask & ~tight).sum()) > 100  # the rim, measured
    assert int((changed & ~grow(true, 1)).sum()) == 0
    assert removed >= 0.94, removed


def test_a_careless_stroke_changes_only_the_dust_under_it():
    """Every speck outlined 8 px too wide (a quick brush stroke, a generous AI outline): the
    verifier keeps, of each speck judged dust, only the pixels where the video shows its static
    shadow, so the flat leaves the ring of clean sun around it alone (and adds no margin to a
    measured shadow); a "dust" override keeps what the user drew whole."""
    from aiflat_gui.core.verify import apply_verdicts

    sim, frames = _sim(TUNING_SEEDS[0])
    true = sim.mask
    wide = grow(true, 8)
    outcome, removed, changed = _run(sim, frames, wide)
    ver = outcome.verification
    assert ver.shadow is not None
    # what the flat is built from hugs the dust: the ring of clean sun the stroke added (more
    # than 4 px from the dust: the shadow's 1 px edge, the 3x3 mean it is judged on) is left out
    # but for a few pixels (wide specks, measured on 2x2 or 4x4 bins, are outlined to the bin),
    # and the dust's core is in
    kept = outcome.mask
    ring = wide & ~grow(true, 4)
    assert int((kept & ring).sum()) < 0.1 * int(ring.sum()), (int((kept & ring).sum()), int(ring.sum()))
    core = (1.0 - sim.flat) >= 0.5 * np.max(1.0 - sim.flat)
    assert kept[core & true].mean() > 0.97
    # so the calibrated video changes there only where the mask was kept (flat margin included)
    beyond = ~grow(true, 4 + GROW)
    assert int((changed & beyond).sum()) <= int((grow(kept, GROW) & beyond).sum())
    assert int((changed & beyond).sum()) < 0.15 * int((wide & beyond).sum())
    assert removed >= 0.95, removed
    assert outcome.trimmed == int((wide & ~kept).sum()) - sum(c.area for c in outcome.refused) > 0
    assert f"{outcome.trimmed} px around the dust's measured shadows left out" in outcome.summary()
    # the user vouches for one speck: it is kept as drawn
    c = next(c for c in ver.checks if c.verdict == DUST)
    whole, _ = apply_verdicts(wide, ver, {tuple(c.anchor): DUST})
    n, lab = cv2.connectedComponents(wide.view(np.uint8), connectivity=8)
    own = lab == lab[c.anchor[1], c.anchor[0]]
    assert whole[own].all() and not kept[own].all()


@needs_real
def test_a_shadow_too_wide_for_the_motion_is_verified_by_its_outline():
    """The real H-alpha frame as a moving background (seeing 2 px, random-walk drift, tuning seed,
    8-bit): a 34 px donut 8 % deep is too wide for the ~5 px of motion to measure its depth
    (2.4 ± 1.9 %: unverified, so it was refused), but its outline stays put on the sensor while the
    target moves under it: dust. (Its darkest eighth shows the shadow too, 4.4 ± 0.9 %: judged
    on the whole and its darker half only here, to reach the outline test.)"""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from physics_quality import SCENES, _real_background

    _label, ch = SCENES["real-halpha"]
    spec = SimSpec(width=480, height=360, frames=32, seed=103, dust_seed=103 * 100 + list(SCENES).index("real-halpha"),
                   **{**ch, "image": _real_background("real-halpha", 480, 360)})
    sim = simulate(spec)
    from aiflat_gui.core.verify import VerifyParams, verdicts_with_outlines, verify_mask

    ver = verify_mask(sim.mask, ArraySequence(sim.frames), VerifyParams(parts=(0.5,)))
    donut = next(s for s in sim.specks if s.kind == "donut" and abs(s.size - 34) < 2)
    c = next(c for c in ver.checks if sim.labels[c.anchor[1], c.anchor[0]] == donut.label)
    assert c.verdict == DUST and "outline stays put" in c.reason, c.describe()
    kept, refused, _measured = verdicts_with_outlines(sim.mask, ver)
    assert c not in refused and kept[sim.labels == donut.label].any()
    default = verify_step(sim.mask, ArraySequence(sim.frames)).verification
    assert next(d for d in default.checks if d.anchor == c.anchor).verdict == DUST


@functools.lru_cache(maxsize=None)
def _sun_mild():
    """Scene "sun-mild" of bench/physics_quality.py at its size (480x360, 32 frames), tuning seed."""
    seed = TUNING_SEEDS[0]
    return simulate(SimSpec(width=480, height=360, frames=32, seed=seed, dust_seed=seed * 100, background="sun",
                            seeing_px=1.0, drift_px=0.4))


def test_a_detector_blob_wider_than_its_dust_keeps_the_target_feature_beside_it_untouched():
    """Physics scene "sun-mild" of bench/physics_quality.py (tuning seed): the offline detector's
    blob around a disc of dust also covers a dark solar feature beside it. Seeing bends the image
    locally, the solve's motion falls short there and the feature leaks into the static shadow;
    the shadow keeps only what is deeper than that leakage (VerifyParams.leak_fraction), so no
    pixel more than 3 px from the dust gets a flat, while the dust keeps ~97 % of its pixels."""
    from aiflat_gui.core.detect import compute_scores
    from aiflat_gui.core.verify import VerifyParams, verdicts_with_outlines, verify_mask

    sim = _sun_mild()
    seq = ArraySequence(sim.frames)
    found = compute_scores(np.median(sim.frames, axis=0).astype(np.float32), seq).mask(0.5)
    far = cv2.distanceTransform((sim.flat == 1.0).view(np.uint8), cv2.DIST_L2, 5) > 3.5
    dust = sim.flat < 1.0
    got = {}
    for lf in (VerifyParams().leak_fraction, 0.0):
        v = verify_mask(found, seq, VerifyParams(leak_fraction=lf), searched=found)
        measured = verdicts_with_outlines(found, v)[2]
        got[lf] = (int((measured & far).sum()), int((measured & dust).sum()))
    (far_on, dust_on), (far_off, dust_off) = got[VerifyParams().leak_fraction], got[0.0]
    assert far_off > 50, got  # the leak this guards against is there without the rule
    assert far_on == 0, got
    assert dust_on >= 0.95 * dust_off, got


@pytest.mark.parametrize("wider", [4, 6])
def test_a_small_faint_speck_in_a_mask_many_times_its_size_is_found_by_its_darkest_eighth(wider):
    """A 5 px disc of dust, 11 % deep at its centre (55 px), in a mask drawn 4-6 px wider all round
    (4-6x its area, as the detector's blob around it): the whole mask's mean darkening, and its
    darker half's, are too diluted to reach the search's 4.5 uncertainties; its darkest eighth (in
    the median frame, chosen without looking at the shadow) shows it. Its shadow is measured on
    the dust: no pixel more than 2 px from it."""
    from aiflat_gui.core.verify import verdicts_with_outlines, verify_mask

    sim = _sun_mild()
    disc = sim.labels == next(s.label for s in sim.specks if s.kind == "disc" and s.size < 6 and s.depth > 0.05)
    assert 40 <= int(disc.sum()) <= 70
    mask = disc | (grow(disc, wider) & (sim.labels == 0))
    v = verify_mask(mask, ArraySequence(sim.frames), searched=mask)
    (c,) = v.checks
    assert c.verdict == DUST and c.reason.startswith("its darkest eighth"), c.reason
    measured = verdicts_with_outlines(mask, v)[2]
    assert int(measured.sum()) >= 0.5 * int(disc.sum())
    assert not (measured & ~grow(disc, 2)).any()

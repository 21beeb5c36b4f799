"""The offline dust detector and the local/file mask providers, on demo data the tests create."""

import functools

import cv2
import numpy as np
import pytest

from aiflat_gui.ai import get_provider
from aiflat_gui.ai.base import MaskResult
from aiflat_gui.core.demo import generate_demo
from aiflat_gui.io.demo import write_demo
from aiflat_gui.core.detect import ScoreMap, compute_scores, luminance
from aiflat_gui.errors import Cancelled, InputError
from aiflat_gui.io.base import ArraySequence

SIZE = dict(frames=24, width=400, height=300, difficulty="normal")


def specks_found(mask, demo, min_depth=0.05):
    """(found, total) specks darker than ``min_depth``: found = half its core is masked."""
    dark = 1.0 - demo.true_flat
    found = total = 0
    for sp in demo.specks:
        if sp["depth"] <= min_depth:
            continue
        x0, y0, x1, y1 = sp["bbox"]
        core = dark[y0:y1, x0:x1] >= 0.5 * sp["depth"]
        total += 1
        found += int(mask[y0:y1, x0:x1][core].mean() >= 0.5)
    return found, total


def false_components(mask, demo):
    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    right = set(np.unique(labels[demo.true_mask]).tolist()) - {0}
    return (n - 1) - len(right), n - 1


def reference(demo):
    return np.median(demo.frames, axis=0).astype(np.float32)


@functools.lru_cache(maxsize=None)
def sized_demo(seed):
    """``generate_demo(seed=seed, **SIZE)``, made once for the tests that start from it (frames read-only)."""
    demo = generate_demo(seed=seed, **SIZE)
    demo.frames.flags.writeable = False
    return demo


@functools.lru_cache(maxsize=None)
def sized_scores(seed):
    """``compute_scores`` of that demo (its median reference and frames), computed once."""
    demo = sized_demo(seed)
    return compute_scores(reference(demo), ArraySequence(demo.frames))


@pytest.fixture(scope="module", autouse=True)
def _free_the_demos():
    yield
    sized_demo.cache_clear()
    sized_scores.cache_clear()


@pytest.fixture(scope="module", params=[2, 5])
def case(request):
    return sized_demo(request.param), sized_scores(request.param)


def test_sequence_finds_every_speck_darker_than_5_percent(case):
    demo, sm = case
    found, total = specks_found(sm.mask(0.5), demo)
    assert total >= 3 and found == total
    assert sm.frames_used == 24 and sm.info["mode"] == "sequence"
    # the measured drift matches the demo's (up to seeing wobble)
    true = demo.shifts - np.median(demo.shifts, axis=0)
    assert np.abs(sm.shifts - true).max() < 1.2


def test_sequence_leaves_the_sun_alone(case):
    demo, sm = case
    mask = sm.mask(0.5)
    bad, comps = false_components(mask, demo)
    assert comps - bad >= 3 and bad <= 1  # (the bench measures precision on many more specks)
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w]
    for d in demo.distractors:
        cx, cy = d["centroid"]
        near = np.hypot(xx - cx, yy - cy) <= d.get("radius", 3) + 1
        if d["kind"] in ("sunspot", "pore") and near.any():
            assert not (mask & near & ~demo.true_mask).any(), d


def test_sensitivity_is_monotone_and_instant(case):
    demo, sm = case
    masks = [sm.mask(s) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    counts = [int(m.sum()) for m in masks]
    assert counts == sorted(counts) and counts[-1] > counts[0]
    assert np.all(masks[3][masks[2]])  # 0.75 finds all that 0.5 found, and more
    assert np.array_equal(sm.mask(0.5), masks[2])
    soft = sm.soft()
    assert soft.dtype == np.float32 and soft.min() >= 0 and soft.max() <= 1
    assert soft[masks[2]].mean() > soft[~masks[2]].mean()
    seed_lo, grow_lo = ScoreMap.thresholds(1.0)
    seed_hi, grow_hi = ScoreMap.thresholds(0.0)
    assert seed_lo < seed_hi and grow_lo <= grow_hi and grow_lo < seed_lo


def test_single_image_mode_finds_strong_dust():
    demo = generate_demo(frames=16, width=400, height=300, seed=3, difficulty="easy")
    sm = compute_scores(reference(demo))  # no time axis
    assert sm.info["mode"] == "single image" and sm.frames_used == 1
    found, total = specks_found(sm.mask(0.5), demo, min_depth=0.1)
    # (the disc and the deeper fibre; the 13 % fibre 1.8 px wide on granulation is below what a
    # single image can tell from the texture around it: the time axis finds it, see above)
    assert total >= 3 and found >= total - 1
    # a sequence of fewer than 3 frames is judged as a single image
    sm2 = compute_scores(reference(demo), ArraySequence(demo.frames[:2]))
    assert sm2.info["mode"] == "single image"


def test_progress_and_cancel():
    demo = generate_demo(frames=8, width=200, height=150, seed=1)
    seen = []
    compute_scores(reference(demo), ArraySequence(demo.frames), progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert all(0.0 <= f <= 1.0 for f in seen) and seen == sorted(seen) and len(seen) > 8

    calls = []

    def cancel(f, m):
        calls.append(f)
        if len(calls) == 4:
            raise Cancelled()

    with pytest.raises(Cancelled):
        compute_scores(reference(demo), ArraySequence(demo.frames), progress=cancel)
    assert len(calls) == 4


def test_memory_budget_and_max_frames_bound_the_frames_used():
    demo = generate_demo(frames=20, width=200, height=150, seed=1)
    seq = ArraySequence(demo.frames)
    assert compute_scores(reference(demo), seq, max_frames=7).frames_used == 7
    # 1 MB holds the working stacks of only a few 200x150 frames: all 20 frames are read, averaged
    # in groups into the few slots that fit, and the dust is still found
    demo = sized_demo(5)
    small = compute_scores(reference(demo), ArraySequence(demo.frames), memory_mb=2.0)
    assert small.frames_used == 24 and 3 <= small.info["stacked"] <= 6
    found, total = specks_found(small.mask(0.5), demo)
    assert found == total
    # frames averaged in groups: the limb still counts in every position a frame saw it
    assert demo.params["limb"]
    assert not small.valid[off_disc_band(demo, reach=11)].any()


def test_colour_and_bayer_sequences():
    demo = sized_demo(5)
    mono = sized_scores(5).mask(0.5)  # compute_scores(reference(demo), ArraySequence(demo.frames))
    gains = np.array([1.0, 0.8, 0.6], np.float32)
    rgb = (demo.frames[..., None].astype(np.float32) * gains).astype(np.uint16)
    ref_rgb = np.median(rgb, axis=0).astype(np.float32)
    m_rgb = compute_scores(ref_rgb, ArraySequence(rgb, color="RGB")).mask(0.5)
    inter, union = (mono & m_rgb).sum(), (mono | m_rgb).sum()
    assert inter / union > 0.8
    # raw RGGB mosaic: the per-site gains must not matter (2x2 luminance)
    cfa = np.ones(demo.frames.shape[1:], np.float32)
    cfa[0::2, 0::2], cfa[1::2, 1::2] = 1.3, 0.7
    bayer = (demo.frames.astype(np.float32) * cfa).astype(np.uint16)
    sm = compute_scores(np.median(bayer, axis=0).astype(np.float32), ArraySequence(bayer, color="RGGB"))
    found, total = specks_found(sm.mask(0.5), demo)
    assert found == total
    assert false_components(sm.mask(0.5), demo)[0] <= 1
    assert luminance(bayer[0], "RGGB").shape == bayer[0].shape


def test_bad_inputs_are_input_errors():
    demo = generate_demo(frames=4, width=200, height=150, seed=1)
    with pytest.raises(InputError):
        compute_scores(np.zeros((4, 4), np.float32))
    with pytest.raises(InputError) as exc:
        compute_scores(np.zeros((100, 120), np.float32), ArraySequence(demo.frames))
    assert "\n" not in str(exc.value)
    with pytest.raises(InputError):
        get_provider("local", sensitivity=1.5)
    with pytest.raises(InputError):
        get_provider("local").remask(0.5)


def test_local_provider_through_get_provider():
    demo = sized_demo(2)
    provider = get_provider("local", sensitivity=0.5, max_frames=20)
    assert provider.name == "local"
    res = provider.find_mask(reference(demo), ArraySequence(demo.frames))
    assert isinstance(res, MaskResult)
    assert res.mask.dtype == bool and res.mask.shape == demo.true_flat.shape
    assert res.soft is not None and res.soft.shape == res.mask.shape
    rep = res.report
    assert rep["provider"] == "local" and rep["sensitivity"] == 0.5 and rep["frames_used"] == 20
    assert rep["specks"] == cv2.connectedComponents(res.mask.view(np.uint8))[0] - 1
    assert rep["seconds"] > 0 and rep["dust_pixels"] == int(res.mask.sum())
    found, total = specks_found(res.mask, demo)
    assert found == total
    assert isinstance(provider.scores, ScoreMap)
    more = provider.remask(0.9)
    assert more.mask.sum() >= res.mask.sum() and more.report["sensitivity"] == 0.9


def test_file_provider(tmp_path):
    from aiflat_gui.io.masks import save_mask

    demo = generate_demo(frames=2, width=200, height=150, seed=1)
    p = save_mask(tmp_path / "m.png", demo.true_mask)
    provider = get_provider("file", path=p)
    assert provider.name == "file"
    res = provider.find_mask(reference(demo))
    assert np.array_equal(res.mask, demo.true_mask)
    assert res.report["provider"] == "file" and res.report["warnings"] == []
    # a half-size mask is resampled, with a warning in the report
    small = cv2.resize(demo.true_mask.astype(np.uint8) * 255, (100, 75), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(tmp_path / "half.png"), small)
    res2 = get_provider("file", path=tmp_path / "half.png").find_mask(reference(demo))
    assert res2.mask.shape == demo.true_mask.shape and res2.report["warnings"]
    with pytest.raises(InputError):
        get_provider("file", path=tmp_path / "missing.png").find_mask(reference(demo))


def test_cli_mask_with_the_local_provider(tmp_path):
    from aiflat_gui.cli import main
    from aiflat_gui.io.single import read_image

    paths = write_demo(tmp_path / "demo", seed=2, **SIZE)
    out = tmp_path / "mask.png"
    assert main(["-q", "mask", str(paths["sequence"]), "-o", str(out), "--sensitivity", "0.5"]) == 0
    mask = read_image(out) > 0
    truth = read_image(paths["mask"]) > 0
    assert mask.shape == truth.shape and (mask & truth).sum() > 0.3 * mask.sum()


@pytest.mark.parametrize("value", [0.0, 1000.0, np.nan])
def test_flat_black_or_nan_frames_give_an_empty_mask(value):
    frames = np.full((5, 64, 80), value, np.float32)
    for seq in (ArraySequence(frames), None):
        sm = compute_scores(np.full((64, 80), value, np.float32), seq)
        assert np.isfinite(sm.score).all()
        assert not sm.mask(1.0).any()


def near_dust(demo, reach=8):
    """Real dust and the few px around it a speck's mask may grow into."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    return cv2.dilate(demo.true_mask.view(np.uint8), k) > 0


def off_disc_band(demo, reach=20.0):
    """Pixels within ``reach`` px of where ANY frame is off the disc (sky beyond the limb and the
    limb's rim, which move with the sun): the demo never puts dust there."""
    dist = demo.sky_distance()
    assert np.isfinite(dist).any()
    return dist <= reach


def test_default_demo_leaves_the_limb_alone():
    # the GUI's built-in demo (ensure_demo's settings: the limb crosses the top, the sun drifts
    # ~9 px toward it): the earlier detector marked a ~10000-pixel band along the limb
    from aiflat_gui.io.demo import DEFAULT_DEMO

    demo = generate_demo(**DEFAULT_DEMO)
    assert demo.params["limb_side"] == "top"
    res = get_provider("local").find_mask(reference(demo), ArraySequence(demo.frames))
    band = off_disc_band(demo)
    assert band[:40].all() and not band[200:].any()
    assert not (res.mask & band & ~near_dust(demo)).any()
    found, total = specks_found(res.mask, demo)
    assert total >= 5 and found == total
    assert false_components(res.mask, demo)[0] == 0


@pytest.mark.parametrize("side", ["left", "right", "top", "bottom"])
def test_limb_on_any_side_is_never_marked(side):
    demo = generate_demo(frames=24, width=360, height=270, seed=3, difficulty="normal", limb=side)
    assert demo.params["limb_side"] == side
    ref = reference(demo)
    sm = compute_scores(ref, ArraySequence(demo.frames))
    band = off_disc_band(demo)
    assert not (sm.mask(0.5) & band & ~near_dust(demo)).any()
    # at the slider's top end noise specks appear everywhere, the rim no more than elsewhere (the
    # band the earlier detector marked held thousands of pixels)
    assert (sm.mask(1.0) & band & ~near_dust(demo)).sum() < 300
    # the sky is not judged, the disc is; single-image mode leaves the limb alone too
    assert not sm.valid[band & ~demo.true_mask & (cv2.blur(ref, (5, 5)) < 0.5 * np.percentile(ref, 90))].any()
    assert sm.valid[~band].mean() > 0.9
    single = compute_scores(ref).mask(0.5)
    assert not (single & band & ~near_dust(demo)).any()
    # nor the sunspot: its penumbra is darker than the disc around it, a ring of dust size
    spot = next(d for d in demo.distractors if d["kind"] == "sunspot")
    cx, cy = np.add(spot["centroid"], np.median(demo.shifts, axis=0))
    yy, xx = np.mgrid[0:ref.shape[0], 0:ref.shape[1]]
    assert not (single & (np.hypot(xx - cx, yy - cy) <= spot["radius"] + 3)).any()
    found, total = specks_found(sm.mask(0.5), demo)
    assert found >= total - 1


def test_precision_on_small_normal_demos():
    right = comps = found = total = 0
    for seed, side in ((1, "top"), (4, "right"), (6, False)):
        demo = generate_demo(frames=24, width=400, height=300, seed=seed, difficulty="normal", limb=side)
        mask = compute_scores(reference(demo), ArraySequence(demo.frames)).mask(0.5)
        bad, n = false_components(mask, demo)
        right, comps = right + n - bad, comps + n
        f, t = specks_found(mask, demo)
        found, total = found + f, total + t
    # (11 components since the reference's own dips are candidates too: the fibre of seed 6 that
    # came out in two pieces is now one)
    assert comps >= 11 and right / comps >= 0.9
    assert total >= 6 and found / total >= 0.8


def test_single_image_leaves_the_limb_rim_alone():
    # a median reference alone: the limb-darkened rim just inside the margin once seeded a
    # sliver of "dust" along the limb (this demo: 122 px)
    demo = generate_demo(frames=40, width=640, height=480, seed=1, difficulty="easy", limb="bottom")
    for s in (0.5, 0.65):
        mask = compute_scores(reference(demo)).mask(s)
        assert not (mask & off_disc_band(demo) & ~near_dust(demo)).any(), s



def test_an_opaque_clump_darker_than_max_depth_is_judged():
    """A 5 px clump 82 % deep on the disc (physics-made scene: limb, 3 px seeing, tuning seed):
    darker than the detector's max_depth, yet (its core blurred by the optics) above the sky
    floor, it fell between the two rules and was never judged; it is found now, and so is the
    scene's other clump (33 px, 77 %). (The clump is missed on 0f337b4, the disc on 64775c3^.)"""
    from aiflat_gui.core.dustsim import SimSpec, simulate

    sim = simulate(SimSpec(width=480, height=360, frames=32, seed=102, dust_seed=102 * 100 + 3, background="sun",
                           limb=True, seeing_px=3.0, drift_px=0.3))
    ref = np.median(sim.frames, axis=0).astype(np.float32)
    m = compute_scores(ref, ArraySequence(sim.frames)).mask(0.5)
    dmap = 1.0 - sim.flat
    clumps = [s for s in sim.specks if s.kind == "clump"]
    assert len(clumps) == 2
    for s in clumps:
        core = (sim.labels == s.label) & (dmap >= 0.5 * s.depth)
        assert m[core].mean() >= 0.5, (s.x, s.y, s.size, s.depth)
    # and a 10 px disc 13 % deep on busy granulation (2 px of drift): a compact dip of the
    # reference whose own pattern stays put while the sun moves (own motion 0.1 px), yet with a
    # z-score under the default seed threshold: the physics now seeds it
    disc = min((s for s in sim.specks if s.kind == "disc"), key=lambda s: abs(s.x - 221) + abs(s.y - 164))
    assert abs(disc.size - 10) < 1.5 and disc.depth > 0.1
    core = (sim.labels == disc.label) & (dmap >= 0.5 * disc.depth)
    assert m[core].mean() >= 0.5


def test_off_disc_marks_match_the_full_frame_box():
    """detect._mark_off boxes only the rows near a pixel below the floor: the same pixels as
    ``_box(y) < floor`` on the whole frame (sky at the top and bottom edges, an umbra inside,
    rows of low pixels close together and apart, non-integer values)."""
    from aiflat_gui.core.detect import _box, _mark_off

    rng = np.random.default_rng(3)
    y = (rng.random((240, 200)) * 900 + 300).astype(np.float32) + np.float32(0.37)
    y[:7] = 50.0
    y[-3:, 40:90] = 60.0
    y[100:103, 20:30] = 10.0
    y[110, 150] = 5.0
    y[118:120, 5] = 5.0
    floor = 290.0
    for frame in (y, y[10:230], np.full((50, 60), 400.0, np.float32)):
        off = np.zeros(frame.shape, bool)
        _mark_off(frame, floor, off)
        assert np.array_equal(off, _box(frame) < floor)
        assert frame is not y or off.any()
    # integer frames as read (uint8, uint16; compared as they are, not as a float32 copy), also
    # with an integer floor, a floor just above an integer and one beyond the type's range
    yi = np.round(y).astype(np.uint16)
    for frame, fl in ((yi, 290.0), (yi, 50.0), (yi, 60.0000001), (yi, 5.0), (yi, 0.0), (yi, 1e6),
                      (np.clip(yi // 4, 0, 255).astype(np.uint8), 72.5), (yi[::2], 290.0)):
        off = np.zeros(frame.shape, bool)
        _mark_off(frame, fl, off)
        assert np.array_equal(off, _box(frame.astype(np.float32)) < fl), (frame.dtype, fl)
    # whole rows of sky (set without the box when surely below the floor), just below it, and
    # at the frame's top and bottom edges
    yd = yi.copy()
    yd[:20] = 288
    yd[20:30] = 289
    yd[30:33] = 100
    yd[-12:] = 7
    for fl in (290.0, 289.0, 289.0001, 288.5, 288.0, 8.0, 7.0):
        off = np.zeros(yd.shape, bool)
        _mark_off(yd, fl, off)
        assert np.array_equal(off, _box(yd.astype(np.float32)) < fl), fl


def test_big_faint_donuts_in_poor_seeing_are_found_whole():
    """Two aperture shadows a person sees at once on a physics-made poor-seeing video (tuning seed:
    3 px seeing warp, 0.4 px/frame drift): donuts 59 and 65 px across, 14 % and 13 % deep. Wider
    than any closing fill and than the drift, the first was missed and the second marked on a
    quarter of its core (main at 37aa657: 0 % and 26 %); the round-shadow finder of the reference
    (a disc darker than its ring in every direction), judged static by its own motion, finds both
    (93 % and 83 %: where the second crosses a bright plage patch, its shadowed plage is still
    brighter than the sun around it)."""
    from aiflat_gui.core.dustsim import SimSpec, simulate

    sim = simulate(SimSpec(width=480, height=360, frames=32, seed=102, dust_seed=102 * 100 + 1, background="sun",
                           seeing_px=3.0, drift_px=0.4, seeing_blur=(1.0, 2.2)))
    ref = np.median(sim.frames, axis=0).astype(np.float32)
    m = compute_scores(ref, ArraySequence(sim.frames)).mask(0.5)
    dmap = 1.0 - sim.flat
    donuts = [s for s in sim.specks if s.kind == "donut"]
    assert sorted(round(s.size) for s in donuts) == [59, 65]
    for s in donuts:
        core = (sim.labels == s.label) & (dmap >= 0.5 * s.depth)
        assert m[core].mean() >= 0.8, (s.x, s.y, s.size, s.depth)
    # and the sun around them stays out: mask pixels more than 3 px from any dust (the scene's
    # few false candidates, which the verifier judges next) stay as few as before
    near = cv2.dilate(sim.mask.view(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))) > 0
    assert int((m & ~near).sum()) <= 450


def test_translate_is_opencvs_cubic_warp():
    """detect._translate (a separable 4-tap filter) moves an image as OpenCV's bicubic
    warpAffine does, borders included, to float32 rounding."""
    from aiflat_gui.core.detect import _translate

    rng = np.random.default_rng(4)
    a = cv2.GaussianBlur((rng.standard_normal((90, 120)) * 0.02).astype(np.float32), (0, 0), 1.0)
    for dx, dy, size, border in [(3.3, 2.7, (126, 96), 0.0), (-1.2, 0.4, (120, 90), None), (2.0, 3.0, (126, 96), 0.0),
                                 (0.0, 0.0, (120, 90), None), (-3.6, -2.1, (120, 90), None), (200.0, 0.0, (120, 90), 0.0)]:
        m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
        mode = cv2.BORDER_REPLICATE if border is None else cv2.BORDER_CONSTANT
        want = cv2.warpAffine(a, m, size, flags=cv2.INTER_CUBIC, borderMode=mode, borderValue=border or 0.0)
        got = _translate(a, dx, dy, size, border)
        assert got.shape == want.shape and got.dtype == np.float32
        assert np.abs(got - want).max() <= 1e-6, (dx, dy, border)
        # a float16 slot less a float32 map, written straight into the bordered source: the same
        # values, bit for bit, as moving the float32 difference
        slot = (a * 3).astype(np.float16)
        minus = np.ascontiguousarray(a[::-1])
        diff = cv2.subtract(slot, minus, dtype=cv2.CV_32F)
        assert np.array_equal(_translate(slot, dx, dy, size, border, minus=minus), _translate(diff, dx, dy, size, border))


def test_separation_bands_equal_whole_frame_moves():
    """The separation moves each slot band by band (detect._sun_band, _sensor_band): bit for bit
    the rows of detect._translate of the whole frame, the far fill outside the slot's field
    included, for any band split (bands of 1-40 rows, the last one short) and drift."""
    from aiflat_gui.core.detect import _FAR, _sensor_band, _sun_band, _translate

    rng = np.random.default_rng(7)
    h, w = 53, 71
    slot = cv2.GaussianBlur((rng.standard_normal((h, w)) * 0.03).astype(np.float32), (0, 0), 1.0).astype(np.float16)
    dust = (rng.standard_normal((h, w)) * 0.01).astype(np.float32)
    for sx, sy in [(0.0, 0.0), (2.3, -1.7), (-4.6, 3.2), (1.0, 2.0)]:
        shift = np.array([sx, sy], np.float32)
        pad = int(np.ceil(np.abs(shift).max())) + 2
        ch, cw = h + 2 * pad, w + 2 * pad
        for i in (0, 1):
            tx, ty = pad - float(shift[0]), pad - float(shift[1])
            full = _translate(slot, tx, ty, (cw, ch), border=0.0, minus=dust).copy()
            fill = _FAR if i % 2 == 0 else -_FAR
            x0, x1 = int(np.ceil(tx + 1)), int(np.floor(tx + w - 2)) + 1
            y0, y1 = int(np.ceil(ty + 1)), int(np.floor(ty + h - 2)) + 1
            full[:max(y0, 0)] = fill
            full[max(y1, 0):] = fill
            full[:, :max(x0, 0)] = fill
            full[:, max(x1, 0):] = fill
            want = full.astype(np.float16)
            for band in (1, 7, 32, 40):
                got = np.empty((ch, cw), np.float16)
                src = np.empty((band + 3, cw + 3), np.float32)
                for ya in range(0, ch, band):
                    yb = min(ch, ya + band)
                    _sun_band(slot, dust, i, shift, pad, cw, (ya, yb), src, got[ya:yb])
                assert np.array_equal(got.view(np.uint16), want.view(np.uint16)), (sx, sy, i, band)
        sun = (rng.standard_normal((ch, cw)) * 0.02).astype(np.float32)
        back = _translate(sun, float(shift[0]) - pad, float(shift[1]) - pad, (w, h))
        want = (slot.astype(np.float32) - back).astype(np.float16)
        for band in (1, 7, 32):
            got = np.empty((h, w), np.float16)
            for ya in range(0, h, band):
                yb = min(h, ya + band)
                _sensor_band(slot, sun, shift, pad, (ya, yb), got[ya:yb])
            assert np.array_equal(got.view(np.uint16), want.view(np.uint16)), (sx, sy, band)


def _scene(name, seed):
    """A physics-made scene of bench/physics_quality.py (tuning seed) and its median reference."""
    from aiflat_gui.core.dustsim import SimSpec, simulate
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from physics_quality import SCENES

    _label, ch = SCENES[name]
    sim = simulate(SimSpec(width=480, height=360, frames=32, seed=seed,
                           dust_seed=seed * 100 + list(SCENES).index(name), **ch))
    return sim, np.median(sim.frames, axis=0).astype(np.float32)


def test_a_clump_on_a_sunspot_penumbra_is_found_when_the_sun_drifts():
    """A 62 % deep clump on the penumbra beside the umbra (sun-mild scene, tuning seed 102; it was
    missed while sunspots were left out whole): the sun drifts, so the separation leaves the
    sunspot in the sun and the clump on the sensor. The clump is found and verified as dust; the
    umbra is not marked."""
    from aiflat_gui.core.verify import DUST, verify_mask

    sim, ref = _scene("sun-mild", 102)
    clump = next(s for s in sim.specks if s.kind == "clump" and s.depth > 0.6 and s.size < 7)
    core = (sim.labels == clump.label) & ((1.0 - sim.flat) >= 0.5 * clump.depth)
    seq = ArraySequence(sim.frames)
    sm = compute_scores(ref, seq)
    mask = sm.mask(0.5)
    assert sm.info["drift_px"] >= 3.0
    assert mask[core].mean() > 0.5
    ver = verify_mask(mask, seq, searched=mask)
    n, lab = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    mine = set(np.unique(lab[core])) - {0}
    assert [c.verdict for c in ver.checks if c.label in mine] == [DUST]
    # the umbra (darker than 0.3 of the disc in the dust-free median, away from dust) is not marked
    clean = np.median(np.stack([sim.clean(i) for i in range(0, sim.n_frames, 4)]), axis=0)
    far = cv2.distanceTransform((~sim.mask).view(np.uint8), cv2.DIST_L2, 5) > 3
    umbra = (cv2.blur(clean.astype(np.float32), (5, 5)) < 0.3 * np.percentile(clean, 90)) & far
    assert umbra.sum() > 50 and not (mask & umbra).any()


def test_subpixel_peaks_are_the_one_at_a_time_values():
    """core.peaks.subpixel_peaks (a stack of correlation surfaces at once, as the detector's own-
    motion test uses it) gives bit for bit what subpixel_peak gives surface by surface: peaks at
    the border, ties, flat surfaces (zero curvature), float32 and float64."""
    from aiflat_gui.core.peaks import subpixel_peak, subpixel_peaks

    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        for shape in [(7, 7), (1, 5), (5, 1), (3, 3), (2, 2)]:
            cs = rng.standard_normal((300,) + shape).astype(dt)
            cs[:50] = np.round(cs[:50])
            cs[50:60] = 0
            want = np.array([subpixel_peak(c) for c in cs])
            got = subpixel_peaks(cs)
            assert got.dtype == np.float64
            assert np.array_equal(want.view(np.uint64), got.view(np.uint64)), (dt, shape)

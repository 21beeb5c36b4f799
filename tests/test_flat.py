"""Synthetic flats: exactly 1.0 outside the grown mask; each method's accuracy on data with a known
flat (small synthetic scenes and the demo generator's truth); pedestal, RGB and raw Bayer."""

import cv2
import numpy as np
import pytest

from aiflat_gui.core.demo import generate_demo
from aiflat_gui.core.flat import FLOOR, NEGLIGIBLE, HarmonicFill, match_histogram, synthesize_flat
from aiflat_gui.core.mask import grow
from aiflat_gui.core.reference import compute_reference
from aiflat_gui.errors import InputError
from aiflat_gui.io import ArraySequence

H, W = 64, 80
YY, XX = np.mgrid[:H, :W].astype(np.float64)


def _scene(level=2000.0):
    """Smooth signal: a gradient plus slow waves (harmonic fill is near exact on it)."""
    return level * (1.0 + 0.002 * XX + 0.05 * np.sin(XX / 17.0) * np.cos(YY / 13.0))


def _dust():
    flat = np.ones((H, W))
    mask = np.zeros((H, W), bool)
    for cx, cy, r, depth in ((20, 20, 6, 0.4), (55, 40, 8, 0.25), (65, 12, 3, 0.1)):
        d = np.hypot(XX - cx, YY - cy)
        flat[d <= r] = 1 - depth
        mask |= d <= r
    return flat, mask


def test_exactly_one_outside_the_grown_mask_for_every_method():
    true, mask = _dust()
    sig = _scene()
    ref = (sig * true).astype(np.float32)
    seq = ArraySequence(np.stack([ref] * 4))
    for method in ("local", "multiframe", "ai"):
        for g, feather in ((0, 0), (2, 0), (3, 2)):
            f = synthesize_flat(ref, mask, method=method, sequence=seq, clean=sig, grow=g, feather=feather)
            assert f.dtype == np.float32 and f.shape == ref.shape
            out = ~grow(mask, g)
            assert np.all(f[out] == 1.0), (method, g)
            assert f.min() >= FLOOR and f.max() <= 1.0


def test_a_mask_drawn_on_clean_signal_leaves_it_untouched():
    """A mask pixel without dust measures a flat within noise of 1.0; below NEGLIGIBLE (0.5 %) the
    flat is exactly 1.0 there, so those pixels are not changed at all, while real dust is."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:120, 0:160]
    ref = (20000.0 + 30.0 * xx + 20.0 * yy) * (1.0 + 0.001 * rng.standard_normal((120, 160)))
    clean = np.hypot(xx - 40, yy - 60) <= 12
    dusty = np.hypot(xx - 115, yy - 60) <= 10
    ref = np.where(dusty, 0.9 * ref, ref).astype(np.float32)
    flat = synthesize_flat(ref, clean | dusty, "local", grow=2)
    assert np.all(flat[clean] == 1.0)
    assert not np.any((flat > 1.0 - NEGLIGIBLE) & (flat < 1.0))
    core = np.hypot(xx - 115, yy - 60) <= 7
    assert abs(float(np.median(flat[core])) - 0.9) < 0.01


@pytest.mark.parametrize("method", ["local", "multiframe", "ai"])
def test_recovers_a_known_flat_on_a_smooth_scene(method):
    true, mask = _dust()
    sig = _scene()
    ref = (sig * true).astype(np.float32)
    seq = ArraySequence(np.stack([ref] * 3))
    clean = cv2.resize((0.5 * sig + 30).astype(np.float32), (W // 2, H // 2), interpolation=cv2.INTER_AREA)
    f = synthesize_flat(ref, mask, method=method, sequence=seq, clean=clean if method == "ai" else None, grow=2)
    err = np.abs(f - true)[mask]
    assert err.mean() < (0.01 if method != "ai" else 0.02), err.mean()


def test_multiframe_over_moving_texture_is_closer_than_a_single_frame():
    rng = np.random.default_rng(4)
    true, mask = _dust()
    frames = []
    # the sun: a granulation-like texture (6 %) on slow waves, drifting across fixed dust
    cy, cx = np.mgrid[:H + 40, :W + 60].astype(np.float64)
    tex = cv2.GaussianBlur(rng.standard_normal((H + 40, W + 60)), (0, 0), 1.2)
    sun = 2000.0 * (1.0 + 0.05 * np.sin(cx / 17.0) * np.cos(cy / 13.0)) * (1 + 0.06 * tex / tex.std())
    for k in range(24):  # 2 px per frame in x, 1 px every other frame in y
        y0, x0 = 30 - k // 2, 2 * k
        frames.append((sun[y0:y0 + H, x0:x0 + W] * true + rng.normal(0, 3, (H, W))).astype(np.float32))
    seq = ArraySequence(np.stack(frames))
    one = synthesize_flat(frames[0], mask, method="local", grow=1)
    multi = synthesize_flat(frames[0], mask, method="multiframe", sequence=seq, grow=1)
    e_one, e_multi = np.abs(one - true)[mask].mean(), np.abs(multi - true)[mask].mean()
    assert e_multi < 0.5 * e_one and e_multi < 0.01, (e_one, e_multi)


def test_multiframe_mono_shortcuts_give_the_general_paths_flat():
    """Mono data reuse the plane's fill factorisation for the per-tile registration and solve each
    frame's dust fill once (kept from the first registration pass): the flat is the one the general
    path (a single-channel image, every fill solved where it is used) gives."""
    rng = np.random.default_rng(5)
    true, mask = _dust()
    cy, cx = np.mgrid[:H + 40, :W + 60].astype(np.float64)
    tex = cv2.GaussianBlur(rng.standard_normal((H + 40, W + 60)), (0, 0), 1.2)
    sun = 2000.0 * (1.0 + 0.05 * np.sin(cx / 17.0) * np.cos(cy / 13.0)) * (1 + 0.06 * tex / tex.std())
    frames = np.stack([(sun[30 - k // 2:30 - k // 2 + H, 2 * k:2 * k + W] * true + rng.normal(0, 3, (H, W)))
                       .astype(np.float32) for k in range(16)])
    mono = synthesize_flat(frames[0], mask, method="multiframe", sequence=ArraySequence(frames), grow=1)
    one = synthesize_flat(frames[0][..., None], mask, method="multiframe", sequence=ArraySequence(frames[..., None]),
                          grow=1)
    assert one.shape == (H, W, 1)
    np.testing.assert_allclose(mono, one[..., 0], rtol=0, atol=1e-6)
    assert np.abs(mono - true)[mask].mean() < 0.01


def test_pedestal_is_removed_before_the_ratio():
    true, mask = _dust()
    p = 400.0
    ref = (p + _scene(1000) * true).astype(np.float32)
    good = synthesize_flat(ref, mask, grow=2, pedestal=p)
    bad = synthesize_flat(ref, mask, grow=2, pedestal=0.0)
    e_good, e_bad = np.abs(good - true)[mask].mean(), np.abs(bad - true)[mask].mean()
    assert e_good < 0.01 and e_bad > 0.05, (e_good, e_bad)  # ignoring it under-estimates the dust


def test_rgb_is_per_channel():
    true, mask = _dust()
    depth = np.array([0.2, 0.3, 0.5])
    t3 = np.where(mask[..., None], 1 - depth[None, None, :] * ((1 - true) / (1 - true).max())[..., None], 1.0)
    sig = _scene()[..., None] * np.array([1.0, 0.8, 0.5])
    ref = (sig * t3).astype(np.float32)
    f = synthesize_flat(ref, mask, grow=2, color="RGB")
    assert f.shape == ref.shape
    for c in range(3):
        assert np.abs(f[..., c] - t3[..., c])[mask].mean() < 0.01


def test_raw_bayer_is_per_cfa_phase_never_debayered():
    true, mask = _dust()
    levels = np.array([[3000.0, 1500.0], [1500.0, 700.0]])  # RGGB: very different per phase
    cfa_gain = np.tile(levels, (H // 2, W // 2))
    ref = (cfa_gain * (1 + 0.001 * XX) * true).astype(np.float32)
    f = synthesize_flat(ref, mask, grow=2, color="RGGB")
    assert np.abs(f - true)[mask].mean() < 0.01
    naive = synthesize_flat(ref, mask, grow=2, color="mono")  # filling across colours is wrong
    assert np.abs(naive - true)[mask].mean() > 0.05
    with pytest.raises(InputError):
        synthesize_flat(np.dstack([ref] * 3), mask, color="RGGB")


def test_feather_blends_toward_one_only_inside():
    true, mask = _dust()
    ref = (_scene() * true).astype(np.float32)
    sharp = synthesize_flat(ref, mask, grow=2)
    soft = synthesize_flat(ref, mask, grow=2, feather=4)
    g = grow(mask, 2)
    assert np.all(soft[~g] == 1.0)
    assert np.all(soft[g] >= sharp[g] - 1e-6)  # only ever closer to 1.0
    assert soft[20, 20] == sharp[20, 20]  # the speck's centre is deeper than the feather
    edge = g & ~grow(mask, 1)
    assert np.all(soft[edge] >= sharp[edge])


def test_harmonic_fill_is_exact_on_linear_data_and_reuses_its_factorisation():
    m = np.zeros((30, 30), bool)
    m[8:20, 5:25] = True
    hf = HarmonicFill(m)
    yy, xx = np.mgrid[:30, :30]
    lin = 3.0 * xx - 2.0 * yy + 100
    np.testing.assert_allclose(hf.fill(lin), lin[m], atol=1e-9)
    stack = np.stack([lin, 2 * lin])
    np.testing.assert_allclose(hf.fill(stack)[1], 2 * lin[m], atol=1e-9)
    with pytest.raises(InputError):
        HarmonicFill(np.ones((4, 4), bool))


def test_histogram_matching_maps_a_monotone_transform_back():
    rng = np.random.default_rng(0)
    t = rng.uniform(100, 3000, (50, 50))
    s = np.sqrt(t) * 3 + 7
    use = np.ones_like(t, bool)
    np.testing.assert_allclose(match_histogram(s, t, use), t, rtol=0.01)


def test_wrong_inputs():
    ref = np.ones((H, W), np.float32)
    with pytest.raises(InputError):
        synthesize_flat(ref, np.zeros((H + 1, W), bool))
    with pytest.raises(InputError):
        synthesize_flat(ref, np.zeros((H, W), bool), method="multiframe")
    with pytest.raises(InputError):
        synthesize_flat(ref, np.zeros((H, W), bool), method="ai")
    assert np.all(synthesize_flat(ref, np.zeros((H, W), bool)) == 1.0)


@pytest.fixture(scope="module")
def demo():
    return generate_demo(frames=24, width=320, height=240, seed=2, difficulty="normal")


def test_each_method_against_the_demo_truth(demo):
    """Mean |flat - true flat| over the true dust pixels (the figures are in bench/flat_methods.py)."""
    seq = ArraySequence(demo.frames, bit_depth=12)
    ref = compute_reference(seq)
    clean = np.median(demo.clean, axis=0)  # a perfect "AI" clean image, to test the ai path itself
    m = demo.true_mask
    errors = {}
    for method in ("local", "multiframe", "ai"):
        f = synthesize_flat(ref, m, method=method, sequence=seq, clean=clean, grow=2)
        assert np.all(f[~grow(m, 2)] == 1.0)
        errors[method] = float(np.abs(f - demo.true_flat)[m].mean())
    assert errors["local"] < 0.03 and errors["multiframe"] < 0.015 and errors["ai"] < 0.01, errors
    # the sun drifts under fixed dust: the self-flat equations beat any fill from the surroundings
    assert errors["multiframe"] < 0.7 * errors["local"], errors
    # and all far better than no flat at all
    assert all(e < 0.5 * float((1 - demo.true_flat)[m].mean()) for e in errors.values()), errors


def test_multiframe_progress_and_cancel(demo):
    from aiflat_gui.errors import Cancelled

    seq = ArraySequence(demo.frames[:12], bit_depth=12)
    ref = compute_reference(seq)
    seen = []
    synthesize_flat(ref, demo.true_mask, method="multiframe", sequence=seq, grow=2,
                    progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 5

    def cancel(f, m):
        if f > 0.5:
            raise Cancelled()

    with pytest.raises(Cancelled):
        synthesize_flat(ref, demo.true_mask, method="multiframe", sequence=seq, grow=2, progress=cancel)


@pytest.mark.parametrize("seed", [3, 6])
def test_default_method_removes_95_to_105_percent_of_the_dust_on_normal_demos(seed):
    """The acceptance figure on two seeds where the earlier registration failed it (local: 136 % /
    124 %, multiframe: 107 % / 105 %). The frames' drift under the fixed dust does the measuring.
    (bench/flat_methods.py reports seeds 1-8; the closest to a limit is seed 8 at ~95 %.)"""
    from aiflat_gui.core.calibrate import calibrate_array
    from aiflat_gui.core.flat import resolve_method

    demo = generate_demo(frames=32, width=320, height=240, seed=seed, difficulty="normal")
    seq = ArraySequence(demo.frames, bit_depth=12)
    assert resolve_method("auto", seq) == "multiframe"
    ref = compute_reference(seq)
    m = demo.true_mask
    flat = synthesize_flat(ref, m, method="auto", sequence=seq, grow=2)
    assert np.all(flat[~grow(m, 2)] == 1.0)
    cal = calibrate_array(demo.frames, flat, limits=(0.0, 4095.0))
    before = (demo.clean[:, m] - demo.frames[:, m].astype(np.float64)).mean()
    removed = 1.0 - (demo.clean[:, m] - cal[:, m].astype(np.float64)).mean() / before
    assert 0.95 <= removed <= 1.05, removed


def test_auto_is_local_without_enough_frames():
    from aiflat_gui.core.flat import AUTO_MIN_FRAMES, resolve_method

    true, mask = _dust()
    ref = (_scene() * true).astype(np.float32)
    few = ArraySequence(np.stack([ref] * (AUTO_MIN_FRAMES - 1)))
    assert resolve_method("auto", few) == "local" and resolve_method("auto", None) == "local"
    assert resolve_method("local", few) == "local"
    a = synthesize_flat(ref, mask, method="auto", sequence=few, grow=1)
    b = synthesize_flat(ref, mask, method="local", grow=1)
    assert np.array_equal(a, b)


def test_registration_recovers_sub_pixel_shifts_of_moving_texture():
    """The registrar against a reference: known sub-pixel shifts of a granulation-like texture, with
    noise, come back within 0.1 px (median; ECC now and then settles ~0.8 px off here) (OpenCV's phaseCorrelate windows float64 inputs in place; the
    registrar must not let that decay its base frame)."""
    from aiflat_gui.core.flat import _Registrar

    rng = np.random.default_rng(5)
    big = cv2.GaussianBlur(rng.standard_normal((200, 240)).astype(np.float32), (0, 0), 2.0) * 300 + 2000
    shifts = [(0.0, 0.0), (0.4, -0.3), (1.7, 0.9), (-2.2, 1.3), (3.1, -2.6), (0.8, 2.4)]

    def view(dx, dy):
        m = np.float32([[1, 0, dx], [0, 1, dy]])  # feature at x in the base is at x + d here
        out = cv2.warpAffine(big, m, (240, 200), flags=cv2.INTER_CUBIC,
                             borderMode=cv2.BORDER_REFLECT)
        return (out + rng.normal(0, 5, out.shape)).astype(np.float32)[20:180, 20:220]

    base = view(0, 0)
    mask = np.zeros(base.shape, bool)
    mask[70:80, 90:100] = True
    reg = _Registrar(base.shape, mask, "mono", reference=base)
    errors = []
    for _ in range(2):  # twice: the base must not change between calls
        for dx, dy in shifts:
            ex, ey = reg.shift(view(dx, dy))
            errors.append(float(np.hypot(ex - dx, ey - dy)))
    assert np.median(errors) < 0.1 and max(errors) < 1.0, np.round(errors, 3)


def test_local_shifts_follow_seeing_that_bends_the_image():
    """Two halves of the frame moved differently (as seeing does over tens of pixels): the tile
    holding each speck gets its own half's shift, not the global one."""
    from aiflat_gui.core.flat import _LocalShifts

    rng = np.random.default_rng(2)
    big = cv2.GaussianBlur(rng.standard_normal((160, 300)).astype(np.float32), (0, 0), 2.0) * 300 + 2000

    def moved(dx, dy):
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        return cv2.warpAffine(big, m, (300, 160), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)[16:144, 22:278]

    ref = moved(0, 0)
    frame = ref.copy()
    frame[:, :128] = moved(1.5, 0.0)[:, :128]
    frame[:, 128:] = moved(-1.0, 0.5)[:, 128:]
    mask = np.zeros(ref.shape, bool)
    mask[28:36, 26:34] = True  # in the left half's first tile
    mask[90:98, 220:228] = True  # in the right half's last tile
    loc = _LocalShifts(ref, mask, "mono")
    assert loc.n == 2
    got = loc.shifts(frame, (0.25, 0.25))
    tiles = loc.plane_tiles(ref.shape).reshape(ref.shape)
    left, right = tiles[30, 30], tiles[94, 224]
    assert np.allclose(got[left], (1.5, 0.0), atol=0.2), got
    assert np.allclose(got[right], (-1.0, 0.5), atol=0.2), got
    assert tiles[0, 150] == -1  # no dust there: the global shift is used


@pytest.mark.parametrize("max_coarse", [20.0, 0.3])  # 0.3 px: every coarse shift counts as a wrong peak
def test_threaded_registration_gives_the_frame_by_frame_shifts(max_coarse):
    from concurrent.futures import ThreadPoolExecutor

    from aiflat_gui.core.flat import _LocalShifts, _Registrar, register_frames

    d = generate_demo(frames=10, width=320, height=240, seed=4)
    frames = d.frames.astype(np.float32)
    ref = np.median(frames, axis=0)
    grown = d.true_mask

    def fresh():
        reg = _Registrar(ref.shape, grown, "mono", reference=ref)
        reg.MAX_COARSE = max_coarse
        return reg, _LocalShifts(ref, grown, "mono")

    reg, loc = fresh()
    want = np.array([reg.shift(f) for f in frames])
    want_local = np.stack([loc.shifts(f, s) for f, s in zip(frames, want)], axis=1)
    reg, loc = fresh()
    with ThreadPoolExecutor(2) as pool:
        got, got_local = [], []
        for k0 in (0, 4, 8):  # in chunks, as the flat reads frames
            g, gl = register_frames(reg, loc, frames[k0:k0 + 4], pool)
            got.append(g)
            got_local.append(gl)
    assert np.array_equal(np.concatenate(got), want)
    assert np.array_equal(np.concatenate(got_local, axis=1), want_local)
    true = d.shifts[:, :2].astype(np.float64)  # relative to frame 0; ours to the median reference
    assert np.abs((want - want.mean(0)) - (true - true.mean(0))).max() < 0.75  # the sun's drift


def test_the_aiflat_demo_default_through_the_command_line_removes_95_to_105_percent(tmp_path):
    """The acceptance case as a user meets it: `aiflat demo` with its defaults (640x480, 48 frames,
    seed 1), then `aiflat calibrate --mask truth_mask.png`. Registering against the temporal median
    alone left it at 94.8 %; against the aligned mean of the frames it is ~98.7 %."""
    from aiflat_gui.cli import main
    from aiflat_gui.io import open_sequence

    assert main(["-q", "demo", str(tmp_path / "d")]) == 0
    d = tmp_path / "d"
    assert main(["-q", "calibrate", str(d / "demo.ser"), "--mask", str(d / "truth_mask.png"),
                 "-o", str(tmp_path / "c.ser")]) == 0
    from astropy.io import fits

    clean = fits.getdata(d / "clean.fits").astype(np.float64)
    m = read_mask_png(d / "truth_mask.png")
    with open_sequence(d / "demo.ser") as raw, open_sequence(tmp_path / "c.ser") as cal:
        r = np.stack([raw.frame(i) for i in range(raw.n_frames)]).astype(np.float64)
        c = np.stack([cal.frame(i) for i in range(cal.n_frames)]).astype(np.float64)
    before = (clean[:, m] - r[:, m]).mean()
    removed = 1.0 - (clean[:, m] - c[:, m]).mean() / before
    assert 0.95 <= removed <= 1.05, removed


def read_mask_png(path):
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 127


def test_multiframe_flat_in_poor_seeing_on_physics_made_video():
    """Issue 10 item 4: the true mask, a dustsim sun (sunspot, plage, filaments, pores) drifting
    under 3 px rms of local seeing warp that changes every frame: the calibrated video keeps at
    least 97 % of the dust's darkening removed (it over-corrects today: 103.8 % here; held-out
    seeds in bench/flat_seeing.py), and nothing outside the grown mask changes, bit for bit."""
    from aiflat_gui.core.calibrate import calibrate_array
    from aiflat_gui.core.dustsim import TUNING_SEEDS, SimSpec, simulate
    from aiflat_gui.core.mask import grow
    from aiflat_gui.core.reference import compute_reference
    from aiflat_gui.io import ArraySequence

    sim = simulate(SimSpec(width=320, height=240, frames=32, seed=TUNING_SEEDS[0], background="sun", seeing_px=3.0,
                           drift_px=0.4, jitter_px=0.3, seeing_blur=(1.0, 2.2)))
    seq = ArraySequence(sim.frames)
    flat = synthesize_flat(compute_reference(seq), sim.mask, method="auto", sequence=seq, grow=2)
    g = grow(sim.mask, 2)
    assert np.all(flat[~g] == 1.0)
    on = np.isin(sim.labels, [s.label for s in sim.specks if s.on_target >= 0.5])
    dark = left = 0.0
    for i in range(sim.n_frames):
        raw = sim.frame(i)
        cal = calibrate_array(raw, flat)
        np.testing.assert_array_equal(cal[~g], raw[~g])
        clean = sim.clean(i).astype(np.float64)
        dark += float((clean - raw)[on].sum())
        left += float((clean - cal)[on].sum())
    removed = 1.0 - left / dark
    assert 0.97 <= removed <= 1.06, removed


def test_multiframe_with_a_reader_that_reuses_its_frame_buffer_gives_the_same_flat(demo):
    """The multiframe pass keeps the frames as the reader gives them (views of a memory map) and
    converts only its registration copy: a reader that decodes every frame into one reused buffer
    (not memory-mapped) must give the flat of the same frames in memory, bit for bit. OpenCV's own
    thread count, lowered during the frame passes, is restored, also after a cancel."""
    from aiflat_gui.errors import Cancelled

    frames = demo.frames[:12].astype(np.uint16)
    mapped = ArraySequence(frames, bit_depth=12)

    class Decoder(ArraySequence):  # one buffer, overwritten by every frame() call
        def __init__(self, data):
            super().__init__(data, bit_depth=12)
            self.memmapped = False
            self._buf = np.empty_like(data[0])

        def _read_frame(self, i):
            self._buf[...] = self._data[i]
            return self._buf

    ref = compute_reference(mapped)
    threads = cv2.getNumThreads()
    want = synthesize_flat(ref, demo.true_mask, method="multiframe", sequence=mapped, grow=2)
    got = synthesize_flat(ref, demo.true_mask, method="multiframe", sequence=Decoder(frames), grow=2)
    assert np.array_equal(got, want)
    assert (want != 1.0).any()
    assert cv2.getNumThreads() == threads

    def cancel(f, m):
        if f > 0.3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        synthesize_flat(ref, demo.true_mask, method="multiframe", sequence=Decoder(frames), grow=2, progress=cancel)
    assert cv2.getNumThreads() == threads


def test_opencv_threads_are_restored_when_flats_overlap():
    """Two flats built at once (the GUI's worker threads): whichever finishes first, OpenCV's own
    thread count is back to what it was once both are done, and stays lowered while either runs."""
    from aiflat_gui.core.flat import _opencv_threads

    before = cv2.getNumThreads()
    a, b = _opencv_threads(1), _opencv_threads(1)
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)  # the first one in leaves first
    assert cv2.getNumThreads() == 1
    b.__exit__(None, None, None)
    assert cv2.getNumThreads() == before

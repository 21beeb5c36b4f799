"""Display stretches: STF maths, LUTs, fast apply paths, debayer for display. Never modifies data."""

import hashlib

import numpy as np
import pytest

from aiflat_gui.core import stretch as S
from aiflat_gui.core.stretch import StretchState
from aiflat_gui.errors import InputError


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() + str(a.dtype) + str(a.shape)


def test_state_rejects_unknown_mode_and_keeps_levels_ordered():
    with pytest.raises(InputError, match="unknown stretch mode"):
        StretchState(mode="sqrtish")
    st = StretchState(black=5, white=5)
    b, w = st.levels
    assert b == 5 and w > b
    assert st.copy(mode="log").mode == "log" and st.mode == "linear"


def test_auto_levels_percentiles_on_known_ramp():
    img = np.arange(100_000, dtype=np.uint16).reshape(250, 400) % 10_000
    lo, hi = S.auto_levels(img, 1.0, 99.0)
    assert abs(lo - 100) < 30 and abs(hi - 9900) < 30
    flat = np.full((50, 50), 7, np.uint16)
    lo, hi = S.auto_levels(flat)
    assert lo == 7 and hi > lo


def test_mtf_fixed_points():
    for m in (0.05, 0.25, 0.5, 0.8):
        assert S.mtf(m, 0.0) == 0.0
        assert S.mtf(m, 1.0) == 1.0
        assert S.mtf(m, m) == pytest.approx(0.5)
    assert S.mtf(0.5, 0.3) == pytest.approx(0.3)


def test_stf_puts_the_background_median_at_quarter_brightness():
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(1000, 50, size=(400, 600)), 0, 65535).astype(np.uint16)
    img[100:120, 100:300] = 30000  # a bright feature sets the white point
    st = S.stf_auto(img)
    assert st.mode == "auto"
    med = float(np.median(img))
    madn = 1.4826 * float(np.median(np.abs(img.astype(float) - med)))
    assert st.black == pytest.approx(med - 2.8 * madn, abs=15)
    assert st.white == pytest.approx(30000, abs=1)
    t = (med - st.black) / (st.white - st.black)
    assert S.curve(st, t) == pytest.approx(0.25, abs=0.01)
    shown = S.apply(img, st)
    assert abs(float(np.median(shown)) - 0.25 * 255) <= 3
    # a darker target background gives a darker screen
    darker = S.stf_auto(img, target_background=0.1)
    assert np.median(S.apply(img, darker)) < np.median(shown)


@pytest.mark.parametrize("mode", S.MODES)
def test_lut_is_monotonic_full_range_and_sized(mode):
    for params in ({}, {"gamma": 0.5, "asinh_beta": 0.5, "log_a": 2, "midtone": 0.9},
                   {"gamma": 4.0, "asinh_beta": 500, "log_a": 1e4, "midtone": 0.02}):
        st = StretchState(mode=mode, **params)
        lut = S.make_lut(st)
        assert lut.dtype == np.uint8 and lut.shape == (256,)
        assert np.all(np.diff(lut.astype(int)) >= 0)
        assert lut[0] == 0 and lut[-1] == 255
    lut16 = S.make_lut(StretchState(mode=mode), np.uint16, n=1024)
    assert lut16.shape == (1024,) and lut16[-1] == 65535
    lutf = S.make_lut(StretchState(mode=mode), np.float32, n=16)
    assert lutf.dtype == np.float32 and lutf[-1] == pytest.approx(1.0)


def test_nonlinear_modes_lift_the_midtones_and_linear_does_not():
    mid = {m: int(S.make_lut(StretchState(mode=m, midtone=0.2))[128]) for m in S.MODES}
    assert abs(mid["linear"] - 128) <= 1
    for m in ("auto", "asinh", "log", "gamma"):
        assert mid[m] > 150, m
    with pytest.raises(InputError):
        S.make_lut(StretchState(), n=1)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64, np.int16])
@pytest.mark.parametrize("mode", ["linear", "asinh", "auto"])
def test_apply_matches_lut_and_never_modifies_data(dtype, mode):
    rng = np.random.default_rng(1)
    top = 255 if dtype == np.uint8 else (1.0 if np.dtype(dtype).kind == "f" else 30000)
    img = (rng.random((64, 96)) * top).astype(dtype)
    before = digest(img)
    st = StretchState(mode=mode, black=0.1 * top, white=0.9 * top, midtone=0.3)
    out = S.apply(img, st)
    assert digest(img) == before
    assert out.dtype == np.uint8 and out.shape == img.shape
    # reference: direct evaluation of the curve
    t = (img.astype(np.float64) - st.black) / (st.white - st.black)
    ref = np.round(S.curve(st, t) * 255)
    assert np.max(np.abs(out.astype(int) - ref)) <= 2
    assert out[img <= st.black].max(initial=0) == 0
    assert out[img >= st.white].min(initial=255) == 255
    # display_args / to_display_rgb / auto / histogram do not touch it either
    S.display_args(img, "mono", st)
    S.stf_auto(img)
    S.auto_levels(img)
    S.histogram(img)
    assert digest(img) == before


def test_apply_handles_nan_and_colour():
    img = np.array([[np.nan, 0.0, 0.5, 1.0, np.inf]], np.float32)
    out = S.apply(img, StretchState(black=0, white=1))
    assert out[0, 0] == 0 and out[0, 1] == 0 and out[0, 2] in (127, 128) and out[0, 3:].tolist() == [255, 255]
    fast = S.apply_fast(img, StretchState(black=0, white=1))
    assert fast.tolist() == [[0, 0, 128, 255, 255]]
    rgb = np.zeros((4, 4, 3), np.uint16)
    rgb[..., 0] = 60000
    shown = S.apply(rgb, StretchState(black=0, white=60000))
    assert shown.shape == (4, 4, 3) and shown[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64, np.int64])
def test_apply_fast_is_the_8bit_index_lut_route_and_never_modifies_data(dtype):
    rng = np.random.default_rng(2)
    top = 250 if dtype in (np.uint8, np.int16) else 60000
    img = (rng.random((40, 50, 3)) * top).astype(dtype)
    views = [img, img[..., ::-1], img[..., 0], img[::2, ::3]]
    for st in (StretchState(black=0.1 * top, white=0.8 * top),
               StretchState(mode="asinh", black=-3, white=0.5 * top, asinh_beta=30),
               StretchState(mode="auto", black=0.2 * top, white=top, midtone=0.1)):
        for v in views:
            before = digest(v)
            out = S.apply_fast(v, st)
            assert digest(v) == before
            assert out.shape == v.shape and out.dtype == np.uint8
            t = (v.astype(np.float64) - st.black) / (st.white - st.black)
            i = np.clip(np.round(t * 255), 0, 255).astype(int)
            lut = S.make_lut(st)
            # the 8-bit index may round the other way at a tie: within one LUT step either side
            assert np.all(out >= lut[np.clip(i - 1, 0, 255)]) and np.all(out <= lut[np.clip(i + 1, 0, 255)])
            # and within display precision of the exact route
            assert np.abs(out.astype(int) - S.apply(v, st).astype(int)).max() <= 12


def test_mono_display_args_hand_raw_data_to_pyqtgraph():
    img = np.arange(12, dtype=np.uint16).reshape(3, 4)
    data, levels, lut = S.display_args(img, "mono", StretchState(mode="log", black=1, white=9))
    assert data is img
    assert levels == (1.0, 9.0) and lut.shape == (256,)
    data, levels, lut = S.display_args(np.dstack([img] * 3), "RGB", StretchState(black=0, white=11))
    assert data.dtype == np.uint8 and data.shape == (3, 4, 3) and lut is None


# red / blue sites of each 2x2 pattern (row, col)
SITES = {"RGGB": ((0, 0), (1, 1)), "GRBG": ((0, 1), (1, 0)), "GBRG": ((1, 0), (0, 1)), "BGGR": ((1, 1), (0, 0))}


def cfa_of(rgb: tuple[int, int, int], pattern: str, h=16, w=20, dtype=np.uint16) -> np.ndarray:
    """The raw CFA frame a uniform colour ``rgb`` produces under ``pattern``."""
    r_site, b_site = SITES[pattern]
    cfa = np.full((h, w), rgb[1], dtype)
    cfa[r_site[0]::2, r_site[1]::2] = rgb[0]
    cfa[b_site[0]::2, b_site[1]::2] = rgb[2]
    return cfa


@pytest.mark.parametrize("pattern", sorted(SITES))
def test_debayer_for_display_recovers_colours_for_every_pattern(pattern):
    for colour in ((1000, 0, 0), (0, 0, 1000), (0, 1000, 0), (100, 200, 300)):
        cfa = cfa_of(colour, pattern)
        before = digest(cfa)
        rgb = S.debayer_for_display(cfa, pattern)
        assert digest(cfa) == before
        assert rgb.shape == (16, 20, 3) and rgb.dtype == np.uint16
        assert rgb[8, 10].tolist() == list(colour), (pattern, colour)
    f = cfa_of((0.8, 0.1, 0.2), pattern, dtype=np.float32)
    rgbf = S.debayer_for_display(f, pattern)
    assert rgbf.dtype == np.float32
    assert np.allclose(rgbf[8, 10], (0.8, 0.1, 0.2), atol=1e-3)


@pytest.mark.parametrize("pattern", sorted(SITES))
def test_stretch_bayer_for_display_matches_demosaic_then_stretch(pattern):
    st = StretchState(mode="asinh", black=50, white=900, asinh_beta=8)
    for colour in ((800, 100, 300), (60, 700, 90)):
        cfa = cfa_of(colour, pattern)
        before = digest(cfa)
        out = S.stretch_bayer_for_display(cfa, pattern, st)
        assert digest(cfa) == before and out.dtype == np.uint8 and out.shape == (16, 20, 3)
        ref = S.apply_fast(S.debayer_for_display(cfa, pattern), st)
        assert out[8, 10].tolist() == ref[8, 10].tolist()
    # on a smooth scene the two orders agree within a few display levels
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:64, 0:64]
    smooth = (200 + 5 * xx + 3 * yy).astype(np.uint16)
    cfa = smooth + (rng.random((64, 64)) * 4).astype(np.uint16)
    diff = S.stretch_bayer_for_display(cfa, pattern, st).astype(int) - \
        S.apply_fast(S.debayer_for_display(cfa, pattern), st).astype(int)
    assert np.abs(diff[2:-2, 2:-2]).max() <= 3
    with pytest.raises(InputError):
        S.stretch_bayer_for_display(cfa, "XYZW", st)


def test_debayer_rejects_bad_input():
    with pytest.raises(InputError, match="Bayer pattern"):
        S.debayer_for_display(np.zeros((4, 4), np.uint16), "RGBX")
    with pytest.raises(InputError, match="2-D"):
        S.debayer_for_display(np.zeros((4, 4, 3), np.uint16), "RGGB")


def test_to_display_rgb_layouts():
    mono = np.arange(20, dtype=np.uint16).reshape(4, 5)
    out, colour = S.to_display_rgb(mono, "mono")
    assert out is mono and not colour
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 200  # blue stored first
    before = digest(bgr)
    out, colour = S.to_display_rgb(bgr, "BGR")
    assert colour and out[0, 0].tolist() == [0, 0, 200] and np.shares_memory(out, bgr)
    out, colour = S.to_display_rgb(bgr, "RGB")
    assert out[0, 0].tolist() == [200, 0, 0]
    assert digest(bgr) == before
    out, colour = S.to_display_rgb(cfa_of((0, 0, 900), "GRBG"), "grbg")
    assert colour and out[8, 10].tolist() == [0, 0, 900]
    with pytest.raises(InputError):
        S.to_display_rgb(np.zeros((2, 2, 2)), "RGB")


def test_statistics_sample_every_bayer_colour():
    # a 1024x1024 CFA needs subsampling; an even stride would only ever see one colour
    cfa = cfa_of((100, 200, 300), "RGGB", h=1024, w=1024)
    lo, hi = S.auto_levels(cfa, 0.0, 100.0)
    assert lo == 100 and hi == 300
    counts, edges = S.histogram(cfa, bins=3)
    assert counts.sum() == S.sample_values(cfa).size and np.all(counts > 0)


def test_visualize_dust_shows_a_faint_shadow_on_a_bright_uneven_disk():
    from aiflat_gui.core.stretch import visualize_dust

    h, w = 240, 320
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(xx - 160, yy - 120)
    disk = np.where(r < 110, 3000.0 * (1 - 0.5 * (r / 110) ** 2), 50.0)   # limb darkening, dark sky
    shadow = 1 - 0.02 * np.exp(-((xx - 120) ** 2 + (yy - 100) ** 2) / (2 * 4.0 ** 2))  # a 2 % speck
    rng = np.random.default_rng(0)
    img = (disk * shadow + rng.normal(0, 3, (h, w))).astype(np.uint16)
    before = img.copy()
    ratio, (lo, hi) = visualize_dust(img)
    assert np.array_equal(img, before)  # display only
    assert ratio.dtype == np.float32 and ratio.shape == (h, w)
    # the clean surface is flat (within 1 %) despite the 50 % limb darkening; the speck is far
    # below it; the sky is neutral
    clean = ratio[(r < 90) & (np.hypot(xx - 120, yy - 100) > 20)]
    med = float(np.median(clean))
    assert abs(med - 1) < 0.01 and float(clean.std()) < 0.004
    assert ratio[100, 120] < med - 0.012
    assert np.all(ratio[r > 120] == 1.0)
    # the levels make it black: the shadow is below the black point, the surface mid-grey
    assert ratio[100, 120] < lo < med < hi < 1.03
    # colour and Bayer inputs give the same kind of answer
    rgb = np.repeat(img[..., None], 3, axis=2)
    assert visualize_dust(rgb, "RGB")[0][100, 120] < med - 0.012
    assert visualize_dust(img, "RGGB")[0][100, 120] < med - 0.008

"""Flat export: each target program's documented formula, reproduced in numpy on the exported file,
gives back our own calibration (up to the format's quantisation and, for the programs that
normalise the flat by its mean, one global constant: that mean)."""

import numpy as np
import pytest
import tifffile
from astropy.io import fits

from aiflat_gui.core.calibrate import calibrate_array
from aiflat_gui.core.export import PIXINSIGHT_RANGE
from aiflat_gui.pipeline import export_flat
from aiflat_gui.errors import InputError
from aiflat_gui.io.single import read_image

H, W = 90, 120


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:H, :W]
    flat = np.ones((H, W), np.float32)
    for cx, cy, r, depth in ((30, 45, 7, 0.35), (60, 40, 5, 0.2), (95, 70, 9, 0.5)):  # one in the centre third
        d = np.hypot(xx - cx, yy - cy)
        flat[d <= r] = np.float32(1 - depth * (1 - (d[d <= r] / (r + 1)) ** 2))
    raw = rng.integers(500, 4000, size=(3, H, W)).astype(np.uint16)
    ours = calibrate_array(raw.astype(np.float64), flat)  # our calibration, before rounding
    return flat, raw.astype(np.float64), ours


def _fits(path):
    with fits.open(path) as h:
        return h[0].data.astype(np.float64), h[0].header


def test_pixelmath_is_exactly_ours(data, tmp_path):
    flat, raw, ours = data
    ff, hdr = _fits(export_flat(flat, "pixelmath", tmp_path / "pm.fits"))
    assert hdr["BITPIX"] == -32 and hdr["ROWORDER"] == "TOP-DOWN"
    np.testing.assert_allclose(raw / ff, ours, rtol=1e-6)  # PixelMath: $T / flat


def test_pixinsight_mean_normalisation_and_the_trap(data, tmp_path):
    flat, raw, ours = data
    ff, _ = _fits(export_flat(flat, "pixinsight", tmp_path / "pi.fits"))
    lo, hi = PIXINSIGHT_RANGE

    def imagecalibration(f):  # out = raw * s / flat, s = mean of flat values inside (lo, hi)
        s = f[(f > lo) & (f < hi)].mean()
        return raw * s / f

    out = imagecalibration(ff)
    m = float(flat.astype(np.float64).mean())
    np.testing.assert_allclose(out, ours * m, rtol=1e-6)
    assert 0.98 < m < 1.0  # one global constant (1 - dust area x depth), no change of structure
    ratio = out / ours
    assert ratio.std() < 1e-6
    # the trap: the flat written as is (1.0 outside) -> s from the dust pixels only
    trap = imagecalibration(flat.astype(np.float64))
    assert (trap / ours).mean() < 0.85


def test_pixinsight_19_trimmed_mean_gives_ours_exactly(data, tmp_path):
    """ImageCalibration 1.9.x (PixInsight's published source; PixInsight cannot run here) scales the
    flat by a trimmed mean, 5 % cut at each end by default. With dust on < 5 % of the pixels every
    remaining value of our halved flat is 0.5, so s / flat_file = 1 / flat: our calibration."""
    flat, raw, ours = data
    ff, _ = _fits(export_flat(flat, "pixinsight", tmp_path / "pi.fits"))
    assert (flat < 1).mean() < 0.05
    v = np.sort(ff.ravel())
    cut = int(round(0.05 * v.size))
    s = v[cut: v.size - cut].mean()
    assert s == 0.5
    np.testing.assert_allclose(raw * s / ff, ours, rtol=1e-6)


@pytest.mark.parametrize("lights, flipped", [(None, True), ("ser", True), ("avi", True),
                                              ("fits-bottom-up", True), ("fits-top-down", False)])
def test_siril_flat_rows_in_the_order_siril_reads_the_lights(data, tmp_path, lights, flipped):
    """Siril 1.0.6 reads SER/AVI frames bottom-up and FITS lights and flats in stored order
    (tests/test_siril.py runs it): the Siril flat is stored flipped for SER, AVI and bottom-up FITS
    lights, with a ROWORDER card that tells the truth, so our reader shows it the right way up."""
    flat, _, _ = data
    out = export_flat(flat, "siril", tmp_path / "si.fits", lights=lights)
    stored, hdr = _fits(out)
    assert hdr["ROWORDER"] == ("BOTTOM-UP" if flipped else "TOP-DOWN")
    assert np.array_equal(stored, (flat[::-1] if flipped else flat).astype(np.float64))
    assert np.array_equal(read_image(out), flat)
    for other in ("pixelmath", "pixinsight"):  # they honour ROWORDER: stored top-down as before
        _, h = _fits(export_flat(flat, other, tmp_path / f"{other}.fits", lights=lights))
        assert h["ROWORDER"] == "TOP-DOWN"


def test_lights_from_a_file(tmp_path):
    from aiflat_gui.pipeline import lights_kind
    from aiflat_gui.io.ser import write_ser

    frames = np.zeros((2, 4, 6), np.uint16)
    write_ser(tmp_path / "v.ser", frames, color="mono")
    assert lights_kind(str(tmp_path / "v.ser")) == "ser"
    for order in ("TOP-DOWN", "BOTTOM-UP"):
        fits.PrimaryHDU(frames[0], header=fits.Header([("ROWORDER", order)])).writeto(tmp_path / f"{order}.fits")
        assert lights_kind(tmp_path / f"{order}.fits") == f"fits-{order.lower()}"
    with pytest.raises(InputError):
        lights_kind(str(tmp_path / "missing.ser"))


def test_siril_central_third(data, tmp_path):
    flat, raw, ours = data
    ff, hdr = _fits(export_flat(flat, "siril", tmp_path / "si.fits", lights="fits-top-down"))
    assert hdr["ROWORDER"] == "TOP-DOWN"
    k = ff[H // 3: 2 * H // 3, W // 3: 2 * W // 3].mean()  # out = k * raw / flat
    out = k * raw / ff
    kc = float(flat[H // 3: 2 * H // 3, W // 3: 2 * W // 3].astype(np.float64).mean())
    np.testing.assert_allclose(out, ours * kc, rtol=1e-6)
    assert 0.99 < kc <= 1.0


@pytest.mark.parametrize("target", ["pss", "autostakkert"])
def test_16bit_tiff_targets(data, tmp_path, target):
    flat, raw, ours = data
    p = export_flat(flat, target, tmp_path / f"{target}.tif")
    ff = tifffile.imread(p)
    assert ff.dtype == np.uint16 and ff.max() == 65535
    quant = 0.5 / (65535 * flat.min())  # relative quantisation of the darkest flat value
    # direct division by the 65535 = 1.0 image: ours within the quantisation
    np.testing.assert_allclose(raw / (ff / 65535.0), ours, rtol=quant)
    # PlanetarySystemStacker: frame * mean(flat) / flat (scale-free)
    out = raw * ff.astype(np.float64).mean() / ff
    np.testing.assert_allclose(out, ours * float(flat.astype(np.float64).mean()), rtol=quant + 1e-6)


def test_pss_float_fits_trap_is_why_we_write_tiff(data):
    flat, raw, ours = data
    rounded = np.rint(flat).astype(np.uint16)  # what PSS does to a float FITS flat
    assert set(np.unique(rounded)) <= {0, 1}


def test_colour_flat_per_channel(tmp_path):
    flat = np.ones((20, 30, 3), np.float32)
    flat[5:9, 5:9] = [0.5, 0.6, 0.7]
    ff, _ = _fits(export_flat(flat, "pixinsight", tmp_path / "c.fits"))
    assert ff.shape == (3, 20, 30)
    np.testing.assert_allclose(np.moveaxis(ff, 0, -1), flat * 0.5, rtol=1e-7)
    back = read_image(export_flat(flat, "pss", tmp_path / "c.tif"))
    assert back.shape == (20, 30, 3) and back[6, 6].tolist() == [32768, 39321, 45874]


def test_wrong_extension_and_bad_flats(tmp_path):
    flat = np.ones((10, 10), np.float32)
    with pytest.raises(InputError, match="fits"):
        export_flat(flat, "pixinsight", tmp_path / "x.tif")
    with pytest.raises(InputError, match="tif"):
        export_flat(flat, "pss", tmp_path / "x.fits")
    with pytest.raises(InputError, match="non-finite"):
        export_flat(np.full((4, 4), np.nan, np.float32), "siril", tmp_path / "x.fits")
    with pytest.raises(InputError, match="<= 0"):
        export_flat(np.zeros((4, 4), np.float32), "siril", tmp_path / "x.fits")
    with pytest.raises(InputError):
        export_flat(flat, "photoshop", tmp_path / "x.fits")
    assert list(tmp_path.iterdir()) == []


def test_pss_own_calibration_code_path_on_the_demo_ser(tmp_path):
    """PlanetarySystemStacker's flat calibration, step by step as its source does it (PSS 0.9.8.2,
    planetary_system_stacker/frames.py: ``Frames.read_image`` reads a .tif with
    ``cv2.imread(name, IMREAD_UNCHANGED)`` (FITS flats are flipped and float ones rounded: why we
    write TIFF); ``Calibration.create_master_flat``: ``average_flat = average(flat).astype(uint16)``,
    ``inverse = (average_flat / flat).astype(float32)``; ``Calibration.correct``:
    ``(frame * inverse).astype(frame.dtype)``, truncating). The package itself cannot be installed
    here: it pins numpy < 1.23 and needs PyQt5. Its SER reader keeps the file's top-down rows, so the
    flat is written top-down. Figures: >= 90 % of the darkening removed; off the dust PSS scales the
    whole frame by average_flat / 65535 and truncates, so after that one factor pixels move <= 1 ADU."""
    import cv2

    from aiflat_gui.io.demo import write_demo
    from aiflat_gui.io import open_sequence

    paths = write_demo(tmp_path / "d", frames=8, width=160, height=120, seed=1)
    with open_sequence(paths["sequence"]) as seq:
        frames = seq[:]
    clean = fits.getdata(paths["clean"]).astype(np.float64)
    truth = fits.getdata(paths["flat"]).astype(np.float32)
    master = cv2.imread(str(export_flat(truth, "pss", tmp_path / "flat_pss.tif")), cv2.IMREAD_UNCHANGED)
    assert master.dtype == np.uint16 and master.shape == truth.shape
    average_flat = np.average(master).astype(np.uint16)
    inverse = (average_flat / master).astype(np.float32)
    out = np.stack([(f * inverse).astype(f.dtype) for f in frames]).astype(np.float64)
    raw = frames.astype(np.float64)
    scale = float(average_flat) / 65535
    dust, off = truth < 0.99, truth == 1.0
    removed = 1 - (clean - out / scale)[:, dust].sum() / (clean - raw)[:, dust].sum()
    off_change = np.abs(out / scale - raw)[:, off].max()
    print(f"PSS formula: {removed:.1%} removed, off-dust {off_change:.2f} ADU after its scale {scale:.5f}")
    assert removed >= 0.90 and off_change <= 1.0 / scale + 1e-9  # its truncation: at most 1 ADU

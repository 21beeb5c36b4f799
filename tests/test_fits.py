"""FITS reader/writer: cubes, FITSEQ, colour, folders, BZERO per frame without loading, ROWORDER,
BAYERPAT, timestamps, exact round trips, bad files."""

import tracemalloc
import warnings

import numpy as np
import pytest
from astropy.io import fits

from aiflat_gui.errors import FormatError, InputError
from aiflat_gui.io import ArraySequence, open_sequence, open_writer
from aiflat_gui.io.fits import (FitsFolderSequence, FitsSequence, date_to_ticks, natural_key, shift_bayer,
                                ticks_to_date)

T0 = 638500000000000000  # 2024 in SER ticks


@pytest.fixture
def rng():
    return np.random.default_rng(3)


def write_copy(seq, out, fmt="fits", **opts):
    with open_writer(out, fmt, seq, **opts) as w:
        for i in range(seq.n_frames):
            w.write(seq.frame(i), index=i)
    return out


def astropy_write(path, hdus):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits.HDUList(hdus).writeto(path, overwrite=True)


# -- reading files written by astropy (as Siril/others would) -------------------------------------------

def test_uint16_cube_is_read_frame_by_frame_from_a_memmap(tmp_path, rng):
    cube = rng.integers(0, 65536, (40, 64, 96), dtype=np.uint16)
    p = tmp_path / "cube.fits"
    astropy_write(p, [fits.PrimaryHDU(cube)])
    assert fits.getheader(p)["BZERO"] == 32768 and fits.getheader(p)["BITPIX"] == 16
    tracemalloc.start()
    try:
        seq = open_sequence(p)
        f7 = seq.frame(7)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < cube.nbytes / 8, f"opening + one frame allocated {peak} bytes for a {cube.nbytes}-byte cube"
    assert isinstance(seq, FitsSequence) and seq.metadata["layout"] == "cube"
    assert isinstance(seq._mm, np.memmap) and np.shares_memory(seq._raw(7), seq._mm)
    assert seq._raw(7).dtype == np.dtype(">i2")  # raw int16 from the map; sign bit flipped per frame
    assert f7.dtype == np.uint16 and f7.dtype.isnative and np.array_equal(f7, cube[7])
    assert (seq.n_frames, seq.height, seq.width, seq.channels, seq.color) == (40, 64, 96, 1, "mono")
    assert np.array_equal(seq.frame_rows(39, 10, 20), cube[39, 10:20])
    assert np.array_equal(seq[:], cube)
    seq.close()


def test_fitseq_one_image_per_hdu_with_date_obs(tmp_path, rng):
    frames = rng.integers(0, 256, (4, 6, 5), dtype=np.uint8)
    dates = ["2024-04-08T18:00:00.1234567", "2024-04-08T18:00:00.2", "2024-04-08T18:00:01", "2024-04-08T18:00:02.5"]
    hdus = [fits.PrimaryHDU(frames[0])] + [fits.ImageHDU(f) for f in frames[1:]]
    for h, d in zip(hdus, dates):
        h.header["DATE-OBS"] = d
    p = tmp_path / "seq.fit"
    astropy_write(p, hdus)
    with open_sequence(p) as seq:
        assert seq.metadata["layout"] == "hdus" and seq.n_frames == 4 and seq.dtype == np.uint8
        assert np.array_equal(seq[:], frames)
        assert list(seq.timestamps) == [date_to_ticks(d) for d in dates]
        assert seq.timestamps[0] % 10_000_000 == 1234567  # 100 ns kept
        assert seq.describe()["timestamps"]["first"].startswith("2024-04-08T18:00:00.123456")


def test_three_plane_cube_colour_or_frames(tmp_path, rng):
    planes = rng.integers(0, 65536, (3, 5, 7), dtype=np.uint16)
    p = tmp_path / "rgb.fits"
    astropy_write(p, [fits.PrimaryHDU(planes)])
    with open_sequence(p) as seq:  # no hint: the Siril/PixInsight colour convention
        assert seq.n_frames == 1 and seq.color == "RGB" and seq.frame_shape == (5, 7, 3)
        assert np.array_equal(seq.frame(0), np.moveaxis(planes, 0, -1))
    with open_sequence(p, fits_cube="frames") as seq:
        assert seq.n_frames == 3 and np.array_equal(seq[:], planes)
    h = fits.PrimaryHDU(planes)
    h.header["CTYPE3"] = "TIME"
    astropy_write(p, [h])
    with open_sequence(p) as seq:
        assert seq.n_frames == 3 and seq.color == "mono"
    h.header["CTYPE3"] = "RGB"
    astropy_write(p, [h])
    with open_sequence(p) as seq:
        assert seq.color == "RGB"
    four = rng.integers(0, 65536, (4, 5, 7), dtype=np.uint16)
    astropy_write(p, [fits.PrimaryHDU(four)])
    with open_sequence(p) as seq:
        assert seq.n_frames == 4 and seq.color == "mono"


def test_roworder_bottom_up_is_flipped(tmp_path, rng):
    img = rng.integers(0, 65536, (2, 6, 4), dtype=np.uint16)
    h = fits.PrimaryHDU(img)
    h.header["ROWORDER"] = "BOTTOM-UP"
    p = tmp_path / "bu.fits"
    astropy_write(p, [h])
    with open_sequence(p) as seq:
        assert np.array_equal(seq[:], img[:, ::-1])
        assert np.array_equal(seq.frame_rows(1, 0, 2), img[1, ::-1][0:2])


@pytest.mark.parametrize("pat,dx,dy,expected", [("RGGB", 0, 0, "RGGB"), ("RGGB", 1, 0, "GRBG"),
                                                ("RGGB", 0, 1, "GBRG"), ("RGGB", 1, 1, "BGGR"),
                                                ("GBRG", 1, 0, "BGGR")])
def test_bayerpat_and_offsets(tmp_path, rng, pat, dx, dy, expected):
    assert shift_bayer(pat, dx, dy) == expected
    h = fits.PrimaryHDU(rng.integers(0, 4096, (4, 6), dtype=np.uint16))
    h.header["BAYERPAT"] = pat
    h.header["XBAYROFF"] = dx
    h.header["YBAYROFF"] = dy
    p = tmp_path / "bayer.fits"
    astropy_write(p, [h])
    with open_sequence(p) as seq:
        assert seq.color == expected and seq.is_bayer and seq.channels == 1


def test_sample_types(tmp_path, rng):
    p = tmp_path / "t.fits"
    f32 = rng.random((2, 3, 4)).astype(np.float32)
    astropy_write(p, [fits.PrimaryHDU(f32)])
    with open_sequence(p) as seq:
        assert seq.dtype == np.float32 and seq.bit_depth == 32 and np.array_equal(seq[:], f32)
    i16 = np.array([[[-5, 0, 100, 32767]]], dtype=np.int16)
    astropy_write(p, [fits.PrimaryHDU(np.repeat(i16, 2, axis=1))])
    with open_sequence(p) as seq:
        assert seq.dtype == np.uint16 and list(seq.frame(0)[0]) == [0, 0, 100, 32767]
        assert any("negative" in w for w in seq.warnings)
    h = fits.PrimaryHDU(np.arange(12, dtype=np.int16).reshape(3, 4))
    h.header["BSCALE"] = 0.5
    h.header["BZERO"] = 10.0
    astropy_write(p, [h])
    with fits.open(p, do_not_scale_image_data=True) as hd:
        stored = hd[0].data.astype(float)
    with open_sequence(p) as seq:
        assert seq.dtype == np.float32 and np.allclose(seq.frame(0), stored * 0.5 + 10)


def test_truncated_and_garbage_files(tmp_path, rng):
    cube = rng.integers(0, 65536, (5, 16, 18), dtype=np.uint16)
    p = tmp_path / "cube.fits"
    astropy_write(p, [fits.PrimaryHDU(cube)])
    raw = p.read_bytes()
    frame = 16 * 18 * 2
    cut = tmp_path / "cut.fits"
    cut.write_bytes(raw[: 2880 + 3 * frame + 100])
    with open_sequence(cut) as seq:
        assert seq.n_frames == 3 and np.array_equal(seq[:], cube[:3])
        assert any("truncated" in w for w in seq.warnings)
    cut.write_bytes(raw[: 2880 + 50])
    with pytest.raises(FormatError, match="truncated"):
        open_sequence(cut)
    for name, content in (("head.fits", raw[:1000]), ("junk.fits", rng.bytes(6000)), ("empty.fits", b"")):
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(InputError) as err:
            open_sequence(bad)
        assert name in str(err.value) and "\n" not in str(err.value)
    table = tmp_path / "table.fits"
    astropy_write(table, [fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("A", "K", array=[1, 2])])])
    with pytest.raises(FormatError, match="no image"):
        open_sequence(table)


# -- folders --------------------------------------------------------------------------------------------

def test_folder_natural_order_and_timestamps(tmp_path, rng):
    d = tmp_path / "frames"
    d.mkdir()
    frames = rng.integers(0, 65536, (11, 4, 5), dtype=np.uint16)
    for i, f in enumerate(frames):
        h = fits.PrimaryHDU(f)
        h.header["DATE-OBS"] = ticks_to_date(T0 + i * 1_000_003)
        h.header["EXPTIME"] = 0.002
        astropy_write(d / f"frame{i + 1}.fits", [h])
    (d / "notes.txt").write_text("ignored")
    assert sorted(["frame10", "frame2", "frame1"], key=natural_key) == ["frame1", "frame2", "frame10"]
    with open_sequence(d) as seq:
        assert isinstance(seq, FitsFolderSequence) and seq.format == "folder-fits"
        assert seq.n_frames == 11 and np.array_equal(seq[:], frames)  # frame2 before frame10
        assert list(seq.timestamps) == [T0 + i * 1_000_003 for i in range(11)]
        assert seq.metadata["exptime"] == 0.002
        out = write_copy(seq, tmp_path / "copy.fits")
    with open_sequence(out) as copy:
        assert np.array_equal(copy[:], frames) and list(copy.timestamps) == [T0 + i * 1_000_003 for i in range(11)]
        assert fits.getheader(out)["EXPTIME"] == 0.002


def test_folder_errors_name_the_odd_file(tmp_path, rng):
    d = tmp_path / "mixed"
    d.mkdir()
    astropy_write(d / "a1.fits", [fits.PrimaryHDU(np.zeros((4, 5), np.uint16))])
    astropy_write(d / "a2.fits", [fits.PrimaryHDU(np.zeros((4, 6), np.uint16))])
    with pytest.raises(InputError) as err:
        open_sequence(d)
    msg = str(err.value)
    assert "a2.fits" in msg and "6x4" in msg and "5x4" in msg and "\n" not in msg
    astropy_write(d / "a2.fits", [fits.PrimaryHDU(np.zeros((4, 5), np.float32))])
    with pytest.raises(InputError, match="a2.fits.*BITPIX"):
        open_sequence(d)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty"):
        FitsFolderSequence(empty)
    with pytest.raises(InputError, match="folder holds no"):
        open_sequence(empty)


# -- writer ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("layout", ["cube", "hdus"])
def test_writer_round_trip_exact_with_timestamps(tmp_path, rng, dtype, layout):
    data = (rng.random((6, 5, 7)) * (255 if dtype == np.uint8 else 65535)).astype(dtype)
    ticks = T0 + np.arange(6, dtype=np.int64) * 33_333_1 + 7
    out = write_copy(ArraySequence(data, timestamps=ticks), tmp_path / "o.fits", layout=layout)
    with open_sequence(out) as seq:
        assert seq.metadata["layout"] == layout and seq.dtype == dtype
        assert np.array_equal(seq[:], data) and np.array_equal(seq.timestamps, ticks)
    with fits.open(out) as hdul:  # a standard FITS astropy verifies and reads the same values
        hdul.verify("exception")
        h0 = hdul[0].header
        assert h0["BITPIX"] == {np.uint8: 8, np.uint16: 16, np.float32: -32}[dtype]
        assert h0["ROWORDER"] == "TOP-DOWN"
        if dtype == np.uint16:
            assert h0["BZERO"] == 32768
        got = hdul[0].data if layout == "cube" else np.stack([h.data for h in hdul])
        assert np.array_equal(got, data)


def test_writer_bayer_and_colour(tmp_path, rng):
    bayer = rng.integers(0, 4096, (3, 4, 6), dtype=np.uint16)
    out = write_copy(ArraySequence(bayer, color="GBRG"), tmp_path / "b.fits")
    assert fits.getheader(out)["BAYERPAT"] == "GBRG"
    with open_sequence(out) as seq:
        assert seq.color == "GBRG" and np.array_equal(seq[:], bayer)
    rgb = rng.integers(0, 65536, (3, 4, 6, 3), dtype=np.uint16)
    for layout in ("hdus", "cube"):
        out = write_copy(ArraySequence(rgb), tmp_path / f"c_{layout}.fits", layout=layout)
        with open_sequence(out) as seq:
            assert seq.color == "RGB" and seq.metadata["layout"] == layout and np.array_equal(seq[:], rgb)
    with fits.open(tmp_path / "c_hdus.fits") as hdul:
        assert hdul[1].header["CTYPE3"] == "RGB" and np.array_equal(hdul[1].data, np.moveaxis(rgb[1], -1, 0))
    out = write_copy(ArraySequence(rgb[:, :, :, ::-1].copy(), color="BGR"), tmp_path / "bgr.fits")
    with open_sequence(out) as seq:
        assert seq.color == "RGB" and np.array_equal(seq[:], rgb)
    one = write_copy(ArraySequence(rgb[:1]), tmp_path / "one.fits", layout="cube")
    with fits.open(one) as hdul:
        assert hdul[0].data.shape == (1, 3, 4, 6)


def test_writer_fixes_frame_count_when_fewer_frames_arrive(tmp_path, rng):
    data = rng.integers(0, 65536, (5, 4, 4), dtype=np.uint16)
    out = tmp_path / "short.fits"
    with open_writer(out, "fits", ArraySequence(data)) as w:
        for f in data[:3]:
            w.write(f)
    with fits.open(out) as hdul:
        hdul.verify("exception")
        assert hdul[0].header["NAXIS3"] == 3
    with open_sequence(out) as seq:
        assert seq.n_frames == 3 and np.array_equal(seq[:], data[:3])


def test_writer_abort_leaves_nothing(tmp_path, rng):
    data = rng.integers(0, 65536, (3, 4, 4), dtype=np.uint16)
    for layout in ("cube", "hdus"):
        with pytest.raises(KeyboardInterrupt):
            with open_writer(tmp_path / "x.fits", "fits", ArraySequence(data), layout=layout) as w:
                w.write(data[0])
                raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_copy_keeps_header_cards_and_refuses_writing_over_input(tmp_path, rng):
    cube = rng.integers(0, 65536, (4, 4, 5), dtype=np.uint16)
    h = fits.PrimaryHDU(cube)
    h.header["EXPTIME"] = (0.004, "seconds")
    h.header["INSTRUME"] = "ASI174MM"
    h.header["GAIN"] = 200
    p = tmp_path / "in.fits"
    astropy_write(p, [h])
    with open_sequence(p) as seq:
        assert seq.metadata["instrument"] == "ASI174MM"
        out = write_copy(seq, tmp_path / "out.fits", layout="hdus")
        with pytest.raises(InputError, match="input"):
            open_writer(p, "fits", seq)
    hdr = fits.getheader(out, 2)
    assert hdr["EXPTIME"] == 0.004 and hdr["INSTRUME"] == "ASI174MM" and hdr["GAIN"] == 200
    with open_sequence(out) as again:
        assert np.array_equal(again[:], cube)


def test_date_helpers():
    assert date_to_ticks("2024-04-08") == date_to_ticks("2024-04-08T00:00:00")
    assert date_to_ticks("garbage") is None and date_to_ticks(None) is None
    t = T0 + 1234567
    assert date_to_ticks(ticks_to_date(t)) == t


def test_mutated_headers_open_or_fail_cleanly(tmp_path):
    rng = np.random.default_rng(5)
    cube = rng.integers(0, 65536, (3, 6, 5), dtype=np.uint16)
    a, b = tmp_path / "a.fits", tmp_path / "b.fits"
    write_copy(ArraySequence(cube), a)
    write_copy(ArraySequence(cube), b, layout="hdus")
    digits = b"0123456789 -+.ETF'"
    p = tmp_path / "m.fits"
    opened = 0
    for trial in range(200):
        raw = bytearray((a if trial % 2 else b).read_bytes())
        if trial % 5 == 0:
            raw = raw[: int(rng.integers(0, len(raw)))]
        else:
            for _ in range(int(rng.integers(1, 4))):  # damage values of the first cards
                pos = int(rng.integers(0, 12)) * 80 + int(rng.integers(10, 31))
                raw[pos] = digits[int(rng.integers(0, len(digits)))]
        p.write_bytes(bytes(raw))
        try:
            with FitsSequence(p) as seq:
                for i in range(seq.n_frames):
                    assert seq.frame(i).shape == seq.frame_shape
                opened += 1
        except InputError as err:
            assert "\n" not in str(err) and "m.fits" in str(err)
    assert opened > 20


def test_cli_info_on_fits_folder(tmp_path, capsys):
    import json

    from aiflat_gui.cli import main

    d = tmp_path / "f"
    d.mkdir()
    for i in range(3):
        h = fits.PrimaryHDU(np.full((4, 6), i, np.uint16))
        h.header["DATE-OBS"] = ticks_to_date(T0 + i * 10_000)
        astropy_write(d / f"x{i}.fit", [h])
    assert main(["info", str(d), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["format"], info["frames"], info["width"], info["height"]) == ("folder-fits", 3, 6, 4)
    assert info["timestamps"]["last"].endswith(".002000Z")
    with open_sequence(d, byte_order="little") as seq:  # unknown options are ignored
        assert seq.n_frames == 3


# -- a calibrated copy keeps what it was given (issue 11) ---------------------------------------------

ASTROPY_DATA = None
try:
    import astropy

    from pathlib import Path as _P

    ASTROPY_DATA = _P(astropy.__file__).parent / "io" / "fits" / "tests" / "data"
except Exception:  # noqa: BLE001
    pass


def _dust_flat(h, w, path):
    """A FITS flat with one dark disc (1.0 elsewhere) and the mask of the disc."""
    yy, xx = np.mgrid[:h, :w]
    disc = np.hypot(xx - w / 2, yy - h / 2) <= min(h, w) / 5
    flat = np.ones((h, w), np.float32)
    flat[disc] = 0.6
    fits.PrimaryHDU(flat).writeto(path)
    return disc


def _calibrate(src, out, flat_path, capfd=None, *extra):
    from aiflat_gui.cli import main

    assert main(["calibrate", str(src), "--flat", str(flat_path), "-o", str(out), "--quiet", *extra]) == 0
    return out


def _cards(hdu):
    return [(c.keyword, c.value) for c in hdu.header.cards if c.keyword not in ("HISTORY", "ROWORDER")]


@pytest.mark.skipif(ASTROPY_DATA is None or not (ASTROPY_DATA / "o4sp040b0_raw.fits").exists(),
                    reason="astropy's test FITS files are not installed")
def test_seven_hdu_stis_file_comes_back_with_every_hdu_and_card(tmp_path, capfd):
    """astropy's STIS raw file: 7 HDUs (primary without data, SCI/ERR/DQ twice); the two SCI images
    are the frames. Was: 2 HDUs back and 150 cards fewer."""
    src = ASTROPY_DATA / "o4sp040b0_raw.fits"
    with open_sequence(src) as seq:
        h, w, n = seq.height, seq.width, seq.n_frames
        raw = seq[:]
    disc = _dust_flat(h, w, tmp_path / "flat.fits")
    out = _calibrate(src, tmp_path / "cal.fits", tmp_path / "flat.fits")
    assert "VerifyWarning" not in capfd.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(src) as a, fits.open(out) as b:
            assert len(b) == len(a) == 7
            for ha, hb in zip(a, b):
                assert _cards(hb) == _cards(ha)  # every card, same order and values
            frames = [k for k, x in enumerate(a) if x.header.get("NAXIS") == 2]
            assert len(frames) == n
            for k in range(7):
                if k not in frames and a[k].data is not None:
                    assert np.array_equal(a[k].data, b[k].data)
            assert any("aiflat" in str(v) for v in b[frames[0]].header["HISTORY"])
    with open_sequence(out) as cal:
        got = cal[:]
    assert np.array_equal(got[:, ~disc], raw[:, ~disc])  # off the dust: bit for bit
    assert (got[:, disc].astype(int) >= raw[:, disc]).all() and (got[:, disc] != raw[:, disc]).any()


JSOLEX_DATE = "2023-10-01T08:44:38.7414456Z[UTC]"


@pytest.mark.parametrize("date, expected", [
    (JSOLEX_DATE, "2023-10-01T08:44:38.7414456"),            # JSol'Ex (Java ZonedDateTime)
    ("2026-06-21T10:00:00.033331", "2026-06-21T10:00:00.0333310"),  # Siril
    ("2023-05-20T10:12:33.1234567", "2023-05-20T10:12:33.1234567"),  # SharpCap (7 decimals)
    ("2023-05-20T12:12:33.5+02:00", "2023-05-20T10:12:33.5000000"),  # ISO offset -> UTC
    ("2023-05-20T10:12:33Z", "2023-05-20T10:12:33.0000000"),
    ("2023-05-20 10:12:33", "2023-05-20T10:12:33.0000000"),
    ("19/05/94", "1994-05-19T00:00:00.0000000"),              # FITS before 2000
])
def test_date_obs_forms_real_software_writes(date, expected):
    assert ticks_to_date(date_to_ticks(date)) == expected


@pytest.mark.parametrize("order", ["TOP-DOWN", "BOTTOM-UP"])
def test_2d_jsolex_image_stays_2d_with_its_date_and_row_order(tmp_path, rng, order):
    """A 2-D image with a JSol'Ex DATE-OBS: timestamps read; the calibrated copy is 2-D, keeps DATE-OBS
    and every card, HISTORY appended (not replacing), and is stored in the input's row order."""
    img = rng.integers(100, 4000, (30, 40), dtype=np.uint16)
    stored = img[::-1] if order == "BOTTOM-UP" else img
    h = fits.Header([("DATE-OBS", JSOLEX_DATE), ("ROWORDER", order), ("INSTRUME", "Sol'Ex"),
                     ("EXPTIME", 0.012)])
    h.add_history("made by JSol'Ex 2.0")
    h.add_history("second line")
    astropy_write(tmp_path / "in.fits", [fits.PrimaryHDU(stored, header=h)])
    with open_sequence(tmp_path / "in.fits") as seq:
        assert np.array_equal(seq.frame(0), img)
        assert seq.timestamps is not None and ticks_to_date(seq.timestamps[0]) == "2023-10-01T08:44:38.7414456"
    disc = _dust_flat(30, 40, tmp_path / "flat.fits")
    out = _calibrate(tmp_path / "in.fits", tmp_path / "out.fits", tmp_path / "flat.fits")
    with fits.open(out) as b:
        hb = b[0].header
        assert len(b) == 1 and hb["NAXIS"] == 2 and "NAXIS3" not in hb
        assert hb["DATE-OBS"] == JSOLEX_DATE and hb["ROWORDER"] == order and hb["INSTRUME"] == "Sol'Ex"
        hist = [str(v) for v in hb["HISTORY"]]
        assert hist[:2] == ["made by JSol'Ex 2.0", "second line"] and "aiflat" in hist[2]
        data = b[0].data
    assert np.array_equal((data[::-1] if order == "BOTTOM-UP" else data)[~disc], img[~disc])
    with open_sequence(out) as cal:
        assert np.array_equal(cal.frame(0)[~disc], img[~disc])
        assert ticks_to_date(cal.timestamps[0]) == "2023-10-01T08:44:38.7414456"


def test_non_mirrored_copies_keep_row_order_2d_and_all_history(tmp_path, rng):
    """A copy that changes the sample type (BITPIX -64 -> float32) is written anew, but still 2-D,
    bottom-up like its input, with every HISTORY card."""
    img = rng.random((12, 16))
    h = fits.Header([("ROWORDER", "BOTTOM-UP")])
    for k in range(3):
        h.add_history(f"step {k}")
    astropy_write(tmp_path / "d.fits", [fits.PrimaryHDU(img[::-1], header=h)])
    with open_sequence(tmp_path / "d.fits") as seq:
        out = write_copy(seq, tmp_path / "c.fits")
    with fits.open(out) as b:
        hb = b[0].header
        assert hb["NAXIS"] == 2 and hb["ROWORDER"] == "BOTTOM-UP"
        assert [str(v) for v in hb["HISTORY"]][:3] == ["step 0", "step 1", "step 2"]
        np.testing.assert_array_equal(b[0].data[::-1], img.astype(np.float32))


def test_int16_warning_only_with_negative_samples_and_float64_folder_warns(tmp_path, rng):
    pos = rng.integers(0, 3000, (10, 12)).astype(np.int16)
    astropy_write(tmp_path / "pos.fits", [fits.PrimaryHDU(pos)])
    with open_sequence(tmp_path / "pos.fits") as seq:
        assert seq.warnings == []
        assert np.array_equal(seq.frame(0), pos)
    neg = pos.copy()
    neg[3, 4] = -7
    astropy_write(tmp_path / "neg.fits", [fits.PrimaryHDU(neg)])
    with open_sequence(tmp_path / "neg.fits") as seq:
        assert len(seq.warnings) == 1 and "negative samples" in seq.warnings[0] and "-7" in seq.warnings[0]
    folder = tmp_path / "f64"
    folder.mkdir()
    for i in range(3):
        astropy_write(folder / f"f{i}.fits", [fits.PrimaryHDU(rng.random((6, 8)))])
    with open_sequence(folder / "f0.fits") as one, open_sequence(folder) as many:
        assert one.warnings and "read as 32-bit float" in one.warnings[0]
        assert many.warnings == one.warnings


def test_row_order_override_and_siril_cards(tmp_path, rng):
    from aiflat_gui.cli import main

    img = rng.integers(0, 255, (8, 10), dtype=np.uint8)
    astropy_write(tmp_path / "siril.fit", [fits.PrimaryHDU(img[::-1], header=fits.Header([("PROGRAM", "Siril v1.2.0")]))])
    astropy_write(tmp_path / "plain.fit", [fits.PrimaryHDU(img)])
    with open_sequence(tmp_path / "siril.fit") as s, open_sequence(tmp_path / "plain.fit") as p:
        assert np.array_equal(s.frame(0), img) and np.array_equal(p.frame(0), img)
        assert "Siril" in s.metadata["roworder_reason"]
    with open_sequence(tmp_path / "siril.fit", row_order="top-down") as s:
        assert np.array_equal(s.frame(0), img[::-1])
    with open_sequence(tmp_path / "plain.fit", row_order="bottom-up") as p:
        assert np.array_equal(p.frame(0), img[::-1])
    assert main(["info", str(tmp_path / "plain.fit"), "--row-order", "bottom-up"]) == 0


def test_multi_hdu_int16_file_keeps_every_hdu_card_and_its_sample_type(tmp_path):
    """Signed 16-bit frames without BZERO (no negative sample) are mirrored like uint16 ones: every
    HDU and card kept, int16 stays int16, samples off the dust bit for bit (was one uint16 cube)."""
    from aiflat_gui.cli import main

    rng = np.random.default_rng(1)
    p = fits.PrimaryHDU()
    p.header["TELESCOP"] = "X"
    data = {n: rng.integers(1, 30000, (60, 80)).astype(np.int16) for n in ("SCI", "ERR")}
    hl = [p] + [fits.ImageHDU(d, name=n) for n, d in data.items()]
    hl.append(fits.BinTableHDU.from_columns([fits.Column(name="a", format="J", array=np.arange(3))], name="TAB"))
    fits.HDUList(hl).writeto(tmp_path / "in.fits")
    flat = np.ones((60, 80), np.float32)
    flat[20:26, 30:36] = 0.6
    fits.PrimaryHDU(flat).writeto(tmp_path / "flat.fits")
    assert main(["calibrate", str(tmp_path / "in.fits"), "--flat", str(tmp_path / "flat.fits"),
                 "-o", str(tmp_path / "out.fits"), "-q"]) == 0
    with fits.open(tmp_path / "out.fits") as b:
        assert [h.name for h in b] == ["PRIMARY", "SCI", "ERR", "TAB"]
        assert b[0].header.get("TELESCOP") == "X"
        assert list(b["TAB"].data["a"]) == [0, 1, 2]
        for name, d in data.items():
            out = b[name].data
            assert out.dtype.kind == "i" and out.dtype.itemsize == 2 and "BZERO" not in b[name].header
            off = flat == 1.0
            assert np.array_equal(out[off], d[off])
            dust = np.minimum(np.round(d[~off] / 0.6), 32767)
            assert np.abs(out[~off].astype(int) - dust).max() <= 1


def test_run_takes_the_row_order_override(tmp_path, rng):
    """`aiflat run --row-order` reads a FITS input like every other command does (it had no such
    option): the reference of a bottom-up reading is the top-down one upside down."""
    from aiflat_gui.cli import main

    cube = rng.integers(1000, 3000, (6, 64, 80)).astype(np.uint16)
    fits.PrimaryHDU(cube).writeto(tmp_path / "v.fits")
    refs = {}
    for order in ("top-down", "bottom-up"):
        out = tmp_path / order
        assert main(["run", str(tmp_path / "v.fits"), "-o", str(out), "--row-order", order, "--quiet"]) == 0
        refs[order] = fits.getdata(out / "reference.fits").astype(np.float64)
    assert np.array_equal(refs["bottom-up"], refs["top-down"][::-1])
    assert not np.array_equal(refs["bottom-up"], refs["top-down"])


@pytest.mark.parametrize("jobs", [1, 2])
def test_batch_takes_the_row_order_override(tmp_path, rng, jobs):
    """`aiflat batch --row-order` reads its FITS inputs like `aiflat calibrate --row-order` does (batch
    had no such option): a flat whose dust sits in the top rows of the bottom-up reading corrects
    the rows stored last; each batch output equals calibrate's; a SER in the same batch ignores it."""
    from aiflat_gui.cli import main
    from aiflat_gui.io.ser import write_ser

    cube = rng.integers(1000, 3000, (4, 40, 50)).astype(np.uint16)
    fits.PrimaryHDU(cube).writeto(tmp_path / "v.fits")
    write_ser(tmp_path / "w.ser", list(cube), bit_depth=16)
    flat = np.ones((40, 50), np.float32)
    flat[2:6, 10:16] = 0.5  # top rows as read bottom-up = the last rows stored
    fits.PrimaryHDU(flat).writeto(tmp_path / "flat.fits")
    out = tmp_path / "batch"
    assert main(["batch", str(tmp_path / "v.fits"), str(tmp_path / "w.ser"), "--flat", str(tmp_path / "flat.fits"),
                 "-o", str(out), "--row-order", "bottom-up", "--jobs", str(jobs), "-q"]) == 0
    assert main(["calibrate", str(tmp_path / "v.fits"), "--flat", str(tmp_path / "flat.fits"),
                 "-o", str(tmp_path / "one.fits"), "--row-order", "bottom-up", "-q"]) == 0
    got = fits.getdata(out / "v_calibrated.fits")
    assert np.array_equal(got, fits.getdata(tmp_path / "one.fits"))
    stored = got.reshape(cube.shape)
    changed = np.flatnonzero((stored != cube).any(axis=(0, 2)))
    assert changed.min() >= 40 - 6 and changed.max() <= 40 - 3  # rows 34..37 as stored
    with open_sequence(out / "w_calibrated.ser") as s:  # the SER ignores the FITS-only option
        assert np.all(s.frame(0)[2:6, 10:16] != cube[0][2:6, 10:16])
    # --resume with the other row order: the FITS output was read another way, so it is redone
    report = tmp_path / "report"
    assert main(["batch", str(tmp_path / "v.fits"), str(tmp_path / "w.ser"), "--flat", str(tmp_path / "flat.fits"),
                 "-o", str(out), "--row-order", "top-down", "--resume", "--jobs", str(jobs), "-q",
                 "--report", str(report)]) == 0
    import json

    rows = {r["file"].rsplit("/", 1)[-1]: r for r in json.loads(report.with_suffix(".json").read_text())["items"]}
    assert rows["v.fits"]["status"] == "ok" and "calibrated again" in rows["v.fits"]["note"]
    assert np.array_equal(fits.getdata(out / "v_calibrated.fits").reshape(cube.shape)[:, 2:6, 10:16] != cube[:, 2:6, 10:16],
                          np.ones((4, 4, 6), bool))  # now the top rows as stored are corrected

"""The aiflat command end to end on demo data: every engine subcommand, and every user error is one
line with exit code 2 (1 for runtime failures), no partial output, input untouched."""

import errno
import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest

from aiflat_gui.cli import TerminalProgress, main
from aiflat_gui.io import open_sequence
from aiflat_gui.io.single import read_image, write_image


def _sha(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    assert main(["-q", "demo", str(d), "--frames", "8", "--width", "128", "--height", "96", "--difficulty", "easy"]) == 0
    return d


def _run(capsys, *argv):
    code = main(["-q", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_error_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("aiflat: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_engine_subcommands(demo, tmp_path, capsys):
    ser, mask = demo / "demo.ser", demo / "truth_mask.png"
    before = _sha(ser)
    assert _run(capsys, "reference", ser, "-o", tmp_path / "ref.fits", "--method", "sigmaclip")[0] == 0
    assert read_image(tmp_path / "ref.fits").shape == (96, 128)
    for method in ("local", "multiframe"):
        assert _run(capsys, "flat", ser, "--mask", mask, "-o", tmp_path / f"{method}.fits", "--method", method,
                    "--grow", "1", "--feather", "1")[0] == 0
        f = read_image(tmp_path / f"{method}.fits")
        assert f.dtype == np.float32 and f.min() < 0.95 and f.max() == 1.0
    from aiflat_gui.core.demo import generate_demo

    clean = generate_demo(frames=8, width=128, height=96, seed=1, difficulty="easy").clean
    write_image(tmp_path / "clean.fits", np.median(clean, axis=0).astype(np.float32))
    assert _run(capsys, "flat", ser, "--mask", mask, "-o", tmp_path / "ai.fits", "--method", "ai",
                "--clean", tmp_path / "clean.fits")[0] == 0
    code, out, err = _run(capsys, "calibrate", ser, "--flat", tmp_path / "local.fits", "-o", tmp_path / "cal.ser")
    assert code == 0
    code, out, err = _run(capsys, "calibrate", ser, "--mask", mask, "-o", tmp_path / "cal.fits", "--max-frames", "4")
    assert code == 0 and (tmp_path / "cal.fits").exists()
    with open_sequence(tmp_path / "cal.ser") as s:
        assert s.n_frames == 8
    assert _run(capsys, "export-flat", tmp_path / "local.fits", "--target", "pss", "-o", tmp_path / "pss.tif")[0] == 0
    assert _sha(ser) == before


def test_run_and_batch(demo, tmp_path, capsys):
    code, out, err = main(["run", str(demo / "demo.ser"), "-o", str(tmp_path / "out"), "--mask",
                           str(demo / "truth_mask.png")]), *capsys.readouterr()
    assert code == 0, err
    for name in ("reference.fits", "mask.png", "flat.fits", "calibrated.ser", "report.png"):
        assert (tmp_path / "out" / name).is_file()
    assert "1 speck," in out  # one joined component in the truth mask (plural-aware)
    code, out, err = _run(capsys, "batch", demo, "--flat", tmp_path / "out" / "flat.fits", "-o", tmp_path / "b",
                          "--jobs", "1")
    assert code == 0 and "1 calibrated" in out
    assert (tmp_path / "b" / "demo_calibrated.ser").is_file()


def _errors(demo, tmp_path):
    ser = demo / "demo.ser"
    bad = tmp_path / "bad"
    bad.mkdir()
    write_image(bad / "small_mask.png", np.zeros((50, 60), np.uint8))
    write_image(bad / "small_flat.fits", np.ones((48, 64), np.float32))
    nan = np.ones((96, 128), np.float32)
    nan[3, 3] = np.nan
    write_image(bad / "nan_flat.fits", nan)
    zero = np.ones((96, 128), np.float32)
    zero[4, 4] = 0
    write_image(bad / "zero_flat.fits", zero)
    out = tmp_path / "o"
    out.mkdir()
    return ser, bad, out


@pytest.mark.parametrize("case", ["mask size", "flat size", "nan flat", "zero flat", "output is input",
                                  "missing dir", "unwritable dir", "mask size (flat)"])
def test_user_errors_exit_2_one_line_no_output(demo, tmp_path, capsys, monkeypatch, case):
    ser, bad, out = _errors(demo, tmp_path)
    before = _sha(ser)
    argv = {
        "mask size": ["calibrate", ser, "--mask", bad / "small_mask.png", "-o", out / "c.ser"],
        "mask size (flat)": ["flat", ser, "--mask", bad / "small_mask.png", "-o", out / "f.fits"],
        "flat size": ["calibrate", ser, "--flat", bad / "small_flat.fits", "-o", out / "c.ser"],
        "nan flat": ["calibrate", ser, "--flat", bad / "nan_flat.fits", "-o", out / "c.ser"],
        "zero flat": ["calibrate", ser, "--flat", bad / "zero_flat.fits", "-o", out / "c.ser"],
        "output is input": ["calibrate", ser, "--mask", demo / "truth_mask.png", "-o", ser],
        "missing dir": ["calibrate", ser, "--mask", demo / "truth_mask.png", "-o", out / "nope" / "c.ser"],
        "unwritable dir": ["calibrate", ser, "--mask", demo / "truth_mask.png", "-o", out / "c.ser"],
    }[case]
    if case == "unwritable dir":  # root ignores permission bits: make the directory report unwritable
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if Path(p) == out.resolve() else real(p, mode, *a, **k))
    code, stdout, err = _run(capsys, *argv)
    line = _one_error_line(err)
    assert code == 2, line
    expect = {"mask size": "60x50", "mask size (flat)": "60x50", "flat size": "64x48", "nan flat": "non-finite",
              "zero flat": "<= 0", "output is input": "input", "missing dir": "does not exist",
              "unwritable dir": "not writable"}[case]
    assert expect in line
    assert list(out.iterdir()) == []
    assert _sha(ser) == before


def test_disk_full_exits_1_with_no_output(demo, tmp_path, capsys, monkeypatch):
    from aiflat_gui.io import ser as sermod

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sermod.SerWriter, "_write", full)
    monkeypatch.setattr(os, "copy_file_range", full)
    monkeypatch.setattr(os, "pwrite", full)
    before = _sha(demo / "demo.ser")
    code, out, err = _run(capsys, "calibrate", demo / "demo.ser", "--mask", demo / "truth_mask.png",
                          "-o", tmp_path / "c.ser")
    assert code == 1 and "disk full" in _one_error_line(err)
    assert list(tmp_path.iterdir()) == []
    assert _sha(demo / "demo.ser") == before


def test_ctrl_c_cancels_cleanly(demo, tmp_path, capsys, monkeypatch):
    from aiflat_gui import pipeline as calibrate

    calls = {"n": 0}
    def interrupted(self, raw):  # Ctrl-C after the SER copy, while the dust pixels are rewritten
        calls["n"] += 1
        raise KeyboardInterrupt

    monkeypatch.setattr(calibrate, "CHUNK_BYTES", 1)  # one frame per chunk
    monkeypatch.setattr(calibrate.FrameCalibrator, "compute", interrupted)
    code, out, err = _run(capsys, "calibrate", demo / "demo.ser", "--mask", demo / "truth_mask.png",
                          "-o", tmp_path / "c.ser")
    assert code == 130 and "cancelled" in err and "Traceback" not in err and calls["n"] == 1
    assert list(tmp_path.iterdir()) == []


def test_terminal_progress_bar_with_eta():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    s = Tty()
    bar = TerminalProgress("calibrate", stream=s)
    bar.start -= 10  # 10 s elapsed
    bar(0.5, "frame 5/10")
    bar(1.0, "done")
    text = s.getvalue()
    assert "[###############---------------]" in text and "ETA 0:10" in text and text.endswith("\n")


# -- the ai flat method with Gemini (fake server on 127.0.0.1) -------------------------------------

@pytest.fixture
def fake_gemini(monkeypatch):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from fake_gemini import FakeGemini

    import aiflat_gui.ai.keys as keys

    monkeypatch.setattr(keys, "_keyring", lambda: None)  # never the developer's real keyring
    with FakeGemini() as srv:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", srv.url)
        monkeypatch.setenv("GEMINI_API_KEY", "dummy")
        yield srv


def _gemini_ai_run(demo, tmp_path, capsys, *extra):
    from aiflat_gui.core.mask import grow

    out = tmp_path / "out"
    code, stdout, err = _run(capsys, "run", demo / "demo.ser", "-o", out, "--method", "ai", "--provider", "gemini",
                             "--cache-dir", tmp_path / "cache", "--timeout", "10", *extra)
    assert code == 0, err
    flat = read_image(out / "flat.fits")
    mask = read_image(out / "mask.png") > 0
    assert mask.any()
    assert np.all(flat[~grow(mask, 2)] == 1.0)  # the promise holds with an AI clean image too
    truth = read_image(demo / "truth_mask.png") > 0
    true_flat = read_image(demo / "truth_flat.fits") if (demo / "truth_flat.fits").exists() else None
    inside = truth & grow(mask, 2)
    assert inside.any() and flat[inside].mean() < 0.97  # the dust was measured from the AI's clean image
    if true_flat is not None:
        # the fake model inpaints an 8-bit stretch: not exact, but it darkens where the dust darkens
        assert np.corrcoef(flat[inside], true_flat[inside])[0, 1] > 0.3
    with open_sequence(demo / "demo.ser") as a, open_sequence(out / "calibrated.ser") as b:
        outside = ~grow(mask, 2)
        assert all(np.array_equal(a.frame(i)[outside], b.frame(i)[outside]) for i in range(a.n_frames))
    return out


def test_run_ai_method_gets_the_clean_image_from_gemini(demo, tmp_path, capsys, fake_gemini):
    _gemini_ai_run(demo, tmp_path, capsys)
    assert [len(r.images) for r in fake_gemini.requests] == [1, 2]  # the mask, then the clean image


def test_run_ai_method_with_a_mask_asks_gemini_only_for_the_clean_image(demo, tmp_path, capsys, fake_gemini):
    _gemini_ai_run(demo, tmp_path, capsys, "--mask", demo / "truth_mask.png")
    assert [len(r.images) for r in fake_gemini.requests] == [2]


def test_run_ai_method_needs_a_clean_image_or_gemini(demo, tmp_path, capsys):
    code, out, err = _run(capsys, "run", demo / "demo.ser", "-o", tmp_path / "out", "--method", "ai",
                          "--mask", demo / "truth_mask.png")
    assert code == 2 and "--clean FILE" in _one_error_line(err)
    assert not (tmp_path / "out").exists()
    # with --clean the ai method works offline
    with open_sequence(demo / "clean.fits") as cube:  # the demo's clean truth, one frame per frame
        clean = np.median(np.stack([cube.frame(i) for i in range(cube.n_frames)]).astype(np.float32), axis=0)
    write_image(tmp_path / "clean.fits", clean)
    code, out, err = _run(capsys, "run", demo / "demo.ser", "-o", tmp_path / "out2", "--method", "ai",
                          "--mask", demo / "truth_mask.png", "--clean", tmp_path / "clean.fits")
    assert code == 0, err
    flat = read_image(tmp_path / "out2" / "flat.fits")
    assert flat.min() < 0.95


def test_quiet_flag_after_the_subcommand(tmp_path, capsys):
    from aiflat_gui.cli import main

    assert main(["demo", str(tmp_path / "d"), "-q", "--frames", "3", "--width", "64", "--height", "64"]) == 0
    assert capsys.readouterr().out == ""
    assert (tmp_path / "d" / "demo.ser").exists()


def test_calibrate_with_a_scaled_mask_warns_that_it_was_resampled(tmp_path, capsys):
    """A mask at another scale of the same aspect is resampled, and the user is told so."""
    import numpy as np

    from aiflat_gui.cli import main
    from aiflat_gui.io.masks import save_mask
    from aiflat_gui.io.ser import write_ser

    frames = np.full((4, 64, 96), 1000, np.uint16)
    write_ser(tmp_path / "v.ser", frames)
    half = np.zeros((32, 48), bool)
    half[10:14, 10:14] = True
    save_mask(tmp_path / "m.png", half)
    assert main(["calibrate", str(tmp_path / "v.ser"), "--mask", str(tmp_path / "m.png"),
                 "-o", str(tmp_path / "out.ser"), "--method", "local"]) == 0
    err = capsys.readouterr().err
    assert "aiflat: warning:" in err and "m.png" in err


def test_a_full_disk_under_a_tiff_writer_says_disk_full(demo, tmp_path, capsys, monkeypatch):
    # numpy's tofile (under tifffile) reports a full disk as a short write with no errno
    import tifffile

    def short(self, *args, **kwargs):
        raise OSError("307200 requested and 36200 written")

    monkeypatch.setattr(tifffile.FileHandle, "write_array", short)
    before = _sha(demo / "demo.ser")
    code, out, err = _run(capsys, "calibrate", demo / "demo.ser", "--mask", demo / "truth_mask.png",
                          "-o", tmp_path / "c.tif")
    assert code == 1 and _one_error_line(err).endswith("c.tif: disk full while writing")
    assert list(tmp_path.iterdir()) == []
    assert _sha(demo / "demo.ser") == before


def test_batch_into_a_folder_that_cannot_be_created_is_one_line(demo, tmp_path, capsys, monkeypatch):
    flat = tmp_path / "flat.fits"
    write_image(flat, np.ones((96, 128), np.float32))
    real_mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):
        if self.name == "b":
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    code, out, err = _run(capsys, "batch", demo, "--flat", flat, "-o", tmp_path / "b")
    assert code == 2 and "cannot create the output folder: Operation not permitted" in _one_error_line(err)


def test_export_flat_names_the_bad_flat_not_the_output(tmp_path, capsys):
    bad = np.ones((20, 30), np.float32)
    bad[3, 4] = np.nan
    write_image(tmp_path / "nan_flat.fits", bad)
    code, out, err = _run(capsys, "export-flat", tmp_path / "nan_flat.fits", "--target", "siril", "-o", tmp_path / "x.fits")
    line = _one_error_line(err)
    assert code == 2 and "nan_flat.fits" in line and "x.fits" not in line and "non-finite" in line
    assert not (tmp_path / "x.fits").exists()


def test_refused_demo_settings_leave_no_empty_folder(tmp_path, capsys):
    code, out, err = _run(capsys, "demo", tmp_path / "big", "--frames", "400", "--width", "1280", "--height", "960")
    assert code == 2 and _one_error_line(err)
    assert not (tmp_path / "big").exists()


def test_flat_checks_the_mask_before_computing_the_reference(demo, tmp_path, capsys, monkeypatch):
    import aiflat_gui.cli as cli

    def no_reference(*a, **k):
        raise AssertionError("the reference was computed before the mask was checked")

    monkeypatch.setattr(cli, "_reference_for", no_reference)
    small = np.zeros((10, 12), np.uint8)
    small[2:4, 2:4] = 255
    write_image(tmp_path / "small.png", small)
    code, out, err = _run(capsys, "flat", demo / "demo.ser", "--mask", tmp_path / "small.png", "-o", tmp_path / "f.fits")
    assert code == 2 and "mask is" in _one_error_line(err)
    code, out, err = _run(capsys, "flat", demo / "demo.ser", "--mask", demo / "truth_mask.png", "--method", "ai",
                          "-o", tmp_path / "f.fits")
    assert code == 2 and "--clean" in _one_error_line(err)


def test_a_flat_records_its_pedestal_and_calibrating_with_another_one_warns(demo, tmp_path, capsys):
    from astropy.io import fits

    flat = tmp_path / "flat.fits"
    code, out, err = _run(capsys, "flat", demo / "demo.ser", "--mask", demo / "truth_mask.png", "--method", "local",
                          "--pedestal", "300", "-o", flat)
    assert code == 0 and fits.getheader(flat)["PEDESTAL"] == 300.0
    code, out, err = _run(capsys, "calibrate", demo / "demo.ser", "--flat", flat, "-o", tmp_path / "a.ser")
    assert code == 0 and "warning" in err and "--pedestal 300" in err and "--pedestal 0" in err
    code, out, err = _run(capsys, "calibrate", demo / "demo.ser", "--flat", flat, "--pedestal", "300",
                          "-o", tmp_path / "b.ser")
    assert code == 0 and "warning" not in err
    code, out, err = _run(capsys, "batch", demo, "--flat", flat, "-o", tmp_path / "batch")
    assert "--pedestal 300" in err

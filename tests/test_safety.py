"""Issue 13, "what was seen": every case an attacker (or an unlucky user) found on e7600f1, as a test.

The CLI runs in a process of its own (a segfault, SIGBUS or hang of the old code fails the test instead
of killing pytest), under an address-space limit where a case used to blow memory up; it is forked
from a server that imported the libraries once (tests/cli_forkserver.py), except where a test signals
the process or looks at its children (a fresh interpreter there). Each case checks
the promise: one-line error naming the file, exit 2, inputs byte-identical, no partial file left.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from aiflat_gui.io.demo import write_demo
from aiflat_gui.io.ser import write_ser
from aiflat_gui.io.single import write_image

sys.path.insert(0, os.path.dirname(__file__))
import cli_forkserver  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="special files, /proc and signals as on Linux")

GB = 1 << 30


def aiflat(*argv, cwd=None, timeout=120, mem=None, env=None):
    """Run ``aiflat ARGV`` in a process of its own (forked from one that imported the libraries
    once, tests/cli_forkserver.py); (exit code, stdout, stderr)."""
    e = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", **(env or {}))
    e.pop("AIFLAT_DEBUG", None)
    r = cli_forkserver.run(["-q", *[a if isinstance(a, bytes) else str(a) for a in argv]], cwd=cwd,
                           timeout=timeout, env=e, mem=mem)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def refused(res, *words):
    """Exit 2 with exactly one line ``aiflat: error: ...`` holding every word."""
    code, out, err = res
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("aiflat: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def sha(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def partials(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith(".partial"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    write_demo(d, frames=8, width=96, height=64, seed=3, difficulty="easy")
    assert aiflat("flat", d / "demo.ser", "--mask", d / "truth_mask.png", "-o", d / "flat.fits",
                  "--method", "local")[0] == 0
    return d


def _copy(demo, tmp, *names):
    out = {}
    for n in names:
        (tmp / n).write_bytes((demo / n).read_bytes())
        out[n] = tmp / n
    return out


# -- 1. files the user passed in are never overwritten ----------------------------------------------------------

def test_calibrate_output_is_the_flat_or_the_mask(demo, tmp_path):
    f = _copy(demo, tmp_path, "demo.ser", "flat.fits", "truth_mask.png")
    hashes = {n: sha(p) for n, p in f.items()}
    refused(aiflat("calibrate", f["demo.ser"], "--flat", f["flat.fits"], "-o", f["flat.fits"], "--format", "fits"),
            "flat.fits", "input")
    refused(aiflat("calibrate", f["demo.ser"], "--mask", f["truth_mask.png"], "-o", f["truth_mask.png"],
                   "--format", "ser"), "truth_mask.png", "input")
    assert {n: sha(p) for n, p in f.items()} == hashes
    assert partials(tmp_path) == []


def test_output_is_an_input_through_a_hard_link_or_a_symlink(demo, tmp_path):
    f = _copy(demo, tmp_path, "demo.ser", "flat.fits")
    os.link(f["demo.ser"], tmp_path / "hard.ser")
    os.symlink(f["demo.ser"], tmp_path / "soft.ser")
    before = sha(f["demo.ser"])
    for out in ("hard.ser", "soft.ser"):
        refused(aiflat("calibrate", f["demo.ser"], "--flat", f["flat.fits"], "-o", tmp_path / out), "input")
    assert sha(f["demo.ser"]) == before


def test_mask_output_is_the_video(tmp_path):
    """`mask st.tif -o st.tif`: a 6-frame TIFF video became a mask (cmd_mask never checked its output)."""
    import tifffile

    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "st.tif", rng.integers(1000, 3000, (6, 48, 64), dtype=np.uint16))
    before = sha(tmp_path / "st.tif")
    refused(aiflat("mask", tmp_path / "st.tif", "-o", tmp_path / "st.tif"), "st.tif", "input")
    assert sha(tmp_path / "st.tif") == before


def test_flat_output_is_the_reference(demo, tmp_path):
    f = _copy(demo, tmp_path, "demo.ser", "truth_mask.png")
    assert aiflat("reference", f["demo.ser"], "-o", tmp_path / "ref.fits")[0] == 0
    before = sha(tmp_path / "ref.fits")
    refused(aiflat("flat", f["demo.ser"], "--mask", f["truth_mask.png"], "--reference", tmp_path / "ref.fits",
                   "-o", tmp_path / "ref.fits"), "ref.fits", "input")
    assert sha(tmp_path / "ref.fits") == before


def test_run_input_named_like_an_output(demo, tmp_path):
    """`run r1/reference.fits -o r1`: a cube named reference.fits was replaced by its own median."""
    r1 = tmp_path / "r1"
    r1.mkdir()
    assert aiflat("calibrate", demo / "demo.ser", "--flat", demo / "flat.fits", "-o", r1 / "reference.fits")[0] == 0
    before = sha(r1 / "reference.fits")
    refused(aiflat("run", r1 / "reference.fits", "-o", r1, "--mask", demo / "truth_mask.png"), "reference.fits", "input")
    assert sha(r1 / "reference.fits") == before
    assert sorted(p.name for p in r1.iterdir()) == ["reference.fits"]


def test_batch_into_its_own_folder_with_an_unrelated_calibrated_name(demo, tmp_path):
    """`batch b1 --flat f.fits -o b1` with an unrelated a_calibrated.ser beside a.ser: it was
    overwritten, then calibrated again, both reported ok."""
    b1 = tmp_path / "b1"
    b1.mkdir()
    (b1 / "a.ser").write_bytes((demo / "demo.ser").read_bytes())
    write_ser(b1 / "a_calibrated.ser", np.full((3, 64, 96), 7, np.uint16))
    hashes = {p.name: sha(p) for p in b1.iterdir()}
    line = refused(aiflat("batch", b1, "--flat", demo / "flat.fits", "-o", b1, "--jobs", "1"), "a_calibrated.ser")
    assert "input" in line
    assert {p.name: sha(p) for p in b1.iterdir()} == hashes


def test_batch_outputs_colliding_inside_the_batch(demo, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    for d in ("x", "y"):
        (tmp_path / d / "a.ser").write_bytes((demo / "demo.ser").read_bytes())
    (tmp_path / "a_calibrated.ser").write_bytes((demo / "demo.ser").read_bytes())
    # x/a.ser and y/a.ser get a_calibrated.ser and a_calibrated_2.ser; a_calibrated.ser's own output
    # is a_calibrated_calibrated.ser: no collision -- but -o the folder holding a_calibrated.ser is one
    refused(aiflat("batch", tmp_path / "x" / "a.ser", tmp_path / "a_calibrated.ser", "--flat", demo / "flat.fits",
                   "-o", tmp_path, "--jobs", "1"), "a_calibrated.ser", "input")


def test_gui_batch_checks_before_writing_its_flat(demo, tmp_path):
    """The GUI's batch writes OUT/flat.fits first: a video named flat.fits in OUT is an input."""
    from aiflat_gui.errors import InputError
    from aiflat_gui.gui.steps import job_batch

    (tmp_path / "flat.fits").write_bytes((demo / "flat.fits").read_bytes())
    before = sha(tmp_path / "flat.fits")
    with pytest.raises(InputError, match="input"):
        job_batch([str(tmp_path / "flat.fits")], np.ones((64, 96), np.float32), str(tmp_path), None, 0.0, jobs=1)
    assert sha(tmp_path / "flat.fits") == before


# -- 2. memory bombs from small files; special files -------------------------------------------------------------

def _fits_bomb(path, naxis3=1_000_000_000):
    cards = [("SIMPLE", "T"), ("BITPIX", "16"), ("NAXIS", "3"), ("NAXIS1", "64"), ("NAXIS2", "48"),
             ("NAXIS3", str(naxis3)), ("BZERO", "32768")]
    head = b"".join(f"{k:<8}= {v:>20}".ljust(80).encode() for k, v in cards) + b"END".ljust(80)
    head = head.ljust(2880, b" ")
    path.write_bytes(head + bytes(77 * 1024))


def test_fits_header_claiming_1e9_frames(tmp_path):
    _fits_bomb(tmp_path / "bomb.fits")
    t0 = time.monotonic()
    refused(aiflat("info", tmp_path / "bomb.fits", mem=GB), "bomb.fits", "1000000000")
    assert time.monotonic() - t0 < 30


def test_fits_truncated_a_little_still_opens(tmp_path):
    _fits_bomb(tmp_path / "cut.fits", naxis3=30)  # 77 KB hold 12 of 30 frames: a cut copy, not a bomb
    code, out, err = aiflat("info", tmp_path / "cut.fits")
    assert code == 0 and "12 of 30" in out


def _png_bomb(path, w=32000, h=24000):
    import zlib

    def chunk(tag, data):
        return len(data).to_bytes(4, "big") + tag + data + zlib.crc32(tag + data).to_bytes(4, "big")

    row = b"\0" + bytes(w)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0]))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def png_bomb(tmp_path_factory):
    p = tmp_path_factory.mktemp("bomb") / "huge.png"
    _png_bomb(p)
    assert p.stat().st_size < 1_000_000
    return p


def test_png_bomb_as_mask_or_flat(demo, tmp_path, png_bomb):
    refused(aiflat("calibrate", demo / "demo.ser", "--mask", png_bomb, "-o", tmp_path / "c.ser", mem=GB),
            "huge.png", "32000x24000")
    refused(aiflat("calibrate", demo / "demo.ser", "--flat", png_bomb, "-o", tmp_path / "c.ser", mem=GB),
            "huge.png", "32000x24000")
    assert not (tmp_path / "c.ser").exists() and partials(tmp_path) == []


def test_prompt_file_dev_zero(demo, tmp_path):
    refused(aiflat("mask", demo / "demo.ser", "-o", tmp_path / "m.png", "--provider", "gemini", "--prompt-file",
                   "/dev/zero", env={"GEMINI_API_KEY": "k-not-used"}, mem=GB, timeout=60), "/dev/zero")


@pytest.mark.parametrize("name", ["v.ser", "m.png", "s.tif"])
def test_fifo_is_refused_not_waited_on(demo, tmp_path, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    refused(aiflat("info", fifo, timeout=30), name, "FIFO")
    if name == "v.ser":
        refused(aiflat("calibrate", fifo, "--flat", demo / "flat.fits", "-o", tmp_path / "c.ser", timeout=30), "FIFO")
        refused(aiflat("run", fifo, "-o", tmp_path / "r", timeout=30), "FIFO")
    else:
        refused(aiflat("calibrate", demo / "demo.ser", "--mask", fifo, "-o", tmp_path / "c.ser", timeout=30), "FIFO")


# -- 3. crashes ---------------------------------------------------------------------------------------------------

def test_non_utf8_file_name_runs_and_reports(demo, tmp_path):
    """A non-UTF-8 file name segfaulted `aiflat run` in cv2.putText (exit 139, no report)."""
    name = os.fsencode(tmp_path) + b"/caf\xe9.ser"
    with open(name, "wb") as f:
        f.write((demo / "demo.ser").read_bytes())
    code, out, err = aiflat(b"run", name, b"-o", os.fsencode(tmp_path / "out"), b"--mask",
                            os.fsencode(demo / "truth_mask.png"))
    assert code == 0, err
    assert (tmp_path / "out" / "report.png").is_file()


def test_newline_in_file_name_is_one_error_line(tmp_path):
    p = tmp_path / "two\nlines.ser"
    p.write_bytes(b"not a ser file at all" * 10)
    line = refused(aiflat("info", p), "two\\nlines.ser")
    assert "\n" not in line


_SHRINK = r"""
import os, sys
from aiflat_gui.io import open_sequence
from aiflat_gui.errors import AiflatError
from aiflat_gui.pipeline import calibrate_sequence, load_flat
src, flat, out = sys.argv[1:4]
seq = open_sequence(src)
f = load_flat(flat, seq)
def progress(fraction, message=""):
    if fraction > 0 and os.path.getsize(src) > 4000:
        os.truncate(src, 178 + seq.frame_nbytes)  # another program cuts the file while we read it
try:
    calibrate_sequence(seq, f, out, progress=progress, chunk_bytes=seq.frame_nbytes)
except AiflatError as err:
    print("refused:", err)
"""


@pytest.mark.parametrize("ext", [".fits", ".ser", ".tif"])
def test_input_shrinking_while_read_is_an_error_not_sigbus(demo, tmp_path, ext):
    src = tmp_path / "v.ser"
    src.write_bytes((demo / "demo.ser").read_bytes())
    r = subprocess.run([sys.executable, "-c", _SHRINK, str(src), str(demo / "flat.fits"), str(tmp_path / f"o{ext}")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr)  # -7: SIGBUS
    if ext == ".ser" and "refused:" not in r.stdout:
        # SER -> SER is a kernel copy of the bytes present when it ran: complete, or refused
        assert (tmp_path / "o.ser").stat().st_size == (demo / "demo.ser").stat().st_size
    else:
        assert "refused:" in r.stdout and "shrank" in r.stdout, r.stdout + r.stderr
        assert not (tmp_path / f"o{ext}").exists()
    assert partials(tmp_path) == []


# -- 5. leftovers: signals, stale temporary files, orphaned batch workers ------------------------------------

@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A 180 MB SER (a few seconds to calibrate) and a flat for it."""
    d = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    write_ser(d / "v.ser", rng.integers(1000, 3000, (300, 480, 640), dtype=np.uint16))
    flat = np.ones((480, 640), np.float32)
    flat[100:120, 100:130] = 0.8
    write_image(d / "flat.fits", flat)
    return d


def _start(*argv, cwd=None):
    e = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "aiflat_gui.cli", "-q", *map(str, argv)], cwd=cwd, env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_partial(folder, proc, timeout=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if Path(folder).is_dir() and partials(folder):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_clean_up_like_ctrl_c(big, tmp_path, sig):
    before = sha(big / "v.ser")
    p = _start("calibrate", big / "v.ser", "--flat", big / "flat.fits", "-o", tmp_path / "o.tif")
    assert _wait_for_partial(tmp_path, p), "the calibration ended before it was signalled"
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, (p.returncode, err)
    assert b"no output was written" in err and b"Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    assert sha(big / "v.ser") == before


def _dead_pid():
    """A PID no process can have (above the kernel's pid_max), so the test does not race PID reuse."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 7


def test_stale_partials_of_dead_runs_are_removed_by_the_next_run(big, tmp_path):
    from aiflat_gui.io.outputs import _proc_start, host_tag

    h = host_tag()

    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        dead = tmp_path / f".o.ser.aiflat-{h}-{_dead_pid()}-12345.abcdefgh.partial"
        dead.write_bytes(b"x" * 1000)
        dead_dir = tmp_path / f".frames.aiflat-{h}-{_dead_pid()}-7.zzzzzzzz.partial"
        dead_dir.mkdir()
        (dead_dir / "frame_1.tif").write_bytes(b"x")
        reused = tmp_path / f".o.ser.aiflat-{h}-{sleeper.pid}-1.abcdefgh.partial"  # PID reused by another process
        reused.write_bytes(b"x")
        live = tmp_path / f".o.ser.aiflat-{h}-{sleeper.pid}-{_proc_start(sleeper.pid)}.abcdefgh.partial"
        live.write_bytes(b"x")
        foreign = tmp_path / ".o.ser.Xy12ab.partial"  # not our pattern (e.g. an older aiflat or another program)
        foreign.write_bytes(b"x")
        assert aiflat("calibrate", big / "v.ser", "--flat", big / "flat.fits", "-o", tmp_path / "o.ser")[0] == 0
        assert not dead.exists() and not dead_dir.exists() and not reused.exists()
        assert live.exists() and foreign.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def _children(pid):
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid):
    try:
        state = (Path("/proc") / str(pid) / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def test_batch_workers_die_with_their_parent(big, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        os.link(big / "v.ser", src / f"v{k}.ser")
    out = tmp_path / "out"
    p = _start("batch", src, "--flat", big / "flat.fits", "-o", out, "--jobs", "2", "--format", "tiff")
    assert _wait_for_partial(out, p), "the batch ended before it was killed"
    kids = _children(p.pid)
    assert kids, "no worker processes"
    p.kill()  # kill -9: the parent cannot clean anything up
    p.wait()
    t0 = time.monotonic()
    while any(_alive(k) for k in kids) and time.monotonic() - t0 < 20:
        time.sleep(0.1)
    left = [k for k in kids if _alive(k)]
    for k in left:  # never leave them running, even when the test fails
        with contextlib.suppress(OSError):
            os.kill(k, signal.SIGKILL)
    assert not left, "workers outlived their parent"
    assert partials(out) == []  # the workers removed their own temporary files
    assert sha(src / "v0.ser") == sha(big / "v.ser")


# -- 6./7. nonsense refused before any work, cleanly ----------------------------------------------------------

@pytest.mark.parametrize("target, words", [("pss", ["AutoStakkert"]), ("autostakkert", ["AutoStakkert"]),
                                           ("pixinsight", ["PixInsight", "0.5"]), ("scaled", ["median"])])
def test_flat_exported_for_another_program_is_refused(demo, tmp_path, target, words):
    """Our own AutoStakkert/PSS export turned every pixel to 0 (exit 0, "0 pixels clipped"); the
    PixInsight export doubled every pixel."""
    out = tmp_path / ("f.tif" if target in ("pss", "autostakkert") else "f.fits")
    if target == "scaled":
        from aiflat_gui.io.single import read_image

        write_image(out, read_image(demo / "flat.fits") * np.float32(1.02))
    else:
        assert aiflat("export-flat", demo / "flat.fits", "--target", target, "-o", out)[0] == 0
    refused(aiflat("calibrate", demo / "demo.ser", "--flat", out, "-o", tmp_path / "c.ser"), "not an aiflat flat", *words)
    refused(aiflat("batch", demo / "demo.ser", "--flat", out, "-o", tmp_path / "b"), "not an aiflat flat")
    assert not (tmp_path / "c.ser").exists()


def test_pixelmath_export_is_ours_and_accepted(demo, tmp_path):
    assert aiflat("export-flat", demo / "flat.fits", "--target", "pixelmath", "-o", tmp_path / "f.fits")[0] == 0
    assert aiflat("calibrate", demo / "demo.ser", "--flat", tmp_path / "f.fits", "-o", tmp_path / "c.ser")[0] == 0


@pytest.mark.parametrize("opt, value", [("--pedestal", "nan"), ("--pedestal", "inf"), ("--pedestal", "-5"),
                                        ("--grow", "-1"), ("--feather", "-3"), ("--grow", "99999999999999999999"),
                                        ("--max-frames", "-2")])
def test_numeric_options_range_checked_before_any_work(demo, tmp_path, opt, value):
    t0 = time.monotonic()
    refused(aiflat("calibrate", demo / "demo.ser", "--mask", demo / "truth_mask.png", "-o", tmp_path / "c.ser",
                   opt, value), opt)
    refused(aiflat("run", demo / "demo.ser", "-o", tmp_path / "r", opt, value), opt)
    assert time.monotonic() - t0 < 20 and list(tmp_path.iterdir()) == []


def test_batch_with_every_file_skipped_fails(demo, tmp_path):
    write_image(tmp_path / "other.fits", np.ones((32, 32), np.float32))
    code, out, err = aiflat("batch", demo / "demo.ser", "--flat", tmp_path / "other.fits", "-o", tmp_path / "b",
                            "--jobs", "1")
    assert code == 2 and "skipped" in out and "no file was calibrated" in err


def test_output_extension_must_match_its_format(demo, tmp_path):
    refused(aiflat("calibrate", demo / "demo.ser", "--flat", demo / "flat.fits", "-o", tmp_path / "x.png"), ".png",
            "--format")
    assert not (tmp_path / "x.png").exists()
    assert aiflat("calibrate", demo / "demo.ser", "--flat", demo / "flat.fits", "-o", tmp_path / "x.dat",
                  "--format", "ser")[0] == 0


def test_unusable_output_names_fail_early(demo, tmp_path):
    (tmp_path / "dir").mkdir()
    for cmd in (["calibrate", demo / "demo.ser", "--flat", demo / "flat.fits"], ["reference", demo / "demo.ser"],
                ["flat", demo / "demo.ser", "--mask", demo / "truth_mask.png"], ["mask", demo / "demo.ser"]):
        refused(aiflat(*cmd, "-o", ""), "empty")
        refused(aiflat(*cmd, "-o", f"{tmp_path}/dir/"), "folder")
        refused(aiflat(*cmd, "-o", tmp_path / ("n" * 246 + ".fits")), "shorter name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"] and list((tmp_path / "dir").iterdir()) == []


def test_symlink_loops(demo, tmp_path):
    os.symlink(tmp_path / "b.ser", tmp_path / "a.ser")
    os.symlink(tmp_path / "a.ser", tmp_path / "b.ser")
    refused(aiflat("info", tmp_path / "a.ser"), "symlink loop")
    refused(aiflat("calibrate", demo / "demo.ser", "--flat", demo / "flat.fits", "-o", tmp_path / "a.ser"),
            "symlink loop")
    refused(aiflat("calibrate", demo / "demo.ser", "--flat", tmp_path / "a.ser", "-o", tmp_path / "c.ser"),
            "symlink loop")


def test_avi_with_an_extreme_frame_rate(tmp_path):
    """The AVI writer died on a struct error (internal error, exit 1)."""
    from aiflat_gui.io import open_sequence, open_writer
    from aiflat_gui.io.base import ArraySequence

    frames = np.random.default_rng(1).integers(0, 255, (3, 32, 48), dtype=np.uint8)
    with open_writer(tmp_path / "a.avi", "avi", ArraySequence(frames)) as w:
        for f in frames:
            w.write(f)
    data = bytearray((tmp_path / "a.avi").read_bytes())
    at = data.index(b"strh") + 8
    data[at + 20:at + 28] = (1).to_bytes(4, "little") + (0xFFFFFFFF).to_bytes(4, "little")  # scale 1, rate 4.3e9
    (tmp_path / "fast.avi").write_bytes(bytes(data))
    with open_sequence(tmp_path / "fast.avi") as s:
        assert s.metadata.get("fps", 0) > 1e9
    write_image(tmp_path / "flat.fits", np.ones((32, 48), np.float32))
    code, out, err = aiflat("calibrate", tmp_path / "fast.avi", "--flat", tmp_path / "flat.fits", "-o", tmp_path / "o.avi")
    assert code in (0, 2) and "internal error" not in err and "Traceback" not in err, err
    if code == 0:
        with open_sequence(tmp_path / "o.avi") as s:
            assert np.array_equal(s.frame(0), frames[0])


# -- 9. smaller ------------------------------------------------------------------------------------------------

def test_fitseq_with_bzero_nan_is_refused(tmp_path):
    """It opened as 0 frames, and then yielded a FITS we could not read."""
    from astropy.io import fits

    data = np.arange(2 * 16 * 20, dtype=np.uint16).reshape(2, 16, 20)
    fits.HDUList([fits.PrimaryHDU(data[0]), fits.ImageHDU(data[1])]).writeto(tmp_path / "seq.fits")
    raw = (tmp_path / "seq.fits").read_bytes()
    card = raw.index(b"BZERO   =")
    raw = raw[:card] + f"{'BZERO':<8}= {'NaN':>20}".ljust(80).encode() + raw[card + 80:]
    (tmp_path / "nan.fits").write_bytes(raw)
    refused(aiflat("info", tmp_path / "nan.fits"), "BZERO")


def test_library_warnings_do_not_reach_stderr(tmp_path):
    """tifffile logged "<tifffile.TiffPages @8> invalid page offset" above our own one-line error."""
    import tifffile

    tifffile.imwrite(tmp_path / "two.tif", np.zeros((2, 16, 16), np.uint16))
    raw = bytearray((tmp_path / "two.tif").read_bytes())
    with tifffile.TiffFile(tmp_path / "two.tif") as t:
        nxt = t.pages[0].offset  # the first IFD: its "next IFD" field follows the tag entries
    ntags = int.from_bytes(raw[nxt:nxt + 2], "little")
    at = nxt + 2 + 12 * ntags
    raw[at:at + 4] = (len(raw) + 4000).to_bytes(4, "little")  # the second page lies past the end
    (tmp_path / "bad.tif").write_bytes(bytes(raw))
    code, out, err = aiflat("info", tmp_path / "bad.tif")
    assert "tifffile" not in err and "Traceback" not in err
    assert code == 2 and len(err.strip().splitlines()) == 1 or code == 0 and "error" not in err, (code, err)


def test_red_only_mask_sidecar_loads_as_dust(tmp_path):
    """The GUI's session loaded a red-only mask sidecar (painted in another program) as an empty mask."""
    import cv2

    from aiflat_gui.session import SessionData, SessionStore

    video = tmp_path / "v.ser"
    write_ser(video, np.zeros((1, 20, 30), np.uint16))
    store = SessionStore(video)
    mask = np.zeros((20, 30), bool)
    mask[4:8, 5:9] = True
    store.save(SessionData(), mask)
    red = np.zeros((20, 30, 3), np.uint8)
    red[4:8, 5:9, 2] = 255  # BGR: red only
    cv2.imwrite(str(store.mask_path), red)
    _, got, _ = SessionStore(video).load((20, 30))
    assert got is not None and np.array_equal(got, mask)


def test_odd_session_values_are_a_session_error_not_an_internal_error(tmp_path):
    import json

    from aiflat_gui.errors import InputError
    from aiflat_gui.session import SessionData, SessionStore

    video = tmp_path / "v.ser"
    write_ser(video, np.zeros((1, 20, 30), np.uint16))
    store = SessionStore(video)
    store.save(SessionData())
    for field, value in (("grow", 1e400), ("input_mtime", "yesterday"), ("feather", float("nan"))):
        d = json.loads(store.json_path.read_text())
        d[field] = value
        store.json_path.write_text(json.dumps(d))
        with pytest.raises(InputError, match="session"):
            SessionStore(video).load((20, 30))


# -- 8. the Gemini answer cache holds decoded masks and redacted metadata only ---------------------------------

@pytest.fixture
def gemini(tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).parent))
    import aiflat_gui.ai.keys as keys
    from fake_gemini import FakeGemini

    from aiflat_gui.ai.gemini import GeminiProvider

    monkeypatch.setattr(keys, "_keyring", lambda: None)
    key = "AIzaFAKE-echoed-key-9876543210"
    with FakeGemini() as srv:
        def make(**kw):
            return GeminiProvider(api_key=key, base_url=srv.url, cache_dir=str(tmp_path / "cache"), timeout=5.0,
                                  backoff=0.01, retries=0, **kw)
        yield srv, make, key, tmp_path / "cache"


def _dusty():
    img = np.full((90, 160), 0.6, np.float32)
    img[30:34, 40:44] = 0.3
    img[60:63, 100:104] = 0.35
    return img


def test_key_echoed_by_the_server_never_reaches_the_cache(gemini):
    """model_version was stored unredacted when a server or proxy echoed the key."""
    from fake_gemini import model_reply

    srv, make, key, cache = gemini
    plain = model_reply()

    def echo(request):
        r = plain(request)
        r.body["modelVersion"] = f"gemini-3-pro-image-{key}"
        r.body["candidates"][0]["finishReason"] = "STOP"
        return r

    srv.default = echo
    res = make().find_mask(_dusty())
    assert res.mask.any()
    assert key not in json.dumps(res.report, default=str)
    files = list(cache.iterdir())
    assert files and not any(key.encode() in f.read_bytes() for f in files)


def test_undecodable_answer_is_never_cached(gemini):
    """It was cached verbatim before decoding, then replayed: later runs kept failing after the server was fixed."""
    from fake_gemini import image_reply, model_reply

    from aiflat_gui.errors import ProcessingError

    srv, make, key, cache = gemini
    srv.default = lambda request: image_reply(b"\x89PNG\r\n\x1a\n this is not an image", mime="image/png")
    with pytest.raises(ProcessingError, match="cannot be decoded"):
        make().find_mask(_dusty())
    assert not cache.exists() or list(cache.iterdir()) == []
    srv.default = model_reply()
    assert make().find_mask(_dusty()).mask.any()  # the fixed server is asked again, no --reroll needed
    n = len(srv.requests)
    assert make().find_mask(_dusty()).mask.any() and len(srv.requests) == n  # now a cache hit


def test_cache_stores_the_decoded_image_and_drops_an_undecodable_old_entry(gemini):
    import cv2

    from aiflat_gui.ai.cache import sha256_hex

    srv, make, key, cache = gemini
    first = make().find_mask(_dusty()).mask
    (bin_path,) = cache.glob("*.bin")
    assert cv2.imdecode(np.frombuffer(bin_path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED) is not None
    meta_path = bin_path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    assert meta["stored"] == "decoded"
    # an entry an older version stored verbatim (undecodable): dropped and asked again, not replayed
    bin_path.write_bytes(b"garbage")
    meta["image_sha256"] = sha256_hex(b"garbage")
    meta_path.write_text(json.dumps(meta))
    n = len(srv.requests)
    assert np.array_equal(make().find_mask(_dusty()).mask, first)
    assert len(srv.requests) == n + 1

"""Streaming calibration on demo data: dust removed, every pixel outside the grown mask bit-exact,
pedestal handling, clipping, float data, cancel and disk-full leave no output, bad flats refused."""

import errno
import hashlib
import importlib
import os
from pathlib import Path

import numpy as np
import pytest

from aiflat_gui.core.calibrate import FrameCalibrator, calibrate_array, fit_flat
from aiflat_gui.io import output_format
from aiflat_gui.pipeline import FlatParams, calibrate_sequence, flat_from_mask_file, load_flat
from aiflat_gui.core.demo import generate_demo
from aiflat_gui.core.flat import synthesize_flat
from aiflat_gui.core.mask import grow
from aiflat_gui.core.reference import compute_reference
from aiflat_gui.errors import Cancelled, InputError, ProcessingError
from aiflat_gui.io import ArraySequence, open_sequence
from aiflat_gui.io.ser import write_ser
from aiflat_gui.io.single import write_image

GROW = 2


def _has_writer(module):
    try:
        importlib.import_module(f"aiflat_gui.io.{module}")
        return True
    except ImportError:
        return False


FORMATS = [pytest.param(fmt, ext, marks=pytest.mark.skipif(not _has_writer(mod), reason=f"io.{mod} not there yet"))
           for fmt, ext, mod in (("ser", ".ser", "ser"), ("fits", ".fits", "fits"), ("tiff", ".tif", "images"))]


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _removed(demo, cal, offset=0):
    """Fraction of the dust's darkening removed: mean over dust pixels (all frames) vs the clean truth."""
    m = demo.true_mask
    before = (demo.clean[:, m] - demo.frames[:, m].astype(np.float64)).mean()
    after = (demo.clean[:, m] - cal[:, m].astype(np.float64)).mean()
    return 1.0 - after / before


@pytest.fixture(scope="module")
def easy(tmp_path_factory):
    d = tmp_path_factory.mktemp("easy")
    demo = generate_demo(frames=16, width=256, height=192, seed=5, difficulty="easy")
    path = write_ser(d / "demo.ser", demo.frames, timestamps=demo.timestamps, bit_depth=12)
    write_image(d / "mask.png", demo.true_mask.astype(np.uint8) * 255)
    return demo, path, d


@pytest.mark.parametrize("fmt,ext", FORMATS)
def test_dust_removed_and_outside_bit_exact(easy, tmp_path, fmt, ext):
    demo, src, d = easy
    before = _sha(src)
    seq = open_sequence(src)
    ref = compute_reference(seq)
    flat = synthesize_flat(ref, demo.true_mask, grow=GROW)
    out = tmp_path / f"cal{ext}"
    stats = calibrate_sequence(seq, flat, out)
    assert stats.format == fmt and stats.frames == 16 and stats.output == out
    cal = open_sequence(out)
    data = np.stack([cal.frame(i) for i in range(cal.n_frames)])
    seq.close()
    cal.close()
    assert data.dtype == np.uint16 and data.shape == demo.frames.shape
    outside = ~grow(demo.true_mask, GROW)
    assert np.array_equal(data[:, outside], demo.frames[:, outside])  # not one pixel differs
    removed = _removed(demo, data)
    assert 0.95 <= removed <= 1.10, removed  # >= 95 % of the darkening gone, no gross over-correction
    assert _sha(src) == before


def test_pedestal_calibration_matches_the_no_offset_case_and_ignoring_it_is_wrong():
    """A flat made from one video calibrates another of the same session (batch). The pedestal must
    come off first: dust attenuates the signal, not the camera offset."""
    res = {}
    for offset in (0, 300):
        demo = generate_demo(frames=12, width=256, height=192, seed=5, difficulty="easy", offset=offset)
        ref = compute_reference(ArraySequence(demo.frames, bit_depth=16))
        # the session's second video: same dust, half the exposure
        frames_b = np.rint(offset + (demo.frames.astype(np.float64) - offset) * 0.5).astype(np.uint16)
        clean_b = offset + (demo.clean - offset) * 0.5
        clean_ref = np.median(demo.clean, axis=0)  # the ai method with a perfect clean image isolates
        for p in {0, offset}:                      # the pedestal's effect from any fill error
            flat = synthesize_flat(ref, demo.true_mask, method="ai", clean=clean_ref, grow=GROW, pedestal=p)
            cal = calibrate_array(frames_b, flat, pedestal=p).astype(np.float64)
            m = demo.true_mask
            before = (clean_b[:, m] - frames_b[:, m]).mean()
            res[(offset, p)] = 1.0 - (clean_b[:, m] - cal[:, m]).mean() / before
    assert abs(res[(300, 300)] - res[(0, 0)]) < 0.02, res  # as good as without an offset
    assert 0.95 <= res[(300, 300)] <= 1.05, res
    # ignoring the 300 ADU pedestal (on ~1200 ADU of signal) leaves a large error
    assert abs(res[(300, 0)] - 1.0) > 0.1, res  # 14 % over-correction here


def test_only_flat_pixels_are_computed_rounding_and_clipping():
    raw = np.array([[[100, 4000], [4095, 7]]], dtype=np.uint16)
    flat = np.array([[1.0, 0.5], [0.9, 1.0]], np.float32)
    fc = FrameCalibrator(flat, np.uint16, (0.0, 4095.0))
    assert list(fc.idx) == [1, 2]
    out = raw.copy()
    assert fc.apply(out) == 2  # 8000 and 4550 exceed the 12-bit range
    assert out.tolist() == [[[100, 4095], [4095, 7]]]
    out = calibrate_array(np.array([[10, 11]], np.uint16), np.array([[1.0, 0.3]], np.float32), limits="dtype")
    assert out.tolist() == [[10, 37]]  # round(11 / 0.3) = round(36.67)
    p = calibrate_array(np.array([[110]], np.uint16), np.array([[0.5]], np.float32), pedestal=100)
    assert p.tolist() == [[120]]  # (110 - 100) / 0.5 + 100


def test_clipped_pixels_are_counted_and_float_data_stays_float(tmp_path):
    data = np.full((3, 8, 8), 4000, np.uint16)
    flat = np.ones((8, 8), np.float32)
    flat[2:4, 2:4] = 0.5
    seq = ArraySequence(data, bit_depth=12)
    stats = calibrate_sequence(seq, flat, tmp_path / "c.ser")
    assert stats.clipped == 3 * 4
    back = open_sequence(tmp_path / "c.ser")
    assert back.frame(0)[2, 2] == 4095 and back.frame(0)[0, 0] == 4000
    back.close()
    f = np.full((2, 4, 4), 0.3, np.float32)
    out = calibrate_array(f, np.full((4, 4), 0.7, np.float32))
    assert out.dtype == np.float32 and np.allclose(out, 0.3 / 0.7)


def test_cancel_leaves_no_output_and_no_temp_file(easy, tmp_path):
    demo, src, d = easy
    seq = open_sequence(src)
    flat = np.ones((seq.height, seq.width), np.float32)
    flat[10:20, 10:20] = 0.5

    def cancel(f, m):
        if f > 0.3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        calibrate_sequence(seq, flat, tmp_path / "out.ser", progress=cancel, chunk_bytes=seq.frame_nbytes)
    seq.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fast", [True, False])
def test_disk_full_is_a_one_line_processing_error_with_no_output(easy, tmp_path, monkeypatch, fast):
    from aiflat_gui.io import ser

    demo, src, d = easy

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ser.SerWriter, "_write", full)  # the streaming writer
    monkeypatch.setattr(os, "copy_file_range", full)  # the SER copy + patch path
    monkeypatch.setattr(os, "pwrite", full)
    seq = open_sequence(src)
    with pytest.raises(ProcessingError) as e:
        calibrate_sequence(seq, np.ones((seq.height, seq.width), np.float32), tmp_path / "out.ser", fast=fast)
    seq.close()
    assert "disk full" in str(e.value) and "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def _ser_cases(tmp_path):
    rng = np.random.default_rng(9)
    f16 = rng.integers(0, 4096, size=(5, 30, 40), dtype=np.uint16)
    f8 = rng.integers(0, 256, size=(4, 30, 40), dtype=np.uint8)
    ts = 638000000000000000 + np.arange(5, dtype=np.int64) * 333333
    return {
        "16-bit with trailer": write_ser(tmp_path / "a.ser", f16, timestamps=ts, bit_depth=12),
        "8-bit, no trailer": write_ser(tmp_path / "b.ser", f8, trailer=False),
        "big-endian": write_ser(tmp_path / "c.ser", f16, byte_order="big"),
        "rgb": write_ser(tmp_path / "d.ser", rng.integers(0, 65535, size=(3, 30, 40, 3), dtype=np.uint16), color="RGB"),
    }


def test_ser_copy_and_patch_equals_the_streaming_writer_byte_for_byte(tmp_path):
    for name, src in _ser_cases(tmp_path).items():
        with open_sequence(src) as seq:
            flat = np.ones((30, 40), np.float32)
            flat[5:12, 7:19] = np.linspace(0.2, 0.95, 84, dtype=np.float32).reshape(7, 12)
            a = calibrate_sequence(seq, flat, tmp_path / f"{name}-fast.ser", pedestal=3.0)
            b = calibrate_sequence(seq, flat, tmp_path / f"{name}-slow.ser", pedestal=3.0, fast=False)
        assert a.clipped == b.clipped and a.frames == b.frames
        assert (tmp_path / f"{name}-fast.ser").read_bytes() == (tmp_path / f"{name}-slow.ser").read_bytes(), name
        if name != "big-endian":  # the big-endian input becomes little-endian: no plain copy there
            fast_b = (tmp_path / f"{name}-fast.ser").read_bytes()
            src_b = Path(src).read_bytes()
            assert len(fast_b) == len(src_b) and sum(x != y for x, y in zip(fast_b[:178], src_b[:178])) == 0


def test_ser_copy_and_patch_cancel_leaves_nothing(easy, tmp_path):
    demo, src, d = easy
    seq = open_sequence(src)
    flat = np.ones((seq.height, seq.width), np.float32)
    flat[10:20, 10:20] = 0.5
    for stop in (0.1, 0.9, 0.999):  # during the copy, during the patch, at the final 1.0 report
        def cancel(f, m, stop=stop):
            if f > stop:
                raise Cancelled()

        with pytest.raises(Cancelled):
            calibrate_sequence(seq, flat, tmp_path / "out.ser", progress=cancel)
        assert list(tmp_path.iterdir()) == []
    seq.close()


def test_output_equal_to_input_is_refused(easy):
    demo, src, d = easy
    before = _sha(src)
    seq = open_sequence(src)
    with pytest.raises(InputError, match="input"):
        calibrate_sequence(seq, np.ones((seq.height, seq.width), np.float32), src)
    seq.close()
    assert _sha(src) == before


def test_load_flat_checks(easy, tmp_path):
    demo, src, d = easy
    seq = open_sequence(src)
    good = np.ones((seq.height, seq.width), np.float32)
    write_image(tmp_path / "ok.fits", good)
    assert load_flat(tmp_path / "ok.fits", seq).shape == (seq.height, seq.width)
    cases = {"size.fits": np.ones((10, 10), np.float32), "nan.fits": np.where(np.eye(1, seq.width, dtype=bool), np.nan, good),
             "zero.fits": np.where(np.eye(1, seq.width, dtype=bool), 0.0, good).astype(np.float32)}
    for name, arr in cases.items():
        write_image(tmp_path / name, np.broadcast_to(arr, arr.shape if name == "size.fits" else good.shape).astype(np.float32))
        with pytest.raises(InputError) as e:
            load_flat(tmp_path / name, seq)
        assert name in str(e.value) and "\n" not in str(e.value)
    rgb = ArraySequence(np.zeros((2, 4, 5, 3), np.uint8))
    assert fit_flat(np.ones((4, 5), np.float32), rgb).shape == (4, 5, 3)
    with pytest.raises(InputError):
        fit_flat(np.ones((4, 5, 3), np.float32), ArraySequence(np.zeros((2, 4, 5), np.uint8)))
    seq.close()


def test_flat_from_mask_file_and_output_format(easy, tmp_path):
    demo, src, d = easy
    seq = open_sequence(src)
    flat = flat_from_mask_file(seq, d / "mask.png", FlatParams(grow=GROW))
    assert np.all(flat[~grow(demo.true_mask, GROW)] == 1.0) and flat.min() < 0.9
    assert output_format(seq, tmp_path / "x.fits") == "fits"
    assert output_format(seq, tmp_path / "x") == "ser"
    assert output_format(seq, tmp_path / "x.fits", "tiff") == "tiff"
    seq.close()


@pytest.mark.parametrize("color", ["RGB", "RGGB"])
def test_colour_and_raw_bayer_sequences(tmp_path, color):
    """RGB per channel, raw Bayer per CFA phase: dust removed, everything else bit-exact."""
    rng = np.random.default_rng(3)
    n, h, w = 6, 48, 64
    yy, xx = np.mgrid[:h, :w]
    true = np.ones((h, w))
    d = np.hypot(xx - 30, yy - 20)
    true[d <= 6] = 0.6
    mask = d <= 6
    if color == "RGB":
        level = np.array([2000.0, 1200.0, 600.0])
        sig = (1 + 0.002 * xx)[..., None] * level
        frames = np.stack([sig * true[..., None] + rng.normal(0, 2, sig.shape) for _ in range(n)])
    else:
        gain = np.tile(np.array([[2000.0, 1200.0], [1200.0, 600.0]]), (h // 2, w // 2))
        sig = gain * (1 + 0.002 * xx)
        frames = np.stack([sig * true + rng.normal(0, 2, sig.shape) for _ in range(n)])
    frames = np.clip(np.rint(frames), 0, 65535).astype(np.uint16)
    src = write_ser(tmp_path / "c.ser", frames, color=color)
    with open_sequence(src) as seq:
        assert seq.color == color
        ref = compute_reference(seq)
        flat = synthesize_flat(ref, mask, grow=1, color=seq.color)
        stats = calibrate_sequence(seq, flat, tmp_path / "out.ser")
    with open_sequence(stats.output) as out:
        cal = out[:]
    outside = ~grow(mask, 1)
    assert np.array_equal(cal[:, outside], frames[:, outside])
    got = cal[:, mask].astype(np.float64).mean(axis=0)  # vs the dust-free signal
    np.testing.assert_allclose(got, sig[mask], rtol=0.02)


def test_8bit_avi_in_and_out(tmp_path):
    from aiflat_gui.io import open_writer

    rng = np.random.default_rng(5)
    frames = rng.integers(60, 200, size=(5, 40, 48), dtype=np.uint8)
    src = tmp_path / "in.avi"
    with open_writer(src, "avi", ArraySequence(frames)) as w:
        for f in frames:
            w.write(f)
    flat = np.ones((40, 48), np.float32)
    flat[10:15, 10:15] = 0.5
    with open_sequence(src) as seq:
        assert seq.dtype == np.uint8 and seq.channels == 1
        stats = calibrate_sequence(seq, flat, tmp_path / "out.avi")
    assert stats.format == "avi" and stats.clipped == int((frames[:, 10:15, 10:15] >= 128).sum())
    with open_sequence(stats.output) as out:
        cal = out[:]
    outside = flat == 1.0
    assert np.array_equal(cal[:, outside], frames[:, outside])
    assert np.array_equal(cal[:, 10:15, 10:15], np.minimum(255, frames[:, 10:15, 10:15].astype(int) * 2))


def _assert_fast_path(src) -> None:
    """The test's SER takes the copy + patch path (a header that disagrees with the data does not)."""
    from aiflat_gui.io import ser_patch as C

    with open_sequence(src) as seq:
        assert C.can_copy_patch(seq, "ser", None), seq.warnings


@pytest.mark.parametrize("durable", [False, True])
def test_ser_copy_and_patch_over_many_chunks_equals_the_streaming_writer(tmp_path, monkeypatch, durable):
    # several copy chunks, so the copy of one chunk overlaps the patching of the one before
    from aiflat_gui.io import ser_patch as C

    rng = np.random.default_rng(3)
    frames = rng.integers(0, 4096, size=(23, 64, 96), dtype=np.uint16)
    src = write_ser(tmp_path / "in.ser", frames, timestamps=638000000000000000 + np.arange(23) * 1000, bit_depth=12)
    _assert_fast_path(src)
    flat = np.ones((64, 96), np.float32)
    flat[3:9, 5:40] = 0.7
    flat[40:60, 90:96] = np.float32(0.55)
    flat[63, 0] = 0.9
    monkeypatch.setattr(C, "COPY_CHUNK", 3 * 64 * 96 * 2)  # 3 frames per chunk: 8 chunks
    with open_sequence(src) as seq:
        a = calibrate_sequence(seq, flat, tmp_path / "fast.ser", durable=durable)
        b = calibrate_sequence(seq, flat, tmp_path / "slow.ser", fast=False)
    assert a.clipped == b.clipped
    assert (tmp_path / "fast.ser").read_bytes() == (tmp_path / "slow.ser").read_bytes()
    with open_sequence(tmp_path / "fast.ser") as out:
        got = np.stack([out.frame(i) for i in range(out.n_frames)])
    keep = flat == 1.0
    assert np.array_equal(got[:, keep], frames[:, keep])  # outside the dust: the input, bit for bit
    assert not np.array_equal(got[:, ~keep], frames[:, ~keep])


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("durable", [False, True])
def test_outputs_are_fsynced_before_the_rename_only_when_durable(tmp_path, monkeypatch, fast, durable):
    from aiflat_gui.io import base

    frames = np.random.default_rng(1).integers(0, 4096, size=(4, 20, 30), dtype=np.uint16)
    src = write_ser(tmp_path / "in.ser", frames, bit_depth=12)  # a consistent header: the fast path applies
    flat = np.ones((20, 30), np.float32)
    flat[5:9, 5:9] = 0.8
    synced: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else str(fd))
        return real_fsync(fd)

    def replace(a, b):
        synced.append(f"rename {Path(b).name}")
        return real_replace(a, b)

    _assert_fast_path(src)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(base.os, "replace", replace)
    if durable:
        monkeypatch.setenv("AIFLAT_FSYNC", "1")  # the process default, as `aiflat --fsync` sets it
    with open_sequence(src) as seq:
        calibrate_sequence(seq, flat, tmp_path / "out.ser", fast=fast)
    assert (tmp_path / "out.ser").exists()
    renamed = synced.index("rename out.ser")
    if durable:
        assert any(".out.ser." in s and s.endswith(".partial") for s in synced[:renamed]), synced
        assert any(s == str(tmp_path) for s in synced[renamed:]), synced  # then the folder holding the name
    else:
        assert synced == ["rename out.ser"]


def test_cli_fsync_flag_makes_outputs_durable(tmp_path, monkeypatch):
    from aiflat_gui import cli
    from aiflat_gui.io.base import durable_default

    frames = np.random.default_rng(1).integers(0, 4096, size=(4, 20, 30), dtype=np.uint16)
    src = write_ser(tmp_path / "in.ser", frames, bit_depth=12)  # a consistent header: the fast path applies
    write_image(tmp_path / "flat.fits", np.ones((20, 30), np.float32))
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    assert cli.main(["-q", "calibrate", str(src), "--flat", str(tmp_path / "flat.fits"), "-o",
                     str(tmp_path / "a.ser")]) == 0
    assert calls == [] and not durable_default()
    assert cli.main(["calibrate", "--fsync", "-q", str(src), "--flat", str(tmp_path / "flat.fits"), "-o",
                     str(tmp_path / "b.ser")]) == 0
    assert calls and durable_default()
    assert (tmp_path / "a.ser").read_bytes() == (tmp_path / "b.ser").read_bytes()


def test_page_runs_merge_small_gaps():
    from aiflat_gui.io.ser_patch import page_runs

    offs = np.array([0, 10, 4095, 4096, 3 * 4096 + 5, 10 * 4096, 10 * 4096 + 1, 14 * 4096])
    first, end = page_runs(offs, 4096)
    assert first.tolist() == [0, 3, 10, 14] and end.tolist() == [2, 4, 11, 15]
    first, end = page_runs(offs, 4096, gap=3)
    assert first.tolist() == [0, 10] and end.tolist() == [4, 15]
    assert [len(x) for x in page_runs(np.array([], np.int64), 4096)] == [0, 0]


def test_ser_copy_and_patch_without_madvise_gives_the_same_bytes(tmp_path, monkeypatch):
    from aiflat_gui.io import ser_patch as C

    frames = np.random.default_rng(2).integers(0, 4096, size=(9, 40, 50), dtype=np.uint16)
    src = write_ser(tmp_path / "in.ser", frames, bit_depth=12)  # a consistent header: the fast path applies
    flat = np.ones((40, 50), np.float32)
    flat[10:30, 3:20] = 0.6
    monkeypatch.setattr(C, "COPY_CHUNK", 2 * 40 * 50 * 2)
    _assert_fast_path(src)
    with open_sequence(src) as seq:
        calibrate_sequence(seq, flat, tmp_path / "a.ser")
        monkeypatch.setattr(C, "_populator", lambda: None)  # no MADV_POPULATE_WRITE: plain page faults
        calibrate_sequence(seq, flat, tmp_path / "b.ser")
        calibrate_sequence(seq, flat, tmp_path / "c.ser", fast=False)
    assert (tmp_path / "a.ser").read_bytes() == (tmp_path / "b.ser").read_bytes() == (tmp_path / "c.ser").read_bytes()


def test_ser_copy_and_patch_of_a_file_smaller_than_a_page(tmp_path):
    frames = np.arange(3 * 10 * 12, dtype=np.uint16).reshape(3, 10, 12)
    src = write_ser(tmp_path / "in.ser", frames, trailer=False, bit_depth=9)
    assert src.stat().st_size < 4096
    _assert_fast_path(src)
    flat = np.ones((10, 12), np.float32)
    flat[2:4, 3:6] = 0.5
    with open_sequence(src) as seq:
        calibrate_sequence(seq, flat, tmp_path / "a.ser")
        calibrate_sequence(seq, flat, tmp_path / "b.ser", fast=False)
    assert (tmp_path / "a.ser").read_bytes() == (tmp_path / "b.ser").read_bytes()


def test_a_durable_output_flushes_itself_and_its_folder_never_the_neighbours(tmp_path, monkeypatch):
    frames = np.random.default_rng(1).integers(0, 4096, size=(4, 20, 30), dtype=np.uint16)
    src = write_ser(tmp_path / "in.ser", frames, bit_depth=12)  # a consistent header: the fast path applies
    _assert_fast_path(src)
    for i in range(5):
        (tmp_path / f"other{i}.bin").write_bytes(b"x" * 100)
    flat = np.ones((20, 30), np.float32)
    flat[5:9, 5:9] = 0.8
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd))[1])
    for fast in (True, False):
        synced.clear()
        with open_sequence(src) as seq:
            calibrate_sequence(seq, flat, tmp_path / f"out-{fast}.ser", fast=fast, durable=True)
        assert synced and all(".partial" in p or p == str(tmp_path) for p in synced), synced
        assert not any("other" in p or p.endswith("in.ser") for p in synced)


def test_a_worker_error_or_cancel_between_chunks_leaves_nothing(tmp_path, monkeypatch):
    from aiflat_gui.io import ser_patch as C

    frames = np.random.default_rng(5).integers(0, 4096, size=(12, 32, 40), dtype=np.uint16)
    src = write_ser(tmp_path / "in.ser", frames, bit_depth=12)
    before = src.read_bytes()
    flat = np.ones((32, 40), np.float32)
    flat[28:32, 30:40] = 0.7  # dust in the last page of every chunk
    monkeypatch.setattr(C, "COPY_CHUNK", 2 * 32 * 40 * 2)
    _assert_fast_path(src)
    calls = {"n": 0}
    real = FrameCalibrator.compute

    def failing(self, raw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise MemoryError("simulated")
        return real(self, raw)

    monkeypatch.setattr(FrameCalibrator, "compute", failing)
    with open_sequence(src) as seq, pytest.raises(MemoryError):
        calibrate_sequence(seq, flat, tmp_path / "out.ser")
    monkeypatch.setattr(FrameCalibrator, "compute", real)

    def cancel(f, m):
        if f > 0.4:
            raise Cancelled()

    with open_sequence(src) as seq, pytest.raises(Cancelled):
        calibrate_sequence(seq, flat, tmp_path / "out.ser", progress=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ser"]
    assert src.read_bytes() == before
    with open("/proc/self/maps") as fh:
        assert ".partial" not in fh.read()  # no mapping of the deleted temporary file pins its space


def test_without_kernel_copy_or_positioned_writes_the_streaming_writer_is_used(tmp_path, monkeypatch):
    # Windows has neither os.copy_file_range nor os.pwrite: the fast path must step aside
    from aiflat_gui.io import ser_patch as C

    frames = np.random.default_rng(6).integers(0, 4096, size=(5, 20, 30), dtype=np.uint16)
    src = write_ser(tmp_path / "in.ser", frames, bit_depth=12)
    flat = np.ones((20, 30), np.float32)
    flat[3:7, 4:9] = 0.6
    with open_sequence(src) as seq:
        assert C.can_copy_patch(seq, "ser", None)
        calibrate_sequence(seq, flat, tmp_path / "a.ser")
    monkeypatch.delattr(os, "copy_file_range", raising=False)
    monkeypatch.delattr(os, "pwrite", raising=False)
    with open_sequence(src) as seq:
        assert not C.can_copy_patch(seq, "ser", None)
        calibrate_sequence(seq, flat, tmp_path / "b.ser")
    assert (tmp_path / "a.ser").read_bytes() == (tmp_path / "b.ser").read_bytes()

"""Reference frames: exact results in bounded memory, evenly spaced frames, progress and cancel."""

import numpy as np
import pytest

from aiflat_gui.core.reference import block_rows_for, compute_reference, frame_indices, sigma_clipped_mean
from aiflat_gui.errors import Cancelled, InputError
from aiflat_gui.io import ArraySequence


class DecodingSequence(ArraySequence):
    """Like a non-memmapped reader (AVI): whole frames only, reads counted."""

    def __init__(self, data):
        super().__init__(data)
        self.memmapped = False
        self.reads = 0

    def _read_frame(self, i):
        self.reads += 1
        return self._data[i].copy()

    def frame_rows(self, i, y0, y1):  # pragma: no cover - must not be used for non-memmapped data
        raise AssertionError("frame_rows used on a non-memmapped sequence")


def _data(n=9, h=37, w=23, c=None, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, h, w) if c is None else (n, h, w, c)
    return rng.integers(0, 4096, size=shape, dtype=np.uint16)


@pytest.mark.parametrize("n", [8, 9])  # even counts average the two middle values
def test_median_is_exact_with_many_row_blocks(n):
    data = _data(n=n)
    seq = ArraySequence(data)
    budget = 5 * data[0, :1].nbytes * n  # a couple of rows per block
    assert block_rows_for(seq, n, budget) < 5
    ref = compute_reference(seq, "median", budget=budget)
    assert ref.dtype == np.float32 and ref.shape == data.shape[1:]
    np.testing.assert_array_equal(ref, np.median(data, axis=0).astype(np.float32))


def test_mean_and_rgb_shapes():
    data = _data(c=3)
    ref = compute_reference(ArraySequence(data), "mean")
    np.testing.assert_allclose(ref, data.mean(axis=0), rtol=1e-6)
    med = compute_reference(ArraySequence(data), "median")
    np.testing.assert_array_equal(med, np.median(data, axis=0).astype(np.float32))


def test_sigmaclip_rejects_outliers_that_bias_the_mean():
    rng = np.random.default_rng(1)
    data = (1000 + rng.normal(0, 5, (20, 8, 8))).astype(np.float32)
    data[3, 2, 2] = 60000  # a cosmic ray / hot frame pixel
    ref = compute_reference(ArraySequence(data), "sigmaclip")
    assert abs(ref[2, 2] - 1000) < 5
    assert abs(data[:, 2, 2].mean() - 1000) > 2000  # the plain mean is ruined
    clean = np.delete(data[:, 2, 2], 3)
    assert ref[2, 2] == pytest.approx(clean.mean(), abs=1e-3)
    np.testing.assert_allclose(sigma_clipped_mean(data[:, :1, :1]), data[:, :1, :1].mean(axis=0), rtol=1e-5)


def test_max_frames_uses_evenly_spaced_frames():
    idx = frame_indices(100, 5)
    assert list(idx) == [0, 25, 50, 74, 99]
    assert list(frame_indices(4, 10)) == [0, 1, 2, 3]
    data = _data(n=11)
    ref = compute_reference(ArraySequence(data), "median", max_frames=3)
    np.testing.assert_array_equal(ref, np.median(data[[0, 5, 10]], axis=0))


def test_non_memmapped_reads_each_frame_once_when_it_fits_the_budget():
    data = _data(n=10)
    seq = DecodingSequence(data)
    ref = compute_reference(seq, "median")
    assert seq.reads == 10
    np.testing.assert_array_equal(ref, np.median(data, axis=0))
    # a tiny budget: several passes, same exact answer
    seq2 = DecodingSequence(data)
    ref2 = compute_reference(seq2, "median", budget=data[0].nbytes * 4)
    assert seq2.reads > 10
    np.testing.assert_array_equal(ref2, ref)


def test_progress_reaches_one_and_cancel_stops():
    data = _data(n=20)
    seen = []
    compute_reference(ArraySequence(data), "median", progress=lambda f, m: seen.append(f), budget=data[0].nbytes * 30)
    assert seen[-1] == 1.0 and seen == sorted(seen)

    def cancel(f, m):
        if f > 0.2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        compute_reference(ArraySequence(data), "median", progress=cancel, budget=data[0].nbytes * 30)


def test_bad_method_is_an_input_error():
    with pytest.raises(InputError):
        compute_reference(ArraySequence(_data()), "mode")


@pytest.mark.parametrize("n", [9, 10])
def test_threaded_median_with_read_ahead_is_exact(n):
    # frames wide enough that each block's pixels are split across threads, several blocks
    rng = np.random.default_rng(n)
    data = rng.integers(0, 4096, size=(n, 60, 256), dtype=np.uint16)
    seq = ArraySequence(data)
    budget = 20 * 256 * 2 * n * 4 + 20 * 256 * n * 4  # ~20 rows per block
    assert 4096 <= 256 * block_rows_for(seq, n, budget) < 60 * 256
    ref = compute_reference(seq, "median", budget=budget)
    assert np.array_equal(ref, np.median(data, axis=0).astype(np.float32))


def test_command_line_max_frames_convention():
    from aiflat_gui.core.reference import DEFAULT_MAX_FRAMES, resolve_max_frames

    assert DEFAULT_MAX_FRAMES == 128 and resolve_max_frames(None) == 128
    assert resolve_max_frames(0) is None and resolve_max_frames(5) == 5
    with pytest.raises(InputError):
        resolve_max_frames(-1)
    data = np.arange(200 * 2 * 3, dtype=np.uint16).reshape(200, 2, 3)
    seq = ArraySequence(data)
    every = compute_reference(seq, max_frames=resolve_max_frames(0))
    assert np.array_equal(every, np.median(data, axis=0).astype(np.float32))
    some = compute_reference(seq, max_frames=resolve_max_frames(None))
    idx = np.unique(np.round(np.linspace(0, 199, 128)).astype(int))
    assert np.array_equal(some, np.median(data[idx], axis=0).astype(np.float32))


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", ">u2", "uint32", "float32", "float64"])
@pytest.mark.parametrize("n", [6, 7])
def test_median_is_exact_for_every_sample_type(dtype, n):
    # small integers are widened to int32 for numpy's SIMD partition: the values must not change
    dt = np.dtype(dtype)
    rng = np.random.default_rng(n)
    if dt.kind == "f":
        data = (rng.normal(0, 1e4, size=(n, 40, 130))).astype(dt)
    else:
        info = np.iinfo(dt)
        data = rng.integers(info.min, int(info.max) + 1, size=(n, 40, 130), dtype=np.int64).astype(dt)
    ref = compute_reference(ArraySequence(data), "median")
    assert np.array_equal(ref, np.median(data, axis=0).astype(np.float32))


def test_median_of_a_ser_prefetches_each_row_block_and_stays_exact(tmp_path, monkeypatch):
    from aiflat_gui.io import open_sequence
    from aiflat_gui.io.ser import SerSequence, write_ser

    data = _data(n=11, h=50, w=70, seed=4)
    src = write_ser(tmp_path / "m.ser", data, bit_depth=12)
    asked = []
    real = SerSequence.prefetch_rows

    def spy(self, indices, y0, y1):
        asked.append((len(list(indices)), y0, y1))
        return real(self, indices, y0, y1)

    monkeypatch.setattr(SerSequence, "prefetch_rows", spy)
    with open_sequence(src) as seq:
        budget = 7 * 70 * 11 * 8  # a few rows per block
        rows = block_rows_for(seq, 11, budget)
        ref = compute_reference(seq, "median", budget=budget)
    assert np.array_equal(ref, np.median(data, axis=0).astype(np.float32))
    blocks = -(-50 // rows)
    assert sorted(y0 for _, y0, _ in asked) == [b * rows for b in range(blocks)]  # every block, once
    assert all(k == 11 for k, _, _ in asked)

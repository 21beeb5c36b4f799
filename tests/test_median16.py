"""core/median16: the detector's exact per-pixel median of float16 stacks and its float16 copies."""

import numpy as np
import pytest

from aiflat_gui.core.median16 import median_1d, median_f16, sub_to_f16, to_f16, to_f32


def _partition_median(a):
    a = a.astype(np.float32)
    k = a.shape[0]
    return np.partition(a, k // 2, axis=0)[k // 2]


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 11, 12, 13, 24, 25, 31, 40])
def test_median_is_partitions_value_for_every_count(k):
    rng = np.random.default_rng(k)
    shape = (k, 23, 41)
    a = (rng.standard_normal(shape) * rng.choice([1e-6, 1e-3, 0.05, 300.0], shape)).astype(np.float16)
    a[rng.random(shape) < 0.1] = 0.0
    a[rng.random(shape) < 0.05] = -0.0
    a[rng.random(shape) < 0.05] = 1000.0  # the separation's "no data" fills
    a[rng.random(shape) < 0.05] = -1000.0
    a[:, :4] = np.round(a[:, :4])  # many ties
    assert np.array_equal(median_f16(a), _partition_median(a))
    sel = np.sort(rng.choice(k, max(1, k // 2), replace=False))
    assert np.array_equal(median_f16(a, sel), _partition_median(a[sel]))
    # a row block of a larger stack (slots contiguous, the stack not)
    assert np.array_equal(median_f16(a[:, 5:9]), _partition_median(a[:, 5:9]))


def test_median_over_every_float16_value():
    rng = np.random.default_rng(0)
    every = np.arange(65536, dtype=np.uint16).view(np.float16)
    every = every[np.isfinite(every)]
    a = rng.permutation(np.tile(every, 24))[:24 * 200 * 100].reshape(24, 200, 100)
    assert np.array_equal(median_f16(a), _partition_median(a))


def test_float16_copies_are_numpys_bit_for_bit():
    every = np.arange(65536, dtype=np.uint16).view(np.float16).reshape(256, 256)
    fin = np.isfinite(every)
    assert np.array_equal(to_f32(every).view(np.uint32)[fin], every.astype(np.float32).view(np.uint32)[fin])
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(300_000) * s for s in (1e-6, 1e-3, 1.0, 1e3)]).astype(np.float32)
    h = np.sort(every[fin & (every >= 0)].astype(np.float64))
    ties = ((h[:-1] + h[1:]) / 2).astype(np.float32)  # halfway between two float16 values
    x = np.concatenate([x, ties, -ties])
    x = x[:x.size // 1000 * 1000].reshape(-1, 1000)
    out = np.empty((3,) + x.shape, np.float16)
    to_f16(x, out[1])
    assert np.array_equal(out[1].view(np.uint16), x.astype(np.float16).view(np.uint16))


@pytest.mark.parametrize("n", [1, 2, 3, 1000, 1001, 870_001])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_median_1d_is_numpys(n, dtype):
    rng = np.random.default_rng(n)
    v = (rng.standard_normal(n) * 0.1 + 7.0).astype(dtype)
    v[: n // 3] = np.round(v[: n // 3], 1)  # ties
    assert median_1d(v) == np.median(v)
    assert type(median_1d(v)) is type(np.median(v))


def test_median_in_threads_is_the_same():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(7)
    a = (rng.standard_normal((13, 301, 257)) * 0.05).astype(np.float16)  # not a multiple of BLOCK
    with ThreadPoolExecutor(max_workers=3) as pool:
        for threads in (1, 2, 3):
            assert np.array_equal(median_f16(a, pool=pool, threads=threads), _partition_median(a))
        assert np.array_equal(median_f16(a, [0, 4, 7, 12], pool=pool, threads=2), _partition_median(a[[0, 4, 7, 12]]))


def test_subtraction_into_float16_is_numpys_bit_for_bit():
    rng = np.random.default_rng(2)
    a = (rng.standard_normal((300, 400)) * 0.02).astype(np.float16)
    b = (rng.standard_normal((300, 400)) * 0.02).astype(np.float32)
    every = np.arange(65536, dtype=np.uint16).view(np.float16)
    h = np.sort(every[np.isfinite(every) & (every >= 0)].astype(np.float64))
    ties = ((h[:-1] + h[1:]) / 2).astype(np.float32)[:400 * 50]  # a - b halfway between two float16
    a[:50] = 0.0
    b[:50] = -ties[:20000].reshape(50, 400)
    out = np.empty((2, 300, 400), np.float16)
    sub_to_f16(a, b, out[1])
    assert np.array_equal(out[1].view(np.uint16), (a.astype(np.float32) - b).astype(np.float16).view(np.uint16))

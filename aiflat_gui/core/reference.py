"""Reference frames: the temporal median (default), mean or sigma-clipped mean of a sequence.

The result is exact (the same numbers as ``np.median(all_frames, axis=0)``) and computed in bounded
memory by streaming row blocks: for each block of rows we gather those rows from every selected
frame, reduce them, and move on. Memory-mapped sequences (SER, raw FITS, ArraySequence) read each
block straight from the map (``frame_rows``), so the file is read once in total. Sequences that must
decode whole frames (AVI, compressed TIFF) read every frame once per block; the block size comes
from a memory budget (256 MB by default) so any video whose selected frames fit the budget is read
in one pass.

The mean needs no blocks: a float64 running sum over whole frames, one pass.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional

import numpy as np

from ..errors import InputError
from ..progress import ProgressFn, report

METHODS = ("median", "mean", "sigmaclip")

#: Default working-memory budget for the row blocks of median / sigma-clip.
DEFAULT_BUDGET = 256 * 1024 * 1024

#: Sigma-clip parameters: clip at this many standard deviations around the median, iterate.
SIGMA = 3.0
SIGMA_ITERATIONS = 5

#: Frames the reference of the command line, ``aiflat run`` and the GUI-free pipeline uses by
#: default (evenly spaced): the dust is static, and the median of 128 frames is ample for a
#: reference, while the median of every frame of a long video is compute-bound (see
#: bench/calibrate_vs_cp.py). ``max_frames=0`` means every frame.
DEFAULT_MAX_FRAMES = 128


def resolve_max_frames(max_frames: Optional[int], default: int = DEFAULT_MAX_FRAMES) -> Optional[int]:
    """The command-line convention: None -> ``default``; 0 -> None (every frame); N -> N."""
    if max_frames is None:
        return default
    if max_frames < 0:
        raise InputError(f"--max-frames must be 0 (all frames) or more, not {max_frames}")
    return None if max_frames == 0 else int(max_frames)


#: Threads for the median's partition (numpy releases the GIL there); capped by the CPU count.
THREADS = 2


def frame_indices(n_frames: int, max_frames: Optional[int] = None) -> np.ndarray:
    """All frame indices, or ``max_frames`` evenly spaced ones (first and last included)."""
    if n_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    if not max_frames or max_frames >= n_frames:
        return np.arange(n_frames, dtype=np.int64)
    if max_frames < 1:
        raise InputError(f"--max-frames must be at least 1, not {max_frames}")
    return np.unique(np.round(np.linspace(0, n_frames - 1, int(max_frames))).astype(np.int64))


def compute_reference(seq, method: str = "median", max_frames: Optional[int] = None,
                      progress: Optional[ProgressFn] = None, budget: int = DEFAULT_BUDGET) -> np.ndarray:
    """Reference frame of ``seq`` as float32 ``(H, W)`` or ``(H, W, C)``.

    ``method``: ``median`` (exact temporal median; even counts average the two middle values),
    ``mean``, or ``sigmaclip`` (per pixel: iteratively drop samples further than 3 sigma from the
    median, up to 5 rounds, then average the rest). ``max_frames``: use that many evenly spaced
    frames. ``progress`` may raise :class:`~aiflat_gui.errors.Cancelled`.
    """
    if method not in METHODS:
        raise InputError(f"unknown reference method '{method}' (choose from {', '.join(METHODS)})")
    idx = frame_indices(seq.n_frames, max_frames)
    if len(idx) == 0:
        raise InputError("sequence has no frames", seq.path)
    report(progress, 0.0, f"reference ({method}, {len(idx)} frames)")
    if method == "mean" or len(idx) == 1:
        out = _mean(seq, idx, progress)
    else:
        out = _blockwise(seq, idx, method, progress, budget)
    report(progress, 1.0, "reference done")
    return out


def _mean(seq, idx: np.ndarray, progress) -> np.ndarray:
    dt = np.dtype(seq.dtype)
    if dt.kind == "u" and dt.itemsize <= 2:
        # exact integer sums: a uint32 accumulator (2x faster than float64) folded into uint64
        # before it could overflow (65536 frames of 16-bit data)
        total = np.zeros(seq.frame_shape, dtype=np.uint64)
        acc = np.zeros(seq.frame_shape, dtype=np.uint32)
        since = 0
        for k, i in enumerate(idx):
            np.add(acc, seq.frame(int(i)), out=acc, casting="unsafe")
            since += 1
            if since == 65536:
                total += acc
                acc[...] = 0
                since = 0
            report(progress, (k + 1) / len(idx), f"frame {k + 1}/{len(idx)}")
        total += acc
        return (total / len(idx)).astype(np.float32)
    acc64 = np.zeros(seq.frame_shape, dtype=np.float64)
    for k, i in enumerate(idx):
        acc64 += seq.frame(int(i))
        report(progress, (k + 1) / len(idx), f"frame {k + 1}/{len(idx)}")
    return (acc64 / len(idx)).astype(np.float32)


def block_rows_for(seq, n: int, budget: int, buffers: int = 2, method: str = "median") -> int:
    """Rows per block so that ``buffers`` gathered blocks of ``n`` frames (the next block is read
    while the current one is reduced) and the working set stay within ``budget`` bytes: the
    median's pixel-major copy (:func:`_work_dtype`), or for the sigma-clip one more block and a
    float32 copy."""
    row_bytes = seq.width * seq.channels * np.dtype(seq.dtype).itemsize * n
    samples = seq.width * seq.channels * n
    if method == "median":
        per_row = row_bytes * buffers + samples * _work_dtype(seq.dtype).itemsize
    else:
        per_row = row_bytes * (buffers + 1) + samples * 4
    return int(max(1, min(seq.height, budget // max(1, per_row))))


def _work_dtype(dtype) -> np.dtype:
    """Sample type of the median's pixel-major working copy. numpy partitions 32- and 64-bit rows
    with SIMD (x86-simd-sort: AVX2 or AVX-512) but 8- and 16-bit rows only with AVX-512, so small
    integers are widened to int32 -- measured 2.8 ns per sample (widen + partition) against 9.6 ns
    for uint16 as it is, on an AVX2 machine. The values, and so the median, are unchanged."""
    dt = np.dtype(dtype)
    if (dt.kind in "ui" and dt.itemsize <= 2) or dt.kind == "b":
        return np.dtype(np.int32)
    if dt.kind == "f" and dt.itemsize < 4:
        return np.dtype(np.float32)
    return dt.newbyteorder("=")


def _threads() -> int:
    return max(1, min(THREADS, os.cpu_count() or 1))


def _blockwise(seq, idx: np.ndarray, method: str, progress, budget: int) -> np.ndarray:
    """Row blocks: while the median of block ``b`` is computed (numpy's partition releases the GIL,
    so the block's pixels are split across :data:`THREADS` threads), a reader thread gathers block
    ``b + 1`` from the file -- reading and computing overlap instead of adding up."""
    n = len(idx)
    H = seq.height
    rows = block_rows_for(seq, n, budget, method=method)
    out = np.empty(seq.frame_shape, dtype=np.float32)
    n_blocks = -(-H // rows)
    rest = tuple(seq.frame_shape[1:])
    bufs = [np.empty((n, rows) + rest, dtype=seq.dtype) for _ in range(2 if n_blocks > 1 else 1)]
    tbuf = (np.empty(rows * int(np.prod(rest, dtype=np.int64)) * n, dtype=_work_dtype(seq.dtype))
            if method == "median" else None)
    memmapped = bool(getattr(seq, "memmapped", False))

    def prefetch(b: int) -> None:
        if memmapped and b < n_blocks:
            seq.prefetch_rows(idx, b * rows, min(H, (b + 1) * rows))

    def gather(b: int) -> np.ndarray:
        y0, y1 = b * rows, min(H, (b + 1) * rows)
        block = bufs[b % len(bufs)][:, : y1 - y0]
        if b == 0:
            prefetch(0)
        prefetch(b + 1)  # the disk reads the next block's rows of every frame while this one is copied
        for k, i in enumerate(idx):
            if memmapped:
                block[k] = seq.frame_rows(int(i), y0, y1)
            else:
                block[k] = seq.frame(int(i))[y0:y1]
        return block

    threads = _threads()
    with ThreadPoolExecutor(max_workers=threads + 1) as pool:
        nxt: Optional[Future[np.ndarray]] = pool.submit(gather, 0)
        try:
            for b in range(n_blocks):
                y0, y1 = b * rows, min(H, (b + 1) * rows)
                assert nxt is not None  # submitted for every block but the last's successor
                block = nxt.result()
                nxt = pool.submit(gather, b + 1) if b + 1 < n_blocks else None
                if method == "median":
                    assert tbuf is not None
                    out[y0:y1] = _median_pixel_major(block, tbuf, pool if threads > 1 else None, threads)
                else:
                    out[y0:y1] = sigma_clipped_mean(block)
                report(progress, (b + 1) / n_blocks, f"rows {y0}-{y1}")
        finally:
            if nxt is not None:  # a cancel: let the reader finish its block before the buffers go
                nxt.cancel()
                try:
                    nxt.result()
                except Exception:  # noqa: BLE001 - the cancel (or the first error) is what we raise
                    pass
    return out


def _median_pixel_major(block: np.ndarray, tbuf: np.ndarray, pool=None, threads: int = 1) -> np.ndarray:
    """Exact median along axis 0, computed on a pixel-major copy in ``tbuf`` (its type from
    :func:`_work_dtype`; partitioning contiguous rows is ~1.5x faster than numpy's median along the
    first axis), split over ``threads`` pixel ranges. One partition point only (numpy's SIMD
    partition takes a single kth; two kth fall back to the scalar introselect, 4x slower): for even
    counts the lower middle value is the largest of the lower half, and the two are averaged as
    ``np.median`` does."""
    n = block.shape[0]
    pix = int(np.prod(block.shape[1:], dtype=np.int64))
    src = block.reshape(n, pix)
    t = tbuf[: pix * n].reshape(pix, n)
    med = np.empty(pix, dtype=np.float32)
    k = n // 2

    def part(p0: int, p1: int) -> None:
        tt = t[p0:p1]
        tt[...] = src[:, p0:p1].T
        tt.partition(k, axis=1)
        if n % 2:
            med[p0:p1] = tt[:, k]
        else:
            lower = tt[:, :k].max(axis=1)
            med[p0:p1] = (lower.astype(np.float64) + tt[:, k]) / 2

    if pool is None or pix < 4096:
        part(0, pix)
    else:
        edges = np.linspace(0, pix, threads + 1).astype(np.int64)
        for f in [pool.submit(part, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]:
            f.result()
    return med.reshape(block.shape[1:])


def sigma_clipped_mean(block: np.ndarray, sigma: float = SIGMA, iterations: int = SIGMA_ITERATIONS) -> np.ndarray:
    """Per-pixel mean along axis 0 after iterative clipping at ``sigma`` standard deviations around
    the median of the kept samples (NaN-aware: a clipped sample is set to NaN)."""
    data = block.astype(np.float32)
    for _ in range(iterations):
        center = np.nanmedian(data, axis=0)
        std = np.nanstd(data, axis=0)
        with np.errstate(invalid="ignore"):
            bad = np.abs(data - center) > sigma * std
        if not bad.any():
            break
        data[bad] = np.nan
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(data, axis=0)
    # a pixel whose samples were all clipped (impossible with sigma >= 1, but be safe): median
    if np.isnan(mean).any():
        fallback = np.median(block, axis=0)
        mean = np.where(np.isnan(mean), fallback, mean)
    return mean.astype(np.float32)

"""Exact per-pixel medians of small float16 stacks, and fast float16 <-> float32 copies.

The dust detector keeps its stacks of log-darkening slots in float16 (half the memory) and takes
per-pixel medians over the slot axis many times. ``np.partition`` along the first axis of a
(k, H, W) block runs one small introselect per pixel (~0.5 us each at k = 24: ~1 s per
1920x1200 frame). Here the same order statistic comes from a selection network of element-wise
min/max over whole pixel blocks, on the float16 bit patterns mapped to unsigned integers that sort
in the same order as the values (16 lanes per AVX2 instruction): ~15x faster, and exactly the same
value as ``np.partition(a.astype(float32), k // 2, axis=0)[k // 2]`` (a zero may come back as -0.0
where the partition gave +0.0 or the other way round; they are equal).

numpy's float16 casts are scalar (~3 ns per sample); OpenCV's (``cv2.subtract`` of +0.0 with a
destination type) give bit-identical results 3-4x faster, and ``cv2.subtract`` with a float16
destination subtracts in float32 and rounds once, as numpy does.
"""

from __future__ import annotations

from concurrent.futures import Executor
from functools import lru_cache
from typing import Any, Optional, Sequence

import cv2
import numpy as np

#: Pixels per block of the selection network. Each comparator is two numpy calls on a block, so
#: small blocks are dominated by the calls' overhead: at k = 24 on 1920x1200, 16384 (k x BLOCK
#: uint16 in the L2 cache) took 0.13 s, 65536 (in the L3 cache) 0.06-0.09 s.
BLOCK = 65536


def to_f32(a: np.ndarray) -> np.ndarray:
    """``a.astype(np.float32)`` for a 2-D float16 (or float32) array, bit for bit."""
    # (OpenCV takes a scalar; its stubs say array. Subtracting +0.0 keeps every value, -0.0 and
    # NaN included, and is ~30 % faster than multiplying by 1.0)
    return cv2.subtract(a, 0.0, dtype=cv2.CV_32F)  # type: ignore[call-overload]


def to_f16(a: np.ndarray, out: np.ndarray) -> None:
    """``out[...] = a`` for a 2-D float32 ``a`` into a float16 ``out`` of the same shape (numpy's
    rounding, bit for bit)."""
    r = cv2.subtract(a, 0.0, dst=out, dtype=cv2.CV_16F)  # type: ignore[call-overload]
    if not np.shares_memory(r, out):  # (not a view OpenCV could write to)
        out[...] = r


def median_1d(v: np.ndarray) -> Any:
    """``np.median(v)`` for a 1-D float array without NaNs (the same value and scalar type), by one
    partition point: numpy's median asks for two or three (the middle ones and a NaN check),
    which takes its scalar introselect instead of its SIMD partition, ~5x slower."""
    n = v.size
    if n == 0 or v.ndim != 1 or v.dtype.kind != "f":
        return np.median(v)
    half = n // 2
    part = np.partition(v, half)
    hi = part[half]
    if n % 2:
        return hi
    # (numpy's mean of the two middle values: their sum in the array's type, halved)
    return (part[:half].max() + hi) / v.dtype.type(2)


def sub_to_f16(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out[...] = a.astype(float32) - b`` for 2-D float16 ``a``, float32 ``b`` and a float16
    ``out``, bit for bit: OpenCV subtracts in float32 and rounds once, as numpy does (one pass
    instead of two)."""
    r = cv2.subtract(a, b, dst=out, dtype=cv2.CV_16F)
    if not np.shares_memory(r, out):
        out[...] = r


@lru_cache(maxsize=None)
def _network(n: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """Comparators (a, b, min_needed, max_needed) that bring the ``n // 2``-th smallest of ``n``
    values to wire ``n // 2``: Batcher's odd-even merge sort for the next power of two (the
    comparators that touch a wire >= n dropped: those wires hold +inf), pruned backwards to the
    comparators whose outputs reach that wire."""
    p = 1
    while p < n:
        p *= 2
    comps = []
    t = 1
    while t < p:
        k = t
        while k >= 1:
            for j in range(k % t, p - k, 2 * k):
                for i in range(min(k, p - j - k)):
                    if (i + j) // (2 * t) == (i + j + k) // (2 * t) and i + j + k < n:
                        comps.append((i + j, i + j + k))
            k //= 2
        t *= 2
    need = {n // 2}
    keep = []
    for a, b in reversed(comps):
        na, nb = a in need, b in need
        if na or nb:
            keep.append((a, b, na, nb))
            need |= {a, b}
    return tuple(keep[::-1])


def median_f16(stack: np.ndarray, select: Optional[Sequence[int]] = None,
               pool: Optional[Executor] = None, threads: int = 1) -> np.ndarray:
    """Per-pixel median along axis 0 (the upper median for an even count) of a float16 stack
    (k, ...) whose slots are each C-contiguous (e.g. a row block ``stack[:, y0:y1]``), over the
    slots ``select`` (all by default). Returns float32 of shape ``stack.shape[1:]``; exactly the
    value ``np.partition`` gives (see the module's docstring). No NaNs expected. With ``pool``,
    the pixels are split into ``threads`` ranges done at once (numpy releases the GIL)."""
    if stack.dtype != np.float16:
        raise TypeError(f"median_f16 needs float16, got {stack.dtype}")
    sel = list(range(stack.shape[0])) if select is None else [int(i) for i in select]
    shape = stack.shape[1:]
    size = int(np.prod(shape))
    flat = [np.ascontiguousarray(stack[i]).reshape(-1).view(np.uint16) for i in sel]
    res = np.empty(size, np.uint16)
    parts = max(1, min(int(threads), size // BLOCK)) if pool is not None else 1
    edges = [size * j // parts // BLOCK * BLOCK for j in range(parts)] + [size]
    if parts > 1 and pool is not None:
        for f in [pool.submit(_median_range, flat, res, edges[j], edges[j + 1]) for j in range(parts)]:
            f.result()
    else:
        _median_range(flat, res, 0, size)
    out = res.view(np.float16).reshape(shape)
    return to_f32(out) if len(shape) == 2 else out.astype(np.float32)


def _median_range(flat: list, res: np.ndarray, start: int, stop: int) -> None:
    """``res[start:stop]`` = the median keys' float16 bits of the uint16 views ``flat``."""
    n = len(flat)
    net = _network(n)
    mid = n // 2
    blk = min(BLOCK, max(1, stop - start))
    work = np.empty((n + 1, blk), np.uint16)
    sign = np.empty(blk, np.int16)
    for s in range(start, stop, blk):
        e = min(stop, s + blk)
        m = e - s
        x = [work[j, :m] for j in range(n + 1)]
        sg = sign[:m]
        for j in range(n):
            # order-preserving key: positive values get the top bit set, negative ones all bits
            # flipped (float16 bits are sign-magnitude)
            b = flat[j][s:e]
            np.right_shift(b.view(np.int16), 15, out=sg)
            np.bitwise_or(sg, np.int16(-0x8000), out=sg)
            np.bitwise_xor(b, sg.view(np.uint16), out=x[j])
        tmp = x[n]
        for a, b2, na, nb in net:
            xa, xb = x[a], x[b2]
            if na and nb:
                np.minimum(xa, xb, out=tmp)
                np.maximum(xa, xb, out=xb)
                x[a], tmp = tmp, xa
            elif na:
                np.minimum(xa, xb, out=xa)
            else:
                np.maximum(xa, xb, out=xb)
        key = x[mid]
        # back from the key: top bit set -> positive (clear it); else negative (flip all bits)
        np.right_shift(key.view(np.int16), 15, out=sg)
        np.invert(sg, out=sg)
        np.bitwise_or(sg, np.int16(-0x8000), out=sg)
        np.bitwise_xor(key, sg.view(np.uint16), out=res[s:e])

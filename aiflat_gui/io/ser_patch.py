"""SER copy-and-patch: a calibrated SER written as a kernel copy of the input with only the dust
pixels rewritten (a writer capability :func:`aiflat_gui.pipeline.calibrate_sequence` asks for).

The science (which pixels, what values) comes in as ``idx`` (flat pixel indices within a frame) and
``compute(raw) -> (values, clipped)``; this module owns the byte layout (178-byte header, frames,
timestamp trailer), the kernel copy (copy_file_range) and the page-cache tricks (madvise,
sync_file_range through ctypes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import InputError
from ..progress import report

ComputeFn = Callable[[np.ndarray], tuple[np.ndarray, int]]


def can_copy_patch(seq, fmt: str, writer_options: Optional[dict]) -> bool:
    """True when the SER writer's output would be the input file byte for byte except the
    calibrated pixels: a consistent little-endian (or 8-bit) SER with a complete trailer or none."""
    if fmt != "ser" or getattr(seq, "format", "") != "ser" or writer_options:
        return False
    if not (hasattr(os, "copy_file_range") or hasattr(os, "pwrite")):
        return False  # Windows: neither a kernel copy nor positioned writes; the streaming writer
    raw = getattr(seq, "raw_header", None)
    meta = getattr(seq, "metadata", {}) or {}
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != 178 or seq.warnings:
        return False
    if np.dtype(seq.dtype).itemsize == 2 and seq.byte_order != "little":
        return False
    n, fs = int(seq.n_frames), int(seq.frame_nbytes)
    if meta.get("header_frame_count") != n:
        return False
    trailer = getattr(seq, "raw_trailer", None)
    expect = 178 + n * fs + (8 * n if trailer is not None else 0)
    if trailer is not None and (len(trailer) != 8 * n or not any(trailer)):
        return False
    try:
        return os.path.getsize(seq.path) == expect
    except OSError:
        return False


def _copy_range(src_fd: int, dst_fd: int, start: int, stop: int, state: dict) -> None:
    """Copy bytes [start, stop) in the kernel (copy_file_range, as ``cp`` does), falling back to
    pread/pwrite where the kernel or filesystem cannot."""
    done = start
    while done < stop:
        n = min(64 << 20, stop - done)
        if state.get("cfr", hasattr(os, "copy_file_range")):
            try:
                got = os.copy_file_range(src_fd, dst_fd, n, done, done)
            except OSError as exc:
                import errno

                if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    state["cfr"] = False
                    continue
                raise
        else:
            got = os.pwrite(dst_fd, os.pread(src_fd, n, done), done)
        if got <= 0:
            raise InputError(f"file shrank while being read (it ends at byte {done}, expected {stop}); "
                             "nothing was written", state.get("source"))
        done += got


def _linux_libc(name: str, argtypes: tuple):
    """The C library function ``name`` (returning int) through ctypes, which releases the GIL
    while it runs; None off Linux or where the C library lacks it."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = argtypes
    fn.restype = ctypes.c_int
    return fn


def _writeback():
    """``start(fd, offset, nbytes)`` and ``wait(fd, offset, nbytes)`` using Linux sync_file_range
    (start writeback of a range now / wait until it is on disk), or None where unavailable. For
    durable outputs they let the data reach the disk while later chunks are still being copied, so
    the final fsync finds almost nothing left to write."""
    import ctypes

    fn = _linux_libc("sync_file_range", (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint))
    if fn is None:
        return None
    write, wait_before, wait_after = 2, 1, 4  # SYNC_FILE_RANGE_WRITE / _WAIT_BEFORE / _WAIT_AFTER

    def start(fd: int, off: int, nbytes: int) -> None:
        fn(fd, off, nbytes, write)  # advisory: a failure here is caught by the final fsync

    def wait(fd: int, off: int, nbytes: int) -> None:
        fn(fd, off, nbytes, wait_before | write | wait_after)

    return start, wait


def _populator():
    """``populate(address, nbytes)``: map a range of a shared file mapping writable in one call
    (Linux >= 5.14 MADV_POPULATE_WRITE) instead of one page fault per page, with the GIL released
    while the kernel works; None where unavailable (page faults do the same)."""
    import ctypes

    fn = _linux_libc("madvise", (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int))
    if fn is None:
        return None
    state = {"ok": True}

    def populate(address: int, nbytes: int) -> None:
        if state["ok"] and fn(address, nbytes, 23) != 0:  # 23 = MADV_POPULATE_WRITE
            state["ok"] = False  # older kernel (EINVAL): plain page faults from now on

    return populate


def page_runs(byte_offsets: np.ndarray, page: int, gap: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(first page, end page) of each run of pages holding the sorted ``byte_offsets``; runs
    separated by at most ``gap`` empty pages are merged (one call costs about what a page does)."""
    pages = np.asarray(byte_offsets, dtype=np.int64) // page
    if len(pages) == 0:
        return pages, pages
    pages = pages[np.r_[True, pages[1:] != pages[:-1]]]
    br = np.flatnonzero(np.diff(pages) > 1 + gap)
    return pages[np.r_[0, br + 1]], pages[np.r_[br, len(pages) - 1]] + 1


#: Bytes per copy chunk of the SER fast path (whole frames).
COPY_CHUNK = 64 << 20


def copy_and_patch(seq, out: Path, idx: np.ndarray, compute: ComputeFn, progress=None, durable: bool = False) -> int:
    """The SER -> SER fast path for the pixels ``idx`` of every frame, whose new values ``compute`` gives. Chunk by chunk of whole frames: the main thread copies the bytes
    in the kernel (copy_file_range, as ``cp`` does) while a second thread rewrites the pixels of the
    chunk before it where the flat is not 1.0, through a shared map of the copy (mapping only the
    pages that hold such pixels; the copied pages are still in the page cache). Every byte is read
    once and written once, and the patching overlaps the copying.

    Atomic like the writers: a temporary name renamed on success (after the final 1.0 progress
    report), deleted on any exception. ``durable``: also start each patched chunk's writeback
    (sync_file_range), waiting for the chunk before last so dirty pages stay bounded, and fsync
    before the rename."""
    import mmap
    from concurrent.futures import ThreadPoolExecutor

    from .base import AtomicOutput, disk_errors, fsync_fd

    size = os.path.getsize(seq.path)
    n = int(seq.n_frames)
    pix = int(np.prod(seq.frame_shape))
    dt = np.dtype(seq.dtype).newbyteorder("<")
    fs = pix * dt.itemsize
    k = max(1, COPY_CHUNK // max(1, fs))
    if len(idx):
        k = max(1, min(k, (16 << 20) // max(1, len(idx) * 8)))  # float64 working set of a chunk
    wb = _writeback() if durable else None
    populate = _populator()
    page = mmap.PAGESIZE
    pix_bytes = idx.astype(np.int64) * dt.itemsize  # byte offset of each dust pixel in a frame
    state: dict = {"source": seq.path}
    clipped = [0]

    def chunk_bytes(i0: int, i1: int) -> tuple[int, int]:
        """Bytes to copy for frames [i0, i1): from where the chunk before stopped to the first page
        boundary at or after the chunk's last frame (the last chunk takes the trailer). Page
        boundaries: the page the worker patches is never one the kernel is copying into (a
        server-side copy on a network filesystem may drop a shared page from the client's cache)."""
        def end(i: int) -> int:
            return size if i >= n else min(size, -(-(178 + i * fs) // page) * page)

        return (0 if i0 == 0 else end(i0)), end(i1)

    with AtomicOutput(out, durable=durable) as tmp, disk_errors(out):  # durable: it also flushes the folder
        src_fd = os.open(seq.path, os.O_RDONLY)
        dst_fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)  # see AtomicOutput
        mm = None
        views: dict = {}
        try:
            os.ftruncate(dst_fd, size)
            if len(idx):
                mm = mmap.mmap(dst_fd, size)
                views["data"] = np.frombuffer(mm, dtype=dt, count=n * pix, offset=178).reshape(n, pix)
                views["base"] = np.frombuffer(mm, dtype=np.uint8, count=1)  # its address: the map's start
                address = views["base"].ctypes.data

            def patch(i0: int, i1: int) -> None:
                if populate is not None:
                    offs = (178 + np.arange(i0, i1, dtype=np.int64)[:, None] * fs + pix_bytes[None, :]).ravel()
                    first, end = page_runs(offs, page, gap=2)
                    for p0, p1 in zip(first.tolist(), end.tolist()):
                        populate(address + p0 * page, (p1 - p0) * page)
                block = views["data"][i0:i1]
                try:
                    v, c = compute(block[:, idx])
                    block[:, idx] = v
                finally:
                    del block  # an exception's traceback must not keep a view that pins the map open
                clipped[0] += c

            pending = None  # (future, i0, i1) of the chunk being patched
            written: list[tuple[int, int]] = []

            def settle() -> None:
                """Wait for the chunk being patched; durable: start its writeback."""
                nonlocal pending
                if pending is None:
                    return
                fut, p0, p1 = pending
                pending = None
                fut.result()
                if wb is not None:
                    a, b = chunk_bytes(p0, p1)
                    wb[0](dst_fd, a, b - a)
                    written.append((a, b))
                    if len(written) > 2:
                        wa, wb_ = written.pop(0)
                        wb[1](dst_fd, wa, wb_ - wa)

            with ThreadPoolExecutor(max_workers=1) as pool:
                try:
                    for i0 in range(0, n, k):
                        i1 = min(n, i0 + k)
                        a, b = chunk_bytes(i0, i1)
                        _copy_range(src_fd, dst_fd, a, b, state)
                        settle()
                        if mm is not None:
                            pending = (pool.submit(patch, i0, i1), i0, i1)
                        elif wb is not None:
                            wb[0](dst_fd, a, b - a)
                        report(progress, 0.99 * i1 / n, f"frame {i1}/{n}")
                    settle()
                finally:
                    if pending is not None:  # an error or a cancel: let the patch finish before unmapping
                        try:
                            pending[0].result()
                        except Exception:  # noqa: BLE001 - the first error is the one raised
                            pass
            views.clear()
            if durable:
                if mm is not None:
                    mm.flush()
                fsync_fd(dst_fd)
            # 1.0 before the rename below: a cancel raised by this last report still leaves no file
            report(progress, 1.0, "done")
        finally:
            views.clear()
            if mm is not None:
                try:
                    mm.close()
                except BufferError:  # views still alive after an exception: freed with them
                    pass
            os.close(dst_fd)
            os.close(src_fd)
    return clipped[0]

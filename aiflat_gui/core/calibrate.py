"""Streaming calibration: every frame divided by the flat, written frame by frame, atomically.

``out = round((raw - pedestal) / flat + pedestal)``, clipped to the input's sample range (integer
data: 0 .. 2**bit_depth - 1; float data stays float, neither rounded nor clipped). Only the pixels
where the flat differs from 1.0 are computed (their flat indices are precomputed once); every other
pixel is *copied*, so the output equals the input bit for bit there. Frames are processed in chunks
through one reusable buffer, so memory is bounded and independent of the number of frames.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import InputError
from ..progress import ProgressFn, report, sub_progress

#: Working buffer for a chunk of frames.
CHUNK_BYTES = 32 * 1024 * 1024

#: input Sequence.format -> default writer format
_INPUT_TO_WRITER = {"ser": "ser", "avi": "avi", "fits": "fits", "folder-fits": "fits", "tiff": "tiff",
                    "folder-images": "tiff-folder", "png": "tiff", "jpeg": "tiff", "array": "fits"}


@dataclass
class CalibrationStats:
    output: Path
    frames: int
    clipped: int
    seconds: float
    format: str
    computed_pixels: int = 0  # pixels per frame that were divided (the rest were copied)


def validate_flat(flat: np.ndarray, name: str | os.PathLike | None = None) -> np.ndarray:
    """float32 copy of ``flat`` after checking every value is finite and > 0 (InputError otherwise)."""
    f = np.asarray(flat)
    if f.dtype.kind not in "fiub":
        raise InputError(f"flat has unsupported sample type {f.dtype}", name)
    f = f.astype(np.float32)
    bad = ~np.isfinite(f)
    if bad.any():
        raise InputError(f"flat has {int(bad.sum())} non-finite values (NaN or infinity)", name)
    nonpos = f <= 0
    if nonpos.any():
        raise InputError(f"flat has {int(nonpos.sum())} values <= 0 (a flat must be > 0 everywhere)", name)
    return f


def check_flat_is_ours(flat: np.ndarray, name: str | os.PathLike | None = None) -> np.ndarray:
    """A flat file given to calibrate must be an aiflat flat: exactly 1.0 away from the dust (most
    of its pixels). An export made for another program (AutoStakkert!/PSS 16-bit TIFF, PixInsight's
    0.5 x flat), a scaled flat or a camera master flat would change every pixel: refused
    (InputError) saying what it looks like and what to do. Returns the float32 flat."""
    raw = np.asarray(flat)
    f = validate_flat(raw, name)
    ones = float(np.count_nonzero(f == 1.0)) / max(1, f.size)
    if ones >= 0.5:
        return f
    med = float(np.median(f))
    if raw.dtype.kind in "ui" and med > 255:
        looks = f"a {raw.dtype.itemsize * 8}-bit integer flat (median {med:.0f}), like the AutoStakkert!/PSS export"
    elif abs(med - 0.5) < 0.05:
        looks = f"a flat scaled by 0.5 (median {med:.4g}), like the PixInsight export"
    else:
        looks = f"a flat whose median is {med:.6g}, not 1.0 (scaled, or a master flat from another program)"
    raise InputError(f"not an aiflat flat: {ones:.0%} of its pixels are exactly 1.0, it looks like {looks}; "
                     "give the flat.fits that 'aiflat flat' or 'aiflat run' wrote (export-flat files are "
                     "for other programs), or calibrate with --mask", name)


def fit_flat(flat: np.ndarray, seq, name: str | os.PathLike | None = None) -> np.ndarray:
    """Check ``flat`` against the frames of ``seq`` and return it shaped like one frame
    (a 2-D flat is used for every channel of colour data)."""
    f = validate_flat(flat, name)
    if f.ndim == 3 and f.shape[0] in (1, 3) and f.shape[-1] not in (1, 3):
        f = np.moveaxis(f, 0, -1)
    if f.ndim == 3 and f.shape[2] == 1:
        f = f[..., 0]
    if f.shape[:2] != (seq.height, seq.width):
        raise InputError(f"flat is {f.shape[1]}x{f.shape[0]} but the frames are {seq.width}x{seq.height}", name)
    if f.ndim == 3:
        if seq.channels == 1:
            raise InputError(f"flat has {f.shape[2]} channels but the frames are single-channel", name)
        if f.shape[2] != seq.channels:
            raise InputError(f"flat has {f.shape[2]} channels but the frames have {seq.channels}", name)
    elif seq.channels > 1:
        f = np.repeat(f[..., None], seq.channels, axis=2)
    return np.ascontiguousarray(f)


#: FITS keyword in which our flats record the camera pedestal they were computed with.
PEDESTAL_KEY = "PEDESTAL"


def flat_header(pedestal: float) -> dict:
    """FITS header cards for a flat computed with ``pedestal`` ADU of camera offset."""
    return {PEDESTAL_KEY: float(pedestal), "CREATOR": "aiflat"}


def pedestal_warning(flat_path: str | os.PathLike, pedestal: float) -> Optional[str]:
    """A warning when the FITS flat at ``flat_path`` records another pedestal than ``pedestal``:
    a flat computed with the camera offset removed, applied without removing it (or the other way
    round), over- or under-corrects every speck."""
    p = Path(flat_path)
    if p.suffix.lower() not in (".fits", ".fit", ".fts"):
        return None
    try:
        from astropy.io import fits

        recorded = fits.getheader(p).get(PEDESTAL_KEY)
    except Exception:  # noqa: BLE001 - only a hint; reading the flat itself reports real problems
        return None
    if recorded is None or float(recorded) == float(pedestal):
        return None
    return (f"the flat was computed with --pedestal {float(recorded):g} but this calibration uses "
            f"--pedestal {float(pedestal):g}; pass --pedestal {float(recorded):g} unless the camera offset changed")


def load_flat(path: str | os.PathLike, seq) -> np.ndarray:
    """Read a flat file (FITS/TIFF/PNG) for ``seq``: size must match the frame, values finite and > 0."""
    from ..io.single import read_image

    return fit_flat(check_flat_is_ours(read_image(path, expect=(seq.height, seq.width)), path), seq, path)


#: What an empty mask means (said to the user instead of computing a reference for nothing).
EMPTY_MASK_NOTE = ("mask is empty (no dust marked); the flat is 1.0 everywhere, so no reference is computed and "
                   "every pixel is copied unchanged (a SER -> SER copy is the input file byte for byte)")


def flat_from_mask_file(seq, mask_path: str | os.PathLike, grow: int = 2, feather: int = 0,
                        pedestal: float = 0.0, progress: Optional[ProgressFn] = None,
                        max_frames: Optional[int] = None, method: str = "auto",
                        warn: Optional[Callable[[str], None]] = None,
                        mask_filter: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> np.ndarray:
    """Median reference of ``seq`` + the mask file + a flat method (``auto``: ``multiframe`` when the
    sequence has enough frames, else ``local``) -> a flat for ``seq``. ``max_frames``: frames for the
    reference (None: :data:`~aiflat_gui.core.reference.DEFAULT_MAX_FRAMES`; 0: all). ``warn`` gets
    each warning about the mask (e.g. that it was resampled to the frame size). ``mask_filter``
    (the verify step) maps the loaded mask to the one the flat is built from."""
    from .flat import synthesize_flat
    from .mask import load_mask
    from .reference import compute_reference, resolve_max_frames

    mask, warnings = load_mask(mask_path, (seq.height, seq.width))
    for w in warnings:
        if warn is not None:
            warn(w)
    ones = np.ones((seq.height, seq.width), np.float32)
    if not mask.any():  # nothing to correct: no reference, no verify, a flat of exactly 1.0
        if warn is not None:
            warn(EMPTY_MASK_NOTE)
        report(progress, 1.0, "empty mask: flat is 1.0")
        return fit_flat(ones, seq)
    if mask_filter is not None:
        mask = mask_filter(mask)
        if not np.asarray(mask).any():
            if warn is not None:
                warn("no speck of the mask is left after verification; " + EMPTY_MASK_NOTE.split("; ", 1)[1])
            report(progress, 1.0, "empty mask: flat is 1.0")
            return fit_flat(ones, seq)
    ref = compute_reference(seq, "median", max_frames=resolve_max_frames(max_frames),
                            progress=sub_progress(progress, 0.0, 0.6))
    flat = synthesize_flat(ref, mask, method=method, sequence=seq, grow=grow, feather=feather, pedestal=pedestal,
                           color=seq.color, progress=sub_progress(progress, 0.6, 1.0))
    return fit_flat(flat, seq)


def raw_output_note(seq, output: str | os.PathLike, fmt: Optional[str] = None) -> Optional[str]:
    """For a lossy (compressed, decoded) input: how large the uncompressed calibrated copy will be,
    said before it is written; None for uncompressed inputs."""
    meta = getattr(seq, "metadata", None) or {}
    if meta.get("decoder") != "opencv":
        return None
    out_bytes = int(seq.n_frames) * int(seq.frame_nbytes)
    try:
        in_bytes = os.path.getsize(seq.path)
    except OSError:
        return None
    fmt = output_format(seq, output, fmt)
    return (f"the input is {meta.get('fourcc', 'compressed')}-compressed ({in_bytes / 1e6:.1f} MB); its decoded "
            f"frames are calibrated and written uncompressed ({fmt}): about {out_bytes / 1e6:.0f} MB, "
            f"{out_bytes / max(1, in_bytes):.0f}x the input")


def output_format(seq, output: str | os.PathLike, fmt: Optional[str] = None) -> str:
    """``fmt`` if given; else from the output's extension; else the input's own format."""
    from ..io import FORMAT_OF_EXT, WRITER_FORMATS

    if fmt:
        if fmt not in WRITER_FORMATS:
            raise InputError(f"unknown output format '{fmt}' (choose from {', '.join(WRITER_FORMATS)})", output)
        return fmt
    ext = Path(output).suffix.lower()
    if ext in FORMAT_OF_EXT:
        return FORMAT_OF_EXT[ext]
    if ext:  # `-o x.png` must not get SER bytes: an extension names the format, or --format does
        raise InputError(f"'{ext}' is not a video format this program writes; name the output .ser, .fits, "
                         f".tif or .avi, or give --format", output)
    return _INPUT_TO_WRITER.get(getattr(seq, "format", ""), "fits")


def sample_limits(seq) -> Optional[tuple[float, float]]:
    """(lo, hi) for integer data (``2**bit_depth - 1`` when the data uses fewer bits than its
    type holds), None for float data."""
    dt = np.dtype(seq.dtype)
    if dt.kind == "f":
        return None
    info = np.iinfo(dt)
    hi = info.max
    bits = int(getattr(seq, "bit_depth", 0) or 0)
    if 0 < bits < dt.itemsize * 8:
        hi = (1 << bits) - 1
    return float(info.min), float(hi)


class FrameCalibrator:
    """The per-frame arithmetic, shared by the streaming loop, previews and tests.

    ``apply(frames)`` calibrates a ``(k, *frame_shape)`` array of the sequence's sample type in
    place and returns the number of clipped values.
    """

    def __init__(self, flat: np.ndarray, dtype, limits: Optional[tuple[float, float]], pedestal: float = 0.0):
        f = np.ascontiguousarray(flat, dtype=np.float32).reshape(-1)
        self.idx = np.flatnonzero(f != 1.0)
        self.flat_values = f[self.idx].astype(np.float64)
        self.dtype = np.dtype(dtype)
        self.limits = limits
        self.pedestal = float(pedestal)

    def values(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated float64 values (before rounding/clipping) of raw samples at ``self.idx``."""
        p = self.pedestal
        return (raw.astype(np.float64) - p) / self.flat_values + p

    def compute(self, raw: np.ndarray) -> tuple[np.ndarray, int]:
        """New values for raw samples ``(k, len(idx))`` at ``self.idx``: (values in the sample type,
        number of values clipped)."""
        v = self.values(raw)
        clipped = 0
        if self.limits is not None:
            v = np.rint(v)
            lo, hi = self.limits
            clipped = int(np.count_nonzero((v < lo) | (v > hi)))
            np.clip(v, lo, hi, out=v)
        return v.astype(self.dtype), clipped

    def apply(self, frames: np.ndarray) -> int:
        if len(self.idx) == 0:
            return 0
        flat2 = frames.reshape(frames.shape[0], -1)
        v, clipped = self.compute(flat2[:, self.idx])
        flat2[:, self.idx] = v
        return clipped

    def frame(self, raw: np.ndarray) -> np.ndarray:
        """A calibrated copy of one frame."""
        out = np.array(raw, copy=True)[None]
        self.apply(out)
        return out[0]


def calibrate_array(raw: np.ndarray, flat: np.ndarray, pedestal: float = 0.0,
                    limits: Optional[tuple[float, float]] | str = "dtype") -> np.ndarray:
    """Calibrate one in-memory frame, or a stack of frames, exactly as :func:`calibrate_sequence`
    does (a 2-D flat applies to every channel). ``limits="dtype"``: the full range of the array's
    integer type; None: no rounding or clipping (float data)."""
    raw = np.asarray(raw)
    f = np.asarray(flat, dtype=np.float32)
    if limits == "dtype":
        limits = None if raw.dtype.kind == "f" else (float(np.iinfo(raw.dtype).min), float(np.iinfo(raw.dtype).max))
    single = raw.shape == f.shape or (f.ndim == 2 and raw.ndim == 3 and raw.shape[:2] == f.shape)
    stack = not single
    frame_shape = raw.shape[1:] if stack else raw.shape
    if f.shape != frame_shape:
        if f.ndim == 2 and len(frame_shape) == 3 and frame_shape[:2] == f.shape:
            f = np.repeat(f[..., None], frame_shape[2], axis=2)
        else:
            raise InputError(f"flat of shape {f.shape} does not fit data of shape {raw.shape}")
    fc = FrameCalibrator(f, raw.dtype, limits, pedestal)
    out = np.array(raw if stack else raw[None], copy=True)
    fc.apply(out)
    return out if stack else out[0]


def advise_sequential(seq) -> None:
    """Tell the reader the sequence is about to be read front to back (kernel readahead)."""
    seq.advise_sequential()


def _ser_copy_ok(seq, fmt: str, writer_options: Optional[dict]) -> bool:
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


def _calibrate_ser_by_copy(seq, calib: FrameCalibrator, out: Path, progress, durable: bool = False) -> int:
    """The SER -> SER fast path. Chunk by chunk of whole frames: the main thread copies the bytes
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

    from ..io.base import AtomicOutput, disk_errors, fsync_fd

    size = os.path.getsize(seq.path)
    n = int(seq.n_frames)
    pix = int(np.prod(seq.frame_shape))
    dt = np.dtype(seq.dtype).newbyteorder("<")
    fs = pix * dt.itemsize
    k = max(1, COPY_CHUNK // max(1, fs))
    if len(calib.idx):
        k = max(1, min(k, (16 << 20) // max(1, len(calib.idx) * 8)))  # float64 working set of a chunk
    wb = _writeback() if durable else None
    populate = _populator()
    page = mmap.PAGESIZE
    pix_bytes = calib.idx.astype(np.int64) * dt.itemsize  # byte offset of each dust pixel in a frame
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
            if len(calib.idx):
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
                    v, c = calib.compute(block[:, calib.idx])
                    block[:, calib.idx] = v
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


def calibrate_sequence(seq, flat: np.ndarray, output: str | os.PathLike, fmt: Optional[str] = None,
                       pedestal: float = 0.0, overwrite: bool = True, progress: Optional[ProgressFn] = None,
                       chunk_bytes: Optional[int] = None, writer_options: Optional[dict] = None,
                       fast: bool = True, durable: Optional[bool] = None) -> CalibrationStats:
    """Divide every frame of ``seq`` by ``flat`` and stream the result to ``output``.

    ``fmt``: writer format (``ser``, ``fits``, ``tiff``, ``tiff-folder``, ``avi``); None: from the
    output's extension, else the input's format. The output is written to a temporary name and
    renamed on success; a cancel (``progress`` raising Cancelled), Ctrl-C or a disk error leaves
    nothing under ``output``. The input is only read.

    ``fast``: for SER -> SER of a consistent little-endian file, copy the file in the kernel and
    rewrite only the dust pixels (the same bytes the streaming writer produces, at ``cp`` speed).
    ``durable`` (default :func:`~aiflat_gui.io.base.durable_default`): the output is on disk
    (fsync) before it appears under its final name.
    """
    from ..io import open_writer
    from ..io.base import check_output_path, durable_default

    t0 = time.perf_counter()
    out = Path(output)
    check_output_path(out, seq.path, overwrite=overwrite)
    fmt = output_format(seq, out, fmt)
    f = fit_flat(flat, seq)
    calib = FrameCalibrator(f, seq.dtype, sample_limits(seq), pedestal)
    n = seq.n_frames
    k = max(1, min(n, (chunk_bytes or CHUNK_BYTES) // max(1, seq.frame_nbytes)))
    buf = np.empty((k,) + tuple(seq.frame_shape), dtype=seq.dtype)
    clipped = 0
    if fast and _ser_copy_ok(seq, fmt, writer_options):
        report(progress, 0.0, f"calibrating {n} frames ({len(calib.idx)} pixels per frame, copy + patch)")
        clipped = _calibrate_ser_by_copy(seq, calib, out, progress, durable=durable_default() if durable is None
                                         else durable)  # reports 1.0 before committing
        return CalibrationStats(output=out, frames=n, clipped=clipped, seconds=time.perf_counter() - t0,
                                format=fmt, computed_pixels=int(len(calib.idx)))
    advise_sequential(seq)
    report(progress, 0.0, f"calibrating {n} frames ({len(calib.idx)} pixels per frame)")
    with open_writer(out, fmt, seq, overwrite=overwrite, **(writer_options or {})) as writer:
        if durable is not None:
            writer.set_durable(durable)
        for i0 in range(0, n, k):
            i1 = min(n, i0 + k)
            chunk = buf[: i1 - i0]
            for j in range(i1 - i0):
                chunk[j] = seq.frame(i0 + j)
            clipped += calib.apply(chunk)
            for j in range(i1 - i0):
                writer.write(chunk[j], index=i0 + j)
            report(progress, i1 / n, f"frame {i1}/{n}")
    return CalibrationStats(output=out, frames=n, clipped=clipped, seconds=time.perf_counter() - t0,
                            format=fmt, computed_pixels=int(len(calib.idx)))

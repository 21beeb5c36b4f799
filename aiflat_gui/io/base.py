"""The one sequence interface every reader implements, and the writer/atomic-output contract.

A :class:`Sequence` is a lazily read stack of frames. ``frame(i)`` returns a ``(H, W)`` array for mono
and raw Bayer (CFA) data or ``(H, W, C)`` for colour, in the file's sample type (uint8, uint16 or
float32), native byte order, channels in storage order (``color`` says which: ``"RGB"`` or ``"BGR"``).
Readers memory-map where the format allows, so opening a 10 GB file costs almost nothing.

Timestamps are int64 *SER ticks* (100 ns since 0001-01-01 UTC) for every format, so they round-trip
losslessly; :func:`ticks_to_datetime` turns them into :class:`datetime.datetime`.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as _dt
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence as _Seq

import numpy as np

from ..core import BAYER_PATTERNS
from ..errors import InputError, ProcessingError

#: Colour layouts. Bayer patterns are raw single-plane CFA data.
COLORS = ("mono",) + BAYER_PATTERNS + ("RGB", "BGR")

#: 1970-01-01T00:00:00Z in SER ticks (100 ns since 0001-01-01).
TICKS_UNIX_EPOCH = 621355968000000000


def ticks_to_datetime(ticks: int) -> Optional[_dt.datetime]:
    """SER ticks to an aware UTC datetime, or None when out of any sensible range."""
    try:
        return _dt.datetime(1, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(microseconds=int(ticks) // 10)
    except (OverflowError, ValueError):
        return None


def datetime_to_ticks(when: _dt.datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    delta = when - _dt.datetime(1, 1, 1, tzinfo=_dt.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


class Sequence(abc.ABC):
    """Base class of all readers. Subclasses set the attributes in ``__init__`` and implement
    :meth:`_read_frame`.

    Attributes
    ----------
    path, format ("ser", "avi", "fits", "tiff", "png", "jpeg", "folder-fits", "folder-images", "array"),
    n_frames, height, width, channels (1 or 3), dtype, bit_depth (real bits used: 8, 10, 12, 14, 16;
    32 for float), color (one of :data:`COLORS`), byte_order ("little"/"big" for the file's data,
    or None when meaningless), byte_order_reason (why we decided), timestamps (int64 ticks array or
    None), metadata (dict of format-specific fields), warnings (list of one-line strings),
    memmapped (True when frames are views of a memory map: random row access is cheap).
    """

    format: str = "unknown"
    path: Path
    n_frames: int = 0
    height: int = 0
    width: int = 0
    channels: int = 1
    dtype: np.dtype = np.dtype(np.uint16)
    bit_depth: int = 16
    color: str = "mono"
    byte_order: Optional[str] = None
    byte_order_reason: str = ""
    timestamps: Optional[np.ndarray] = None
    memmapped: bool = False

    def __init__(self) -> None:
        self.metadata: dict[str, Any] = {}
        self.warnings: list[str] = []

    # -- the interface -------------------------------------------------------------------------
    @property
    def frame_shape(self) -> tuple[int, ...]:
        return (self.height, self.width) if self.channels == 1 else (self.height, self.width, self.channels)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n_frames, *self.frame_shape)

    @property
    def frame_nbytes(self) -> int:
        return self.height * self.width * self.channels * np.dtype(self.dtype).itemsize

    @property
    def is_bayer(self) -> bool:
        return self.color in BAYER_PATTERNS

    def __len__(self) -> int:
        return self.n_frames

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` (negative counts from the end). May be a read-only view: copy before writing."""
        i = int(i)
        if i < 0:
            i += self.n_frames
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame {i} out of range 0..{self.n_frames - 1}")
        return self._read_frame(i)

    def frame_rows(self, i: int, y0: int, y1: int) -> np.ndarray:
        """Rows ``y0:y1`` of frame ``i``. Cheap for memory-mapped formats (override if needed)."""
        return self.frame(i)[y0:y1]

    def __getitem__(self, key):
        if isinstance(key, slice):
            return np.stack([self.frame(i) for i in range(*key.indices(self.n_frames))])
        if isinstance(key, (int, np.integer)):
            return self.frame(int(key))
        raise TypeError("index a sequence with an int or a slice")

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self.n_frames):
            yield self.frame(i)

    def timestamp(self, i: int) -> Optional[_dt.datetime]:
        if self.timestamps is None:
            return None
        return ticks_to_datetime(int(self.timestamps[i]))

    @abc.abstractmethod
    def _read_frame(self, i: int) -> np.ndarray:
        """Frame ``i`` (already range-checked) in the file's sample type."""

    def advise_sequential(self) -> None:
        """Hint that the frames are about to be read front to back (memory-mapped readers pass it
        to the kernel for aggressive readahead). The base class has nothing to advise."""

    def prefetch_rows(self, indices, y0: int, y1: int) -> None:
        """Hint that rows ``y0:y1`` of frames ``indices`` are needed soon (memory-mapped readers
        ask the kernel to start reading them all at once). The base class has nothing to do."""

    def close(self) -> None:
        """Release file handles/maps. Safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """The stable ``aiflat info --json`` dictionary."""
        ts = None
        if self.timestamps is not None and len(self.timestamps):
            first, last = self.timestamp(0), self.timestamp(self.n_frames - 1)
            ts = {
                "first": first.isoformat().replace("+00:00", "Z") if first else None,
                "last": last.isoformat().replace("+00:00", "Z") if last else None,
            }
        return {
            "path": str(self.path),
            "format": self.format,
            "frames": int(self.n_frames),
            "width": int(self.width),
            "height": int(self.height),
            "channels": int(self.channels),
            "dtype": np.dtype(self.dtype).name,
            "bit_depth": int(self.bit_depth),
            "color": self.color,
            "byte_order": self.byte_order,
            "byte_order_reason": self.byte_order_reason,
            "timestamps": ts,
            "warnings": list(self.warnings),
        }

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.path} {self.n_frames}x{self.height}x{self.width}"
                f"x{self.channels} {np.dtype(self.dtype).name} {self.color}>")


class ArraySequence(Sequence):
    """An in-memory sequence over a numpy array ``(N, H, W)`` or ``(N, H, W, C)``; for tests and
    for single images already in memory."""

    format = "array"

    def __init__(self, data: np.ndarray, color: Optional[str] = None, path: str | os.PathLike = "<array>",
                 timestamps: Optional[np.ndarray] = None, bit_depth: Optional[int] = None):
        super().__init__()
        data = np.asarray(data)
        if data.ndim not in (3, 4):
            raise InputError(f"expected (N, H, W) or (N, H, W, C) data, got shape {data.shape}", path)
        self._data = data
        self.path = Path(path)
        self.n_frames, self.height, self.width = data.shape[:3]
        self.channels = data.shape[3] if data.ndim == 4 else 1
        self.dtype = data.dtype
        self.bit_depth = bit_depth or (32 if data.dtype.kind == "f" else data.dtype.itemsize * 8)
        self.color = color or ("mono" if self.channels == 1 else "RGB")
        self.timestamps = timestamps
        self.memmapped = True

    def _read_frame(self, i: int) -> np.ndarray:
        return self._data[i]


# -- writers -----------------------------------------------------------------------------------

class SequenceWriter(abc.ABC):
    """Streaming writer: ``write(frame)`` frame by frame, then ``close()`` commits atomically.

    Data goes to a temporary sibling of the target; ``close()`` renames it into place; ``abort()``
    (or leaving a ``with`` block by an exception) deletes it, so the final name never holds a
    half-written file. Subclasses implement ``_open(tmp_path)``, ``_write(frame)`` and ``_finish()``.
    """

    format = "unknown"
    is_directory = False
    #: the open output file of writers that hold one (closed by :meth:`_abort_handles`)
    _fh: Any = None

    def __init__(self, path: str | os.PathLike, template: Sequence, n_frames: Optional[int] = None,
                 overwrite: bool = True):
        self.path = Path(path)
        self.template = template
        self.n_frames = template.n_frames if n_frames is None else int(n_frames)
        self.written = 0
        check_output_path(self.path, template.path, overwrite=overwrite,
                          kind="replace-folder" if self.is_directory else "file")
        atomic = AtomicOutput(self.path, directory=self.is_directory)
        self._atomic: Optional[AtomicOutput] = atomic
        self.tmp_path = atomic.__enter__()
        try:
            self._open(self.tmp_path)
        except BaseException as exc:
            atomic.__exit__(type(exc), exc, None)
            raise

    def set_durable(self, on: bool) -> None:
        """fsync the output before it is renamed into place (default: :func:`durable_default`)."""
        if self._atomic is not None:
            self._atomic.durable = bool(on)

    def write(self, frame: np.ndarray, index: Optional[int] = None) -> None:
        """Append one frame (``index`` is the source frame index, for timestamps)."""
        if frame.shape != self.template.frame_shape:
            raise InputError(f"frame of shape {frame.shape} does not match {self.template.frame_shape}", self.path)
        with disk_errors(self.path):
            self._write(frame, self.written if index is None else index)
        self.written += 1

    def close(self) -> None:
        if self._atomic is None:
            return
        try:
            with disk_errors(self.path):
                self._finish()
        except BaseException as exc:
            self.abort()
            raise exc
        atomic, self._atomic = self._atomic, None
        atomic.__exit__(None, None, None)

    def abort(self) -> None:
        if self._atomic is None:
            return
        atomic, self._atomic = self._atomic, None
        with contextlib.suppress(Exception):
            self._abort_handles()
        atomic.__exit__(ProcessingError, ProcessingError("aborted"), None)

    def _abort_handles(self) -> None:
        """Close the open file handle without finishing. Writers keep it in ``self._fh``;
        override when holding anything else."""
        fh, self._fh = getattr(self, "_fh", None), None
        if fh is not None:
            fh.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # subclass hooks
    @abc.abstractmethod
    def _open(self, tmp_path: Path) -> None:
        """Open ``tmp_path`` for writing (the base class renames it into place on success)."""

    @abc.abstractmethod
    def _write(self, frame: np.ndarray, index: int) -> None:
        """Write one frame; ``index`` is the source frame's index (for timestamps)."""

    def _finish(self) -> None:
        pass


def check_output_path(out: Path, *inputs: Any, overwrite: bool = True, kind: str = "file") -> None:
    """Refuse to write over an input (path, hard link or symlink), into a missing or unwritable
    folder, under an unusable name, or over an existing file when ``overwrite`` is False. Raises
    :class:`InputError`. See :func:`aiflat_gui.io.outputs.guard_outputs`."""
    from .outputs import guard_outputs

    guard_outputs([(out, kind)], inputs, overwrite=overwrite)


def check_mapped(mm: Any, end: int, path: Any) -> None:
    """Before touching a memory map up to byte ``end``: refuse (InputError) when the file has shrunk
    below it since it was opened, as touching a mapped page past the end of a file kills the process
    with SIGBUS. ``mm``: an :class:`mmap.mmap` or :class:`numpy.memmap`."""
    m = getattr(mm, "_mmap", mm)
    try:
        size = m.size()
    except (OSError, ValueError, AttributeError):
        return
    if size < end:
        raise InputError(f"file shrank to {size} bytes while being read (another program truncated or "
                         f"is rewriting it); nothing was written", path)


#: Environment variable that makes every output durable (see :func:`durable_default`).
FSYNC_ENV = "AIFLAT_FSYNC"


def durable_default() -> bool:
    """Whether outputs are flushed to disk (fsync) before they are renamed into place.

    Off by default, as for ``cp``, Siril or ffmpeg: the temporary name + rename already guarantee
    that a cancel, an error, a full disk or a crash of the program never leaves a partial file under
    the final name, while the operating system writes the data out in the background. On
    (``aiflat --fsync`` or ``AIFLAT_FSYNC=1``, inherited by batch workers), the data is on disk
    before the final name appears, so the file is complete even after a power cut -- at the speed
    of the disk rather than of the page cache."""
    return os.environ.get(FSYNC_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def set_durable(on: bool) -> None:
    """Set the process-wide default of :func:`durable_default` (and of the workers it starts)."""
    if on:
        os.environ[FSYNC_ENV] = "1"
    else:
        os.environ.pop(FSYNC_ENV, None)


def fsync_fd(fd: int) -> None:
    """Flush an open file to the disk itself: F_FULLFSYNC on macOS (its fsync stops at the
    drive's cache), fsync elsewhere."""
    try:
        import fcntl
        full = getattr(fcntl, "F_FULLFSYNC", None)
    except ImportError:  # Windows
        full = None
    if full is not None:
        with contextlib.suppress(OSError):  # a filesystem without it: the plain fsync below
            fcntl.fcntl(fd, full)
            return
    os.fsync(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush one file's data to disk (opened for writing on Windows, whose FlushFileBuffers needs
    write access)."""
    flags = (os.O_RDWR | getattr(os, "O_BINARY", 0)) if os.name == "nt" else os.O_RDONLY
    fd = os.open(path, flags)
    try:
        fsync_fd(fd)
    finally:
        os.close(fd)


def fsync_output(path: str | os.PathLike) -> None:
    """Flush a written output -- a file, or every file of a folder output and the folder -- to disk."""
    p = Path(path)
    if not p.is_dir():
        fsync_file(p)
        return
    for child in sorted(p.iterdir()):
        if child.is_file() and not child.is_symlink():
            fsync_file(child)
    fsync_dir(p)


def fsync_dir(path: str | os.PathLike) -> None:
    """Best effort: flush a folder's entries (a rename into it) to disk; only the folder itself,
    never the files in it. Silently does nothing where folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicOutput:
    """Context manager yielding a temporary path beside ``target``; renamed over ``target`` on
    success, deleted on any exception (including :class:`Cancelled` and KeyboardInterrupt).

    ``durable`` (default :func:`durable_default`): fsync the data before the rename and the folder
    after it, so the file under the final name is complete even after a power cut."""

    def __init__(self, target: str | os.PathLike, directory: bool = False, durable: Optional[bool] = None):
        self.target = Path(target)
        self.directory = directory
        self.durable = durable_default() if durable is None else bool(durable)
        self.tmp: Optional[Path] = None

    def __enter__(self) -> Path:
        from .outputs import sweep_stale_temps_once, temp_prefix

        parent = Path(os.path.realpath(self.target)).parent
        prefix = temp_prefix(self.target)
        sweep_stale_temps_once(parent)  # leftovers of killed runs (only ours, only of dead writers)
        try:
            if self.directory:
                self.tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".partial", dir=parent))
            else:
                fd, name = tempfile.mkstemp(prefix=prefix, suffix=".partial", dir=parent)
                os.close(fd)
                # The writer creates the file itself: opening an existing empty file with O_TRUNC
                # ("wb") makes ext4 flush all of its data when it is closed (auto_da_alloc, meant for
                # programs that truncate and rewrite in place), which costs 0.3 s per GB for nothing
                # here -- the rename is what makes our outputs safe. mkstemp proved the folder
                # writable and picked an unused name.
                os.unlink(name)
                self.tmp = Path(name)
        except OSError as exc:
            raise ProcessingError(f"cannot create a file in {parent}: {exc.strerror or exc}", self.target) from None
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is None:
            try:
                _apply_umask_mode(self.tmp, directory=self.directory)
                if self.durable:  # before the old folder output goes: the gap without either stays short
                    fsync_output(self.tmp)
                if self.directory and self.target.is_dir():
                    shutil.rmtree(self.target)
                os.replace(self.tmp, self.target)
            except OSError as err:
                self._cleanup()
                raise ProcessingError(f"cannot write: {err.strerror or err}", self.target) from None
            if self.durable:  # the output is complete under its name; now make the rename itself last
                fsync_dir(self.target.resolve().parent)
            return
        self._cleanup()

    def _cleanup(self) -> None:
        if self.tmp is None:
            return
        with contextlib.suppress(OSError):
            if not os.path.lexists(self.tmp):
                return
            if self.tmp.is_dir():
                shutil.rmtree(self.tmp)
            else:
                self.tmp.unlink()


def _apply_umask_mode(path: Path, directory: bool) -> None:
    """mkstemp/mkdtemp create 0600/0700 entries; give outputs the mode a plain ``open`` would."""
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if directory else 0o666) & ~umask)


@contextlib.contextmanager
def disk_errors(path: str | os.PathLike):
    """Turn OSError (disk full, permission, I/O error) into a one-line :class:`ProcessingError`."""
    try:
        yield
    except OSError as exc:
        import errno

        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)) or _short_write(exc):
            raise ProcessingError("disk full while writing", path) from None
        raise ProcessingError(f"cannot write: {exc.strerror or exc}", path) from None


def _short_write(exc: OSError) -> bool:
    """numpy's ``tofile`` (used by tifffile) reports a full disk as a short write without an errno:
    ``OSError('307200 requested and 36200 written')``."""
    import re

    return exc.errno is None and re.search(r"\d+ requested and \d+ written", str(exc)) is not None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a small file atomically."""
    with AtomicOutput(path) as tmp, disk_errors(path):
        Path(tmp).write_bytes(data)


def frames_as_array(frames: _Seq[np.ndarray]) -> np.ndarray:
    return np.stack(list(frames))

"""Readers and writers behind one sequence interface (no Qt).

``open_sequence(path)`` picks a reader from the path (file extension, or the files in a folder) and
returns a :class:`~aiflat_gui.io.base.Sequence`. ``open_writer(path, fmt, template)`` returns a
streaming, atomic :class:`~aiflat_gui.io.base.SequenceWriter`.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Optional

from ..errors import InputError
from .inputs import check_input
from .base import (ArraySequence, AtomicOutput, Sequence, SequenceWriter, atomic_write_bytes,
                   check_output_path, ticks_to_datetime)

__all__ = ["open_sequence", "open_writer", "Sequence", "SequenceWriter", "ArraySequence", "AtomicOutput",
           "atomic_write_bytes", "check_output_path", "ticks_to_datetime", "FORMAT_OF_EXT",
           "WRITER_FORMATS", "format_for_path", "output_format", "writable_formats"]

#: file extension -> (module, reader class)
_READERS = {
    ".ser": ("ser", "SerSequence"),
    ".avi": ("avi", "AviSequence"),
    ".fits": ("fits", "FitsSequence"),
    ".fit": ("fits", "FitsSequence"),
    ".fts": ("fits", "FitsSequence"),
    ".tif": ("images", "ImageSequence"),
    ".tiff": ("images", "ImageSequence"),
    ".png": ("images", "ImageSequence"),
    ".jpg": ("images", "ImageSequence"),
    ".jpeg": ("images", "ImageSequence"),
}
FITS_EXTS = (".fits", ".fit", ".fts")
IMAGE_EXTS = (".tif", ".tiff", ".png", ".jpg", ".jpeg")

#: writer format name -> (module, writer class, default extension)
_WRITERS = {
    "ser": ("ser", "SerWriter", ".ser"),
    "fits": ("fits", "FitsWriter", ".fits"),
    "tiff": ("images", "TiffWriter", ".tif"),
    "tiff-folder": ("images", "TiffFolderWriter", ""),
    "avi": ("avi", "AviWriter", ".avi"),
}
WRITER_FORMATS = tuple(_WRITERS)
FORMAT_OF_EXT = {".ser": "ser", ".fits": "fits", ".fit": "fits", ".fts": "fits", ".tif": "tiff",
                 ".tiff": "tiff", ".avi": "avi"}


def _load(module: str, cls: str):
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def open_sequence(path: str | os.PathLike, **options) -> Sequence:
    """Open a video, image stack, single image or folder of frames. Raises :class:`InputError`
    (one line, naming the file) for anything missing, unreadable or malformed.

    ``options`` go to the reader (e.g. ``byte_order="big"`` for SER)."""
    p = Path(path)
    check_input(p)  # missing, symlink loop, FIFO or device: refused before any open (a FIFO would block)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
        if any(f.suffix.lower() in FITS_EXTS for f in files):
            return _load("fits", "FitsFolderSequence")(p, **options)
        if any(f.suffix.lower() in IMAGE_EXTS for f in files):
            return _load("images", "ImageFolderSequence")(p, **options)
        raise InputError("folder holds no FITS, TIFF, PNG or JPEG frames", p)
    if not os.access(p, os.R_OK):
        raise InputError("file is not readable (permission denied)", p)
    reader = _READERS.get(p.suffix.lower())
    if reader is None:
        raise InputError(f"unsupported file type '{p.suffix or p.name}' (supported: SER, AVI, FITS, TIFF, PNG, JPEG)", p)
    try:
        return _load(*reader)(p, **options)
    except InputError:
        raise
    except MemoryError:
        raise InputError("file header asks for more memory than this machine has; the file is damaged", p) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", p) from None


def is_fits_input(path: str | os.PathLike) -> bool:
    """True for a FITS file or a folder (of FITS frames, or frames the reader will tell about)."""
    p = Path(path)
    return p.is_dir() or p.suffix.lower() in FITS_EXTS


def fits_options(path: str | os.PathLike, row_order: Optional[str] = None) -> dict:
    """The FITS-only reader options for ``path``: ``row_order`` ("top-down" | "bottom-up") when
    it is a FITS input, nothing for other formats."""
    return {"row_order": row_order} if row_order and is_fits_input(path) else {}


def format_for_path(path: str | os.PathLike, default: Optional[str] = None) -> str:
    """Writer format implied by an output path's extension (a path without one means a TIFF folder)."""
    ext = Path(path).suffix.lower()
    if ext in FORMAT_OF_EXT:
        return FORMAT_OF_EXT[ext]
    if default:
        return default
    if not ext:
        return "tiff-folder"
    raise InputError(f"cannot tell the output format from '{ext}' (use .ser, .fits, .tif or .avi)", path)


#: input Sequence.format -> default writer format
_INPUT_TO_WRITER = {"ser": "ser", "avi": "avi", "fits": "fits", "folder-fits": "fits", "tiff": "tiff",
                    "folder-images": "tiff-folder", "png": "tiff", "jpeg": "tiff", "array": "fits"}


def output_format(seq, output: str | os.PathLike, fmt: Optional[str] = None) -> str:
    """``fmt`` if given; else from the output's extension; else the input's own format."""
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


def writable_formats(seq) -> tuple[str, ...]:
    """The writer formats that can hold ``seq``'s samples (AVI is uint8 only: a 12- or 16-bit
    sequence is never offered it)."""
    import numpy as np

    return tuple(f for f in WRITER_FORMATS if f != "avi" or np.dtype(seq.dtype) == np.uint8)


def default_extension(fmt: str) -> str:
    return _WRITERS[fmt][2]


def open_writer(path: str | os.PathLike, fmt: Optional[str], template: Sequence,
                n_frames: Optional[int] = None, overwrite: bool = True, **options) -> SequenceWriter:
    """A streaming writer for ``fmt`` (``None``: from the extension) shaped like ``template``."""
    fmt = fmt or format_for_path(path)
    if fmt not in _WRITERS:
        raise InputError(f"unknown output format '{fmt}' (choose from {', '.join(WRITER_FORMATS)})", path)
    module, cls, _ = _WRITERS[fmt]
    return _load(module, cls)(path, template, n_frames=n_frames, overwrite=overwrite, **options)

"""The files of a session sidecar (no Qt): where they live, and their bytes.

Beside an input ``video.ser``::

    video.ser.aiflat.json        the session's choices (a JSON object)
    video.ser.aiflat-mask.png    the mask, through the one mask codec (:mod:`aiflat_gui.io.masks`)

Both are written atomically (temporary name, rename), so a crash mid-save leaves the previous
session. When the input's folder is not writable the sidecar goes to
``platformdirs.user_data_dir("aiflat")/sessions/<hash of the input path>/``. What a session *means*
(its fields, the secret scrubbing) is :mod:`aiflat_gui.session`'s business.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import InputError
from .base import atomic_write_bytes
from .masks import read_mask, save_mask

__all__ = ["JSON_SUFFIX", "MASK_SUFFIX", "SidecarFiles", "input_signature", "fallback_dir"]

JSON_SUFFIX = ".aiflat.json"
MASK_SUFFIX = ".aiflat-mask.png"


def input_signature(path: str | os.PathLike) -> tuple[Optional[int], Optional[float]]:
    """(size in bytes, mtime) of an input file; for a folder, the sum of its files' sizes and the
    newest mtime. (None, None) when it cannot be read."""
    p = Path(path)
    try:
        if p.is_dir():
            size, mtime = 0, 0.0
            for f in p.iterdir():
                if f.is_file():
                    st = f.stat()
                    size += st.st_size
                    mtime = max(mtime, st.st_mtime)
            return size, mtime
        st = p.stat()
        return st.st_size, st.st_mtime
    except OSError:
        return None, None


def fallback_dir(input_path: str | os.PathLike) -> Path:
    """Per-input folder under the user's data directory, for inputs in read-only folders."""
    import platformdirs

    key = hashlib.sha256(str(Path(input_path).resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    base = os.environ.get("AIFLAT_DATA_DIR") or platformdirs.user_data_dir("aiflat")
    return Path(base) / "sessions" / key


def _dir_writable(d: Path) -> bool:
    return d.is_dir() and os.access(d, os.W_OK | os.X_OK)


class SidecarFiles:
    """The two sidecar files of one input, and reading/writing them.

    ``SidecarFiles(input_path)`` picks the folder beside the input when it is writable, else
    :func:`fallback_dir`. An existing sidecar beside the input is always preferred for reading.
    """

    def __init__(self, input_path: str | os.PathLike, location: Optional[str | os.PathLike] = None):
        self.input_path = Path(input_path)
        name = self.input_path.name or "input"
        beside = self.input_path.resolve().parent
        if location is not None:
            folder = Path(location)
        else:
            folder = beside if _dir_writable(beside) else fallback_dir(self.input_path)
        self.folder = folder
        self.json_path = folder / (name + JSON_SUFFIX)
        self.mask_path = folder / (name + MASK_SUFFIX)
        self.fallback = location is None and folder != beside
        # a read-only folder may still hold a sidecar written earlier (or by a colleague): read it
        # until a session of our own exists in the fallback folder
        self._read_json, self._read_mask = self.json_path, self.mask_path
        if self.fallback and not self.json_path.is_file() and (beside / (name + JSON_SUFFIX)).is_file():
            self._read_json, self._read_mask = beside / (name + JSON_SUFFIX), beside / (name + MASK_SUFFIX)

    def exists(self) -> bool:
        return self._read_json.is_file()

    def has_mask_file(self) -> bool:
        return self._read_mask.is_file()

    def read_json(self) -> Optional[dict[str, Any]]:
        """The session's JSON object; None when there is none. A damaged file: InputError naming it."""
        path = self._read_json
        if not path.is_file():
            return None
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(d, dict):
                raise ValueError("not an object")
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"session file is damaged ({type(exc).__name__}); it will be replaced",
                             path) from None
        return d

    def read_mask(self, shape: Optional[tuple[int, int]] = None) -> np.ndarray:
        """The saved mask, decoded by the one mask codec (no resampling: the caller compares its
        size). A damaged or unreadable file: one-line InputError naming it."""
        path = self._read_mask
        try:
            return read_mask(path, expect=shape)
        except InputError as err:
            raise InputError(f"session mask is damaged ({err.problem})", path) from None

    def write(self, obj: dict[str, Any], mask: Optional[np.ndarray] = None) -> None:
        """Write the mask (if given) then the JSON object, each atomically. Raises
        ProcessingError on a disk problem."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if mask is not None:
            self.write_mask(mask)
        text = json.dumps(obj, indent=2, sort_keys=True)
        atomic_write_bytes(self.json_path, text.encode("utf-8"))
        self._read_json, self._read_mask = self.json_path, self.mask_path

    def write_mask(self, mask: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        save_mask(self.mask_path, mask)

    def mask_written(self) -> bool:
        """True when our own (write) folder holds a mask file."""
        return self.mask_path.is_file()

    def delete(self) -> None:
        for p in (self.json_path, self.mask_path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

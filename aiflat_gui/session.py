"""Sessions that never lose work (no Qt).

A session is the mask and every choice made for one input: provider, sensitivity, flat method,
grow/feather/pedestal, stretch, view, output choices. It is stored in a sidecar beside the input::

    video.ser.aiflat.json        choices + the input's size/mtime (to notice a changed input)
    video.ser.aiflat-mask.png    the mask, 8-bit PNG, 255 = dust

Both are written atomically (temporary name, rename), so a crash mid-save leaves the previous
session. When the input's folder is not writable the sidecar goes to
``platformdirs.user_data_dir("aiflat")/sessions/<hash of the input path>/``.

A session never contains an API key: :func:`SessionStore.save` drops any key whose name looks like
a secret, and the test suite checks the written files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .errors import InputError
from .io.base import atomic_write_bytes

SESSION_VERSION = 1
JSON_SUFFIX = ".aiflat.json"
MASK_SUFFIX = ".aiflat-mask.png"
#: names never written into a session (case-insensitive substrings)
SECRET_WORDS = ("api_key", "apikey", "secret", "password", "token")


@dataclass
class SessionData:
    """Every choice of one session (plain, JSON-serialisable values only)."""

    provider: str = "local"
    sensitivity: float = 0.5
    reference_method: str = "median"
    max_frames: Optional[int] = 128
    flat_method: str = "auto"
    grow: int = 2
    feather: int = 0
    pedestal: float = 0.0
    stretch: dict[str, Any] = field(default_factory=dict)
    view: str = "frame"
    frame_index: int = 0
    overlay_visible: bool = True
    overlay_opacity: float = 0.5
    output: dict[str, Any] = field(default_factory=dict)  # format, path, export target, ...
    gemini: dict[str, Any] = field(default_factory=dict)  # model, image size (never the key)
    input_size: Optional[int] = None
    input_mtime: Optional[float] = None
    has_mask: bool = False
    #: the user's verdicts that differ from the verifier's: [[x, y, verdict], ...] with (x, y) the
    #: speck's anchor pixel (see ``core.verify.SpeckCheck.anchor``)
    overrides: list[list[Any]] = field(default_factory=list)
    version: int = SESSION_VERSION

    def to_dict(self) -> dict[str, Any]:
        return _scrub(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SessionData":
        names = {f.name for f in dataclasses.fields(cls)}
        clean = {k: v for k, v in _scrub(d).items() if k in names}
        data = cls(**clean)
        # tolerate hand-edited or old files: coerce the numeric fields
        try:
            data.sensitivity = float(data.sensitivity)
            data.grow = int(data.grow)
            data.feather = int(data.feather)
            data.pedestal = float(data.pedestal)
            data.frame_index = int(data.frame_index)
            data.overlay_opacity = float(data.overlay_opacity)
            data.input_size = None if data.input_size is None else int(data.input_size)
            data.input_mtime = None if data.input_mtime is None else float(data.input_mtime)
            data.overrides = [[int(x), int(y), str(v)] for x, y, v in (data.overrides or [])]
        except (TypeError, ValueError, OverflowError):
            raise InputError("session file holds a malformed value") from None
        return data


def _is_secret(name: str) -> bool:
    low = name.lower()
    return any(w in low for w in SECRET_WORDS)


def _scrub(value: Any) -> Any:
    """Drop every dict entry whose key names a secret, recursively."""
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if not _is_secret(str(k))}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


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


class SessionStore:
    """Where one input's session lives, and how to load and save it.

    ``SessionStore(input_path)`` picks the sidecar beside the input when that folder is writable,
    else :func:`fallback_dir`. An existing sidecar beside the input is always preferred for loading.
    """

    def __init__(self, input_path: str | os.PathLike, location: Optional[str | os.PathLike] = None):
        self.input_path = Path(input_path)
        name = self.input_path.name or "input"
        if location is not None:
            folder = Path(location)
        else:
            beside = self.input_path.resolve().parent
            folder = beside if _dir_writable(beside) else fallback_dir(self.input_path)
        self.folder = folder
        self.json_path = folder / (name + JSON_SUFFIX)
        self.mask_path = folder / (name + MASK_SUFFIX)
        self.fallback = location is None and folder != self.input_path.resolve().parent
        # a read-only folder may still hold a sidecar written earlier (or by a colleague): read it
        # until a session of our own exists in the fallback folder
        beside = self.input_path.resolve().parent
        self._read_json, self._read_mask = self.json_path, self.mask_path
        if self.fallback and not self.json_path.is_file() and (beside / (name + JSON_SUFFIX)).is_file():
            self._read_json, self._read_mask = beside / (name + JSON_SUFFIX), beside / (name + MASK_SUFFIX)

    # -- loading ---------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self._read_json.is_file()

    def load(self, shape: Optional[tuple[int, int]] = None) -> tuple[Optional[SessionData], Optional[np.ndarray], list[str]]:
        """(data, mask, warnings). (None, None, []) when there is no session. A mask whose size is
        not ``shape`` is dropped with a warning; a damaged session file raises InputError."""
        warnings: list[str] = []
        json_path = self._read_json
        if not json_path.is_file():
            return None, None, warnings
        try:
            d = json.loads(json_path.read_text(encoding="utf-8"))
            if not isinstance(d, dict):
                raise ValueError("not an object")
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"session file is damaged ({type(exc).__name__}); it will be replaced",
                             json_path) from None
        data = SessionData.from_dict(d)
        size, mtime = input_signature(self.input_path)
        if data.input_size is not None and (size != data.input_size or
                                            (mtime is not None and data.input_mtime is not None
                                             and abs(mtime - data.input_mtime) > 1e-3)):
            warnings.append("the input changed since this session was saved; check the mask")
        mask = None
        if data.has_mask and self._read_mask.is_file():
            mask = self._load_mask_file(self._read_mask)
            if shape is not None and mask.shape != tuple(shape):
                warnings.append(f"saved mask is {mask.shape[1]}x{mask.shape[0]}, the input is "
                                f"{shape[1]}x{shape[0]}; mask ignored")
                mask = None
        return data, mask, warnings

    @staticmethod
    def _load_mask_file(path: Path) -> np.ndarray:
        from .io.single import read_image

        try:
            img = read_image(path)  # header checked before decoding
        except InputError as err:
            raise InputError(f"session mask is damaged ({err.problem})", path) from None
        if img.ndim == 3:  # a colour mask (painted red elsewhere): dust in any colour channel, never alpha
            img = img[..., :3].max(axis=2) if img.shape[2] >= 3 else img[..., 0]
        return img > 0

    # -- saving ----------------------------------------------------------------------------------
    def save(self, data: SessionData, mask: Optional[np.ndarray] = None) -> None:
        """Write the mask (if given) then the choices, each atomically. Raises ProcessingError on
        a disk problem."""
        self.folder.mkdir(parents=True, exist_ok=True)
        data = dataclasses.replace(data)
        data.input_size, data.input_mtime = input_signature(self.input_path)
        if mask is not None:
            self.save_mask(mask)
            data.has_mask = True
        elif not self.mask_path.is_file():
            data.has_mask = False
        text = json.dumps(data.to_dict(), indent=2, sort_keys=True)
        atomic_write_bytes(self.json_path, text.encode("utf-8"))
        self._read_json, self._read_mask = self.json_path, self.mask_path

    def save_mask(self, mask: np.ndarray) -> None:
        from .io.masks import save_mask

        save_mask(self.mask_path, np.asarray(mask) > 0)

    def delete(self) -> None:
        for p in (self.json_path, self.mask_path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

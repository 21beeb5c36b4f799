"""Sessions that never lose work (no Qt).

A session is the mask and every choice made for one input: provider, sensitivity, flat method,
grow/feather/pedestal, stretch, view, output choices. It is stored in a sidecar beside the input::

    video.ser.aiflat.json        choices + the input's size/mtime (to notice a changed input)
    video.ser.aiflat-mask.png    the mask, 8-bit PNG, 255 = dust

Both are written atomically (temporary name, rename), so a crash mid-save leaves the previous
session. When the input's folder is not writable the sidecar goes to
``platformdirs.user_data_dir("aiflat")/sessions/<hash of the input path>/``. The files' bytes (JSON,
the mask through the one mask codec) are :mod:`aiflat_gui.io.sidecar`'s; this module holds what a
session means.

A session never contains an API key: :func:`SessionStore.save` drops any key whose name looks like
a secret, and the test suite checks the written files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .errors import InputError
from .io.sidecar import JSON_SUFFIX, MASK_SUFFIX, SidecarFiles, fallback_dir, input_signature

__all__ = ["SessionData", "SessionStore", "fallback_dir", "input_signature", "JSON_SUFFIX", "MASK_SUFFIX",
           "SESSION_VERSION"]

SESSION_VERSION = 1
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


class SessionStore(SidecarFiles):
    """Where one input's session lives, and how to load and save it: the sidecar files are
    :class:`aiflat_gui.io.sidecar.SidecarFiles` (beside the input when that folder is writable,
    else :func:`fallback_dir`); this class turns them into a :class:`SessionData` and back."""

    def load(self, shape: Optional[tuple[int, int]] = None) -> tuple[Optional[SessionData], Optional[np.ndarray], list[str]]:
        """(data, mask, warnings). (None, None, []) when there is no session. A mask whose size is
        not ``shape`` is dropped with a warning; a damaged session file raises InputError."""
        warnings: list[str] = []
        d = self.read_json()
        if d is None:
            return None, None, warnings
        data = SessionData.from_dict(d)
        size, mtime = input_signature(self.input_path)
        if data.input_size is not None and (size != data.input_size or
                                            (mtime is not None and data.input_mtime is not None
                                             and abs(mtime - data.input_mtime) > 1e-3)):
            warnings.append("the input changed since this session was saved; check the mask")
        mask = None
        if data.has_mask and self.has_mask_file():
            mask = self.read_mask(shape)
            if shape is not None and mask.shape != tuple(shape):
                warnings.append(f"saved mask is {mask.shape[1]}x{mask.shape[0]}, the input is "
                                f"{shape[1]}x{shape[0]}; mask ignored")
                mask = None
        return data, mask, warnings

    def save(self, data: SessionData, mask: Optional[np.ndarray] = None) -> None:
        """Write the mask (if given) then the choices, each atomically. Raises ProcessingError on
        a disk problem."""
        data = dataclasses.replace(data)
        data.input_size, data.input_mtime = input_signature(self.input_path)
        if mask is not None:
            data.has_mask = True
        elif not self.mask_written():
            data.has_mask = False
        self.write(data.to_dict(), None if mask is None else np.asarray(mask) > 0)

    def save_mask(self, mask: np.ndarray) -> None:
        self.write_mask(np.asarray(mask) > 0)

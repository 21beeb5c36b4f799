"""Is this single frame one of a numbered series (``sun_0001.tif``, ``sun_0002.tif``, …)? Then
the user most likely meant the folder: the GUI offers to open it as one sequence."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from . import FITS_EXTS, IMAGE_EXTS

_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def numbered_series(path: str | os.PathLike, minimum: int = 2) -> Optional[tuple[Path, int]]:
    """``(folder, n)`` when ``path`` is a TIFF/PNG/JPEG/FITS frame whose name ends in a number and
    at least ``minimum`` files of the folder share its prefix and extension (``n`` of them, the
    file itself included); else None. Only names are looked at (no file is opened)."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in IMAGE_EXTS + FITS_EXTS or not p.is_file():
        return None
    m = _NUMBERED.match(p.stem)
    if m is None:
        return None
    prefix = m.group(1)
    try:
        names = [f for f in os.scandir(p.parent) if f.is_file() and not f.name.startswith(".")]
    except OSError:
        return None
    n = 0
    for f in names:
        fp = Path(f.name)
        if fp.suffix.lower() != ext:
            continue
        fm = _NUMBERED.match(fp.stem)
        if fm is not None and fm.group(1) == prefix:
            n += 1
    return (p.parent, n) if n >= minimum else None

"""Flat files: the FITS cards a flat records (the camera pedestal it was computed with)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from .single import write_image

#: FITS keyword in which our flats record the camera pedestal they were computed with.
PEDESTAL_KEY = "PEDESTAL"


def flat_header(pedestal: float) -> dict:
    """FITS header cards for a flat computed with ``pedestal`` ADU of camera offset."""
    return {PEDESTAL_KEY: float(pedestal), "CREATOR": "aiflat"}


def write_flat(path: str | os.PathLike, flat: np.ndarray, pedestal: float = 0.0) -> Path:
    """Write a float32 flat (FITS records its pedestal), atomically."""
    return write_image(path, np.asarray(flat, np.float32), header=flat_header(pedestal))


def recorded_pedestal(path: str | os.PathLike) -> Optional[float]:
    """The pedestal a FITS flat records, or None (not FITS, no card, unreadable: reading the flat
    itself reports real problems)."""
    p = Path(path)
    if p.suffix.lower() not in (".fits", ".fit", ".fts"):
        return None
    try:
        from astropy.io import fits

        recorded = fits.getheader(p).get(PEDESTAL_KEY)
    except Exception:  # noqa: BLE001 - only a hint
        return None
    return None if recorded is None else float(recorded)

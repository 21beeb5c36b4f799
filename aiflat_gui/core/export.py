"""Our flat, written the way other programs need it (see ``field-notes.md``, "What the target
programs do with a flat").

Our convention: float32, 1.0 = untouched, ``calibrated = raw / flat``.

=============  ===========================  ==========================================================
target         file                         what the program computes, and what we write
=============  ===========================  ==========================================================
pixelmath      float32 FITS, values as is   ``$T / flat``: exactly our calibration.
pixinsight     float32 FITS, ``0.5 * flat``  ImageCalibration scales the flat by a statistic ``s`` of
                                            the flat file: ``raw * s / flat_file``. 1.8.x: ``s`` = the
                                            mean of the values inside (0.00002, 0.99998) -- a flat
                                            written as is (1.0 outside the dust) would be averaged over
                                            the dust pixels only (~0.7) and darken the whole image by
                                            30 %; halved, every value counts: ``raw * mean(flat) /
                                            flat``. 1.9.x (2022 on): ``s`` = a trimmed mean (5 % cut at
                                            each end by default); with dust on less than 5 % of the
                                            pixels that is exactly 0.5 on our halved file, so the
                                            result is ``raw / flat``: ours. (Read in PixInsight's
                                            published source, not run: PixInsight cannot run here.)
siril          float32 FITS, values as is,  ``k * raw / flat``, ``k`` = mean of the flat's central third
               rows in the order Siril      (first channel). Siril 1.0.6 (run in our tests) reads the
               reads the lights             flat in stored row order and ignores its ROWORDER, reads
                                            SER and AVI frames bottom-up and FITS lights in stored
                                            order: the flat is stored bottom-up (flipped) for SER/AVI
                                            lights and bottom-up FITS, top-down for top-down FITS.
autostakkert   16-bit TIFF, 65535 = 1.0     AutoStakkert! does not document how it normalises a flat;
                                            we write the blog author's convention (65535 = 1.0). If it
                                            divides by the flat normalised to its mean, as the
                                            others do, the result is ``raw * mean(flat) / flat``.
pss            16-bit TIFF, 65535 = 1.0     PlanetarySystemStacker (0.9.8, frames.py ``Calibration``):
                                            ``(frame * (int(mean(flat)) / flat)).astype(frame dtype)``
                                            (truncated). It rounds float FITS to uint16 (a float flat
                                            near 1.0 would become 0s and 1s) and flips FITS flats, so
                                            we give it 16-bit TIFF, rows top-down as it reads SER.
=============  ===========================  ==========================================================

The programs that normalise by a mean (PixInsight 1.8, Siril, PSS, probably AutoStakkert!) compute
``raw * m / flat`` whatever the file's scale (their formula is invariant to scaling the flat), so no
export can remove the factor ``m``: the mean of the flat over their region, ``1 - (dust area
fraction x mean depth)``, typically 0.995-0.9999. The result is our calibration times that one
constant -- a uniform brightness scale, no change of structure. Use PixelMath (or our own
``aiflat calibrate``) when bit-exactness matters.

FITS exports carry a ``ROWORDER`` card that tells the truth about the stored rows ('TOP-DOWN': row 0
is the top row, as in SER and AVI; 'BOTTOM-UP' for a Siril flat stored flipped), so our own reader
reads any export back the right way up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import InputError
from .calibrate import validate_flat

TARGETS = ("pixinsight", "pixelmath", "siril", "autostakkert", "pss")
_FITS = (".fits", ".fit", ".fts")
_TIFF = (".tif", ".tiff")

#: PixInsight's flat is written at this scale so no value reaches its 0.99998 exclusion limit.
PIXINSIGHT_SCALE = 0.5
#: PixInsight ImageCalibration only averages flat values strictly inside this range.
PIXINSIGHT_RANGE = (0.00002, 0.99998)
U16_FULL = 65535


#: What the lights that a flat will calibrate can be (``lights=``); a path to them also works.
LIGHTS = ("ser", "avi", "fits-top-down", "fits-bottom-up")
#: The lights assumed when none are named: solar and lunar videos are SER files.
DEFAULT_LIGHTS = "ser"


def lights_of_sequence(seq) -> str:
    """One of :data:`LIGHTS` for an open sequence: FITS lights are bottom-up when our reader flips
    them (ROWORDER = 'BOTTOM-UP', or written by Siril without ROWORDER), which is the stored order
    Siril uses for them. (A path or keyword: :func:`aiflat_gui.pipeline.lights_kind`.)"""
    fmt = getattr(seq, "format", "")
    if fmt in ("ser", "avi"):
        return fmt
    if fmt in ("fits", "folder-fits"):
        return "fits-bottom-up" if (getattr(seq, "metadata", None) or {}).get("roworder") == "BOTTOM-UP" \
            else "fits-top-down"
    return DEFAULT_LIGHTS


def stored_bottom_up(target: str, lights: str = DEFAULT_LIGHTS) -> bool:
    """Whether the flat for ``target`` is stored bottom-up (flipped) for lights of this kind."""
    if target != "siril":
        return False
    return lights in ("ser", "avi", "fits-bottom-up")


def flat_for_target(flat: np.ndarray, target: str, out: str | os.PathLike,
                    source: str | os.PathLike | None = None,
                    lights: str = DEFAULT_LIGHTS) -> tuple[np.ndarray, Optional[dict]]:
    """``flat`` (our convention, rows top-down as our readers show the lights) as ``target`` needs it
    in a file named ``out``: (data, FITS header or None). ``source``: the flat's file, named in
    errors about its values. ``lights``: the kind of lights it will calibrate (:data:`LIGHTS`),
    which decides the row order of a Siril flat. Writing the file is
    :func:`aiflat_gui.pipeline.export_flat`'s job."""
    if lights not in LIGHTS:
        raise InputError(f"lights must be one of {', '.join(LIGHTS)}, not {lights!r}")
    if target not in TARGETS:
        raise InputError(f"unknown export target '{target}' (choose from {', '.join(TARGETS)})", out)
    p = Path(out)
    f = validate_flat(flat, source)
    if f.max() > 1.0:
        raise InputError(f"flat has values above 1.0 (max {float(f.max()):.4g}); expected an aiflat flat "
                         f"(1.0 = untouched, dust < 1)", source)
    ext = p.suffix.lower()
    flip = stored_bottom_up(target, lights)
    header: dict[str, Any] = {"ROWORDER": "BOTTOM-UP" if flip else "TOP-DOWN", "CREATOR": "aiflat", "AIFLTGT": target}
    if target in ("pixinsight", "pixelmath", "siril"):
        if ext not in _FITS:
            raise InputError(f"the {target} flat is a FITS file: use a .fits name", p)
        data = f * np.float32(PIXINSIGHT_SCALE) if target == "pixinsight" else f
        if target == "pixinsight":
            header["AIFLSCAL"] = (PIXINSIGHT_SCALE, 'flat x0.5: all values in the mean')
        if flip:
            data = data[::-1]
            header["AIFLLGT"] = (lights, "lights this flat is oriented for")
        return np.ascontiguousarray(data, dtype=np.float32), header
    if ext not in _TIFF:
        raise InputError(f"the {target} flat is a 16-bit TIFF file: use a .tif name", p)
    data = np.clip(np.rint(f.astype(np.float64) * U16_FULL), 1, U16_FULL).astype(np.uint16)
    return data, None

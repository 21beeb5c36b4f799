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


def lights_kind(lights) -> str:
    """One of :data:`LIGHTS` for ``lights``: a keyword, a path to the video/FITS (or folder of FITS)
    the flat will calibrate, or an open sequence; None: :data:`DEFAULT_LIGHTS`. FITS lights are
    bottom-up when our reader flips them (ROWORDER = 'BOTTOM-UP', or written by Siril without
    ROWORDER), which is the stored order Siril uses for them."""
    if lights is None:
        return DEFAULT_LIGHTS
    if isinstance(lights, str) and lights.lower() in LIGHTS:
        return lights.lower()
    seq = lights if hasattr(lights, "format") and hasattr(lights, "metadata") else None
    if seq is None:
        from ..io import open_sequence

        p = Path(lights)
        if not p.exists():
            raise InputError(f"lights must be a file or folder, or one of {', '.join(LIGHTS)}", p)
        if p.suffix.lower() == ".ser":
            return "ser"
        if p.suffix.lower() == ".avi":
            return "avi"
        with open_sequence(p) as s:
            return lights_kind(s)
    fmt = getattr(seq, "format", "")
    if fmt in ("ser", "avi"):
        return fmt
    if fmt in ("fits", "folder-fits"):
        return "fits-bottom-up" if (seq.metadata or {}).get("roworder") == "BOTTOM-UP" else "fits-top-down"
    return DEFAULT_LIGHTS


def stored_bottom_up(target: str, lights=None) -> bool:
    """Whether the flat for ``target`` is stored bottom-up (flipped) for these lights."""
    if target != "siril":
        return False
    return lights_kind(lights) in ("ser", "avi", "fits-bottom-up")


def export_flat(flat: np.ndarray, target: str, out: str | os.PathLike,
                source: str | os.PathLike | None = None, lights=None) -> Path:
    """Write ``flat`` (our convention, rows top-down as our readers show the lights) for ``target``
    to ``out`` atomically; returns the path. ``source``: the flat's file, named in errors about its
    values. ``lights``: what the flat will calibrate (see :func:`lights_kind`; default a SER video),
    which decides the row order of a Siril flat."""
    from ..io.single import write_image

    if target not in TARGETS:
        raise InputError(f"unknown export target '{target}' (choose from {', '.join(TARGETS)})", out)
    p = Path(out)
    f = validate_flat(flat, source)
    if f.max() > 1.0:
        raise InputError(f"flat has values above 1.0 (max {float(f.max()):.4g}); expected an aiflat flat "
                         f"(1.0 = untouched, dust < 1)", source)
    ext = p.suffix.lower()
    flip = stored_bottom_up(target, lights)
    header = {"ROWORDER": "BOTTOM-UP" if flip else "TOP-DOWN", "CREATOR": "aiflat", "AIFLTGT": target}
    if target in ("pixinsight", "pixelmath", "siril"):
        if ext not in _FITS:
            raise InputError(f"the {target} flat is a FITS file: use a .fits name", p)
        data = f * np.float32(PIXINSIGHT_SCALE) if target == "pixinsight" else f
        if target == "pixinsight":
            header["AIFLSCAL"] = (PIXINSIGHT_SCALE, 'flat x0.5: all values in the mean')
        if flip:
            data = data[::-1]
            header["AIFLLGT"] = (lights_kind(lights), "lights this flat is oriented for")
        return write_image(p, np.ascontiguousarray(data, dtype=np.float32), header=header)
    if ext not in _TIFF:
        raise InputError(f"the {target} flat is a 16-bit TIFF file: use a .tif name", p)
    data = np.clip(np.rint(f.astype(np.float64) * U16_FULL), 1, U16_FULL).astype(np.uint16)
    return write_image(p, data)

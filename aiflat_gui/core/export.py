"""Our flat, written the way other programs need it (see ``field-notes.md``, "What the target
programs do with a flat").

Our convention: float32, 1.0 = untouched, ``calibrated = raw / flat``.

=============  ===========================  ==========================================================
target         file                         what the program computes, and what we write
=============  ===========================  ==========================================================
pixelmath      float32 FITS, values as is   ``$T / flat``: exactly our calibration.
pixinsight     float32 FITS, ``0.5 * flat``  ImageCalibration: ``raw * s / flat_file`` with ``s`` the
                                            mean of the flat's values inside (0.00002, 0.99998).
                                            Written as is, every 1.0 pixel would be excluded from
                                            ``s``, which would then be the mean of the dust pixels
                                            only (~0.7) and darken the whole image by 30 %. Halved,
                                            every value counts and the result is
                                            ``raw * mean(flat) / flat``.
siril          float32 FITS, values as is   ``k * raw / flat``, ``k`` = mean of the flat's central third
                                            (first channel): ``raw * k / flat``.
autostakkert   16-bit TIFF, 65535 = 1.0     AutoStakkert! does not document how it normalises a flat;
                                            we write the blog author's convention (65535 = 1.0). If it
                                            divides by the flat normalised to its mean, as the
                                            others do, the result is ``raw * mean(flat) / flat``.
pss            16-bit TIFF, 65535 = 1.0     PlanetarySystemStacker: ``frame * mean(flat) / flat``. It
                                            rounds float FITS to uint16 (a float flat near 1.0 would
                                            become 0s and 1s), so we give it 16-bit TIFF.
=============  ===========================  ==========================================================

The programs that normalise by a mean (PixInsight, Siril, PSS, probably AutoStakkert!) compute
``raw * m / flat`` whatever the file's scale (their formula is invariant to scaling the flat), so no
export can remove the factor ``m``: the mean of the flat over their region, ``1 - (dust area
fraction x mean depth)``, typically 0.995-0.9999. The result is our calibration times that one
constant -- a uniform brightness scale, no change of structure. Use PixelMath (or our own
``aiflat calibrate``) when bit-exactness matters.

FITS exports carry ``ROWORDER = 'TOP-DOWN'`` (row 0 is the top row, as in SER and AVI), which
Siril and PixInsight honour.
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


def export_flat(flat: np.ndarray, target: str, out: str | os.PathLike,
                source: str | os.PathLike | None = None) -> Path:
    """Write ``flat`` (our convention) for ``target`` to ``out`` atomically; returns the path.
    ``source``: the flat's file, named in errors about its values."""
    from ..io.single import write_image

    if target not in TARGETS:
        raise InputError(f"unknown export target '{target}' (choose from {', '.join(TARGETS)})", out)
    p = Path(out)
    f = validate_flat(flat, source)
    if f.max() > 1.0:
        raise InputError(f"flat has values above 1.0 (max {float(f.max()):.4g}); expected an aiflat flat "
                         f"(1.0 = untouched, dust < 1)", source)
    ext = p.suffix.lower()
    header = {"ROWORDER": "TOP-DOWN", "CREATOR": "aiflat", "AIFLTGT": target}
    if target in ("pixinsight", "pixelmath", "siril"):
        if ext not in _FITS:
            raise InputError(f"the {target} flat is a FITS file: use a .fits name", p)
        data = f * np.float32(PIXINSIGHT_SCALE) if target == "pixinsight" else f
        if target == "pixinsight":
            header["AIFLSCAL"] = (PIXINSIGHT_SCALE, 'flat x0.5: all values in the mean')
        return write_image(p, data.astype(np.float32), header=header)
    if ext not in _TIFF:
        raise InputError(f"the {target} flat is a 16-bit TIFF file: use a .tif name", p)
    data = np.clip(np.rint(f.astype(np.float64) * U16_FULL), 1, U16_FULL).astype(np.uint16)
    return write_image(p, data)

"""The demo's files: :func:`write_demo` writes a generated demo (:mod:`aiflat_gui.core.demo`) to a
folder, :func:`ensure_demo` keeps the default one cached for ``aiflat-gui --demo``."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core.demo import GENERATOR_VERSION, generate_demo
from ..errors import InputError


def write_demo(out_dir: str | os.PathLike, frames: int = 40, width: int = 640, height: int = 480, seed: int = 1,
               offset: int = 0, difficulty: str = "normal") -> dict[str, Path]:
    """Generate a demo and write it to ``out_dir`` (created if missing):

    ``demo.ser`` (12-bit mono in uint16, little-endian, with timestamps), ``truth_flat.fits``
    (float32), ``truth_mask.png`` (8-bit, 255 = dust), ``clean.fits`` (uint16 cube (N, H, W): the
    dust-free, noise-free signal including the pedestal, in ADU, rounded to the nearest integer),
    ``truth.json`` (specks, distractors, parameters). Returns {"sequence", "flat", "mask", "clean", "truth"} -> path."""
    from .base import atomic_write_bytes
    from .ser import write_ser
    from .single import write_image

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("demo output must be a folder, but a file has this name", out)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder: {exc.strerror or exc}", out) from None
    try:
        demo = generate_demo(frames=frames, width=width, height=height, seed=seed, offset=offset,
                             difficulty=difficulty)
    except BaseException:
        if created:  # refused settings (too many pixels, ...) or a cancel: no empty folder left behind
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    paths = {"sequence": out / "demo.ser", "flat": out / "truth_flat.fits", "mask": out / "truth_mask.png",
             "clean": out / "clean.fits", "truth": out / "truth.json"}
    write_ser(paths["sequence"], demo.frames, color="mono", timestamps=demo.timestamps,
              bit_depth=demo.params["bit_depth"])
    write_image(paths["flat"], demo.true_flat)
    write_image(paths["mask"], demo.true_mask.astype(np.uint8) * 255)
    # rounded to uint16 (error <= 0.5 ADU, far below the noise) to halve the file
    clean16 = np.clip(np.rint(demo.clean), 0, 65535).astype(np.uint16)
    _write_cube(paths["clean"], clean16, {"BUNIT": "ADU", "PEDESTAL": demo.offset,
                                          "COMMENT": "dust-free noise-free signal incl. pedestal, rounded"})
    truth = dict(params=demo.params, offset=demo.offset, specks=demo.specks, distractors=demo.distractors,
                 shifts=np.asarray(demo.shifts).round(4).tolist(), files={k: v.name for k, v in paths.items()})
    atomic_write_bytes(paths["truth"], json.dumps(truth, indent=1).encode())
    return paths


def _write_cube(path: Path, cube: np.ndarray, header: dict) -> None:
    """A 3-D (N, H, W) primary-HDU FITS cube, written atomically."""
    from astropy.io import fits

    from .base import AtomicOutput, disk_errors

    hdu = fits.PrimaryHDU(np.ascontiguousarray(cube))
    for k, v in header.items():
        hdu.header[k] = v
    with AtomicOutput(path) as tmp, disk_errors(path):
        hdu.writeto(tmp, overwrite=True)


#: Settings of the demo that ``ensure_demo`` caches (and ``aiflat-gui --demo`` opens).
DEFAULT_DEMO: dict[str, Any] = dict(frames=40, width=640, height=480, seed=1, offset=0, difficulty="normal")


def ensure_demo(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the default demo SER, generated on first use in ``user_cache_dir("aiflat")/demo``
    (or ``cache_dir``) and regenerated when missing or when the generator version changed."""
    if cache_dir is None:
        import platformdirs

        cache_dir = Path(platformdirs.user_cache_dir("aiflat")) / "demo"
    d = Path(cache_dir)
    stamp = d / "generator.json"
    want = json.dumps(dict(version=GENERATOR_VERSION, **DEFAULT_DEMO), sort_keys=True)
    ser = d / "demo.ser"
    try:
        have = stamp.read_text()
    except OSError:
        have = ""
    if have != want or not ser.is_file() or not (d / "truth_mask.png").is_file():
        write_demo(d, **DEFAULT_DEMO)
        from .base import atomic_write_bytes

        atomic_write_bytes(stamp, want.encode())
    return ser

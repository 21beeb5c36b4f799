"""The one step layer: reference, find-mask, verify, build-flat, calibrate, export, batch. No Qt.

Every step is a plain function taking a sequence (or a path to open) and a dataclass of parameters
(:class:`ReferenceParams`, :class:`MaskParams`, :class:`FlatParams`) that holds each default once;
the ``aiflat`` commands, :func:`run_pipeline` (``aiflat run``), the GUI's workers and batch all call
these functions. Choices (reference methods, flat methods, providers, output formats, export
targets) are listed here once. Long steps take ``progress(fraction, message)`` that may raise
:class:`~aiflat_gui.errors.Cancelled`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import glob
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np

from .ai.base import PROVIDERS, MaskResult
from .core.calibrate import FrameCalibrator, calibrate_array, check_flat_is_ours, fit_flat, sample_limits
from .core.export import TARGETS as EXPORT_TARGETS
from .core.flat import DEFAULT_MULTIFRAME_FRAMES, resolve_method
from .core.flat import METHODS as FLAT_METHODS
from .core.reference import DEFAULT_MAX_FRAMES
from .core.reference import METHODS as REFERENCE_METHODS
from .errors import AiflatError, Cancelled, InputError, ProcessingError, describe
from .io import WRITER_FORMATS as OUTPUT_FORMATS
from .io import default_extension, fits_options, open_sequence, output_format, writable_formats
from .io.flats import recorded_pedestal, write_flat
from .io.masks import load_mask, save_mask
from .io.outputs import file_signature, receipt_matches, write_receipt
from .io.single import read_image, write_image
from .progress import ProgressFn, report, sub_progress
from .text import plural

__all__ = ["ReferenceParams", "MaskParams", "FlatParams", "REFERENCE_METHODS", "FLAT_METHODS", "PROVIDERS",
           "OUTPUT_FORMATS", "EXPORT_TARGETS", "compute_reference", "find_mask", "build_flat", "request_clean",
           "calibrate_sequence", "calibrate", "export_flat", "load_mask", "save_mask", "load_flat", "write_flat",
           "pedestal_warning", "flat_from_mask_file", "run_pipeline", "batch_calibrate", "open_input",
           "writable_formats", "CalibrationStats", "MaskResult", "VerifyOptions", "VerifyOutcome", "verify_step"]

VIDEO_EXTS = (".ser", ".avi")

#: Working buffer for a chunk of frames while calibrating.
CHUNK_BYTES = 32 * 1024 * 1024


# -- parameters: every default once ---------------------------------------------------------------

@dataclass
class ReferenceParams:
    """How the reference frame is made. ``max_frames``: None = DEFAULT_MAX_FRAMES (128) evenly
    spaced frames, 0 = every frame, N = N evenly spaced frames."""

    method: str = "median"
    max_frames: Optional[int] = None

    def frames(self) -> Optional[int]:
        """Frames for :func:`aiflat_gui.core.reference.compute_reference` (None: all)."""
        return _frames(self.max_frames, DEFAULT_MAX_FRAMES)


@dataclass
class MaskParams:
    """Who finds the dust. ``sensitivity`` is the offline detector's (0..1, higher finds more);
    ``options`` go to the provider (Gemini: model, image_size, ...; file: path)."""

    provider: str = "local"
    sensitivity: float = 0.5
    options: dict = field(default_factory=dict)


@dataclass
class FlatParams:
    """How the flat is made. ``grow``: the mask is dilated by this many pixels (disc) first;
    ``feather``: soften the edge over PX inside; ``pedestal``: camera offset in ADU;
    ``max_frames``: frames of the multiframe method (None: 64 evenly spaced, 0: all)."""

    method: str = "auto"
    grow: int = 2
    feather: int = 0
    pedestal: float = 0.0
    max_frames: Optional[int] = None

    def frames(self) -> Optional[int]:
        return _frames(self.max_frames, DEFAULT_MULTIFRAME_FRAMES)


def _frames(max_frames: Optional[int], default: int) -> Optional[int]:
    from .core.reference import resolve_max_frames

    return resolve_max_frames(max_frames, default)


# -- opening ------------------------------------------------------------------------------------

def open_input(path: str | os.PathLike, byte_order: Optional[str] = None, **options):
    """Open a video or image sequence (``byte_order``: SER override, None/'auto' = sniffed; other
    ``options`` go to the reader, e.g. ``row_order`` for FITS)."""
    opts = dict(options)
    if byte_order and byte_order != "auto":
        opts["byte_order"] = byte_order
    return open_sequence(path, **opts)


@contextlib.contextmanager
def _opened(source) -> Iterator[Any]:
    """A sequence for ``source``: the sequence itself, or a path opened (and closed) here."""
    if isinstance(source, (str, os.PathLike)):
        with open_input(source) as seq:
            yield seq
    else:
        yield source


# -- the steps ------------------------------------------------------------------------------------

def compute_reference(source, params: Optional[ReferenceParams] = None,
                      progress: Optional[ProgressFn] = None) -> np.ndarray:
    """The reference frame (float32) of a sequence or path."""
    from .core.reference import compute_reference as _reference

    p = params or ReferenceParams()
    with _opened(source) as seq:
        return _reference(seq, method=p.method, max_frames=p.frames(), progress=progress)


def make_provider(params: MaskParams, with_clean: bool = False):
    """The mask provider ``params`` names, with its options."""
    from .ai import get_provider

    if params.provider not in PROVIDERS:
        raise InputError(f"unknown provider '{params.provider}' (choose from {', '.join(PROVIDERS)})")
    opts = dict(params.options or {})
    if params.provider == "local":
        opts.setdefault("sensitivity", params.sensitivity)
    if with_clean:
        opts["with_clean"] = True
    return get_provider(params.provider, **opts)


def find_mask(source, reference: np.ndarray, params: Optional[MaskParams] = None, provider=None,
              progress: Optional[ProgressFn] = None) -> tuple[Any, MaskResult]:
    """(provider, result): the dust mask of ``reference`` from ``provider`` (else the one ``params``
    names). The provider is returned so the offline detector's scores can be re-thresholded."""
    prov = provider if provider is not None else make_provider(params or MaskParams())
    with _opened(source) as seq:
        res = prov.find_mask(reference, seq, progress=progress)
        shape = (seq.height, seq.width) if seq is not None else np.asarray(reference).shape[:2]
    mask = np.asarray(res.mask, dtype=bool)
    if mask.shape != tuple(shape):
        raise InputError(f"provider '{getattr(prov, 'name', '?')}' returned a {mask.shape[1]}x{mask.shape[0]} "
                         f"mask for {shape[1]}x{shape[0]} frames")
    res.mask = mask
    return prov, res


def request_clean(provider, source, reference: np.ndarray, mask: np.ndarray, grow: int = FlatParams.grow,
                  progress: Optional[ProgressFn] = None) -> np.ndarray:
    """The AI's dust-free image for the ``ai`` flat, asked for the mask grown as the provider wants."""
    from .core.mask import grow as grow_mask

    sent = grow_mask(np.asarray(mask, bool), max(int(grow), int(getattr(provider, "clean_grow", 4) or 0)))
    with _opened(source) as seq:
        return provider.request_clean(reference, sent, progress=progress, sequence=seq)


def build_flat(source, reference: np.ndarray, mask: np.ndarray, params: Optional[FlatParams] = None,
               clean: Optional[np.ndarray] = None, progress: Optional[ProgressFn] = None,
               measured: Optional[np.ndarray] = None) -> np.ndarray:
    """The flat: exactly 1.0 outside the mask grown by ``params.grow``. ``measured``: the pixels of
    ``mask`` whose outline the video measured (:attr:`VerifyOutcome.measured`): the flat is
    solved on the grown mask as always, but is exactly 1.0 around them (the margin is for
    outlines someone drew, not for measured shadows)."""
    from .core.flat import synthesize_flat
    from .core.mask import grow as grow_mask

    p = params or FlatParams()
    with _opened(source) as seq:
        flat = synthesize_flat(reference, mask, method=p.method, sequence=seq, clean=clean, grow=p.grow,
                               feather=p.feather, pedestal=p.pedestal, color=seq.color, progress=progress,
                               max_frames=p.frames())
    if measured is not None and p.grow > 0:
        exact = np.asarray(measured, dtype=bool) & np.asarray(mask, dtype=bool)
        if exact.any():
            support = exact | grow_mask(np.asarray(mask, dtype=bool) & ~exact, p.grow)
            flat[~support] = 1.0
    return flat


def preview_calibrator(flat: np.ndarray, seq, pedestal: float = FlatParams.pedestal) -> FrameCalibrator:
    """The per-frame arithmetic the calibration of ``seq`` uses (for previews of single frames)."""
    return FrameCalibrator(fit_flat(flat, seq), seq.dtype, sample_limits(seq), pedestal)


def measure_specks(mask: np.ndarray, reference: Optional[np.ndarray] = None, flat: Optional[np.ndarray] = None):
    """The specks of ``mask`` with area, centre and depth (from ``flat`` when it was built for this
    mask, else estimated on ``reference``)."""
    from .core.mask import components

    return components(np.asarray(mask, bool), reference, flat)


def numbered_series(path: str | os.PathLike):
    """(folder, frames) when ``path`` is one frame of a numbered series of images, else None."""
    from .io.series import numbered_series as _series

    return _series(path)


def ensure_demo(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cached default demo SER (generated on first use)."""
    from .io.demo import ensure_demo as _ensure

    return _ensure(cache_dir)


def load_flat(path: str | os.PathLike, seq) -> np.ndarray:
    """Read a flat file (FITS/TIFF/PNG) for ``seq``: size must match the frame, values finite and > 0."""
    return fit_flat(check_flat_is_ours(read_image(path, expect=(seq.height, seq.width)), path), seq, path)


def pedestal_warning(flat_path: str | os.PathLike, pedestal: float) -> Optional[str]:
    """A warning when the FITS flat at ``flat_path`` records another pedestal than ``pedestal``:
    a flat computed with the camera offset removed, applied without removing it (or the other way
    round), over- or under-corrects every speck."""
    recorded = recorded_pedestal(flat_path)
    if recorded is None or recorded == float(pedestal):
        return None
    return (f"the flat was computed with --pedestal {recorded:g} but this calibration uses "
            f"--pedestal {float(pedestal):g}; pass --pedestal {recorded:g} unless the camera offset changed")


#: What an empty mask means (said to the user instead of computing a reference for nothing).
EMPTY_MASK_NOTE = ("mask is empty (no dust marked); the flat is 1.0 everywhere, so no reference is computed and "
                   "every pixel is copied unchanged (a SER -> SER copy is the input file byte for byte)")


def flat_from_mask_file(seq, mask_path: str | os.PathLike, params: Optional[FlatParams] = None,
                        reference: Optional[ReferenceParams] = None, progress: Optional[ProgressFn] = None,
                        warn: Optional[Callable[[str], None]] = None,
                        mask_filter: Optional[Callable[[np.ndarray], "VerifyOutcome"]] = None) -> np.ndarray:
    """Reference of ``seq`` + the mask file -> a flat fitted to ``seq``. ``warn`` gets each warning
    about the mask (e.g. that it was resampled to the frame size). ``mask_filter`` (the verify
    step) maps the loaded mask to a :class:`VerifyOutcome` (the mask the flat is built from). An empty mask (or none left after
    verification) gives a flat of exactly 1.0 without a reference."""
    mask, warnings = load_mask(mask_path, (seq.height, seq.width))
    for w in warnings:
        if warn is not None:
            warn(w)
    ones = np.ones((seq.height, seq.width), np.float32)
    if not mask.any():  # nothing to correct: no reference, no verify, a flat of exactly 1.0
        if warn is not None:
            warn(EMPTY_MASK_NOTE)
        report(progress, 1.0, "empty mask: flat is 1.0")
        return fit_flat(ones, seq)
    measured = None
    if mask_filter is not None:
        outcome = mask_filter(mask)
        mask, measured = outcome.mask, outcome.measured
        if not np.asarray(mask).any():
            if warn is not None:
                warn("no speck of the mask is left after verification; " + EMPTY_MASK_NOTE.split("; ", 1)[1])
            report(progress, 1.0, "empty mask: flat is 1.0")
            return fit_flat(ones, seq)
    ref = compute_reference(seq, reference, progress=sub_progress(progress, 0.0, 0.6))
    flat = build_flat(seq, ref, mask, params, progress=sub_progress(progress, 0.6, 1.0), measured=measured)
    return fit_flat(flat, seq)


def raw_output_note(seq, output: str | os.PathLike, fmt: Optional[str] = None) -> Optional[str]:
    """For a lossy (compressed, decoded) input: how large the uncompressed calibrated copy will be,
    said before it is written; None for uncompressed inputs."""
    meta = getattr(seq, "metadata", None) or {}
    if meta.get("decoder") != "opencv":
        return None
    out_bytes = int(seq.n_frames) * int(seq.frame_nbytes)
    try:
        in_bytes = os.path.getsize(seq.path)
    except OSError:
        return None
    fmt = output_format(seq, output, fmt)
    return (f"the input is {meta.get('fourcc', 'compressed')}-compressed ({in_bytes / 1e6:.1f} MB); its decoded "
            f"frames are calibrated and written uncompressed ({fmt}): about {out_bytes / 1e6:.0f} MB, "
            f"{out_bytes / max(1, in_bytes):.0f}x the input")


@dataclass
class CalibrationStats:
    """What a calibration wrote."""

    output: Path
    frames: int
    clipped: int
    seconds: float
    format: str
    computed_pixels: int = 0  # pixels per frame that were divided (the rest were copied)


def calibrate_sequence(seq, flat: np.ndarray, output: str | os.PathLike, fmt: Optional[str] = None,
                       pedestal: float = 0.0, overwrite: bool = True, progress: Optional[ProgressFn] = None,
                       chunk_bytes: Optional[int] = None, writer_options: Optional[dict] = None,
                       fast: bool = True, durable: Optional[bool] = None) -> CalibrationStats:
    """Divide every frame of ``seq`` by ``flat`` and stream the result to ``output``.

    ``fmt``: writer format (``ser``, ``fits``, ``tiff``, ``tiff-folder``, ``avi``); None: from the
    output's extension, else the input's format. The output is written to a temporary name and
    renamed on success; a cancel (``progress`` raising Cancelled), Ctrl-C or a disk error leaves
    nothing under ``output``. The input is only read.

    ``fast``: for SER -> SER of a consistent little-endian file, copy the file in the kernel and
    rewrite only the dust pixels (the same bytes the streaming writer produces, at ``cp`` speed).
    ``durable`` (default :func:`~aiflat_gui.io.base.durable_default`): the output is on disk
    (fsync) before it appears under its final name.
    """
    from .io import open_writer
    from .io.base import check_output_path, durable_default
    from .io.ser_patch import can_copy_patch, copy_and_patch

    t0 = time.perf_counter()
    out = Path(output)
    check_output_path(out, seq.path, overwrite=overwrite)
    fmt = output_format(seq, out, fmt)
    f = fit_flat(flat, seq)
    calib = FrameCalibrator(f, seq.dtype, sample_limits(seq), pedestal)
    n = seq.n_frames
    k = max(1, min(n, (chunk_bytes or CHUNK_BYTES) // max(1, seq.frame_nbytes)))
    buf = np.empty((k,) + tuple(seq.frame_shape), dtype=seq.dtype)
    clipped = 0
    if fast and can_copy_patch(seq, fmt, writer_options):
        report(progress, 0.0, f"calibrating {n} frames ({len(calib.idx)} pixels per frame, copy + patch)")
        clipped = copy_and_patch(seq, out, calib.idx, calib.compute, progress,
                                 durable=durable_default() if durable is None else durable)  # reports 1.0 before committing
        return CalibrationStats(output=out, frames=n, clipped=clipped, seconds=time.perf_counter() - t0,
                                format=fmt, computed_pixels=int(len(calib.idx)))
    seq.advise_sequential()
    report(progress, 0.0, f"calibrating {n} frames ({len(calib.idx)} pixels per frame)")
    with open_writer(out, fmt, seq, overwrite=overwrite, **(writer_options or {})) as writer:
        if durable is not None:
            writer.set_durable(durable)
        for i0 in range(0, n, k):
            i1 = min(n, i0 + k)
            chunk = buf[: i1 - i0]
            for j in range(i1 - i0):
                chunk[j] = seq.frame(i0 + j)
            clipped += calib.apply(chunk)
            for j in range(i1 - i0):
                writer.write(chunk[j], index=i0 + j)
            report(progress, i1 / n, f"frame {i1}/{n}")
    return CalibrationStats(output=out, frames=n, clipped=clipped, seconds=time.perf_counter() - t0,
                            format=fmt, computed_pixels=int(len(calib.idx)))


def calibrate(source, flat: np.ndarray, output: str | os.PathLike, fmt: Optional[str] = None,
              pedestal: float = FlatParams.pedestal, overwrite: bool = True,
              progress: Optional[ProgressFn] = None) -> CalibrationStats:
    """:func:`calibrate_sequence` of a sequence or path."""
    with _opened(source) as seq:
        return calibrate_sequence(seq, flat, output, fmt=fmt, pedestal=pedestal, overwrite=overwrite,
                                  progress=progress)


def check_calibration(seq, output: str | os.PathLike, fmt: Optional[str] = None) -> str:
    """The format ``output`` will be written in, after checking ``seq`` fits it (before any work:
    AVI holds 8-bit data only)."""
    f = output_format(seq, output, fmt)
    if f not in writable_formats(seq):
        raise InputError(f"{f.upper()} cannot hold this {np.dtype(seq.dtype).name} data "
                         f"(choose {', '.join(x for x in writable_formats(seq))})", output)
    return f


def lights_kind(lights=None) -> str:
    """What a flat will calibrate, as one of :data:`aiflat_gui.core.export.LIGHTS`: a keyword, a path
    to the video/FITS (or folder of FITS) itself, or an open sequence; None: a SER video."""
    from .core.export import DEFAULT_LIGHTS, LIGHTS, lights_of_sequence

    if lights is None:
        return DEFAULT_LIGHTS
    if isinstance(lights, str) and lights.lower() in LIGHTS:
        return lights.lower()
    if hasattr(lights, "format") and hasattr(lights, "metadata"):
        return lights_of_sequence(lights)
    p = Path(lights)
    if not p.exists():
        raise InputError(f"lights must be a file or folder, or one of {', '.join(LIGHTS)}", p)
    if p.suffix.lower() in (".ser", ".avi"):
        return p.suffix.lower()[1:]
    with open_sequence(p) as seq:
        return lights_of_sequence(seq)


def export_flat(flat: np.ndarray, target: str, out: str | os.PathLike,
                source: str | os.PathLike | None = None, lights=None) -> Path:
    """Write ``flat`` (our convention) for ``target`` to ``out`` atomically; returns the path.
    ``source``: the flat's file, named in errors about its values; ``lights``: what the flat will
    calibrate (:func:`lights_kind`), which decides the row order of a Siril flat."""
    from .core.export import flat_for_target

    data, header = flat_for_target(flat, target, out, source, lights_kind(lights))
    return write_image(Path(out), data, header=header) if header is not None else write_image(Path(out), data)


def _calibrated_name(seq, fmt: Optional[str], stem: str) -> tuple[str, str]:
    fmt = output_format(seq, "calibrated", fmt)  # stems may hold dots (a.b_calibrated): no extension here
    return fmt, stem + default_extension(fmt)


def prepare_output_folder(out: Path) -> None:
    """Create the output folder if needed (its parent must exist); InputError when it is a file,
    cannot be created or is not writable."""
    if out.exists() and not out.is_dir():
        raise InputError("output folder is a file", out)
    if not out.exists():
        if not out.resolve().parent.is_dir():
            raise InputError(f"parent folder {out.resolve().parent} does not exist", out)
        try:
            out.mkdir()
        except OSError as exc:
            raise InputError(f"cannot create the output folder: {exc.strerror or exc}", out) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError("output folder is not writable", out)


# -- verify: check every speck of a mask against the video before a flat is built from it ---------

@dataclass
class VerifyOptions:
    """The verify step's choices (``aiflat flat|run|calibrate --mask``, the GUI).

    enabled: False skips the check (``--no-verify``): every speck of the mask is used.
    keep_unverified: keep specks the video could not decide (``--keep-unverified``); by default a
        video that moved keeps only the specks shown to be dust. With a single image or frames
        that never moved nothing can be verified, and nothing is refused.
    max_frames: frames the check reads, evenly spaced.
    """

    enabled: bool = True
    keep_unverified: bool = False
    max_frames: int = 48


@dataclass
class VerifyOutcome:
    """``mask``: what the flat is built from (the user's mask minus the refused specks; the user's
    mask itself is untouched); ``refused``: the checks of the specks left out; ``verification``:
    every check (None when the step was skipped); ``trimmed``: pixels of specks judged dust left
    out because the video shows no shadow there (the mask drawn wider than the dust); ``mask`` may also
    hold a measured shadow's faint rim up to 2 px outside the user's mask (``measured``)."""

    mask: np.ndarray
    refused: list = field(default_factory=list)
    verification: Any = None
    skipped: bool = False
    trimmed: int = 0
    #: the pixels of ``mask`` outlined by their measured shadow (:func:`verified_mask`); pass it to
    #: :func:`build_flat`, which then adds no margin around them
    measured: Optional[np.ndarray] = None

    def summary(self) -> str:
        """One line: what was checked and what came out."""
        v = self.verification
        if self.skipped or v is None:
            return "verification skipped (--no-verify): every speck of the mask is used"
        if not v.checks:
            return "no specks to verify"
        from .core.verify import DUST

        n = len(v.checks)
        if v.note:
            return f"{n} specks unverified, none refused"
        out = (f"{n} specks checked on {v.frames} frames (target moved {v.motion:.1f} px): {v.count(DUST)} dust, "
               f"{len(self.refused)} refused")
        if self.trimmed:
            out += f"; {self.trimmed} px around the dust's measured shadows left out"
        return out

    def refusals(self) -> list[str]:
        """What the user must be told: why nothing could be verified, or each refused speck and why
        (its flat stays exactly 1.0)."""
        v = self.verification
        if self.skipped or v is None or not v.checks:
            return []
        if v.note:
            return [f"{len(v.checks)} specks unverified, none refused: {v.note}"]
        return [f"refused ({c.verdict}; flat 1.0 there): {c.describe()}" for c in self.refused]


def verified_mask(mask: np.ndarray, verification, overrides: Optional[dict] = None,
                  keep_unverified: bool = False) -> tuple[np.ndarray, list, np.ndarray]:
    """The mask a flat is built from after a verification (and the user's overrides: {speck
    anchor (x, y): "dust" | "not dust"}), the refused checks, and the pixels of that mask outlined
    by their measured shadow (for :func:`build_flat`'s ``measured``). The GUI keeps the
    verification while the user edits; specks added since are kept."""
    from .core.verify import verdicts_with_outlines

    return verdicts_with_outlines(mask, verification, overrides, keep_unverified=keep_unverified)


def trimmed_pixels(mask: np.ndarray, kept: np.ndarray, refused: list) -> int:
    """Pixels of ``mask`` the flat leaves out although their speck was kept (:func:`verified_mask`):
    the part of a speck judged dust where the video shows no shadow."""
    return max(0, int((np.asarray(mask, dtype=bool) & ~kept).sum()) - sum(int(c.area) for c in refused))


def verify_step(mask: np.ndarray, sequence, options: Optional[VerifyOptions] = None,
                overrides: Optional[dict] = None, progress: Optional[ProgressFn] = None,
                searched: Optional[np.ndarray] = None) -> VerifyOutcome:
    """Check every speck of ``mask`` against ``sequence`` (:func:`aiflat_gui.core.verify.verify_mask`)
    and return the mask the flat should be built from. ``overrides``: the user's verdicts by speck
    anchor (x, y); ``searched``: what the offline detector found (its specks need stronger evidence:
    ``VerifyParams.search_sigmas``)."""
    from .core.verify import VerifyParams, verify_mask

    opts = options or VerifyOptions()
    m = np.asarray(mask, dtype=bool)
    if not opts.enabled:
        report(progress, 1.0, "verification skipped")
        return VerifyOutcome(mask=m.copy(), skipped=True)
    ver = verify_mask(m, sequence, VerifyParams(max_frames=opts.max_frames), progress=progress, searched=searched)
    kept, refused, measured = verified_mask(m, ver, overrides, keep_unverified=opts.keep_unverified)
    return VerifyOutcome(mask=kept, refused=refused, verification=ver, trimmed=trimmed_pixels(m, kept, refused),
                         measured=measured)


def run_pipeline(path: str | os.PathLike, out_dir: str | os.PathLike, mask: Optional[MaskParams] = None,
                 flat: Optional[FlatParams] = None, reference: Optional[ReferenceParams] = None,
                 mask_path: Optional[str | os.PathLike] = None, clean_path: Optional[str | os.PathLike] = None,
                 fmt: Optional[str] = None, byte_order: Optional[str] = None,
                 progress: Optional[ProgressFn] = None, verify: Optional[VerifyOptions] = None,
                 open_options: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Reference -> mask (``mask_path``, else the provider of ``mask``) -> verify -> flat -> calibrated
    copy -> report, written into ``out_dir`` as ``reference.fits``, ``mask.png``, ``flat.fits``,
    ``calibrated.<ext>`` and ``report.png``, each atomically (a cancel leaves no partial file).

    The ``ai`` flat method takes ``clean_path`` or, with the Gemini provider, asks Gemini for the
    clean image. Returns a dict with the written paths (``reference``, ``mask``, ``flat``,
    ``calibrated``, ``report``) and figures (``frames``, ``clipped``, ``dust_pixels``, ``specks``,
    ``seconds``, ``provider_report``, ``method``, ``format``, ``warnings``, ``verify``: the
    :class:`VerifyOutcome`). ``verify``: the verify step's options (default: check every speck,
    refuse what the video does not show to be dust; ``mask.png`` is the mask as found, the flat
    leaves the refused specks out). ``open_options`` go to the reader (e.g. ``row_order`` for FITS).
    """
    from .core.mask import components, grow as grow_mask
    from .core.report import render_report

    mp_, fp, rp = mask or MaskParams(), flat or FlatParams(), reference or ReferenceParams()
    t0 = time.perf_counter()
    out = Path(out_dir)
    # the ai flat method needs a dust-free image: a file, or Gemini (asked after the mask)
    provider_clean = fp.method == "ai" and not clean_path
    if provider_clean and mp_.provider != "gemini":
        raise InputError("the ai flat method needs a dust-free image: give --clean FILE, or use --provider gemini "
                         f"(the {mp_.provider} provider does not make one)", path)
    prepare_output_folder(out)

    result: dict[str, Any] = {}
    with open_input(path, byte_order, **(open_options or {})) as seq:
        fmt, cal_name = _calibrated_name(seq, fmt, "calibrated")
        from .io.outputs import guard_outputs

        po = mp_.options or {}
        guard_outputs([out / "reference.fits", out / "mask.png", out / "flat.fits",
                       (out / cal_name, "replace-folder" if fmt == "tiff-folder" else "file"), out / "report.png"],
                      [path, mask_path, clean_path, po.get("prompt_file"), po.get("path"), po.get("mask_file")])
        check_calibration(seq, out / cal_name, fmt)
        warnings = list(seq.warnings)
        # 1. reference
        ref = compute_reference(seq, rp, progress=sub_progress(progress, 0.0, 0.3))
        result["reference"] = write_image(out / "reference.fits", ref)
        # 2. mask
        clean = read_image(clean_path) if clean_path else None
        provider_report: dict = {}
        searched = None  # what the offline detector's search found (see verify_step)
        if mask_path:
            m, w = load_mask(mask_path, (seq.height, seq.width))
            warnings += w
            provider_report = {"provider": "file", "path": str(mask_path)}
            if provider_clean:  # the mask is given: ask Gemini only for the clean image
                prov = make_provider(mp_)
                clean = request_clean(prov, seq, ref, m, fp.grow, progress=sub_progress(progress, 0.3, 0.45))
                provider_report["clean"] = dict(getattr(prov, "last_report", None) or {})
        else:
            # with_clean: find_mask also returns the clean image (MaskResult.clean)
            prov = make_provider(mp_, with_clean=provider_clean)
            _, res = find_mask(seq, ref, provider=prov, progress=sub_progress(progress, 0.3, 0.45))
            m = res.mask
            if mp_.provider == "local":
                searched = m
            provider_report = dict(res.report or {})
            if clean is None and res.clean is not None:
                clean = res.clean
        if fp.method == "ai" and clean is None:
            raise ProcessingError(f"provider '{mp_.provider}' returned no dust-free image for the ai flat method", path)
        result["mask"] = save_mask(out / "mask.png", m)
        # 3. verify: the flat is built only from the specks the video does not refuse
        checked = verify_step(m, seq, verify, progress=sub_progress(progress, 0.45, 0.5), searched=searched)
        result["verify"] = checked
        m = checked.mask
        # 4. flat
        f = build_flat(seq, ref, m, fp, clean=clean, progress=sub_progress(progress, 0.5, 0.55),
                       measured=checked.measured)
        result["flat"] = write_flat(out / "flat.fits", f, fp.pedestal)
        # 5. calibrated copy
        stats = calibrate_sequence(seq, f, out / cal_name, fmt=fmt, pedestal=fp.pedestal,
                                   progress=sub_progress(progress, 0.55, 0.97))
        result["calibrated"] = stats.output
        # 6. report
        cal_ref = calibrate_array(ref, f, pedestal=fp.pedestal, limits=None)
        specks = components(m, ref)
        used = resolve_method(fp.method, seq)
        title = (f"{Path(path).name}: {len(specks)} specks, {int(m.sum())} dust px, method {used}, "
                 f"grow {fp.grow}, pedestal {fp.pedestal:g}")
        result["report"] = write_image(out / "report.png",
                                       render_report(ref, grow_mask(m, fp.grow), f, cal_ref, title=title))
        result.update(frames=stats.frames, clipped=stats.clipped, dust_pixels=int(m.sum()), method=used,
                      specks=len(specks), format=fmt, warnings=warnings, provider_report=provider_report,
                      seconds=time.perf_counter() - t0)
    report(progress, 1.0, "done")
    return result

# -- batch ----------------------------------------------------------------------------------------

@dataclass
class BatchItem:
    input: Path
    output: Optional[Path] = None
    status: str = "pending"  # ok | kept (complete output found by resume) | skipped | failed | cancelled
    note: str = ""
    frames: int = 0
    clipped: int = 0
    seconds: float = 0.0
    bytes: int = 0  # size of the input (what was read)
    worker: str = ""  # who calibrated it (a Dask worker's address; empty in a local batch)
    retries: int = 0  # attempts after the first (a cluster worker died while on this file)

    def record(self) -> dict[str, Any]:
        """The run-report row: file, frames, seconds, bytes, status, worker, retries, output, note."""
        return {"file": str(self.input), "frames": self.frames, "seconds": round(self.seconds, 3),
                "bytes": self.bytes, "status": self.status, "worker": self.worker, "retries": self.retries,
                "output": str(self.output) if self.output else "", "note": self.note}


@dataclass
class BatchSummary:
    items: list[BatchItem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no file failed (skipped files and outputs kept by resume are not failures)."""
        return all(it.status in ("ok", "kept", "skipped") for it in self.items)

    def count(self, status: str) -> int:
        return sum(1 for it in self.items if it.status == status)

    def text(self) -> str:
        lines = []
        for it in self.items:
            if it.status == "ok":
                lines.append(f"  ok       {it.input} -> {it.output} ({plural(it.frames, 'frame')}, {it.clipped} clipped, "
                             f"{it.seconds:.1f} s)")
            else:
                lines.append(f"  {it.status:8s} {it.input}: {it.note}")
        frames = sum(it.frames for it in self.items if it.status == "ok")
        kept = f"{self.count('kept')} already complete, " if self.count("kept") else ""
        lines.append(f"batch: {self.count('ok')} calibrated, {kept}{self.count('skipped')} skipped, "
                     f"{self.count('failed')} failed; {plural(frames, 'frame')} in {self.seconds:.1f} s")
        return "\n".join(lines)

    def write_report(self, stem: str | os.PathLike) -> tuple[Path, Path]:
        """``stem``.json and ``stem``.csv: one row per input (:meth:`BatchItem.record`), written
        atomically. Returns both paths."""
        import csv
        import io as _io
        import json

        from .io.base import atomic_write_bytes

        rows = [it.record() for it in self.items]
        base = Path(stem)
        js, cs = base.with_name(base.name + ".json"), base.with_name(base.name + ".csv")
        doc = {"files": len(rows), "seconds": round(self.seconds, 3),
               "status": {s: self.count(s) for s in sorted({r["status"] for r in rows})}, "items": rows}
        atomic_write_bytes(js, (json.dumps(doc, indent=1) + "\n").encode())
        buf = _io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(BatchItem(Path()).record()), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write_bytes(cs, buf.getvalue().encode())
        return js, cs


_GLOB_CHARS = set("*?[")


def _manifest(path: Path) -> list[str]:
    """Paths listed one a line in a manifest file (blank lines and lines starting with # ignored;
    relative paths are relative to the manifest's folder)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the manifest: {getattr(exc, 'strerror', None) or exc}", path) from None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            q = Path(line).expanduser()
            out.append(str(q if q.is_absolute() else path.parent / q))
    return out


def _expand_one(p: Path) -> list[Path]:
    if p.is_dir():
        vids = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTS
                      and not f.name.startswith("."))
        return vids if vids else [p]
    return [p]


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; a folder holding .ser/.avi videos expands to them (sorted), any other folder
    (FITS/TIFF/PNG frames) is one sequence. A glob pattern (``*``, ``?``, ``[``, ``**`` across
    folders) expands to what it matches; ``@FILE`` is a manifest (one path or pattern a line)."""
    out: list[Path] = []
    items: list[str] = []
    for item in inputs:
        s = os.fspath(item)
        if isinstance(item, str) and s.startswith("@") and not Path(s).exists():
            items.extend(_manifest(Path(s[1:])))
        else:
            items.append(s)
    for item in items:
        p = Path(item)
        if not p.exists() and _GLOB_CHARS & set(item):
            matches = sorted(glob.glob(item, recursive=True))  # hidden files (temp outputs) never match
            if not matches:
                raise InputError("no file matches this pattern", p)
            for m in matches:
                out.extend(_expand_one(Path(m)))
            continue
        if not p.exists():
            raise InputError("no such file or folder", p)
        out.extend(_expand_one(p))
    seen: set = set()
    unique = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    if not unique:
        raise InputError("no input files")
    return unique


def _stems(files: list[Path]) -> list[str]:
    used: dict[str, int] = {}
    stems = []
    for f in files:
        base = (f.stem if f.is_file() else f.name) + "_calibrated"
        n = used.get(base, 0)
        used[base] = n + 1
        stems.append(base if n == 0 else f"{base}_{n + 1}")
    return stems


def output_complete(path: Path, seq) -> bool:
    """True when ``path`` (a final name, never a temporary one) holds a complete calibrated copy of
    ``seq``: it opens without warnings with the same number of frames, frame shape and sample type,
    and a SER output has exactly the size its header implies (with or without the timestamp trailer)."""
    from .io import open_sequence

    if not path.exists() or path.name.endswith(".partial"):
        return False
    try:
        with open_sequence(path) as out:
            if out.warnings or out.n_frames != seq.n_frames or out.frame_shape != seq.frame_shape:
                return False
            if np.dtype(out.dtype) != np.dtype(seq.dtype):
                return False
            if out.format == "ser":
                data = 178 + int(out.n_frames) * int(out.frame_nbytes)
                if path.stat().st_size not in (data, data + 8 * int(out.n_frames)):
                    return False
    except (AiflatError, OSError, ValueError):
        return False
    return True


def _calibration_key(flat: np.ndarray, src: Path, fmt: Optional[str], pedestal: float, read: dict) -> str:
    """What makes a calibrated output what it is: the flat's pixels, the input (its size and mtime)
    and how it was read (``read``: reader options, e.g. a FITS row order), the output format, the
    pedestal and this program's version. --resume keeps an output only when
    its receipt holds this key (:func:`~aiflat_gui.io.outputs.receipt_matches`)."""
    import hashlib

    from . import __version__

    h = hashlib.sha256()
    a = np.ascontiguousarray(flat)
    h.update(f"{a.dtype.str}{a.shape}|{file_signature(src)}|{sorted(read.items())}|{fmt}|{float(pedestal)!r}|"
             f"{__version__}".encode())
    h.update(a.data)
    return h.hexdigest()


def _calibrate_one(src: Path, flat: Path | np.ndarray, out_dir: Path, stem: str, fmt: Optional[str],
                   pedestal: float, progress: Optional[ProgressFn], resume: bool = False,
                   flat_name: Optional[str | os.PathLike] = None, row_order: Optional[str] = None) -> BatchItem:
    """Calibrate one input into ``out_dir``. ``flat``: the flat's file, or its pixels already read
    (``flat_name`` then names it in messages). ``resume``: keep an output that is already complete
    (:func:`output_complete`) and report it as ``kept``. ``row_order``: for FITS inputs, how their
    rows are stored ("top-down" | "bottom-up"; other inputs ignore it)."""
    item = BatchItem(input=src)
    t0 = time.perf_counter()
    try:
        with contextlib.suppress(OSError):
            item.bytes = src.stat().st_size if src.is_file() else sum(
                f.stat().st_size for f in src.iterdir() if f.is_file())
        if isinstance(flat, np.ndarray):
            flat_raw, flat_name = flat, flat_name
        else:
            flat_raw, flat_name = read_image(flat), flat
        read = fits_options(src, row_order=row_order)
        with open_sequence(src, **read) as seq:
            if flat_raw.shape[:2] != (seq.height, seq.width):
                item.status = "skipped"
                item.note = (f"frames are {seq.width}x{seq.height} but the flat is "
                             f"{flat_raw.shape[1]}x{flat_raw.shape[0]}")
                return item
            f, name = _calibrated_name(seq, fmt, stem)
            key = _calibration_key(flat_raw, src, f, pedestal, read)
            if resume and output_complete(out_dir / name, seq):
                if receipt_matches(out_dir / name, key):
                    item.output, item.frames, item.status = out_dir / name, seq.n_frames, "kept"
                    item.note = "output already complete (--resume)"
                    return item
                item.note = "an output was there, made with another flat, input or settings: calibrated again"
            flat_fit = fit_flat(flat_raw, seq, flat_name)
            stats = calibrate_sequence(seq, flat_fit, out_dir / name, fmt=f, pedestal=pedestal, progress=progress)
            write_receipt(stats.output, key)
        item.output, item.frames, item.clipped, item.status = stats.output, stats.frames, stats.clipped, "ok"
    except Cancelled:
        item.status, item.note = "cancelled", "cancelled; no output written"
        raise
    except AiflatError as err:
        item.status, item.note = "failed", str(err)
    except Exception as exc:  # noqa: BLE001 - one file's surprise must not sink the batch
        item.status, item.note = "failed", describe(exc)
    finally:
        item.seconds = time.perf_counter() - t0
    return item


# worker-process state (set by the pool initializer)
_CANCEL = None
_FRACTIONS = None
_PARENT: Optional[int] = None
_BUSY = False


def die_with_parent(parent: Optional[int]) -> None:
    """In a worker process: end with the parent. Linux delivers SIGTERM when the parent dies
    (prctl PR_SET_PDEATHSIG, even after ``kill -9``), and SIGTERM unwinds like Ctrl-C, so the file
    being written is removed instead of a queue finished under init; elsewhere a watchdog thread
    polls the parent. A parent already gone when this runs ends the worker at once."""
    import signal
    import sys
    import threading

    def stop(signum, _frame):
        if _BUSY:  # unwind the file being written (its temporary output is removed), then _worker exits
            raise KeyboardInterrupt(f"signal {signum}")
        os._exit(128 + signum)  # idle: nothing to clean up

    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGTERM, stop)
    armed = False
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            armed = ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0) == 0  # PR_SET_PDEATHSIG
    if parent is None:
        return
    if os.getppid() != parent:  # died before the prctl above
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="aiflat-parent-watch", daemon=True).start()


def _init_worker(cancel, fractions, parent: Optional[int] = None) -> None:
    global _CANCEL, _FRACTIONS, _PARENT
    _CANCEL, _FRACTIONS, _PARENT = cancel, fractions, parent
    die_with_parent(parent)


def _worker(slot: int, src: Path, flat_path: Path, out_dir: Path, stem: str, fmt: Optional[str],
            pedestal: float, resume: bool = False, row_order: Optional[str] = None) -> BatchItem:
    def prog(fraction: float, message: str = "") -> None:
        if _CANCEL is not None and _CANCEL.is_set():
            raise Cancelled()
        if _FRACTIONS is not None:
            _FRACTIONS[slot] = fraction

    global _BUSY
    _BUSY = True
    try:
        return _calibrate_one(src, flat_path, out_dir, stem, fmt, pedestal, prog, resume=resume, row_order=row_order)
    except (Cancelled, KeyboardInterrupt):
        if _PARENT is not None and os.getppid() != _PARENT:
            os._exit(1)  # the parent is gone (its output already removed): nobody to report to
        return BatchItem(input=src, status="cancelled", note="cancelled; no output written")
    finally:
        _BUSY = False


#: input extension -> the writer format its calibrated copy gets by default
_PLANNED_FORMAT = {".ser": "ser", ".avi": "avi", ".fits": "fits", ".fit": "fits", ".fts": "fits", ".tif": "tiff",
                   ".tiff": "tiff", ".png": "tiff", ".jpg": "tiff", ".jpeg": "tiff"}


def plan_batch(inputs: Iterable[str | os.PathLike], flat_path: str | os.PathLike, out_dir: str | os.PathLike,
               fmt: Optional[str] = None, extra_outputs: Iterable[str] = ()) -> tuple[list[Path], list[str]]:
    """The batch's files and output stems, after the output guard: no output (nor any of
    ``extra_outputs``, names in ``out_dir`` such as the GUI's ``flat.fits``) may be an input of the
    batch or the flat, and no two outputs may share a name -- refused (InputError) before any work.
    E.g. ``batch night/ -o night/`` with an unrelated ``a_calibrated.ser`` beside ``a.ser``."""
    from .io import default_extension
    from .io.outputs import guard_outputs

    files = expand_inputs(inputs)
    out = Path(out_dir)
    stems = _stems(files)
    outputs: list = [out / name for name in extra_outputs]
    for f, s in zip(files, stems):
        if fmt:
            k = fmt
        elif f.is_dir():
            k = "fits" if any(c.suffix.lower() in (".fits", ".fit", ".fts") for c in f.iterdir()) else "tiff-folder"
        else:
            k = _PLANNED_FORMAT.get(f.suffix.lower(), "fits")
        outputs.append((out / (s + default_extension(k)), "replace-folder" if k == "tiff-folder" else "file"))
    guard_outputs(outputs, [*files, flat_path], check_parent=False)  # the caller creates out_dir
    return files, stems


def prepare_batch(inputs: Iterable[str | os.PathLike], flat_path: str | os.PathLike, out_dir: str | os.PathLike,
                  fmt: Optional[str] = None) -> tuple[list[Path], list[str], Path, np.ndarray, Path]:
    """What every batch checks before the first file: the inputs expanded (:func:`expand_inputs`),
    the output guard (:func:`plan_batch`), the flat read and valid (a bad flat is the user's error
    for the whole batch), the output folder usable. Returns (files, output stems, flat path, flat
    pixels, output folder)."""
    files, stems = plan_batch(inputs, flat_path, out_dir, fmt)
    flat_p = Path(flat_path)
    flat = read_image(flat_p)
    check_flat_is_ours(flat, flat_p)
    out = Path(out_dir)
    prepare_output_folder(out)
    return files, stems, flat_p, flat, out


def batch_with_flat(inputs: Iterable[str | os.PathLike], flat: np.ndarray, out_dir: str | os.PathLike,
                    fmt: Optional[str] = None, pedestal: float = FlatParams.pedestal, jobs: int = 0,
                    progress: Optional[ProgressFn] = None) -> BatchSummary:
    """Save ``flat`` as ``out_dir/flat.fits`` (beside the results; the folder is created), then
    :func:`batch_calibrate`. The output guard runs before anything is written."""
    out = Path(out_dir)
    plan_batch(inputs, "", out, fmt, extra_outputs=["flat.fits"])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder: {exc.strerror or exc}", out) from None
    flat_path = write_flat(out / "flat.fits", flat, pedestal)
    return batch_calibrate(inputs, flat_path, out, fmt=fmt, jobs=jobs, pedestal=pedestal, progress=progress)


def batch_calibrate(inputs: Iterable[str | os.PathLike], flat_path: str | os.PathLike, out_dir: str | os.PathLike,
                    fmt: Optional[str] = None, jobs: int = 0, pedestal: float = 0.0,
                    progress: Optional[ProgressFn] = None, resume: bool = False,
                    row_order: Optional[str] = None) -> BatchSummary:
    """Calibrate every input with one flat into ``out_dir`` as ``<name>_calibrated.<ext>``.

    ``jobs``: worker processes (0: one per CPU core; 1: in this process). Files whose frame size
    differs from the flat are skipped with a note; a file that fails is reported and the others go
    on. ``progress`` may raise Cancelled: workers stop at their next frame chunk and leave no output.
    ``resume``: outputs already complete are kept (status ``kept``), not recomputed. ``row_order``:
    how the rows of FITS inputs are stored (``--row-order``; other formats ignore it).
    """
    t0 = time.perf_counter()
    files, stems, flat_p, _flat, out = prepare_batch(inputs, flat_path, out_dir, fmt)
    n = len(files)
    jobs = int(jobs) if jobs and jobs > 0 else (os.cpu_count() or 1)
    jobs = max(1, min(jobs, n))
    summary = BatchSummary()
    report(progress, 0.0, f"{n} files, {jobs} jobs")
    if jobs == 1:
        for k, (src, stem) in enumerate(zip(files, stems)):
            item = _calibrate_one(src, flat_p, out, stem, fmt, pedestal, sub_progress(progress, k / n, (k + 1) / n),
                                  resume=resume, row_order=row_order)
            summary.items.append(item)
        summary.seconds = time.perf_counter() - t0
        report(progress, 1.0, "batch done")
        return summary

    ctx = mp.get_context("spawn")  # safe with threads in the parent (GUI) and on every OS
    cancel = ctx.Event()
    fractions = ctx.Array("d", n, lock=False)
    results: dict[int, BatchItem] = {}
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                initargs=(cancel, fractions, os.getpid())) as pool:
        futures = {pool.submit(_worker, k, src, flat_p, out, stem, fmt, pedestal, resume, row_order): k
                   for k, (src, stem) in enumerate(zip(files, stems))}
        pending = set(futures)
        try:
            while pending:
                done, pending = cf.wait(pending, timeout=0.25)
                for fut in done:
                    k = futures[fut]
                    try:
                        results[k] = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a crashed worker
                        results[k] = BatchItem(input=files[k], status="failed",
                                               note=f"worker failed ({type(exc).__name__})")
                    fractions[k] = 1.0
                report(progress, sum(fractions[:]) / n, f"{len(results)}/{n} files")
        except (Cancelled, KeyboardInterrupt):
            cancel.set()
            for fut in pending:
                fut.cancel()
            cf.wait(pending)
            raise
    summary.items = [results[k] for k in range(n)]
    summary.seconds = time.perf_counter() - t0
    report(progress, 1.0, "batch done")
    return summary

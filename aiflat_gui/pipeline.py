"""The whole method in one call (``aiflat run``) and session batches (``aiflat batch``). No Qt.

:func:`run_pipeline` writes ``reference.fits``, ``mask.png``, ``flat.fits``, ``calibrated.<ext>`` and
``report.png`` into a folder. :func:`batch_calibrate` calibrates every video of a session with one
flat (dust does not move between the videos of a night), in parallel worker processes.
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
from typing import Any, Iterable, Optional

import numpy as np

from .errors import AiflatError, Cancelled, InputError, ProcessingError
from .text import plural
from .progress import ProgressFn, report, sub_progress

VIDEO_EXTS = (".ser", ".avi")


def _calibrated_name(seq, fmt: Optional[str], stem: str) -> tuple[str, str]:
    from .core.calibrate import output_format
    from .io import default_extension

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
    every check (None when the step was skipped)."""

    mask: np.ndarray
    refused: list = field(default_factory=list)
    verification: Any = None
    skipped: bool = False

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
        return (f"{n} specks checked on {v.frames} frames (target moved {v.motion:.1f} px): {v.count(DUST)} dust, "
                f"{len(self.refused)} refused")

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
                  keep_unverified: bool = False) -> tuple[np.ndarray, list]:
    """The mask a flat is built from after a verification (and the user's overrides: {speck
    anchor (x, y): "dust" | "not dust"}), and the refused checks. The GUI keeps the verification
    while the user edits; specks added since are kept."""
    from .core.verify import apply_verdicts

    return apply_verdicts(mask, verification, overrides, keep_unverified=keep_unverified)


def verify_step(mask: np.ndarray, sequence, options: Optional[VerifyOptions] = None,
                overrides: Optional[dict] = None, progress: Optional[ProgressFn] = None) -> VerifyOutcome:
    """Check every speck of ``mask`` against ``sequence`` (:func:`aiflat_gui.core.verify.verify_mask`)
    and return the mask the flat should be built from. ``overrides``: the user's verdicts by speck
    anchor (x, y)."""
    from .core.verify import VerifyParams, verify_mask

    opts = options or VerifyOptions()
    m = np.asarray(mask, dtype=bool)
    if not opts.enabled:
        report(progress, 1.0, "verification skipped")
        return VerifyOutcome(mask=m.copy(), skipped=True)
    ver = verify_mask(m, sequence, VerifyParams(max_frames=opts.max_frames), progress=progress)
    kept, refused = verified_mask(m, ver, overrides, keep_unverified=opts.keep_unverified)
    return VerifyOutcome(mask=kept, refused=refused, verification=ver)


def run_pipeline(path: str | os.PathLike, out_dir: str | os.PathLike, provider: str = "local",
                 provider_options: Optional[dict] = None, mask_path: Optional[str | os.PathLike] = None,
                 fmt: Optional[str] = None, method: str = "auto", grow: int = 2, feather: int = 0,
                 pedestal: float = 0.0, max_frames: Optional[int] = None, byte_order: Optional[str] = None,
                 progress: Optional[ProgressFn] = None, clean_path: Optional[str | os.PathLike] = None,
                 verify: Optional[VerifyOptions] = None) -> dict[str, Any]:
    """Reference -> mask (``mask_path``, else the provider) -> verify -> flat -> calibrated copy -> report.

    ``method``: the flat method (``auto``: ``multiframe`` with enough frames, else ``local``; ``ai``
    takes ``clean_path`` or, with ``provider="gemini"``, asks Gemini for the clean image).
    ``max_frames``: frames for the reference (None: 128 evenly spaced; 0: all).

    ``verify``: the verify step's options (default: check every speck, refuse what the video does
    not show to be dust; ``mask.png`` is the mask as found, the flat leaves the refused specks out).

    Returns a dict with the written paths (``reference``, ``mask``, ``flat``, ``calibrated``,
    ``report``) and figures (``frames``, ``clipped``, ``dust_pixels``, ``specks``, ``seconds``,
    ``provider_report``, ``verify``: the :class:`VerifyOutcome`). Each file is written atomically; a cancel leaves no partial file.
    """
    from .core.calibrate import calibrate_array, calibrate_sequence
    from .core.flat import synthesize_flat
    from .core.mask import components, grow as grow_mask, load_mask, save_mask
    from .core.flat import resolve_method
    from .core.reference import compute_reference, resolve_max_frames
    from .core.report import make_report
    from .io import open_sequence
    from .core.calibrate import flat_header
    from .io.single import read_image, write_image

    t0 = time.perf_counter()
    out = Path(out_dir)
    # the ai flat method needs a dust-free image: a file, or Gemini (asked after the mask)
    provider_clean = method == "ai" and not clean_path
    if provider_clean and provider != "gemini":
        raise InputError("the ai flat method needs a dust-free image: give --clean FILE, or use --provider gemini "
                         f"(the {provider} provider does not make one)", path)
    prepare_output_folder(out)

    opts = {"byte_order": byte_order} if byte_order else {}
    result: dict[str, Any] = {}
    with open_sequence(path, **opts) as seq:
        fmt, cal_name = _calibrated_name(seq, fmt, "calibrated")
        from .io.outputs import guard_outputs

        po = provider_options or {}
        guard_outputs([out / "reference.fits", out / "mask.png", out / "flat.fits",
                       (out / cal_name, "replace-folder" if fmt == "tiff-folder" else "file"), out / "report.png"],
                      [path, mask_path, clean_path, po.get("prompt_file"), po.get("path"), po.get("mask_file")])
        warnings = list(seq.warnings)
        # 1. reference
        ref = compute_reference(seq, "median", max_frames=resolve_max_frames(max_frames),
                                progress=sub_progress(progress, 0.0, 0.3))
        result["reference"] = write_image(out / "reference.fits", ref)
        # 2. mask
        clean = read_image(clean_path) if clean_path else None
        provider_report: dict = {}
        from .ai import get_provider

        if mask_path:
            mask, w = load_mask(mask_path, (seq.height, seq.width))
            warnings += w
            provider_report = {"provider": "file", "path": str(mask_path)}
            if provider_clean:  # the mask is given: ask Gemini only for the clean image
                prov = get_provider(provider, **(provider_options or {}))
                sent = grow_mask(mask, max(int(grow), int(getattr(prov, "clean_grow", 4) or 0)))
                clean = prov.request_clean(ref, sent, progress=sub_progress(progress, 0.3, 0.45), sequence=seq)
                provider_report["clean"] = dict(getattr(prov, "last_report", None) or {})
        else:
            popts = dict(provider_options or {})
            if provider_clean:
                popts["with_clean"] = True  # find_mask also returns the clean image (MaskResult.clean)
            prov = get_provider(provider, **popts)
            res = prov.find_mask(ref, seq, progress=sub_progress(progress, 0.3, 0.45))
            mask = np.asarray(res.mask, dtype=bool)
            if mask.shape != (seq.height, seq.width):
                raise InputError(f"provider '{provider}' returned a {mask.shape[1]}x{mask.shape[0]} mask for "
                                 f"{seq.width}x{seq.height} frames", path)
            provider_report = dict(res.report or {})
            if clean is None and res.clean is not None:
                clean = res.clean
        if method == "ai" and clean is None:
            raise ProcessingError(f"provider '{provider}' returned no dust-free image for the ai flat method", path)
        result["mask"] = save_mask(out / "mask.png", mask)
        # 3. verify: the flat is built only from the specks the video does not refuse
        checked = verify_step(mask, seq, verify, progress=sub_progress(progress, 0.45, 0.5))
        result["verify"] = checked
        mask = checked.mask
        # 4. flat
        flat = synthesize_flat(ref, mask, method=method, sequence=seq, clean=clean, grow=grow, feather=feather,
                               pedestal=pedestal, color=seq.color, progress=sub_progress(progress, 0.5, 0.55))
        result["flat"] = write_image(out / "flat.fits", flat, header=flat_header(pedestal))
        # 5. calibrated copy
        stats = calibrate_sequence(seq, flat, out / cal_name, fmt=fmt, pedestal=pedestal,
                                   progress=sub_progress(progress, 0.55, 0.97))
        result["calibrated"] = stats.output
        # 6. report
        cal_ref = calibrate_array(ref, flat, pedestal=pedestal, limits=None)
        specks = components(mask, ref)
        used = resolve_method(method, seq)
        title = (f"{Path(path).name}: {len(specks)} specks, {int(mask.sum())} dust px, method {used}, "
                 f"grow {grow}, pedestal {pedestal:g}")
        result["report"] = make_report(ref, grow_mask(mask, grow), flat, cal_ref, out / "report.png", title=title)
        result.update(frames=stats.frames, clipped=stats.clipped, dust_pixels=int(mask.sum()), method=used,
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


def _calibrate_one(src: Path, flat: Path | np.ndarray, out_dir: Path, stem: str, fmt: Optional[str],
                   pedestal: float, progress: Optional[ProgressFn], resume: bool = False,
                   flat_name: Optional[str | os.PathLike] = None) -> BatchItem:
    """Calibrate one input into ``out_dir``. ``flat``: the flat's file, or its pixels already read
    (``flat_name`` then names it in messages). ``resume``: keep an output that is already complete
    (:func:`output_complete`) and report it as ``kept``."""
    from .core.calibrate import calibrate_sequence, fit_flat
    from .io import open_sequence
    from .io.single import read_image

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
        with open_sequence(src) as seq:
            if flat_raw.shape[:2] != (seq.height, seq.width):
                item.status = "skipped"
                item.note = (f"frames are {seq.width}x{seq.height} but the flat is "
                             f"{flat_raw.shape[1]}x{flat_raw.shape[0]}")
                return item
            f, name = _calibrated_name(seq, fmt, stem)
            if resume and output_complete(out_dir / name, seq):
                item.output, item.frames, item.status = out_dir / name, seq.n_frames, "kept"
                item.note = "output already complete (--resume)"
                return item
            flat_fit = fit_flat(flat_raw, seq, flat_name)
            stats = calibrate_sequence(seq, flat_fit, out_dir / name, fmt=f, pedestal=pedestal, progress=progress)
        item.output, item.frames, item.clipped, item.status = stats.output, stats.frames, stats.clipped, "ok"
    except Cancelled:
        item.status, item.note = "cancelled", "cancelled; no output written"
        raise
    except AiflatError as err:
        item.status, item.note = "failed", str(err)
    except Exception as exc:  # noqa: BLE001 - one file's surprise must not sink the batch
        first = str(exc).splitlines()[0] if str(exc) else ""
        item.status, item.note = "failed", f"internal error ({type(exc).__name__}: {first})"
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
            pedestal: float, resume: bool = False) -> BatchItem:
    def prog(fraction: float, message: str = "") -> None:
        if _CANCEL is not None and _CANCEL.is_set():
            raise Cancelled()
        if _FRACTIONS is not None:
            _FRACTIONS[slot] = fraction

    global _BUSY
    _BUSY = True
    try:
        return _calibrate_one(src, flat_path, out_dir, stem, fmt, pedestal, prog, resume=resume)
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
    from .core.calibrate import check_flat_is_ours
    from .io.single import read_image

    files, stems = plan_batch(inputs, flat_path, out_dir, fmt)
    flat_p = Path(flat_path)
    flat = read_image(flat_p)
    check_flat_is_ours(flat, flat_p)
    out = Path(out_dir)
    prepare_output_folder(out)
    return files, stems, flat_p, flat, out


def batch_calibrate(inputs: Iterable[str | os.PathLike], flat_path: str | os.PathLike, out_dir: str | os.PathLike,
                    fmt: Optional[str] = None, jobs: int = 0, pedestal: float = 0.0,
                    progress: Optional[ProgressFn] = None, resume: bool = False) -> BatchSummary:
    """Calibrate every input with one flat into ``out_dir`` as ``<name>_calibrated.<ext>``.

    ``jobs``: worker processes (0: one per CPU core; 1: in this process). Files whose frame size
    differs from the flat are skipped with a note; a file that fails is reported and the others go
    on. ``progress`` may raise Cancelled: workers stop at their next frame chunk and leave no output.
    ``resume``: outputs already complete are kept (status ``kept``), not recomputed.
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
                                  resume=resume)
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
        futures = {pool.submit(_worker, k, src, flat_p, out, stem, fmt, pedestal, resume): k
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
